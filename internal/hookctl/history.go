package hookctl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// versionView is one version of a hook in history's JSON.
type versionView struct {
	Revision int64  `json:"revision"`
	Version  int64  `json:"version"`
	Current  bool   `json:"current,omitempty"`
	Change   string `json:"change"`
	// ScriptDiff is the script's diff from the version before, with --diff.
	ScriptDiff string `json:"scriptDiff,omitempty"`
	Error      string `json:"error,omitempty"`
}

type historyView struct {
	Hook     string        `json:"hook"`
	Key      string        `json:"key"`
	Versions []versionView `json:"versions"`
	// Complete is true when every version since the key was created is
	// listed.
	Complete bool `json:"complete"`
	// Gone says which versions etcd compacted, when some were.
	Gone            string `json:"gone,omitempty"`
	CompactRevision int64  `json:"compactRevision,omitempty"`
	Truncated       bool   `json:"truncated,omitempty"`
	// DeletedAt is the revision that deleted the hook, when it is deleted.
	DeletedAt int64 `json:"deletedAt,omitempty"`
}

// describeChange says what changed from the version before (prev, nil when
// unknown) to e.
func describeChange(prev, e *store.Entry, first bool) string {
	switch {
	case e.DocErr != nil:
		return "invalid document: " + e.DocErr.Error()
	case prev == nil && first:
		return "created"
	case prev == nil:
		return "the version before was compacted"
	case prev.DocErr != nil:
		return "replaced an invalid document"
	}
	return hookdoc.Summary(prev.Doc, e.Doc)
}

func goneNote(h *store.History) string {
	if !h.Compacted {
		return ""
	}
	oldest := h.Versions[len(h.Versions)-1]
	msg := fmt.Sprintf("versions before revision %d were compacted", oldest.ModRevision)
	if h.Missing > 0 {
		if h.Missing == 1 {
			msg += " (version 1 of this key is gone)"
		} else {
			msg += fmt.Sprintf(" (versions 1-%d of this key are gone)", h.Missing)
		}
	}
	if h.CompactRevision > 0 {
		msg += fmt.Sprintf("; etcd keeps history from revision %d on", h.CompactRevision)
	}
	return msg
}

