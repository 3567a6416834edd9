package plan_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/plan"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

const prefix = "/apihooks/"

func loadManifest(t *testing.T, yaml string, scripts map[string]string) *manifest.Manifest {
	t.Helper()
	dir := t.TempDir()
	for name, src := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func entry(t *testing.T, key, value string, modRev int64) store.Entry {
	t.Helper()
	path := registry.HooksDir(prefix) + key
	e := store.Entry{Path: path, Raw: []byte(value), ModRevision: modRev}
	e.Key, e.KeyErr = registry.ParseKey(prefix, path)
	e.Doc, e.DocErr = registry.DecodeDocument([]byte(value))
	return e
}

func TestBuild(t *testing.T) {
	m := loadManifest(t, `hooks:
  - {method: s.S/M, phase: pre, name: same, script: a.js}
  - {method: s.S/M, phase: pre, name: changed, script: a.js, order: 2}
  - {method: s.S/M, phase: pre, name: fixed, script: a.js}
  - {method: s.S/M, phase: post, name: added, script: a.js}
`, map[string]string{"a.js": "undefined\n"})
	entries := []store.Entry{
		entry(t, "s.S/M/pre/same", `{"script":"undefined\n","order":0}`, 5),
		entry(t, "s.S/M/pre/changed", `{"script":"undefined\n"}`, 6),
		entry(t, "s.S/M/pre/fixed", `{"script":"undefined\n","colour":1}`, 7),
		entry(t, "s.S/M/pre/extra", `{"script":"1"}`, 8),
		entry(t, "junk", `x`, 9),
	}
	cases := []struct {
		name        string
		prune       bool
		wantItems   []string
		wantUnmanag []string
		wantGuards  map[string]int64
		wantDeletes []string
	}{
		{"without prune", false,
			[]string{"add s.S/M post added", "change s.S/M pre changed", "change s.S/M pre fixed"},
			[]string{"s.S/M pre extra", "junk"},
			map[string]int64{"s.S/M/pre/changed": 6, "s.S/M/pre/fixed": 7}, nil},
		{"with prune", true,
			[]string{"add s.S/M post added", "change s.S/M pre changed", "change s.S/M pre fixed", "remove s.S/M pre extra", "remove junk"},
			nil,
			map[string]int64{"s.S/M/pre/changed": 6, "s.S/M/pre/fixed": 7, "s.S/M/pre/extra": 8, "junk": 9},
			[]string{"s.S/M/pre/extra", "junk"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := plan.Build(m, entries, 10, prefix, tc.prune)
			var items []string
			for _, it := range p.Items {
				items = append(items, string(it.Action)+" "+it.Name)
			}
			if !slices.Equal(items, tc.wantItems) {
				t.Errorf("items: got %q; want %q", items, tc.wantItems)
			}
			if !slices.Equal(p.Unmanaged, tc.wantUnmanag) {
				t.Errorf("unmanaged: got %q; want %q", p.Unmanaged, tc.wantUnmanag)
			}
			if p.Unchanged != 1 {
				t.Errorf("unchanged: got %d; want 1", p.Unchanged)
			}
			w := p.Write()
			if w.ReadRevision != 10 {
				t.Errorf("write guard revision: got %d; want 10", w.ReadRevision)
			}
			guards := map[string]int64{}
			for k, v := range w.Guards {
				guards[strings.TrimPrefix(k, registry.HooksDir(prefix))] = v
			}
			if len(guards) != len(tc.wantGuards) {
				t.Errorf("guards: got %v; want %v", guards, tc.wantGuards)
			}
			for k, v := range tc.wantGuards {
				if guards[k] != v {
					t.Errorf("guard %s: got %d; want %d", k, guards[k], v)
				}
			}
			var deletes []string
			for _, d := range w.Deletes {
				deletes = append(deletes, strings.TrimPrefix(d, registry.HooksDir(prefix)))
			}
			if !slices.Equal(deletes, tc.wantDeletes) {
				t.Errorf("deletes: got %v; want %v", deletes, tc.wantDeletes)
			}
			if len(w.Puts) != 3 {
				t.Errorf("puts: got %d; want 3", len(w.Puts))
			}
		})
	}
}

func TestRenderShowsFieldsAndTheScriptDiff(t *testing.T) {
	m := loadManifest(t, "hooks:\n  - {method: s.S/M, phase: pre, name: h, script: a.js, order: 2, params: {x: 2}}\n",
		map[string]string{"a.js": "one\ntwo\nthree\n"})
	p := plan.Build(m, []store.Entry{entry(t, "s.S/M/pre/h", `{"script":"one\nTWO\nthree\n","params":{"x":1}}`, 4)}, 9, prefix, false)
	var b bytes.Buffer
	p.Render(&b)
	for _, want := range []string{
		"Plan for " + m.Path + " against etcd revision 9 (prefix /apihooks/):",
		"~ change  s.S/M pre h",
		`    params: {"x":1} → {"x":2}`,
		"    order: 0 → 2",
		"      --- etcd s.S/M/pre/h (revision 4)",
		"      +++ " + filepath.Join(filepath.Dir(m.Path), "a.js"),
		"      -TWO",
		"      +two",
		"0 to add, 1 to change, 0 to remove, 0 unchanged.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("render: got\n%s\nwant it to contain %q", b.String(), want)
		}
	}
}
