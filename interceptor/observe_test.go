package interceptor_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
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
