package interceptor

import (
	"runtime"
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// gcTimeout bounds the wait for the garbage collector to drop a hook.
const gcTimeout = 10 * time.Second

func testHook(t *testing.T, name string) *registry.Hook {
	t.Helper()
	k := registry.Key{Service: "a.B", Method: "M", Phase: "pre", Name: name}
	h, err := registry.Build(k, []byte(`{"script":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLogFailureLogsAtMostOnceASecondPerHook(t *testing.T) {
	var logs logThrottle
	h := testHook(t, "x")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at             time.Duration
		wantLog        bool
		wantSuppressed int64
	}{
		{0, true, 0},
		{10 * time.Millisecond, false, 0},
		{500 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 3},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
	}
	for _, s := range steps {
		log, suppressed := logs.failure(h, t0.Add(s.at), nil)
		if log != s.wantLog || suppressed != s.wantSuppressed {
			t.Fatalf("failure at +%v = %v, %d; want %v, %d", s.at, log, suppressed, s.wantLog, s.wantSuppressed)
		}
	}
	other := testHook(t, "y")
	if log, _ := logs.failure(other, t0.Add(10*time.Millisecond), nil); !log {
		t.Fatal("another hook's first failure was not logged; want each hook limited on its own")
	}
}

func TestFirstStreamSkipIsTrueOncePerHookVersion(t *testing.T) {
	var logs logThrottle
	h := testHook(t, "x")
	if !logs.firstStreamSkip(h) {
		t.Fatal("firstStreamSkip(h) = false the first time; want true")
	}
	if logs.firstStreamSkip(h) {
		t.Fatal("firstStreamSkip(h) = true the second time; want false")
	}
	// A new version of the same key is a new hook, logged afresh.
	if !logs.firstStreamSkip(testHook(t, "x")) {
		t.Fatal("firstStreamSkip of a new version = false; want true")
	}
}

// TestLogThrottleDropsTheHooksNoLongerHeld: a hook replaced in etcd is
// garbage once no snapshot holds it, and what was logged of it goes too.
func TestLogThrottleDropsTheHooksNoLongerHeld(t *testing.T) {
	var logs logThrottle
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	kept := testHook(t, "kept")
	logs.failure(kept, t0, nil)
	func() {
		for _, name := range []string{"a", "b", "c"} {
			h := testHook(t, name)
			logs.failure(h, t0, nil)
			logs.firstStreamSkip(h)
		}
	}()
	deadline := time.Now().Add(gcTimeout)
	for logs.len() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the throttle holds %d hooks %v after the last reference to all but one went; want 1", logs.len(), gcTimeout)
		}
		runtime.GC()
		runtime.Gosched()
	}
	if log, suppressed := logs.failure(kept, t0.Add(time.Millisecond), nil); log || suppressed != 0 {
		t.Fatalf("failure of the hook still held = %v, %d; want it still limited (false, 0)", log, suppressed)
	}
	runtime.KeepAlive(kept)
}

func (t *logThrottle) len() int {
	n := 0
	t.hooks.Range(func(any, any) bool { n++; return true })
	return n
}

// TestFailuresNotLoggedAreToldWhenTheHookStopsFailing: a burst of failures
// within a second is one line at once and, a second later, the number of
// the others, though no failure comes after the burst to carry it.
func TestFailuresNotLoggedAreToldWhenTheHookStopsFailing(t *testing.T) {
	var logs logThrottle
	h := testHook(t, "x")
	told := make(chan int64, 10)
	notLogged := func(n int64) { told <- n }
	if log, _ := logs.failure(h, time.Now(), notLogged); !log {
		t.Fatal("the first failure was not logged")
	}
	// The three failures after it come within the second, unless the
	// machine stalls for a second; then one of them is logged, with the
	// count so far, and the catch-up tells the rest.
	var logged int64
	for range 3 {
		if log, n := logs.failure(h, time.Now(), notLogged); log {
			logged += 1 + n
		}
	}
	select {
	case n := <-told:
		if logged+n != 3 {
			t.Fatalf("%d failures told at once and %d later; want the 3 after the first told in all", logged, n)
		}
	case <-time.After(gcTimeout):
		if logged != 3 {
			t.Fatalf("%d of the 3 failures after the first were never told (%v later)", 3-logged, gcTimeout)
		}
	}
}

// TestACatchUpOvertakenByALoggedFailureTriesAgain: a failure that takes the
// hook's turn to log just before the catch-up is due tells the failures
// until then; the catch-up then waits for the next turn, for those after.
func TestACatchUpOvertakenByALoggedFailureTriesAgain(t *testing.T) {
	var logs logThrottle
	h := testHook(t, "x")
	told := make(chan int64, 10)
	notLogged := func(n int64) { told <- n }
	t0 := time.Now()
	logs.failure(h, t0, notLogged)
	// Suppressed: the catch-up is due a second after t0.
	if log, _ := logs.failure(h, t0, notLogged); log {
		t.Fatal("a second failure at once was logged")
	}
	// A failure takes the turn (its clock a second on), telling the one
	// before; another right after it is suppressed, with the catch-up
	// still pending.
	if log, n := logs.failure(h, t0.Add(time.Second), notLogged); !log || n != 1 {
		t.Fatalf("the failure a second later: logged %v, telling %d; want true, 1", log, n)
	}
	if log, _ := logs.failure(h, t0.Add(time.Second+time.Millisecond), notLogged); log {
		t.Fatal("the failure right after a logged one was logged")
	}
	select {
	case n := <-told:
		if n != 1 {
			t.Fatalf("the catch-up told %d failures; want the 1 after the logged line", n)
		}
	case <-time.After(gcTimeout):
		t.Fatalf("the failure after the logged line was never told (%v)", gcTimeout)
	}
}
