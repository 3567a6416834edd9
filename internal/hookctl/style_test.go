package hookctl_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestStyleIsCarriedLikeAnyField: put --style stores it, get shows it, a
// manifest sets it, diff names a change of it, and a bad one is refused
// naming the field.
func TestStyleIsCarriedLikeAnyField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	g := filepath.Join(dir, "g.js")
	writeFile(t, g, "module.exports = (g) => ({eventId: 'g'});\n")
	e.want(0, "put", "events.v1.EventService/SendEvent", "pre", "g", "--script", g, "--style", "apimaker")
	var doc map[string]any
	if err := json.Unmarshal([]byte(e.hooks()["events.v1.EventService/SendEvent/pre/g"]), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["style"] != "apimaker" {
		t.Fatalf("stored style = %v; want apimaker (document %v)", doc["style"], doc)
	}
	mustContain(t, "get", e.want(0, "get", "events.v1.EventService/SendEvent", "pre", "g").stdout, "style:", "apimaker")
	mustContain(t, "get -o json", e.want(0, "get", "events.v1.EventService/SendEvent", "pre", "g", "-o", "json").stdout, `"style": "apimaker"`)

	// A body script cannot be called in the apimaker style.
	body := filepath.Join(dir, "body.js")
	writeFile(t, body, "({eventId: 'g'})\n")
	r := e.want(1, "put", "events.v1.EventService/SendEvent", "pre", "body", "--script", body, "--style", "apimaker")
	mustContain(t, "put of a body script in the apimaker style", r.stderr, "style", "must export its function")
	r = e.want(1, "put", "events.v1.EventService/SendEvent", "pre", "x", "--script", g, "--style", "express")
	mustContain(t, "put of an unknown style", r.stderr, `style: "express" is not "apimaker"`)

	// The manifest without style plans to change it back to ctx.
	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: g\n    script: g.js\n")
	r = e.want(1, "diff", "-f", dir)
	mustContain(t, "diff", r.stdout, "style", "apimaker", "ctx")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: g\n    script: g.js\n    style: apimaker\n")
	e.want(0, "diff", "-f", dir)

	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: g\n    script: g.js\n    style: express\n")
	r = e.want(1, "validate", "-f", dir)
	mustContain(t, "validate", r.stderr, "hooks.yaml:6", "style", "express")
}
