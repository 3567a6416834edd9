package interceptor

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// The quarantine's defaults: a hook that times out or runs out of memory 5
// times within a minute is not run for a minute.
const (
	DefaultQuarantineAfter  = 5
	DefaultQuarantineWindow = time.Minute
	DefaultQuarantineFor    = time.Minute
)

// Quarantine keeps hooks that keep timing out, or running out of memory,
// from running for a cool-down, so that a runaway hook cannot tie up the
// server's hook runs call after call. A hook goes into quarantine once it
// has failed so after times within the window, and those failures are at
// least half of its runs since the first of them: a hook that fails only
// on some calls (those whose large input makes it slow, which a client
// could send on purpose) keeps running for the others. While a hook is quarantined its calls
// fail fast with UNAVAILABLE, or skip it when its onError is "continue".
// A new version of the hook starts afresh.
//
// One Quarantine may serve several interceptors (WithQuarantine), so that
// unary and streaming calls count together. It is safe for concurrent use.
type Quarantine struct {
	after       int
	window, dur time.Duration
	now         func() time.Time

	// hooks holds an entry for each hook that failed lately; it is copied
	// on write, so that calls look up their hook without a lock.
	hooks atomic.Pointer[map[*registry.Hook]*strikes]
	mu    sync.Mutex
}

// strikes is what a Quarantine knows of one hook.
type strikes struct {
	// times are the failures within the window, oldest first, kinds
	// their kinds and at the numbers of the runs that failed
	// (Hook.StartRun); guarded by Quarantine.mu.
	times []time.Time
	kinds []engine.Kind
	at    []int64
	// until is when the hook's quarantine ends (unix nanoseconds; zero
	// when it is not quarantined), and reason says why it began.
	until  atomic.Int64
	reason atomic.Pointer[string]
}

// NewQuarantine returns a Quarantine that takes a hook out of service for
// cooldown once it has timed out or run out of memory after times within
// window. after <= 0 turns quarantine off.
func NewQuarantine(after int, window, cooldown time.Duration) *Quarantine {
	q := &Quarantine{after: after, window: window, dur: cooldown, now: time.Now}
	q.hooks.Store(&map[*registry.Hook]*strikes{})
	return q
}

// QuarantinedHook is a hook out of service.
type QuarantinedHook struct {
	// ID names the hook (its key without the prefix); Revision is the
	// version that was quarantined.
	ID       string
	Revision int64
	Until    time.Time
	Reason   string
}

