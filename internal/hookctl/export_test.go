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
