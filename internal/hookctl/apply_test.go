package hookctl_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl"
)

func TestApplyWritesTheManifestThenReapplyWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.want(0, "apply", "-f", scriptsDir)
	mustContain(t, "first apply", r.stdout,
		"+ add     events.v1.EventService/SendEvent pre deny-guest",
		"+ add     events.v1.EventService/SendEvent pre addvalue",
		"+ add     events.v1.EventService/SendEvent post stamp-response",
		"4 to add, 0 to change, 0 to remove, 0 unchanged.",
		"Applied at revision")

	hooks := e.hooks()
	if len(hooks) != 4 {
		t.Fatalf("hooks in etcd after apply: got %d; want 4: %v", len(hooks), hooks)
	}
	for key, value := range hooks {
		k, err := registry.ParseKey(prefix, registry.HooksDir(prefix)+key)
		if err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
		if _, err := registry.Build(k, []byte(value)); err != nil {
			t.Errorf("the daemon's registry refuses what apply wrote at %s: %v\n%s", key, err, value)
		}
	}
	doc, err := registry.DecodeDocument([]byte(hooks["events.v1.EventService/SendEvent/pre/addvalue"]))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Order != 20 || doc.Timeout != "250ms" || string(doc.Params) != `{"extradata":{"source":"hook","campaign":"autumn"}}` {
		t.Errorf("addvalue document: got order %d, timeout %q, params %s; want 20, 250ms and the manifest's params",
			doc.Order, doc.Timeout, doc.Params)
	}

	before := e.revision()
	r = e.want(0, "apply", "-f", scriptsDir)
	mustContain(t, "second apply", r.stdout, "No changes: etcd matches", "4 hooks")
	if after := e.revision(); after != before {
		t.Errorf("etcd revision after re-apply: got %d; want %d (nothing written)", after, before)
	}
	e.want(0, "diff", "-f", scriptsDir)
}

func TestReapplyIsANoOpWhenStoredJSONDiffersOnlyInForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: a, script: a.js,
     params: {b: 1.0, a: [1, 2]}, timeout: 1000ms, onError: abort, enabled: true, order: 0}
