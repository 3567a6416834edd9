package server_test

import (
	"context"
	"github.com/apihooks/apihooks/internal/logtest"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

// logBuffer is a log destination tests can read while the daemon writes.
type logBuffer = logtest.Buffer

// launch starts the daemon against the external etcd at endpoints, keeping
// its snapshot file in dataDir; ready receives its address once it serves.
func launch(endpoints []string, dataDir string, configure ...func(*server.Config)) (d *daemon, ready chan net.Addr, logs *logBuffer) {
	logs = &logBuffer{}
	ready = make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d = &daemon{cancel: cancel, done: make(chan error, 1)}
	cfg := server.Config{
		Listen:          "127.0.0.1:0",
		DataDir:         dataDir,
		EtcdEndpoints:   endpoints,
		EtcdDialTimeout: time.Second,
		Prefix:          "/apihooks/",
		HookTimeout:     time.Second,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
		Ready:           func(a net.Addr) { ready <- a },
	}
	for _, f := range configure {
		f(&cfg)
	}
	go func() { d.done <- server.Run(ctx, cfg) }()
	return d, ready, logs
}

// runDaemon launches the daemon and waits until it serves; it stops when
// the test ends.
func runDaemon(t *testing.T, endpoints []string, dataDir string, configure ...func(*server.Config)) (*daemon, *logBuffer) {
	t.Helper()
	d, ready, logs := launch(endpoints, dataDir, configure...)
	waitServing(t, d, ready, logs)
	return d, logs
}

func waitServing(t *testing.T, d *daemon, ready chan net.Addr, logs *logBuffer) {
	t.Helper()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-d.done:
		t.Fatalf("daemon stopped: %v\n%s", err, logs)
	case <-time.After(startTimeout):
		d.cancel()
		<-d.done
		t.Fatalf("daemon did not start\n%s", logs)
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn = conn
	t.Cleanup(func() {
		conn.Close()
		d.stop(t)
	})
}

// waitUntil polls cond until it holds, failing the test after startTimeout.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func denied(d *daemon, message string) func() (bool, string) {
	return func() (bool, string) {
		_, err := eventsv1.NewEventServiceClient(d.conn).SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		return status.Code(err) == codes.PermissionDenied && status.Convert(err).Message() == message, "SendEvent: " + status.Convert(err).String()
	}
}

func health(d *daemon, service string, want healthpb.HealthCheckResponse_ServingStatus) func() (bool, string) {
	return func() (bool, string) {
		h, err := healthpb.NewHealthClient(d.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		return err == nil && h.Status == want, "health " + service + ": " + h.GetStatus().String() + " " + status.Convert(err).String()
	}
}

func TestDaemonStartsFromItsSnapshotWhileEtcdIsDownAndCatchesUp(t *testing.T) {
	for _, tt := range []struct {
		name string
		// auth enables etcd's authentication: the daemon logs in with a
		// password, which it cannot do while etcd is down.
		auth bool
		// refused: etcd stays up, but takes the daemon's password no
		// longer (it was changed in etcd, not yet in the daemon's
		// configuration), from the restart until it is changed to it.
		refused bool
	}{
		{name: "without authentication"},
		{name: "with a user and password", auth: true},
		{name: "with a password etcd refuses", auth: true, refused: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := etcdtest.Start(t)
			writer, login := e.Client, func(*server.Config) {}
			if tt.auth {
				writer = enableAuth(t, e, "root", "s3cret")
				login = func(c *server.Config) { c.EtcdUser, c.EtcdPassword = "root", "s3cret" }
			}
			dataDir := t.TempDir()
			const key = "/apihooks/hooks/events.v1.EventService/SendEvent/pre/deny"
			ctx := context.Background()

			// A daemon with etcd loads a hook and keeps it in its snapshot file.
			d, _ := runDaemon(t, e.Endpoints(), dataDir, login)
			waitUntil(t, "etcd health SERVING", health(d, server.EtcdHealthService, healthpb.HealthCheckResponse_SERVING))
			if _, err := writer.Put(ctx, key, `{"script":"({status: 403, message: 'v1'})"}`); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the hook in force", denied(d, "v1"))
			waitUntil(t, "the snapshot file", func() (bool, string) {
				b, err := os.ReadFile(filepath.Join(dataDir, "hooks-snapshot.json"))
				return err == nil && strings.Contains(string(b), "v1"), string(b)
			})
			d.stop(t)

			// etcd goes down, or refuses the daemon's password; a daemon
			// restarted now serves the snapshot's hooks.
			if tt.refused {
				if _, err := writer.UserChangePassword(ctx, "root", "n3w"); err != nil {
					t.Fatal(err)
				}
				// etcd must have time to refuse the login (bcrypt, on a
				// busy machine), or the daemon takes it for down.
				base := login
				login = func(c *server.Config) { base(c); c.EtcdDialTimeout = 30 * time.Second }
			} else {
				e.Stop()
			}
			d, logs := runDaemon(t, e.Endpoints(), dataDir, login)
			if ok, got := denied(d, "v1")(); !ok {
				t.Fatalf("with etcd down: %s; want the snapshot's hook in force (PermissionDenied v1)", got)
			}
			if !strings.Contains(logs.String(), "serving hooks from the local snapshot; etcd cannot be read") {
				t.Fatalf("log does not say the hooks come from the snapshot:\n%s", logs)
			}
			if tt.refused && !strings.Contains(logs.String(), "etcd refuses the daemon's user name and password") {
				t.Fatalf("log does not say etcd refuses the password:\n%s", logs)
			}
			if ok, got := health(d, "", healthpb.HealthCheckResponse_SERVING)(); !ok {
				t.Fatalf("overall %s; want SERVING", got)
			}
			if ok, got := health(d, server.EtcdHealthService, healthpb.HealthCheckResponse_NOT_SERVING)(); !ok {
				t.Fatalf("%s; want NOT_SERVING while etcd is down", got)
			}

			// etcd returns, or takes the daemon's password again, with a
			// change: the daemon catches up.
			if tt.refused {
				writer = loggedIn(t, e, "root", "n3w")
				if _, err := writer.UserChangePassword(ctx, "root", "s3cret"); err != nil {
					t.Fatal(err)
				}
				writer = loggedIn(t, e, "root", "s3cret")
			} else {
				e.Start()
			}
			if _, err := writer.Put(ctx, key, `{"script":"({status: 403, message: 'v2'})"}`); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the change made after etcd returned", denied(d, "v2"))
			waitUntil(t, "etcd health SERVING", health(d, server.EtcdHealthService, healthpb.HealthCheckResponse_SERVING))
		})
	}
}

