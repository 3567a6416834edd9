package hookctl

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/store"
	"github.com/apihooks/apihooks/server/fleet"
)

// defaultWait is how long --wait given alone waits.
const defaultWait = time.Minute

// waitPoll is how often --wait reads the daemons' records.
const waitPoll = 100 * time.Millisecond

// waitFlag adds --wait[=TIMEOUT] to a command that writes.
func waitFlag(c *cobra.Command, d *time.Duration) {
	c.Flags().DurationVar(d, "wait", 0, fmt.Sprintf("after writing, wait up to TIMEOUT (--wait alone: %v) until every daemon registered during the wait has loaded the revision written; exit 4 naming the daemons that have not (one whose record went away first among them), or that report a written hook broken or ignored, or when their records cannot be read", defaultWait))
	c.Flags().Lookup("wait").NoOptDefVal = defaultWait.String()
}

// daemonState says how far a daemon is from having rev in force.
func daemonState(d fleet.Record, rev int64) string {
	switch {
	case d.Stopping:
		return "stopping"
	case !d.Synced:
		return "not synced with etcd"
	case d.Revision >= rev:
		return "in step"
	case d.Held:
		return fmt.Sprintf("holding back a staged apply (%d behind)", rev-d.Revision)
	}
	return fmt.Sprintf("%d behind", rev-d.Revision)
}

// among returns the entries of reports ("id: reason") whose hook is among
// keys.
func among(reports []string, prefix string, keys []string) []string {
	var out []string
	for _, b := range reports {
		for _, k := range keys {
			if strings.HasPrefix(b, strings.TrimPrefix(k, registry.HooksDir(prefix))+": ") {
				out = append(out, b)
			}
		}
	}
	return out
}

// seenDaemon is a daemon --wait has seen a record of during the wait.
type seenDaemon struct {
	// rec is its last record read.
	rec fleet.Record
	// goneAt is the etcd revision of the first read that no longer found
	// the record (0: it is there).
	goneAt int64
}

// inStep reports whether d has revision rev in force.
func inStep(d fleet.Record, rev int64) bool { return d.Synced && d.Revision >= rev }

