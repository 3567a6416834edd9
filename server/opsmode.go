package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/server/ops"
)

// HTTPConfig is the daemon's operators' listener: metrics, and the API
// Hooks page (see server/ops).
type HTTPConfig struct {
	// Listen is the address; empty turns the listener off.
	Listen string
	// AuthFile holds the credentials (ops.Config.AuthFile); required for
	// the page on any address but loopback.
	AuthFile string
	// NoPage serves /metrics alone; ReadOnly shows the page but refuses
	// changes.
	NoPage, ReadOnly bool
	// Ready, when set, receives the listener's address once it serves.
	Ready func(addr net.Addr)
}

// opsParts is what the operators' listener shows.
type opsParts struct {
	tel        *ops.Telemetry
	reg        *registry.Registry
	eng        *engine.Engine
	quarantine *interceptor.Quarantine
	client     *clientv3.Client
	// grpcAddr is the daemon's own gRPC address, whose server reflection
	// describes the methods in proxy mode.
	grpcAddr string
	// unserved, in proxy mode, lists the hooks on methods the backend does
	// not serve (proxy.Proxy.Unserved): the page shows them ignored.
	unserved func() ([]string, int64)
}

// withUnserved is the registry as the page sees it in proxy mode: the
// hooks on methods the backend does not serve are ignored too, as they are
// in the daemon's fleet record.
type withUnserved struct {
	*registry.Registry
	unserved func() ([]string, int64)
}

func (r withUnserved) Status() registry.Status {
	s := r.Registry.Status()
	more, _ := r.unserved()
	s.Ignored = append(slices.Clip(s.Ignored), more...)
	return s
}

// startOps starts the operators' listener, when there is one, and returns
// a function that stops it and waits for it.
func startOps(ctx context.Context, cfg Config, p opsParts, log *slog.Logger) (stop func(), err error) {
	p.tel.RegisterState(ops.State{Registry: p.reg, Engine: p.eng, Quarantine: p.quarantine})
	if cfg.HTTP.Listen == "" {
		return func() {}, nil
	}
	src := func(context.Context) (*schema.Source, error) { return schema.Builtin(), nil }
	if cfg.Proxy.Target != "" {
		src = cachedSchema(p.grpcAddr)
	}
	var reg interface {
		Status() registry.Status
		Snapshot() *registry.Snapshot
	} = p.reg
	if p.unserved != nil {
		reg = withUnserved{p.reg, p.unserved}
	}
	s, err := ops.New(ops.Config{
		Addr: cfg.HTTP.Listen, AuthFile: cfg.HTTP.AuthFile, Page: !cfg.HTTP.NoPage, ReadOnly: cfg.HTTP.ReadOnly,
		Telemetry: p.tel, Registry: reg, Quarantine: p.quarantine, Etcd: p.client, Prefix: cfg.Prefix, Schema: src,
		HookTimeout: cfg.HookTimeout, MaxHookTimeout: cfg.MaxHookTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("--http-listen %s: %w", cfg.HTTP.Listen, err)
	}
	log.Info("serving metrics and the hooks page over HTTP", "address", lis.Addr().String(),
		"page", !cfg.HTTP.NoPage, "read_only", cfg.HTTP.ReadOnly, "auth", cfg.HTTP.AuthFile != "")
	if cfg.HTTP.Ready != nil {
		cfg.HTTP.Ready(lis.Addr())
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(sctx, lis); err != nil {
			log.Error("HTTP listener failed", "error", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// cachedSchema reads the methods' descriptors from the daemon's own server
// reflection, at most every 30 seconds.
func cachedSchema(addr string) func(context.Context) (*schema.Source, error) {
	var mu sync.Mutex
	var src *schema.Source
	var at time.Time
	return func(ctx context.Context) (*schema.Source, error) {
		mu.Lock()
		defer mu.Unlock()
		if src != nil && time.Since(at) < 30*time.Second {
			return src, nil
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := schema.FromServer(ctx, addr)
		if err != nil {
			return nil, err
		}
		src, at = s, time.Now()
		return src, nil
	}
}
