package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/fleet"
	"github.com/apihooks/apihooks/server/proxy"
)

// stateHook is a hook of /api/state, as the page reads it.
type stateHook struct {
	Key         string
	Revision    int64
	Running     int64
	Error       string
	Broken      bool
	Quarantined string
	Ignored     string
}

// apiState is /api/state, as the page reads it.
type apiState struct {
	Revision     int64
	EtcdRevision int64
	EtcdError    string
	Synced       bool
	Groups       []struct {
		Target string
		Hooks  []stateHook
	}
}

// hook returns the hook of key, or nil when the state has none.
func (st *apiState) hook(key string) *stateHook {
	for _, g := range st.Groups {
		for i := range g.Hooks {
			if g.Hooks[i].Key == key {
				return &g.Hooks[i]
			}
		}
	}
	return nil
}

// count returns how many times the state lists the hook of key.
func (st *apiState) count(key string) int {
	n := 0
	for _, g := range st.Groups {
		for _, h := range g.Hooks {
			if h.Key == key {
				n++
			}
		}
	}
	return n
}

// readState reads /api/state, failing the test unless it answers 200.
func readState(t *testing.T, d *daemon) *apiState {
	t.Helper()
	code, body := call(t, d, "GET", "/api/state", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/state: %d %s", code, body)
	}
	var st apiState
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /api/state: %v: %s", err, body)
	}
	return &st
}

// fleetQuarantined returns what the daemon's fleet record lists as
// quarantined.
func fleetQuarantined(t *testing.T, d *daemon) []string {
	t.Helper()
	resp, err := d.etcd.Get(context.Background(), fleet.Dir("/apihooks/"), withPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d fleet records; want the daemon's", len(resp.Kvs))
	}
	var rec fleet.Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Quarantined
}

// quarantine puts a runaway pre-hook on SendEvent at key and calls until
// the daemon takes it out of service, as the page, the gauge and the fleet
// record then show.
func quarantine(t *testing.T, d *daemon, key string) {
	t.Helper()
	d.put(t, key, `{"script": "module.exports = () => { while (true) {} }", "timeout": "20ms"}`)
	eventually(t, "the runaway hook to be quarantined", func() bool {
		_, err := d.events.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "u", EventType: "t"})
		return status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), key)
	})
	if h := readState(t, d).hook(key); h == nil || h.Quarantined == "" {
		t.Fatalf("/api/state shows the quarantined hook as %+v; want it quarantined", h)
	}
	if got := value(scrape(t, d), "apihooks_hooks_quarantined", nil); got != 1 {
		t.Fatalf("apihooks_hooks_quarantined = %v; want 1", got)
	}
	eventually(t, "the fleet record to list the quarantined hook", func() bool {
		q := fleetQuarantined(t, d)
		return len(q) == 1 && strings.HasPrefix(q[0], key+": ")
	})
}

// A quarantine holds the version of a hook that earned it: once the daemon
// runs a new version, or the key is deleted, the page, the gauge and the
// fleet record no longer name it.
func TestAQuarantineEndsWithItsVersion(t *testing.T) {
	d := startDaemon(t, func(cfg *server.Config) {
		cfg.QuarantineAfter, cfg.QuarantineWindow, cfg.QuarantineFor = 5, time.Minute, time.Hour
	})
	cases := []struct {
		name string
		key  string
		// change replaces or deletes the hook, and returns the revision
		// of the change.
		change func(key string) int64
	}{
		{"a new version", "events.v1.EventService/SendEvent/pre/replaced", func(key string) int64 {
			resp, err := d.etcd.Put(context.Background(), "/apihooks/hooks/"+key, `{"script": "module.exports = () => {}"}`)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Header.Revision
		}},
		{"deleted", "events.v1.EventService/SendEvent/pre/deleted", func(key string) int64 {
			resp, err := d.etcd.Delete(context.Background(), "/apihooks/hooks/"+key)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Header.Revision
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			quarantine(t, d, c.key)
			rev := c.change(c.key)
			eventually(t, "the daemon to load the change", func() bool { return readState(t, d).Revision >= rev })

			if h := readState(t, d).hook(c.key); h != nil && h.Quarantined != "" {
				t.Errorf("/api/state shows %s quarantined: %q; want the quarantine gone with its version", c.key, h.Quarantined)
			}
			if got := value(scrape(t, d), "apihooks_hooks_quarantined", nil); got != 0 {
				t.Errorf("apihooks_hooks_quarantined = %v; want 0", got)
			}
			deadline := time.Now().Add(5 * time.Second)
			for q := fleetQuarantined(t, d); len(q) > 0; q = fleetQuarantined(t, d) {
				if time.Now().After(deadline) {
					t.Fatalf("the fleet record still lists %q; want no quarantined hook", q)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := d.events.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "u", EventType: "t"}); err != nil {
				t.Errorf("SendEvent after the change: %v; want OK", err)
			}
		})
	}
}

// A hook on a service the daemon does not serve is ignored, and the page
// says so, and why.
func TestStateShowsIgnoredHooks(t *testing.T) {
	d := startDaemon(t, nil)
	const typo = "events.v1.EventServce/SendEvent/pre/typo"
	const loaded = "events.v1.EventService/SendEvent/pre/loaded"
	d.put(t, typo, `{"script": "module.exports = () => {}"}`)
	d.put(t, loaded, `{"script": "module.exports = () => {}"}`)
	var st *apiState
	eventually(t, "the daemon to load both keys", func() bool {
		st = readState(t, d)
		h := st.hook(loaded)
		return h != nil && st.Revision >= h.Revision
	})
	cases := []struct {
		key         string
		ignored     string // a part of the reason; empty for none
		wantRunning bool
	}{
		{typo, "events.v1.EventServce is not hookable on this server", false},
		{loaded, "", true},
	}
	for _, c := range cases {
		h := st.hook(c.key)
		switch {
		case h == nil:
			t.Errorf("%s: not in /api/state", c.key)
		case c.ignored == "" && h.Ignored != "":
			t.Errorf("%s: ignored %q; want it in force", c.key, h.Ignored)
		case c.ignored != "" && !strings.Contains(h.Ignored, c.ignored):
			t.Errorf("%s: ignored %q; want the reason, with %q", c.key, h.Ignored, c.ignored)
		case (h.Running != 0) != c.wantRunning:
			t.Errorf("%s: running %d; want running %v", c.key, h.Running, c.wantRunning)
		}
	}
}

