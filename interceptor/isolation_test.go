package interceptor_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// testPool returns a pool of this test binary's workers (the pool's
// default command: see TestMain), closed when tb ends.
func testPool(tb testing.TB, log *slog.Logger, opts ...isolate.Option) *isolate.Pool {
	tb.Helper()
	p := isolate.New(append([]isolate.Option{isolate.WithLogger(log)}, opts...)...)
	tb.Cleanup(p.Close)
	return p
}

// newServer starts, on etcd e, a protected server with the interceptors
// built with opts.
func newServer(t *testing.T, e *etcdtest.Etcd, logs *syncBuffer, opts ...interceptor.Option) *env {
	t.Helper()
	en := &env{etcd: e, svc: &recorder{}, logs: logs}
	log := slog.New(slog.NewTextHandler(logs, nil))
	en.reg = registry.New(e.Client, registry.WithLogger(log), registry.WithRetry(10*time.Millisecond, 100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := en.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(en.reg.Close)
	en.eng = engine.New(engine.WithLogger(log))
	t.Cleanup(en.eng.Close)
	opts = append([]interceptor.Option{interceptor.WithEngine(en.eng), interceptor.WithLogger(log)}, opts...)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(en.reg, opts...)),
		grpc.ChainStreamInterceptor(interceptor.StreamServerInterceptor(en.reg, opts...)),
	)
	eventsv1.RegisterEventServiceServer(srv, en.svc)
	en.client = eventsv1.NewEventServiceClient(serve(t, srv))
	return en
}

// callResult is what a client sees of a SendEvent call, and what the
// handler received.
func callResult(t *testing.T, e *env) string {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	resp, err := e.client.SendEvent(ctx, sendRequest())
	got := fmt.Sprintf("%v %q", status.Code(err), status.Convert(err).Message())
	if err == nil {
		got += " " + oneLine(resp)
	}
	return got + fmt.Sprintf(" handler %v", e.svc.received())
}

// TestProcessIsolationIsInvisible runs the same hooks on a server that runs
// them in process and on one that runs them in worker processes: clients,
// handlers and the log see the same.
func TestProcessIsolationIsInvisible(t *testing.T) {
	e := etcdtest.Start(t)
	inLogs, outLogs := &syncBuffer{}, &syncBuffer{}
	inproc := newServer(t, e, inLogs)
	pool := testPool(t, slog.New(slog.NewTextHandler(outLogs, nil)), isolate.WithWorkers(2))
	isolated := newServer(t, e, outLogs, interceptor.WithIsolation(interceptor.Process), interceptor.WithProcessRunner(pool))
	long := `"timeout":"5s"`
	tests := []struct {
		name  string
		hooks map[string]string
	}{
		{"a changed request reaches the handler", map[string]string{
			sendEventKey + "pre/a": doc(`module.exports = c => { c.request.eventType += "+" + c.metadata["x-tenant"][0]; c.request.eventData.tags = [c.params.t] }`, long, `"params":{"t":"x"}`),
			sendEventKey + "pre/b": doc(`module.exports = c => { c.request.toUserId = "bob" }`, long, `"order":1`)}},
		{"a rejection ends the call", map[string]string{
			sendEventKey + "pre/deny": doc(`({status: 403, message: "no " + ctx.request.toUserId})`, long)}},
		{"a pre-hook answers", map[string]string{
			sendEventKey + "pre/cache": doc(`({response: {eventId: "cached"}})`, long)}},
		{"a post-hook changes the response", map[string]string{
			sendEventKey + "post/stamp": doc(`module.exports = c => { c.response.eventId = "evt-" + c.response.eventId }`, long)}},
		{"a thrown error is UNKNOWN", map[string]string{
			sendEventKey + "pre/boom": doc(`throw new Error("boom")`, long)}},
		{"a thrown error with onError continue is skipped", map[string]string{
			sendEventKey + "pre/boom": doc(`throw new Error("boom")`, long, `"onError":"continue"`)}},
		{"a bad result is INTERNAL naming the hook", map[string]string{
			sendEventKey + "pre/bad": doc(`({colour: "red"})`, long)}},
		{"a timeout is DEADLINE_EXCEEDED naming the hook", map[string]string{
			sendEventKey + "pre/slow": doc(`while (true) {}`, `"timeout":"300ms"`)}},
		{"logs carry the method and hook", map[string]string{
			sendEventKey + "pre/log": doc(`module.exports = c => { c.log.warn("seen", {user: c.request.toUserId}) }`, long)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inproc.setHooks(t, tt.hooks)
			isolated.waitRevision(t, inproc.reg.Snapshot().Revision)
			want, got := callResult(t, inproc), callResult(t, isolated)
			if got != want {
				t.Errorf("isolated: %s\nin process: %s", got, want)
			}
			if w, g := scriptLogs(inLogs.String()), scriptLogs(outLogs.String()); g != w {
				t.Errorf("isolated logs:\n%s\nin process:\n%s", g, w)
			}
		})
	}
}

