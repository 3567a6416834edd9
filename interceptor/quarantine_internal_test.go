package interceptor

import (
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// TestQuarantineCountsRunsSinceTheOldestFailureInTheWindow: whether a
// hook's failures are at least half of its runs is judged over the runs
// since the oldest failure still in the window, whatever came before, and
// after a quarantine has ended as before it. A clock of the test's own
// drives the quarantine; each step is a run (check) or a run that failed
// (check, then strike).
func TestQuarantineCountsRunsSinceTheOldestFailureInTheWindow(t *testing.T) {
	timeout := &engine.Error{Kind: engine.Timeout, Message: "timeout"}
	for _, tt := range []struct {
		name string
		// before runs the hook's history; then it fails on every run,
		// 10 runs a second, until quarantined or for a minute.
		before func(run func(fail bool), tick func(time.Duration))
		want   bool
	}{
		{name: "failing on every run after an hour of rare failures among many runs is quarantined",
			before: func(run func(bool), tick func(time.Duration)) {
				for sec := range 3600 {
					for range 100 {
						run(false)
					}
					if sec%30 == 0 {
						run(true)
					}
					tick(time.Second)
				}
			},
			want: true},
		{name: "failing on every run after a quarantine that ended is quarantined again",
			before: func(run func(bool), tick func(time.Duration)) {
				for range 5 {
					run(true)
				}
				tick(2 * time.Minute)
			},
			want: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			q := NewQuarantine(5, time.Minute, time.Minute)
			q.now = func() time.Time { return now }
			h := &registry.Hook{ID: "s.S/M/pre/x", Revision: 1}
			run := func(fail bool) {
				if q.check(h) == "" && fail {
					q.strike(h, timeout)
				}
			}
			tt.before(run, func(d time.Duration) { now = now.Add(d) })
			got := false
			for range 600 {
				if got = q.check(h) != ""; got {
					break
				}
				q.strike(h, timeout)
				now = now.Add(100 * time.Millisecond)
			}
			if got != tt.want {
				t.Fatalf("quarantined: %v; want %v", got, tt.want)
			}
		})
	}

	t.Run("after a quarantine ended, failures among many runs are not enough", func(t *testing.T) {
		now := time.Unix(1000, 0)
		q := NewQuarantine(5, time.Minute, time.Minute)
		q.now = func() time.Time { return now }
		h := &registry.Hook{ID: "s.S/M/pre/x", Revision: 1}
		for range 5 {
			q.check(h)
			q.strike(h, timeout)
		}
		if q.check(h) == "" {
			t.Fatal("5 failures in 5 runs: not quarantined")
		}
		now = now.Add(2 * time.Minute)
		for i := range 5 {
			for range 200 {
				q.check(h)
			}
			if why := q.strike(h, timeout); why != "" {
				t.Fatalf("quarantined again after %d failures among %d runs: %s", i+1, (i+1)*201, why)
			}
		}
	})
}