func (a *app) historyCommand() *cobra.Command {
	var (
		output   string
		limit    int
		showDiff bool
	)
	c := &cobra.Command{
		Use:   "history " + hookArgsUsage,
		Short: "List the earlier versions of a hook that etcd still holds, and what changed",
		Long: `List the versions of a hook that etcd still holds, newest first (the 20
newest; --limit N, 0 for all): the revision that wrote each, its version
number, and what changed from the version before (fields, and the script as
lines added and removed; --diff prints the script's diff). etcd records no
times. After a compaction, history says which versions are gone. Any listed
revision can be given to rollback --to-revision.`,
		Example: `  hookctl history events.v1.EventService/SendEvent pre addvalue
  hookctl history events.v1.EventService/SendEvent pre addvalue --diff`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, err := hookArgs(args)
			if err != nil {
				return err
			}
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			h, err := s.History(a.ctx, k, walkLimit(limit))
			if errors.Is(err, store.ErrNotFound) {
				return notFound(k, s.Prefix())
			}
			if err != nil {
				return err
			}
			// The version past the limit, read only to say what the oldest
			// one shown changed, is not shown.
			var before *store.Entry
			if limit > 0 && len(h.Versions) > limit {
				before = &h.Versions[limit]
				h.Versions = h.Versions[:limit]
				h.Truncated, h.Complete = true, false
			}
			v := historyView{Hook: hookname.Format(k), Key: s.Path(k), Complete: h.Complete, Gone: goneNote(h),
				CompactRevision: h.CompactRevision, Truncated: h.Truncated, DeletedAt: h.DeletedAt}
			for i := range h.Versions {
				e := &h.Versions[i]
				prev := before
				if i+1 < len(h.Versions) {
					prev = &h.Versions[i+1]
				}
				vv := versionView{Revision: e.ModRevision, Version: e.Version, Current: i == 0 && h.DeletedAt == 0,
					Change: describeChange(prev, e, i+1 == len(h.Versions) && h.Complete)}
				if e.DocErr != nil {
					vv.Error = e.DocErr.Error()
				}
				if showDiff && prev != nil && prev.DocErr == nil && e.DocErr == nil {
					vv.ScriptDiff = hookdoc.ScriptDiff(fmt.Sprintf("revision %d", prev.ModRevision),
						fmt.Sprintf("revision %d", e.ModRevision), prev.Doc.Script, e.Doc.Script)
				}
				v.Versions = append(v.Versions, vv)
			}
			if output != "table" {
				return a.printData(output, v)
			}
			fmt.Fprintf(a.out, "%s (%s)\n", v.Hook, v.Key)
			if v.DeletedAt > 0 {
				fmt.Fprintf(a.out, "Deleted at revision %d; rollback puts back its last version.\n", v.DeletedAt)
			}
			t := newTable(a.out, "REVISION", "VERSION", "CHANGE")
			for _, vv := range v.Versions {
				rev := fmt.Sprint(vv.Revision)
				if vv.Current {
					rev += " (current)"
				}
				t.row(rev, fmt.Sprint(vv.Version), vv.Change)
			}
			t.flush()
			if showDiff {
				for _, vv := range v.Versions {
					if vv.ScriptDiff != "" {
						fmt.Fprintf(a.out, "\n%s", vv.ScriptDiff)
					}
				}
			}
			switch {
			case v.Gone != "":
				fmt.Fprintf(a.out, "%s.\n", upperFirst(v.Gone))
			case v.Truncated:
				fmt.Fprintf(a.out, "Older versions not shown (--limit %d).\n", limit)
			}
			return nil
		}),
	}
	c.Flags().IntVar(&limit, "limit", defaultHistoryLimit, "list at most this many versions, the newest (0: all that etcd holds)")
	c.Flags().BoolVar(&showDiff, "diff", false, "print the script's diff for each change")
	outputFlag(c, &output, "table", "json", "yaml")
	c.ValidArgsFunction = a.completeHook
	return c
}

// defaultHistoryLimit is how many versions history lists without --limit.
const defaultHistoryLimit = 20