// waitLive waits, for --wait, until every daemon whose record it sees
// during the wait has revision rev in force, reporting on w. keys are the
// etcd keys written: a daemon reporting one of them broken, refused or
// ignored fails the wait. A daemon whose record goes away counts as it was
// last seen: in step, or behind until its record comes back (it may have
// lost etcd and still serve an older version). A failed read of the
// records ends the wait with ExitWait: the write was done.
func (a *app) waitLive(s *store.Store, w io.Writer, timeout time.Duration, rev int64, keys []string) error {
	if timeout <= 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	start := time.Now()
	seen := map[string]*seenDaemon{}
	for {
		recs, readRev, err := s.Daemons(a.ctx)
		if err != nil {
			if a.ctx.Err() != nil {
				return a.ctx.Err()
			}
			return &exitError{code: ExitWait, err: fmt.Errorf("written at revision %d, but --wait cannot tell whether the daemons have loaded it: reading their records under %s failed: %v",
				rev, fleet.Dir(s.Prefix()), err)}
		}
		if a.set.waitRead != nil {
			a.set.waitRead(recs)
		}
		present := map[string]bool{}
		for _, d := range recs {
			present[d.ID] = true
			seen[d.ID] = &seenDaemon{rec: d}
		}
		for id, d := range seen {
			if !present[id] && d.goneAt == 0 {
				d.goneAt = readRev
			}
		}
		if len(seen) == 0 {
			fmt.Fprintf(w, "No daemon is registered under %s: nothing to wait for.\n", fleet.Dir(s.Prefix()))
			return nil
		}
		ids := slices.Sorted(maps.Keys(seen))
		var behind, broken, invalid, ignored []string
		stopping := 0
		for _, id := range ids {
			d := seen[id].rec
			if d.Stopping {
				// Shutting down: it takes no new calls, and loads no
				// more changes; its record then goes.
				stopping++
				continue
			}
			if !inStep(d, rev) {
				state := daemonState(d, rev)
				if at := seen[id].goneAt; at > 0 {
					state = fmt.Sprintf("its record went away at revision %d, before it loaded %d: it stopped, or lost etcd and may still serve an older version", at, rev)
				}
				behind = append(behind, fmt.Sprintf("%s (%s, revision %d: %s)", d.ID, d.Address, d.Revision, state))
				continue
			}
			for _, b := range among(d.Broken, s.Prefix(), keys) {
				broken = append(broken, fmt.Sprintf("%s (%s) reports %s", d.ID, d.Address, b))
			}
			for _, b := range among(d.Invalid, s.Prefix(), keys) {
				invalid = append(invalid, fmt.Sprintf("%s (%s) refused %s", d.ID, d.Address, b))
			}
			for _, b := range among(d.Ignored, s.Prefix(), keys) {
				ignored = append(ignored, fmt.Sprintf("%s (%s) ignores %s", d.ID, d.Address, b))
			}
		}
		switch {
		case len(behind) == 0 && len(broken)+len(invalid)+len(ignored) > 0:
			var parts []string
			if len(broken) > 0 {
				parts = append(parts, "with broken hooks:\n  "+strings.Join(broken, "\n  "))
			}
			if len(invalid) > 0 {
				parts = append(parts, "with documents refused, an earlier version running instead:\n  "+strings.Join(invalid, "\n  "))
			}
			if len(ignored) > 0 {
				parts = append(parts, "with hooks that never run there:\n  "+strings.Join(ignored, "\n  "))
			}
			return &exitError{code: ExitWait, err: fmt.Errorf("revision %d is loaded, but %s", rev, strings.Join(parts, "\nand "))}
		case len(behind) == 0:
			live := len(seen) - stopping
			if stopping > 0 {
				fmt.Fprintf(w, "Live on %d daemon%s at revision %d (after %v); %d stopping, not waited for.\n",
					live, plural(live), rev, time.Since(start).Round(time.Millisecond), stopping)
				return nil
			}
			fmt.Fprintf(w, "Live on %d daemon%s at revision %d (after %v).\n", live, plural(live), rev, time.Since(start).Round(time.Millisecond))
			return nil
		case time.Now().After(deadline):
			return &exitError{code: ExitWait, err: fmt.Errorf("written at revision %d, but after %v not every daemon has loaded it:\n  %s",
				rev, timeout, strings.Join(behind, "\n  "))}
		}
		select {
		case <-a.ctx.Done():
			return a.ctx.Err()
		case <-time.After(waitPoll):
		}
	}
}

// statusView is hookctl status as JSON.
type statusView struct {
	Prefix string `json:"prefix"`
	// Revision is etcd's; HooksRevision the newest change (put or
	// deletion) of a hook, a cache configuration or a util.
	Revision      int64        `json:"revision"`
	HooksRevision int64        `json:"hooksRevision"`
	Daemons       []daemonView `json:"daemons"`
}

type daemonView struct {
	fleet.Record
	// Lag is how many revisions the daemon is behind the newest change it
	// has not loaded.
	Lag   int64  `json:"lag"`
	State string `json:"state"`
}

