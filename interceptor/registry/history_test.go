package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/logtest"
)

// historyKey is the key, under a test's prefix, whose versions the history
// tests write.
const historyKey = "events.v1.EventService/SendEvent/pre/a"

// badDoc is an invalid document: it names a field documents do not have.
const badDoc = `{"script":"1","colour":"red"}`

// historyStep is one change of historyKey: "good:<description>" puts a valid
// document, "bad" an invalid one, "syntax" one whose script does not
// compile, "delete" deletes the key.
type historyStep string

// play makes the changes of steps to historyKey under prefix through c,
// and returns the revision of each. Each waits for the registries
// following, if any, to reach the one before, as changes made by hand
// would.
func play(t *testing.T, c *clientv3.Client, prefix string, steps []historyStep, following ...*registry.Registry) []int64 {
	t.Helper()
	key := registry.HooksDir(prefix) + historyKey
	revs := make([]int64, len(steps))
	for i, s := range steps {
		var rev int64
		switch {
		case s == "delete":
			resp, err := c.Delete(context.Background(), key)
			if err != nil {
				t.Fatalf("delete %s: %v", key, err)
			}
			rev = resp.Header.Revision
		default:
			value := badDoc
			if s == "syntax" {
				value = `{"script":"function ("}`
			} else if desc, ok := strings.CutPrefix(string(s), "good:"); ok {
				value = doc(desc)
			}
			resp, err := c.Put(context.Background(), key, value)
			if err != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			rev = resp.Header.Revision
		}
		revs[i] = rev
		for _, r := range following {
			waitFor(t, fmt.Sprintf("a registry to reach step %d (%s)", i, s), func() bool { return r.Snapshot().Revision >= rev })
		}
	}
	return revs
}

// inForce describes the hook r runs for historyKey: "<description>@<revision>",
// "broken: <error>", or "none".
func inForce(r *registry.Registry) string {
	for _, h := range r.Snapshot().Hooks() {
		if h.ID != historyKey {
			continue
		}
		if h.Err != nil {
			return "broken: " + h.Err.Error()
		}
		return fmt.Sprintf("%s@%d", h.Doc.Description, h.Revision)
	}
	return "none"
}

// bad repeats the step "bad" n times.
func bad(n int) []historyStep {
	out := make([]historyStep, n)
	for i := range out {
		out[i] = "bad"
	}
	return out
}

