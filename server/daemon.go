package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/embedetcd"
	"github.com/apihooks/apihooks/server/events"
	"github.com/apihooks/apihooks/server/ops"
	"github.com/apihooks/apihooks/server/proxy"
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
	// EmbeddedEtcdHistory is how long the embedded etcd keeps old
	// revisions (hookctl history and rollback reach that far back); zero
	// keeps them for ever.
	EmbeddedEtcdHistory time.Duration
	// EtcdEndpoints, when set, selects an existing etcd cluster instead of
	// the embedded one.
	EtcdEndpoints []string
	// TLS and authentication for EtcdEndpoints (or the embedded etcd, once
	// its authentication is enabled), as etcdctl names them: EtcdUser may
	// be name:password, as etcdctl's --user, when EtcdPassword is empty. A
	// user goes with a password.
	EtcdCACert, EtcdCert, EtcdKey, EtcdUser, EtcdPassword string
	// EtcdDialTimeout bounds connecting to etcd.
	EtcdDialTimeout time.Duration
	// Prefix is the etcd prefix of hooks, response cache configurations
	// and events.
	Prefix string
	// HookTimeout is the timeout of hooks whose document names none.
	HookTimeout time.Duration
	// HookServices are the services hooks may apply to; empty means every
	// registered service except grpc.*.
	HookServices []string
	// ShutdownTimeout bounds draining in-flight calls on shutdown.
	ShutdownTimeout time.Duration
	// MaxRecvMsgSize is the largest message, in bytes, taken from a
	// client (0: gRPC's default, 4 MiB).
	MaxRecvMsgSize int
	Logger         *slog.Logger
	// Ready, when set, receives the gRPC address once the daemon serves.
	Ready func(addr net.Addr)
	// MaxHookRuns bounds the hook runs in flight, abandoned runs included;
	// engine.DefaultMaxRuns when zero. HookQueueWait is how long a hooked
	// call waits for room past it before it fails with RESOURCE_EXHAUSTED.
	MaxHookRuns   int
	HookQueueWait time.Duration
	// A hook that times out QuarantineAfter times within QuarantineWindow
	// is not run for QuarantineFor; QuarantineAfter 0 turns this off.
	QuarantineAfter                 int
	QuarantineWindow, QuarantineFor time.Duration
	// MaxHookTimeout is the largest timeout a hook document may set;
	// registry.DefaultMaxTimeout when zero.
	MaxHookTimeout time.Duration
	// SnapshotFile keeps the hook documents last loaded, served when etcd
	// cannot be read at start; DataDir/hooks-snapshot.json when empty.
	SnapshotFile string
	// Isolation is where hooks run: "inprocess" (default) or "process".
	Isolation string
	// HookMemory bounds what one hook run may allocate, in bytes: in
	// process, what its built-ins may build (engine.WithMemoryBudget); in a
	// worker process, also the worker's memory beyond its baseline.
	// engine.DefaultMemoryBudget when zero.
	HookMemory int64
	// HookHeapLimit is the heap size past which in-process hook runs are
	// interrupted, longest-running first: engine.DefaultHeapLimit when
	// zero, none when negative.
	HookHeapLimit int64
	// Proxy, when its Target is set, makes the daemon a proxy in front of
	// that backend instead of serving the example EventService.
	Proxy proxy.Backend
	// DescriptorSet is a FileDescriptorSet file describing the backend's
	// services; without it the proxy learns them from the backend's
	// server reflection.
	DescriptorSet string
	// HTTP is the operators' listener: metrics and the hooks page.
	HTTP HTTPConfig
}

// EtcdHealthService is the health service name that is SERVING while the
// hooks in force are synced with etcd, and NOT_SERVING while they are not:
// before the first read, and while etcd is unreachable and the daemon serves
// the last hooks it read (or its snapshot file).
const EtcdHealthService = "apihooks.etcd"

