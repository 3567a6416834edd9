// Package hookdoc is how hookctl writes, compares and shows hook documents
// (registry.Document). It writes exactly the JSON the daemon accepts, checked
// by the registry's own decoder and compiler, and compares documents by what
// they mean to the daemon, so that key order, spacing or a field spelled out
// at its default never count as a change.
package hookdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/aymanbagabas/go-udiff"
	"github.com/dop251/goja"
	"github.com/dop251/goja/parser"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Encode returns the JSON document hookctl stores for d. The result is
// decoded again with registry.DecodeDocumentWithin (maxTimeout is the
// daemons' --max-hook-timeout) and its script compiled with registry.Compile
// under k, so nothing the daemon would refuse is returned. The utils it
// imports are checked for their names only.
func Encode(k registry.Key, d *registry.Document, maxTimeout time.Duration) ([]byte, error) {
	out := *d
	if len(out.Params) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, out.Params); err != nil {
			return nil, fmt.Errorf("document: %w", &registry.FieldError{Field: "params", Err: errors.New("not valid JSON")})
		}
		out.Params = b.Bytes()
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	raw := bytes.TrimRight(b.Bytes(), "\n")
	back, err := registry.DecodeDocumentWithin(raw, maxTimeout)
	if err != nil {
		return nil, err
	}
	if _, err := registry.CompileWithUtils(k, back, registry.StubUtils()); err != nil {
		return nil, err
	}
	return raw, nil
}

// Equal reports whether two documents mean the same to the daemon.
func Equal(a, b *registry.Document) bool {
	return a.Script == b.Script && len(FieldChanges(a, b)) == 0
}

// Change is one field that differs between two documents, shown as text.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// FieldChanges lists the fields other than the script that differ, in the
// document's field order, each value shown as Show shows it.
func FieldChanges(a, b *registry.Document) []Change {
	var out []Change
	add := func(field, from, to string) {
		if from != to {
			out = append(out, Change{Field: field, From: from, To: to})
		}
	}
	if !ParamsEqual(a.Params, b.Params) {
		out = append(out, Change{Field: "params", From: ShowParams(a.Params), To: ShowParams(b.Params)})
	}
	add("enabled", fmt.Sprint(a.IsEnabled()), fmt.Sprint(b.IsEnabled()))
	add("owner", a.Owner, b.Owner)
	add("order", fmt.Sprint(a.Order), fmt.Sprint(b.Order))
	if !timeoutEqual(a.Timeout, b.Timeout) {
		out = append(out, Change{Field: "timeout", From: ShowTimeout(a.Timeout), To: ShowTimeout(b.Timeout)})
	}
	add("onError", string(OnError(a)), string(OnError(b)))
	add("description", fmt.Sprintf("%q", a.Description), fmt.Sprintf("%q", b.Description))
	add("isolation", ShowIsolation(a.Isolation), ShowIsolation(b.Isolation))
	add("lang", ShowLang(a.Lang), ShowLang(b.Lang))
	add("style", ShowStyle(a.Style), ShowStyle(b.Style))
	return out
}

// ShowStyle shows how a document's script is called, "ctx" when absent.
func ShowStyle(s engine.Style) string {
	if s == engine.CtxStyle {
		return "ctx"
	}
	return string(s)
}

// ShowLang shows a document's script language, "js" when absent.
func ShowLang(l engine.Lang) string {
	if l == "" {
		return string(engine.JS)
	}
	return string(l)
}

// ShowIsolation shows a document's isolation, "default" when absent (the
// server chooses).
func ShowIsolation(i registry.Isolation) string {
	if i == "" {
		return "default"
	}
	return string(i)
}

// OnError returns the document's onError, "abort" when absent.
func OnError(d *registry.Document) registry.OnError {
	if d.OnError == "" {
		return registry.Abort
	}
	return d.OnError
}

// ShowTimeout shows a document's timeout, "default" when absent.
func ShowTimeout(t string) string {
	if t == "" {
		return "default"
	}
	return t
}

