package interceptor_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/eventstest"
	"github.com/apihooks/apihooks/server/ops"
)

// benchService answers SendEvent without storing anything, so the
// benchmarks measure the call and the hooks only.
type benchService struct {
	eventsv1.UnimplementedEventServiceServer
}

func (benchService) SendEvent(_ context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	return &eventsv1.SendEventResponse{EventId: "0190d7a2-6c1e-7b4c-9d1e-" + req.ToUserId}, nil
}

// benchConfig is one configuration of the unary call benchmarks: a server
// over loopback and a client connected to it.
type benchConfig struct {
	name   string
	client eventsv1.EventServiceClient
}

// benchConfigs starts, on one embedded etcd, a server for each
// configuration the benchmarks compare: no interceptors at all ("bare"), the
// interceptors with no hook for SendEvent, one pre-hook that sets a field,
// that pre-hook with the daemon's metrics on ("pre+metrics": gRPC server
// metrics and hook run metrics, as apihooksd --http-listen has them),
// that pre-hook with a post-hook, and that pre-hook run in a worker process
// (from a pool of GOMAXPROCS workers), and the pre-hook and post-hook behind
// a response cache, which answers every call but the first ("cached"). Each
// configuration has a prefix of its
// own, and each also has a hook on another method, so "no-hooks" goes
// through a real lookup. On Linux, "process-floor" is the bare server
// behind processFloor: a round trip of a request's size to another
// process, the least a hook run in a worker process can cost. Everything
// stops when b ends.
func benchConfigs(b *testing.B) []benchConfig {
	e := etcdtest.Start(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hooks := map[string][]string{
		"/no-hooks/": {"GetEvents/pre/other"},
		"/pre/":      {"GetEvents/pre/other", "SendEvent/pre/set"},
		"/metrics/":  {"GetEvents/pre/other", "SendEvent/pre/set"},
		"/pre-post/": {"GetEvents/pre/other", "SendEvent/pre/set", "SendEvent/post/stamp"},
		"/process/":  {"GetEvents/pre/other", "SendEvent/pre/set"},
		"/cached/":   {"GetEvents/pre/other", "SendEvent/pre/set", "SendEvent/post/stamp"},
	}
	scripts := map[string]string{
		"GetEvents/pre/other":  `{"script":"undefined"}`,
		"SendEvent/pre/set":    `{"script":"module.exports = function (ctx) { ctx.request.eventType = 'checked' }"}`,
		"SendEvent/post/stamp": `{"script":"module.exports = function (ctx) { ctx.response.eventId = 'evt-' + ctx.response.eventId }"}`,
	}
	configs := []struct{ name, prefix string }{
		{"bare", ""}, {"no-hooks", "/no-hooks/"}, {"pre", "/pre/"}, {"pre+metrics", "/metrics/"}, {"pre+post", "/pre-post/"},
		{"pre(process)", "/process/"}, {"cached", "/cached/"}, {"process-floor", ""},
	}
	var out []benchConfig
	for _, c := range configs {
		var opts []grpc.ServerOption
		if c.name == "process-floor" {
			floor := processFloor(b)
			if floor == nil {
				continue
			}
			opts = append(opts, grpc.UnaryInterceptor(floor))
		}
		if c.prefix != "" {
			for _, k := range hooks[c.prefix] {
				if _, err := e.Client.Put(context.Background(), registry.HooksDir(c.prefix)+"events.v1.EventService/"+k, scripts[k]); err != nil {
					b.Fatal(err)
				}
			}
			if c.prefix == "/cached/" {
				if _, err := e.Client.Put(context.Background(), registry.CacheDir(c.prefix)+"events.v1.EventService/SendEvent", `{"ttl":"1h"}`); err != nil {
					b.Fatal(err)
				}
			}
			reg := registry.New(e.Client, registry.WithPrefix(c.prefix), registry.WithLogger(log))
			if err := reg.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(reg.Close)
			eng := engine.New(engine.WithLogger(log))
			b.Cleanup(eng.Close)
			iopts := []interceptor.Option{interceptor.WithEngine(eng), interceptor.WithLogger(log)}
			if c.prefix == "/process/" {
				iopts = append(iopts, interceptor.WithIsolation(interceptor.Process), interceptor.WithProcessRunner(testPool(b, log)))
			}
			if c.prefix == "/metrics/" {
				// The daemon's metrics, as --http-listen turns them on:
				// gRPC server metrics and hook run metrics.
				tel, err := ops.NewTelemetry(context.Background(), true)
				if err != nil {
					b.Fatal(err)
				}
				opts = append(opts, tel.ServerOptions(nil)...)
				iopts = append(iopts, tel.HookOptions()...)
			}
			opts = append(opts, grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(reg, iopts...)))
		}
		srv := grpc.NewServer(opts...)
		eventsv1.RegisterEventServiceServer(srv, benchService{})
		out = append(out, benchConfig{name: c.name, client: eventsv1.NewEventServiceClient(serve(b, srv))})
	}
	return out
}

