package interceptor_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// quarantineEnv serves the hooks of e through interceptors that share q.
func quarantineEnv(t *testing.T, e *env, q *interceptor.Quarantine) eventsv1.EventServiceClient {
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	eng := engine.New(engine.WithLogger(log), engine.WithMaxRuns(4), engine.WithQueueWait(time.Minute))
	t.Cleanup(eng.Close)
	opts := []interceptor.Option{interceptor.WithEngine(eng), interceptor.WithLogger(log), interceptor.WithQuarantine(q)}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(e.reg, opts...)),
		grpc.StreamInterceptor(interceptor.StreamServerInterceptor(e.reg, opts...)),
	)
	eventsv1.RegisterEventServiceServer(srv, e.svc)
	return eventsv1.NewEventServiceClient(serve(t, srv))
}

func TestRunawayHooksAreQuarantined(t *testing.T) {
	e := newEnv(t)
	q := interceptor.NewQuarantine(3, time.Hour, time.Hour)
	client := quarantineEnv(t, e, q)
	loop := `module.exports = () => { for (;;) {} }`
	e.setHooks(t, map[string]string{
		sendEventKey + "pre/runaway":                    doc(loop, `"timeout":"5ms"`),
		"events.v1.EventService/GetEvents/pre/optional": doc(loop, `"timeout":"5ms"`, `"onError":"continue"`),
	})
	ctx := context.Background()

	// Three timeouts within the window...
	for i := range 3 {
		_, err := client.SendEvent(ctx, sendRequest())
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d: %v; want DEADLINE_EXCEEDED", i+1, err)
		}
	}
	// ...and the hook is out of service: calls fail fast, without it.
	_, err := client.SendEvent(ctx, sendRequest())
	st := status.Convert(err)
	want := "hook events.v1.EventService/SendEvent/pre/runaway not run: quarantined until "
	if st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), want) ||
		!strings.HasSuffix(st.Message(), "after 3 timeouts within 1h0m0s") {
		t.Fatalf("call after 3 timeouts: %v; want UNAVAILABLE %q... after 3 timeouts within 1h0m0s", err, want)
	}
	if got := q.List(e.reg); len(got) != 1 || got[0].ID != sendEventKey+"pre/runaway" || got[0].Reason != "3 timeouts within 1h0m0s" {
		t.Fatalf("List() = %+v; want the runaway hook, for 3 timeouts", got)
	}
	if n := strings.Count(e.logs.String(), "hook quarantined"); n != 1 {
		t.Fatalf("logged the quarantine %d times; want once:\n%s", n, e.logs)
	}
	if got := e.svc.received(); len(got) != 0 {
		t.Fatalf("the handler received %v; want nothing", got)
	}

	// A hook that may be skipped is skipped while it is quarantined.
	for range 3 {
		if _, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "a"}); err != nil {
			t.Fatalf("GetEvents with an optional runaway hook: %v; want it to go on without the hook", err)
		}
	}
	if got := len(q.List(e.reg)); got != 2 {
		t.Fatalf("%d hooks quarantined; want 2", got)
	}
	if _, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "a"}); err != nil {
		t.Fatalf("GetEvents with a quarantined optional hook: %v; want it to go on", err)
	}

	// A new version of the hook starts afresh; a deleted one is gone: the
	// quarantine of neither is listed any longer.
	e.setHooks(t, map[string]string{sendEventKey + "pre/runaway": doc(`module.exports = () => ({status: 403, message: "fixed"})`)})
	if got := q.List(e.reg); len(got) != 0 {
		t.Fatalf("List() after a new version of one hook and the other deleted = %+v; want none", got)
	}
	_, err = client.SendEvent(ctx, sendRequest())
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "fixed" {
		t.Fatalf("after a new version: %v; want the new version's PERMISSION_DENIED", err)
	}
}

