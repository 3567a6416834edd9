package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/fleet"
)

// registerDaemon publishes the daemon's record under <prefix>daemons/ (see
// package fleet) until the returned registration is closed.
// unserved, when set, lists hooks the daemon ignores beside those reg does
// (a proxy's, on methods its backend does not serve), and the revision of
// the hooks it checked: the record's revision is no newer.
func registerDaemon(client *clientv3.Client, cfg Config, addr string, reg *registry.Registry, q *interceptor.Quarantine, unserved func() ([]string, int64), log *slog.Logger) *fleet.Registration {
	host, _ := os.Hostname()
	id := cmp.Or(host, "daemon") + "-" + uuid.NewString()[:8]
	started := time.Now().UTC().Truncate(time.Second)
	version := fleet.Version()
	isolation := cmp.Or(cfg.Isolation, "inprocess")
	state := func() fleet.Record {
		st := reg.Status()
		rec := fleet.Record{ID: id, Address: addr, Version: version, Isolation: isolation,
			Revision: st.Revision, Synced: st.Synced, Held: st.Held, Broken: st.Broken, Invalid: st.Invalid, Ignored: st.Ignored, StartedAt: started}
		if unserved != nil {
			more, checked := unserved()
			rec.Ignored = append(rec.Ignored, more...)
			slices.Sort(rec.Ignored)
			rec.Revision = min(rec.Revision, checked)
		}
		for _, h := range q.List(reg) {
			rec.Quarantined = append(rec.Quarantined, fmt.Sprintf("%s: %s", h.ID, h.Reason))
		}
		return rec
	}
	log.Info("registering the daemon", "key", fleet.Dir(cfg.Prefix)+id)
	return fleet.Register(client, id, state, fleet.WithPrefix(cfg.Prefix), fleet.WithLogger(log))
}
