package hookctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl"
	"github.com/apihooks/apihooks/server/fleet"
)

// recordKeeper keeps a daemon's record in etcd, as apihooksd does, at the
// revision rev holds: the revision it has in force.
type recordKeeper struct {
	id  string
	rev atomic.Int64
	reg *fleet.Registration
}

// keepRecord registers a daemon record named id at revision rev, with a
// lease of 2 s; it is closed when the test ends.
func keepRecord(t *testing.T, e *env, id string, rev int64) *recordKeeper {
	t.Helper()
	k := &recordKeeper{id: id}
	k.rev.Store(rev)
	k.reg = fleet.Register(e.etcd, id, func() fleet.Record {
		return fleet.Record{ID: id, Address: addressOf(id), Revision: k.rev.Load(), Synced: true}
	}, fleet.WithPrefix(prefix), fleet.WithTTL(2*time.Second), fleet.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(k.reg.Close)
	return k
}

// addressOf is the address a test daemon's record gives.
func addressOf(id string) string { return "10.0.0." + fmt.Sprint(int(id[0]-'a'+1)) + ":50051" }

// revoke revokes the lease of k's record, as etcd does when the daemon's
// keepalives stop reaching it: the record goes away, and the daemon,
// still running, registers again.
func (k *recordKeeper) revoke(t *testing.T, e *env) {
	t.Helper()
	resp, err := e.etcd.Get(context.Background(), k.reg.Key())
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("the record of %s: %v, %v", k.id, resp, err)
	}
	if _, err := e.etcd.Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
}

// stoppingRecord reports whether k's record says its daemon is stopping.
func stoppingRecord(t *testing.T, e *env, k *recordKeeper) bool {
	resp, err := e.etcd.Get(context.Background(), k.reg.Key())
	if err != nil || len(resp.Kvs) == 0 {
		return false
	}
	var rec fleet.Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Errorf("the record of %s: %v", k.id, err)
		return false
	}
	return rec.Stopping
}

