package interceptor_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// A server still taking calls once its engine was closed (a server
// stopped after the engine, or a second server sharing it) fails the
// hooked calls with UNAVAILABLE, which a client may retry on another
// server, whatever the hook's onError; calls with no hook go on.
func TestCallsOnAClosedEngineAreUnavailable(t *testing.T) {
	key := func(method, name string) registry.Key {
		return registry.Key{Service: "events.v1.EventService", Method: method, Phase: engine.Pre, Name: name}
	}
	build := func(k registry.Key, doc string) *registry.Hook {
		h, err := registry.Build(k, []byte(doc))
		if err != nil {
			t.Fatalf("Build(%s): %v", k, err)
		}
		return h
	}
	for _, tt := range []struct {
		name string
		doc  string
	}{
		{"onError fail", `{"script":"undefined"}`},
		{"onError continue", `{"script":"undefined", "onError": "continue"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log runLog
			eng := engine.New()
			src := registry.NewStatic(build(key("SendEvent", "h"), tt.doc), build(key("StreamEvents", "h"), tt.doc))
			opts := []interceptor.Option{interceptor.WithEngine(eng), interceptor.WithLogger(quietLog()), interceptor.WithObserver(log.observe)}
			srv := grpc.NewServer(
				grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(src, opts...)),
				grpc.StreamInterceptor(interceptor.StreamServerInterceptor(src, opts...)))
			eventsv1.RegisterEventServiceServer(srv, &recorder{})
			client := eventsv1.NewEventServiceClient(serve(t, srv))
			ctx := context.Background()
			if _, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "u"}); err != nil {
				t.Fatalf("SendEvent before Close: %v", err)
			}
			log.take()
			eng.Close()

			const want = "hook events.v1.EventService/SendEvent/pre/h: not run: the hook engine is closed"
			_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "u"})
			if s := status.Convert(err); s.Code() != codes.Unavailable || s.Message() != want {
				t.Errorf("SendEvent after Close: %v; want Unavailable, %s", err, want)
			}
			runs := log.take()
			if len(runs) != 1 || runs[0].Outcome != interceptor.OutcomeClosed || runs[0].Kind != engine.Closed || runs[0].Skipped || runs[0].Duration != 0 {
				t.Errorf("observed %+v; want one run, error_closed, kind closed, not skipped, no duration", runs)
			}

			stream, err := client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.Unavailable {
				t.Errorf("StreamEvents after Close: %v; want Unavailable", err)
			}

			if _, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{}); err != nil {
				t.Errorf("GetEvents, which has no hook, after Close: %v; want OK", err)
			}
		})
	}
}
