package interceptor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/hookmetrics"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// runLog collects the hook runs an Observer is told of.
type runLog struct {
	mu   sync.Mutex
	runs []interceptor.HookRun
}

func (l *runLog) observe(_ context.Context, r interceptor.HookRun) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, r)
}

func (l *runLog) take() []interceptor.HookRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.runs
	l.runs = nil
	return out
}

func staticHook(t *testing.T, phase engine.Phase, name, doc string) *registry.Hook {
	t.Helper()
	k := registry.Key{Service: "events.v1.EventService", Method: "SendEvent", Phase: phase, Name: name}
	h, err := registry.Build(k, []byte(doc))
	if err != nil {
		t.Fatalf("Build(%s): %v", k, err)
	}
	return h
}

func TestObserverIsToldHowEachHookRunEnded(t *testing.T) {
	broken := &registry.Hook{Key: registry.Key{Service: "events.v1.EventService", Method: "SendEvent", Phase: engine.Pre, Name: "broken"},
		ID: "events.v1.EventService/SendEvent/pre/broken", Err: errors.New("document: field script: required")}
	tests := []struct {
		name     string
		hooks    []*registry.Hook
		wantCode codes.Code
		want     []interceptor.Outcome
		wantSkip []bool
	}{
		{name: "a hook that changes nothing continues",
			hooks: []*registry.Hook{staticHook(t, engine.Pre, "a", `{"script":"undefined"}`)},
			want:  []interceptor.Outcome{interceptor.OutcomeContinue}, wantSkip: []bool{false}},
		{name: "a rejection is reject",
			hooks:    []*registry.Hook{staticHook(t, engine.Pre, "a", `{"script":"({status: 403})"}`)},
			wantCode: codes.PermissionDenied,
			want:     []interceptor.Outcome{interceptor.OutcomeReject}, wantSkip: []bool{false}},
		{name: "an answer is respond",
			hooks: []*registry.Hook{staticHook(t, engine.Pre, "a", `{"script":"({response: {eventId: 'x'}})"}`)},
			want:  []interceptor.Outcome{interceptor.OutcomeRespond}, wantSkip: []bool{false}},
		{name: "a throw is error_thrown, and a skipped one goes on to the next hook and the post-hook",
			hooks: []*registry.Hook{
				staticHook(t, engine.Pre, "a", `{"script":"throw new Error('boom')", "onError": "continue"}`),
				staticHook(t, engine.Pre, "b", `{"script":"undefined", "order": 1}`),
				staticHook(t, engine.Post, "c", `{"script":"undefined"}`),
			},
			want:     []interceptor.Outcome{interceptor.OutcomeThrown, interceptor.OutcomeContinue, interceptor.OutcomeContinue},
			wantSkip: []bool{true, false, false}},
		{name: "a timeout is error_timeout",
			hooks:    []*registry.Hook{staticHook(t, engine.Pre, "a", `{"script":"for (;;) {}", "timeout": "50ms"}`)},
			wantCode: codes.DeadlineExceeded,
			want:     []interceptor.Outcome{interceptor.OutcomeTimeout}, wantSkip: []bool{false}},
		{name: "an invalid document is invalid, not run",
			hooks:    []*registry.Hook{broken},
			wantCode: codes.Internal,
			want:     []interceptor.Outcome{interceptor.OutcomeInvalid}, wantSkip: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log runLog
			eng := engine.New(engine.WithTimeout(5 * time.Second))
			t.Cleanup(eng.Close)
			srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(registry.NewStatic(tt.hooks...),
				interceptor.WithEngine(eng), interceptor.WithLogger(quietLog()), interceptor.WithObserver(log.observe))))
			eventsv1.RegisterEventServiceServer(srv, &recorder{})
			client := eventsv1.NewEventServiceClient(serve(t, srv))
			_, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "u", EventType: "t"})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("SendEvent() code = %v (%v); want %v", got, err, tt.wantCode)
			}
			runs := log.take()
			if len(runs) != len(tt.want) {
				t.Fatalf("observed %d runs (%+v); want %d", len(runs), runs, len(tt.want))
			}
			for i, r := range runs {
				if r.Outcome != tt.want[i] || r.Skipped != tt.wantSkip[i] {
					t.Errorf("run %d (%s) = %s, skipped %v; want %s, skipped %v", i, r.Hook, r.Outcome, r.Skipped, tt.want[i], tt.wantSkip[i])
				}
				if r.Method != "/events.v1.EventService/SendEvent" || r.Hook != tt.hooks[i].ID || r.Phase != tt.hooks[i].Key.Phase {
					t.Errorf("run %d = %s %s %s; want /events.v1.EventService/SendEvent %s %s", i, r.Method, r.Hook, r.Phase, tt.hooks[i].ID, tt.hooks[i].Key.Phase)
				}
				if (r.Outcome == interceptor.OutcomeInvalid) != (r.Duration == 0) {
					t.Errorf("run %d: duration %v for outcome %s; want zero only for a hook not run", i, r.Duration, r.Outcome)
				}
			}
		})
	}
}

func TestObserverSeesAQuarantinedHook(t *testing.T) {
	var log runLog
	eng := engine.New()
	t.Cleanup(eng.Close)
	hook := staticHook(t, engine.Pre, "slow", `{"script":"for (;;) {}", "timeout": "20ms"}`)
	srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(registry.NewStatic(hook),
		interceptor.WithEngine(eng), interceptor.WithLogger(quietLog()), interceptor.WithObserver(log.observe),
		interceptor.WithQuarantine(interceptor.NewQuarantine(1, time.Minute, time.Minute)))))
	eventsv1.RegisterEventServiceServer(srv, &recorder{})
	client := eventsv1.NewEventServiceClient(serve(t, srv))
	for range 2 {
		client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "u"})
	}
	runs := log.take()
	if len(runs) != 2 || runs[0].Outcome != interceptor.OutcomeTimeout || runs[1].Outcome != interceptor.OutcomeQuarantined {
		t.Fatalf("observed %+v; want a timeout, then quarantined", runs)
	}
}