`)
	// The same document as another tool might write it: other key order,
	// spacing, defaults spelled differently.
	e.put("events.v1.EventService/SendEvent/pre/a", `{ "timeout": "1s", "params": {"a": [1, 2], "b": 1}, "script": "undefined\n" }`)
	before := e.revision()
	r := e.want(0, "apply", "-f", dir)
	mustContain(t, "apply", r.stdout, "No changes")
	if after := e.revision(); after != before {
		t.Errorf("revision: got %d; want %d", after, before)
	}
}

func TestChangingOneScriptPlansExactlyThatDiff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := copyDir(t, scriptsDir)
	e.want(0, "apply", "-f", dir)

	script := filepath.Join(dir, "deny-guest.js")
	src := readFile(t, script)
	changed := strings.Replace(src, `status: 403`, `status: "PERMISSION_DENIED"`, 1)
	if changed == src {
		t.Fatal("deny-guest.js no longer holds status: 403; update the test")
	}
	writeFile(t, script, changed)

	r := e.want(1, "diff", "-f", dir)
	mustContain(t, "diff", r.stdout,
		"~ change  events.v1.EventService/SendEvent pre deny-guest",
		"--- etcd events.v1.EventService/SendEvent/pre/deny-guest (revision",
		"+++ "+script,
		`-    return { status: 403, message: "events to " + ctx.request.toUserId + " are not allowed" };`,
		`+    return { status: "PERMISSION_DENIED", message: "events to " + ctx.request.toUserId + " are not allowed" };`,
		"0 to add, 1 to change, 0 to remove, 3 unchanged.")
	if n := strings.Count(r.stdout, "\n-  ") + strings.Count(r.stdout, "\n+  "); n != 0 {
		t.Errorf("diff lists other hooks (%d lines):\n%s", n, r.stdout)
	}
	if got := strings.Count(r.stdout, "\n      -") - strings.Count(r.stdout, "\n      ---"); got != 1 {
		t.Errorf("removed script lines: got %d; want 1\n%s", got, r.stdout)
	}
	if got := strings.Count(r.stdout, "\n      +") - strings.Count(r.stdout, "\n      +++"); got != 1 {
		t.Errorf("added script lines: got %d; want 1\n%s", got, r.stdout)
	}

	// The plan as JSON names the same single change.
	r = e.want(1, "diff", "-f", dir, "-o", "json")
	mustContain(t, "diff -o json", r.stdout, `"changed": 1`, `"added": 0`, `"removed": 0`, `"unchanged": 3`, `"action": "change"`)

	r = e.want(0, "apply", "-f", dir)
	mustContain(t, "apply", r.stdout, "Applied at revision", "0 added, 1 changed, 0 removed")
	e.want(0, "diff", "-f", dir)
}

func TestChangingFieldsPlansEachField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := copyDir(t, scriptsDir)
	e.want(0, "apply", "-f", dir)
	m := readFile(t, filepath.Join(dir, "hooks.yaml"))
	m = strings.Replace(m, "blocked: mallory", "blocked: eve", 1)
	m = strings.Replace(m, "order: 10", "order: 5", 1)
	writeFile(t, filepath.Join(dir, "hooks.yaml"), m)
	r := e.want(1, "diff", "-f", dir)
	mustContain(t, "diff", r.stdout,
		`params: {"blocked":"mallory"} → {"blocked":"eve"}`,
		"order: 10 → 5",
		"0 to add, 1 to change")
	mustNotContain(t, "diff", r.stdout, "script:")
}

func TestInvalidScriptInAManifestOfTenWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	var m strings.Builder
	m.WriteString("hooks:\n")
	for i := range 10 {
		name := fmt.Sprintf("hook%d", i)
		src := "module.exports = function (ctx) {};\n"
		if i == 6 {
			src = "module.exports = function (ctx) {\n  var x = ;\n};\n"
		}
		writeFile(t, filepath.Join(dir, name+".js"), src)
		fmt.Fprintf(&m, "  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: %s\n    script: %s.js\n", name, name)
	}
	writeFile(t, filepath.Join(dir, "hooks.yaml"), m.String())
	before := e.revision()

	r := e.want(1, "apply", "-f", dir)
	bad := filepath.Join(dir, "hook6.js")
	mustContain(t, "stderr", r.stderr, bad+":2:11: hook events.v1.EventService/SendEvent pre hook6: SyntaxError: Unexpected token ;", "nothing was written")
	if r.stdout != "" {
		t.Errorf("stdout: got %q; want nothing (no plan for an invalid manifest)", r.stdout)
	}
	if after := e.revision(); after != before {
		t.Errorf("revision: got %d; want %d (nothing written)", after, before)
	}
	if hooks := e.hooks(); len(hooks) != 0 {
		t.Errorf("hooks in etcd: got %v; want none", hooks)
	}
	r = e.want(1, "validate", "-f", dir)
	mustContain(t, "validate stderr", r.stderr, bad+":2:11:", "1 problem found")
}

func TestManifestProblemsNameFileAndLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		manifest string
		want     string
	}{
		{"unknown field", "hooks:\n  - method: a.B/C\n    phase: pre\n    name: x\n    script: ok.js\n    colour: red\n",
			`hooks.yaml:6: hook: unknown field "colour"`},
		{"bad phase", "hooks:\n  - method: a.B/C\n    phase: during\n    name: x\n    script: ok.js\n",
			`hooks.yaml:2: phase "during" is not "pre", "post" or "error"`},
		{"bad name", "hooks:\n  - method: a.B/C\n    phase: pre\n    name: Bad_Name\n    script: ok.js\n",
			`hooks.yaml:2: name "Bad_Name" does not match`},
		{"bad timeout", "hooks:\n  - method: a.B/C\n    phase: pre\n    name: x\n    script: ok.js\n    timeout: soon\n",
			`hooks.yaml:6: hook a.B/C pre x: document: field timeout: "soon" is not a Go duration`},
		{"bad onError", "hooks:\n  - method: a.B/C\n    phase: pre\n    name: x\n    script: ok.js\n    onError: retry\n",
			`hooks.yaml:6: hook a.B/C pre x: document: field onError`},
		{"duplicate hook", "hooks:\n  - {method: a.B/C, phase: pre, name: x, script: ok.js}\n  - {method: a.B/C, phase: pre, name: x, script: ok.js}\n",
			`hooks.yaml:3: hook a.B/C pre x: listed twice (first at line 2)`},
		{"missing script file", "hooks:\n  - {method: a.B/C, phase: pre, name: x, script: missing.js}\n",
			`hooks.yaml:2: hook a.B/C pre x: script: open`},
		{"script not js or ts", "hooks:\n  - {method: a.B/C, phase: pre, name: x, script: ok.py}\n",
			`hooks.yaml:2: hook a.B/C pre x: script: "ok.py": want a .js or .ts file`},
		{"order not an integer", "hooks:\n  - {method: a.B/C, phase: pre, name: x, script: ok.js, order: first}\n",
			`hooks.yaml:2: hook a.B/C pre x: order: want an integer`},
		{"method without slash", "hooks:\n  - {method: SendEvent, phase: pre, name: x, script: ok.js}\n",
			`hooks.yaml:2: method "SendEvent": want SERVICE/METHOD`},
		{"yaml syntax", "hooks:\n  - method: [a\n", `hooks.yaml:`},
		{"no hooks", "hook: []\n", `hooks.yaml:1: manifest: unknown field "hook"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
			writeFile(t, filepath.Join(dir, "hooks.yaml"), tc.manifest)
			r := runHookctl(t, []string{"validate", "-f", dir})
			if r.code != 1 {
				t.Fatalf("validate: got exit %d; want 1\n%s", r.code, r)
			}
			mustContain(t, "stderr", r.stderr, tc.want)
		})
	}
}

