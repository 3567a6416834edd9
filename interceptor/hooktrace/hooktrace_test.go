package hooktrace_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/hooktrace"
	"github.com/apihooks/apihooks/interceptor/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type service struct {
	eventsv1.UnimplementedEventServiceServer
}

func (service) SendEvent(context.Context, *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	return &eventsv1.SendEventResponse{EventId: "1"}, nil
}

func hook(t *testing.T, name, doc string) *registry.Hook {
	t.Helper()
	h, err := registry.Build(registry.Key{Service: "events.v1.EventService", Method: "SendEvent", Phase: engine.Pre, Name: name}, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestEachHookRunIsAChildSpanOfTheCall(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	eng := engine.New()
	t.Cleanup(eng.Close)
	src := registry.NewStatic(
		hook(t, "ok", `{"script": "undefined"}`),
		hook(t, "fails", `{"script": "throw new Error('boom')", "onError": "continue", "order": 1}`))
	srv := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))),
		grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(src, interceptor.WithEngine(eng),
			interceptor.WithObserver(hooktrace.Observer(tp)))))
	eventsv1.RegisterEventServiceServer(srv, service{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := eventsv1.NewEventServiceClient(conn).SendEvent(context.Background(), &eventsv1.SendEventRequest{}); err != nil {
		t.Fatal(err)
	}
	srv.GracefulStop() // the call's span ends when the call does

	spans := rec.Ended()
	var call sdktrace.ReadOnlySpan
	hooks := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		switch s.Name() {
		case "events.v1.EventService/SendEvent":
			call = s
		default:
			hooks[s.Name()] = s
		}
	}
	if call == nil {
		t.Fatalf("no span of the call among %d spans", len(spans))
	}
	for _, tt := range []struct {
		name    string
		outcome string
		code    codes.Code
	}{
		{"hook pre events.v1.EventService/SendEvent/pre/ok", "continue", codes.Unset},
		{"hook pre events.v1.EventService/SendEvent/pre/fails", "error_thrown", codes.Error},
	} {
		s := hooks[tt.name]
		if s == nil {
			t.Errorf("no span %q; spans: %v", tt.name, hooks)
			continue
		}
		if s.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("%s: parent %v; want the call's span %v", tt.name, s.Parent().SpanID(), call.SpanContext().SpanID())
		}
		if m := attr(s, "rpc.method"); m != "events.v1.EventService/SendEvent" || m != attr(call, "rpc.method") {
			t.Errorf("%s: rpc.method %q; want the call span's, %q", tt.name, m, attr(call, "rpc.method"))
		}
		if got := attr(s, "apihooks.outcome"); got != tt.outcome {
			t.Errorf("%s: outcome %q; want %q", tt.name, got, tt.outcome)
		}
		if s.Status().Code != tt.code {
			t.Errorf("%s: status %v; want %v", tt.name, s.Status().Code, tt.code)
		}
		if s.EndTime().Before(s.StartTime()) || s.StartTime().Before(call.StartTime()) {
			t.Errorf("%s: from %v to %v; want within the call, from %v", tt.name, s.StartTime(), s.EndTime(), call.StartTime())
		}
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}

// Observer(nil) records through the global tracer provider, as
// OpenTelemetry instrumentation does when given none.
func TestANilProviderIsTheGlobalOne(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	obs := hooktrace.Observer(nil)
	ctx, call := tp.Tracer("test").Start(context.Background(), "call")
	obs(ctx, interceptor.HookRun{Method: "/events.v1.EventService/SendEvent", Hook: "events.v1.EventService/SendEvent/pre/h",
		Phase: engine.Pre, Outcome: interceptor.OutcomeContinue, Start: time.Now()})
	call.End()
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if !slices.Contains(names, "hook pre events.v1.EventService/SendEvent/pre/h") {
		t.Errorf("spans %q; want the hook's, hook pre events.v1.EventService/SendEvent/pre/h", names)
	}
}