func TestStaticSetReplacesTheHooks(t *testing.T) {
	src := registry.NewStatic(staticHook(t, engine.Pre, "a", `{"script":"({status: 403})"}`))
	eng := engine.New()
	t.Cleanup(eng.Close)
	srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(src, interceptor.WithEngine(eng))))
	eventsv1.RegisterEventServiceServer(srv, &recorder{})
	client := eventsv1.NewEventServiceClient(serve(t, srv))
	if _, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("with the rejecting hook: %v; want PermissionDenied", err)
	}
	src.Set()
	if _, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{}); err != nil {
		t.Fatalf("with no hooks: %v; want OK", err)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A call whose client gave up (its deadline, or a cancellation) while a
// hook ran is no failure of the hook: it is logged at DEBUG, saying so,
// and still observed as error_canceled.
func TestAClientThatGivesUpIsNotAHookFailure(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{name: "the client's deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}},
		{name: "the client cancels", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var runs runLog
			logs := &syncBuffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			eng := engine.New(engine.WithLogger(log))
			t.Cleanup(eng.Close)
			hook := staticHook(t, engine.Pre, "slow",
				`{"script":"module.exports = () => { const end = Date.now() + 2000; while (Date.now() < end) {} }", "timeout": "5s"}`)
			srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(registry.NewStatic(hook),
				interceptor.WithEngine(eng), interceptor.WithLogger(log), interceptor.WithObserver(runs.observe))))
			eventsv1.RegisterEventServiceServer(srv, &recorder{})
			client := eventsv1.NewEventServiceClient(serve(t, srv))
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "u", EventType: "t"})
			if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Canceled {
				t.Fatalf("SendEvent() = %v; want DEADLINE_EXCEEDED or CANCELED", err)
			}
			// The server notices after the client.
			var got []interceptor.HookRun
			deadline := time.Now().Add(10 * time.Second)
			for len(got) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				got = runs.take()
			}
			if len(got) != 1 || got[0].Outcome != interceptor.OutcomeCanceled {
				t.Fatalf("observed %+v; want one run, error_canceled", got)
			}
			out := logs.String()
			if strings.Contains(out, "level=WARN") || strings.Contains(out, "hook failed") {
				t.Errorf("logged as a failure:\n%s", out)
			}
			want := `level=DEBUG msg="call ended while its hook ran: the client's deadline passed or the client cancelled it" method=/events.v1.EventService/SendEvent hook=events.v1.EventService/SendEvent/pre/slow`
			if !strings.Contains(out, want) {
				t.Errorf("log:\n%s\nwant a line with %s", out, want)
			}
		})
	}
}

// Runs refused for want of room never started: they are counted, and have
// no duration.
func TestRunsRefusedForWantOfRoomAreNotTimed(t *testing.T) {
	h := stuckHandler{Handler: slog.NewTextHandler(io.Discard, nil), entered: make(chan struct{}, 1), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	log := slog.New(h)
	eng := engine.New(engine.WithLogger(log), engine.WithMaxRuns(1), engine.WithQueueWait(0))
	t.Cleanup(eng.Close)
	t.Cleanup(release) // runs before eng.Close
	var runs runLog
	metrics := hookmetrics.New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	hook := staticHook(t, engine.Pre, "h",
		`{"script":"module.exports = (ctx) => { if (ctx.request.toUserId === 'stuck') ctx.log.info('stuck') }", "timeout": "5s"}`)
	srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(registry.NewStatic(hook),
		interceptor.WithEngine(eng), interceptor.WithLogger(quietLog()),
		interceptor.WithObserver(runs.observe), interceptor.WithObserver(metrics.Observer()))))
	eventsv1.RegisterEventServiceServer(srv, &recorder{})
	client := eventsv1.NewEventServiceClient(serve(t, srv))

	ctx := context.Background()
	stuck := make(chan error, 1)
	go func() {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "stuck", EventType: "t"})
		stuck <- err
	}()
	<-h.entered
	for range 2 {
		if _, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "u", EventType: "t"}); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a call past the limit: %v; want RESOURCE_EXHAUSTED", err)
		}
	}
	release()
	if err := <-stuck; err != nil {
		t.Fatalf("the stuck call, once released: %v", err)
	}

	got := runs.take()
	var outcomes []interceptor.Outcome
	for _, r := range got {
		outcomes = append(outcomes, r.Outcome)
		if (r.Outcome == interceptor.OutcomeOverloaded) != (r.Duration == 0) {
			t.Errorf("run %s with duration %v; want zero for error_overloaded alone", r.Outcome, r.Duration)
		}
	}
	want := []interceptor.Outcome{interceptor.OutcomeOverloaded, interceptor.OutcomeOverloaded, interceptor.OutcomeContinue}
	if !slices.Equal(outcomes, want) {
		t.Fatalf("observed %v; want %v", outcomes, want)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var timed uint64
	counted := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "apihooks_hook_run_duration_seconds":
				timed += m.GetHistogram().GetSampleCount()
			case "apihooks_hook_runs_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" {
						counted[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if timed != 1 || counted["continue"] != 1 || counted["error_overloaded"] != 2 {
		t.Fatalf("duration_seconds_count %d, runs_total %v; want 1, continue 1 and error_overloaded 2", timed, counted)
	}
}