func TestPruneDeletesHooksTheManifestDoesNotList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.want(0, "apply", "-f", scriptsDir)
	e.put("events.v1.EventService/GetEvents/pre/old", `{"script":"undefined"}`)
	e.put("not/a/valid/hook/key", `whatever`)

	r := e.want(0, "apply", "-f", scriptsDir)
	mustContain(t, "apply without prune", r.stdout, "No changes", "2 hook(s) in etcd are not in the manifest and stay (--prune removes them)")
	if n := len(e.hooks()); n != 6 {
		t.Fatalf("hooks: got %d; want 6", n)
	}
	r = e.want(1, "diff", "-f", scriptsDir, "--prune")
	mustContain(t, "diff --prune", r.stdout, "- remove  events.v1.EventService/GetEvents pre old", "- remove  not/a/valid/hook/key", "2 to remove")

	r = e.want(0, "apply", "-f", scriptsDir, "--prune", "--dry-run")
	mustContain(t, "dry run", r.stdout, "2 to remove", "Dry run: nothing was written.")
	if n := len(e.hooks()); n != 6 {
		t.Fatalf("hooks after --dry-run: got %d; want 6", n)
	}

	r = e.want(0, "apply", "-f", scriptsDir, "--prune")
	mustContain(t, "apply --prune", r.stdout, "0 added, 0 changed, 2 removed")
	hooks := e.hooks()
	want := []string{
		"events.v1.EventService/GetEvents/post/latest-events",
		"events.v1.EventService/SendEvent/post/stamp-response",
		"events.v1.EventService/SendEvent/pre/addvalue",
		"events.v1.EventService/SendEvent/pre/deny-guest",
	}
	if got := strings.Join(sortedKeys(hooks), ","); got != strings.Join(want, ",") {
		t.Errorf("hooks after prune: got %s; want %s", got, strings.Join(want, ","))
	}
	e.want(0, "diff", "-f", scriptsDir, "--prune")
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func TestConcurrentChangeBetweenPlanAndWriteWritesNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(ctx context.Context, c *clientv3.Client) error
	}{
		{"a hook the plan changes is changed", func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Put(ctx, prefix+"hooks/events.v1.EventService/SendEvent/pre/deny-guest", `{"script":"undefined"}`)
			return err
		}},
		{"a hook the plan leaves alone is changed", func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Put(ctx, prefix+"hooks/events.v1.EventService/SendEvent/post/stamp-response", `{"script":"undefined"}`)
			return err
		}},
		{"a hook is created", func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Put(ctx, prefix+"hooks/events.v1.EventService/GetEvents/pre/new", `{"script":"undefined"}`)
			return err
		}},
		{"a hook the manifest lists is deleted", func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Delete(ctx, prefix+"hooks/events.v1.EventService/SendEvent/pre/addvalue")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dir := copyDir(t, scriptsDir)
			e.want(0, "apply", "-f", dir)
			m := readFile(t, filepath.Join(dir, "hooks.yaml"))
			writeFile(t, filepath.Join(dir, "hooks.yaml"), strings.Replace(m, "blocked: mallory", "blocked: eve", 1))

			var afterChange map[string]string
			var changeRev int64
			e.opts = []hookctl.Option{hookctl.WithBeforeCommit(func(ctx context.Context) error {
				if err := tc.change(ctx, e.etcd); err != nil {
					return err
				}
				afterChange = e.hooks()
				changeRev = e.revision()
				return nil
			})}
			r := e.want(3, "apply", "-f", dir)
			mustContain(t, "stdout", r.stdout, "1 to change")
			mustContain(t, "stderr", r.stderr, "conflict: etcd changed since it was read", "nothing was written")
			if got := e.hooks(); !maps.Equal(got, afterChange) {
				t.Errorf("hooks after the refused apply: got %v; want them as the concurrent change left them: %v", got, afterChange)
			}
			if got := e.revision(); got != changeRev {
				t.Errorf("revision: got %d; want %d (nothing written after the concurrent change)", got, changeRev)
			}
		})
	}
}

