package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/ops"
	"github.com/apihooks/apihooks/server/proxy"
)

// newProxy returns a server that forwards every call to cfg.Proxy's backend
// through the hooks of reg, and a function that closes the connection to
// the backend. It learns the backend's descriptors, if it can: a backend
// that does not answer yet is asked again when a hooked call needs them.
func newProxy(ctx context.Context, cfg Config, reg *registry.Registry, hookOpts []interceptor.Option, tel *ops.Telemetry, srvOpts []grpc.ServerOption, healthSrv *health.Server, log *slog.Logger) (*grpc.Server, *proxy.Proxy, func(), error) {
	opts := []proxy.Option{proxy.WithLogger(log), proxy.WithInterceptorOptions(hookOpts...),
		// A backend learned after the start (it came up later, or was
		// redeployed with more services) has its services SERVING too.
		proxy.WithOnLearn(func(services []string) {
			for _, name := range services {
				healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
			}
		})}
	for _, s := range cfg.HookServices {
		if !registry.DefaultHookable(s) {
			// Hooked, so also callable by hooks.
			opts = append(opts, proxy.WithHookedGRPCServices(s))
		}
	}
	if cfg.DescriptorSet != "" {
		set, err := proxy.ReadDescriptorSet(cfg.DescriptorSet)
		if err != nil {
			return nil, nil, nil, err
		}
		opts = append(opts, proxy.WithDescriptorSet(set))
	}
	cc, err := proxy.Dial(cfg.Proxy)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := proxy.New(cc, reg, opts...)
	if err != nil {
		cc.Close()
		return nil, nil, nil, err
	}
	if cfg.DescriptorSet == "" {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.Refresh(rctx)
		cancel()
		if err != nil {
			// The fetch logged why.
			log.Warn("proxy: no descriptors of the backend yet; hooked calls will ask again", "backend", cfg.Proxy.Target)
		}
	}
	log.Info("proxy: forwarding to the backend", "backend", cfg.Proxy.Target, "services", len(p.Services()))
	srv := grpc.NewServer(append(append(tel.ServerOptions(p.MetricsInfo), srvOpts...), p.ServerOptions()...)...)
	p.RegisterReflection(srv)
	return srv, p, func() { cc.Close(); p.Wait() }, nil
}
