package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const prefix = "/p/"

var ctx = context.Background()

func open(t *testing.T) (*store.Store, *clientv3.Client) {
	t.Helper()
	e := etcdtest.Start(t)
	s, err := store.Open(ctx, store.Config{Endpoints: e.Endpoints(), Prefix: prefix, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, e.Client
}

func mustPut(t *testing.T, c *clientv3.Client, k, v string) int64 {
	t.Helper()
	resp, err := c.Put(ctx, k, v)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestCommitIsGuardedByWhatWasRead checks the transaction guards against a
// real etcd: the ModRevision compare over the hooks directory's prefix and
// the per-key compares.
func TestCommitIsGuardedByWhatWasRead(t *testing.T) {
	t.Parallel()
	dir := registry.HooksDir(prefix)
	cases := []struct {
		name string
		// meanwhile changes etcd between the read and the write.
		meanwhile func(t *testing.T, c *clientv3.Client)
		// guardA guards key a at the revision read.
		guardA      bool
		wantWritten bool
	}{
		{"nothing changed", func(*testing.T, *clientv3.Client) {}, true, true},
		{"a key in the directory was changed", func(t *testing.T, c *clientv3.Client) { mustPut(t, c, dir+"s.S/M/pre/b", "2") }, false, false},
		{"a key was created in the directory", func(t *testing.T, c *clientv3.Client) { mustPut(t, c, dir+"s.S/M/pre/new", "1") }, false, false},
		{"a guarded key was deleted", func(t *testing.T, c *clientv3.Client) { c.Delete(ctx, dir+"s.S/M/pre/a") }, true, false},
		{"an unguarded key was deleted (the prefix compare cannot see deletions)", func(t *testing.T, c *clientv3.Client) { c.Delete(ctx, dir+"s.S/M/pre/b") }, true, true},
		{"a key outside the directory was changed", func(t *testing.T, c *clientv3.Client) { mustPut(t, c, prefix+"events/x", "1") }, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := open(t)
			mustPut(t, c, dir+"s.S/M/pre/a", "1")
			mustPut(t, c, dir+"s.S/M/pre/b", "1")
			entries, rev, err := s.List(ctx)
			if err != nil || len(entries) != 2 {
				t.Fatalf("List: %v, %v", entries, err)
			}
			tc.meanwhile(t, c)
			w := &store.Write{ReadRevision: rev, Puts: map[string][]byte{dir + "s.S/M/pre/c": []byte("new")}}
			if tc.guardA {
				w.Guards = map[string]int64{entries[0].Path: entries[0].ModRevision}
			}
			_, err = s.Commit(ctx, w)
			var conflict *store.ConflictError
			switch {
			case tc.wantWritten && err != nil:
				t.Fatalf("Commit: got %v; want it written", err)
			case !tc.wantWritten && !errors.As(err, &conflict):
				t.Fatalf("Commit: got %v; want a *store.ConflictError", err)
			}
			resp, err := c.Get(ctx, dir+"s.S/M/pre/c")
			if err != nil {
				t.Fatal(err)
			}
			if written := len(resp.Kvs) == 1; written != tc.wantWritten {
				t.Errorf("written: got %v; want %v", written, tc.wantWritten)
			}
		})
	}
}

func TestConflictNamesTheKeysThatChanged(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	dir := registry.HooksDir(prefix)
	mustPut(t, c, dir+"s.S/M/pre/a", "1")
	_, rev, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, c, dir+"s.S/M/pre/z", "1")
	_, err = s.Commit(ctx, &store.Write{ReadRevision: rev, Puts: map[string][]byte{dir + "s.S/M/pre/a": []byte("2")}})
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("got %v; want a conflict", err)
	}
	if want := "s.S/M/pre/z"; len(conflict.Changed) != 1 || conflict.Changed[0] != want {
		t.Errorf("changed: got %v; want [%s]", conflict.Changed, want)
	}
}

