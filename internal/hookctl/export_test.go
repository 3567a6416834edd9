package hookctl_test

import (
	"path/filepath"
	"testing"
)

func TestExportThenApplyChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.want(0, "apply", "-f", scriptsDir)
	e.want(0, "apply", "-f", filepath.Join(scriptsDir, "typescript"))
	e.want(0, "apply", "-f", filepath.Join(scriptsDir, "utils-example"))
	before := e.revision()

	dir := filepath.Join(t.TempDir(), "exported")
	r := e.want(0, "export", "-f", dir)
	mustContain(t, "export", r.stdout, "Exported")
	r = e.want(0, "diff", "-f", dir, "--prune")
	mustContain(t, "diff of the export", r.stdout, "No changes")
	e.want(0, "apply", "-f", dir, "--prune")
	if now := e.revision(); now != before {
		t.Errorf("applying the export wrote: revision %d; want %d", now, before)
	}
	e.want(1, "export", "-f", dir) // never overwrites
}

func TestPruneRemovesOnlyTheManifestOwnersHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, team := range []string{"payments", "search"} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
		writeFile(t, filepath.Join(dir, "hooks.yaml"), "owner: "+team+`
hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: `+team+`-a, script: ok.js}
  - {method: events.v1.EventService/SendEvent, phase: pre, name: `+team+`-b, script: ok.js}
`)
		e.want(0, "apply", "-f", dir)
	}
	mustContain(t, "list", e.want(0, "list").stdout, "OWNER", "payments", "search")

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `owner: payments
hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: payments-a, script: ok.js}
`)
	r := e.want(1, "diff", "-f", dir, "--prune")
	mustContain(t, "diff --prune", r.stdout, "owner payments", "- remove  events.v1.EventService/SendEvent pre payments-b")
	mustNotContain(t, "diff --prune", r.stdout, "remove  events.v1.EventService/SendEvent pre search")
	e.want(0, "apply", "-f", dir, "--prune")
	hooks := e.hooks()
	for key, want := range map[string]bool{
		sendEvent + "/pre/payments-a": true, sendEvent + "/pre/payments-b": false,
		sendEvent + "/pre/search-a": true, sendEvent + "/pre/search-b": true,
	} {
		if _, ok := hooks[key]; ok != want {
			t.Errorf("%s in etcd: %v; want %v", key, ok, want)
		}
	}
}

// TestAPlanThatBreaksAnotherOwnersImporterIsRefused: apply --prune of a
// manifest without a util that a hook it leaves in etcd imports would
// break that hook on every daemon; it is refused, naming both, and
// nothing is written.
func TestAPlanThatBreaksAnotherOwnersImporterIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.want(0, "apply", "-f", filepath.Join(scriptsDir, "utils-example"))
	teamx := t.TempDir()
	writeFile(t, filepath.Join(teamx, "sum.ts"), "import * as addition from 'utils/Addition';\nmodule.exports = function main(g: any) { g.req.body.eventType = String(addition.add(1, 2)); };\n")
	writeFile(t, filepath.Join(teamx, "hooks.yaml"), `owner: teamx
hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: teamx-sum, script: sum.ts, style: apimaker}
`)
	e.want(0, "apply", "-f", teamx)
	before := e.revision()

	// The example's manifest has no owner and no utils: with --prune it
	// removes util Addition, which teamx-sum (owner teamx, left alone)
	// imports.
	for _, cmd := range [][]string{{"diff", "-f", scriptsDir, "--prune"}, {"apply", "-f", scriptsDir, "--prune"}} {
		want := 1
		if cmd[0] == "diff" {
			want = 2 // as kubectl diff: an invalid plan is not "changes"
		}
		r := e.want(want, cmd...)
		mustContain(t, cmd[0], r.stderr, "removes util Addition, which these hooks import",
			"events.v1.EventService/SendEvent pre teamx-sum", "owner teamx")
	}
	if now := e.revision(); now != before {
		t.Errorf("a refused apply wrote: revision %d; want %d", now, before)
	}
}

// TestAManifestDoesNotTakeAnotherOwnersHook: a manifest that lists a hook
// another owner (or no owner) has in etcd would take it over, script and
// all; apply and diff refuse it, naming the hook and both owners, unless
// --take-ownership says so.
func TestAManifestDoesNotTakeAnotherOwnersHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.want(0, "apply", "-f", scriptsDir) // no owner
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), `owner: payments
hooks:
  - {method: events.v1.EventService/SendEvent, phase: pre, name: deny-guest, script: ok.js}
  - {method: events.v1.EventService/SendEvent, phase: pre, name: payments-own, script: ok.js}
`)
	before := e.revision()
	for cmd, code := range map[string]int{"apply": 1, "diff": 2} {
		r := e.want(code, cmd, "-f", dir)
		mustContain(t, cmd, r.stderr, "hooks.yaml:3", "events.v1.EventService/SendEvent pre deny-guest",
			"the hook is without owner in etcd and this manifest is owner payments's", "--take-ownership")
	}
	if now := e.revision(); now != before {
		t.Fatalf("a refused apply wrote: revision %d; want %d", now, before)
	}
	e.want(0, "apply", "-f", dir, "--take-ownership")
	mustContain(t, "list after --take-ownership", e.want(0, "list", "events.v1.EventService/SendEvent").stdout, "payments")
	// The example's manifest, without owner, may not take it back silently.
	e.want(1, "apply", "-f", scriptsDir)
}

func TestNoChangesCountsHooksAndUtils(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(scriptsDir, "utils-example")
	e.want(0, "apply", "-f", dir)
	mustContain(t, "a second apply", e.want(0, "apply", "-f", dir).stdout, "(1 hook, 1 util, revision")
}
