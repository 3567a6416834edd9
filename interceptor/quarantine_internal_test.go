package interceptor

import (
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// quarantineClock drives a Quarantine of after 5 failures within a minute,
// for a minute, with a clock of its own, as the interceptors do: a run
// starts with check, and one that fails ends with strike.
type quarantineClock struct {
	t   *testing.T
	now time.Time
	q   *Quarantine
	h   *registry.Hook
}

func newQuarantineClock(t *testing.T) *quarantineClock {
	c := &quarantineClock{t: t, now: time.Unix(1000, 0), q: NewQuarantine(5, time.Minute, time.Minute),
		h: &registry.Hook{ID: "s.S/M/pre/x", Revision: 1}}
	c.q.now = func() time.Time { return c.now }
	return c
}

// start starts a run: its number, or 0 when the hook is quarantined.
func (c *quarantineClock) start() int64 {
	why, run := c.q.check(c.h)
	if why != "" {
		return 0
	}
	return run
}

// fail ends run with a timeout, and reports whether that quarantined the
// hook.
func (c *quarantineClock) fail(run int64) bool {
	return c.q.strike(c.h, &engine.Error{Kind: engine.Timeout, Message: "timeout"}, run) != ""
}

func (c *quarantineClock) quarantined() bool { return c.start() == 0 }

// startThenFail starts n runs, all in flight at once, then fails those at
// the indexes given, and reports whether the hook ends quarantined.
func (c *quarantineClock) startThenFail(n int, failing ...int) bool {
	runs := make([]int64, n)
	for i := range runs {
		runs[i] = c.start()
	}
	for _, i := range failing {
		c.fail(runs[i])
	}
	return c.quarantined()
}

func (c *quarantineClock) tick(d time.Duration) { c.now = c.now.Add(d) }

// TestQuarantineWeighsFailuresAgainstRuns: a hook goes into quarantine
// once its failures within the window are at least half of its runs since
// the earliest of them started, that run included, whatever came before,
// and after a quarantine has ended as before it.
func TestQuarantineWeighsFailuresAgainstRuns(t *testing.T) {
	for _, tt := range []struct {
		name string
		play func(c *quarantineClock) bool // whether the hook ends quarantined
		want bool
	}{
		{"failing on every run", func(c *quarantineClock) bool {
			for range 5 {
				c.fail(c.start())
			}
			return c.quarantined()
		}, true},
		{"5 failures among 11 runs, under half", func(c *quarantineClock) bool {
			return c.startThenFail(11, 0, 2, 4, 6, 8)
		}, false},
		{"5 failures among 10 runs, half", func(c *quarantineClock) bool {
			return c.startThenFail(10, 0, 2, 4, 6, 8)
		}, true},
		{"5 slow calls at once, while 100 others run", func(c *quarantineClock) bool {
			return c.startThenFail(105, 0, 1, 2, 3, 4)
		}, false},
		{"failing on every run after an hour of rare failures among many runs", func(c *quarantineClock) bool {
			for sec := range 3600 {
				for range 100 {
					c.start()
				}
				if sec%30 == 0 {
					c.fail(c.start())
				}
				c.tick(time.Second)
			}
			// Then it fails on every run, 10 runs a second, for a minute.
			for range 600 {
				run := c.start()
				if run == 0 {
					return true
				}
				c.fail(run)
				c.tick(100 * time.Millisecond)
			}
			return false
		}, true},
		{"failing on every run after a quarantine that ended", func(c *quarantineClock) bool {
			for range 5 {
				c.fail(c.start())
			}
			c.tick(2 * time.Minute)
			for range 5 {
				c.fail(c.start())
			}
			return c.quarantined()
		}, true},
		{"after a quarantine that ended, failures among many runs", func(c *quarantineClock) bool {
			for range 5 {
				c.fail(c.start())
			}
			c.tick(2 * time.Minute)
			for range 5 {
				for range 200 {
					c.start()
				}
				c.fail(c.start())
			}
			return c.quarantined()
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.play(newQuarantineClock(t)); got != tt.want {
				t.Fatalf("quarantined: %v; want %v", got, tt.want)
			}
		})
	}
}