// BenchmarkUnaryCall measures SendEvent over loopback, client and server in
// one process, each configuration as a sub-benchmark of the same run.
func BenchmarkUnaryCall(b *testing.B) {
	req := eventstest.Request(b)
	for _, c := range benchConfigs(b) {
		b.Run(c.name, func(b *testing.B) {
			if _, err := c.client.SendEvent(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.client.SendEvent(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// interleaveRound is how many calls each caller makes to one configuration
// before BenchmarkUnaryCallRatio moves on to the next.
const interleaveRound = 200

// BenchmarkUnaryCallRatio measures the same calls as BenchmarkUnaryCall,
// but takes turns between the configurations every few hundred calls, so
// that all of them run under the same conditions; on a shared or noisy
// machine their ratios are steadier than those of separate sub-benchmarks.
// b.N calls go to each configuration, from GOMAXPROCS callers at a time.
// It reports each configuration's time per call ("<name>-ns/call") and its
// ratio to the bare call ("<name>-x"); with -benchmem, the allocations per
// op add up all the configurations.
func BenchmarkUnaryCallRatio(b *testing.B) {
	req := eventstest.Request(b)
	configs := benchConfigs(b)
	for _, c := range configs {
		if _, err := c.client.SendEvent(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	callers := runtime.GOMAXPROCS(0)
	spent := make([]time.Duration, len(configs))
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(interleaveRound*callers, b.N-done)
		for i, c := range configs {
			start := time.Now()
			var wg sync.WaitGroup
			for k := range callers {
				wg.Go(func() {
					for j := k; j < n; j += callers {
						if _, err := c.client.SendEvent(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			spent[i] += time.Since(start)
		}
		done += n
	}
	b.StopTimer()
	for i, c := range configs {
		b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), c.name+"-ns/call")
		if i > 0 {
			b.ReportMetric(float64(spent[i])/float64(spent[0]), c.name+"-x")
		}
	}
	b.ReportMetric(0, "ns/op")
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
	req := eventstest.Request(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		unary(ctx, req, info, handler)
	}
}

// BenchmarkInterceptorCacheHit measures the interceptor alone, called
// directly, answering from a method's response cache.
func BenchmarkInterceptorCacheHit(b *testing.B) {
	e := etcdtest.Start(b)
	if _, err := e.Client.Put(context.Background(), registry.CacheDir(registry.DefaultPrefix)+"events.v1.EventService/SendEvent", `{"ttl":"1h"}`); err != nil {
		b.Fatal(err)
	}
	reg := registry.New(e.Client, registry.WithLogger(slog.New(slog.DiscardHandler)))
	if err := reg.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	unary := interceptor.UnaryServerInterceptor(reg)
	info := &grpc.UnaryServerInfo{FullMethod: "/events.v1.EventService/SendEvent"}
	calls := 0
	handler := func(context.Context, any) (any, error) {
		calls++
		return &eventsv1.SendEventResponse{EventId: "0190d7a2-6c1e-7b4c-9d1e-user-8c1e2f4a9b7d"}, nil
	}
	req := eventstest.Request(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unary(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
	if calls != 1 {
		b.Fatalf("the handler ran %d times; want once", calls)
	}
}
