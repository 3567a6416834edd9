package hookctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/hookctl"
)

const getEvents = "events.v1.EventService/GetEvents"

// TestCacheCommands: hookctl writes only cache configurations the daemons
// would take, on methods that can be cached, guarded as hooks are; list
// and get show them as the daemons read them.
func TestCacheCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cacheKey := prefix + "cache/" + getEvents

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no ttl", []string{"cache", "put", getEvents}, "document: field ttl: required"},
		{"a ttl that is not a duration", []string{"cache", "put", getEvents, "--ttl", "soon"}, `field ttl: "soon" is not a Go duration`},
		{"a bad metadata key", []string{"cache", "put", getEvents, "--ttl", "1s", "--key-metadata", "X-Tenant"}, `field keyMetadata: "X-Tenant" is not a lower-case metadata key`},
		{"too many entries", []string{"cache", "put", getEvents, "--ttl", "1s", "--max-entries", "0"}, "field maxEntries: 0 is not between 1"},
		{"a stream", []string{"cache", "put", "events.v1.EventService/StreamEvents", "--ttl", "1s"}, "streams are never cached: events.v1.EventService/StreamEvents is server-streaming"},
		{"a method the service does not have", []string{"cache", "put", "events.v1.EventService/Nope", "--ttl", "1s"}, "has no method Nope"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			r := e.want(hookctl.ExitFailed, tc.args...)
			mustContain(t, tc.name, r.stderr, tc.want)
		})
	}
	r := e.want(hookctl.ExitUsage, "cache", "put", "events.v1.EventService/*", "--ttl", "1s")
	mustContain(t, "a wildcard", r.stderr, "one method at a time")
	if got := e.want(0, "cache", "list").stdout; !strings.Contains(got, "No response cache is configured") {
		t.Fatalf("after refused puts, cache list:\n%s", got)
	}

	r = e.want(0, "cache", "put", getEvents, "--ttl", "30s", "--key-metadata", "x-tenant")
	mustContain(t, "put", r.stdout, "created the cache of "+getEvents+" at revision")
	mustContain(t, "the same put", e.want(0, "cache", "put", getEvents, "--ttl", "30s", "--key-metadata", "x-tenant").stdout, "unchanged")
	mustContain(t, "get", e.want(0, "cache", "get", getEvents).stdout, `"ttl": "30s"`, `"keyMetadata": [`)
	r = e.want(0, "cache", "put", getEvents, "--ttl", "1m", "--max-entries", "10")
	mustContain(t, "put again", r.stdout, "updated the cache of "+getEvents)
	r = e.want(0, "cache", "list")
	mustContain(t, "list", r.stdout, "METHOD", getEvents, "1m0s", "10", "67108864")
	mustNotContain(t, "list", r.stdout, "x-tenant")

	// What etcdctl may write, the daemons refuse: list says why.
	if _, err := e.etcd.Put(context.Background(), cacheKey, `{"ttl":"30s","colour":"red"}`); err != nil {
		t.Fatal(err)
	}
	r = e.want(0, "cache", "list")
	mustContain(t, "list of an invalid document", r.stdout, `INVALID: document: unknown field "colour"`)

	r = e.want(0, "cache", "delete", getEvents)
	mustContain(t, "delete", r.stdout, "deleted the cache of "+getEvents)
	mustContain(t, "get after delete", e.want(hookctl.ExitFailed, "cache", "get", getEvents).stderr, "has no response cache (no key "+cacheKey+")")
	e.want(hookctl.ExitFailed, "cache", "delete", getEvents)
}

// TestACachePutWithWaitIsInForce: once cache put --wait returns, a daemon
// answers the method from its cache; once cache delete --wait returns, it
// no longer does.
func TestACachePutWithWaitIsInForce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := startDaemonOn(t, []string{e.args[1]})
	waitUntil(t, "the daemon registered", func() bool { return strings.Contains(e.want(0, "status").stdout, "in step") })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := eventsv1.NewEventServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count := func() int {
		t.Helper()
		resp, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "alice"})
		if err != nil {
			t.Fatalf("GetEvents: %v", err)
		}
		return len(resp.Events)
	}

	mustContain(t, "put --wait", e.want(0, "cache", "put", getEvents, "--ttl", "1h", "--wait=30s").stdout, "Live on 1 daemon")
	before := count()
	if err := sendAs(t, addr, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != before {
		t.Fatalf("GetEvents with a cache of 1h: %d events after SendEvent, %d before; want the cached answer", got, before)
	}
	mustContain(t, "delete --wait", e.want(0, "cache", "delete", getEvents, "--wait=30s").stdout, "Live on 1 daemon")
	if got := count(); got != before+1 {
		t.Fatalf("GetEvents with no cache: %d events; want %d", got, before+1)
	}
}
