package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

// serveWorkerIfAsked serves as a hook worker and exits when the daemon
// under test started this test binary as one, as it starts apihooksd.
func serveWorkerIfAsked() {
	if len(os.Args) < 2 || os.Args[1] != isolate.WorkerArg {
		return
	}
	if err := isolate.ServeWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestDaemonIsolatesHooksInProcesses runs the daemon with --isolation
// process and a 32 MiB --hook-memory: a hook that allocates without bound
// fails its call naming the hook and the limit, the daemon goes on, and
// the other hooks keep working.
func TestDaemonIsolatesHooksInProcesses(t *testing.T) {
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
			HookTimeout:            20 * time.Second,
			ShutdownTimeout:        5 * time.Second,
			Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:                  func(a net.Addr) { ready <- a },
			Isolation:              "process",
			HookMemory:             32 << 20,
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
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		conn.Close()
		etcd.Close()
		d.stop(t)
	}()

	hooks := map[string]string{
		"SendEvent/pre/hog":   `{"script":"module.exports = c => { if (c.request.toUserId === 'hog') 'x'.repeat(2**45) }"}`,
		"GetEvents/pre/label": `{"script":"module.exports = c => ({status: 403, message: 'seen ' + c.request.userId})"}`,
	}
	for k, v := range hooks {
		if _, err := etcd.Put(context.Background(), "/apihooks/hooks/events.v1.EventService/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	client := eventsv1.NewEventServiceClient(conn)
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "u"})
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetEvents = %v; want the hook's 403 once it is put", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 2 {
		_, err = client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "hog", EventType: "t"})
		want := "hook events.v1.EventService/SendEvent/pre/hog: worker exceeded its memory limit of 32 MiB; killed"
		if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != want {
			t.Fatalf("SendEvent = %v; want RESOURCE_EXHAUSTED %q", err, want)
		}
		if _, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"}); err != nil {
			t.Fatalf("SendEvent after the hog: %v", err)
		}
		_, err = client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "v"})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "seen v") {
			t.Fatalf("GetEvents after the hog: %v; want the hook's 403", err)
		}
	}
}
