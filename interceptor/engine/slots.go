package engine

import (
	"context"
	"sync/atomic"
	"time"
)

// slots bounds the runs in flight. Taking and giving back a slot is an
// atomic add while there is room; only runs that find none wait, on free.
type slots struct {
	max     int64
	n       atomic.Int64
	waiting atomic.Int64
	// free carries a wake-up to a waiting run when a slot is given back.
	free chan struct{}
}

func newSlots(max int) *slots {
	return &slots{max: int64(max), free: make(chan struct{}, 1)}
}

// tryTake takes a slot when there is one.
func (s *slots) tryTake() bool {
	if s.n.Add(1) <= s.max {
		return true
	}
	s.n.Add(-1)
	return false
}

// take takes a slot, waiting at most wait (with timer) for one. It
// reports false when none came free in time, and ctx's error when ctx
// ended first.
func (s *slots) take(ctx context.Context, wait time.Duration, timer *time.Timer) (bool, error) {
	if s.tryTake() {
		return true, nil
	}
	if wait <= 0 {
		return false, nil
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	timer.Reset(wait)
	defer timer.Stop()
	for {
		// A slot given back after the waiting count went up sends a
		// wake-up; one given back before it is seen here.
		if s.tryTake() {
			return true, nil
		}
		select {
		case <-s.free:
		case <-timer.C:
			return s.tryTake(), nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// give gives a slot back.
func (s *slots) give() {
	s.n.Add(-1)
	if s.waiting.Load() > 0 {
		select {
		case s.free <- struct{}{}:
		default:
		}
	}
}

// inFlight is the number of slots taken.
func (s *slots) inFlight() int { return int(s.n.Load()) }
