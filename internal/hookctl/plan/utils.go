package plan

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// UtilItem is one change of a plan to a util. Add and Change make the
// manifest's script the active version: a version etcd already holds with
// the same content is activated, else the next version is written and
// activated. Remove deletes every version and the active key.
type UtilItem struct {
	Action Action
	Name   string
	// Version is the version activated (Add, Change); New is set when the
	// plan writes it.
	Version int
	New     bool
	// Current is what etcd holds (nil for Add); Desired what the manifest
	// wants (nil for Remove).
	Current *store.Util
	Desired *manifest.Util
	// ScriptDiff is the unified diff from the active version's script,
	// for Change.
	ScriptDiff string
	// puts and guards are the item's writes.
	puts   map[string][]byte
	guards map[string]int64
	dels   []string
}

// AddUtils adds to p the changes that bring the utils in etcd (read with
// Store.Utils) to the manifest's. With prune, a manifest without an owner
// also removes the utils it does not list (utils have no owner, so a
// manifest that declares one never removes any).
func (p *Plan) AddUtils(utils map[string]*store.Util) {
	wanted := map[string]bool{}
	for _, mu := range p.Manifest.Utils {
		wanted[mu.Name] = true
		cur := utils[mu.Name]
		if cur == nil {
			it := UtilItem{Action: Add, Name: mu.Name, Version: 1, New: true, Desired: mu}
			it.write(p.Prefix, cur, mu)
			p.UtilItems = append(p.UtilItems, it)
			continue
		}
		if active := cur.Version(cur.Active); active != nil && active.DocErr == nil && cur.ActiveErr == nil && sameUtil(active.Doc, mu.Doc) {
			p.Unchanged++
			continue
		}
		it := UtilItem{Action: Change, Name: mu.Name, Current: cur, Desired: mu, Version: cur.Latest() + 1, New: true}
		for _, v := range cur.Versions {
			if v.DocErr == nil && sameUtil(v.Doc, mu.Doc) {
				it.Version, it.New = v.Version, false
			}
		}
		from := ""
		if active := cur.Version(cur.Active); active != nil && active.DocErr == nil {
			from = active.Doc.Script
		}
		it.ScriptDiff = hookdoc.ScriptDiff(fmt.Sprintf("etcd utils/%s@%d", mu.Name, cur.Active), mu.Script, from, mu.Doc.Script)
		it.write(p.Prefix, cur, mu)
		p.UtilItems = append(p.UtilItems, it)
	}
	names := make([]string, 0, len(utils))
	for n := range utils {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if wanted[n] {
			continue
		}
		if !p.Prune || p.Manifest.Owner != "" {
			p.UnmanagedUtils = append(p.UnmanagedUtils, n)
			continue
		}
		cur := utils[n]
		it := UtilItem{Action: Remove, Name: n, Current: cur, guards: cur.Paths(p.Prefix)}
		for path := range it.guards {
			it.dels = append(it.dels, path)
		}
		slices.Sort(it.dels)
		p.UtilItems = append(p.UtilItems, it)
	}
}

// write sets the item's writes: the new version, if any, and the active
// key, each guarded by what was read.
func (it *UtilItem) write(prefix string, cur *store.Util, mu *manifest.Util) {
	it.puts, it.guards = map[string][]byte{}, map[string]int64{}
	activePath := store.UtilPath(prefix, it.Name, 0)
	it.guards[activePath] = 0
	if cur != nil {
		it.guards[activePath] = cur.ActiveRevision
	}
	versionPath := store.UtilPath(prefix, it.Name, it.Version)
	if it.New {
		it.guards[versionPath] = 0
		it.puts[versionPath] = mu.Raw
	} else if v := cur.Version(it.Version); v != nil {
		it.guards[versionPath] = v.ModRevision
	}
	it.puts[activePath] = []byte(fmt.Sprintf(`{"version":%d}`, it.Version))
}