// A registry that starts, while the current document of a key is invalid,
// runs the version of that key a registry running all along runs: the last
// valid one, found in etcd's history, or in its snapshot file when etcd has
// compacted it.
func TestRegistryStartRunsTheLastValidVersion(t *testing.T) {
	tests := []struct {
		name  string
		steps []historyStep
		// compact compacts etcd's history before the new registry starts;
		// file has it start with the snapshot file of the one running all
		// along.
		compact, file bool
		// want is the step whose version runs, or -1 for a broken key
		// whose error contains wantErr.
		want    int
		wantErr string
		// differs is set where the registry running all along keeps a
		// version the new one cannot find.
		differs bool
	}{
		{name: "a valid version, then an invalid one", steps: []historyStep{"good:v1", "bad"}, want: 0},
		{name: "the last valid of several, under invalid ones", steps: []historyStep{"good:v1", "good:v2", "syntax", "bad"}, want: 1},
		{name: "deleted, then created again invalid", steps: []historyStep{"good:v1", "delete", "bad"},
			want: -1, wantErr: `document: unknown field "colour"`},
		{name: "never valid", steps: []historyStep{"bad", "syntax"}, want: -1, wantErr: "document: field script"},
		{name: "the valid version is 10 versions back", steps: append([]historyStep{"good:v1"}, bad(10)...), want: 0},
		{name: "the valid version is more than 10 versions back", steps: append([]historyStep{"good:v1"}, bad(11)...),
			want: -1, wantErr: "the 10 versions before it are invalid too", differs: true},
		{name: "history compacted: the snapshot file's version", steps: []historyStep{"good:v1", "bad"}, compact: true, file: true, want: 0},
		{name: "history compacted, no snapshot file", steps: []historyStep{"good:v1", "bad"}, compact: true,
			want: -1, wantErr: "etcd compacted", differs: true},
	}
	e := etcdtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/history%d/", i)
			file := filepath.Join(t.TempDir(), "hooks.json")
			running := start(t, e.Client, registry.WithPrefix(prefix), registry.WithSnapshotFile(file))
			revs := play(t, e.Client, prefix, tt.steps, running)
			last := revs[len(revs)-1]
			running.Close() // the snapshot file holds what it ran
			if tt.compact {
				if _, err := e.Client.Compact(context.Background(), last, clientv3.WithCompactPhysical()); err != nil {
					t.Fatal(err)
				}
			}
			opts := []registry.Option{registry.WithPrefix(prefix)}
			if tt.file {
				opts = append(opts, registry.WithSnapshotFile(file))
			}
			started := start(t, e.Client, opts...)

			got, status := inForce(started), started.Status()
			if tt.want >= 0 {
				desc := strings.TrimPrefix(string(tt.steps[tt.want]), "good:")
				if want := fmt.Sprintf("%s@%d", desc, revs[tt.want]); got != want {
					t.Fatalf("the new registry runs %s; want %s, the last valid version", got, want)
				}
				wantInvalid := fmt.Sprintf("%s: revision %d still runs: document: ", historyKey, revs[tt.want])
				if len(status.Invalid) != 1 || !strings.HasPrefix(status.Invalid[0], wantInvalid) || len(status.Broken) != 0 {
					t.Fatalf("status: invalid %q, broken %q; want invalid [%s...], nothing broken", status.Invalid, status.Broken, wantInvalid)
				}
			} else {
				if !strings.HasPrefix(got, "broken: ") || !strings.Contains(got, tt.wantErr) {
					t.Fatalf("the new registry runs %s; want the key broken: ...%s...", got, tt.wantErr)
				}
				wantBroken := historyKey + ": " + strings.TrimPrefix(got, "broken: ")
				if len(status.Broken) != 1 || status.Broken[0] != wantBroken || len(status.Invalid) != 0 {
					t.Fatalf("status: broken %q, invalid %q; want broken [%s]", status.Broken, status.Invalid, wantBroken)
				}
			}
			if was := inForce(running); (was == got) == tt.differs {
				t.Fatalf("the registry running all along runs %s, the new one %s; want them to agree: %v", was, got, !tt.differs)
			}
			if was := running.Status(); !tt.differs && (!slices.Equal(was.Invalid, status.Invalid) || !slices.Equal(was.Broken, status.Broken)) {
				t.Fatalf("the registry running all along has invalid %q, broken %q; the new one %q, %q", was.Invalid, was.Broken, status.Invalid, status.Broken)
			}
		})
	}
}

// A registry that reads everything again after it lost etcd runs the
// version a registry that never lost it runs, whatever changed meanwhile.
func TestRegistryRereadRunsTheLastValidVersion(t *testing.T) {
	tests := []struct {
		name string
		// steps are made while the registry is cut off, after "good:v1".
		steps []historyStep
		want  string // the description running, or "broken"
	}{
		{name: "an invalid version", steps: []historyStep{"bad"}, want: "v1"},
		{name: "a valid version, then an invalid one", steps: []historyStep{"good:v2", "bad"}, want: "v2"},
		{name: "deleted, then created again invalid", steps: []historyStep{"delete", "bad"}, want: "broken"},
	}
	e := etcdtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/reread%d/", i)
			play(t, e.Client, prefix, []historyStep{"good:v1"})
			proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
			cut := start(t, fastClient(t, []string{proxy.Addr()}), registry.WithPrefix(prefix))
			running := start(t, e.Client, registry.WithPrefix(prefix))

			proxy.Cut()
			waitFor(t, "the registry to notice it lost etcd", func() bool { return !cut.Status().Synced })
			revs := play(t, e.Client, prefix, tt.steps, running)
			last := revs[len(revs)-1]
			proxy.Restore()
			waitFor(t, "both registries to reach the last change", func() bool {
				s := cut.Status()
				return s.Synced && s.Revision >= last && running.Snapshot().Revision >= last
			})
			// The read puts each transaction in force once its documents
			// are compiled, and their history read.
			var got, was string
			for deadline := time.Now().Add(waitTimeout); ; time.Sleep(5 * time.Millisecond) {
				if got, was = inForce(cut), inForce(running); got == was {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after reading everything again the registry runs %s; the one that never lost etcd runs %s", got, was)
				}
			}
			if desc, _, _ := strings.Cut(got, "@"); tt.want == "broken" && !strings.HasPrefix(got, "broken: ") || tt.want != "broken" && desc != tt.want {
				t.Fatalf("the registry runs %s; want %s", got, tt.want)
			}
		})
	}
}

