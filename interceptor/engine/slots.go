package engine

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// slots bounds the runs in flight. Waiting runs take a slot in the order
// they came, and a slot given back goes to one of them at once.
type slots struct {
	max int64
	sem *semaphore.Weighted
	// n counts the slots taken, for InFlight.
	n atomic.Int64
}

func newSlots(max int) *slots {
	return &slots{max: int64(max), sem: semaphore.NewWeighted(int64(max))}
}

// take takes a slot, waiting at most wait for one. It reports false when
// none came free in time, and ctx's error when ctx ended first.
func (s *slots) take(ctx context.Context, wait time.Duration) (bool, error) {
	if !s.sem.TryAcquire(1) {
		if wait <= 0 {
			return false, nil
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := s.sem.Acquire(wctx, 1)
		cancel()
		if err != nil {
			return false, ctx.Err()
		}
	}
	s.n.Add(1)
	return true, nil
}

// give gives a slot back.
func (s *slots) give() {
	s.n.Add(-1)
	s.sem.Release(1)
}

// inFlight is the number of slots taken.
func (s *slots) inFlight() int { return int(s.n.Load()) }