// List returns the hooks quarantined now, by ID, among the versions loaded
// holds (the registry the interceptors run): the quarantine of a version
// replaced or deleted since ended with it, and List forgets that version.
// A nil loaded lists every version quarantined.
func (q *Quarantine) List(loaded Source) []QuarantinedHook {
	m := *q.hooks.Load()
	if loaded != nil {
		q.mu.Lock()
		// The snapshot is read after the lock is taken, so after every
		// strike recorded: each hook with an entry was in a snapshot read
		// before it failed, and one this snapshot does not hold is gone
		// for good.
		q.forget(loaded.Snapshot())
		m = *q.hooks.Load()
		q.mu.Unlock()
	}
	now := q.now().UnixNano()
	var out []QuarantinedHook
	for h, s := range m {
		if until := s.until.Load(); until > now {
			out = append(out, QuarantinedHook{ID: h.ID, Revision: h.Revision, Until: time.Unix(0, until), Reason: *s.reason.Load()})
		}
	}
	slices.SortFunc(out, func(a, b QuarantinedHook) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// forget drops the entries of the hook versions snap does not hold; q.mu
// is held.
func (q *Quarantine) forget(snap *registry.Snapshot) {
	old := *q.hooks.Load()
	var m map[*registry.Hook]*strikes
	for h := range old {
		if holds(snap, h) {
			continue
		}
		if m == nil {
			m = maps.Clone(old)
		}
		delete(m, h)
	}
	if m != nil {
		q.hooks.Store(&m)
	}
}

// holds reports whether h, that very version, is in snap.
func holds(snap *registry.Snapshot, h *registry.Hook) bool {
	hooks := snap.Hooks()
	i, found := slices.BinarySearchFunc(hooks, h.ID, func(x *registry.Hook, id string) int { return strings.Compare(x.ID, id) })
	return found && hooks[i] == h
}

// check returns why h is quarantined; or, when it may run, "" and the
// number of the run that starts (Hook.StartRun), for strike.
func (q *Quarantine) check(h *registry.Hook) (string, int64) {
	if s := (*q.hooks.Load())[h]; s != nil {
		if until := s.until.Load(); until != 0 && q.now().UnixNano() < until {
			return fmt.Sprintf("quarantined until %s after %s", time.Unix(0, until).UTC().Format(time.TimeOnly), *s.reason.Load()), 0
		}
	}
	return "", h.StartRun()
}

// strike records a failure of h's run number run (check's). It returns
// the reason when the failure puts h in quarantine, and "" otherwise.
func (q *Quarantine) strike(h *registry.Hook, e *engine.Error, run int64) string {
	k := e.Kind
	if q.after <= 0 || !e.RanAway() {
		return ""
	}
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	s := (*q.hooks.Load())[h]
	if s == nil {
		s = &strikes{}
		q.store(h, s, now)
	}
	if until := s.until.Load(); until != 0 && now.UnixNano() < until {
		return "" // abandoned runs that end while it is out of service
	}
	cut := 0
	for cut < len(s.times) && now.Sub(s.times[cut]) > q.window {
		cut++
	}
	s.times, s.kinds, s.at = append(s.times[cut:], now), append(s.kinds[cut:], k), append(s.at[cut:], run)
	// Failures that are not at least half of the hook's runs since the
	// oldest of them (its own included: runs started while it ran count
	// too) are its inputs', not its own: a client that sends what makes
	// it slow (a request or metadata large enough) must not take it out
	// of service for every other client. A hook that fails on every run
	// still goes at once.
	since := h.Runs() - slices.Min(s.at) + 1
	if len(s.times) < q.after || int64(2*len(s.times)) < since {
		return ""
	}
	reason := describeStrikes(s.kinds, q.window)
	s.reason.Store(&reason)
	s.until.Store(now.Add(q.dur).UnixNano())
	s.times, s.kinds, s.at = nil, nil, nil
	return reason
}

// store adds h's entry, and drops those of hooks that neither failed within
// the window nor are quarantined; q.mu is held.
func (q *Quarantine) store(h *registry.Hook, s *strikes, now time.Time) {
	old := *q.hooks.Load()
	m := make(map[*registry.Hook]*strikes, len(old)+1)
	for k, v := range old {
		stale := v.until.Load() < now.UnixNano() &&
			(len(v.times) == 0 || now.Sub(v.times[len(v.times)-1]) > q.window)
		if !stale {
			m[k] = v
		}
	}
	m[h] = s
	q.hooks.Store(&m)
}

// describeStrikes says what failures led to a quarantine: "5 timeouts
// within 1m0s".
func describeStrikes(kinds []engine.Kind, window time.Duration) string {
	n := map[engine.Kind]int{}
	for _, k := range kinds {
		n[k]++
	}
	var parts []string
	for _, k := range []engine.Kind{engine.Timeout, engine.Exhausted} {
		if n[k] > 0 {
			parts = append(parts, kindNoun(k, n[k]))
		}
	}
	return fmt.Sprintf("%s within %v", strings.Join(parts, " and "), window)
}

// kindNoun names n failures of kind k: "5 timeouts", "1 run over its
// memory limit".
func kindNoun(k engine.Kind, n int) string {
	switch {
	case k == engine.Exhausted && n == 1:
		return "1 run over its memory limit"
	case k == engine.Exhausted:
		return fmt.Sprintf("%d runs over their memory limit", n)
	case n == 1:
		return "1 " + k.String()
	}
	return fmt.Sprintf("%d %ss", n, k)
}