func TestListParsesKeysAndDocuments(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	dir := registry.HooksDir(prefix)
	mustPut(t, c, dir+"s.S/M/pre/good", `{"script":"1"}`)
	mustPut(t, c, dir+"s.S/M/pre/broken", `{"script":"1","colour":"red"}`)
	mustPut(t, c, dir+"s.S/M/pre/nocompile", `{"script":"var = ;"}`)
	mustPut(t, c, dir+"bad-key", `{"script":"1"}`)
	entries, _, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		state := "valid"
		switch {
		case e.KeyErr != nil:
			state = "bad key"
		case e.DocErr != nil:
			state = "bad document"
		}
		got[e.Path[len(dir):]] = state
	}
	want := map[string]string{"s.S/M/pre/good": "valid", "s.S/M/pre/broken": "bad document", "s.S/M/pre/nocompile": "bad document", "bad-key": "bad key"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	s, c := open(t)
	k := registry.Key{Service: "s.S", Method: "M", Phase: engine.Pre, Name: "h"}
	var revs []int64
	for i := 1; i <= 4; i++ {
		revs = append(revs, mustPut(t, c, k.Path(prefix), fmt.Sprintf(`{"script":"%d"}`, i)))
		mustPut(t, c, prefix+"hooks/s.S/M/pre/other", fmt.Sprint(i)) // unrelated revisions in between
	}

	h, err := s.History(ctx, k, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Complete || h.Compacted || len(h.Versions) != 4 {
		t.Fatalf("history: got %d versions, complete %v, compacted %v; want 4, true, false", len(h.Versions), h.Complete, h.Compacted)
	}
	for i, v := range h.Versions {
		if want := revs[3-i]; v.ModRevision != want {
			t.Errorf("version %d: got revision %d; want %d", i, v.ModRevision, want)
		}
	}
	if h, _ := s.History(ctx, k, 2); len(h.Versions) != 2 || !h.Truncated {
		t.Errorf("limit 2: got %d versions, truncated %v; want 2, true", len(h.Versions), h.Truncated)
	}

	if _, err := c.Compact(ctx, revs[2]); err != nil {
		t.Fatal(err)
	}
	h, err = s.History(ctx, k, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Compacted || h.Complete || len(h.Versions) != 2 || h.Missing != 2 || h.CompactRevision != revs[2] {
		t.Errorf("after compaction: got %d versions, compacted %v, missing %d, compact revision %d; want 2, true, 2, %d",
			len(h.Versions), h.Compacted, h.Missing, h.CompactRevision, revs[2])
	}
	_, err = s.GetAt(ctx, k, revs[0])
	var ce *store.CompactedError
	if !errors.As(err, &ce) || ce.CompactRevision != revs[2] {
		t.Errorf("GetAt a compacted revision: got %v; want a *store.CompactedError naming revision %d", err, revs[2])
	}
	if _, err := s.GetAt(ctx, k, revs[0]-1); !errors.As(err, &ce) {
		t.Errorf("GetAt before creation, compacted: got %v; want a *store.CompactedError", err)
	}
	other := registry.Key{Service: "s.S", Method: "M", Phase: engine.Pre, Name: "none"}
	if _, err := s.History(ctx, other, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("history of a missing hook: got %v; want ErrNotFound", err)
	}
}

func TestOpenReportsAnUnreachableEtcdQuickly(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := store.Open(ctx, store.Config{Endpoints: []string{etcdtest.FreeAddr(t)}, DialTimeout: 200 * time.Millisecond})
	var ue *store.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v; want a *store.UnreachableError", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; want about the dial timeout", d)
	}
}

