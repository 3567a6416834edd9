package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/logtest"
)

// gate holds back the compile of documents whose description is "slow"
// until it is opened.
type gate struct {
	started  chan struct{} // receives once per held compile
	finished chan struct{} // receives once per held compile that returned
	open     chan struct{}
	once     sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{started: make(chan struct{}, 16), finished: make(chan struct{}, 16), open: make(chan struct{})}
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) build(k registry.Key, b []byte, maxTimeout time.Duration, utils *registry.Utils) (*registry.Hook, error) {
	if strings.Contains(string(b), `"slow"`) || slowUtil(utils) {
		g.started <- struct{}{}
		<-g.open
		defer func() { g.finished <- struct{}{} }()
	}
	return registry.BuildWithUtils(k, b, maxTimeout, utils)
}

// slowUtil reports whether the active version of the util Version says
// "slow".
func slowUtil(utils *registry.Utils) bool {
	src, _, _, err := utils.Module("utils/Version")
	return err == nil && strings.Contains(src, "slow")
}

func (g *gate) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(waitTimeout):
		t.Fatal("the slow compile did not start")
	}
}

// releaseAndSettle releases the held compile, waits until it returned, and
// lets r go on with other changes put through c: the held compile's result
// is applied (or dropped) by then, so a test can check it never won.
func (g *gate) releaseAndSettle(t *testing.T, r *registry.Registry, c *clientv3.Client) {
	t.Helper()
	g.release()
	select {
	case <-g.finished:
	case <-time.After(waitTimeout):
		t.Fatal("the slow compile did not return")
	}
	for range 3 {
		marker := put(t, c, "events.v1.EventService/GetEvents/pre/marker", doc("m"))
		waitFor(t, "the marker", func() bool { return r.Snapshot().Revision >= marker })
	}
}

// stillHeld fails the test unless no held compile has finished.
func (g *gate) stillHeld(t *testing.T) {
	t.Helper()
	select {
	case <-g.open:
		t.Fatal("the slow compile was released early")
	default:
	}
}

func TestRegistrySlowDocumentDoesNotDelayOtherKeys(t *testing.T) {
	e := etcdtest.Start(t)
	g := newGate(t)
	r := start(t, e.Client, registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("slow"))
	g.waitStarted(t)
	put(t, e.Client, "events.v1.EventService/GetEvents/pre/deny", doc("fast"))
	waitFor(t, "the fast key while the slow one compiles", hooksAre(r, "/events.v1.EventService/GetEvents", "deny fast"))
	g.stillHeld(t)
	if got := preHooks(r, sendEvent); len(got) != 0 {
		t.Fatalf("SendEvent pre-hooks = %v while its document compiles; want none yet", got)
	}
	g.release()
	waitFor(t, "the slow key once compiled", hooksAre(r, sendEvent, "a slow"))
}

