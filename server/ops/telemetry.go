package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/hookmetrics"
	"github.com/apihooks/apihooks/interceptor/hooktrace"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Telemetry is a daemon's metrics and traces: what its gRPC server and its
// interceptors are given, and what /metrics serves. Metrics are on when
// asked for; traces when the environment configures them (TracesEnabled).
type Telemetry struct {
	// Registry holds every metric; /metrics serves it.
	Registry *prometheus.Registry
	hooks    *hookmetrics.Metrics
	grpc     *grpcprom.ServerMetrics
	tp       *sdktrace.TracerProvider
}

// TracesEnabled reports whether the environment asks for traces: an
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
// OTEL_TRACES_EXPORTER=otlp; never with OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none.
func TracesEnabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	case "":
	default:
		return false // only the OTLP exporter is built in
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTelemetry returns the metrics (when metrics is set) and the traces
// (when the environment asks for them: TracesEnabled). The OTLP exporter
// reads its own OTEL_EXPORTER_OTLP_* variables, and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func NewTelemetry(ctx context.Context, metrics bool) (*Telemetry, error) {
	t := &Telemetry{}
	if metrics {
		t.Registry = prometheus.NewRegistry()
		t.hooks = hookmetrics.New()
		t.grpc = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
		t.Registry.MustRegister(t.hooks, t.grpc,
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if TracesEnabled(os.Getenv) {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("traces: OTLP exporter: %w", err)
		}
		// Later sources win: OTEL_SERVICE_NAME over the default name.
		res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", "apihooksd")),
			resource.WithTelemetrySDK(), resource.WithFromEnv())
		if err != nil {
			return nil, fmt.Errorf("traces: resource: %w", err)
		}
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	}
	return t, nil
}

// ServerOptions returns what the gRPC server needs: otelgrpc's stats
// handler when traces are on, and the gRPC server metrics' interceptors
// when metrics are. Give them before the hook interceptors.
//
// unknown, when set, says which method and call shape the metrics count a
// call of a server's unknown-service handler under (a proxy's calls):
// the server itself knows only that the client named some method.
func (t *Telemetry) ServerOptions(unknown func(*grpc.StreamServerInfo) *grpc.StreamServerInfo) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if t.tp != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	}
	if t.grpc != nil {
		unary, stream := t.grpc.UnaryServerInterceptor(), t.grpc.StreamServerInterceptor()
		if unknown != nil {
			counted := stream
			stream = func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				// gRPC gives the unknown-service handler no service.
				if srv == nil {
					if info = unknown(info); !info.IsClientStream && !info.IsServerStream {
						// A unary call, counted as one.
						_, err := unary(ss.Context(), nil, &grpc.UnaryServerInfo{FullMethod: info.FullMethod}, func(context.Context, any) (any, error) {
							return nil, handler(srv, ss)
						})
						return err
					}
				}
				return counted(srv, ss, info, handler)
			}
		}
		opts = append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	}
	return opts
}

// InitializeMetrics sets the gRPC server metrics of every method srv
// serves to zero, so they show before the first call.
func (t *Telemetry) InitializeMetrics(srv *grpc.Server) {
	if t.grpc != nil {
		t.grpc.InitializeMetrics(srv)
	}
}

// HookOptions returns the interceptor options that report hook runs to the
// metrics and traces that are on.
func (t *Telemetry) HookOptions() []interceptor.Option {
	var opts []interceptor.Option
	if t.hooks != nil {
		opts = append(opts, interceptor.WithObserver(t.hooks.Observer()))
	}
	if t.tp != nil {
		opts = append(opts, interceptor.WithObserver(hooktrace.Observer(t.tp)))
	}
	return opts
}

// State is what the daemon's state gauges read.
type State struct {
	Registry interface {
		Status() registry.Status
		Snapshot() *registry.Snapshot
	}
	Engine     *engine.Engine
	Quarantine *interceptor.Quarantine
}

// RegisterState adds the gauges of the daemon's state, read at each scrape:
// hook runs in flight, quarantined hooks, and the registry's revision, hooks
// loaded and broken, seconds since its last sync with etcd, and whether
// etcd is reachable. It does nothing when metrics are off.
func (t *Telemetry) RegisterState(s State) {
	if t.Registry == nil {
		return
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	var cs []prometheus.Collector
	if s.Engine != nil {
		cs = append(cs, gauge("apihooks_hook_runs_in_flight", "Hook runs in flight in the process, runs abandoned at their timeout included.",
			func() float64 { return float64(s.Engine.InFlight()) }))
	}
	if s.Quarantine != nil {
		cs = append(cs, gauge("apihooks_hooks_quarantined", "Hooks in quarantine now: their calls fail fast or skip them.",
			func() float64 { return float64(len(s.Quarantine.List(s.Registry))) }))
	}
	if s.Registry != nil {
		r := s.Registry
		cs = append(cs,
			gauge("apihooks_registry_revision", "The etcd revision of the hooks in force.",
				func() float64 { return float64(r.Snapshot().Revision) }),
			gauge("apihooks_registry_hooks_loaded", "Hooks in force with a valid document, enabled or not.",
				func() float64 { return float64(countHooks(r.Snapshot(), false)) }),
			gauge("apihooks_registry_hooks_broken", "Hooks whose key has no valid document: calls they cover fail.",
				func() float64 { return float64(countHooks(r.Snapshot(), true)) }),
			gauge("apihooks_registry_seconds_since_sync", "Seconds since the registry last heard from etcd; -1 when it never did.",
				func() float64 {
					last := r.Status().LastSync
					if last.IsZero() {
						return -1
					}
					return time.Since(last).Seconds()
				}),
			gauge("apihooks_registry_etcd_reachable", "1 while the registry has read every hook from etcd and follows its changes, 0 otherwise.",
				func() float64 {
					if r.Status().Synced {
						return 1
					}
					return 0
				}),
		)
	}
	t.Registry.MustRegister(cs...)
}

func countHooks(s *registry.Snapshot, broken bool) int {
	n := 0
	for _, h := range s.Hooks() {
		if (h.Err != nil) == broken {
			n++
		}
	}
	return n
}

// Shutdown flushes and stops the traces, until ctx ends.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("traces: %w", err)
	}
	return nil
}
