package plan_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/plan"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// TestCheckImporters: a plan that removes or changes a util is refused when
// a hook in etcd after it imports the util and would no longer compile,
// naming the util and the hook; etcd is real, read as apply reads it.
func TestCheckImporters(t *testing.T) {
	t.Parallel()
	const (
		addV1    = `{"script":"export function add(a, b) { return a + b }\n"}`
		active1  = `{"version":1}`
		requires = "const addition = require('utils/Addition');\nmodule.exports = function (ctx) { addition.add(1, 2); };\n"
		imports  = "import { add } from 'utils/Addition';\nmodule.exports = function (ctx) { add(1, 2); };\n"
		hookKey  = "hooks/events.v1.EventService/SendEvent/pre/"
	)
	hookDoc := func(script, owner string) string {
		d := map[string]any{"script": script}
		if owner != "" {
			d["owner"] = owner
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	addition := map[string]string{"utils/Addition/1": addV1, "utils/Addition/active": active1}
	with := func(base map[string]string, more map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name string
		// inEtcd are keys under the prefix.
		inEtcd map[string]string
		// manifest is hooks.yaml; files the scripts beside it.
		manifest string
		files    map[string]string
		prune    bool
		// want are the parts of the error; none: no error.
		want []string
	}{
		{"prune removes a util another owner's hook imports",
			with(addition, map[string]string{hookKey + "theirs": hookDoc(requires, "teamx")}),
			"hooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n", nil, true,
			[]string{"it removes util Addition, which these hooks import:\n    events.v1.EventService/SendEvent pre theirs (/p/" + hookKey + "theirs, owner teamx): ",
				`cannot find module "utils/Addition"`}},
		{"prune removes a util only the hooks it removes import",
			with(addition, map[string]string{hookKey + "stray": hookDoc(requires, "")}),
			"hooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n", nil, true, nil},
		{"without prune the util stays",
			with(addition, map[string]string{hookKey + "theirs": hookDoc(requires, "teamx")}),
			"hooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n", nil, false, nil},
		{"a manifest with an owner never removes a util",
			with(addition, map[string]string{hookKey + "theirs": hookDoc(requires, "teamx")}),
			"owner: events-team\nhooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n", nil, true, nil},
		{"a util changed so that a hook left in etcd no longer compiles",
			with(addition, map[string]string{hookKey + "theirs": hookDoc(imports, "teamx")}),
			"utils:\n  - {name: Addition, script: addition.js}\nhooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n",
			map[string]string{"addition.js": "export function sum(a, b) { return a + b }\n"}, false,
			[]string{"it changes util Addition, which these hooks import:\n    events.v1.EventService/SendEvent pre theirs (/p/" + hookKey + "theirs, owner teamx): "}},
		{"a util changed compatibly",
			with(addition, map[string]string{hookKey + "theirs": hookDoc(imports, "teamx")}),
			"utils:\n  - {name: Addition, script: addition.js}\nhooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n",
			map[string]string{"addition.js": "export function add(a, b) { return b + a }\nexport function sum(a, b) { return a + b }\n"}, false, nil},
		{"prune removes a util a hook imports through another util",
			with(addition, map[string]string{
				"utils/Sums/1":      `{"script":"export { add } from 'utils/Addition';\n"}`,
				"utils/Sums/active": active1,
				hookKey + "theirs":  hookDoc("const sums = require('utils/Sums');\nmodule.exports = function (ctx) { sums.add(1, 2); };\n", "teamx")}),
			"utils:\n  - {name: Sums, script: sums.js}\nhooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n",
			map[string]string{"sums.js": "export { add } from 'utils/Addition';\n"}, true,
			[]string{"it removes util Addition, which these hooks import:\n    events.v1.EventService/SendEvent pre theirs (/p/" + hookKey + "theirs, owner teamx): "}},
		{"prune removes a util a hook of the manifest imports",
			addition,
			"hooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: add.js}\n",
			map[string]string{"add.js": requires}, true,
			[]string{"it removes util Addition, which these hooks import:\n    events.v1.EventService/SendEvent pre mine (/p/" + hookKey + "mine, no owner): "}},
		{"a hook left in etcd that is broken already does not count",
			with(addition, map[string]string{hookKey + "theirs": hookDoc("const a = require('utils/Addition@7');\nmodule.exports = function (ctx) { a.add(1, 2); };\n", "teamx")}),
			"hooks:\n  - {method: events.v1.EventService/SendEvent, phase: pre, name: mine, script: ok.js}\n", nil, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := etcdtest.Start(t)
			for k, v := range tc.inEtcd {
				if _, err := e.Client.Put(ctx, "/p/"+k, v); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			files := map[string]string{"ok.js": "undefined\n", "hooks.yaml": tc.manifest}
			for k, v := range tc.files {
				files[k] = v
			}
			for name, src := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := manifest.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			s, err := store.Open(ctx, store.Config{Endpoints: e.Endpoints(), Prefix: "/p/", DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			entries, rev, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			utils, _, _, err := s.Utils(ctx)
			if err != nil {
				t.Fatal(err)
			}
			p := plan.Build(m, entries, rev, "/p/", tc.prune)
			p.AddUtils(utils)
			err = p.CheckImporters(utils)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v; want no error", err)
				}
				return
			}
			var ie *plan.ImportersError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v; want a *plan.ImportersError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error: got\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}
