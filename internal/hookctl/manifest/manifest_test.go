package manifest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
)

func TestLoadTheExampleManifest(t *testing.T) {
	m, err := manifest.Load("../../../scripts")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != filepath.Join("../../../scripts", "hooks.yaml") {
		t.Errorf("path: got %s", m.Path)
	}
	var names []string
	for _, h := range m.Hooks {
		names = append(names, h.Name())
		if h.Compiled == nil || h.Compiled.Script == nil {
			t.Errorf("%s: not compiled", h.Name())
		}
	}
	want := "events.v1.EventService/SendEvent pre deny-guest,events.v1.EventService/SendEvent pre addvalue,events.v1.EventService/SendEvent post stamp-response,events.v1.EventService/GetEvents post latest-events"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("hooks: got %s; want %s", got, want)
	}
	if _, err := manifest.Load("../../../scripts", manifest.WithSchema(schema.Builtin())); err != nil {
		t.Errorf("with the built-in schema: %v", err)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.js"), []byte("undefined"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.js"), []byte("\nvar = 2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hooks.yml"), []byte(`hooks:
  - {method: a.B/C, phase: pre, name: one, script: bad.js}
  - {method: a.B/C, phase: pre, name: two, script: ok.js, enabled: maybe}
  - {method: a.B/C, phase: pre, name: three, script: ok.js, params: {a: .nan}}
  - {method: a.B/C, phase: pre, name: four, script: ok.js}
  - {method: a.B/C, phase: pre, name: five, script: ok.js, isolation: thread}
  - {method: a.B/C, phase: pre, name: six, script: ok.js, timeout: 1h}
`), 0o644)
	_, err := manifest.Load(dir)
	var list diag.List
	if !errors.As(err, &list) {
		t.Fatalf("got %v; want a diag.List", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	want := []string{
		filepath.Join(dir, "bad.js") + ":2:5: hook a.B/C pre one: SyntaxError: Unexpected token =",
		filepath.Join(dir, "hooks.yml") + ":3: hook a.B/C pre two: enabled: want true or false, got the string \"maybe\"",
		filepath.Join(dir, "hooks.yml") + ":4: hook a.B/C pre three: params: .nan has no JSON form",
		filepath.Join(dir, "hooks.yml") + ":6: hook a.B/C pre five: document: field isolation: \"thread\" is not \"process\" or \"inprocess\"",
		filepath.Join(dir, "hooks.yml") + ":7: hook a.B/C pre six: document: field timeout: \"1h\" is more than the limit of 5s (--max-hook-timeout)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadReportsAScriptErrorAndAMethodErrorOfOneHook(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.js"), []byte("var = 2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hooks.yaml"), []byte(
		"hooks:\n  - {method: events.v1.EventService/StreamEvents, phase: post, name: x, script: bad.js}\n"), 0o644)
	_, err := manifest.Load(dir, manifest.WithSchema(schema.Builtin()))
	var list diag.List
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("got %v; want two problems", err)
	}
	if !strings.Contains(list[0].Error(), "bad.js:1:5") || !strings.Contains(list[1].Error(), "hooks.yaml:2: hook events.v1.EventService/StreamEvents post x: post-hooks never run on streams") {
		t.Errorf("got\n%v\nwant the script's error, then the method's", list)
	}
}

func TestEveryProblemOfAManifestIsReportedOnceAtItsLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok.js"), []byte("undefined\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hooks.yaml"), []byte(`hooks:
  - method: events.v1.EventService/SendEvent
    phase: pre
    name: a
    script: ok.js
    order: x
    onError: explode
    timeout: forever
    bogus: 1
  - method: events.v1.EventService/SendEvent
    phase: pre
    name: b
    script: missing.js
    onError: explode
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := manifest.Load(dir)
	var list diag.List
	if !errors.As(err, &list) {
		t.Fatalf("Load: got %v; want a diag.List", err)
	}
	want := map[int]string{
		9: `unknown field "bogus"`, 6: "order: want an integer", 8: "field timeout", 7: "field onError",
		13: "missing.js", 14: "field onError",
	}
	if len(list) != len(want) {
		t.Errorf("got %d problems; want %d:\n%v", len(list), len(want), list)
	}
	for _, e := range list {
		if !strings.Contains(e.Error(), want[e.Line]) {
			t.Errorf("line %d: got %q; want it to say %q", e.Line, e.Error(), want[e.Line])
		}
		if strings.Count(e.Error(), "hooks.yaml") != 1 {
			t.Errorf("the location is given more than once: %q", e.Error())
		}
	}
}