// Looking back never runs an earlier version in place of one a util change
// broke: a registry that starts fails the key closed, as a registry running
// all along does. A version that does not compile because of utils that
// have not changed since it was written is an invalid document: the
// earlier version runs in both.
func TestRegistryStartAndUtilsThatDoNotCompile(t *testing.T) {
	const (
		hook    = "hooks/" + historyKey
		imports = `{"script":"require('utils/Sum'); 1","description":"imports"}`
		// badImports imports Sum, and is invalid whatever the utils.
		badImports = `{"script":"require('utils/Sum'); 1","description":"bad","colour":"red"}`
		sum        = "utils/Sum/1"
		sum2       = "utils/Sum/2"
		active     = "utils/Sum/active"
	)
	type write struct{ key, value string } // an empty value deletes key
	tests := []struct {
		name string
		// writes follow "good:v0".
		writes []write
		want   string // the description running, or "broken"
	}{
		{name: "a util change breaks the running version",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports}, {active, `{"version":2}`}},
			want:   "broken"},
		{name: "a util deleted breaks the running version",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports}, {active, ""}},
			want:   "broken"},
		{name: "a util written after the version importing it, then broken",
			writes: []write{{hook, imports}, {sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {active, `{"version":2}`}},
			want:   "broken"},
		{name: "a new version imports a missing util",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports},
				{hook, `{"script":"require('utils/Missing'); 1","description":"missing"}`}},
			want: "imports"},
		{name: "a new version imports a util that has no active version", writes: []write{{hook, imports}}, want: "v0"},
		{name: "a util change the running version compiles with, under an invalid version importing it",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports}, {hook, badImports},
				{sum2, `{"script":"module.exports = 2"}`}, {active, `{"version":2}`}},
			want: "imports"},
		{name: "a util change breaks the running version, under an invalid version not importing it",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports}, {hook, badDoc},
				{active, `{"version":2}`}},
			want: "broken"},
		{name: "a util change breaks the running version, under an invalid version, then is undone",
			writes: []write{{sum, `{"script":"module.exports = 1"}`}, {active, `{"version":1}`}, {hook, imports}, {hook, badDoc},
				{active, `{"version":2}`}, {active, `{"version":1}`}},
			want: "imports"},
	}
	e := etcdtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/utils%d/", i)
			ctx := context.Background()
			running := start(t, e.Client, registry.WithPrefix(prefix))
			play(t, e.Client, prefix, []historyStep{"good:v0"}, running)
			for _, w := range tt.writes {
				var rev int64
				if w.value == "" {
					resp, err := e.Client.Delete(ctx, prefix+w.key)
					if err != nil {
						t.Fatal(err)
					}
					rev = resp.Header.Revision
				} else {
					resp, err := e.Client.Put(ctx, prefix+w.key, w.value)
					if err != nil {
						t.Fatal(err)
					}
					rev = resp.Header.Revision
				}
				// One change at a time, as a registry that follows them
				// sees them.
				waitFor(t, "the registry running all along to reach "+w.key, func() bool { return running.Snapshot().Revision >= rev })
			}
			started := start(t, e.Client, registry.WithPrefix(prefix))
			got, was := inForce(started), inForce(running)
			if desc, _, _ := strings.Cut(got, "@"); got != was || tt.want == "broken" && !strings.HasPrefix(got, "broken: ") || tt.want != "broken" && desc != tt.want {
				t.Fatalf("the new registry runs %s, the one running all along %s; want both %s", got, was, tt.want)
			}
			if s, w := started.Status(), running.Status(); !slices.Equal(s.Invalid, w.Invalid) || !slices.Equal(s.Broken, w.Broken) {
				t.Fatalf("the new registry has invalid %q, broken %q; the one running all along %q, %q", s.Invalid, s.Broken, w.Invalid, w.Broken)
			}
		})
	}
}

