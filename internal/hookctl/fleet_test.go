package hookctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/hookctl"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/fleet"
	"github.com/apihooks/apihooks/server/proxy"
)

// startDaemonOn starts a real daemon on the etcd at endpoints and returns
// its gRPC address; it stops when the test ends.
func startDaemonOn(t testing.TB, endpoints []string) string {
	t.Helper()
	return startConfiguredDaemonOn(t, endpoints, nil)
}

// startConfiguredDaemonOn is startDaemonOn with the configuration as
// configure changes it.
func startConfiguredDaemonOn(t testing.TB, endpoints []string, configure func(*server.Config)) string {
	t.Helper()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.Config{
		Listen:          "127.0.0.1:0",
		DataDir:         t.TempDir(),
		EtcdEndpoints:   endpoints,
		EtcdDialTimeout: 5 * time.Second,
		Prefix:          prefix,
		HookTimeout:     5 * time.Second,
		// Load tests queue calls rather than refuse them.
		MaxHookRuns:     8,
		HookQueueWait:   10 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:           func(a net.Addr) { ready <- a },
	}
	if configure != nil {
		configure(&cfg)
	}
	go func() { done <- server.Run(ctx, cfg) }()
	var addr string
	select {
	case a := <-ready:
		addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("daemon did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return addr
}

// sendAs calls SendEvent on the daemon at addr as user.
func sendAs(t testing.TB, addr, user string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	data, _ := structpb.NewStruct(map[string]any{"device": "phone"})
	_, err = eventsv1.NewEventServiceClient(conn).SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: user, EventType: "login", EventData: data})
	return err
}

