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

// heapNoDoubt is how far over the limit, in multiples of it, the heap must
// be for the watch to interrupt a run without waiting for a collection;
// growing by more than a quarter of the limit between two readings is no
// doubt either.
const heapNoDoubt = 2

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
// every few milliseconds. Whenever it is over the limit and a run has been
// going for at least heapMinAge, it has the garbage collected, in the
// background and at most every heapCollectEvery; while the heap is still
// over the limit after a collection, or meanwhile twice over it or growing
// fast, it interrupts the run that has been going longest, which ends with
// Kind Exhausted at its next instruction. A heap over the limit only with
// garbage costs no run. The bound is loose: a native
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

	// Of the watch's goroutine alone: the sample it reads; when it last
	// had the garbage collected, and whether the heap was still over the
	// limit then (until the heap is seen under it again).
	sample    []metrics.Sample
	last      uint64 // the heap's size at the previous reading
	collected time.Time
	liveOver  bool
	// swept receives the heap's size after each collection the watch had
	// made; sweeping is set while one is going.
	swept    chan uint64
	sweeping bool
}

func newHeapWatch(limit uint64) *heapWatch {
	return &heapWatch{limit: limit, runs: map[*run]time.Time{},
		sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}, swept: make(chan uint64, 1)}
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
			h.last = 0 // the next watch compares its own readings
			h.mu.Unlock()
			return
		}
		due := h.oldestAge() >= heapMinAge
		h.mu.Unlock()
		metrics.Read(h.sample)
		n := h.sample[0].Value.Uint64()
		growth := n - min(n, h.last)
		if h.last == 0 {
			growth = 0 // no reading to compare with yet
		}
		h.last = n
		if due && h.over(n, growth) {
			h.mu.Lock()
			h.interruptOldest()
			h.mu.Unlock()
		}
	}
}

// over reports whether the heap, of n bytes, having grown by growth since
// the previous reading, is over the limit with live values, as far as the
// watch knows: after a collection that left it over, or when it is twice
// over or growing fast. Short of that, it has a collection made in the
// background.
func (h *heapWatch) over(n, growth uint64) bool {
	select {
	case after := <-h.swept:
		h.sweeping, h.liveOver = false, after > h.limit
	default:
	}
	switch {
	case n <= h.limit:
		h.liveOver = false
		return false
	case h.liveOver || n > heapNoDoubt*h.limit || growth > h.limit/4:
		return true
	}
	if !h.sweeping && time.Since(h.collected) >= heapCollectEvery {
		h.sweeping, h.collected = true, time.Now()
		go func() {
			runtime.GC()
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			metrics.Read(s)
			h.swept <- s[0].Value.Uint64()
		}()
	}
	return false
}

// oldestAge is how long the run going longest has been going; h.mu is held.
func (h *heapWatch) oldestAge() time.Duration {
	var oldest time.Time
	for _, t := range h.runs {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return time.Since(oldest)
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