// A full read (here after etcd restarts) while a slow document compiles
// waits for that compile instead of starting another, so other keys still
// take effect at once.
func TestRegistryRereadDoesNotWaitForASlowDocument(t *testing.T) {
	e := etcdtest.Start(t)
	g := newGate(t)
	c := fastClient(t, e.Endpoints())
	r := start(t, c, registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	put(t, c, "events.v1.EventService/SendEvent/pre/a", doc("slow"))
	g.waitStarted(t)
	e.Stop()
	waitFor(t, "the registry to notice etcd is gone", func() bool { return !r.Status().Synced })
	e.Start()
	put(t, c, "events.v1.EventService/GetEvents/pre/deny", doc("fast"))
	waitFor(t, "the fast key while the slow one compiles, across a full read", hooksAre(r, "/events.v1.EventService/GetEvents", "deny fast"))
	g.stillHeld(t)
	g.release()
	waitFor(t, "the slow key once compiled", hooksAre(r, sendEvent, "a slow"))
	select {
	case <-g.started:
		t.Fatal("the slow document was compiled twice")
	default:
	}
}

// A document that changed while the registry was cut off from etcd, and
// compiles slowly, does not hold back changes made after the registry
// read everything again.
func TestRegistryChangesAfterARereadDoNotWaitForItsSlowDocuments(t *testing.T) {
	e := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
	g := newGate(t)
	r := start(t, fastClient(t, []string{proxy.Addr()}), registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	proxy.Cut()
	waitFor(t, "the registry to notice it lost etcd", func() bool { return !r.Status().Synced })
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("slow"))
	proxy.Restore()
	g.waitStarted(t)
	put(t, e.Client, "events.v1.EventService/GetEvents/pre/deny", doc("fast"))
	waitFor(t, "a change after the read while its slow document compiles", hooksAre(r, "/events.v1.EventService/GetEvents", "deny fast"))
	g.stillHeld(t)
	g.release()
	waitFor(t, "the slow key once compiled", hooksAre(r, sendEvent, "a slow"))
	if got := preHooks(r, "/events.v1.EventService/GetEvents"); len(got) != 1 {
		t.Fatalf("after the read's batch: GetEvents pre-hooks = %v; want the later key kept", got)
	}
}

// A full read puts each transaction it finds in force as soon as its own
// documents are compiled: a slow document holds back its transaction, with
// the deletions that may belong to it, and nothing else.
func TestRegistryRereadAppliesEachTransactionWhole(t *testing.T) {
	e := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
	g := newGate(t)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/x", doc("old"))
	r := start(t, fastClient(t, []string{proxy.Addr()}), registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	proxy.Cut()
	waitFor(t, "the registry to notice it lost etcd", func() bool { return !r.Status().Synced })
	dir := registry.HooksDir(registry.DefaultPrefix)
	if _, err := e.Client.Txn(context.Background()).Then(
		clientv3.OpPut(dir+"events.v1.EventService/SendEvent/pre/a", doc("slow")),
		clientv3.OpPut(dir+"events.v1.EventService/SendEvent/pre/b", doc("fast")),
		clientv3.OpDelete(dir+"events.v1.EventService/SendEvent/pre/x"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	put(t, e.Client, "events.v1.EventService/GetEvents/pre/deny", doc("fast"))
	proxy.Restore()
	g.waitStarted(t)
	waitFor(t, "the other transaction of the read", func() bool {
		return len(preHooks(r, "/events.v1.EventService/GetEvents")) == 1
	})
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "x old" {
		t.Fatalf("SendEvent pre-hooks = %v while half its transaction compiles; want [x old] as before it", got)
	}
	g.release()
	waitFor(t, "the whole transaction", func() bool {
		g := preHooks(r, sendEvent)
		return len(g) == 2 && g[0] == "a slow" && g[1] == "b fast"
	})
}

func TestRegistryAppliesATransactionWhole(t *testing.T) {
	e := etcdtest.Start(t)
	g := newGate(t)
	r := start(t, e.Client, registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	dir := registry.HooksDir(registry.DefaultPrefix)
	if _, err := e.Client.Txn(context.Background()).Then(
		clientv3.OpPut(dir+"events.v1.EventService/SendEvent/pre/a", doc("slow")),
		clientv3.OpPut(dir+"events.v1.EventService/SendEvent/pre/b", doc("fast")),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	marker := put(t, e.Client, "events.v1.EventService/GetEvents/pre/marker", doc("m"))
	waitFor(t, "a later transaction on another key", func() bool { return len(preHooks(r, "/events.v1.EventService/GetEvents")) == 1 })
	if got := preHooks(r, sendEvent); len(got) != 0 {
		t.Fatalf("SendEvent pre-hooks = %v while half the transaction compiles; want none", got)
	}
	if got := r.Snapshot().Revision; got < marker {
		t.Fatalf("revision = %d; want at least %d", got, marker)
	}
	g.release()
	waitFor(t, "the whole transaction", func() bool { return len(preHooks(r, sendEvent)) == 2 })
}

func TestRegistryNewerValueWinsOverASlowerOlderOne(t *testing.T) {
	e := etcdtest.Start(t)
	g := newGate(t)
	r := start(t, e.Client, registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("slow"))
	g.waitStarted(t)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	waitFor(t, "v2", func() bool { g := preHooks(r, sendEvent); return len(g) == 1 && g[0] == "a v2" })
	g.releaseAndSettle(t, r, e.Client)
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v2" {
		t.Fatalf("pre-hooks = %v; want the newer [a v2]", got)
	}
}

func TestRegistryTimeoutLimit(t *testing.T) {
	tests := []struct {
		name    string
		opts    []registry.Option
		timeout string
		want    string
	}{
		{name: "over the default limit the key is broken", timeout: "1h",
			want: `limit broken: document: field timeout: "1h" is more than the limit of 5s (--max-hook-timeout)`},
		{name: "a server limit admits more", opts: []registry.Option{registry.WithMaxTimeout(time.Hour)}, timeout: "1h", want: "limit ok"},
		{name: "a server limit refuses less", opts: []registry.Option{registry.WithMaxTimeout(time.Second)}, timeout: "2s",
			want: `limit broken: document: field timeout: "2s" is more than the limit of 1s`},
	}
	e := etcdtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "/t" + string(rune('a'+i)) + "/"
			if _, err := e.Client.Put(context.Background(), prefix+"hooks/events.v1.EventService/SendEvent/pre/limit",
				`{"script":"1","description":"ok","timeout":"`+tt.timeout+`"}`); err != nil {
				t.Fatal(err)
			}
			r := start(t, e.Client, append(tt.opts, registry.WithPrefix(prefix))...)
			got := preHooks(r, sendEvent)
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
				t.Fatalf("pre-hooks = %v; want [%s...]", got, tt.want)
			}
		})
	}
}

// fastClient returns a client to endpoints with the registry's dial
// options.
func fastClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		DialOptions: registry.DialOptions(),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRegistryChangesAfterAnEtcdRestartTakeEffectSoon(t *testing.T) {
	e := etcdtest.Start(t)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
	var mu sync.Mutex
	var syncs []bool
	c := fastClient(t, e.Endpoints())
	r := start(t, c, registry.WithOnSync(func(s bool) { mu.Lock(); syncs = append(syncs, s); mu.Unlock() }))
	if s := r.Status(); !s.Synced || s.FromSnapshot || s.LastSync.IsZero() {
		t.Fatalf("status after Start = %+v; want synced", s)
	}

	e.Stop()
	waitFor(t, "the registry to notice etcd is gone", func() bool { return !r.Status().Synced })
	if got := preHooks(r, sendEvent); len(got) != 1 || got[0] != "a v1" {
		t.Fatalf("while etcd is down: pre-hooks = %v; want [a v1] still in force", got)
	}
	e.Start()
	ready := time.Now()
	put(t, c, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	putDone := time.Now()
	waitFor(t, "the change after the restart", func() bool { g := preHooks(r, sendEvent); return len(g) == 1 && g[0] == "a v2" })
	t.Logf("after etcd was ready again: the put returned in %v; the change was in force %v after etcd was ready",
		putDone.Sub(ready).Round(time.Millisecond), time.Since(ready).Round(time.Millisecond))
	waitFor(t, "synced again", func() bool { return r.Status().Synced })
	mu.Lock()
	defer mu.Unlock()
	if len(syncs) < 3 || !syncs[0] || syncs[1] || !syncs[len(syncs)-1] {
		t.Fatalf("OnSync calls = %v; want true, false, ..., true", syncs)
	}
}

func TestRegistrySnapshotFile(t *testing.T) {
	e := etcdtest.Start(t)
	file := filepath.Join(t.TempDir(), "snap", "hooks.json")
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/broken", `{"script":"1","colour":"red"}`)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/b", doc("v1"))
	r := start(t, e.Client, registry.WithSnapshotFile(file))
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/b", `{"script":"function ("}`) // b keeps v1
	rev := put(t, e.Client, "events.v1.EventService/GetEvents/pre/c", doc("v1"))
	waitFor(t, "the snapshot file to reach the last change", func() bool {
		b, err := os.ReadFile(file)
		return err == nil && strings.Contains(string(b), "GetEvents/pre/c")
	})
	r.Close()
	want := preHooks(r, sendEvent)
	if len(want) != 3 || want[0] != "a v1" || want[1] != "b v1" {
		t.Fatalf("pre-hooks = %v; want a v1, b v1 (its last valid version), broken", want)
	}

	// etcd is unreachable: a new registry serves the file's hooks.
	e.Stop()
	r2 := registry.New(fastClient(t, e.Endpoints()), registry.WithLogger(quiet()), registry.WithSnapshotFile(file),
		registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(r2.Close)
	info, err := r2.StartFromSnapshot()
	if err != nil {
		t.Fatalf("StartFromSnapshot: %v", err)
	}
	if info.Revision < rev || info.Hooks != 4 || time.Since(info.Saved) > time.Minute {
		t.Fatalf("snapshot info = %+v; want revision >= %d, 4 hooks, saved just now", info, rev)
	}
	if got := preHooks(r2, sendEvent); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("from the snapshot: pre-hooks = %v; want %v", got, want)
	}
	if got := preHooks(r2, "/events.v1.EventService/GetEvents"); len(got) != 1 {
		t.Fatalf("from the snapshot: GetEvents pre-hooks = %v; want c", got)
	}
	if s := r2.Status(); s.Synced || !s.FromSnapshot || len(s.Broken) != 1 || !strings.Contains(s.Broken[0], "SendEvent/pre/broken: document: unknown field") {
		t.Fatalf("status from the snapshot = %+v; want not synced, from the snapshot, broken naming the key", s)
	}

	// etcd returns with a change: the registry catches up.
	e.Start()
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v2"))
	waitFor(t, "the catch-up", func() bool { g := preHooks(r2, sendEvent); return len(g) == 3 && g[0] == "a v2" })
	waitFor(t, "synced", func() bool { s := r2.Status(); return s.Synced && !s.FromSnapshot })
}

func TestRegistryStartFromSnapshotRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string // "" means no file
		wantErr string
	}{
		{name: "no file", wantErr: "no such file"},
		{name: "corrupt file", content: `{"version":1,"hooks":[`, wantErr: "unexpected end of JSON"},
		{name: "other version", content: `{"version":9,"prefix":"/apihooks/"}`, wantErr: "version 9"},
		{name: "other prefix", content: `{"version":1,"prefix":"/other/"}`, wantErr: `written for prefix "/other/"`},
		{name: "key outside the prefix", content: `{"version":1,"prefix":"/apihooks/","revision":3,"hooks":[{"key":"/x","value":"{}","modRevision":2}]}`, wantErr: `bad entry "/x"`},
	}
	c := fastClient(t, []string{etcdtest.FreeAddr(t)})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, string(rune('a'+i))+".json")
			if tt.content != "" {
				if err := os.WriteFile(file, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := registry.New(c, registry.WithLogger(quiet()), registry.WithSnapshotFile(file))
			defer r.Close()
			if _, err := r.StartFromSnapshot(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("StartFromSnapshot error = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

// hooksAre returns a condition: the pre-hooks of method are want (see
// preHooks).
func hooksAre(r *registry.Registry, method string, want ...string) func() bool {
	return func() bool { return slices.Equal(preHooks(r, method), want) }
}

// putUtil stores value at key under UtilsDir.
func putUtil(t *testing.T, c *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := c.Put(context.Background(), registry.UtilsDir(registry.DefaultPrefix)+key, value); err != nil {
		t.Fatal(err)
	}
}

// rejection runs the first pre-hook of method and returns the message it
// rejects the call with, or what went wrong.
func rejection(r *registry.Registry, eng *engine.Engine, method string) string {
	c := r.Snapshot().Lookup(method)
	if c == nil || len(c.Pre) == 0 {
		return "no pre-hook"
	}
	h := c.Pre[0]
	if h.Err != nil {
		return "broken: " + h.Err.Error()
	}
	out, err := eng.Run(context.Background(), h.Script, &engine.Call{Method: method, Phase: engine.Pre, Hook: h.Key.Name, Timeout: time.Minute})
	if err != nil {
		return "failed: " + err.Error()
	}
	if out.Status == nil {
		return "did not reject"
	}
	return out.Status.Message()
}

// When a util changes twice, the hooks compiled against its newer version
// stay in force even if those compiled against the older one finish later.
func TestRegistryNewerUtilsWinOverASlowerOlderCompile(t *testing.T) {
	e := etcdtest.Start(t)
	g := newGate(t)
	eng := engine.New(engine.WithLogger(quiet()))
	t.Cleanup(eng.Close)
	putUtil(t, e.Client, "Version/1", `{"script":"module.exports = { v: 1 } // slow"}`)
	putUtil(t, e.Client, "Version/2", `{"script":"module.exports = { v: 2 }"}`)
	putUtil(t, e.Client, "Version/active", `{"version":2}`)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/v",
		`{"script":"({status: 409, message: 'v' + require('utils/Version').v})"}`)
	r := start(t, e.Client, registry.WithBuild(g.build))
	t.Cleanup(g.release) // before Close, which waits for the held compile

	putUtil(t, e.Client, "Version/active", `{"version":1}`)
	g.waitStarted(t)
	dir := registry.UtilsDir(registry.DefaultPrefix)
	if _, err := e.Client.Txn(context.Background()).Then(
		clientv3.OpPut(dir+"Version/3", `{"script":"module.exports = { v: 3 }"}`),
		clientv3.OpPut(dir+"Version/active", `{"version":3}`),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hook to use version 3", func() bool { return rejection(r, eng, sendEvent) == "v3" })
	g.releaseAndSettle(t, r, e.Client)
	if got := rejection(r, eng, sendEvent); got != "v3" {
		t.Fatalf("hook says %q; want v3, from the newest utils", got)
	}
}

// A util that changes while the registry is cut off from etcd is in force
// in the hooks that import it once the registry reads everything again,
// although the hooks' own documents did not change.
func TestRegistryRereadRecompilesHooksWhoseUtilsChanged(t *testing.T) {
	e := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
	rc := fastClient(t, []string{proxy.Addr()})
	eng := engine.New(engine.WithLogger(quiet()))
	t.Cleanup(eng.Close)
	putUtil(t, e.Client, "Version/1", `{"script":"module.exports = { v: 1 }"}`)
	putUtil(t, e.Client, "Version/2", `{"script":"module.exports = { v: 2 }"}`)
	putUtil(t, e.Client, "Version/active", `{"version":1}`)
	put(t, e.Client, "events.v1.EventService/SendEvent/pre/v",
		`{"script":"({status: 409, message: 'v' + require('utils/Version').v})"}`)
	r := start(t, rc)
	if got := rejection(r, eng, sendEvent); got != "v1" {
		t.Fatalf("before: hook says %q; want v1", got)
	}

	proxy.Cut()
	waitFor(t, "the registry to notice it lost etcd", func() bool { return !r.Status().Synced })
	putUtil(t, e.Client, "Version/active", `{"version":2}`)
	proxy.Restore()
	waitFor(t, "the hook to use the util's new version", func() bool { return rejection(r, eng, sendEvent) == "v2" })
}

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// A registry started from its snapshot file while etcd is down says once
// when etcd answers and its hooks are read.
func TestRegistryFromSnapshotLogsWhenEtcdAnswers(t *testing.T) {
	for _, tt := range []struct {
		name string
		// down: etcd does not answer the first reads.
		down bool
	}{{"after reads that failed", true}, {"at the first read", false}} {
		t.Run(tt.name, func(t *testing.T) {
			e := etcdtest.Start(t)
			file := filepath.Join(t.TempDir(), "hooks.json")
			rev := put(t, e.Client, "events.v1.EventService/SendEvent/pre/a", doc("v1"))
			first := start(t, e.Client, registry.WithSnapshotFile(file))
			waitFor(t, "the snapshot file", func() bool {
				b, err := os.ReadFile(file)
				var f struct{ Revision int64 }
				return err == nil && json.Unmarshal(b, &f) == nil && f.Revision >= rev
			})
			first.Close()
			if tt.down {
				e.Stop()
			}

			logs := &syncBuffer{}
			r := registry.New(fastClient(t, e.Endpoints()), registry.WithSnapshotFile(file),
				registry.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
			t.Cleanup(r.Close)
			if _, err := r.StartFromSnapshot(); err != nil {
				t.Fatalf("StartFromSnapshot: %v", err)
			}
			if tt.down {
				waitFor(t, "the registry to say it cannot read etcd", func() bool {
					return strings.Contains(logs.String(), "cannot read hooks from etcd")
				})
				e.Start()
			}
			waitFor(t, "the registry to say etcd answers again", func() bool {
				return strings.Contains(logs.String(), "level=INFO msg=\"etcd answers again; every hook is read\"")
			})
			if !r.Status().Synced {
				t.Fatalf("status = %+v once the recovery is logged; want synced", r.Status())
			}
			r.Close()
			if n := strings.Count(logs.String(), "etcd answers again"); n != 1 {
				t.Fatalf("the recovery is logged %d times; want once:\n%s", n, logs)
			}
		})
	}
}

// TestALargeChangeIsLoggedInOneLine: a change of many keys at once (a
// manifest's apply, a full read) is told in one line at info, each key at
// debug; a change of a few keys logs each at info.
func TestALargeChangeIsLoggedInOneLine(t *testing.T) {
	e := etcdtest.Start(t)
	logs := &syncBuffer{}
	r := start(t, e.Client, registry.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	var ops []clientv3.Op
	for i := range 30 {
		ops = append(ops, clientv3.OpPut(registry.HooksDir(registry.DefaultPrefix)+fmt.Sprintf("events.v1.EventService/SendEvent/pre/h%02d", i), doc("x")))
	}
	resp, err := e.Client.Txn(context.Background()).Then(ops...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 30 hooks", func() bool { return r.Snapshot().Revision >= resp.Header.Revision })
	if n := strings.Count(logs.String(), `msg="hook loaded"`); n != 0 {
		t.Errorf("%d hook loaded lines at info for a change of 30 hooks; want them at debug:\n%s", n, logs)
	}
	if want := fmt.Sprintf(`msg="hooks and cache configurations loaded; each is logged at debug" loaded=30 deleted=0 revision=%d`, resp.Header.Revision); !strings.Contains(logs.String(), want) {
		t.Errorf("the log does not say %s:\n%s", want, logs)
	}
	rev := put(t, e.Client, "events.v1.EventService/SendEvent/pre/one", doc("y"))
	waitFor(t, "the one hook", func() bool { return r.Snapshot().Revision >= rev })
	if !strings.Contains(logs.String(), `msg="hook loaded" key=/apihooks/hooks/events.v1.EventService/SendEvent/pre/one`) {
		t.Errorf("a change of one hook is not logged at info:\n%s", logs)
	}

	// A registry that starts reads the 31 hooks, written in two
	// transactions: one line for the whole read.
	logs2 := &syncBuffer{}
	start(t, e.Client, registry.WithLogger(slog.New(slog.NewTextHandler(logs2, nil))))
	if n := strings.Count(logs2.String(), `msg="hook loaded"`); n != 0 {
		t.Errorf("%d hook loaded lines at info for a start that reads 31 hooks; want them at debug:\n%s", n, logs2)
	}
	if want := fmt.Sprintf(`msg="hooks and cache configurations loaded; each is logged at debug" loaded=31 deleted=0 revision=%d`, rev); !strings.Contains(logs2.String(), want) {
		t.Errorf("the log does not say %s:\n%s", want, logs2)
	}
}
