package engine

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// DefaultHeapLimit is a heap size to give WithHeapLimit for a process that
// mostly runs hooks, as apihooksd does: far above what such a process needs
// without them.
const DefaultHeapLimit = 512 << 20

// heapCheckEvery is how often the heap is read while runs are going.
const heapCheckEvery = 5 * time.Millisecond

// heapCollectEvery is how often, at most, the heap watch has the garbage
// collected to tell a heap over the limit with garbage from one over it
// with live values.
const heapCollectEvery = 100 * time.Millisecond

// heapMinAge is how long a run must have been going before the heap watch
// may interrupt it: hooks that end at once never cost their call because
// the heap is large for other reasons.
const heapMinAge = 20 * time.Millisecond

// errHeapLimit is the value a run is interrupted with when the process's
// heap is over the limit.
var errHeapLimit = errors.New("heap limit")

// heapWatch bounds what runs can make the process's heap grow to with
// operations no built-in budget sees (the + operator doubling a string,
// values built in a loop): while runs are going, it reads the heap's size
// every few milliseconds and, whenever it is over the limit, has the garbage
// collected (at most every heapCollectEvery): when the heap is still over
// the limit, it interrupts the run that has been going longest (and for at
// least heapMinAge), which ends with Kind Exhausted at its next
// instruction. A heap over the limit only with garbage costs no run. The bound is loose: a native
// operation such as copying a string of hundreds of megabytes runs to its
// end first, and holds up the watch meanwhile, so the heap may reach a few
// times the limit. A heap that is over the limit for other reasons costs a
// long-running hook its call too: set the limit well above the heap the
// process needs without hooks.
type heapWatch struct {
	limit uint64

	mu      sync.Mutex
	runs    map[*run]time.Time
	running bool

	// Of the watch's goroutine alone: the sample it reads, when it last
	// had the garbage collected and whether the heap was still over the
	// limit then.
	sample        []metrics.Sample
	collected     time.Time
	overWhenSwept bool
}

func newHeapWatch(limit uint64) *heapWatch {
	return &heapWatch{limit: limit, runs: map[*run]time.Time{},
		sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

// add watches r from now on, starting the watch when it is idle.
func (h *heapWatch) add(r *run) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.runs[r] = time.Now()
	if !h.running {
		h.running = true
		go h.watch()
	}
	h.mu.Unlock()
}

// remove stops watching r.
func (h *heapWatch) remove(r *run) {
	if h == nil {
		return
	}
	h.mu.Lock()
	delete(h.runs, r)
	h.mu.Unlock()
}

// watch checks the heap until no run is left to watch.
func (h *heapWatch) watch() {
	t := time.NewTicker(heapCheckEvery)
	defer t.Stop()
	for range t.C {
		h.mu.Lock()
		if len(h.runs) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if h.over() {
			h.mu.Lock()
			h.interruptOldest()
			h.mu.Unlock()
		}
	}
}

// over reports whether the heap is over the limit with live values: when it
// is over the limit, it has the garbage collected and reads it again, or,
// within heapCollectEvery of the last collection, goes by what that one
// found.
func (h *heapWatch) over() bool {
	if !h.read() {
		return false
	}
	if time.Since(h.collected) < heapCollectEvery {
		return h.overWhenSwept
	}
	runtime.GC()
	h.collected = time.Now()
	h.overWhenSwept = h.read()
	return h.overWhenSwept
}

// read reports whether the heap's objects are over the limit now.
func (h *heapWatch) read() bool {
	metrics.Read(h.sample)
	return h.sample[0].Value.Uint64() > h.limit
}

// interruptOldest interrupts the run that has been going longest and was
// not interrupted yet; h.mu is held.
func (h *heapWatch) interruptOldest() {
	var oldest *run
	var since time.Time
	for r, t := range h.runs {
		if oldest == nil || t.Before(since) {
			oldest, since = r, t
		}
	}
	if oldest == nil || time.Since(since) < heapMinAge {
		return
	}
	delete(h.runs, oldest)
	oldest.vm.Interrupt(errHeapLimit)
}

// heapLimitError is the failure of a run interrupted by the heap watch.
func heapLimitError(limit uint64) *Error {
	return &Error{Kind: Exhausted, Message: fmt.Sprintf(
		"interrupted: the server's heap went over its hook heap limit of %d MiB while this was its longest-running hook", limit>>20)}
}
