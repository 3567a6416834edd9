package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/proxy"
)

// TestDaemonProxiesAnotherServer runs one daemon as the example service
// and a second one as a proxy in front of it, with a hook of its own: the
// proxy learns the service from the first one's reflection, forwards its
// calls, and runs its hook.
func TestDaemonProxiesAnotherServer(t *testing.T) {
	for _, isolation := range []string{"inprocess", "process"} {
		t.Run("hooks run "+isolation, func(t *testing.T) { testDaemonProxies(t, isolation) })
	}
}

func testDaemonProxies(t *testing.T, isolation string) {
	backend := startDaemon(t)
	front := startDaemonWith(t, func(c *server.Config) {
		c.Proxy = proxy.Backend{Target: backend.addrs[0]}
		c.Isolation = isolation
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := eventsv1.NewEventServiceClient(front.conn)

	if _, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "mallory", EventType: "login"}); err != nil {
		t.Fatalf("SendEvent through the proxy, no hooks: %v", err)
	}
	h, err := healthpb.NewHealthClient(front.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "events.v1.EventService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the proxy's health of events.v1.EventService: %v, %v; want SERVING", h.GetStatus(), err)
	}

	if _, err := front.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/deny",
		`{"script":"module.exports = c => { if (c.request.toUserId === 'mallory') return {status: 403, message: 'not mallory'} }"}`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "mallory", EventType: "login"})
		if st := status.Convert(err); st.Code() == codes.PermissionDenied && st.Message() == "not mallory" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SendEvent through the proxy with its hook: %v; want PermissionDenied from the hook", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login"}); err != nil {
		t.Fatalf("SendEvent to alice through the proxy with its hook: %v", err)
	}
}

// TestDaemonRefusesABadDescriptorSet: a file that is not a descriptor set
// stops the daemon with an error that names it.
func TestDaemonRefusesABadDescriptorSet(t *testing.T) {
	file := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(file, []byte("not a descriptor set"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tryStartDaemon(t, func(c *server.Config) {
		c.Proxy = proxy.Backend{Target: "127.0.0.1:1"}
		c.DescriptorSet = file
	})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("daemon with a bad descriptor set: %v; want an error naming %s", err, file)
	}
}

// TestMaxMessageSize: a proxy takes messages up to --max-message-size, so
// in front of a backend that takes larger ones than gRPC's default of 4
// MiB, it can be given the backend's limit.
func TestMaxMessageSize(t *testing.T) {
	const limit = 8 << 20
	backend := startDaemonWith(t, func(c *server.Config) { c.MaxRecvMsgSize = limit })
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// The backend answers SendEvent from a hook, storing nothing.
	if _, err := backend.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/answer",
		`{"script":"module.exports = c => ({response: {eventId: 'got ' + c.request.eventType.length}})"}`); err != nil {
		t.Fatal(err)
	}
	big := &eventsv1.SendEventRequest{ToUserId: "alice", EventType: strings.Repeat("x", 5<<20)}
	want := fmt.Sprintf("got %d", 5<<20)
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := eventsv1.NewEventServiceClient(backend.conn).SendEvent(ctx, big)
		if err == nil && resp.EventId == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a 5 MiB SendEvent to the backend: %v, %v; want %q from its hook", resp, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, tc := range []struct {
		name  string
		limit int
		want  codes.Code
	}{
		{"gRPC's default", 0, codes.ResourceExhausted},
		{"the backend's limit", limit, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front := startDaemonWith(t, func(c *server.Config) {
				c.Proxy = proxy.Backend{Target: backend.addrs[0]}
				c.MaxRecvMsgSize = tc.limit
			})
			resp, err := eventsv1.NewEventServiceClient(front.conn).SendEvent(ctx, big, grpc.MaxCallSendMsgSize(limit))
			if status.Code(err) != tc.want || (err == nil && resp.EventId != want) {
				t.Fatalf("a 5 MiB SendEvent through the proxy: %v, %v; want %v", resp, err, tc.want)
			}
		})
	}
}

// TestAProxyStartedBeforeItsBackend: a proxy whose backend comes up after
// it learns the backend's descriptors on the first hooked call, runs the
// hooks, and reports the backend's services SERVING in its health.
func TestAProxyStartedBeforeItsBackend(t *testing.T) {
	backendAddr := etcdtest.FreeAddr(t)
	front := startDaemonWith(t, func(c *server.Config) { c.Proxy = proxy.Backend{Target: backendAddr} })
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := front.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/stamp",
		`{"script":"module.exports = c => { c.request.eventType = 'stamped' }"}`); err != nil {
		t.Fatal(err)
	}
	startDaemonWith(t, func(c *server.Config) { c.Listen = backendAddr })

	client := eventsv1.NewEventServiceClient(front.conn)
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login"})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("SendEvent through the proxy once its backend is up: %v; want it served, after UNAVAILABLE at most", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, err := healthpb.NewHealthClient(front.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "events.v1.EventService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the proxy's health of events.v1.EventService: %v, %v; want SERVING", h.GetStatus(), err)
	}
}