// stuckHandler blocks each record whose message is "stuck" until release
// is closed, and passes the others on: a hook that logs "stuck" is stuck
// in native code, as one inside a huge built-in operation would be.
type stuckHandler struct {
	slog.Handler
	entered chan struct{}
	release chan struct{}
}

func (h stuckHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "stuck" {
		return h.Handler.Handle(ctx, r)
	}
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

func (h stuckHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

// Past the bound on hook runs in flight, hooked calls fail fast with
// RESOURCE_EXHAUSTED, while methods without hooks never wait.
func TestOverloadedCallsFailFast(t *testing.T) {
	e := newEnv(t)
	h := stuckHandler{Handler: slog.NewTextHandler(e.logs, nil), entered: make(chan struct{}, 1), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(release)
	log := slog.New(h)
	eng := engine.New(engine.WithLogger(log), engine.WithMaxRuns(1), engine.WithQueueWait(0))
	t.Cleanup(eng.Close)
	t.Cleanup(release) // runs before eng.Close
	srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(e.reg, interceptor.WithEngine(eng), interceptor.WithLogger(log))))
	eventsv1.RegisterEventServiceServer(srv, e.svc)
	client := eventsv1.NewEventServiceClient(serve(t, srv))
	e.setHooks(t, map[string]string{sendEventKey + "pre/h": doc(
		`module.exports = (ctx) => { if (ctx.request.toUserId === "stuck") ctx.log.info("stuck") }`, `"timeout":"5s"`)})

	ctx := context.Background()
	stuck := make(chan error, 1)
	go func() {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "stuck", EventType: "t"})
		stuck <- err
	}()
	<-h.entered

	_, err := client.SendEvent(ctx, sendRequest())
	st := status.Convert(err)
	want := "hook events.v1.EventService/SendEvent/pre/h: not run: the server's limit of 1 hook runs in flight was reached"
	if st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), want) {
		t.Fatalf("a hooked call past the limit: %v; want RESOURCE_EXHAUSTED %q...", err, want)
	}
	if _, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "a"}); err != nil {
		t.Fatalf("a call without hooks while hook runs are at their limit: %v; want it served", err)
	}

	release()
	if err := <-stuck; err != nil {
		t.Fatalf("the stuck call, once released: %v", err)
	}
	if _, err := client.SendEvent(ctx, sendRequest()); err != nil {
		t.Fatalf("a hooked call once the slot is free: %v", err)
	}
}

// TestAHookSlowOnlyForSomeCallersStaysInService: a hook that times out
// only on the calls of a client that sends what makes it slow is not
// quarantined while most of its runs succeed, so that client cannot take
// it out of service for every other client; once its failures are most
// of its runs, it is.
func TestAHookSlowOnlyForSomeCallersStaysInService(t *testing.T) {
	e := newEnv(t)
	q := interceptor.NewQuarantine(3, time.Hour, time.Hour)
	client := quarantineEnv(t, e, q)
	e.setHooks(t, map[string]string{
		sendEventKey + "pre/guard": doc(`module.exports = (ctx) => { if (ctx.request.toUserId === "slow") for (;;) {} }`, `"timeout":"5ms"`),
	})
	ctx := context.Background()
	call := func(user string) error {
		req := sendRequest()
		req.ToUserId = user
		_, err := client.SendEvent(ctx, req)
		return err
	}
	for round := range 5 {
		if err := call("slow"); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("round %d: the slow caller got %v; want DEADLINE_EXCEEDED", round, err)
		}
		for i := range 3 {
			if err := call("alice"); err != nil {
				t.Fatalf("round %d, call %d: another caller got %v; want the hook to run, and the call to succeed", round, i, err)
			}
		}
	}
	if got := q.List(e.reg); len(got) != 0 {
		t.Fatalf("quarantined %+v after 5 timeouts in 20 runs; want none", got)
	}
	// Failing on most of its runs, it goes.
	for range 20 {
		call("slow")
	}
	if err := call("alice"); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("after 25 timeouts in 40 runs, a call got %v; want UNAVAILABLE quarantined", err)
	}
}