// enableAuth turns on etcd's authentication with user as its root, and
// returns a client logged in as user.
func enableAuth(t *testing.T, e *etcdtest.Etcd, user, password string) *clientv3.Client {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Client.UserAdd(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.UserGrantRole(ctx, user, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return loggedIn(t, e, user, password)
}

// loggedIn returns a client of e logged in as user.
func loggedIn(t *testing.T, e *etcdtest.Etcd, user, password string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), Username: user, Password: password,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDaemonWithoutUsableSnapshotOrEtcdWaitsForEtcd(t *testing.T) {
	tests := []struct {
		name     string
		snapshot string // "" means no file
		wantLog  string
	}{
		{name: "no snapshot file", wantLog: "there is no local snapshot; retrying"},
		{name: "a corrupt snapshot file is logged and ignored", snapshot: `{"version":1,"hooks":[{`, wantLog: "local hook snapshot ignored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := etcdtest.Start(t)
			e.Stop()
			dataDir := t.TempDir()
			if tt.snapshot != "" {
				if err := os.WriteFile(filepath.Join(dataDir, "hooks-snapshot.json"), []byte(tt.snapshot), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d, ready, logs := launch(e.Endpoints(), dataDir)
			waitUntil(t, "the daemon to say it waits", func() (bool, string) {
				return strings.Contains(logs.String(), tt.wantLog), logs.String()
			})
			select {
			case <-ready:
				t.Fatal("the daemon served with neither etcd nor a usable snapshot; want it to wait for etcd")
			case err := <-d.done:
				t.Fatalf("daemon stopped: %v; want it to wait for etcd", err)
			default:
			}
			e.Start()
			waitServing(t, d, ready, logs)
			waitUntil(t, "etcd health SERVING", health(d, server.EtcdHealthService, healthpb.HealthCheckResponse_SERVING))
		})
	}
}

// An etcd with authentication on refuses a daemon that gives no user: the
// daemon waits, saying what to check. EtcdUser may carry the password, as
// etcdctl's --user does; the log never shows it.
func TestDaemonLogsInToEtcdWithAuthentication(t *testing.T) {
	e := etcdtest.Start(t)
	enableAuth(t, e, "root", "s3cret:x")

	d, ready, logs := launch(e.Endpoints(), t.TempDir())
	waitUntil(t, "the daemon to say why it waits", func() (bool, string) {
		return strings.Contains(logs.String(), "etcd refuses to let the daemon read the hooks") &&
			strings.Contains(logs.String(), "check --etcd-user"), logs.String()
	})
	select {
	case <-ready:
		t.Fatal("the daemon served without logging in to etcd")
	default:
	}
	d.cancel()
	<-d.done

	for _, login := range []func(*server.Config){
		func(c *server.Config) { c.EtcdUser = "root:s3cret:x" },
		func(c *server.Config) { c.EtcdUser, c.EtcdPassword = "root", "s3cret:x" },
	} {
		d, logs := runDaemon(t, e.Endpoints(), t.TempDir(), login)
		waitUntil(t, "etcd health SERVING", health(d, server.EtcdHealthService, healthpb.HealthCheckResponse_SERVING))
		if strings.Contains(logs.String(), "s3cret") {
			t.Fatalf("the log shows the password:\n%s", logs)
		}
	}

	for _, tt := range []struct {
		user, password, want string
	}{
		{"root:s3cret:x", "s3cret:x", "etcd user root:... holds a password, and a password is given too"},
		{"root", "", `etcd user "root" has no password`},
		{"", "s3cret:x", "an etcd password is given without a user"},
	} {
		d, _, _ := launch(e.Endpoints(), t.TempDir(), func(c *server.Config) { c.EtcdUser, c.EtcdPassword = tt.user, tt.password })
		select {
		case err := <-d.done:
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("user %q and a password: %v; want an error saying %q, without the password", tt.user, err, tt.want)
			}
		case <-time.After(startTimeout):
			d.cancel()
			<-d.done
			t.Errorf("user %q: the daemon went on; want it to stop with an error", tt.user)
		}
	}
}
