package protojs

import (
	"sync"
	"sync/atomic"
)

// A Gate lets the owner of a message take it back from a script that may
// still be running, on another goroutine, after its owner stopped waiting
// for it (a timeout). Every operation of a view built with WithGate, and
// any other code that touches the message on the script's behalf between
// Enter and Exit, runs with the gate open; Close shuts it, stops the
// operations under way at their next step and waits for them to return.
// Once Close has returned, nothing reaches the message through the gate
// again: a view operation then reads as undefined and changes nothing.
//
// The zero Gate is open. A Gate must not be copied after first use.
type Gate struct {
	mu     sync.Mutex
	closed atomic.Bool
	active int
	idle   chan struct{}
}

// Enter reports whether the gate is open, and if so holds it open until
// the matching Exit. Calls may nest.
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed.Load() {
		return false
	}
	g.active++
	return true
}

// Exit ends what Enter began. Once the gate has closed, an Exit after an
// operation the gate stopped changes nothing.
func (g *Gate) Exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active == 0 {
		return
	}
	g.active--
	if g.active == 0 {
		g.wake()
	}
}

// wake lets a waiting Close return. g.mu must be held.
func (g *Gate) wake() {
	if g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// release lets go of the gate while an operation runs script code (a
// getter, a Proxy trap, a toString), which may take any time, and returns
// what reacquire needs to take it again. A nil gate does nothing.
func (g *Gate) release() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.active
	g.active = 0
	g.wake()
	return n
}

// reacquire takes the gate again after release, and stops the operation
// if the gate closed meanwhile.
func (g *Gate) reacquire(n int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	closed := g.closed.Load()
	if !closed {
		g.active = n
	}
	g.mu.Unlock()
	if closed {
		panic(stopped{})
	}
}

// Close shuts the gate and waits until no operation is under way. A view
// operation does not hold the gate while it runs script code (a getter
// of a value it converts, say), and stops there if the gate closed; one
// converting a large value stops at its next element.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed.Store(true)
	if g.active == 0 {
		g.mu.Unlock()
		return
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	<-idle
}

// Closed reports whether Close has been called.
func (g *Gate) Closed() bool { return g != nil && g.closed.Load() }

// stopped is what a view operation panics with when its gate closes while
// it converts a value; the operation's exit recovers it.
type stopped struct{}

// check stops the operation under way if the gate has closed.
func (g *Gate) check() {
	if g.Closed() {
		panic(stopped{})
	}
}
