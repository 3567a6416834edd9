package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
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
	"github.com/apihooks/apihooks/server/proxy"
)

// benchService answers SendEvent without storing anything, as in
// interceptor's benchmarks, so the benchmarks measure calls and hooks only.
type benchService struct {
	eventsv1.UnimplementedEventServiceServer
}

func (benchService) SendEvent(_ context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	return &eventsv1.SendEventResponse{EventId: "0190d7a2-6c1e-7b4c-9d1e-" + req.ToUserId}, nil
}

// relayService answers SendEvent by calling the backend with a generated
// client: the least a Go gRPC server in front of the backend costs.
type relayService struct {
	eventsv1.UnimplementedEventServiceServer
	backend eventsv1.EventServiceClient
}

func (r relayService) SendEvent(ctx context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	return r.backend.SendEvent(ctx, req)
}

// benchConfigs starts, on one embedded etcd, each configuration the proxy
// benchmark compares: the backend called directly; a relay (a Go server
// that makes the same call to the backend with a generated client: a
// proxy written plainly with grpc-go); a TCP relay (tcpRelay: the least
// any proxy costs); the built-in server (the backend with the
// interceptors in it) with no hook for SendEvent,
// and with one pre-hook; the proxy in front of the bare backend with no
// hook for SendEvent, with one pre-hook, and with a pre- and a post-hook.
// The hooks are interceptor's benchmark hooks. Every configuration with
// interceptors also has a hook on another method, so "no hooks" goes
// through a real lookup.
func benchConfigs(b *testing.B) []benchConfig {
	e := etcdtest.Start(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	scripts := map[string]string{
		"GetEvents/pre/other":  `{"script":"undefined"}`,
		"SendEvent/pre/set":    `{"script":"module.exports = function (ctx) { ctx.request.eventType = 'checked' }"}`,
		"SendEvent/post/stamp": `{"script":"module.exports = function (ctx) { ctx.response.eventId = 'evt-' + ctx.response.eventId }"}`,
	}
	registryWith := func(prefix string, hooks ...string) *registry.Registry {
		for _, k := range append(hooks, "GetEvents/pre/other") {
			if _, err := e.Client.Put(context.Background(), registry.HooksDir(prefix)+"events.v1.EventService/"+k, scripts[k]); err != nil {
				b.Fatal(err)
			}
		}
		reg := registry.New(e.Client, registry.WithPrefix(prefix), registry.WithLogger(log))
		if err := reg.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(reg.Close)
		return reg
	}
	engineFor := func() *engine.Engine {
		// A busy machine must not fail a call: a second, not 100ms.
		eng := engine.New(engine.WithLogger(log), engine.WithTimeout(time.Second), engine.WithQueueWait(time.Minute))
		b.Cleanup(eng.Close)
		return eng
	}
	client := func(addr string) eventsv1.EventServiceClient { return eventsv1.NewEventServiceClient(dial(b, addr)) }

	bare := grpc.NewServer()
	eventsv1.RegisterEventServiceServer(bare, benchService{})
	backend := serve(b, bare)
	out := []benchConfig{{name: "direct", client: client(backend)}}

	relay := grpc.NewServer()
	eventsv1.RegisterEventServiceServer(relay, relayService{backend: client(backend)})
	out = append(out, benchConfig{name: "relay", client: client(serve(b, relay))})
	out = append(out, benchConfig{name: "tcp-relay", client: client(tcpRelay(b, backend))})

	for _, c := range []struct {
		name, prefix string
		hooks        []string
	}{{"builtin-no-hooks", "/b-none/", nil}, {"builtin-pre", "/b-pre/", []string{"SendEvent/pre/set"}}} {
		eng := engineFor()
		srv := grpc.NewServer(grpc.UnaryInterceptor(interceptor.UnaryServerInterceptor(registryWith(c.prefix, c.hooks...),
			interceptor.WithEngine(eng), interceptor.WithLogger(log))))
		eventsv1.RegisterEventServiceServer(srv, benchService{})
		out = append(out, benchConfig{name: c.name, client: client(serve(b, srv))})
	}

	for _, c := range []struct {
		name, prefix string
		hooks        []string
	}{
		{"proxy-no-hooks", "/p-none/", nil},
		{"proxy-pre", "/p-pre/", []string{"SendEvent/pre/set"}},
		{"proxy-pre+post", "/p-pre-post/", []string{"SendEvent/pre/set", "SendEvent/post/stamp"}},
	} {
		cc, err := proxy.Dial(proxy.Backend{Target: backend})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		p, err := proxy.New(cc, registryWith(c.prefix, c.hooks...), proxy.WithLogger(log), proxy.WithDescriptorSet(descriptorSet(eventsv1.File_events_v1_events_proto)),
			proxy.WithInterceptorOptions(interceptor.WithEngine(engineFor()), interceptor.WithLogger(log)))
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, benchConfig{name: c.name, client: client(serve(b, grpc.NewServer(p.ServerOptions()...)))})
	}
	return out
}

