// Package plan compares the hooks a manifest wants with the hooks etcd
// holds, and says what applying the manifest would do: which hooks it adds,
// which it changes (field by field, with a unified diff of the script) and,
// when pruning, which it removes. A plan also knows the revisions it was made
// from, so that writing it can be refused if etcd changed meanwhile.
package plan

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// Action is what a plan does to one hook.
type Action string

// The actions of a plan.
const (
	Add    Action = "add"
	Change Action = "change"
	Remove Action = "remove"
)

// Item is one change of a plan.
type Item struct {
	Action Action
	// Path is the etcd key; Name the hook as people write it (the key
	// itself, for a key that is not a valid hook key).
	Path, Name string
	// Current is what etcd holds (nil for Add); Desired what the manifest
	// wants (nil for Remove).
	Current *store.Entry
	Desired *manifest.Hook
	// Changes are the fields that differ, and ScriptDiff the script's
	// unified diff, for Change.
	Changes    []hookdoc.Change
	ScriptDiff string
}

// Plan is what applying a manifest would do.
type Plan struct {
	Manifest *manifest.Manifest
	Prefix   string
	// ReadRevision is the etcd revision the plan was made from.
	ReadRevision int64
	Prune        bool
	Items        []Item
	// UtilItems are the changes to utils (see AddUtils).
	UtilItems []UtilItem
	// Unchanged counts the manifest's hooks that etcd already holds as they
	// are.
	Unchanged int
	// Unmanaged are hooks in etcd that the manifest does not list and that
	// stay: the plan does not prune, or they are not the manifest owner's
	// (see owns).
	Unmanaged []string
	// stay are the entries of Unmanaged, in the same order.
	stay []*store.Entry
	// UnmanagedUtils are the utils in etcd that the manifest does not
	// list and that stay.
	UnmanagedUtils []string
	// guards are the mod revisions of the keys the plan changes or
	// removes, which catch their deletion meanwhile; one compare over the
	// directory catches every other change, so a plan costs etcd compares
	// for its changes only.
	guards map[string]int64
	// keep are the mod revisions of the keys the plan leaves as they are.
	keep map[string]int64
}

// Build makes the plan that brings entries (read at readRev) to m. With
// prune, keys under the hooks directory that m does not list are removed,
// including keys that are not valid hook keys.
func Build(m *manifest.Manifest, entries []store.Entry, readRev int64, prefix string, prune bool) *Plan {
	p := &Plan{Manifest: m, Prefix: prefix, ReadRevision: readRev, Prune: prune, guards: map[string]int64{}, keep: map[string]int64{}}
	byPath := make(map[string]*store.Entry, len(entries))
	for i := range entries {
		byPath[entries[i].Path] = &entries[i]
	}
	wanted := map[string]bool{}
	for _, h := range m.Hooks {
		path := h.Key.Path(prefix)
		wanted[path] = true
		cur, ok := byPath[path]
		if !ok {
			p.Items = append(p.Items, Item{Action: Add, Path: path, Name: h.Name(), Desired: h})
			continue
		}
		if cur.DocErr != nil {
			p.guards[path] = cur.ModRevision
			p.Items = append(p.Items, Item{Action: Change, Path: path, Name: h.Name(), Current: cur, Desired: h,
				Changes: []hookdoc.Change{{Field: "document", From: "invalid: " + cur.DocErr.Error(), To: "valid"}}})
			continue
		}
		if hookdoc.Equal(cur.Doc, h.Doc) {
			p.Unchanged++
			p.keep[path] = cur.ModRevision
			continue
		}
		p.guards[path] = cur.ModRevision
		item := Item{Action: Change, Path: path, Name: h.Name(), Current: cur, Desired: h,
			Changes: hookdoc.FieldChanges(cur.Doc, h.Doc)}
		item.ScriptDiff = hookdoc.ScriptDiff(
			fmt.Sprintf("etcd %s (revision %d)", cur.Key, cur.ModRevision), h.Script, cur.Doc.Script, h.Doc.Script)
		p.Items = append(p.Items, item)
	}
	for i := range entries {
		e := &entries[i]
		if wanted[e.Path] {
			continue
		}
		name := strings.TrimPrefix(e.Path, registry.HooksDir(prefix))
		if e.KeyErr == nil {
			name = hookname.Format(e.Key)
		}
		if !prune || !owns(m, e) {
			p.Unmanaged = append(p.Unmanaged, name)
			p.stay = append(p.stay, e)
			continue
		}
		p.guards[e.Path] = e.ModRevision
		p.Items = append(p.Items, Item{Action: Remove, Path: e.Path, Name: name, Current: e})
	}
	order := map[Action]int{Add: 0, Change: 1, Remove: 2}
	slices.SortStableFunc(p.Items, func(a, b Item) int {
		if a.Action != b.Action {
			return order[a.Action] - order[b.Action]
		}
		ai, bi := a.invalidKey(), b.invalidKey()
		switch {
		case ai && bi:
			return strings.Compare(a.Path, b.Path)
		case ai != bi: // keys that are not hook keys last
			if ai {
				return 1
			}
			return -1
		}
		return hookname.Compare(a.key(), b.key())
	})
	return p
}

