package server_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
)

// stuckHandler is a log handler that blocks each record whose message is
// "stuck" until release is closed: a hook that logs it is stuck in native
// code, as one inside a huge built-in operation would be. Other records
// are dropped.
type stuckHandler struct {
	slog.Handler
	entered chan struct{}
	release chan struct{}
}

func (stuckHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h stuckHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "stuck" {
		return nil
	}
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

func (h stuckHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stuckHandler) WithGroup(string) slog.Handler      { return h }

// callStuck puts a pre-hook on SendEvent that logs "stuck", which h holds,
// and calls SendEvent until a call's hook is stuck there: as a run stuck
// in native code would be. The call goes on until h is released.
func callStuck(t *testing.T, d *daemon, h stuckHandler) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/stuck",
		`{"script": "module.exports = (ctx) => { ctx.log.info('stuck') }", "timeout": "5s"}`); err != nil {
		t.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	deadline := time.Now().Add(startTimeout)
	for {
		done := make(chan struct{})
		go func() {
			defer close(done)
			client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		}()
		select {
		case <-h.entered:
			return
		case <-done: // the hook was not loaded yet
			if time.Now().After(deadline) {
				t.Fatal("the hook never ran")
			}
		}
	}
}

// SIGTERM with a hook run stuck in native code still ends the daemon within
// its shutdown timeout, with the embedded etcd closed and every port free.
func TestShutdownAbandonsRunsStuckInNativeCode(t *testing.T) {
	h := stuckHandler{Handler: slog.DiscardHandler, entered: make(chan struct{}, 1), release: make(chan struct{})}
	// Released only once the daemon has stopped, so that the leak check
	// at the end finds the run's goroutine gone.
	t.Cleanup(func() { close(h.release) })
	d := startDaemonWith(t, func(c *server.Config) { c.Logger, c.ShutdownTimeout = slog.New(h), 3*time.Second })
	callStuck(t, d, h)

	d.stop(t) // fails the test unless the daemon stops

	for _, addr := range d.addrs {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after shutdown, %s is still taken: %v", addr, err)
		}
		lis.Close()
	}
}

// A daemon that shuts down takes its record out of the fleet at once, not
// once its calls have drained: it takes no new call, so hookctl --wait
// must not wait for it to load a change.
func TestShutdownLeavesTheFleetWhileCallsDrain(t *testing.T) {
	h := stuckHandler{Handler: slog.DiscardHandler, entered: make(chan struct{}, 1), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(release)
	// A drain as long as a test may wait: before it ends, the record must
	// be gone.
	d := startDaemonWith(t, func(c *server.Config) { c.Logger, c.ShutdownTimeout = slog.New(h), 10*time.Minute })
	ctx := context.Background()
	waitUntil(t, "the daemon's record", func() (bool, string) {
		return daemonRecords(ctx, d) == 1, "no record"
	})
	callStuck(t, d, h)

	d.cancel()
	waitUntil(t, "the record gone while the call drains", func() (bool, string) {
		return daemonRecords(ctx, d) == 0, "the record is still there"
	})
	release()
	d.stop(t)
}

// daemonRecords counts the records under the fleet's directory, or
// returns -1 when etcd does not answer.
func daemonRecords(ctx context.Context, d *daemon) int64 {
	r, err := d.etcd.Get(ctx, "/apihooks/daemons/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return -1
	}
	return r.Count
}

// A client watching health (gRPC's client-side health checking does) does
// not hold up shutdown: its watch is told NOT_SERVING, then ends with
// UNAVAILABLE, and the daemon stops well within its shutdown timeout.
func TestShutdownEndsHealthWatches(t *testing.T) {
	const timeout = 20 * time.Second
	d := startDaemonWith(t, func(c *server.Config) { c.ShutdownTimeout = timeout })
	ctx := context.Background()
	health := healthpb.NewHealthClient(d.conn)
	type watch struct {
		statuses []healthpb.HealthCheckResponse_ServingStatus
		err      error
	}
	watches := map[string]chan watch{}
	for _, service := range []string{"", "events.v1.EventService", "no.such.Service"} {
		stream, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch %q: %v", service, err)
		}
		done := make(chan watch, 1)
		watches[service] = done
		go func() {
			w := watch{statuses: []healthpb.HealthCheckResponse_ServingStatus{first.Status}}
			for {
				resp, err := stream.Recv()
				if err != nil {
					w.err = err
					done <- w
					return
				}
				w.statuses = append(w.statuses, resp.Status)
			}
		}()
	}

	start := time.Now()
	d.stop(t)
	if took := time.Since(start); took > timeout/4 {
		t.Errorf("the daemon took %v to stop with health watches open; want well within its shutdown timeout of %v", took, timeout)
	}
	for service, want := range map[string][]healthpb.HealthCheckResponse_ServingStatus{
		"":                       {healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING},
		"events.v1.EventService": {healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING},
		"no.such.Service":        {healthpb.HealthCheckResponse_SERVICE_UNKNOWN},
	} {
		var w watch
		select {
		case w = <-watches[service]:
		case <-time.After(startTimeout):
			t.Fatalf("watch %q never ended", service)
		}
		if !slices.Equal(w.statuses, want) || status.Code(w.err) != codes.Unavailable {
			t.Errorf("watch %q saw %v, then %v; want %v, then UNAVAILABLE", service, w.statuses, w.err, want)
		}
	}
}
