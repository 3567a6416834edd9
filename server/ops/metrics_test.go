package ops_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/proxy"
)

// scrape reads /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, d *daemon) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := client(t).Get(d.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels include
// labels: a counter's, a gauge's, or a histogram's count; -1 when there is
// none.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsMoveAsCallsAreMade(t *testing.T) {
	d := startDaemon(t, nil)
	const method = "/events.v1.EventService/SendEvent"
	d.put(t, "events.v1.EventService/SendEvent/pre/deny-guest",
		`{"script": "module.exports = (ctx) => { if (ctx.request.toUserId === 'guest') return {status: 403} }"}`)
	d.put(t, "events.v1.EventService/SendEvent/post/broken", `{"script": "module.exports = (ctx) => {"}`)
	hook := "events.v1.EventService/SendEvent/pre/deny-guest"
	eventually(t, "the daemon to load both hooks", func() bool {
		f := scrape(t, d)
		return value(f, "apihooks_registry_hooks_loaded", nil) == 1 && value(f, "apihooks_registry_hooks_broken", nil) == 1
	})

	before := scrape(t, d)
	for _, tt := range []struct {
		name string
		want string
	}{
		{"runtime metrics", "go_goroutines"},
		{"process metrics", "process_cpu_seconds_total"},
		{"gRPC server metrics", "grpc_server_started_total"},
		{"runs in flight", "apihooks_hook_runs_in_flight"},
		{"quarantined hooks", "apihooks_hooks_quarantined"},
		{"the registry's revision", "apihooks_registry_revision"},
		{"seconds since the last sync", "apihooks_registry_seconds_since_sync"},
	} {
		if before[tt.want] == nil {
			t.Errorf("%s: no %s in /metrics", tt.name, tt.want)
		}
	}
	if v := value(before, "apihooks_registry_etcd_reachable", nil); v != 1 {
		t.Errorf("apihooks_registry_etcd_reachable = %v; want 1", v)
	}
	if v := value(before, "apihooks_registry_revision", nil); v <= 0 {
		t.Errorf("apihooks_registry_revision = %v; want the revision of the hooks", v)
	}

	// The broken post-hook fails every call it covers; the pre-hook runs
	// first and rejects guests before it.
	ctx := context.Background()
	for range 3 {
		_, err := d.events.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "guest", EventType: "t"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("SendEvent(guest) = %v; want PermissionDenied", err)
		}
	}
	_, err := d.events.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "ana", EventType: "t"})
	if status.Code(err) != codes.Internal {
		t.Fatalf("SendEvent(ana) = %v; want Internal from the broken post-hook", err)
	}

	after := scrape(t, d)
	for _, tt := range []struct {
		name   string
		family string
		labels map[string]string
		delta  float64
	}{
		{"rejections are counted", "apihooks_hook_runs_total",
			map[string]string{"method": method, "hook": hook, "phase": "pre", "outcome": "reject"}, 3},
		{"a hook that lets the call go on is counted", "apihooks_hook_runs_total",
			map[string]string{"method": method, "hook": hook, "phase": "pre", "outcome": "continue"}, 1},
		{"a broken hook is counted as invalid", "apihooks_hook_runs_total",
			map[string]string{"method": method, "hook": "events.v1.EventService/SendEvent/post/broken", "phase": "post", "outcome": "invalid"}, 1},
		{"each run of the pre-hook is timed", "apihooks_hook_run_duration_seconds",
			map[string]string{"method": method, "hook": hook, "phase": "pre"}, 4},
		{"the gRPC calls are counted by code", "grpc_server_handled_total",
			map[string]string{"grpc_method": "SendEvent", "grpc_code": "PermissionDenied"}, 3},
	} {
		b, a := max(value(before, tt.family, tt.labels), 0), value(after, tt.family, tt.labels)
		if a-b != tt.delta {
			t.Errorf("%s: %s%v went from %v to %v; want +%v", tt.name, tt.family, tt.labels, b, a, tt.delta)
		}
	}
}

// TestAProxysMetricsHaveBoundedLabels: a proxy counts a call under its
// method and call shape as the backend's descriptors say; calls of
// methods they do not describe, which a client may make up without end,
// share one series.
func TestAProxysMetricsHaveBoundedLabels(t *testing.T) {
	backend := startDaemon(t, func(c *server.Config) { c.HTTP = server.HTTPConfig{} })
	d := startDaemon(t, func(c *server.Config) { c.Proxy = proxy.Backend{Target: backend.grpcAddr} })
	ctx := context.Background()
	if _, err := d.events.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		err := d.conn.Invoke(ctx, fmt.Sprintf("/made.up.Service%d/Method%d", i, i), &eventsv1.GetEventsRequest{}, &eventsv1.GetEventsResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("a made-up method through the proxy: %v; want Unimplemented from the backend", err)
		}
	}

	fams := scrape(t, d)
	if got := value(fams, "grpc_server_handled_total", map[string]string{"grpc_service": "events.v1.EventService", "grpc_method": "GetEvents", "grpc_type": "unary", "grpc_code": "OK"}); got != 1 {
		t.Errorf("grpc_server_handled_total of a unary GetEvents through the proxy = %v; want 1", got)
	}
	if got := value(fams, "grpc_server_handled_total", map[string]string{"grpc_service": "unknown.Unknown", "grpc_method": "Unknown", "grpc_code": "Unimplemented"}); got != 20 {
		t.Errorf("grpc_server_handled_total of the made-up methods, as unknown.Unknown/Unknown = %v; want 20", got)
	}
	for _, m := range fams["grpc_server_started_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if strings.HasPrefix(lp.GetValue(), "made.up") {
				t.Fatalf("a series for a made-up method: %v", m.GetLabel())
			}
		}
	}
}
