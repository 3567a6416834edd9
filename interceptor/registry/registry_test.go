package registry_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// waitTimeout bounds how long a test waits for a change to reach a registry.
const waitTimeout = 10 * time.Second

const sendEvent = "/events.v1.EventService/SendEvent"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func put(t *testing.T, c *clientv3.Client, key, doc string) int64 {
	t.Helper()
	resp, err := c.Put(context.Background(), registry.DefaultPrefix+"hooks/"+key, doc)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func start(t *testing.T, c *clientv3.Client, opts ...registry.Option) *registry.Registry {
	t.Helper()
	r := registry.New(c, append([]registry.Option{registry.WithLogger(quiet()), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// preHooks returns "id@revision" for each pre-hook of method, or an error
// text for a broken one.
func preHooks(r *registry.Registry, method string) []string {
	c := r.Snapshot().Lookup(method)
	if c == nil {
		return nil
	}
	var out []string
	for _, h := range c.Pre {
		s := h.Key.Name
		if h.Err != nil {
			s += " broken: " + h.Err.Error()
		} else {
			s += " " + h.Doc.Description
		}
		out = append(out, s)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func doc(desc string) string { return `{"script":"1","description":"` + desc + `"}` }

func TestRegistryLoadsThenFollowsChanges(t *testing.T) {
	e := etcdtest.Start(t)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
	r := start(t, e.Client)

	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v1" {
		t.Fatalf("after Start: pre-hooks = %v; want [a v1]", got)
	}

	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	waitFor(t, "the change to a", func() bool { g := preHooks(r, sendEvent); return len(g) == 1 && g[0] == "a v2" })

	rev := put(t, e.Client, "events.v1.EventService/SendEvent/pre/b", doc("v1"))
	waitFor(t, "the new hook b", func() bool { return len(preHooks(r, sendEvent)) == 2 })
	if got := r.Snapshot().Revision; got < rev {
		t.Fatalf("snapshot revision = %d; want at least %d", got, rev)
	}

	if _, err := e.Client.Delete(context.Background(), registry.DefaultPrefix+"hooks/events.v1.EventService/SendEvent/pre/a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion of a", func() bool { g := preHooks(r, sendEvent); return len(g) == 1 && g[0] == "b v1" })
}

func TestRegistryInvalidDocuments(t *testing.T) {
	e := etcdtest.Start(t)
	r := start(t, e.Client)

	// A key that had a valid version keeps running it.
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("good"))
	waitFor(t, "a", func() bool { return len(preHooks(r, sendEvent)) == 1 })
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", `{"script":"function ("}`)
	marker := put(t, e.Client, "events.v1.EventService/GetEvents/pre/marker", doc("m"))
	waitFor(t, "the marker", func() bool { return r.Snapshot().Revision >= marker })
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a good" {
		t.Fatalf("after a bad update: pre-hooks = %v; want the good version [a good]", got)
	}

	// A key that never had one is broken: the methods it covers fail.
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/z", `{"script":"1","colour":"red"}`)
	waitFor(t, "z", func() bool { return len(preHooks(r, sendEvent)) == 2 })
	got := preHooks(r, sendEvent)
	if !strings.Contains(got[1], `z broken: document: unknown field "colour"`) {
		t.Fatalf("pre-hooks = %v; want z broken naming the field colour", got)
	}

	// Fixing it replaces the broken entry.
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/z", doc("fixed"))
	waitFor(t, "z fixed", func() bool { g := preHooks(r, sendEvent); return len(g) == 2 && g[1] == "z fixed" })

	// A bad key name still covers its method.
	put(t, e.Client, "events.v1.EventService/GetEvents/pre/Bad", doc("x"))
	waitFor(t, "the bad key", func() bool { return len(preHooks(r, "/events.v1.EventService/GetEvents")) == 2 })
	if g := preHooks(r, "/events.v1.EventService/GetEvents"); !strings.Contains(g[0], `Bad broken: key`) {
		t.Fatalf("GetEvents pre-hooks = %v; want the bad key first, broken", g)
	}
}

func TestRegistryIgnoresServicesThatAreNotHookable(t *testing.T) {
	e := etcdtest.Start(t)
	put(t, e.Client, "grpc.health.v1.Health/Check/pre/a", doc("x"))
	put(t, e.Client, "other.v1.Other/Call/pre/a", doc("x"))
	put(t, e.Client, "*/*/pre/g", doc("global"))
	r := start(t, e.Client, registry.WithServices("events.v1.EventService"))
	if c := r.Snapshot().Lookup("/other.v1.Other/Call"); c != nil {
		t.Fatalf("other.v1.Other/Call has %d pre-hooks; want none (not hookable)", len(c.Pre))
	}
	if c := r.Snapshot().Lookup("/grpc.health.v1.Health/Check"); c != nil {
		t.Fatalf("health check has hooks; want none")
	}
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "g global" {
		t.Fatalf("SendEvent pre-hooks = %v; want the global hook", got)
	}
}

func TestRegistryCatchesUpAfterEtcdRestart(t *testing.T) {
	e := etcdtest.Start(t)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
	r := start(t, e.Client)

	e.Stop()
	if got := preHooks(r, sendEvent); len(got) != 1 {
		t.Fatalf("while etcd is down: pre-hooks = %v; want the hook still in force", got)
	}
	waitFor(t, "the registry to notice etcd is gone", func() bool { return !r.Status().Synced })
	e.Start()
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	waitFor(t, "the change after the restart", func() bool { g := preHooks(r, sendEvent); return len(g) == 1 && g[0] == "a v2" })
}

func TestRegistryCatchesUpAfterCompaction(t *testing.T) {
	e := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
	rc, err := clientv3.New(clientv3.Config{Endpoints: []string{proxy.Addr()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/gone", doc("v1"))
	r := start(t, rc)
	if got := preHooks(r, sendEvent); len(got) != 2 {
		t.Fatalf("pre-hooks = %v; want 2", got)
	}

	// The registry loses etcd; meanwhile hooks change and history is compacted.
	proxy.Cut()
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	if _, err := e.Client.Delete(context.Background(), registry.DefaultPrefix+"hooks/events.v1.EventService/SendEvent/pre/gone"); err != nil {
		t.Fatal(err)
	}
	rev := put(t, e.Client, "events.v1.EventService/SendEvent/pre/new", doc("v1"))
	if _, err := e.Client.Compact(context.Background(), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if got := preHooks(r, sendEvent); len(got) != 2 || got[0] != "a v1" {
		t.Fatalf("while cut off: pre-hooks = %v; want the old ones still in force", got)
	}
	proxy.Restore()
	waitFor(t, "the registry to catch up", func() bool {
		g := preHooks(r, sendEvent)
		return len(g) == 2 && g[0] == "a v2" && g[1] == "new v1"
	})
}

func TestRegistryStartFailsWhenEtcdIsUnreachable(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdtest.FreeAddr(t)}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := registry.New(c, registry.WithLogger(quiet()))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.Start(ctx); err == nil || !strings.Contains(err.Error(), "registry: read /apihooks/hooks/") {
		t.Fatalf("Start error = %v; want a read error naming the prefix", err)
	}
}