func TestApplyChecksMethodsAgainstADescriptorSet(t *testing.T) {
	t.Parallel()
	set := writeEventsDescriptorSet(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	cases := []struct {
		name, method, phase string
		code                int
		want                string
	}{
		{"a pre-hook on a unary method", "events.v1.EventService/SendEvent", "pre", 0, "1 hook valid"},
		{"a post-hook on a unary method", "events.v1.EventService/GetEvents", "post", 0, "1 hook valid"},
		{"a pre-hook on a server stream", "events.v1.EventService/StreamEvents", "pre", 0, "1 hook valid"},
		{"a post-hook on a server stream", "events.v1.EventService/StreamEvents", "post", 1, "post-hooks never run on streams"},
		{"a post-hook on a client stream", "events.v1.EventService/PublishEvents", "post", 1, "is client-streaming"},
		{"an error hook on a unary method", "events.v1.EventService/GetEvents", "error", 0, "1 hook valid"},
		{"an error hook on a server stream", "events.v1.EventService/StreamEvents", "error", 1,
			"error hooks never run on streams: events.v1.EventService/StreamEvents is server-streaming"},
		{"an error hook on a client stream", "events.v1.EventService/PublishEvents", "error", 1,
			"error hooks never run on streams: events.v1.EventService/PublishEvents is client-streaming"},
		{"an unknown method", "events.v1.EventService/Nope", "pre", 1, "service events.v1.EventService has no method Nope (it has SendEvent, GetEvents, StreamEvents, PublishEvents)"},
		{"an unknown service", "shop.v1.Shop/Buy", "pre", 1, "service shop.v1.Shop is not in descriptor set"},
		{"a service-wide hook", "events.v1.EventService/*", "post", 0, "1 hook valid"},
		{"a global hook", "*/*", "pre", 0, "1 hook valid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			writeFile(t, filepath.Join(d, "ok.js"), "undefined\n")
			writeFile(t, filepath.Join(d, "hooks.yaml"), fmt.Sprintf(
				"hooks:\n  - {method: %q, phase: %s, name: x, script: ok.js}\n", tc.method, tc.phase))
			r := runHookctl(t, []string{"validate", "-f", d, "--descriptor-set", set})
			if r.code != tc.code {
				t.Fatalf("validate: got exit %d; want %d\n%s", r.code, tc.code, r)
			}
			mustContain(t, "output", r.stdout+r.stderr, tc.want)
		})
	}
}