// TestWaitCountsEveryDaemonItSaw: --wait counts every daemon whose record
// it read during the wait. One whose record goes away counts as last seen:
// behind (it may have lost etcd and still serve the old hook) fails the
// wait at the deadline, naming it; in step does not. A record back under
// the same ID counts as usual. Only a wait that saw no daemon at all has
// nothing to wait for.
func TestWaitCountsEveryDaemonItSaw(t *testing.T) {
	t.Parallel()
	// fleetView is what onRead may act on: the records read, the
	// daemons, the revision the put wrote (0 until etcd has it).
	type fleetView struct {
		t       *testing.T
		e       *env
		recs    []fleet.Record
		daemons map[string]*recordKeeper
		written int64
		reads   int
	}
	inStep := func(v *fleetView, id string) bool {
		i := slices.IndexFunc(v.recs, func(r fleet.Record) bool { return r.ID == id })
		return i >= 0 && v.recs[i].Revision >= v.written
	}
	cases := []struct {
		name string
		// daemons are registered behind, at revision 1, before the put.
		daemons []string
		// onRead runs after each read of the records by --wait.
		onRead func(v *fleetView)
		// vanishes are the daemons some read must have found without a
		// record, for the case to be what it says.
		vanishes []string
		wait     string
		code     int
		// REV in wantOut, wantErr and unwanted stands for the revision
		// written.
		wantOut, wantErr, unwanted []string
	}{
		{
			name:    "a record gone while behind fails the wait at the deadline, naming it",
			daemons: []string{"a", "b"},
			onRead: func(v *fleetView) {
				if v.reads == 1 {
					v.daemons["a"].reg.Close()
					v.daemons["b"].rev.Store(v.written)
				}
			},
			vanishes: []string{"a"},
			wait:     "5s",
			code:     hookctl.ExitWait,
			wantErr: []string{"written at revision REV, but after 5s not every daemon has loaded it:",
				"a (10.0.0.1:50051, revision 1: its record went away at revision ",
				", before it loaded REV: it stopped, or lost etcd and may still serve an older version)"},
			unwanted: []string{"b (10.0.0.2", "Live on", "nothing to wait for"},
		},
		{
			name:    "the only daemon gone while behind: not nothing to wait for",
			daemons: []string{"a"},
			onRead: func(v *fleetView) {
				if v.reads == 1 {
					v.daemons["a"].reg.Close()
				}
			},
			vanishes: []string{"a"},
			wait:     "2s",
			code:     hookctl.ExitWait,
			wantErr:  []string{"a (10.0.0.1:50051, revision 1: its record went away at revision "},
			unwanted: []string{"nothing to wait for", "Live on"},
		},
		{
			name:    "a record gone after it was in step counts as in step",
			daemons: []string{"a", "b"},
			onRead: func(v *fleetView) {
				switch {
				case v.reads == 1:
					v.daemons["a"].rev.Store(v.written)
				case inStep(v, "a"):
					v.daemons["a"].reg.Close()
					v.daemons["b"].rev.Store(v.written)
				}
			},
			vanishes: []string{"a"},
			wait:     "60s",
			code:     0,
			wantOut:  []string{"Live on 2 daemons at revision REV"},
		},
		{
			name:    "a daemon that shuts down while behind is not waited for",
			daemons: []string{"a", "b"},
			onRead: func(v *fleetView) {
				if v.reads != 1 {
					return
				}
				go v.daemons["a"].reg.CloseBy(time.Now().Add(time.Minute))
				deadline := time.Now().Add(30 * time.Second)
				for !stoppingRecord(v.t, v.e, v.daemons["a"]) {
					if time.Now().After(deadline) {
						v.t.Errorf("the record of a never said it was stopping")
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
				v.daemons["b"].rev.Store(v.written)
			},
			wait:     "60s",
			code:     0,
			wantOut:  []string{"Live on 1 daemon at revision REV", "1 stopping, not waited for"},
			unwanted: []string{"its record went away"},
		},
		{
			name:    "a record back under the same ID counts as usual",
			daemons: []string{"a"},
			onRead: func(v *fleetView) {
				if v.reads == 1 {
					v.daemons["a"].revoke(v.t, v.e)
					v.daemons["a"].rev.Store(v.written)
				}
			},
			vanishes: []string{"a"},
			wait:     "60s",
			code:     0,
			wantOut:  []string{"Live on 1 daemon at revision REV"},
			unwanted: []string{"nothing to wait for"},
		},
		{
			name:     "no daemon seen at all: nothing to wait for",
			wait:     "60s",
			code:     0,
			wantOut:  []string{"No daemon is registered under " + prefix + "daemons/: nothing to wait for."},
			unwanted: []string{"Live on"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			v := &fleetView{t: t, e: e, daemons: map[string]*recordKeeper{}}
			for _, id := range tc.daemons {
				v.daemons[id] = keepRecord(t, e, id, 1)
			}
			waitUntil(t, "the records registered", func() bool {
				resp, err := e.etcd.Get(context.Background(), fleet.Dir(prefix), clientv3.WithPrefix(), clientv3.WithCountOnly())
				return err == nil && resp.Count == int64(len(tc.daemons))
			})
			script := filepath.Join(t.TempDir(), "h.js")
			writeFile(t, script, "undefined\n")
			hookKey := registry.HooksDir(prefix) + sendEvent + "/pre/h"

			var mu sync.Mutex
			absent := map[string]bool{}
			onRead := hookctl.WithWaitRead(func(recs []fleet.Record) {
				mu.Lock()
				defer mu.Unlock()
				v.reads++
				v.recs = recs
				if v.written == 0 {
					resp, err := e.etcd.Get(context.Background(), hookKey)
					if err != nil || len(resp.Kvs) == 0 {
						t.Errorf("the hook put before the wait: %v, %v", resp, err)
						return
					}
					v.written = resp.Kvs[0].ModRevision
				}
				for id := range v.daemons {
					if !slices.ContainsFunc(recs, func(r fleet.Record) bool { return r.ID == id }) {
						absent[id] = true
					}
				}
				if tc.onRead != nil {
					tc.onRead(v)
				}
			})
			r := runHookctl(t, append(append([]string{}, e.args...), "put", sendEvent, "pre", "h", "--script", script, "--wait="+tc.wait), onRead)
			if r.code != tc.code {
				t.Fatalf("put --wait=%s: got exit %d; want %d\n%s", tc.wait, r.code, tc.code, r)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range tc.vanishes {
				if !absent[id] {
					t.Errorf("no read of the records by --wait found %s's gone; want one that did", id)
				}
			}
			rev := func(s []string) []string {
				var out []string
				for _, w := range s {
					out = append(out, strings.ReplaceAll(w, "REV", fmt.Sprint(v.written)))
				}
				return out
			}
			mustContain(t, "stdout", r.stdout, rev(tc.wantOut)...)
			mustContain(t, "stderr", r.stderr, rev(tc.wantErr)...)
			mustNotContain(t, "output", r.stdout+r.stderr, rev(tc.unwanted)...)
		})
	}
}

// TestAWaitThatCannotReadTheRecordsExits4: an etcd user who may write the
// hooks but not read daemons/ gets the write done, and every command that
// takes --wait exits 4 saying so and why the wait could not be checked,
// never 1, which means nothing was written.
func TestAWaitThatCannotReadTheRecordsExits4(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.etcd
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "no-daemons"); return err },
	}
	for _, dir := range []string{registry.HooksDir(prefix), registry.UtilsDir(prefix), registry.CacheDir(prefix)} {
		steps = append(steps, func() error {
			_, err := c.RoleGrantPermission(ctx, "no-daemons", dir, clientv3.GetPrefixRangeEnd(dir), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		})
	}
	steps = append(steps,
		func() error { _, err := c.UserAdd(ctx, "ci", "cipw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "ci", "no-daemons"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	)
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	e.args = append(e.args, "--user", "ci:cipw")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "v1.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "v2.js"), "module.exports = () => undefined\n")
	written := []string{"written at revision ", ", but --wait cannot tell whether the daemons have loaded it: reading their records under " + prefix + "daemons/ failed: " +
		"etcd refused the request: permission denied"}
	getEvents := "events.v1.EventService/GetEvents"
	// The commands run in turn, each on what the one before wrote.
	for _, tc := range []struct {
		args []string
		// wantOut is the line that says what was written.
		wantOut string
		wantErr []string
	}{
		{[]string{"put", sendEvent, "pre", "h", "--script", filepath.Join(dir, "v1.js")}, "created " + sendEvent + " pre h at revision", written},
		{[]string{"put", sendEvent, "pre", "h", "--script", filepath.Join(dir, "v2.js")}, "updated " + sendEvent + " pre h at revision", written},
		{[]string{"disable", sendEvent, "pre", "h"}, "disabled", written},
		{[]string{"enable", sendEvent, "pre", "h"}, "enabled", written},
		{[]string{"rollback", sendEvent, "pre", "h"}, "back to the version of revision", written},
		{[]string{"delete", sendEvent, "pre", "h"}, "deleted", written},
		{[]string{"cache", "put", getEvents, "--ttl", "30s"}, "created the cache of " + getEvents, written},
		{[]string{"cache", "delete", getEvents}, "deleted the cache of " + getEvents, written},
		{[]string{"apply", "-f", scriptsDir}, "Applied at revision", written},
		{[]string{"apply", "-f", scriptsDir}, "No changes", []string{"nothing to write, but --wait cannot tell whether the daemons have loaded what etcd holds: " +
			"etcd refused the request: permission denied"}},
	} {
		r := e.want(hookctl.ExitWait, append(tc.args, "--wait=30s")...)
		what := strings.Join(tc.args[:min(len(tc.args), 2)], " ") + " --wait"
		mustContain(t, what, r.stdout, tc.wantOut)
		mustContain(t, what, r.stderr, tc.wantErr...)
	}
	// The writes were done: the manifest's hooks are in etcd.
	mustContain(t, "list", e.want(0, "list").stdout, "deny-guest", "addvalue")
}
