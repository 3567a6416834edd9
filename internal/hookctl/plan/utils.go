package plan

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
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