func sameUtil(a, b *registry.UtilDocument) bool {
	lang := func(d *registry.UtilDocument) string {
		if d.Lang == "" {
			return "js"
		}
		return string(d.Lang)
	}
	return a.Script == b.Script && lang(a) == lang(b) && a.Description == b.Description
}

// addUtilWrites adds the plan's utils to w.
func (p *Plan) addUtilWrites(w *store.Write) {
	for _, it := range p.UtilItems {
		for k, v := range it.puts {
			w.Puts[k] = v
		}
		for k, g := range it.guards {
			if w.Guards == nil {
				w.Guards = map[string]int64{}
			}
			w.Guards[k] = g
		}
		w.Deletes = append(w.Deletes, it.dels...)
	}
}

func (p *Plan) countUtils(a Action) int {
	n := 0
	for _, it := range p.UtilItems {
		if it.Action == a {
			n++
		}
	}
	return n
}

func (p *Plan) renderUtils(w io.Writer) {
	for _, it := range p.UtilItems {
		switch it.Action {
		case Add:
			fmt.Fprintf(w, "+ add     util %s\n    version 1, active; script: %s\n", it.Name, it.Desired.Script)
		case Change:
			how := fmt.Sprintf("version %d (written now)", it.Version)
			if !it.New {
				how = fmt.Sprintf("version %d (already in etcd)", it.Version)
			}
			from := "none"
			if it.Current.Active > 0 {
				from = fmt.Sprint(it.Current.Active)
			}
			fmt.Fprintf(w, "~ change  util %s\n    active: %s → %s\n", it.Name, from, how)
			if it.ScriptDiff != "" {
				fmt.Fprintf(w, "    script:\n")
				for _, line := range strings.Split(strings.TrimRight(it.ScriptDiff, "\n"), "\n") {
					fmt.Fprintf(w, "      %s\n", line)
				}
			}
		case Remove:
			fmt.Fprintf(w, "- remove  util %s (%d versions)\n", it.Name, len(it.Current.Versions))
		}
	}
}

// UtilItemView is one change to a util as JSON.
type UtilItemView struct {
	Action     Action `json:"action"`
	Util       string `json:"util"`
	Version    int    `json:"version,omitempty"`
	New        bool   `json:"new,omitempty"`
	Previous   int    `json:"previousActive,omitempty"`
	Script     string `json:"script,omitempty"`
	Line       int    `json:"line,omitempty"`
	ScriptDiff string `json:"scriptDiff,omitempty"`
}

func (p *Plan) utilViews() []UtilItemView {
	var out []UtilItemView
	for _, it := range p.UtilItems {
		v := UtilItemView{Action: it.Action, Util: it.Name, Version: it.Version, New: it.New, ScriptDiff: it.ScriptDiff}
		if it.Desired != nil {
			v.Script, v.Line = it.Desired.Script, it.Desired.Line
		}
		if it.Current != nil {
			v.Previous = it.Current.Active
		}
		out = append(out, v)
	}
	return out
}

// ImportersError is CheckImporters' refusal of a plan: utils it removes or
// changes are imported by hooks that would no longer compile once it is
// applied, so every call of their methods would fail.
type ImportersError struct {
	// Utils are the utils at fault, by name.
	Utils []BrokenImport
}

// BrokenImport is one util a plan removes or changes, with the hooks
// importing it (directly or through another util) that it breaks.
type BrokenImport struct {
	Util string
	// Action is Remove or Change.
	Action Action
	Hooks  []BrokenHook
}

// BrokenHook is a hook that would no longer compile.
type BrokenHook struct {
	// Name is the hook as people write it, Path its etcd key, Owner its
	// owner ("" for none).
	Name, Path, Owner string
	Err               error
}