func timeoutEqual(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return a != "" && b != "" && errA == nil && errB == nil && da == db
}

// ParamsEqual reports whether two params mean the same to a script: the
// values decoded as the daemon decodes them, absent and null being {}.
func ParamsEqual(a, b json.RawMessage) bool {
	va, errA := decodeParams(a)
	vb, errB := decodeParams(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func decodeParams(p json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(p)) == 0 {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal(p, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]any{}, nil
	}
	return v, nil
}

// ShowParams shows params as compact JSON with sorted keys, "{}" when
// absent.
func ShowParams(p json.RawMessage) string {
	v, err := decodeParams(p)
	if err != nil {
		return string(p)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return string(p)
	}
	return strings.TrimRight(b.String(), "\n")
}

// ScriptDiff returns a unified diff from script a to script b, labelled, or
// "" when they are the same.
func ScriptDiff(fromLabel, toLabel, a, b string) string {
	if a == b {
		return ""
	}
	return udiff.Unified(fromLabel, toLabel, withNewline(a), withNewline(b))
}

func withNewline(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// ScriptStat counts the lines added and removed from script a to script b.
func ScriptStat(a, b string) (added, removed int) {
	edits := udiff.Lines(withNewline(a), withNewline(b))
	d, err := udiff.ToUnifiedDiff("a", "b", withNewline(a), edits, 0)
	if err != nil {
		return 0, 0
	}
	for _, h := range d.Hunks {
		for _, l := range h.Lines {
			switch l.Kind {
			case udiff.Insert:
				added++
			case udiff.Delete:
				removed++
			}
		}
	}
	return added, removed
}

// Summary describes what changed from a to b in one line: the fields, and
// the script as lines added and removed. It is "no change" when they mean
// the same.
func Summary(a, b *registry.Document) string {
	var parts []string
	for _, c := range FieldChanges(a, b) {
		parts = append(parts, fmt.Sprintf("%s: %s → %s", c.Field, c.From, c.To))
	}
	if a.Script != b.Script {
		add, del := ScriptStat(a.Script, b.Script)
		parts = append(parts, fmt.Sprintf("script: +%d -%d lines", add, del))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// ScriptError is where a script failed to compile.
type ScriptError struct {
	Line, Column int
	Msg          string
}

// ScriptPosition finds the script position in a compile error from
// registry.Compile or engine.Compile.
func ScriptPosition(err error) (ScriptError, bool) {
	var list parser.ErrorList
	var one *parser.Error
	var syntax *goja.CompilerSyntaxError
	var ref *goja.CompilerReferenceError
	var ts *engine.TranspileError
	switch {
	case errors.As(err, &ts):
		msg := ts.Msg
		if ts.More > 0 {
			msg += fmt.Sprintf(" (and %d more errors)", ts.More)
		}
		return ScriptError{Line: ts.Line, Column: ts.Column, Msg: "SyntaxError: " + msg}, true
	case errors.As(err, &list) && len(list) > 0:
		e := list[0]
		msg := e.Message
		if len(list) > 1 {
			msg += fmt.Sprintf(" (and %d more errors)", len(list)-1)
		}
		return ScriptError{Line: e.Position.Line, Column: e.Position.Column, Msg: "SyntaxError: " + msg}, true
	case errors.As(err, &one):
		return ScriptError{Line: one.Position.Line, Column: one.Position.Column, Msg: "SyntaxError: " + one.Message}, true
	case errors.As(err, &syntax) && syntax.File != nil:
		p := syntax.File.Position(syntax.Offset)
		return ScriptError{Line: p.Line, Column: p.Column, Msg: "SyntaxError: " + syntax.Message}, true
	case errors.As(err, &ref) && ref.File != nil:
		p := ref.File.Position(ref.Offset)
		return ScriptError{Line: p.Line, Column: p.Column, Msg: "ReferenceError: " + ref.Message}, true
	}
	return ScriptError{}, false
}
