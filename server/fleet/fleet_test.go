package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/logtest"
	"github.com/apihooks/apihooks/server/fleet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 15 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func records(t *testing.T, c *clientv3.Client) []fleet.Record {
	t.Helper()
	recs, _, err := fleet.List(context.Background(), c, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestARecordFollowsTheDaemonAndGoesWithIt(t *testing.T) {
	e := etcdtest.Start(t)
	var rev atomic.Int64
	rev.Store(5)
	state := func() fleet.Record {
		return fleet.Record{ID: "d1", Address: "127.0.0.1:1", Revision: rev.Load(), Synced: true}
	}
	r := fleet.Register(e.Client, "d1", state, fleet.WithPrefix("/p/"), fleet.WithInterval(20*time.Millisecond), fleet.WithLogger(quiet()))
	waitFor(t, "the record", func() bool { recs := records(t, e.Client); return len(recs) == 1 && recs[0].Revision == 5 })
	rev.Store(9)
	waitFor(t, "the record to follow the daemon", func() bool { recs := records(t, e.Client); return len(recs) == 1 && recs[0].Revision == 9 })
	r.Close()
	if recs := records(t, e.Client); len(recs) != 0 {
		t.Fatalf("after Close: records = %+v; want none", recs)
	}
}

func TestARecordOfADaemonThatDiedExpiresWithItsLease(t *testing.T) {
	e := etcdtest.Start(t)
	// The daemon's own client, closed under it as a crash would.
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	state := func() fleet.Record { return fleet.Record{ID: "d2"} }
	r := fleet.Register(c, "d2", state, fleet.WithPrefix("/p/"), fleet.WithTTL(2*time.Second), fleet.WithLogger(quiet()))
	defer r.Close()
	waitFor(t, "the record", func() bool { return len(records(t, e.Client)) == 1 })
	c.Close()
	waitFor(t, "the record to expire", func() bool { return len(records(t, e.Client)) == 0 })
}

// TestALostLeaseIsRetriedSoonAfterARecordThatWasKept: a daemon whose
// record was kept retries soon when it loses it, however often it lost it
// before: the wait between attempts grows only while no record is kept.
func TestALostLeaseIsRetriedSoonAfterARecordThatWasKept(t *testing.T) {
	e := etcdtest.Start(t)
	logs := &logtest.Buffer{}
	state := func() fleet.Record { return fleet.Record{ID: "d3"} }
	const interval = 20 * time.Millisecond
	r := fleet.Register(e.Client, "d3", state, fleet.WithPrefix("/p/"), fleet.WithInterval(interval),
		fleet.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	defer r.Close()
	for lost := 1; lost <= 4; lost++ {
		var lease clientv3.LeaseID
		waitFor(t, "the record", func() bool {
			resp, err := e.Client.Get(context.Background(), "/p/daemons/d3")
			if err != nil || len(resp.Kvs) == 0 {
				return false
			}
			lease = clientv3.LeaseID(resp.Kvs[0].Lease)
			return true
		})
		// The lease goes, as when etcd expired it while the daemon could
		// not reach it.
		if _, err := e.Client.Revoke(context.Background(), lease); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the daemon to notice", func() bool { return strings.Count(logs.String(), "retry_in=") == lost })
	}
	if got, want := strings.Count(logs.String(), "retry_in="+interval.String()), 4; got != want {
		t.Fatalf("%d of 4 lost leases retried after %v; want all:\n%s", got, interval, logs)
	}
}

// TestARecordSaysItsDaemonIsStoppingBeforeItGoes: CloseBy writes the record
// with Stopping, keeps it so for a moment, then the record goes, within
// the deadline given.
func TestARecordSaysItsDaemonIsStoppingBeforeItGoes(t *testing.T) {
	e := etcdtest.Start(t)
	state := func() fleet.Record { return fleet.Record{ID: "d4", Revision: 7} }
	r := fleet.Register(e.Client, "d4", state, fleet.WithPrefix("/p/"), fleet.WithLogger(quiet()))
	defer r.Close()
	waitFor(t, "the record", func() bool { return len(records(t, e.Client)) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := e.Client.Watch(ctx, r.Key())
	deadline := time.Now().Add(time.Minute)
	r.CloseBy(deadline)
	var got []string
	for len(got) < 2 {
		select {
		case resp := <-watch:
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					got = append(got, "deleted")
					continue
				}
				var rec fleet.Record
				if err := json.Unmarshal(ev.Kv.Value, &rec); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("revision %d, stopping %v", rec.Revision, rec.Stopping))
			}
		case <-time.After(waitTimeout):
			t.Fatalf("after CloseBy the record went through %v; want it stopping, then deleted", got)
		}
	}
	if want := []string{"revision 7, stopping true", "deleted"}; !slices.Equal(got, want) {
		t.Fatalf("after CloseBy the record went through %v; want %v", got, want)
	}
}