// waitUntil polls cond until it holds, within a generous deadline.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manifestOf writes a manifest of n hooks on GetEvents into a new
// directory; the hook named changed gets params {"v":version}.
func manifestOf(t testing.TB, n int, changed, version string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noop.js"), []byte("undefined\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("hooks:\n")
	for i := range n {
		name := fmt.Sprintf("h%04d", i)
		fmt.Fprintf(&b, "  - method: events.v1.EventService/GetEvents\n    phase: pre\n    name: %s\n    script: noop.js\n", name)
		if name == changed {
			fmt.Fprintf(&b, "    params: {v: %q}\n", version)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestApplyWaitsForEveryDaemonAndStatusListsThem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	endpoints := []string{e.args[1]}
	a, b := startDaemonOn(t, endpoints), startDaemonOn(t, endpoints)

	waitUntil(t, "both daemons registered", func() bool {
		return strings.Count(e.want(0, "status").stdout, "in step") == 2
	})
	r := e.want(0, "apply", "-f", scriptsDir, "--wait=30s")
	mustContain(t, "apply --wait", r.stdout, "Live on 2 daemons at revision")
	// --wait returned: the hooks are in force on both, with no polling.
	for _, addr := range []string{a, b} {
		if err := sendAs(t, addr, "mallory"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("SendEvent as mallory on %s right after apply --wait: got %v; want PermissionDenied", addr, err)
		}
	}
	r = e.want(0, "status")
	mustContain(t, "status", r.stdout, a, b, "inprocess")
	if strings.Count(r.stdout, "in step") != 2 {
		t.Errorf("status: want both daemons in step\n%s", r.stdout)
	}
	mustContain(t, "disable --wait", e.want(0, "disable", "events.v1.EventService/SendEvent", "pre", "deny-guest", "--wait").stdout, "Live on 2 daemons")
	if err := sendAs(t, a, "mallory"); err != nil {
		t.Errorf("SendEvent as mallory after disable --wait: %v; want it served", err)
	}

	t.Run("a daemon that does not load the write is named, exit 4", func(t *testing.T) {
		stuck := fleet.Register(e.etcd, "stuck", func() fleet.Record {
			return fleet.Record{ID: "stuck", Address: "10.0.0.9:50051", Revision: 1, Synced: true}
		}, fleet.WithPrefix(prefix))
		defer stuck.Close()
		waitUntil(t, "the stuck daemon's record", func() bool { return strings.Contains(e.want(0, "status").stdout, "stuck") })
		r := e.want(hookctl.ExitWait, "enable", "events.v1.EventService/SendEvent", "pre", "deny-guest", "--wait=1s")
		mustContain(t, "enable --wait", r.stderr, "not every daemon has loaded it", "stuck (10.0.0.9:50051, revision 1")
		mustNotContain(t, "enable --wait", r.stderr, a)
		// The CI job run again: nothing to write, but still not live.
		r = e.want(hookctl.ExitWait, "apply", "-f", scriptsDir, "--wait=1s")
		mustContain(t, "apply --wait with nothing to write", r.stdout, "No changes")
		mustContain(t, "apply --wait with nothing to write", r.stderr, "not every daemon has loaded it", "stuck (10.0.0.9:50051, revision 1")
	})
}

func TestAnApplyTooLargeForOneTransactionIsStagedAndDaemonsSeeItAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := startDaemonOn(t, []string{e.args[1]})
	// The daemon registers once it serves: --wait waits for the daemons
	// registered when it reads them.
	waitUntil(t, "the daemon registered", func() bool { return strings.Contains(e.want(0, "status").stdout, "in step") })
	e.want(0, "apply", "-f", scriptsDir, "--wait=30s")
	if err := sendAs(t, addr, "mallory"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("before: %v; want PermissionDenied", err)
	}
	// A manifest of 400 hooks on GetEvents that drops the example's, with
	// --prune: killed after two of its transactions.
	dir := manifestOf(t, 400, "", "")
	errKilled := errors.New("killed")
	stop := hookctl.WithStep(func(done, total int) error {
		if done == 2 {
			return errKilled
		}
		return nil
	})
	r := runHookctl(t, append(append([]string{}, e.args...), "apply", "-f", dir, "--prune"), stop)
	if r.code == 0 {
		t.Fatalf("apply stopped part way: exit 0\n%s", r)
	}
	mustContain(t, "apply stopped part way", r.stderr, "staging the apply over", "stopped after 2 of", "run apply again to resume it")
	// The daemon keeps the hooks in force before it.
	if err := sendAs(t, addr, "mallory"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("during the stopped apply: %v; want the old deny hook still in force", err)
	}
	waitUntil(t, "status to show the daemon holding back", func() bool {
		return strings.Contains(e.want(0, "status").stdout, "holding back a staged apply")
	})
	// Another writer is told why it cannot write.
	r = e.want(hookctl.ExitEtcd, "disable", "events.v1.EventService/SendEvent", "pre", "deny-guest")
	mustContain(t, "disable during the apply", r.stderr, "a staged apply is in progress")
	// Another manifest, or another version of this one, would put the
	// stopped apply's partial state in force: it is refused.
	r = e.want(hookctl.ExitEtcd, "apply", "-f", scriptsDir)
	mustContain(t, "apply of another manifest during the apply", r.stderr, "a staged apply of another manifest", dir, "nothing was written")
	r = e.want(hookctl.ExitEtcd, "apply", "-f", dir)
	mustContain(t, "apply of the manifest without --prune", r.stderr, "a staged apply of another manifest")
	r = e.want(0, "apply", "-f", scriptsDir, "--dry-run")
	mustContain(t, "a dry run of another manifest", r.stderr, "this apply would be refused")
	if err := sendAs(t, addr, "mallory"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the refused applies: %v; want the old deny hook still in force", err)
	}

	r = e.want(0, "apply", "-f", dir, "--prune", "--wait=30s")
	mustContain(t, "apply again", r.stderr, "this apply completes it")
	mustContain(t, "apply again", r.stdout, "Live on 1 daemon")
	if err := sendAs(t, addr, "mallory"); err != nil {
		t.Fatalf("after the apply: %v; want the deny hook gone", err)
	}
	if n := len(e.hooks()); n != 400 {
		t.Errorf("hooks in etcd: %d; want 400 and no marker", n)
	}
	e.want(0, "diff", "-f", dir, "--prune")

	t.Run("abort puts back the hooks from before", func(t *testing.T) {
		before := e.hooks()
		r := runHookctl(t, append(append([]string{}, e.args...), "apply", "-f", scriptsDir, "--prune"), stop)
		if r.code == 0 {
			t.Fatalf("apply stopped part way: exit 0\n%s", r)
		}
		r = e.want(0, "apply", "--abort", "--wait=30s")
		mustContain(t, "abort", r.stdout, "Aborted the staged apply", "Live on 1 daemon")
		if after := e.hooks(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("after --abort: %d hooks; want the %d from before", len(after), len(before))
		}
	})
}

func TestAThousandHooksApplyAndReapplyOnADefaultEtcd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.want(0, "apply", "-f", manifestOf(t, 1000, "", ""))
	mustContain(t, "first apply", r.stdout, "1000 added")
	rev := e.revision()
	r = e.want(0, "apply", "-f", manifestOf(t, 1000, "h0500", "2"))
	mustContain(t, "apply with one change", r.stdout, "0 added, 1 changed, 0 removed")
	if got := e.revision(); got != rev+1 {
		t.Errorf("revision after one change: %d; want %d (one transaction)", got, rev+1)
	}
	e.want(0, "diff", "-f", manifestOf(t, 1000, "h0500", "2"))
	e.want(1, "diff", "-f", manifestOf(t, 1000, "h0500", "3"))
}

func TestErrorsNeverReadAsChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks:\n  - method: [\n")
	r := e.want(hookctl.ExitUsage, "diff", "-f", dir)
	mustContain(t, "diff of an invalid manifest", r.stderr, "hooks.yaml")
	// The manifest is wrong, not the command line.
	mustNotContain(t, "diff of an invalid manifest", r.stderr, "--help")
	e.want(hookctl.ExitFailed, "validate", "-f", dir)

	big := t.TempDir()
	// A script may be 1 MiB at most; its params make the document larger
	// than one etcd request.
	writeFile(t, filepath.Join(big, "big.js"), "module.exports = () => {}\n")
	writeFile(t, filepath.Join(big, "hooks.yaml"), "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: big\n    script: big.js\n    params: {blob: "+strings.Repeat("x", 2<<20)+"}\n")
	for _, cmd := range []string{"validate", "apply"} {
		r = e.want(hookctl.ExitFailed, cmd, "-f", big)
		mustContain(t, cmd+" of a 2 MB document", r.stderr, "hooks.yaml:2: hook events.v1.EventService/SendEvent pre big: the document is", "--max-request-bytes")
	}
	r = e.want(hookctl.ExitUsage, "diff", "-f", big)
	mustContain(t, "diff of a 2 MB document", r.stderr, "--max-request-bytes")
}

func TestAPrefixWithoutItsSlashIsNormalised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.want(0, "--prefix", "/apihooks", "apply", "-f", scriptsDir)
	mustContain(t, "apply --prefix /apihooks", r.stderr, `--prefix "/apihooks" does not end with /: using "/apihooks/"`)
	if _, ok := e.hooks()["events.v1.EventService/SendEvent/pre/deny-guest"]; !ok {
		t.Errorf("hooks under %s: %v; want the manifest's", registry.HooksDir(prefix), e.hooks())
	}
}

// BenchmarkApplyThousandHooks measures applying a manifest of 1,000 hooks
// to an embedded etcd with default limits (staged), and applying it again
// with one change (one transaction).
func BenchmarkApplyThousandHooks(b *testing.B) {
	e := newBenchEnv(b)
	first := manifestOf(b, 1000, "", "")
	b.Run("first apply of 1000 hooks", func(b *testing.B) {
		for i := range b.N {
			if i > 0 {
				b.StopTimer()
				e.clear(b)
				b.StartTimer()
			}
			e.mustApply(b, first)
		}
	})
	b.Run("apply again with one change", func(b *testing.B) {
		dirs := []string{manifestOf(b, 1000, "h0500", "a"), manifestOf(b, 1000, "h0500", "b")}
		e.mustApply(b, dirs[1])
		b.ResetTimer()
		for i := range b.N {
			e.mustApply(b, dirs[i%2])
		}
	})
}

// benchEnv is hookctl against a test etcd, for benchmarks.
type benchEnv struct {
	e *etcdtest.Etcd
}

func newBenchEnv(b *testing.B) *benchEnv { return &benchEnv{e: etcdtest.Start(b)} }

