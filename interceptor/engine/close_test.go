package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// wantClosed fails t unless err is the failure of a run on a closed engine.
func wantClosed(t *testing.T, what string, err error) {
	t.Helper()
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Kind != engine.Closed || ee.Message != "not run: the hook engine is closed" {
		t.Fatalf("%s: %v; want the error of kind closed, not run: the hook engine is closed", what, err)
	}
	if got := ee.Kind.Code(); got != codes.Unavailable {
		t.Errorf("%s: code %v; want Unavailable", what, got)
	}
	if ee.Kind.Skippable() {
		t.Errorf("%s: kind closed is skippable; want a call that fails", what)
	}
}

// A run that starts once Close has begun is refused, and the engine says
// so, however often it was closed.
func TestARunAfterCloseIsRefused(t *testing.T) {
	s := compile(t, `ctx.request.eventType = "changed"; undefined`)
	e := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)))
	if _, err := e.Run(context.Background(), s, preCall(t)); err != nil {
		t.Fatalf("Run before Close: %v", err)
	}
	e.Close()
	_, err := e.Run(context.Background(), s, preCall(t))
	wantClosed(t, "Run after Close", err)
	e.Close()
	_, err = e.Run(context.Background(), s, preCall(t))
	wantClosed(t, "Run after a second Close", err)
	if n := e.InFlight(); n != 0 {
		t.Errorf("InFlight() = %d after refused runs; want 0", n)
	}
}

// Close, and Shutdown, may be called while runs start on other
// goroutines, as when a server still takes calls: each run ends or is
// refused, and Close waits for those that started.
func TestCloseWhileRunsStart(t *testing.T) {
	s := compile(t, `let n = 0; for (let i = 0; i < 2000; i++) n += i; ctx.request.eventType = "n" + n; undefined`)
	for _, tt := range []struct {
		name  string
		close func(*engine.Engine)
	}{
		{"Close", (*engine.Engine).Close},
		{"Shutdown", func(e *engine.Engine) {
			if err := e.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}},
		{"two Closes at once", func(e *engine.Engine) {
			var wg sync.WaitGroup
			wg.Go(e.Close)
			e.Close()
			wg.Wait()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				e := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)), engine.WithMaxRuns(64), engine.WithQueueWait(time.Minute))
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make(chan error, 8*5)
				for range 8 {
					wg.Go(func() {
						<-start
						for range 5 {
							if _, err := e.Run(context.Background(), s, preCall(t)); err != nil {
								errs <- err
							}
						}
					})
				}
				close(start)
				tt.close(e)
				wg.Wait()
				close(errs)
				for err := range errs {
					wantClosed(t, "a run that did not end", err)
				}
				if n := e.InFlight(); n != 0 {
					t.Fatalf("InFlight() = %d once every Run returned; want 0", n)
				}
			}
		})
	}
}

// Shutdown with a context that has ended already says how many runs are
// still going, and returns nil when none is.
func TestShutdownWithAnEndedContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()

	t.Run("no run going", func(t *testing.T) {
		e := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)))
		// An idle worker stays after the run.
		if _, err := e.Run(context.Background(), compile(t, `undefined`), preCall(t)); err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(ended); err != nil {
			t.Errorf("Shutdown(ended context) = %v; want nil, no run being left", err)
		}
	})

	t.Run("a run going", func(t *testing.T) {
		e := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)))
		runCtx, stop := context.WithCancel(context.Background())
		call := preCall(t)
		call.Timeout = time.Hour
		done := make(chan error, 1)
		go func() {
			_, err := e.Run(runCtx, compile(t, `for (;;) {}`), call)
			done <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for e.InFlight() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the run did not start")
			}
			time.Sleep(time.Millisecond)
		}
		err := e.Shutdown(ended)
		if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 hook runs still going") {
			t.Errorf("Shutdown(ended context) = %v; want engine: 1 hook runs still going: context canceled", err)
		}
		stop()
		<-done
		e.Close()
	})
}