// TestPlanSaysWhyHooksNotInTheManifestStay: the plan's footer says whether
// the hooks the manifest does not list stay because it does not prune or
// because they are not its owner's, and cuts a long list.
func TestPlanSaysWhyHooksNotInTheManifestStay(t *testing.T) {
	t.Parallel()
	const getEvents = "events.v1.EventService/GetEvents"
	doc := func(owner string) string {
		if owner == "" {
			return `{"script":"undefined"}`
		}
		return `{"script":"undefined","owner":"` + owner + `"}`
	}
	many := map[string]string{}
	for i := range 30 {
		many[fmt.Sprintf("%s/pre/h%02d", getEvents, i)] = doc("teamx")
	}
	cases := []struct {
		name   string
		owner  string // the manifest's
		prune  bool
		inEtcd map[string]string
		want   []string
		unwant []string
	}{
		{"without prune, hooks prune would remove", "", false,
			map[string]string{getEvents + "/pre/stray": doc("")},
			[]string{"1 hook(s) in etcd are not in the manifest and stay (--prune removes them): " + getEvents + " pre stray\n"}, nil},
		{"with prune, another owner's hooks", "", true,
			map[string]string{getEvents + "/pre/theirs": doc("teamx")},
			[]string{"1 hook(s) in etcd are not in the manifest and stay (they have an owner: --prune with a manifest without owner: removes only hooks without one): " +
				getEvents + " pre theirs (owner teamx)\n"},
			[]string{"--prune removes them"}},
		{"with prune and an owner, hooks of no owner, another owner or an invalid document", "events-team", true,
			map[string]string{getEvents + "/pre/a": doc(""), getEvents + "/pre/b": doc("teamx"), getEvents + "/pre/c": `{"script":"undefined","colour":1}`},
			[]string{"3 hook(s) in etcd are not in the manifest and stay (they are not owner events-team's: --prune removes only owner events-team's hooks): " +
				getEvents + " pre a (no owner), " + getEvents + " pre b (owner teamx), " + getEvents + " pre c (invalid document, owner unknown)\n"},
			[]string{"--prune removes them"}},
		{"without prune and with an owner, both kinds", "events-team", false,
			map[string]string{getEvents + "/pre/mine": doc("events-team"), getEvents + "/pre/theirs": doc("teamx")},
			[]string{"1 hook(s) in etcd are not in the manifest and stay (--prune removes them): " + getEvents + " pre mine\n",
				"1 hook(s) in etcd are not in the manifest and stay (they are not owner events-team's: --prune removes only owner events-team's hooks): " + getEvents + " pre theirs (owner teamx)\n"},
			nil},
		{"a long list is cut", "", true, many,
			[]string{"30 hook(s) in etcd are not in the manifest and stay (they have an owner", getEvents + " pre h19 (owner teamx) ... and 10 more\n"},
			[]string{getEvents + " pre h20"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
			manifest := "hooks:\n  - {method: " + sendEvent + ", phase: pre, name: listed, script: ok.js}\n"
			if tc.owner != "" {
				manifest = "owner: " + tc.owner + "\n" + manifest
			}
			writeFile(t, filepath.Join(dir, "hooks.yaml"), manifest)
			e.want(0, "apply", "-f", dir)
			for k, v := range tc.inEtcd {
				e.put(k, v)
			}
			args := []string{"apply", "-f", dir, "--dry-run"}
			if tc.prune {
				args = append(args, "--prune")
			}
			r := e.want(0, args...)
			mustContain(t, "plan", r.stdout, tc.want...)
			mustNotContain(t, "plan", r.stdout, tc.unwant...)
		})
	}
}

// TestAnUnreachableServerIsNotAnInvalidManifest: --server naming a daemon
// that does not answer exits 3 (run again), as an unreachable etcd does,
// not 1 (the manifest is invalid).
func TestAnUnreachableServerIsNotAnInvalidManifest(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	r := runHookctl(t, []string{"validate", "-f", scriptsDir, "--server", addr})
	if r.code != hookctl.ExitEtcd {
		t.Fatalf("validate --server %s (nothing listens): exit %d; want %d\n%s", addr, r.code, hookctl.ExitEtcd, r)
	}
	mustContain(t, "validate", r.stderr, "--server: cannot reach the daemon")
}

// TestEveryProblemOfAManifestIsReportedAtOnce: a script that does not
// compile does not hide the example service's checks of other hooks.
func TestEveryProblemOfAManifestIsReportedAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "bad.js"), "module.exports = (ctx) => {\n  let x = ;\n};\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: bad, script: bad.js}
  - {method: events.v1.EventService/StreamEvents, phase: post, name: p, script: ok.js}
  - {method: events.v1.EventService/NoSuch, phase: pre, name: q, script: ok.js}
`)
	r := runHookctl(t, []string{"validate", "-f", dir})
	if r.code != 1 {
		t.Fatalf("validate: got exit %d; want 1\n%s", r.code, r)
	}
	mustContain(t, "validate", r.stderr, "bad.js:2:", "hooks.yaml:3: hook events.v1.EventService/StreamEvents post p: post-hooks never run on streams",
		"hooks.yaml:4: hook events.v1.EventService/NoSuch pre q: service events.v1.EventService has no method NoSuch", "3 problems found")
}