// walkLimit is how many versions history reads to list limit of them: one
// more, to say what the oldest one listed changed (0: all).
func walkLimit(limit int) int {
	if limit <= 0 {
		return 0
	}
	return limit + 1
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (a *app) rollbackCommand() *cobra.Command {
	var (
		toRevision int64
		output     string
	)
	c := &cobra.Command{
		Use:   "rollback " + hookArgsUsage + " [--to-revision R]",
		Short: "Put back an earlier version of a hook, as a new revision",
		Long: `Put back an earlier version of a hook: by default the one before the current
version, or the version in force at revision R (as history lists them). The
earlier document is written again, as a new revision, guarded by the current
revision (exit 3 if the hook changed meanwhile). A version etcd has compacted
cannot be put back; rollback says which versions are gone. A deleted hook is
put back as its last version (or the one of --to-revision), if nobody
created it meanwhile.`,
		Example: `  hookctl rollback events.v1.EventService/SendEvent pre addvalue
  hookctl rollback events.v1.EventService/SendEvent pre addvalue --to-revision 42`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, cur, err := a.openHook(args)
			var nf *exitError
			if errors.As(err, &nf) && s == nil && nf.code == ExitFailed {
				return a.undelete(k, toRevision, output)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			var target *store.Entry
			if toRevision > 0 {
				if toRevision > cur.ModRevision {
					return failed(fmt.Errorf("revision %d is newer than the hook's current revision %d", toRevision, cur.ModRevision))
				}
				target, err = s.GetAt(a.ctx, k, toRevision)
				var ce *store.CompactedError
				switch {
				case errors.As(err, &ce):
					return failed(fmt.Errorf("cannot roll %s back to revision %d: %v", hookname.Format(k), toRevision, ce))
				case errors.Is(err, store.ErrNotFound):
					return failed(fmt.Errorf("hook %s did not exist at revision %d", hookname.Format(k), toRevision))
				case err != nil:
					return err
				}
			} else {
				h, err := s.History(a.ctx, k, 2)
				if err != nil {
					return err
				}
				if len(h.Versions) < 2 {
					if h.Compacted {
						return failed(fmt.Errorf("hook %s: no earlier version to roll back to: %s", hookname.Format(k), goneNote(h)))
					}
					return failed(fmt.Errorf("hook %s has no earlier version (it was created at revision %d)", hookname.Format(k), cur.ModRevision))
				}
				target = &h.Versions[1]
			}
			if target.DocErr != nil {
				return failed(fmt.Errorf("the version of %s at revision %d is invalid, not rolling back to it: %v",
					hookname.Format(k), target.ModRevision, target.DocErr))
			}
			if cur.DocErr == nil && hookdoc.Equal(cur.Doc, target.Doc) {
				return a.done(output, writeResult{Hook: hookname.Format(k), Key: cur.Path, Action: "unchanged",
					Revision: cur.ModRevision, RolledBackTo: target.ModRevision},
					"%s already matches the version of revision %d (current revision %d)", hookname.Format(k), target.ModRevision, cur.ModRevision)
			}
			// The earlier value is written again as it was stored; it is
			// checked as any write is.
			if _, err := registry.BuildWithUtils(k, target.Raw, a.conn.maxHookTimeout, registry.StubUtils()); err != nil {
				return failed(fmt.Errorf("the version of %s at revision %d: %w", hookname.Format(k), target.ModRevision, err))
			}
			rev, err := a.commit(s, cur.ModRevision, k, target.Raw)
			if err != nil {
				return err
			}
			change := "replaced an invalid document"
			if cur.DocErr == nil {
				change = hookdoc.Summary(cur.Doc, target.Doc)
			}
			return a.done(output, writeResult{Hook: hookname.Format(k), Key: cur.Path, Action: "rolledBack", Revision: rev,
				Previous: cur.ModRevision, Change: change, RolledBackTo: target.ModRevision},
				"rolled %s back to the version of revision %d, now revision %d: %s", hookname.Format(k), target.ModRevision, rev, change)
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	c.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision whose version to put back (default: the version before the current)")
	c.ValidArgsFunction = a.completeHook
	return c
}

// undelete puts back a deleted hook: its last version, or the one in force
// at revision toRevision.
func (a *app) undelete(k registry.Key, toRevision int64, output string) error {
	s, err := a.open()
	if err != nil {
		return err
	}
	defer s.Close()
	h, err := s.History(a.ctx, k, 1)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(k, s.Prefix())
	}
	if err != nil {
		return err
	}
	target := &h.Versions[0]
	if toRevision > 0 {
		target, err = s.GetAt(a.ctx, k, toRevision)
		var ce *store.CompactedError
		switch {
		case errors.As(err, &ce):
			return failed(fmt.Errorf("cannot put %s back as of revision %d: %v", hookname.Format(k), toRevision, ce))
		case errors.Is(err, store.ErrNotFound):
			return failed(fmt.Errorf("hook %s did not exist at revision %d", hookname.Format(k), toRevision))
		case err != nil:
			return err
		}
	}
	if _, err := registry.BuildWithUtils(k, target.Raw, a.conn.maxHookTimeout, registry.StubUtils()); err != nil {
		return failed(fmt.Errorf("the version of %s at revision %d: %w", hookname.Format(k), target.ModRevision, err))
	}
	rev, err := a.commit(s, 0, k, target.Raw)
	if err != nil {
		return err
	}
	return a.done(output, writeResult{Hook: hookname.Format(k), Key: s.Path(k), Action: "restored", Revision: rev,
		Previous: h.DeletedAt, RolledBackTo: target.ModRevision},
		"restored %s, deleted at revision %d, as the version of revision %d, now revision %d",
		hookname.Format(k), h.DeletedAt, target.ModRevision, rev)
}