func (e *ImportersError) Error() string {
	var b strings.Builder
	b.WriteString("the plan would break hooks that import utils it removes or changes (every call of their methods would fail):")
	for _, u := range e.Utils {
		what := "removes"
		if u.Action == Change {
			what = "changes"
		}
		fmt.Fprintf(&b, "\n  it %s util %s, which these hooks import:", what, u.Util)
		for _, h := range u.Hooks {
			owner := "no owner"
			if h.Owner != "" {
				owner = "owner " + h.Owner
			}
			fmt.Fprintf(&b, "\n    %s (%s, %s): %v", h.Name, h.Path, owner, h.Err)
		}
	}
	b.WriteString("\nlist the util in the manifest as those hooks need it, or change or remove those hooks first")
	return b.String()
}

// CheckImporters refuses a plan that would break hooks importing a util it
// removes or changes, as hookctl utils activate refuses an activation that
// would: it compiles, against the utils as the plan leaves them, every hook
// that imports such a util (directly or through another util) and is in
// etcd after the plan: the manifest's, and those the plan leaves as they
// are (another owner's, or all the hooks it does not list when it does not
// prune). A hook the plan leaves that does not compile with the utils in
// etcd now either does not count: the plan does not break it. utils are
// the utils in etcd, as given to AddUtils. It returns an *ImportersError,
// or nil.
func (p *Plan) CheckImporters(utils map[string]*store.Util) error {
	changed := map[string]Action{}
	for _, it := range p.UtilItems {
		if it.Action == Remove || it.Action == Change {
			changed[it.Name] = it.Action
		}
	}
	if len(changed) == 0 {
		return nil
	}
	values := map[string][]byte{}
	for _, u := range utils {
		for _, x := range u.Versions {
			values[x.Path] = x.Raw
		}
		if u.ActiveRevision != 0 && u.ActiveErr == nil {
			values[store.UtilPath(p.Prefix, u.Name, 0)] = []byte(fmt.Sprintf(`{"version":%d}`, u.Active))
		}
	}
	before := registry.NewUtils(p.Prefix, values)
	for _, it := range p.UtilItems {
		for _, k := range it.dels {
			delete(values, k)
		}
		for k, v := range it.puts {
			values[k] = v
		}
	}
	after := registry.NewUtils(p.Prefix, values)

	// The hooks in etcd after the plan: those it leaves, then the
	// manifest's.
	type hook struct {
		key   registry.Key
		doc   *registry.Document
		path  string
		owner string
		// left is set for a hook the plan leaves as it is.
		left bool
	}
	var hooks []hook
	for _, e := range p.stay {
		if e.Valid() {
			hooks = append(hooks, hook{e.Key, e.Doc, e.Path, e.Doc.Owner, true})
		}
	}
	for _, h := range p.Manifest.Hooks {
		hooks = append(hooks, hook{h.Key, h.Doc, h.Key.Path(p.Prefix), p.Manifest.Owner, false})
	}
	names := make([]string, 0, len(changed))
	for n := range changed {
		names = append(names, n)
	}
	slices.Sort(names)
	var bad []BrokenImport
	broken := map[string]error{} // by path; nil: compiles
	for _, n := range names {
		// The utils whose code changes with n, as before or after the plan.
		deps := before.Dependents(map[string]bool{n: true})
		for d := range after.Dependents(map[string]bool{n: true}) {
			deps[d] = true
		}
		bi := BrokenImport{Util: n, Action: changed[n]}
		for _, h := range hooks {
			if !registry.MentionsUtil([]byte(h.doc.Script), deps) {
				continue
			}
			err, done := broken[h.path]
			if !done {
				if _, err = registry.CompileWithUtils(h.key, h.doc, after); err != nil && h.left {
					if _, was := registry.CompileWithUtils(h.key, h.doc, before); was != nil {
						err = nil // broken already
					}
				}
				broken[h.path] = err
			}
			if err != nil {
				bi.Hooks = append(bi.Hooks, BrokenHook{Name: hookname.Format(h.key), Path: h.path, Owner: h.owner, Err: err})
			}
		}
		if len(bi.Hooks) > 0 {
			bad = append(bad, bi)
		}
	}
	if len(bad) > 0 {
		return &ImportersError{Utils: bad}
	}
	return nil
}
