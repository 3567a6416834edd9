package registry_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// hookKey is the key, without prefix, of pre-hook name of SendEvent.
func hookKey(name string) string { return "events.v1.EventService/SendEvent/pre/" + name }

// observe samples the registry's pre-hook count of SendEvent until the test
// ends, recording every count seen.
func observe(t *testing.T, r *registry.Registry) func() map[int]bool {
	t.Helper()
	var mu sync.Mutex
	seen := map[int]bool{}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			n := len(preHooks(r, sendEvent))
			mu.Lock()
			seen[n] = true
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })
	return func() map[int]bool {
		mu.Lock()
		defer mu.Unlock()
		out := map[int]bool{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

func TestRegistryHoldsBackAStagedApplyUntilItsMarkerIsRemoved(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := context.Background()
	marker := registry.ApplyMarker(registry.DefaultPrefix)
	put(t, e.Client, hookKey("a"), doc("v1"))
	r := start(t, e.Client)
	seen := observe(t, r)

	if _, err := e.Client.Put(ctx, marker, `{}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registry to hold back", func() bool { return r.Status().Held })
	inForce := r.Status().Revision
	for i := range 5 {
		put(t, e.Client, hookKey(fmt.Sprint("n", i)), doc("v1"))
	}
	put(t, e.Client, hookKey("a"), doc("v2"))
	// A change after the marker is seen, then the marker's removal: until
	// it, the hooks in force are the ones from before.
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v1" {
		t.Fatalf("while the apply is staged: pre-hooks = %v; want [a v1]", got)
	}
	resp, err := e.Client.Delete(ctx, marker)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the staged changes in force", func() bool { return len(preHooks(r, sendEvent)) == 6 })
	if st := r.Status(); st.Held || st.Revision < resp.Header.Revision || st.Revision <= inForce {
		t.Fatalf("after the apply: status = %+v; want not held, revision >= %d", st, resp.Header.Revision)
	}
	waitFor(t, "the observer to see the change", func() bool { return seen()[6] })
	if got := seen(); len(got) != 2 || !got[1] || !got[6] {
		t.Fatalf("pre-hook counts observed = %v; want only 1 (before) and 6 (after)", got)
	}
}

func TestRegistryStartingDuringAStagedApplyServesTheHooksFromBeforeIt(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := context.Background()
	marker := registry.ApplyMarker(registry.DefaultPrefix)
	put(t, e.Client, hookKey("a"), doc("v1"))
	if _, err := e.Client.Put(ctx, marker, `{}`); err != nil {
		t.Fatal(err)
	}
	put(t, e.Client, hookKey("a"), doc("v2"))
	put(t, e.Client, hookKey("b"), doc("v1"))

	r := start(t, e.Client)
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v1" {
		t.Fatalf("started during the apply: pre-hooks = %v; want [a v1]", got)
	}
	put(t, e.Client, hookKey("c"), doc("v1"))
	if _, err := e.Client.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the apply in force", func() bool {
		g := preHooks(r, sendEvent)
		return len(g) == 3 && g[0] == "a v2"
	})
}

func TestRegistryReadingAgainDuringAStagedApplyKeepsTheHooksInForce(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := context.Background()
	marker := registry.ApplyMarker(registry.DefaultPrefix)
	put(t, e.Client, hookKey("a"), doc("v1"))
	r := start(t, e.Client)
	if _, err := e.Client.Put(ctx, marker, `{}`); err != nil {
		t.Fatal(err)
	}
	put(t, e.Client, hookKey("b"), doc("v1"))
	waitFor(t, "the registry to hold back", func() bool { return r.Status().Held })
	// An outage makes the registry read everything again.
	e.Stop()
	waitFor(t, "the registry to lose etcd", func() bool { return !r.Status().Synced })
	e.Start()
	waitFor(t, "the registry to read etcd again", func() bool { return r.Status().Synced })
	if got := preHooks(r, sendEvent); len(got) != 1 {
		t.Fatalf("after reading again during the apply: pre-hooks = %v; want only a", got)
	}
	if _, err := e.Client.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the apply in force", func() bool { return len(preHooks(r, sendEvent)) == 2 })
}

// TestRegistryStartingDuringAStagedApplyWhoseStartIsCompacted: when etcd
// no longer has the hooks from before a staged apply, a registry starting
// does not serve the apply's partial state, nor no hooks at all: Start
// fails, so the snapshot file serves, held back until the apply ends.
func TestRegistryStartingDuringAStagedApplyWhoseStartIsCompacted(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := context.Background()
	marker := registry.ApplyMarker(registry.DefaultPrefix)
	file := filepath.Join(t.TempDir(), "hooks.json")
	put(t, e.Client, hookKey("a"), doc("v1"))
	first := start(t, e.Client, registry.WithSnapshotFile(file))
	first.Close()

	if _, err := e.Client.Put(ctx, marker, `{}`); err != nil {
		t.Fatal(err)
	}
	put(t, e.Client, hookKey("a"), doc("v2"))
	rev := put(t, e.Client, hookKey("b"), doc("v1"))
	if _, err := e.Client.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}

	r := registry.New(e.Client, registry.WithLogger(quiet()), registry.WithSnapshotFile(file), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(r.Close)
	sctx, cancel := context.WithTimeout(ctx, waitTimeout)
	err := r.Start(sctx)
	cancel()
	if !errors.Is(err, registry.ErrApplyInProgress) || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("Start during an apply whose start is compacted: %v; want an error saying so", err)
	}
	if got := preHooks(r, sendEvent); len(got) != 0 {
		t.Fatalf("after the failed Start: pre-hooks = %v; want none in force", got)
	}
	if _, err := r.StartFromSnapshot(); err != nil {
		t.Fatalf("StartFromSnapshot: %v", err)
	}
	waitFor(t, "the registry to follow etcd, holding back the apply", func() bool { st := r.Status(); return st.Synced && st.Held })
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v1" {
		t.Fatalf("during the apply: pre-hooks = %v; want [a v1], from before it", got)
	}
	if _, err := e.Client.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the apply in force", func() bool {
		g := preHooks(r, sendEvent)
		return len(g) == 2 && g[0] == "a v2"
	})
}
