package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
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
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

const startTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	serveWorkerIfAsked() // see isolation_test.go
	goleak.VerifyTestMain(m)
}

type daemon struct {
	conn   *grpc.ClientConn
	etcd   *clientv3.Client
	cancel context.CancelFunc
	done   chan error
}

// startDaemon runs the daemon on its embedded etcd, on free ports.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	etcdAddr := etcdtest.FreeAddr(t)
	ready := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1)}
	go func() {
		d.done <- server.Run(ctx, server.Config{
			Listen:                 "127.0.0.1:0",
			DataDir:                t.TempDir(),
			EmbeddedEtcdListen:     etcdAddr,
			EmbeddedEtcdPeerListen: etcdtest.FreeAddr(t),
			EtcdDialTimeout:        5 * time.Second,
			Prefix:                 "/apihooks/",
			HookTimeout:            time.Second,
			ShutdownTimeout:        5 * time.Second,
			Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:                  func(a net.Addr) { ready <- a },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-d.done:
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(startTimeout):
		t.Fatal("daemon did not start")
	}
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
	return d
}

func (d *daemon) stop(t *testing.T) {
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
	time.Sleep(100 * time.Millisecond)
	if _, err := healthpb.NewHealthClient(d.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check with a global hook: %v; want it untouched", err)
	}
}

func TestDaemonDrainsOnShutdown(t *testing.T) {
	d := startDaemon(t)
	ctx := context.Background()
	// A hook that takes a while, so a call is in flight at shutdown.
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/slow",
		`{"script":"var end = Date.now() + 300; while (Date.now() < end) {}; undefined"}`); err != nil {
		t.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	stream, err := client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "watcher"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the hook is loaded and the stream is live

	inFlight := make(chan error, 1)
	go func() {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		inFlight <- err
	}()
	time.Sleep(100 * time.Millisecond)
	d.stop(t)
	if err := <-inFlight; err != nil {
		t.Fatalf("in-flight call at shutdown: %v; want it to complete", err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("live stream ended with %v; want UNAVAILABLE", err)
		}
		break
	}
}
