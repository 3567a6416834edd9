package interceptor_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// benchService answers SendEvent without storing anything, so the
// benchmarks measure the call and the hooks only.
type benchService struct {
	eventsv1.UnimplementedEventServiceServer
}

func (benchService) SendEvent(_ context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	return &eventsv1.SendEventResponse{EventId: "0190d7a2-6c1e-7b4c-9d1e-" + req.ToUserId}, nil
}

// benchRequest is a SendEventRequest of about 250 bytes on the wire.
func benchRequest(b *testing.B) *eventsv1.SendEventRequest {
	data, err := structpb.NewStruct(map[string]any{
		"title":    "Weekly summary of your account activity",
		"score":    1250,
		"tags":     []any{"summary", "weekly", "account"},
		"level":    7,
		"location": map[string]any{"city": "Lisbon", "country": "PT"},
		"campaign": "autumn-2026-newsletter-retention-segment-b",
	})
	if err != nil {
		b.Fatal(err)
	}
	req := &eventsv1.SendEventRequest{ToUserId: "user-8c1e2f4a9b7d", EventType: "notification.weekly_summary", EventData: data}
	if n := proto.Size(req); n < 200 || n > 300 {
		b.Fatalf("request is %d bytes; want about 250", n)
	}
	return req
}

// BenchmarkUnaryCall measures SendEvent over loopback, client and server in
// one process, with every configuration in the same run.
func BenchmarkUnaryCall(b *testing.B) {
	e := etcdtest.Start(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Each configuration has a prefix of its own; each also has a hook on
	// another method, so "no-hooks" goes through a real lookup.
	hooks := map[string][]string{
		"/no-hooks/": {"GetEvents/pre/other"},
		"/pre/":      {"GetEvents/pre/other", "SendEvent/pre/set"},
		"/pre-post/": {"GetEvents/pre/other", "SendEvent/pre/set", "SendEvent/post/stamp"},
	}
	scripts := map[string]string{
		"GetEvents/pre/other":  `{"script":"undefined"}`,
		"SendEvent/pre/set":    `{"script":"module.exports = function (ctx) { ctx.request.eventType = 'checked' }"}`,
		"SendEvent/post/stamp": `{"script":"module.exports = function (ctx) { ctx.response.eventId = 'evt-' + ctx.response.eventId }"}`,
	}
	sources := map[string]interceptor.Source{}
	for prefix, keys := range hooks {
		for _, k := range keys {
			if _, err := e.Client.Put(context.Background(), registry.HooksDir(prefix)+"events.v1.EventService/"+k, scripts[k]); err != nil {
				b.Fatal(err)
			}
		}
		reg := registry.New(e.Client, registry.WithPrefix(prefix), registry.WithLogger(log))
		if err := reg.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer reg.Close()
		sources[prefix] = reg
	}
	req := benchRequest(b)

	cases := []struct {
		name string
		src  interceptor.Source // nil: no interceptors at all
	}{
		{"bare", nil},
		{"no-hooks", sources["/no-hooks/"]},
		{"pre", sources["/pre/"]},
		{"pre+post", sources["/pre-post/"]},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var opts []grpc.ServerOption
			if c.src != nil {
				eng := engine.New(engine.WithLogger(log))
				defer eng.Close()
				opts = append(opts, grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(c.src, interceptor.WithEngine(eng), interceptor.WithLogger(log))))
			}
			srv := grpc.NewServer(opts...)
			eventsv1.RegisterEventServiceServer(srv, benchService{})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(lis)
			defer srv.Stop()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client := eventsv1.NewEventServiceClient(conn)
			if _, err := client.SendEvent(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.SendEvent(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInterceptorNoHooks measures the interceptor alone, called
// directly, for a method without hooks while other methods have some.
func BenchmarkInterceptorNoHooks(b *testing.B) {
	e := etcdtest.Start(b)
	if _, err := e.Client.Put(context.Background(), registry.HooksDir(registry.DefaultPrefix)+"events.v1.EventService/GetEvents/pre/x", `{"script":"undefined"}`); err != nil {
		b.Fatal(err)
	}
	reg := registry.New(e.Client, registry.WithLogger(slog.New(slog.DiscardHandler)))
	if err := reg.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	unary := interceptor.UnaryServerInterceptor(reg)
	info := &grpc.UnaryServerInfo{FullMethod: "/events.v1.EventService/SendEvent"}
	resp := &eventsv1.SendEventResponse{}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	req := benchRequest(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		unary(ctx, req, info, handler)
	}
}