// CheckOwners refuses a plan that changes a hook another owner has: a
// manifest of owner: payments (or of no owner) that lists a hook of
// owner: search would silently take it over, with its script. It returns
// each such hook as a problem of the manifest (file, line, hook), or nil.
// A hook whose document is invalid has no owner anyone can tell.
func (p *Plan) CheckOwners() error {
	var problems diag.List
	for _, it := range p.Items {
		if it.Action != Change || it.Current.Doc == nil || it.Current.Doc.Owner == p.Manifest.Owner {
			continue
		}
		problems.Addf(p.Manifest.Path, it.Desired.Line, it.Name, "the hook is %s in etcd and this manifest is %s: a manifest does not change another owner's hook (--take-ownership lets it)",
			ownerOf(it.Current.Doc.Owner), ownerOf(p.Manifest.Owner))
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}

func ownerOf(owner string) string {
	if owner == "" {
		return "without owner"
	}
	return "owner " + owner + "'s"
}

func (it *Item) invalidKey() bool { return it.Desired == nil && it.Current.KeyErr != nil }

func (it *Item) key() registry.Key {
	if it.Desired != nil {
		return it.Desired.Key
	}
	return it.Current.Key
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Items) == 0 && len(p.UtilItems) == 0 }

// Count returns how many items, of hooks and utils, have action a.
func (p *Plan) Count(a Action) int {
	n := p.countUtils(a)
	for _, it := range p.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

// Write returns the plan as one guarded write: nothing under the hooks
// directory may have been put since the plan's revision, and every key the
// plan changes or removes must still have the revision it was read at
// (which also catches its deletion).
func (p *Plan) Write() *store.Write {
	w := &store.Write{ReadRevision: p.ReadRevision, Guards: p.guards, Keep: p.keep, Puts: map[string][]byte{}}
	for _, it := range p.Items {
		switch it.Action {
		case Add, Change:
			w.Puts[it.Path] = it.Desired.Raw
		case Remove:
			w.Deletes = append(w.Deletes, it.Path)
		}
	}
	p.addUtilWrites(w)
	return w
}

// Summary is the plan's closing line: "1 to add, 2 to change, 0 to remove,
// 3 unchanged".
func (p *Plan) Summary() string {
	return fmt.Sprintf("%d to add, %d to change, %d to remove, %d unchanged",
		p.Count(Add), p.Count(Change), p.Count(Remove), p.Unchanged)
}

// Render writes the plan for people.
func (p *Plan) Render(w io.Writer) {
	if p.Empty() {
		// Nothing changes: every hook and util of the manifest is as in
		// etcd.
		what := count(len(p.Manifest.Hooks), "hook")
		if n := len(p.Manifest.Utils); n > 0 {
			what += ", " + count(n, "util")
		}
		fmt.Fprintf(w, "No changes: etcd matches %s (%s, revision %d).\n", p.Manifest.Path, what, p.ReadRevision)
		p.renderUnmanaged(w)
		return
	}
	owner := ""
	if p.Manifest.Owner != "" {
		owner = ", owner " + p.Manifest.Owner
	}
	fmt.Fprintf(w, "Plan for %s against etcd revision %d (prefix %s%s):\n\n", p.Manifest.Path, p.ReadRevision, p.Prefix, owner)
	for _, it := range p.Items {
		switch it.Action {
		case Add:
			fmt.Fprintf(w, "+ add     %s\n", it.Name)
			for _, line := range describeNew(it.Desired) {
				fmt.Fprintf(w, "    %s\n", line)
			}
		case Change:
			fmt.Fprintf(w, "~ change  %s\n", it.Name)
			for _, c := range it.Changes {
				fmt.Fprintf(w, "    %s: %s → %s\n", c.Field, c.From, c.To)
			}
			if it.ScriptDiff != "" {
				fmt.Fprintf(w, "    script:\n")
				for _, line := range strings.Split(strings.TrimRight(it.ScriptDiff, "\n"), "\n") {
					fmt.Fprintf(w, "      %s\n", line)
				}
			}
		case Remove:
			fmt.Fprintf(w, "- remove  %s\n", it.Name)
		}
	}
	p.renderUtils(w)
	fmt.Fprintf(w, "\n%s.\n", p.Summary())
	p.renderUnmanaged(w)
}

// maxListed is how many names the plan's footer lists of the hooks or
// utils that stay; it says how many more there are.
const maxListed = 20

// listed joins names, the first maxListed of them.
func listed(names []string) string {
	if len(names) <= maxListed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s ... and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
}

// renderUnmanaged says which hooks and utils in etcd the manifest does not
// list and why they stay: the plan does not prune (--prune would remove
// them), or prune removes only hooks of the manifest's owner (see owns).
func (p *Plan) renderUnmanaged(w io.Writer) {
	var prunable, others []string
	for i, e := range p.stay {
		name := p.Unmanaged[i]
		switch {
		case owns(p.Manifest, e):
			prunable = append(prunable, name)
		case e.Doc == nil:
			others = append(others, name+" (invalid document, owner unknown)")
		case e.Doc.Owner == "":
			others = append(others, name+" (no owner)")
		default:
			others = append(others, fmt.Sprintf("%s (owner %s)", name, e.Doc.Owner))
		}
	}
	if n := len(prunable); n > 0 {
		fmt.Fprintf(w, "%d hook(s) in etcd are not in the manifest and stay (--prune removes them): %s\n", n, listed(prunable))
	}
	if n := len(others); n > 0 {
		why := "they have an owner: --prune with a manifest without owner: removes only hooks without one"
		if p.Manifest.Owner != "" {
			why = fmt.Sprintf("they are not owner %s's: --prune removes only owner %s's hooks", p.Manifest.Owner, p.Manifest.Owner)
		}
		fmt.Fprintf(w, "%d hook(s) in etcd are not in the manifest and stay (%s): %s\n", n, why, listed(others))
	}
	if n := len(p.UnmanagedUtils); n > 0 {
		how := "--prune removes them"
		if p.Manifest.Owner != "" {
			how = "utils have no owner: only --prune with a manifest without owner: removes them"
		}
		fmt.Fprintf(w, "%d util(s) in etcd are not in the manifest and stay (%s): %s\n", n, how, listed(p.UnmanagedUtils))
	}
}

// describeNew lists the settings of a hook to add.
func describeNew(h *manifest.Hook) []string {
	d := h.Doc
	lines := []string{fmt.Sprintf("script: %s (%d lines)", h.Script, strings.Count(strings.TrimRight(d.Script, "\n"), "\n")+1)}
	if p := hookdoc.ShowParams(d.Params); p != "{}" {
		lines = append(lines, "params: "+p)
	}
	if !d.IsEnabled() {
		lines = append(lines, "enabled: false")
	}
	if d.Order != 0 {
		lines = append(lines, fmt.Sprintf("order: %d", d.Order))
	}
	if d.Timeout != "" {
		lines = append(lines, "timeout: "+d.Timeout)
	}
	if d.OnError != "" && d.OnError != registry.Abort {
		lines = append(lines, "onError: "+string(d.OnError))
	}
	if d.Description != "" {
		lines = append(lines, fmt.Sprintf("description: %q", d.Description))
	}
	if d.Isolation != "" {
		lines = append(lines, "isolation: "+string(d.Isolation))
	}
	if d.Lang != "" {
		lines = append(lines, "lang: "+string(d.Lang))
	}
	if d.Style != "" {
		lines = append(lines, "style: "+string(d.Style))
	}
	return lines
}

// View is the plan as JSON.
type View struct {
	Manifest  string     `json:"manifest"`
	Prefix    string     `json:"prefix"`
	Revision  int64      `json:"revision"`
	Prune     bool       `json:"prune"`
	Changes   []ItemView `json:"changes"`
	Added     int        `json:"added"`
	Changed   int        `json:"changed"`
	Removed   int        `json:"removed"`
	Unchanged int        `json:"unchanged"`
	Unmanaged []string   `json:"unmanaged,omitempty"`
	// Utils are the changes to utils.
	Utils          []UtilItemView `json:"utils,omitempty"`
	UnmanagedUtils []string       `json:"unmanagedUtils,omitempty"`
	// Applied and AppliedRevision are set by apply once written.
	Applied         bool  `json:"applied"`
	AppliedRevision int64 `json:"appliedRevision,omitempty"`
}

// ItemView is one change as JSON.
type ItemView struct {
	Action     Action           `json:"action"`
	Hook       string           `json:"hook"`
	Key        string           `json:"key"`
	Script     string           `json:"script,omitempty"`
	Line       int              `json:"line,omitempty"`
	Revision   int64            `json:"revision,omitempty"`
	Fields     []hookdoc.Change `json:"fields,omitempty"`
	ScriptDiff string           `json:"scriptDiff,omitempty"`
}

// View returns the plan as JSON-ready data.
func (p *Plan) View() View {
	v := View{
		Manifest: p.Manifest.Path, Prefix: p.Prefix, Revision: p.ReadRevision, Prune: p.Prune,
		Changes: []ItemView{}, Added: p.Count(Add), Changed: p.Count(Change), Removed: p.Count(Remove),
		Unchanged: p.Unchanged, Unmanaged: p.Unmanaged, Utils: p.utilViews(), UnmanagedUtils: p.UnmanagedUtils,
	}
	for _, it := range p.Items {
		iv := ItemView{Action: it.Action, Hook: it.Name, Key: it.Path, Fields: it.Changes, ScriptDiff: it.ScriptDiff}
		if it.Desired != nil {
			iv.Script = it.Desired.Script
			iv.Line = it.Desired.Line
		}
		if it.Current != nil {
			iv.Revision = it.Current.ModRevision
		}
		v.Changes = append(v.Changes, iv)
	}
	return v
}

// owns reports whether prune may remove e for m: a hook of m's owner (a
// manifest without one owns the hooks without one, and keys or documents
// that are not valid hooks).
func owns(m *manifest.Manifest, e *store.Entry) bool {
	if e.Doc == nil {
		return m.Owner == ""
	}
	return e.Doc.Owner == m.Owner
}

// count says n things: "1 hook", "2 hooks".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