// Run runs the daemon until ctx ends, then drains in-flight calls and stops.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if i := interceptor.Isolation(cmp.Or(cfg.Isolation, "inprocess")); i != interceptor.InProcess && i != interceptor.Process {
		return fmt.Errorf("isolation %q is not inprocess or process", cfg.Isolation)
	}

	tel, err := ops.NewTelemetry(ctx, cfg.HTTP.Listen != "")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("traces not all exported", "error", err)
		}
	}()
	client, stopEtcd, err := connectEtcd(ctx, cfg, log)
	if err != nil {
		return err
	}
	// stopBy is when shutdown must be over; zero until shutdown begins.
	var stopBy time.Time
	defer func() { stopWithin(stopEtcd, stopBy, log) }()
	defer client.Close()

	eventsSvc := events.New(client, events.WithPrefix(cfg.Prefix), events.WithLogger(log))
	defer eventsSvc.Close()
	services := []*grpc.ServiceDesc{&eventsv1.EventService_ServiceDesc}
	hookServices := cfg.HookServices
	if cfg.Proxy.Target != "" {
		// The backend's services are learned, and may change.
		services = nil
	}
	if len(hookServices) == 0 {
		for _, d := range services {
			if registry.DefaultHookable(d.ServiceName) {
				hookServices = append(hookServices, d.ServiceName)
			}
		}
	}
	for _, s := range hookServices {
		if services == nil {
			break
		}
		if !slices.ContainsFunc(services, func(d *grpc.ServiceDesc) bool { return d.ServiceName == s }) {
			log.Warn("--hook-services names a service this server does not serve", "service", s)
		}
	}

	healthSrv := newHealthService()
	healthSrv.SetServingStatus(EtcdHealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	regOpts := []registry.Option{registry.WithPrefix(cfg.Prefix), registry.WithLogger(log)}
	if len(hookServices) > 0 {
		// Without, as a proxy with no --hook-services: every service but
		// grpc.*.
		regOpts = append(regOpts, registry.WithServices(hookServices...))
	}
	reg := registry.New(client, append(regOpts,
		registry.WithMaxTimeout(cmp.Or(cfg.MaxHookTimeout, registry.DefaultMaxTimeout)),
		registry.WithSnapshotFile(cmp.Or(cfg.SnapshotFile, filepath.Join(cfg.DataDir, "hooks-snapshot.json"))),
		registry.WithOnSync(func(synced bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if synced {
				st = healthpb.HealthCheckResponse_SERVING
			}
			healthSrv.SetServingStatus(EtcdHealthService, st)
		}),
	)...)
	maxRuns := cfg.MaxHookRuns
	if maxRuns <= 0 {
		maxRuns = engine.DefaultMaxRuns()
	}
	engine.BoundRegexpMatches()
	eng := engine.New(engine.WithLogger(log), engine.WithTimeout(cfg.HookTimeout),
		engine.WithMaxRuns(maxRuns), engine.WithQueueWait(cfg.HookQueueWait),
		engine.WithHeapLimit(cmp.Or(cfg.HookHeapLimit, engine.DefaultHeapLimit)),
		engine.WithMemoryBudget(cmp.Or(cfg.HookMemory, engine.DefaultMemoryBudget)))
	// Worker processes start only when a hook runs in one.
	pool := isolate.New(isolate.WithLogger(log), isolate.WithTimeout(cfg.HookTimeout),
		isolate.WithMemoryLimit(cmp.Or(cfg.HookMemory, isolate.DefaultMemoryLimit)),
		isolate.WithWorkers(maxRuns), isolate.WithQueueWait(cfg.HookQueueWait))
	defer pool.Close()
	quarantine := interceptor.NewQuarantine(cfg.QuarantineAfter, cfg.QuarantineWindow, cfg.QuarantineFor)
	hookOpts := []interceptor.Option{
		interceptor.WithEngine(eng),
		interceptor.WithLogger(log),
		interceptor.WithQuarantine(quarantine),
		interceptor.WithProcessRunner(pool),
		// A document may ask for a worker process (the interceptors'
		// default); it cannot opt out of the server's --isolation process.
		interceptor.WithIsolation(interceptor.Isolation(cmp.Or(cfg.Isolation, "inprocess"))),
	}
	hookOpts = append(hookOpts, tel.HookOptions()...)
	var srvOpts []grpc.ServerOption
	if cfg.MaxRecvMsgSize > 0 {
		srvOpts = append(srvOpts, grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize))
	}
	var srv *grpc.Server
	var backend *proxy.Proxy
	if cfg.Proxy.Target == "" {
		// Hooks may call the example service's methods (ctx.call).
		calls := interceptor.NewCalls()
		hookOpts := append(hookOpts, interceptor.WithCalls(calls))
		srv = grpc.NewServer(append(append(tel.ServerOptions(nil), srvOpts...),
			// Fixed flow-control windows: a stream may have 1 MiB from its
			// client waiting to be read, a connection 16 MiB. grpc-go's
			// bandwidth estimate would let each stream of a slow handler
			// buffer up to 16 MiB. (The proxy sets the same.)
			grpc.StaticStreamWindowSize(1<<20), grpc.StaticConnWindowSize(16<<20),
			grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(reg, hookOpts...)),
			grpc.ChainStreamInterceptor(interceptor.StreamServerInterceptor(reg, hookOpts...)),
		)...)
		eventsv1.RegisterEventServiceServer(calls.Registrar(srv), eventsSvc)
		reflection.Register(srv)
	} else {
		var closeBackend func()
		if srv, backend, closeBackend, err = newProxy(ctx, cfg, reg, hookOpts, tel, srvOpts, healthSrv.Server, log); err != nil {
			return err
		}
		defer closeBackend()
	}
	healthpb.RegisterHealthServer(srv, healthSrv)
	tel.InitializeMetrics(srv)

	// Hooks are loaded (from etcd, or else from the snapshot file) before
	// the port opens: no call is served without them.
	if err := startRegistry(ctx, reg, cmp.Or(cfg.EtcdDialTimeout, 5*time.Second), log); err != nil {
		return err
	}
	defer reg.Close()
	hookable := strings.Join(hookServices, ",")
	if hookable == "" {
		hookable = "every service of the backend but grpc.*"
	}
	log.Info("hooks loaded", "hooks", len(reg.Snapshot().Hooks()), "revision", reg.Snapshot().Revision,
		"hook_services", hookable)
	if backend != nil {
		// Hooks on methods the backend does not serve never run: say so.
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { backend.WatchHooks(wctx, 250*time.Millisecond); close(watched) }()
		defer func() { stopWatch(); <-watched }()
	}

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	for name := range srv.GetServiceInfo() {
		healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if backend != nil {
		for _, name := range backend.Services() {
			healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
	}
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	log.Info("serving gRPC", "address", lis.Addr().String())
	var unserved func() ([]string, int64)
	if backend != nil {
		unserved = backend.Unserved
	}
	stopOps, err := startOps(ctx, cfg, opsParts{tel: tel, reg: reg, eng: eng, quarantine: quarantine, client: client,
		grpcAddr: lis.Addr().String(), unserved: unserved}, log)
	if err != nil {
		lis.Close()
		return err
	}
	defer stopOps()
	fleetReg := registerDaemon(client, cfg, lis.Addr().String(), reg, quarantine, unserved, log)
	defer fleetReg.Close()
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

	stopBy = time.Now().Add(cfg.ShutdownTimeout)
	// The daemon's record goes while calls drain: a daemon that takes no
	// new calls is not one that hookctl --wait should wait for.
	go fleetReg.CloseBy(stopBy)
	shutdown(cfg.ShutdownTimeout, log, srv, healthSrv, eventsSvc, eng)
	<-serveErr
	return nil
}

// stopWithin calls stop, the embedded etcd's Close (nil with an etcd
// cluster), waiting for it until deadline at most (for ever when deadline
// is zero): past it the process exits, which closes etcd's ports all the
// same.
func stopWithin(stop func(), deadline time.Time, log *slog.Logger) {
	switch {
	case deadline.IsZero() && stop != nil:
		stop()
		return
	case deadline.IsZero():
		return
	case stop == nil:
		log.Info("stopped")
		return
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		log.Info("stopped")
	case <-t.C:
		log.Warn("etcd did not stop within the shutdown timeout; exiting without it")
	}
}

// shutdown drains in-flight calls, then stops the server and abandons hook
// runs stuck in native code, so that Run (and the etcd it started, which
// its deferred calls close) ends within timeout. The process may exit with
// abandoned runs still going: exiting ends them.
func shutdown(timeout time.Duration, log *slog.Logger, srv *grpc.Server, healthSrv *healthService, eventsSvc *events.Service, eng *engine.Engine) {
	// Closing etcd and the rest gets a fifth of the time, at most 2s.
	reserve := min(timeout/5, 2*time.Second)
	log.Info("shutting down: draining in-flight calls", "timeout", timeout)
	drainBy := time.NewTimer(timeout - reserve)
	defer drainBy.Stop()
	healthSrv.Shutdown() // NOT_SERVING, then Watch streams end
	eventsSvc.Close()    // ends live streams, which would otherwise never drain
	drained := make(chan struct{})
	go func() { srv.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-drainBy.C:
		log.Warn("calls still running after the shutdown timeout; stopping them")
		srv.Stop()
		<-drained
	}
	// Runs whose calls were stopped end at their next instruction; give
	// them a moment, and abandon the ones stuck in native code.
	ctx, cancel := context.WithTimeout(context.Background(), reserve/2)
	defer cancel()
	if err := eng.Shutdown(ctx); err != nil {
		log.Warn("abandoning hook runs stuck in native code", "error", err)
	}
}

// startRegistry loads the hooks from etcd, or, when etcd cannot be read
// within firstWait, from the snapshot file, catching up with etcd in the
// background. With neither, it retries etcd in attempts of about a second,
// so it notices etcd returning at once.
func startRegistry(ctx context.Context, reg *registry.Registry, firstWait time.Duration, log *slog.Logger) error {
	attempt := func(d time.Duration) error {
		actx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return reg.Start(actx)
	}
	err := attempt(firstWait)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("load hooks: %w", ctx.Err())
	}
	info, serr := reg.StartFromSnapshot()
	if serr == nil {
		log.Warn("serving hooks from the local snapshot; etcd cannot be read", "revision", info.Revision,
			"age", time.Since(info.Saved).Round(time.Second), "saved", info.Saved, "hooks", info.Hooks, "error", err)
		return nil
	}
	// stuck says how to end a wait that only a person ends, or is empty.
	stuck := func(err error) string {
		switch {
		case errors.Is(err, registry.ErrApplyInProgress):
			return "not serving: a staged apply is stuck, etcd no longer has the hooks from before it, and there is no local snapshot; " +
				"complete it (hookctl apply -f ...) or undo it (hookctl apply --abort)"
		case refused(err):
			return "not serving: etcd refuses to let the daemon read the hooks, and there is no local snapshot; " +
				"check --etcd-user, its password and the user's permissions on --prefix"
		}
		return ""
	}
	var warned time.Time
	if errors.Is(serr, fs.ErrNotExist) {
		if msg := stuck(err); msg != "" {
			log.Warn(msg, "error", err)
			warned = time.Now()
		} else {
			log.Warn("cannot load hooks yet and there is no local snapshot; retrying", "error", err)
		}
	} else {
		log.Error("local hook snapshot ignored", "error", serr)
		log.Warn("cannot load hooks yet; retrying", "error", err)
	}
	// Each attempt may take longer than the last (up to 30 s): an etcd
	// that answers slowly (a login's bcrypt on a busy machine) gets there,
	// and one that comes back answers the attempt waiting on it at once.
	wait := max(firstWait, time.Second)
	for {
		err := attempt(wait)
		wait = min(2*wait, 30*time.Second)
		if err == nil {
			log.Info("etcd answers; hooks loaded")
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("load hooks: %w", ctx.Err())
		}
		// Say now and then what to do about a wait only a person ends.
		if msg := stuck(err); msg != "" && time.Since(warned) >= 30*time.Second {
			warned = time.Now()
			log.Warn(msg, "error", err)
		} else {
			log.Debug("cannot load hooks yet; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("load hooks: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// connectEtcd starts the embedded etcd unless endpoints are configured, and
// returns a client and a function that stops what was started.
func connectEtcd(ctx context.Context, cfg Config, log *slog.Logger) (*clientv3.Client, func(), error) {
	user, password, err := etcdLogin(cfg)
	if err != nil {
		return nil, nil, err
	}
	stop := func() {}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		e, err := embedetcd.Start(ctx, embedetcd.Config{
			Dir:        cfg.DataDir,
			ClientAddr: cfg.EmbeddedEtcdListen,
			PeerAddr:   cfg.EmbeddedEtcdPeerListen,
			History:    cfg.EmbeddedEtcdHistory,
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
	// stopEtcd is what the caller stops: nothing with an etcd cluster.
	stopEtcd := stop
	if len(cfg.EtcdEndpoints) > 0 {
		stopEtcd = nil
	}
	tlsCfg, err := etcdTLS(cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	ccfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.EtcdDialTimeout,
		TLS:         tlsCfg,
		Username:    user,
		Password:    password,
		Context:     context.WithoutCancel(ctx),
		Logger:      zap.NewNop(),
		// Reconnect within about half a second of etcd answering again,
		// and notice a dead connection that no reset announces.
		DialOptions:          registry.DialOptions(),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
	}
	client, err := clientv3.New(ccfg)
	switch {
	case err == nil || ccfg.Username == "":
	case unreachable(err):
		log.Warn("cannot log in to etcd; going on, to log in once it answers", "user", ccfg.Username, "error", err)
		client, err = newLoggedOutClient(ccfg)
	case errors.Is(err, rpctypes.ErrAuthFailed):
		// A password changed in etcd before the daemon's configuration
		// must not stop a daemon that has a snapshot to serve.
		log.Warn("etcd refuses the daemon's user name and password; going on, to log in once etcd takes them",
			"user", ccfg.Username, "error", err)
		client, err = newLoggedOutClient(ccfg)
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("etcd client (endpoints %s, user %q): %w", strings.Join(endpoints, ","), user, err)
	}
	return client, stopEtcd, nil
}

// etcdLogin returns the user name and password to log in to etcd with:
// EtcdUser may be name:password, as etcdctl's --user. A user without a
// password, or a password without a user, is an error: etcd's client would
// send neither, and an etcd with authentication on would refuse every
// request. No error holds the password.
func etcdLogin(cfg Config) (user, password string, err error) {
	user, password = cfg.EtcdUser, cfg.EtcdPassword
	if name, inline, ok := strings.Cut(user, ":"); ok {
		if password != "" {
			return "", "", fmt.Errorf("etcd user %s:... holds a password, and a password is given too: give it one way", name)
		}
		user, password = name, inline
	}
	switch {
	case user == "" && password != "":
		return "", "", errors.New("an etcd password is given without a user")
	case user != "" && password == "":
		return "", "", fmt.Errorf("etcd user %q has no password", user)
	}
	return user, password, nil
}

// refused reports whether etcd refused a request for who made it: no user
// given to an etcd with authentication on, or a user without permission.
func refused(err error) bool {
	return errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrPermissionDenied) ||
		errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrUserNotFound)
}

// unreachable reports whether err says etcd did not answer, rather than
// that it refused.
func unreachable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded
}

// newLoggedOutClient returns a client of cfg that has not logged in: etcd's
// client logs in before New returns, which it cannot do while etcd is
// down, and the daemon must then still start (from its snapshot). The
// client is made with a token etcd never issued, then given the user and
// password instead: etcd refuses the first request for its token, and the
// client logs in with them and sends the request again, as it does when a
// token expires.
func newLoggedOutClient(cfg clientv3.Config) (*clientv3.Client, error) {
	user, password := cfg.Username, cfg.Password
	cfg.Username, cfg.Password, cfg.Token = "", "", "not-logged-in"
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	c.Token, c.Username, c.Password = "", user, password
	return c, nil
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
