package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

const startTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	isolate.ServeWorkerIfAsked() // the daemon's hook workers, in isolation tests
	goleak.VerifyTestMain(m)
}

type daemon struct {
	// addrs are the daemon's gRPC, etcd client and etcd peer addresses.
	addrs  []string
	conn   *grpc.ClientConn
	etcd   *clientv3.Client
	cancel context.CancelFunc
	done   chan error
}

// startDaemon runs the daemon on its embedded etcd, on free ports.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonWith(t, nil)
}

// startDaemonWith runs the daemon on its embedded etcd, on free ports, with
// the configuration of startDaemon as configure changes it.
func startDaemonWith(t testing.TB, configure func(*server.Config)) *daemon {
	t.Helper()
	// A port found free may be taken by another process before etcd binds
	// it, on a busy machine: try again with others.
	for attempt := 1; ; attempt++ {
		d, err := tryStartDaemon(t, configure)
		if err == nil {
			return d
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 3 {
			t.Fatalf("daemon stopped: %v", err)
		}
	}
}

func tryStartDaemon(t testing.TB, configure func(*server.Config)) (*daemon, error) {
	etcdAddr, peerAddr := etcdtest.FreeAddr(t), etcdtest.FreeAddr(t)
	cfg := server.Config{
		Listen:                 "127.0.0.1:0",
		DataDir:                t.TempDir(),
		EmbeddedEtcdListen:     etcdAddr,
		EmbeddedEtcdPeerListen: peerAddr,
		EtcdDialTimeout:        5 * time.Second,
		Prefix:                 "/apihooks/",
		HookTimeout:            time.Second,
		ShutdownTimeout:        5 * time.Second,
		HookQueueWait:          time.Minute,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if configure != nil {
		configure(&cfg)
	}
	ready := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1)}
	cfg.Ready = func(a net.Addr) { ready <- a }
	go func() { d.done <- server.Run(ctx, cfg) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-d.done:
		cancel()
		return nil, err
	case <-time.After(startTimeout):
		t.Fatal("daemon did not start")
	}
	d.addrs = []string{addr.String(), etcdAddr, peerAddr}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	d.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		d.etcd.Close()
		d.stop(t)
	})
	return d, nil
}

func (d *daemon) stop(t testing.TB) {
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
		d.done <- nil
	case <-time.After(startTimeout):
		t.Fatal("daemon did not stop")
	}
}

func TestDaemonServesHealthReflectionAndHooks(t *testing.T) {
	d := startDaemon(t)
	ctx := context.Background()

	h, err := healthpb.NewHealthClient(d.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "events.v1.EventService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", h, err)
	}

	rs, err := reflectionpb.NewServerReflectionClient(d.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if len(names) == 0 || names[0] == "" {
		t.Fatalf("reflection listed %v; want the services", names)
	}
	rs.CloseSend()

	client := eventsv1.NewEventServiceClient(d.conn)
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/deny",
		`{"script":"({status: 403, message: 'closed'})"}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SendEvent = %v; want the hook's 403 once it is put", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Hooks do not apply to grpc.* services.
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/*/*/pre/deny-all", `{"script":"({status: 403})"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the global hook to be loaded", func() bool {
		_, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "a"})
		return status.Code(err) == codes.PermissionDenied
	})
	if _, err := healthpb.NewHealthClient(d.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check with a global hook: %v; want it untouched", err)
	}
}

func TestDaemonDrainsOnShutdown(t *testing.T) {
	entered := make(chan struct{}, 1)
	d := startDaemonWith(t, func(c *server.Config) { c.Logger = slog.New(signalHandler{msg: "entered", c: entered}) })
	ctx := context.Background()
	// A hook that takes a while for user a, so a call is in flight at
	// shutdown; it tags everyone else's events at once.
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/slow",
		`{"script":"module.exports = (ctx) => { if (ctx.request.toUserId !== 'a') { ctx.request.eventType = 'hooked'; return; } ctx.log.info('entered'); var end = Date.now() + 300; while (Date.now() < end) {} }"}`); err != nil {
		t.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	stream, err := client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "watcher"})
	if err != nil {
		t.Fatal(err)
	}
	// The stream is live, and the hook in force, once an event sent after
	// the stream opened reaches it tagged by the hook.
	events := make(chan *eventsv1.Event)
	recvErr := make(chan error, 1)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // a failed test reads no more events
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvErr <- err
				close(events)
				return
			}
			select {
			case events <- ev:
			case <-done:
				return
			}
		}
	}()
	waitFor(t, "the stream to be live and the hook in force", func() bool {
		if _, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "watcher", EventType: "probe"}); err != nil {
			t.Fatalf("probe: %v", err)
		}
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream: %v", <-recvErr)
			}
			return ev.EventType == "hooked"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})

	inFlight := make(chan error, 1)
	go func() {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		inFlight <- err
	}()
	select {
	case <-entered:
	case err := <-inFlight:
		t.Fatalf("the slow call ended (%v) before the hook ran", err)
	case <-time.After(startTimeout):
		t.Fatal("the slow hook never started")
	}
	d.stop(t)
	if err := <-inFlight; err != nil {
		t.Fatalf("in-flight call at shutdown: %v; want it to complete", err)
	}
	for range events { // events sent before the shutdown
	}
	if err := <-recvErr; status.Code(err) != codes.Unavailable {
		t.Fatalf("live stream ended with %v; want UNAVAILABLE", err)
	}
}

// signalHandler is a log handler that sends on c for each record whose
// message is msg, and drops every record.
type signalHandler struct {
	msg string
	c   chan struct{}
}

func (signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.c <- struct{}{}:
		default: // one signal waiting is enough
		}
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// waitFor polls cond until it holds, failing the test after startTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