func (a *app) statusCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "status",
		Short: "List the live daemons: address, version, the hooks revision each has in force, broken, quarantined, ignored and refused hooks",
		Long: `List the daemons registered under <prefix>daemons/ (each keeps its record
there while it lives, with an etcd lease): address, version, isolation, the
hooks revision it has in force and its lag behind the newest change (put or
deletion) of a hook, a cache configuration or a util that it has not loaded,
its broken and quarantined hooks, when it started, the hooks it ignores:
those on a service it does not hook, or, for a proxy, on a method its backend
does not serve; and the hooks whose newest document it refused (its own
limits, a lower --max-hook-timeout say) while an earlier version runs.
Scripts should read -o json: columns may be added.`,
		Example: `  hookctl status
  hookctl status -o json`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			v, err := a.fleetStatus(s)
			if err != nil {
				return err
			}
			if output != "text" {
				return a.printData(output, v)
			}
			fmt.Fprintf(a.out, "etcd revision %d; hooks last changed at revision %d.\n", v.Revision, v.HooksRevision)
			if len(v.Daemons) == 0 {
				fmt.Fprintf(a.out, "No daemon is registered under %s.\n", fleet.Dir(s.Prefix()))
				return nil
			}
			t := newTable(a.out, "DAEMON", "ADDRESS", "VERSION", "ISOLATION", "REVISION", "STATE", "BROKEN", "QUARANTINED", "STARTED", "IGNORED", "INVALID")
			for _, d := range v.Daemons {
				t.row(d.ID, d.Address, d.Version, d.Isolation, fmt.Sprint(d.Revision), d.State,
					fmt.Sprint(len(d.Broken)), fmt.Sprint(len(d.Quarantined)), d.StartedAt.Local().Format(time.DateTime), fmt.Sprint(len(d.Ignored)),
					fmt.Sprint(len(d.Invalid)))
			}
			t.flush()
			for _, d := range v.Daemons {
				for _, b := range d.Broken {
					fmt.Fprintf(a.out, "%s: broken %s\n", d.ID, b)
				}
				for _, b := range d.Invalid {
					fmt.Fprintf(a.out, "%s: refused %s\n", d.ID, b)
				}
				for _, b := range d.Ignored {
					fmt.Fprintf(a.out, "%s: ignored %s\n", d.ID, b)
				}
				for _, q := range d.Quarantined {
					fmt.Fprintf(a.out, "%s: quarantined %s\n", d.ID, q)
				}
			}
			return nil
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml")
	return c
}

// isCompacted reports whether err is etcd's refusal of a revision it has
// compacted.
func isCompacted(err error) bool {
	var ce *store.CompactedError
	return errors.As(err, &ce)
}

// fleetStatus reads the live daemons' records and tells, for each, the
// newest change of the keys daemons load that it has not loaded.
func (a *app) fleetStatus(s *store.Store) (statusView, error) {
	now, keysRev, err := s.HookKeys(a.ctx, 0)
	if err != nil {
		return statusView{}, err
	}
	recs, rev, err := s.Daemons(a.ctx)
	if err != nil {
		return statusView{}, err
	}
	// missed memoises, by a daemon's revision, the newest change it has
	// not loaded (0: none).
	missed := map[int64]int64{}
	newestChange := func(from int64) (int64, error) {
		if m, ok := missed[from]; ok {
			return m, nil
		}
		m, err := s.NewestChange(a.ctx, now, keysRev, from)
		if err == nil {
			missed[from] = m
		}
		return m, err
	}
	var newest int64
	for _, mod := range now {
		newest = max(newest, mod)
	}
	// Deletions since the newest put (or since the start, when no key is
	// left), when etcd still has that history.
	if m, err := newestChange(max(newest, 1)); err == nil {
		newest = max(newest, m)
	} else if !isCompacted(err) {
		return statusView{}, err
	}
	v := statusView{Prefix: s.Prefix(), Revision: rev, Daemons: []daemonView{}}
	for _, d := range recs {
		dv := daemonView{Record: d}
		m, err := newestChange(d.Revision)
		switch {
		case err == nil:
			dv.State = daemonState(d, m)
		case !isCompacted(err):
			return statusView{}, err
		case newest > d.Revision:
			// What it holds is gone from etcd's history, but a newer
			// change is known.
			m, dv.State = newest, daemonState(d, newest)
		default:
			dv.State = fmt.Sprintf("cannot tell: etcd has compacted revision %d", d.Revision)
		}
		if m > d.Revision {
			dv.Lag = m - d.Revision
		}
		newest = max(newest, m)
		v.Daemons = append(v.Daemons, dv)
	}
	v.HooksRevision = newest
	return v, nil
}
