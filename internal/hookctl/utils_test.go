package hookctl_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// utils returns every key and value under the utils directory.
func (e *env) utils() map[string]string {
	e.t.Helper()
	resp, err := e.etcd.Get(context.Background(), registry.UtilsDir(prefix), clientv3.WithPrefix())
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[strings.TrimPrefix(string(kv.Key), registry.UtilsDir(prefix))] = string(kv.Value)
	}
	return m
}

func TestUtilsPutActivateListHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a1.js"), `module.exports = { add: (a, b) => a + b };`)
	writeFile(t, filepath.Join(dir, "a2.ts"), `export function add(a: number, b: number): number { return a + b + 100 }`)
	writeFile(t, filepath.Join(dir, "noadd.js"), `export function sub(a, b) { return a - b }`)
	writeFile(t, filepath.Join(dir, "broken.js"), `export function add( {`)

	r := e.want(0, "utils", "put", "Addition", "--script", filepath.Join(dir, "a1.js"), "--description", "adds")
	mustContain(t, "put", r.stdout, "util Addition: version 1 written", "no version is active: hookctl utils activate Addition 1")
	r = e.want(0, "utils", "list")
	mustContain(t, "list before activate", r.stdout, "NOT ACTIVE: hooks that import it fail until a version is activated (utils activate Addition VERSION)")
	mustNotContain(t, "list before activate", r.stdout, "INVALID")
	r = e.want(0, "utils", "activate", "Addition", "1")
	mustContain(t, "activate", r.stdout, "util Addition: active version 1 at revision")
	r = e.want(0, "utils", "put", "Addition", "--script", filepath.Join(dir, "a2.ts"))
	mustContain(t, "put", r.stdout, "util Addition: version 2 written", "active is still 1")
	if got, want := e.utils()["Addition/2"], `{"script":"export function add(a: number, b: number): number { return a + b + 100 }","lang":"ts"}`; got != want {
		t.Errorf("utils/Addition/2 = %s; want %s", got, want)
	}

	before := e.revision()
	r = e.want(1, "utils", "put", "Addition", "--script", filepath.Join(dir, "broken.js"))
	mustContain(t, "put of a broken util", r.stderr, "utils/Addition@3")
	if e.revision() != before {
		t.Errorf("a broken util was written")
	}

	// put refuses a hook that imports a util nobody has.
	writeFile(t, filepath.Join(dir, "nowhere.js"), `const n = require('utils/Nowhere'); module.exports = function () {}`)
	r = e.want(1, "put", "events.v1.EventService/SendEvent", "pre", "nowhere", "--script", filepath.Join(dir, "nowhere.js"))
	mustContain(t, "put of a hook importing a missing util", r.stderr, `no util "Nowhere"`)

	// A hook that imports add from the util.
	e.put("events.v1.EventService/SendEvent/pre/sum",
		`{"script":"import { add } from 'utils/Addition'; export default function (ctx) { ctx.request.eventType = 'sum ' + add(1, 2) }"}`)
	e.want(0, "utils", "put", "Addition", "--script", filepath.Join(dir, "noadd.js"))
	before = e.revision()
	r = e.want(1, "utils", "activate", "Addition", "3")
	mustContain(t, "activate of a version a hook cannot use", r.stderr,
		"hooks that import util Addition would no longer compile", "events.v1.EventService/SendEvent pre sum", `No matching export`, "nothing written")
	if e.revision() != before {
		t.Errorf("activate wrote a version that breaks a hook")
	}
	e.want(0, "utils", "activate", "Addition", "2")
	e.want(0, "utils", "activate", "Addition", "3", "--force")
	r = e.want(1, "utils", "activate", "Addition", "9")
	mustContain(t, "activate of a missing version", r.stderr, "util Addition has no version 9 (versions: [1 2 3])")
	e.want(2, "utils", "activate", "Addition", "0")
	e.want(2, "utils", "put", "no/slash", "--script", filepath.Join(dir, "a1.js"))

	r = e.want(0, "utils", "list")
	mustContain(t, "list", r.stdout, "NAME", "Addition  3       1,2,3")
	r = e.want(0, "utils", "history", "Addition")
	mustContain(t, "history", r.stdout, "VERSION", "3        ", "Activations, newest first:", ": version 3", ": version 2", ": version 1")
	r = e.want(0, "utils", "list", "-o", "json")
	mustContain(t, "list -o json", r.stdout, `"name": "Addition"`, `"active": 3`)
}

