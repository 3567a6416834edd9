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
		log, suppressed := logs.failure(h, t0.Add(s.at))
		if log != s.wantLog || suppressed != s.wantSuppressed {
			t.Fatalf("failure at +%v = %v, %d; want %v, %d", s.at, log, suppressed, s.wantLog, s.wantSuppressed)
		}
	}
	other := testHook(t, "y")
	if log, _ := logs.failure(other, t0.Add(10*time.Millisecond)); !log {
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
	logs.failure(kept, t0)
	func() {
		for _, name := range []string{"a", "b", "c"} {
			h := testHook(t, name)
			logs.failure(h, t0)
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
	if log, suppressed := logs.failure(kept, t0.Add(time.Millisecond)); log || suppressed != 0 {
		t.Fatalf("failure of the hook still held = %v, %d; want it still limited (false, 0)", log, suppressed)
	}
	runtime.KeepAlive(kept)
}

func (t *logThrottle) len() int {
	n := 0
	t.hooks.Range(func(any, any) bool { n++; return true })
	return n
}
