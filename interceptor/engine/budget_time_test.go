package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// busyCPU keeps n goroutines busy until the test ends.
func busyCPU(t *testing.T, n int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := 0; ; x++ {
				if x%1024 == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// A hook's time limit counts the CPU time its script uses, not the time it
// waits for a processor: on a machine busy with other work, one-line hooks
// with the default limit never time out.
func TestABusyMachineDoesNotTimeOutTrivialHooks(t *testing.T) {
	// The garbage earlier tests left (their runs' huge strings and
	// arrays) is swept now, not by the threads of the runs measured here.
	runtime.GC()
	busyCPU(t, 16*runtime.GOMAXPROCS(0))
	e := newEngine(t, engine.WithMaxRuns(4), engine.WithQueueWait(time.Minute))
	s := compile(t, `module.exports = (ctx) => { ctx.request.eventType = "seen" }`)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := e.Run(context.Background(), s, preCall(t)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Errorf("Run() error = %v; want none", err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of 400 runs failed on a busy machine", n)
	}
}

// blockingHandler is a log handler that blocks every record until release
// is closed: a script that logs is then stuck in native code, as one inside
// a long built-in would be, using no CPU time.
type blockingHandler struct {
	slog.Handler
	entered chan struct{}
	release chan struct{}
}

func (blockingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h blockingHandler) Handle(context.Context, slog.Record) error {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

func TestAdmission(t *testing.T) {
	h := blockingHandler{Handler: slog.DiscardHandler, entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := engine.New(engine.WithLogger(slog.New(h)), engine.WithMaxRuns(1), engine.WithQueueWait(0))
	released := false
	release := func() {
		if !released {
			close(h.release)
			released = true
		}
	}
	t.Cleanup(func() { release(); e.Close() })

	stuck := compile(t, `module.exports = (ctx) => { ctx.log.info("stuck") }`)
	trivial := compile(t, `module.exports = () => ({status: 403})`)

	// A run stuck in native code uses no CPU time: the wall-clock ceiling
	// still ends it, for its caller.
	call := preCall(t)
	call.Timeout = 10 * time.Millisecond
	_, err := e.Run(context.Background(), stuck, call)
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Kind != engine.Timeout || !strings.Contains(ee.Message, "still running after 1s") {
		t.Fatalf("stuck run: error = %v; want a timeout at the wall-clock ceiling of 1s", err)
	}
	if got := e.InFlight(); got != 1 {
		t.Fatalf("InFlight() = %d after the run was abandoned; want 1: it still runs", got)
	}

	// The abandoned run keeps its slot: the next run is refused at once.
	_, err = e.Run(context.Background(), trivial, preCall(t))
	if !errors.As(err, &ee) || ee.Kind != engine.Overloaded || ee.Kind.Code() != codes.ResourceExhausted {
		t.Fatalf("run past the limit: error = %v; want Overloaded (RESOURCE_EXHAUSTED)", err)
	}
	if want := "not run: the server's limit of 1 hook runs in flight was reached"; !strings.Contains(err.Error(), want) {
		t.Fatalf("run past the limit: error = %q; want it to say %q", err, want)
	}
	if st := ee.Status("svc/M/pre/h"); st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), "hook svc/M/pre/h: not run") {
		t.Fatalf("Status() = %v; want RESOURCE_EXHAUSTED naming the hook", st)
	}

	// Once the stuck run really ends, runs are admitted again.
	release()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.Run(context.Background(), trivial, preCall(t))
		if err == nil {
			if out.Action != engine.Reject {
				t.Fatalf("Run() = %+v; want a rejection", out)
			}
			break
		}
		if !errors.As(err, &ee) || ee.Kind != engine.Overloaded || time.Now().After(deadline) {
			t.Fatalf("after the stuck run ended: Run() error = %v; want none", err)
		}
		runtime.Gosched()
	}
}

// A run waits for room at most the queue wait, and no longer than its
// context allows.
func TestAdmissionWaitsForRoom(t *testing.T) {
	e := newEngine(t, engine.WithMaxRuns(1), engine.WithQueueWait(time.Minute))
	long := compile(t, `for (;;) {}`)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		call := preCall(t)
		call.Timeout = time.Minute
		_, err := e.Run(ctx, long, call)
		first <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for e.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first run never started")
		}
		runtime.Gosched()
	}

	// A caller whose context ends while it waits is told so.
	wctx, wcancel := context.WithCancel(context.Background())
	wcancel()
	if _, err := e.Run(wctx, long, preCall(t)); !isKind(err, engine.Canceled) {
		t.Fatalf("Run() with an ended context = %v; want Canceled", err)
	}

	// A waiting caller gets the slot as soon as the run holding it ends.
	second := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), compile(t, `undefined`), preCall(t))
		second <- err
	}()
	cancel()
	if err := <-first; !isKind(err, engine.Canceled) {
		t.Fatalf("first run: %v; want Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("waiting run: %v; want it to run once the slot was free", err)
	}
}

func isKind(err error, k engine.Kind) bool {
	var ee *engine.Error
	return errors.As(err, &ee) && ee.Kind == k
}

// A run that grows the heap with what no built-in's budget sees (here the +
// operator doubling a string) is interrupted once the process's heap is
// over the engine's heap limit, and ends with Kind Exhausted.
func TestHeapLimitInterruptsTheLongestRun(t *testing.T) {
	e := newEngine(t, engine.WithHeapLimit(128<<20), engine.WithMaxRuns(4))
	call := preCall(t)
	call.Timeout = time.Minute
	_, err := e.Run(context.Background(), compile(t, `module.exports = () => { let s = "x"; for (;;) s += s }`), call)
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Kind != engine.Exhausted || ee.Kind.Code() != codes.ResourceExhausted ||
		!strings.Contains(ee.Message, "hook heap limit of 128 MiB") {
		t.Fatalf("Run() error = %v; want Exhausted at the heap limit of 128 MiB", err)
	}
	// Runs go on as before.
	out, err := e.Run(context.Background(), compile(t, `({status: 403})`), preCall(t))
	if err != nil || out.Action != engine.Reject {
		t.Fatalf("after the heap limit: Run() = %+v, %v; want a rejection", out, err)
	}
}

// garbage keeps a large allocation reachable until the test drops it.
var garbage []byte

// A heap over the limit only with garbage, which the next collection frees,
// costs no run its call: the heap watch collects it before it interrupts.
func TestHeapLimitLooksPastGarbage(t *testing.T) {
	e := newEngine(t, engine.WithHeapLimit(96<<20), engine.WithMaxRuns(4))
	// Collected while live, so the collector's next goal is far above it:
	// once dropped, it lingers as garbage past the limit.
	garbage = make([]byte, 160<<20)
	for i := range garbage {
		garbage[i] = 1
	}
	runtime.GC()
	garbage = nil
	call := preCall(t)
	call.Timeout = time.Minute
	out, err := e.Run(context.Background(), compile(t, `module.exports = () => {
  const until = Date.now() + 200;
  while (Date.now() < until) {}
  return {status: 403};
}`), call)
	if err != nil || out.Action != engine.Reject {
		t.Fatalf("a run that allocates nothing, with the heap over the limit with garbage: %+v, %v; want its rejection", out, err)
	}
}
