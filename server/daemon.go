package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/embedetcd"
	"github.com/apihooks/apihooks/server/events"
)

// Config is the daemon's configuration; cmd/apihooksd fills it from flags.
type Config struct {
	// Listen is the gRPC listen address.
	Listen string
	// DataDir holds the embedded etcd's data.
	DataDir string
	// EmbeddedEtcdListen and EmbeddedEtcdPeerListen are the embedded etcd's
	// client and peer addresses.
	EmbeddedEtcdListen, EmbeddedEtcdPeerListen string
	// EtcdEndpoints, when set, selects an existing etcd cluster instead of
	// the embedded one.
	EtcdEndpoints []string
	// TLS and authentication for EtcdEndpoints, as etcdctl names them.
	EtcdCACert, EtcdCert, EtcdKey, EtcdUser, EtcdPassword string
	// EtcdDialTimeout bounds connecting to etcd.
	EtcdDialTimeout time.Duration
	// Prefix is the etcd prefix of hooks and events.
	Prefix string
	// HookTimeout is the timeout of hooks whose document names none.
	HookTimeout time.Duration
	// HookServices are the services hooks may apply to; empty means every
	// registered service except grpc.*.
	HookServices []string
	// ShutdownTimeout bounds draining in-flight calls on shutdown.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Ready, when set, receives the gRPC address once the daemon serves.
	Ready func(addr net.Addr)
	// Isolation is where hooks run: "inprocess" (default) or "process".
	Isolation string
	// HookMemory is the memory limit of a hook worker process, in bytes
	// beyond its baseline; isolate.DefaultMemoryLimit when zero.
	HookMemory int64
}

// Run runs the daemon until ctx ends, then drains in-flight calls and stops.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if i := interceptor.Isolation(cmp.Or(cfg.Isolation, "inprocess")); i != interceptor.InProcess && i != interceptor.Process {
		return fmt.Errorf("isolation %q is not inprocess or process", cfg.Isolation)
	}

	client, stopEtcd, err := connectEtcd(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopEtcd()
	defer client.Close()

	eventsSvc := events.New(client, events.WithPrefix(cfg.Prefix), events.WithLogger(log))
	defer eventsSvc.Close()
	services := []*grpc.ServiceDesc{&eventsv1.EventService_ServiceDesc}
	hookServices := cfg.HookServices
	if len(hookServices) == 0 {
		for _, d := range services {
			if registry.DefaultHookable(d.ServiceName) {
				hookServices = append(hookServices, d.ServiceName)
			}
		}
	}
	for _, s := range hookServices {
		if !slices.ContainsFunc(services, func(d *grpc.ServiceDesc) bool { return d.ServiceName == s }) {
			log.Warn("--hook-services names a service this server does not serve", "service", s)
		}
	}

	reg := registry.New(client,
		registry.WithPrefix(cfg.Prefix),
		registry.WithLogger(log),
		registry.WithServices(hookServices...),
	)
	eng := engine.New(engine.WithLogger(log), engine.WithTimeout(cfg.HookTimeout))
	defer eng.Close()
	// Worker processes start only when a hook runs in one.
	pool := isolate.New(isolate.WithLogger(log), isolate.WithTimeout(cfg.HookTimeout), isolate.WithMemoryLimit(cmp.Or(cfg.HookMemory, isolate.DefaultMemoryLimit)))
	defer pool.Close()
	hookOpts := []interceptor.Option{interceptor.WithEngine(eng), interceptor.WithLogger(log),
		interceptor.WithProcessRunner(pool), interceptor.WithIsolation(interceptor.Isolation(cmp.Or(cfg.Isolation, "inprocess")))}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(reg, hookOpts...)),
		grpc.ChainStreamInterceptor(interceptor.StreamServerInterceptor(reg, hookOpts...)),
	)
	eventsv1.RegisterEventServiceServer(srv, eventsSvc)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)

	// Hooks are loaded before the port opens: no call is served without them.
	if err := startRegistry(ctx, reg, log); err != nil {
		return err
	}
	defer reg.Close()
	log.Info("hooks loaded", "hooks", len(reg.Snapshot().Hooks()), "revision", reg.Snapshot().Revision,
		"hook_services", strings.Join(hookServices, ","))

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	for name := range srv.GetServiceInfo() {
		healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	log.Info("serving gRPC", "address", lis.Addr().String())
	if cfg.Ready != nil {
		cfg.Ready(lis.Addr())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: draining in-flight calls", "timeout", cfg.ShutdownTimeout)
	healthSrv.Shutdown()
	eventsSvc.Close() // ends live streams, which would otherwise never drain
	drained := make(chan struct{})
	go func() { srv.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("calls still running after the shutdown timeout; stopping them")
		srv.Stop()
		<-drained
	}
	<-serveErr
	log.Info("stopped")
	return nil
}

// startRegistry loads the hooks, retrying while etcd does not answer.
func startRegistry(ctx context.Context, reg *registry.Registry, log *slog.Logger) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := reg.Start(attempt)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("load hooks: %w", ctx.Err())
		}
		log.Warn("cannot load hooks yet; retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("load hooks: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// connectEtcd starts the embedded etcd unless endpoints are configured, and
// returns a client and a function that stops what was started.
func connectEtcd(ctx context.Context, cfg Config, log *slog.Logger) (*clientv3.Client, func(), error) {
	stop := func() {}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		e, err := embedetcd.Start(ctx, embedetcd.Config{
			Dir:        cfg.DataDir,
			ClientAddr: cfg.EmbeddedEtcdListen,
			PeerAddr:   cfg.EmbeddedEtcdPeerListen,
		})
		if err != nil {
			return nil, nil, err
		}
		stop = e.Close
		endpoints = e.Endpoints()
		log.Info("embedded etcd serving", "client", "http://"+cfg.EmbeddedEtcdListen, "data_dir", cfg.DataDir)
	} else {
		log.Info("using etcd cluster", "endpoints", strings.Join(endpoints, ","))
	}
	tlsCfg, err := etcdTLS(cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.EtcdDialTimeout,
		TLS:         tlsCfg,
		Username:    cfg.EtcdUser,
		Password:    cfg.EtcdPassword,
		Context:     context.WithoutCancel(ctx),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	return client, stop, nil
}

func etcdTLS(cfg Config) (*tls.Config, error) {
	if cfg.EtcdCACert == "" && cfg.EtcdCert == "" && cfg.EtcdKey == "" {
		return nil, nil
	}
	if (cfg.EtcdCert == "") != (cfg.EtcdKey == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	info := transport.TLSInfo{CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey, TrustedCAFile: cfg.EtcdCACert}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: %w", err)
	}
	return c, nil
}