type benchConfig struct {
	name   string
	client eventsv1.EventServiceClient
}

// roundCalls is how many calls one configuration gets before the
// benchmark moves on to the next, so that all of them run under the same
// conditions: a few hundred, and fifty per caller, so that the callers run
// together most of the round.
func roundCalls(callers int) int { return max(200, 50*callers) }

// BenchmarkProxy measures SendEvent over loopback, client, proxy and
// backend in one process, in every configuration of benchConfigs, taking
// turns between them every round of roundCalls: "latency" with one
// caller, "callers=20" with twenty. b.N calls go to each configuration. It
// reports each configuration's time per call ("<name>-ns/call"), the
// proxy's passthrough and the two relays over a direct call
// ("passthrough-x", "relay-x", "tcp-relay-x"), and what a pre-hook adds
// to a call through the proxy and in the built-in server
// ("proxy-pre-added-ns", "builtin-pre-added-ns"). Each
// figure is the median over the rounds of that round's figure, so that a
// burst of other work on the machine moves a round or two, not the result.
func BenchmarkProxy(b *testing.B) {
	req := eventstest.Request(b)
	configs := benchConfigs(b)
	for _, c := range configs {
		if _, err := c.client.SendEvent(context.Background(), req); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
	for _, callers := range []int{1, 20} {
		name := "latency"
		if callers > 1 {
			name = "callers=20"
		}
		b.Run(name, func(b *testing.B) {
			// perCall holds each configuration's time per call, round by
			// round.
			perCall := make(map[string][]float64, len(configs))
			for done := 0; done < b.N; {
				n := min(roundCalls(callers), b.N-done)
				for _, c := range configs {
					start := time.Now()
					var wg sync.WaitGroup
					for k := range callers {
						wg.Go(func() {
							for j := k; j < n; j += callers {
								if _, err := c.client.SendEvent(context.Background(), req); err != nil {
									b.Errorf("%s: %v", c.name, err)
									return
								}
							}
						})
					}
					wg.Wait()
					perCall[c.name] = append(perCall[c.name], float64(time.Since(start).Nanoseconds())/float64(n))
				}
				done += n
			}
			// overRounds is the median over the rounds of f(round).
			overRounds := func(f func(round int) float64) float64 {
				v := make([]float64, len(perCall["direct"]))
				for i := range v {
					v[i] = f(i)
				}
				slices.Sort(v)
				return (v[(len(v)-1)/2] + v[len(v)/2]) / 2
			}
			ratio := func(a, b string) float64 {
				return overRounds(func(i int) float64 { return perCall[a][i] / perCall[b][i] })
			}
			added := func(a, b string) float64 {
				return overRounds(func(i int) float64 { return perCall[a][i] - perCall[b][i] })
			}
			for _, c := range configs {
				b.ReportMetric(overRounds(func(i int) float64 { return perCall[c.name][i] }), c.name+"-ns/call")
			}
			b.ReportMetric(ratio("proxy-no-hooks", "direct"), "passthrough-x")
			b.ReportMetric(ratio("relay", "direct"), "relay-x")
			b.ReportMetric(ratio("tcp-relay", "direct"), "tcp-relay-x")
			b.ReportMetric(added("proxy-pre", "proxy-no-hooks"), "proxy-pre-added-ns")
			b.ReportMetric(added("builtin-pre", "builtin-no-hooks"), "builtin-pre-added-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}
