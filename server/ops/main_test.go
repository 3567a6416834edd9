package ops_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

// waitTimeout bounds waiting for a change to show: in etcd, in the daemon,
// on the page.
const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// daemon is an apihooksd running in the test, with its HTTP listener.
type daemon struct {
	grpcAddr, httpAddr string
	conn               *grpc.ClientConn
	events             eventsv1.EventServiceClient
	etcd               *clientv3.Client
}

// startDaemon runs the daemon on its embedded etcd and free loopback
// ports, with the HTTP listener as configure sets it (on 127.0.0.1:0 with
// the page by default). It stops when the test ends.
func startDaemon(t *testing.T, configure func(*server.Config)) *daemon {
	t.Helper()
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

func tryStartDaemon(t *testing.T, configure func(*server.Config)) (*daemon, error) {
	etcdAddr := etcdtest.FreeAddr(t)
	cfg := server.Config{
		Listen:                 "127.0.0.1:0",
		DataDir:                t.TempDir(),
		EmbeddedEtcdListen:     etcdAddr,
		EmbeddedEtcdPeerListen: etcdtest.FreeAddr(t),
		EtcdDialTimeout:        5 * time.Second,
		Prefix:                 "/apihooks/",
		HookTimeout:            5 * time.Second,
		ShutdownTimeout:        5 * time.Second,
		HookQueueWait:          time.Minute,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTP:                   server.HTTPConfig{Listen: "127.0.0.1:0"},
	}
	if configure != nil {
		configure(&cfg)
	}
	grpcReady, httpReady := make(chan net.Addr, 1), make(chan net.Addr, 1)
	cfg.Ready = func(a net.Addr) { grpcReady <- a }
	cfg.HTTP.Ready = func(a net.Addr) { httpReady <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg) }()
	d := &daemon{}
	select {
	case a := <-grpcReady:
		d.grpcAddr = a.String()
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("daemon returned before serving")
		}
		return nil, err
	case <-time.After(waitTimeout):
		cancel()
		t.Fatal("daemon did not start")
	}
	select {
	case a := <-httpReady:
		d.httpAddr = a.String()
	default: // no listener
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("daemon did not stop")
		}
	})
	var err error
	d.conn, err = grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.conn.Close() })
	d.events = eventsv1.NewEventServiceClient(d.conn)
	d.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.etcd.Close() })
	return d, nil
}

func (d *daemon) url(path string) string { return "http://" + d.httpAddr + path }

// put stores a hook document in etcd directly, as hookctl or etcdctl would.
func (d *daemon) put(t *testing.T, key, doc string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/"+key, doc); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, or fails the test after
// waitTimeout, saying what it waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is an HTTP client that keeps no connections between tests.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

var inCI = os.Getenv("CI") != ""

func withPrefix() clientv3.OpOption { return clientv3.WithPrefix() }