func TestManifestUtils(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	manifestWith := func(utils string) {
		writeFile(t, filepath.Join(dir, "hooks.yaml"), utils+`
hooks:
  - method: events.v1.EventService/SendEvent
    phase: pre
    name: sum
    script: sum.js
`)
	}
	if err := os.Mkdir(filepath.Join(dir, "utils"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "utils", "addition.js"), `export function add(a, b) { return a + b }`)
	writeFile(t, filepath.Join(dir, "utils", "addition2.js"), `export function add(a, b) { return a + b + 100 }`)
	writeFile(t, filepath.Join(dir, "sum.js"), `import { add } from 'utils/Addition';
export default function (ctx) { ctx.request.eventType = "sum " + add(1, 2) }`)
	writeFile(t, filepath.Join(dir, "sum.test.yaml"), `hook: events.v1.EventService/SendEvent pre sum
cases:
  - name: adds with the manifest's util
    request: {toUserId: a, eventType: x}
    expect: {action: continue, request: {toUserId: a, eventType: "sum 3"}}
`)
	const util1 = "utils:\n  - name: Addition\n    script: utils/addition.js\n    description: adds\n"
	const util2 = "utils:\n  - name: Addition\n    script: utils/addition2.js\n    description: adds\n"
	manifestWith(util1)

	r := runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir})
	if r.code != 0 {
		t.Fatalf("test -f with utils: %s", r)
	}
	mustContain(t, "test", r.stdout, "ok    "+filepath.Join(dir, "sum.test.yaml")+":3  adds with the manifest's util")
	e.want(0, "validate", "-f", dir)

	r = e.want(0, "apply", "-f", dir)
	mustContain(t, "apply", r.stdout, "+ add     util Addition", "+ add     events.v1.EventService/SendEvent pre sum", "2 to add")
	u := e.utils()
	if u["Addition/active"] != `{"version":1}` || !strings.Contains(u["Addition/1"], "return a + b }") {
		t.Fatalf("utils after apply: %v", u)
	}
	r = e.want(0, "apply", "-f", dir)
	mustContain(t, "re-apply", r.stdout, "No changes")

	manifestWith(util2)
	r = e.want(1, "diff", "-f", dir)
	mustContain(t, "diff", r.stdout, "~ change  util Addition", "active: 1 → version 2 (written now)", "+export function add(a, b) { return a + b + 100 }")
	e.want(0, "apply", "-f", dir)
	if u := e.utils(); u["Addition/active"] != `{"version":2}` || !strings.Contains(u["Addition/2"], "+ 100") {
		t.Fatalf("utils after the second apply: %v", u)
	}
	manifestWith(util1)
	r = e.want(0, "apply", "-f", dir)
	mustContain(t, "apply of the first version again", r.stdout, "active: 2 → version 1 (already in etcd)")
	if u := e.utils(); u["Addition/active"] != `{"version":1}` || u["Addition/3"] != "" {
		t.Fatalf("utils after going back to the first version: %v", u)
	}

	// A hook that imports a util nobody has: offline, validate cannot
	// tell; apply reads etcd and refuses.
	writeFile(t, filepath.Join(dir, "sum.js"), `const m = require('utils/Nowhere'); module.exports = function () {}`)
	e.want(0, "validate", "-f", dir)
	r = e.want(1, "apply", "-f", dir)
	mustContain(t, "apply of a hook importing a missing util", r.stderr, `no util "Nowhere"`)

	r = e.want(0, "types", "-o", filepath.Join(dir, "types"), "-f", dir)
	decl := readFile(t, filepath.Join(dir, "types", "utils", "utils.d.ts"))
	mustContain(t, "utils.d.ts", decl, `declare module "utils/Addition" {`, `declare module "utils/Addition@*" {`, "export = m;")

	// Without the util and the hook, prune removes both.
	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks: []\n")
	r = e.want(0, "apply", "-f", dir, "--prune")
	mustContain(t, "apply --prune", r.stdout, "- remove  util Addition (2 versions)", "- remove  events.v1.EventService/SendEvent pre sum")
	if u := e.utils(); len(u) != 0 {
		t.Fatalf("utils after prune: %v", u)
	}
}