func (e *benchEnv) mustApply(b *testing.B, dir string) {
	var out, errb bytes.Buffer
	args := []string{"--endpoints", e.e.Endpoints()[0], "apply", "-f", dir}
	if code := hookctl.Main(context.Background(), args, nil, &out, &errb, hookctl.WithGetenv(func(string) string { return "" })); code != 0 {
		b.Fatalf("apply: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

func (e *benchEnv) clear(b *testing.B) {
	if _, err := e.e.Client.Delete(context.Background(), registry.HooksDir(prefix), clientv3.WithPrefix()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPutToInForceOnTwoDaemons measures the time from a put of a hook
// to the hook in force on both of two daemons following one etcd (seen by
// calls that it answers), beside a put seen by a plain etcd watcher.
func BenchmarkPutToInForceOnTwoDaemons(b *testing.B) {
	e := etcdtest.Start(b)
	daemons := []string{startDaemonOn(b, e.Endpoints()), startDaemonOn(b, e.Endpoints())}
	key := registry.HooksDir(prefix) + "events.v1.EventService/SendEvent/pre/deny"
	doc := func(user string) string {
		return `{"script":"module.exports = (ctx) => { if (ctx.request.toUserId === ctx.params.user) return {status: 403, message: 'no'} }","params":{"user":"` + user + `"}}`
	}
	conns := make([]eventsv1.EventServiceClient, len(daemons))
	for i, addr := range daemons {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		conns[i] = eventsv1.NewEventServiceClient(cc)
	}
	data, _ := structpb.NewStruct(map[string]any{"device": "phone"})
	ctx := context.Background()
	b.Run("put seen by an etcd watcher (baseline)", func(b *testing.B) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wch := e.Client.Watch(wctx, key+"-watched")
		for i := range b.N {
			if _, err := e.Client.Put(ctx, key+"-watched", fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
			<-wch
		}
	})
	b.Run("put to in force on both daemons", func(b *testing.B) {
		for i := range b.N {
			user := fmt.Sprint("u", i)
			if _, err := e.Client.Put(ctx, key, doc(user)); err != nil {
				b.Fatal(err)
			}
			for _, c := range conns {
				for {
					_, err := c.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: user, EventType: "login", EventData: data})
					if status.Code(err) == codes.PermissionDenied {
						break
					}
				}
			}
		}
	})
}

func TestAPostHookOnAStreamOfTheExampleServiceIsRefusedWithoutServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - method: events.v1.EventService/StreamEvents
    phase: post
    name: never
    script: ok.js
  - method: other.v1.Other/Stream
    phase: post
    name: unknown-service-is-not-checked
    script: ok.js
`)
	r := runHookctl(t, []string{"validate", "-f", dir})
	if r.code != hookctl.ExitFailed {
		t.Fatalf("validate: got exit %d; want 1\n%s", r.code, r)
	}
	mustContain(t, "validate", r.stderr, "hooks.yaml:2: hook events.v1.EventService/StreamEvents post never: post-hooks never run on streams", "1 problem found")
}

// TestStatusCountsDeletionsAndUtils: a daemon that has not loaded a
// deletion, or a util's change, is behind, though no key left in etcd is
// newer than its revision; a daemon whose hooks are etcd's is in step.
func TestStatusCountsDeletionsAndUtils(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := `{"script":"undefined"}`
	e.put(sendEvent+"/pre/kept", doc)
	rKept := e.put(sendEvent+"/pre/kept", `{"script":"undefined","order":2}`)
	rTmp := e.put(sendEvent+"/pre/tmp", doc)
	del, err := e.etcd.Delete(context.Background(), registry.HooksDir(prefix)+sendEvent+"/pre/tmp")
	if err != nil {
		t.Fatal(err)
	}
	rDel := del.Header.Revision

	// Records of daemons that have loaded the hooks up to a revision.
	daemonAt := func(id string, rev int64) {
		reg := fleet.Register(e.etcd, id, func() fleet.Record {
			return fleet.Record{ID: id, Address: "10.0.0.9:50051", Revision: rev, Synced: true}
		}, fleet.WithPrefix(prefix))
		t.Cleanup(func() { reg.Close() })
	}
	daemonAt("before-tmp", rKept)
	daemonAt("holds-tmp", rTmp)
	daemonAt("after-delete", rDel)
	type daemon struct {
		ID    string `json:"id"`
		Lag   int64  `json:"lag"`
		State string `json:"state"`
	}
	var st struct {
		HooksRevision int64    `json:"hooksRevision"`
		Daemons       []daemon `json:"daemons"`
	}
	statusOf := func() map[string]daemon {
		st.Daemons = nil
		waitUntil(t, "the three records", func() bool {
			if err := json.Unmarshal([]byte(e.want(0, "status", "-o", "json").stdout), &st); err != nil {
				t.Fatal(err)
			}
			return len(st.Daemons) == 3
		})
		m := map[string]daemon{}
		for _, d := range st.Daemons {
			m[d.ID] = d
		}
		return m
	}

	got := statusOf()
	if st.HooksRevision != rDel {
		t.Errorf("hooksRevision = %d; want %d, the deletion", st.HooksRevision, rDel)
	}
	for _, c := range []struct {
		id    string
		lag   int64
		state string
	}{
		// tmp came and went after its revision: it has loaded neither
		// tmp's put nor its deletion, as the header's revision says.
		{"before-tmp", rDel - rKept, fmt.Sprintf("%d behind", rDel-rKept)},
		{"holds-tmp", rDel - rTmp, fmt.Sprintf("%d behind", rDel-rTmp)},
		{"after-delete", 0, "in step"},
	} {
		if d := got[c.id]; d.Lag != c.lag || d.State != c.state {
			t.Errorf("%s: lag %d, state %q; want %d, %q", c.id, d.Lag, d.State, c.lag, c.state)
		}
	}
	r := e.want(0, "status")
	mustContain(t, "status", r.stdout, fmt.Sprintf("hooks last changed at revision %d.", rDel))

	// A util is loaded by daemons too.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.js"), []byte("export function add(a, b) { return a + b }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.want(0, "utils", "put", "Addition", "--script", filepath.Join(dir, "a.js"))
	got = statusOf()
	if st.HooksRevision <= rDel {
		t.Fatalf("hooksRevision = %d after a util's put; want more than %d", st.HooksRevision, rDel)
	}
	if d := got["after-delete"]; d.Lag != st.HooksRevision-rDel {
		t.Errorf("after-delete, after a util's put: lag %d, state %q; want %d behind", d.Lag, d.State, st.HooksRevision-rDel)
	}

	// etcd compacts its history: what it still has is enough.
	rUtil := st.HooksRevision
	daemonAt("after-util", rUtil)
	readAll := func() {
		if err := json.Unmarshal([]byte(e.want(0, "status", "-o", "json").stdout), &st); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the four records", func() bool { readAll(); return len(st.Daemons) == 4 })
	// Writes elsewhere move etcd on; then it forgets the daemons' revisions.
	if _, err := e.etcd.Put(context.Background(), "elsewhere", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.etcd.Compact(context.Background(), e.revision()); err != nil {
		t.Fatal(err)
	}
	readAll()
	got = map[string]daemon{}
	for _, d := range st.Daemons {
		got[d.ID] = d
	}
	if st.HooksRevision != rUtil {
		t.Errorf("after a compaction, hooksRevision = %d; want %d", st.HooksRevision, rUtil)
	}
	if d := got["after-util"]; d.State != "in step" {
		t.Errorf("after-util, after a compaction: state %q; want in step", d.State)
	}
	if d := got["after-delete"]; d.Lag != rUtil-rDel {
		t.Errorf("after-delete, after a compaction: lag %d, state %q; want %d behind", d.Lag, d.State, rUtil-rDel)
	}
}

// TestAHookOnAServiceNoDaemonHooksFailsTheWait: a hook on a misspelt
// service passes every check hookctl can make alone; the daemons ignore
// it, say so in their records, and --wait fails naming it.
func TestAHookOnAServiceNoDaemonHooksFailsTheWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startDaemonOn(t, []string{e.args[1]})
	waitUntil(t, "the daemon registered", func() bool { return strings.Contains(e.want(0, "status").stdout, "in step") })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "deny.js"), `module.exports = () => ({status: 403})`+"\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - method: events.v1.EventServce/SendEvent
    phase: pre
    name: deny
    script: deny.js
`)
	e.want(0, "validate", "-f", dir)
	const why = "ignores events.v1.EventServce/SendEvent/pre/deny: its service events.v1.EventServce is not hookable on this server, which hooks events.v1.EventService"
	r := e.want(hookctl.ExitWait, "apply", "-f", dir, "--wait=30s")
	mustContain(t, "apply --wait", r.stderr, "with hooks that never run there", why)
	// Run again, with nothing to write: the same.
	r = e.want(hookctl.ExitWait, "apply", "-f", dir, "--wait=30s")
	mustContain(t, "apply --wait again", r.stderr, why)
	mustContain(t, "status", e.want(0, "status").stdout, "IGNORED", "ignored events.v1.EventServce/SendEvent/pre/deny: its service")
}

// TestADocumentADaemonRefusesFailsTheWait: a document hookctl accepts but a
// daemon refuses (a timeout over the daemon's --max-hook-timeout, lower
// than hookctl's) leaves the earlier version running there: --wait fails
// naming it, rather than saying the write is live, and status lists it.
func TestADocumentADaemonRefusesFailsTheWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startConfiguredDaemonOn(t, []string{e.args[1]}, func(cfg *server.Config) {
		cfg.HookTimeout, cfg.MaxHookTimeout = time.Second, 2*time.Second
	})
	waitUntil(t, "the daemon registered", func() bool { return strings.Contains(e.want(0, "status").stdout, "in step") })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "deny.js"), `module.exports = () => ({status: 403})`+"\n")
	manifest := func(timeout string) {
		writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - method: events.v1.EventService/SendEvent
    phase: pre
    name: deny
    script: deny.js
    timeout: `+timeout+"\n")
	}
	manifest("1s")
	e.want(0, "apply", "-f", dir, "--wait=30s")
	manifest("3s")
	r := e.want(hookctl.ExitWait, "apply", "-f", dir, "--wait=30s")
	mustContain(t, "apply --wait", r.stderr, "with documents refused, an earlier version running instead",
		"refused events.v1.EventService/SendEvent/pre/deny: revision ", " still runs: ", "--max-hook-timeout")
	mustContain(t, "status", e.want(0, "status").stdout, "INVALID", "refused events.v1.EventService/SendEvent/pre/deny: revision ")
}

// TestStatusHeaderCountsADeletionAfterTheNewestPut: with no daemon, the
// header still dates the deletion of a hook created after the newest put
// left in etcd.
func TestStatusHeaderCountsADeletionAfterTheNewestPut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.js"), "undefined\n")
	e.want(0, "put", sendEvent, "pre", "a", "--script", filepath.Join(dir, "a.js"))
	e.want(0, "put", sendEvent, "pre", "b", "--script", filepath.Join(dir, "a.js"))
	e.want(0, "delete", sendEvent, "pre", "b")
	rDel := e.revision()
	r := e.want(0, "status")
	mustContain(t, "status", r.stdout, fmt.Sprintf("hooks last changed at revision %d.", rDel), "No daemon is registered")
}

// TestPermissionDeniedNamesWhatHookctlNeeds: an etcd user whose role
// grants only part of the prefix is told which directories hookctl reads
// and writes.
func TestPermissionDeniedNamesWhatHookctlNeeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.etcd
	for _, step := range []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "hooks-only"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "hooks-only", prefix+"hooks/", clientv3.GetPrefixRangeEnd(prefix+"hooks/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, "narrow", "narrowpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "narrow", "hooks-only"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	e.args = append(e.args, "--user", "narrow:narrowpw")
	r := e.want(hookctl.ExitUsage, "diff", "-f", scriptsDir) // diff: any error is 2
	mustContain(t, "diff as a user granted hooks/ only", r.stderr, "permission denied: the etcd user lacks a role granting this under "+prefix,
		prefix+"utils/", prefix+"daemons/")
}

// TestAUserGoesWithAPassword: a user without a password (or the other way
// round) is a usage error naming what is missing, not a refusal from etcd
// that says "user name is empty".
func TestAUserGoesWithAPassword(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "narrow"}, "--user narrow has no password: give it in HOOKCTL_PASSWORD"},
		{[]string{"--password", "pw"}, "--password gives an etcd password, but --user names no user"},
	} {
		e := newEnv(t)
		e.args = append(e.args, tt.args...)
		r := e.want(hookctl.ExitUsage, "list")
		mustContain(t, strings.Join(tt.args, " "), r.stderr, tt.want)
	}
}

// TestAProxysWaitFailsOnAHookItsBackendDoesNotServe: a proxy's record
// lists the hooks on methods its backend does not serve once it has
// checked them, and --wait, which waits for that, fails naming them.
func TestAProxysWaitFailsOnAHookItsBackendDoesNotServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	endpoints := []string{e.args[1]}
	backend := startConfiguredDaemonOn(t, endpoints, func(c *server.Config) { c.Prefix = "/backend/" })
	startConfiguredDaemonOn(t, endpoints, func(c *server.Config) { c.Proxy = proxy.Backend{Target: backend} })
	waitUntil(t, "the proxy registered", func() bool { return strings.Contains(e.want(0, "status").stdout, "in step") })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - {method: other.v1.Other/Do, phase: pre, name: typo, script: ok.js}
`)
	for range 3 { // each time, not only when the check happens to come first
		r := e.want(hookctl.ExitWait, "apply", "-f", dir, "--wait=30s")
		mustContain(t, "apply --wait", r.stderr, "ignores other.v1.Other/Do/pre/typo: the backend does not serve other.v1.Other/Do")
		e.want(0, "delete", "other.v1.Other/Do", "pre", "typo", "--wait=30s")
	}
}
