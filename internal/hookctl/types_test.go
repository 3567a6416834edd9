package hookctl_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestPutTypeScriptStoresLangTs(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ts := filepath.Join(dir, "tag.ts")
	writeFile(t, ts, "import * as T from 'types';\nexport default function (ctx: T.events.v1.EventService.SendEventPre) { ctx.request.eventType = 'ts' }\n")
	e.want(0, "put", "events.v1.EventService/SendEvent", "pre", "tag", "--script", ts)
	var doc map[string]any
	if err := json.Unmarshal([]byte(e.hooks()["events.v1.EventService/SendEvent/pre/tag"]), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["lang"] != "ts" {
		t.Fatalf("stored lang = %v; want ts (document %v)", doc["lang"], doc)
	}
	mustContain(t, "get", e.want(0, "get", "events.v1.EventService/SendEvent", "pre", "tag").stdout, "lang:", "ts")

	// An explicit --lang wins over the extension.
	js := filepath.Join(dir, "tag.js.txt")
	writeFile(t, js, "module.exports = function (ctx) {}\n")
	e.want(0, "put", "events.v1.EventService/SendEvent", "pre", "tag", "--script", js, "--lang", "js")
	if got := e.hooks()["events.v1.EventService/SendEvent/pre/tag"]; strings.Contains(got, `"lang"`) && !strings.Contains(got, `"lang":"js"`) {
		t.Fatalf("stored %s; want lang js or none", got)
	}

	// A TypeScript syntax error names the file, line and column.
	bad := filepath.Join(dir, "bad.ts")
	writeFile(t, bad, "let a = 1;\nlet b: number = ;\n")
	r := e.want(1, "put", "events.v1.EventService/SendEvent", "pre", "bad", "--script", bad)
	mustContain(t, "put of a broken TypeScript hook", r.stderr, "bad.ts:2:17", `Unexpected ";"`)
}

func TestTestAndValidateRunTypeScriptHooksOffline(t *testing.T) {
	r := runHookctl(t, []string{"test", "-f", "../../scripts/typescript/"})
	if r.code != 0 {
		t.Fatalf("hookctl test -f scripts/typescript/: %v", r)
	}
	mustContain(t, "test -f scripts/", r.stdout, "hide-events.test.yaml", "0 failed")
	r = runHookctl(t, []string{"validate", "-f", "../../scripts/typescript/"})
	if r.code != 0 {
		t.Fatalf("hookctl validate -f scripts/typescript/: %v", r)
	}
	mustContain(t, "validate -f scripts/", r.stdout, "hide-events.ts")
}

// compilers finds the TypeScript compilers: where .ci/run installs them
// (TypeScript 5 in .ci/node, 7 in .ci/node7), or else the one on PATH.
// Without any the test fails in CI and is skipped elsewhere.
func compilers(t *testing.T) []string {
	t.Helper()
	var found []string
	for _, dir := range []string{"node", "node7"} {
		local := filepath.Join("..", "..", ".ci", dir, "node_modules", ".bin", "tsc")
		if runtime.GOOS == "windows" {
			local += ".cmd"
		}
		if abs, err := filepath.Abs(local); err == nil {
			if _, err := os.Stat(abs); err == nil {
				found = append(found, abs)
			}
		}
	}
	if len(found) > 0 {
		return found
	}
	if p, err := exec.LookPath("tsc"); err == nil {
		return []string{p}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("tsc not found: .ci/run installs it (npm install --prefix .ci/node typescript)")
	}
	t.Skip("tsc not found on PATH or in .ci/node: run npm install --no-save --prefix .ci/node typescript@5.9.3 to run this test")
	return nil
}

// TestTypesCheckHooksWithTheTypeScriptCompiler writes the types with
// hookctl types and checks hooks against them with the real compiler: the
// example hooks pass, and a misspelled field fails naming it.
func TestTypesCheckHooksWithTheTypeScriptCompiler(t *testing.T) {
	for _, compiler := range compilers(t) {
		version, err := exec.CommandContext(t.Context(), compiler, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", compiler, err)
		}
		t.Run(strings.TrimSpace(string(version)), func(t *testing.T) {
			checkTypes(t, compiler)
		})
	}
}

func checkTypes(t *testing.T, compiler string) {
	dir := t.TempDir()
	r := runHookctl(t, []string{"types", "-o", dir})
	if r.code != 0 {
		t.Fatalf("hookctl types: %v", r)
	}
	for _, f := range []string{"types.d.ts", "tsconfig.json", "utils"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("hookctl types wrote no %s: %v", f, err)
		}
	}
	good := map[string]string{
		"hide-events.ts": readFile(t, "../../scripts/typescript/hide-events.ts"),
		"pre.ts": `import * as T from 'types';
const hook: T.Hook<"events.v1.EventService/SendEvent"> = async (ctx) => {
  ctx.request.toUserId = ctx.request.toUserId?.toLowerCase();
  ctx.request.eventData = { ...ctx.request.eventData, source: ctx.params.source };
  if (ctx.metadata["x-tenant"]?.[0] === "blocked") return { status: "PERMISSION_DENIED", message: "no" };
  return { messageOverride: { toUserId: "x" } };
};
export default hook;
`,
		"latest-events.ts": readFile(t, "../../scripts/latest-events.ts"),
		"g.ts": `import * as T from 'types';
async function main(g: T.GlobalOf<"events.v1.EventService/SendEvent">) {
  g.req.body.eventType = g.req.headers["x-tenant"]?.[0] ?? "none";
  g.log.debug("typed", g.req.body);
  console.log("user", g.req.body.toUserId, g.params);
  if (g.req.body.toUserId === "") throw Object.assign(new Error("who?"), { status: 400 });
}
module.exports = main;
`,
		"ctx-and-g.ts": `import * as T from 'types';
export default function (ctx: T.events.v1.EventService.SendEventPre, g: T.IAMGlobal) {
  ctx.request.eventType = g.req.headers["x-tenant"]?.[0];
}
`,
		"error.ts": `import * as T from 'types';
const hook: T.Hook<"events.v1.EventService/GetEvents", "error"> = (ctx) => {
  if (ctx.error.code === "NOT_FOUND") return { response: { events: [] } };
  if (ctx.error.codeNumber === 14) return { status: "UNAVAILABLE", message: "try later: " + ctx.error.message };
};
export default hook;
`,
		"error-ctx.ts": `import * as T from 'types';
export default function (ctx: T.events.v1.EventService.SendEventError): T.ErrorResult {
  ctx.log.info("failed", ctx.request.toUserId);
  ctx.g.log.info("g too", ctx.g.req.body.toUserId);
}
`,
		"body.ts": `import * as T from 'types';
var retval: T.Result = {};
bridge.logInfoJson("params: ", data.parms);
retval.status = data.message.toUserId ? 200 : 403;
`,
		"post.ts": `import * as T from 'types';
export function main(ctx: T.events.v1.EventService.SendEventPost): T.Result {
  ctx.response.eventId = "evt-" + ctx.response.eventId;
  ctx.log.warn("stamped", { id: ctx.response.eventId });
}
`,
	}
	check := func(files map[string]string) (string, error) {
		for name, src := range files {
			writeFile(t, filepath.Join(dir, name), src)
		}
		defer func() {
			for name := range files {
				os.Remove(filepath.Join(dir, name))
			}
		}()
		cmd := exec.CommandContext(t.Context(), compiler, "--noEmit", "-p", dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(good); err != nil {
		t.Fatalf("tsc rejected the example hooks: %v\n%s", err, out)
	}
	out, err := check(map[string]string{"typo.ts": `import * as T from 'types';
async function main(ctx: T.events.v1.EventService.SendEventPre) {
  ctx.request.toUserID = "bob";
}
module.exports = main;
`})
	if err == nil {
		t.Fatal("tsc accepted a hook that sets ctx.request.toUserID; want an error naming the field")
	}
	mustContain(t, "tsc output", out, "typo.ts(3,15)", "toUserID", "SendEventRequest")

	// g typed by method finds the same misspelling.
	out, err = check(map[string]string{"gtypo.ts": `import * as T from 'types';
async function main(g: T.GlobalOf<"events.v1.EventService/SendEvent">) {
  g.req.body.toUserID = "bob";
}
module.exports = main;
`})
	if err == nil {
		t.Fatal("tsc accepted a hook that sets g.req.body.toUserID; want an error naming the field")
	}
	mustContain(t, "tsc output", out, "gtypo.ts(3,14)", "toUserID", "SendEventRequest")

	// An error hook answers with the response type, not the request's.
	out, err = check(map[string]string{"errtypo.ts": `import * as T from 'types';
export default function (ctx: T.events.v1.EventService.GetEventsError): T.ErrorResult<"events.v1.EventService/GetEvents"> {
  return { response: { toUserId: ctx.error.message } };
}
`})
	if err == nil {
		t.Fatal("tsc accepted an error hook answering with a request's field; want an error naming it")
	}
	mustContain(t, "tsc output", out, "errtypo.ts(3,24)", "toUserId")
}