// TestStateShowsHooksTheBackendDoesNotServe: in proxy mode, a hook on a
// method the backend does not serve never runs, and the page says so, as
// the daemon's fleet record does.
func TestStateShowsHooksTheBackendDoesNotServe(t *testing.T) {
	backend := startDaemon(t, nil)
	e := etcdtest.Start(t)
	d := startDaemon(t, func(cfg *server.Config) {
		cfg.Proxy = proxy.Backend{Target: backend.grpcAddr}
		cfg.EtcdEndpoints = e.Endpoints()
	})
	const unserved = "events.v1.EventService/NoSuchMethod/pre/x"
	const served = "events.v1.EventService/SendEvent/pre/y"
	putOn(t, e, unserved, `{"script": "module.exports = () => {}"}`)
	putOn(t, e, served, `{"script": "module.exports = () => {}"}`)
	check := func(st *apiState) {
		t.Helper()
		if n := st.count(unserved); n != 1 {
			t.Errorf("%s is listed %d times; want once", unserved, n)
		}
		if h := st.hook(served); h == nil || h.Ignored != "" {
			t.Errorf("%s: %+v; want it in force, not ignored", served, h)
		}
	}
	ignored := func(st *apiState) bool {
		h := st.hook(unserved)
		return h != nil && strings.Contains(h.Ignored, "the backend does not serve events.v1.EventService/NoSuchMethod")
	}
	var st *apiState
	eventually(t, "the page to show the hook on a method the backend does not serve as ignored", func() bool {
		st = readState(t, d)
		return ignored(st)
	})
	check(st)
	// While etcd does not answer, the page shows what the daemon runs from
	// memory, the same.
	e.Stop()
	eventually(t, "the page to show the hooks from memory", func() bool {
		st = readState(t, d)
		return st.EtcdError != "" && ignored(st)
	})
	check(st)
}

// startDaemonOn runs the daemon on the test etcd e, which the test may stop
// and start again.
func startDaemonOn(t *testing.T, e *etcdtest.Etcd) *daemon {
	t.Helper()
	return startDaemon(t, func(cfg *server.Config) { cfg.EtcdEndpoints = e.Endpoints() })
}

// putOn stores a hook document in e and returns the revision of the write.
func putOn(t *testing.T, e *etcdtest.Etcd, key, doc string) int64 {
	t.Helper()
	resp, err := e.Client.Put(context.Background(), "/apihooks/hooks/"+key, doc)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// While etcd does not answer, /api/state still shows what the daemon runs
// from memory, soon, with etcd's error and that it does not follow etcd.
func TestStateDuringAnEtcdOutage(t *testing.T) {
	e := etcdtest.Start(t)
	d := startDaemonOn(t, e)
	const (
		running = "events.v1.EventService/SendEvent/pre/deny-guest"
		broken  = "events.v1.EventService/GetEvents/pre/broken"
		ignored = "events.v1.EventServce/SendEvent/pre/typo"
	)
	putOn(t, e, running, `{"script": "module.exports = (ctx) => { if (ctx.request.toUserId === 'guest') return {status: 403} }"}`)
	putOn(t, e, broken, `{"script": "module.exports = (ctx) => {"}`)
	rev := putOn(t, e, ignored, `{"script": "module.exports = () => {}"}`)
	eventually(t, "the daemon to load the hooks", func() bool { return readState(t, d).Revision >= rev })

	e.Stop()
	var st *apiState
	eventually(t, "/api/state to say the daemon does not follow etcd", func() bool {
		st = readState(t, d)
		return !st.Synced && st.EtcdError != ""
	})
	start := time.Now()
	st = readState(t, d)
	// The one read of etcd gives up after a second; the fleet's records,
	// which are in etcd too, are not read (2 s more).
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("/api/state took %v while etcd is down; want an answer after the one read that gives up after a second", took)
	}
	if st.Synced || !strings.Contains(st.EtcdError, "etcd") {
		t.Errorf("/api/state: synced %v, etcdError %q; want not synced, with etcd's error", st.Synced, st.EtcdError)
	}
	cases := []struct {
		key   string
		check func(h *stateHook) bool
		want  string
	}{
		{running, func(h *stateHook) bool { return h.Running > 0 && h.Error == "" }, "running"},
		{broken, func(h *stateHook) bool { return h.Broken && h.Error != "" }, "broken, with its error"},
		{ignored, func(h *stateHook) bool { return strings.Contains(h.Ignored, "not hookable") }, "ignored, with why"},
	}
	for _, c := range cases {
		if h := st.hook(c.key); h == nil || !c.check(h) {
			t.Errorf("during the outage, /api/state shows %s as %+v; want it %s", c.key, h, c.want)
		}
	}
	if code := guestCode(d); code != codes.PermissionDenied {
		t.Errorf("SendEvent(guest) during the outage = %v; want the hook in memory to deny it", code)
	}

	e.Start()
	eventually(t, "/api/state to follow etcd again", func() bool {
		st = readState(t, d)
		return st.Synced && st.EtcdError == "" && st.EtcdRevision >= rev
	})
}
