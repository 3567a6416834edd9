package engine

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestSlotsNeverStrandAWaiter takes and gives back slots from many
// goroutines at once, each willing to wait far longer than the test runs:
// every taker must get a slot as soon as one is free, so all of them end.
// A wake-up lost between a slot given back and a waiter would leave a
// waiter asleep beside a free slot.
func TestSlotsNeverStrandAWaiter(t *testing.T) {
	for _, max := range []int{1, 2, 3} {
		s := newSlots(max)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5000 {
					ok, err := s.take(ctx, time.Hour)
					if err != nil {
						return // the test gave up waiting
					}
					if !ok {
						t.Error("take gave up before its wait ended")
						return
					}
					if n := s.inFlight(); n > max {
						t.Errorf("%d slots taken; want at most %d", n, max)
					}
					s.give()
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Errorf("with %d slots: takers still waiting after a minute, with %d slots taken", max, s.inFlight())
		}
		cancel()
		<-done
		if n := s.inFlight(); n != 0 {
			t.Errorf("with %d slots: %d still taken after every taker gave its slot back", max, n)
		}
	}
}
