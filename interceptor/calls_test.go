package interceptor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// contextReporter answers GetEvents with what its context holds: the
// time left before its deadline and the x-tenant metadata.
type contextReporter struct{ recorder }

func (*contextReporter) GetEvents(ctx context.Context, _ *eventsv1.GetEventsRequest) (*eventsv1.GetEventsResponse, error) {
	deadline := "none"
	if d, ok := ctx.Deadline(); ok {
		deadline = fmt.Sprint(time.Until(d) > 0 && time.Until(d) <= 3*time.Second)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return &eventsv1.GetEventsResponse{Events: []*eventsv1.Event{{
		EventId:   "deadline within the caller's 3s: " + deadline,
		EventType: fmt.Sprint(md.Get("x-tenant"), " ", grpc.ServerTransportStreamFromContext(ctx).Method()),
	}}}, nil
}

// TestCallsCarryTheCallersContext checks, from the called handler, that a
// call made with ctx.call has the caller's metadata and a deadline no later
// than the caller's, and that admission does not make it wait for a run
// slot that its caller holds.
func TestCallsCarryTheCallersContext(t *testing.T) {
	etcd := etcdtest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registry.New(etcd.Client, registry.WithLogger(log))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	// One run at a time, and no waiting for room: a nested run that
	// needed a slot of its own would fail.
	eng := engine.New(engine.WithLogger(log), engine.WithMaxRuns(1), engine.WithQueueWait(0))
	t.Cleanup(eng.Close)
	calls := interceptor.NewCalls()
	opts := []interceptor.Option{interceptor.WithEngine(eng), interceptor.WithLogger(log), interceptor.WithCalls(calls)}
	srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(reg, opts...)))
	eventsv1.RegisterEventServiceServer(calls.Registrar(srv), &contextReporter{})
	client := eventsv1.NewEventServiceClient(serve(t, srv))

	resp, err := etcd.Client.Put(ctx, registry.HooksDir(registry.DefaultPrefix)+sendEventKey+"pre/ask", doc(
		`module.exports = async function (ctx) {
			const r = await ctx.call("events.v1.EventService/GetEvents", {userId: "u"});
			return {response: {eventId: r.events[0].eventId + "; " + r.events[0].eventType}};
		}`, `"timeout":"5s"`))
	if err != nil {
		t.Fatal(err)
	}
	(&env{reg: reg}).waitRevision(t, resp.Header.Revision)
	cctx, ccancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme"), 3*time.Second)
	defer ccancel()
	got, err := client.SendEvent(cctx, sendRequest())
	if err != nil {
		t.Fatalf("SendEvent = %v", err)
	}
	want := `{"eventId":"deadline within the caller's 3s: true; [acme] /events.v1.EventService/GetEvents"}`
	if s, _ := protojson.Marshal(got); string(s) != want {
		t.Fatalf("SendEvent = %s; want %s", s, want)
	}
}