// historyKV is a client's KV that counts its Gets, which the registry makes
// only to read a key's history (it reads everything in transactions), and
// holds them while blocked.
type historyKV struct {
	clientv3.KV
	// gets counts the Gets made, returned those that returned.
	gets, returned atomic.Int64
	mu             sync.Mutex
	blocked        chan struct{} // closed to let held Gets go on; nil: not blocked
}

func (k *historyKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.gets.Add(1)
	defer k.returned.Add(1)
	k.mu.Lock()
	blocked := k.blocked
	k.mu.Unlock()
	if blocked != nil {
		select {
		case <-blocked:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return k.KV.Get(ctx, key, opts...)
}

// block holds every Get until unblock, as an etcd too slow to answer would.
func (k *historyKV) block() {
	k.mu.Lock()
	k.blocked = make(chan struct{})
	k.mu.Unlock()
}

func (k *historyKV) unblock() {
	k.mu.Lock()
	if k.blocked != nil {
		close(k.blocked)
		k.blocked = nil
	}
	k.mu.Unlock()
}

// historyClient returns a client to e whose Gets go through the returned
// historyKV.
func historyClient(t *testing.T, e *etcdtest.Etcd) (*clientv3.Client, *historyKV) {
	t.Helper()
	c := fastClient(t, e.Endpoints())
	kv := &historyKV{KV: c.KV}
	c.KV = kv
	t.Cleanup(kv.unblock)
	return c, kv
}

// putAt puts value at key under prefix's hooks through c, and returns the
// revision.
func putAt(t *testing.T, c *clientv3.Client, prefix, key, value string) int64 {
	t.Helper()
	resp, err := c.Put(context.Background(), registry.HooksDir(prefix)+key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// A registry that follows a key's changes keeps the version it runs when
// the key's new document is invalid, without reading etcd's history: it is
// the last valid version. So an etcd slow to answer holds no compile
// worker, and changes to other keys take effect at once.
func TestRegistryFollowingAnInvalidDocumentReadsNoHistory(t *testing.T) {
	e := etcdtest.Start(t)
	c, kv := historyClient(t, e)
	const prefix = "/follow/"
	r := start(t, c, registry.WithPrefix(prefix))
	// More invalid keys than there are compile workers.
	n := max(runtime.GOMAXPROCS(0), 2) + 1
	key := func(i int) string { return fmt.Sprintf("events.v1.EventService/SendEvent/pre/k%d", i) }
	var rev int64
	for i := range n {
		rev = putAt(t, c, prefix, key(i), doc("v1"))
	}
	waitFor(t, "the valid versions", func() bool { return r.Snapshot().Revision >= rev })
	kv.block()
	for i := range n {
		putAt(t, c, prefix, key(i), badDoc)
	}
	rev = putAt(t, c, prefix, "events.v1.EventService/GetEvents/pre/other", doc("other"))
	waitFor(t, "a change to another key after the invalid documents", func() bool { return r.Snapshot().Revision >= rev })
	if got := kv.gets.Load(); got != 0 {
		t.Fatalf("the registry read etcd's history %d times for changes it followed; want none", got)
	}
	s := r.Status()
	if len(s.Invalid) != n || len(s.Broken) != 0 {
		t.Fatalf("status: invalid %q, broken %q; want %d keys running v1, nothing broken", s.Invalid, s.Broken, n)
	}
	for _, h := range r.Snapshot().Hooks() {
		if h.ID != "events.v1.EventService/GetEvents/pre/other" && (h.Err != nil || h.Doc.Description != "v1") {
			t.Fatalf("%s runs %q (error %v); want v1", h.ID, h.Doc.Description, h.Err)
		}
	}
}

// The look-backs of a read share one deadline within that of the read: a
// registry that starts while etcd does not answer for history starts in
// time, with the keys whose history it could not read broken, and looks
// again until etcd answers: then it runs their last valid version, as a
// registry running all along does.
func TestRegistryStartWhileHistoryDoesNotAnswer(t *testing.T) {
	e := etcdtest.Start(t)
	c, kv := historyClient(t, e)
	const prefix = "/noanswer/"
	n := max(runtime.GOMAXPROCS(0), 2) + 1
	key := func(i int) string { return fmt.Sprintf("events.v1.EventService/SendEvent/pre/k%d", i) }
	for i := range n {
		putAt(t, c, prefix, key(i), doc("v1"))
		putAt(t, c, prefix, key(i), badDoc)
	}
	kv.block()
	r := registry.New(c, registry.WithPrefix(prefix), registry.WithLogger(quiet()), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(r.Close)
	const within = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	began := time.Now()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("Start while etcd does not answer for history: %v", err)
	}
	if took := time.Since(began); took > within {
		t.Fatalf("Start took %v, given %v", took.Round(time.Millisecond), within)
	}
	s := r.Status()
	if len(s.Broken) != n || !strings.Contains(s.Broken[0], "its earlier versions could not be read") {
		t.Fatalf("status: broken %q; want the %d keys broken, their history unread", s.Broken, n)
	}
	kv.unblock()
	waitFor(t, "the keys to run their last valid version once etcd answers", func() bool {
		s := r.Status()
		return len(s.Invalid) == n && len(s.Broken) == 0
	})
}

// TestAUtilChangeKeepsTheRetryOfAKeyWhoseHistoryWasNotRead: a key left
// broken because etcd did not give its history at start is looked at
// again until etcd answers, though a util its invalid value mentions
// changes meanwhile; then it runs its last valid version, as a registry
// started afresh does.
func TestAUtilChangeKeepsTheRetryOfAKeyWhoseHistoryWasNotRead(t *testing.T) {
	e := etcdtest.Start(t)
	c, kv := historyClient(t, e)
	const prefix = "/retry-utils/"
	ctx := context.Background()
	put := func(k, v string) int64 {
		t.Helper()
		resp, err := c.Put(ctx, prefix+k, v)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	put("utils/Sum/1", `{"script":"module.exports = 1"}`)
	put("utils/Sum/active", `{"version":1}`)
	put("hooks/"+historyKey, doc("v1"))
	// Invalid whatever the utils (an unknown field), and it imports Sum.
	put("hooks/"+historyKey, `{"script":"require('utils/Sum'); 1","description":"bad","colour":"red"}`)

	kv.block()
	r := registry.New(c, registry.WithPrefix(prefix), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(r.Close)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.Start(sctx); err != nil {
		t.Fatal(err)
	}
	if got := inForce(r); !strings.HasPrefix(got, "broken: ") {
		t.Fatalf("with its history held back, the key runs %s; want it broken", got)
	}
	put("utils/Sum/2", `{"script":"module.exports = 2"}`)
	rev := put("utils/Sum/active", `{"version":2}`)
	waitFor(t, "the util change", func() bool { return r.Snapshot().Revision >= rev })
	// The looks begun before the change give up (their time is bounded);
	// only a look begun after it may then find the key's history.
	begun := kv.gets.Load()
	waitFor(t, "the looks begun before the util change to give up", func() bool { return kv.returned.Load() >= begun })
	kv.unblock()
	waitFor(t, "the key to run its last valid version once etcd gives its history", func() bool { return inForce(r) == "v1@4" })
}

// TestAStagedApplyDoesNotWaitForALookAtHistory: a staged apply's changes
// are in force once its marker is removed, though a look at a key's
// history (which etcd does not give) is under way: that look changes
// nothing the apply staged.
func TestAStagedApplyDoesNotWaitForALookAtHistory(t *testing.T) {
	e := etcdtest.Start(t)
	c, kv := historyClient(t, e)
	const prefix = "/retry-staged/"
	ctx := context.Background()
	putAt(t, c, prefix, historyKey, doc("v1"))
	putAt(t, c, prefix, historyKey, badDoc)
	kv.block()
	r := registry.New(c, registry.WithPrefix(prefix), registry.WithLogger(quiet()), registry.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	t.Cleanup(r.Close)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.Start(sctx); err != nil {
		t.Fatal(err)
	}
	marker := registry.ApplyMarker(prefix)
	if _, err := c.Put(ctx, marker, `{}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registry to hold changes back", func() bool { return r.Status().Held })
	putAt(t, c, prefix, "events.v1.EventService/GetEvents/pre/n", doc("n"))
	// A look begins (each has 5 s before it gives up): the marker goes
	// while it waits.
	begun := kv.gets.Load()
	waitFor(t, "a look at the key's history", func() bool { return kv.gets.Load() > begun })
	if _, err := c.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	waitFor(t, "the staged change in force", func() bool { return len(preHooks(r, "/events.v1.EventService/GetEvents")) == 1 })
	if took := time.Since(removed); took > 2500*time.Millisecond {
		t.Fatalf("the staged change was in force %v after the marker went; want at once, not after the look", took.Round(time.Millisecond))
	}
}

// TestAUtilThatBreaksTheRunningVersionIsNamed: a key whose latest document
// is invalid runs its earlier version; when a change of a util that version
// imports breaks it, the key fails closed with an error naming the util,
// the cause, not only the invalid document; and another change of utils
// that leaves it broken is not logged again as an error.
func TestAUtilThatBreaksTheRunningVersionIsNamed(t *testing.T) {
	e := etcdtest.Start(t)
	const prefix = "/util-named/"
	ctx := context.Background()
	put := func(k, v string) int64 {
		t.Helper()
		resp, err := e.Client.Put(ctx, prefix+k, v)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	put("utils/U/1", `{"script":"module.exports = 1"}`)
	put("utils/U/active", `{"version":1}`)
	put("hooks/"+historyKey, `{"script":"require('utils/U'); 1","description":"v1"}`)
	put("hooks/"+historyKey, `{"script":"require('utils/U'); 1","description":"bad","colour":"red"}`)
	logs := &syncBuffer{}
	r := start(t, e.Client, registry.WithPrefix(prefix), registry.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if got := inForce(r); got != "v1@4" {
		t.Fatalf("runs %s; want v1@4, the version before the invalid one", got)
	}
	put("utils/U/2", `{"script":"module.exports = ("}`)
	rev := put("utils/U/active", `{"version":2}`)
	waitFor(t, "the util change", func() bool { return r.Snapshot().Revision >= rev })
	got := inForce(r)
	if !strings.HasPrefix(got, "broken: revision 4, which ran, no longer compiles: ") || !strings.Contains(got, "utils/U@2") {
		t.Fatalf("runs %s; want broken, naming revision 4 and utils/U@2", got)
	}
	errors := strings.Count(logs.String(), "level=ERROR")
	rev = put("utils/U/3", `{"script":"module.exports = ("}`)
	waitFor(t, "another util version", func() bool { return r.Snapshot().Revision >= rev })
	if n := strings.Count(logs.String(), "level=ERROR"); n != errors {
		t.Fatalf("another change of utils that leaves the key as broken logged %d more errors; want none:\n%s", n-errors, logs)
	}
}

// A key deleted while the registry was cut off from etcd is logged as
// deleted when the registry reads every hook again, as when it follows the
// deletion.
func TestRegistryRereadLogsTheKeysDeletedMeanwhile(t *testing.T) {
	e := etcdtest.Start(t)
	const prefix = "/reread-deleted/"
	play(t, e.Client, prefix, []historyStep{"good:v1"})
	cacheKey := registry.CacheDir(prefix) + "events.v1.EventService/GetEvents"
	if _, err := e.Client.Put(context.Background(), cacheKey, `{"ttl":"30s"}`); err != nil {
		t.Fatal(err)
	}
	proxy := etcdtest.NewProxy(t, e.Endpoints()[0])
	logs := &logtest.Buffer{}
	cut := start(t, fastClient(t, []string{proxy.Addr()}), registry.WithPrefix(prefix),
		registry.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))

	proxy.Cut()
	waitFor(t, "the registry to notice it lost etcd", func() bool { return !cut.Status().Synced })
	revs := play(t, e.Client, prefix, []historyStep{"delete"})
	if _, err := e.Client.Delete(context.Background(), cacheKey); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	waitFor(t, "the registry to read everything again", func() bool {
		s := cut.Status()
		return s.Synced && s.Revision >= revs[0] && inForce(cut) == "none"
	})
	for _, want := range []string{
		`msg="hook deleted" key=` + registry.HooksDir(prefix) + historyKey,
		`msg="response cache configuration deleted; the method is not cached" key=` + cacheKey,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %s:\n%s", want, logs)
		}
	}
}