// TestNewestChange: the newest change after a daemon's revision of the keys
// daemons load is a put or a deletion, including the deletion of a key
// created after it; after a compaction, what etcd still holds counts.
func TestNewestChange(t *testing.T) {
	t.Parallel()
	hooks, utils := registry.HooksDir(prefix)+"s.S/M/pre/", registry.UtilsDir(prefix)+"U/"
	type step struct {
		// op is put, delete or compact (at the revision reached).
		op, key string
	}
	cases := []struct {
		name  string
		steps []step
		// from and want are indices of steps: the daemon's revision is
		// the one step from wrote, the newest change the one step want
		// wrote (-1: none).
		from, want int
	}{
		{"a key created and deleted after the newest put", []step{{"put", hooks + "a"}, {"put", hooks + "b"}, {"delete", hooks + "b"}}, 0, 2},
		{"a key held at from, deleted", []step{{"put", hooks + "a"}, {"put", hooks + "b"}, {"delete", hooks + "a"}}, 1, 2},
		{"a put after from", []step{{"put", hooks + "a"}, {"put", hooks + "b"}}, 0, 1},
		{"a deletion before a newer put", []step{{"put", hooks + "a"}, {"put", hooks + "b"}, {"delete", hooks + "b"}, {"put", hooks + "c"}}, 0, 3},
		{"a deletion after from, before a put and a deletion of another key", []step{{"put", hooks + "a"}, {"delete", hooks + "a"}, {"put", hooks + "b"}, {"put", utils + "1"}, {"delete", utils + "1"}}, 0, 4},
		{"a util created and deleted", []step{{"put", hooks + "a"}, {"put", utils + "1"}, {"delete", utils + "1"}}, 0, 2},
		{"nothing after from", []step{{"put", hooks + "a"}, {"put", prefix + "daemons/d"}}, 0, -1},
		{"a deletion outside the directories daemons load", []step{{"put", hooks + "a"}, {"put", prefix + "daemons/d"}, {"delete", prefix + "daemons/d"}}, 0, -1},
		{"a key created and deleted after a compaction past from", []step{{"put", hooks + "a"}, {"put", prefix + "elsewhere"}, {"compact", ""}, {"put", hooks + "b"}, {"delete", hooks + "b"}}, 0, 4},
		{"a deletion before a compaction past from is gone with it", []step{{"put", hooks + "a"}, {"put", hooks + "b"}, {"delete", hooks + "b"}, {"put", prefix + "elsewhere"}, {"compact", ""}}, 0, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := open(t)
			revs := make([]int64, len(tc.steps))
			for i, st := range tc.steps {
				switch st.op {
				case "put":
					revs[i] = mustPut(t, c, st.key, `{"script":"1"}`)
				case "delete":
					resp, err := c.Delete(ctx, st.key)
					if err != nil || resp.Deleted != 1 {
						t.Fatalf("delete %s: %v, %d deleted", st.key, err, resp.Deleted)
					}
					revs[i] = resp.Header.Revision
				case "compact":
					revs[i] = revs[i-1]
					if _, err := c.Compact(ctx, revs[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			now, rev, err := s.HookKeys(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if tc.want >= 0 {
				want = revs[tc.want]
			}
			got, err := s.NewestChange(ctx, now, rev, revs[tc.from])
			if err != nil || got != want {
				t.Errorf("NewestChange from revision %d (revisions %v): got %d, %v; want %d", revs[tc.from], revs, got, err, want)
			}
		})
	}
}

// TestAConflictNamesAFewKeys: a conflict names the keys that changed, at
// most ten of them, so that a staged apply's conflict stays one readable
// line.
func TestAConflictNamesAFewKeys(t *testing.T) {
	keys := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("k%d", i))
		}
		return out
	}
	for _, tt := range []struct {
		changed []string
		want    string
	}{
		{nil, "etcd changed since it was read at revision 7; nothing was written: run the command again"},
		{keys(2), "etcd changed since it was read at revision 7 (k0, k1); nothing was written: run the command again"},
		{keys(250), "etcd changed since it was read at revision 7 (k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, and 240 more); nothing was written: run the command again"},
	} {
		if got := (&store.ConflictError{ReadRevision: 7, Changed: tt.changed}).Error(); got != tt.want {
			t.Errorf("%d keys: %q; want %q", len(tt.changed), got, tt.want)
		}
	}
}
