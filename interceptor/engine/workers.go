package engine

import (
	"sync"
	"time"
)

// workerIdle is how long an idle worker waits for a run before it exits.
const workerIdle = 2 * time.Second

// workers runs scripts on long-lived goroutines. goja calls run deep, and a
// fresh goroutine's stack grows by copying several times on every run; a
// worker's stack has grown already. A run whose caller stopped waiting
// (timeout, cancellation) keeps its worker until it ends; the pool starts
// another goroutine whenever no worker is idle, so that never blocks a caller.
type workers struct {
	jobs chan *run
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newWorkers() *workers {
	return &workers{jobs: make(chan *run), quit: make(chan struct{})}
}

// do executes r on an idle worker, or on a new one.
func (w *workers) do(r *run) {
	select {
	case w.jobs <- r:
	default:
		w.wg.Add(1)
		go w.work(r)
	}
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
// ends; wg then tells when they have.
func (w *workers) stop() { w.once.Do(func() { close(w.quit) }) }
