package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long an idle worker waits for a run before it exits.
const workerIdle = 2 * time.Second

// workers runs scripts on long-lived goroutines. goja calls run deep, and a
// fresh goroutine's stack grows by copying several times on every run; a
// worker's stack has grown already. A run whose caller stopped waiting
// (timeout, cancellation) keeps its worker until it ends; the pool starts
// another goroutine whenever no worker is idle, so that never blocks a caller.
//
// Once stopped, the pool starts no worker: mu orders each start (wg.Add)
// before stop, so that wg.Wait never meets an Add.
type workers struct {
	jobs chan *run
	quit chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// closed is set by stop, under mu; Run reads it without mu.
	closed atomic.Bool
}

func newWorkers() *workers {
	return &workers{jobs: make(chan *run), quit: make(chan struct{})}
}

// do executes r on an idle worker, or on a new one. It reports false,
// executing nothing, when the pool was stopped and no worker was idle.
func (w *workers) do(r *run) bool {
	select {
	case w.jobs <- r:
		return true
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return false
	}
	w.wg.Add(1)
	go w.work(r)
	return true
}

func (w *workers) work(r *run) {
	defer w.wg.Done()
	r.execute()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case r := <-w.jobs:
			r.execute()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop tells idle workers to exit, and busy ones to exit once their run
// ends, and starts no worker after; wg then tells when they have.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed.Load() {
		w.closed.Store(true)
		close(w.quit)
	}
}