// scriptLogs returns the lines hooks logged, without their times.
func scriptLogs(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, `msg=seen`) {
			_, rest, _ := strings.Cut(l, " level=")
			out = append(out, rest)
		}
	}
	return strings.Join(out, "\n")
}

// TestUntrustedHooksCannotHurtTheServer puts hooks that allocate without
// bound on SendEvent, in worker processes, while calls to GetEvents run a
// hook of their own: each SendEvent call fails naming its hook, and no
// GetEvents call notices.
func TestUntrustedHooksCannotHurtTheServer(t *testing.T) {
	e := etcdtest.Start(t)
	logs := &syncBuffer{}
	pool := testPool(t, slog.New(slog.NewTextHandler(logs, nil)), isolate.WithWorkers(2))
	untrusted := func(h *registry.Hook) bool { return strings.HasPrefix(h.Key.Name, "untrusted") }
	srv := newServer(t, e, logs, interceptor.WithProcessRunner(pool), interceptor.WithProcessIsolated(untrusted))
	for _, tt := range []struct {
		name, script string
		wantCode     codes.Code
		wantMsg      string
	}{
		// The budget of the worker's own engine refuses what built-ins
		// would allocate...
		{"a huge string", `"x".repeat(2**45)`, codes.ResourceExhausted,
			"hook events.v1.EventService/SendEvent/pre/untrusted: RangeError: hook memory budget of 64 MiB exceeded: String.prototype.repeat would allocate 32 TiB"},
		{"a huge buffer", `new ArrayBuffer(2**45)`, codes.ResourceExhausted,
			"hook events.v1.EventService/SendEvent/pre/untrusted: RangeError: hook memory budget of 64 MiB exceeded: ArrayBuffer would allocate 32 TiB"},
		{"a huge array filled", `new Array(5e7).fill(0)`, codes.ResourceExhausted,
			"hook events.v1.EventService/SendEvent/pre/untrusted: RangeError: hook memory budget of 64 MiB exceeded: Array.prototype.fill would allocate 762.9 MiB"},
		// ...and the worker's memory limit stops what no budget sees.
		{"a string doubled with +", `let s = "x"; for (;;) s += s`, codes.ResourceExhausted,
			"hook events.v1.EventService/SendEvent/pre/untrusted: worker exceeded its memory limit of 64 MiB; killed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.setHooks(t, map[string]string{
				sendEventKey + "pre/untrusted":                    doc(tt.script, `"timeout":"5s"`),
				"events.v1.EventService/GetEvents/pre/untrusted2": doc(`module.exports = c => { c.request.userId += "!" }`, `"timeout":"5s"`),
			})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var calls, failures int
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					calls++
					resp, err := srv.client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "u"})
					if err != nil || resp.Events[0].ToUserId != "u!" {
						failures++
						t.Errorf("GetEvents beside it: %v %v", resp, err)
						return
					}
				}
			})
			_, err := srv.client.SendEvent(context.Background(), sendRequest())
			close(stop)
			wg.Wait()
			if status.Code(err) != tt.wantCode || status.Convert(err).Message() != tt.wantMsg {
				t.Errorf("SendEvent: %v; want %v %q", err, tt.wantCode, tt.wantMsg)
			}
			if calls == 0 || failures > 0 {
				t.Errorf("%d GetEvents calls beside it, %d failed", calls, failures)
			}
		})
	}
}

// TestProcessIsolationWithoutARunner: a hook that must run in a worker
// process, on a server that has none, fails its calls with INTERNAL naming
// the hook and the reason, whether the server's option or, by default, the
// hook's document says so: it never runs in the server's process instead.
func TestProcessIsolationWithoutARunner(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []interceptor.Option
		doc  string
	}{
		{"the server says so", []interceptor.Option{interceptor.WithProcessIsolated(func(*registry.Hook) bool { return true })}, doc(`undefined`)},
		{"the document says so", nil, doc(`undefined`, `"isolation":"process"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := etcdtest.Start(t)
			srv := newServer(t, e, &syncBuffer{}, tc.opts...)
			srv.setHooks(t, map[string]string{sendEventKey + "pre/x": tc.doc})
			_, err := srv.client.SendEvent(context.Background(), sendRequest())
			want := "hook events.v1.EventService/SendEvent/pre/x: the hook must run in a worker process, and this server has no process runner"
			if status.Code(err) != codes.Internal || status.Convert(err).Message() != want {
				t.Errorf("got %v; want INTERNAL %q", err, want)
			}
		})
	}
}
