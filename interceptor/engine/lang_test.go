package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// TestLanguages is what TypeScript and ES module syntax compile to, case
// by case: each script sets the request's eventType, or fails to compile.
func TestLanguages(t *testing.T) {
	tests := []struct {
		name   string
		lang   engine.Lang
		script string
		// wantType is the request's eventType after the run.
		wantType string
		// wantErr: compiling fails with this text.
		wantErr string
	}{
		{name: "TypeScript: the seed's shape, importing types and assigning module.exports", lang: engine.TS,
			script: `import * as T from 'types';
async function main(ctx: T.HookEventsV1EventServiceSendEventPre) {
    ctx.request.eventType = "ts:" + ctx.request.toUserId;
}
module.exports = main;`,
			wantType: "ts:alice"},
		{name: "TypeScript: export default", lang: engine.TS,
			script:   `export default function (ctx: any): void { ctx.request.eventType = "default" }`,
			wantType: "default"},
		{name: "TypeScript: export function main", lang: engine.TS,
			script:   `export function main(ctx: any) { ctx.request.eventType = "main" }`,
			wantType: "main"},
		{name: "TypeScript: export const main as an arrow", lang: engine.TS,
			script:   `export const main = async (ctx: any) => { ctx.request.eventType = "arrow" }`,
			wantType: "arrow"},
		{name: "TypeScript: exports.main", lang: engine.TS,
			script:   `exports.main = function (ctx: any) { ctx.request.eventType = "exports.main" }`,
			wantType: "exports.main"},
		{name: "TypeScript: export default wins over export main", lang: engine.TS,
			script: `export function main(ctx: any) { ctx.request.eventType = "main" }
export default function (ctx: any) { ctx.request.eventType = "default" }`,
			wantType: "default"},
		{name: "TypeScript: a body script keeps its completion value", lang: engine.TS,
			script:   `const m: {eventType: string} = data.message; ({messageOverride: {...m, eventType: "body"}})`,
			wantType: "body"},
		{name: "TypeScript: syntax goja lacks is lowered (class fields, object spread, optional chaining, nullish)", lang: engine.TS,
			script: `class Tag { prefix = "p"; #n = 1; get n() { return this.#n } }
interface R { eventType?: string }
export default async (ctx: {request: R & {eventData?: any}}) => {
  const t = new Tag();
  const o = {...{a: 1}, b: 2};
  const {a, ...rest} = o;
  ctx.request.eventType = [t.prefix, t.n, a, rest.b, ctx.request.eventData?.missing?.deep ?? "none"].join("/");
}`,
			wantType: "p/1/1/2/none"},
		{name: "TypeScript: enums and namespaces are compiled, not erased", lang: engine.TS,
			script: `enum Level { Low = "low", High = "high" }
export default (ctx: any) => { ctx.request.eventType = Level.High }`,
			wantType: "high"},
		{name: "TypeScript: the types module used as a value is an object", lang: engine.TS,
			script: `import * as T from 'types';
export default (ctx: any) => { ctx.request.eventType = typeof T }`,
			wantType: "object"},
		{name: "JavaScript: export default", lang: engine.JS,
			script:   `export default function (ctx) { ctx.request.eventType = "js default" }`,
			wantType: "js default"},
		{name: "JavaScript: an import of types is erased", lang: engine.JS,
			script: `import * as T from "types";
export function main(ctx) { ctx.request.eventType = "js main" }`,
			wantType: "js main"},
		{name: "JavaScript: no language means JavaScript",
			script:   `export default (ctx) => { ctx.request.eventType = "empty lang" }`,
			wantType: "empty lang"},

		{name: "TypeScript: a syntax error points into the TypeScript", lang: engine.TS,
			script:  "import * as T from 'types';\nfunction main(ctx: T.Ctx) {\n  let x: number = 1 1;\n}\nmodule.exports = main;",
			wantErr: `test:3:21: Expected ";" but found "1"`},
		{name: "TypeScript: an import of another module names it", lang: engine.TS,
			script:  "import * as fs from 'fs';\nexport default (ctx: any) => fs;",
			wantErr: `test:1:21: cannot find module "fs": only "types" and utils (utils/Name) are available`},
		{name: "JavaScript: a require of another module names it", lang: engine.JS,
			script:  "import * as T from 'types';\nconst x = require('utils/Addition');\nexport default (ctx) => x;",
			wantErr: `test:2:19: cannot find module "utils/Addition": no utils are available here`},
		{name: "JavaScript: a syntax error in a module is esbuild's, at its position", lang: engine.JS,
			script:  "export default function (ctx) {\n  ctx.request.eventType = ;\n}",
			wantErr: `test:2:27: Unexpected ";"`},
		{name: "JavaScript: a syntax error in a plain script is goja's, as before", lang: engine.JS,
			script:  "module.exports = function (ctx) {\n  ctx.request.eventType = ;\n}",
			wantErr: `Line 2:27 Unexpected token ;`},
		{name: "an unknown language is refused", lang: "coffee",
			script: `x = 1`, wantErr: `language "coffee" is not "js" or "ts"`},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := engine.CompileLang("test", tt.script, tt.lang)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CompileLang() error = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileLang() error = %v", err)
			}
			call := preCall(t)
			call.InPlace = true
			out, err := e.Run(context.Background(), s, call)
			if err != nil {
				t.Fatalf("Run() error = %v\nscript:\n%s", err, s.Source())
			}
			msg := call.Request
			if out.Message != nil {
				msg = out.Message
			}
			if got := msg.(*eventsv1.SendEventRequest).GetEventType(); got != tt.wantType {
				t.Fatalf("eventType = %q; want %q\nscript:\n%s", got, tt.wantType, s.Source())
			}
		})
	}
}

func TestTranspileErrorCarriesThePosition(t *testing.T) {
	_, err := engine.CompileLang("events.v1.EventService/SendEvent/pre/x", "let a: = 1;", engine.TS)
	var te *engine.TranspileError
	if !errors.As(err, &te) {
		t.Fatalf("CompileLang() error = %v (%T); want a *TranspileError", err, err)
	}
	if te.Line != 1 || te.Column != 8 || te.Name != "events.v1.EventService/SendEvent/pre/x" {
		t.Fatalf("error at %s %d:%d; want events.v1.EventService/SendEvent/pre/x 1:8", te.Name, te.Line, te.Column)
	}
}

// TestPlainJavaScriptCompilesAsBefore checks that a script with no module
// syntax does not go through esbuild: its source stays the same.
func TestPlainJavaScriptCompilesAsBefore(t *testing.T) {
	for _, src := range []string{
		`module.exports = function (ctx) { ctx.request.eventType = "x" }`,
		"// a comment that says export default\nvar important = 1; ({})",
		"const x = `\nimport y from 'z'`; module.exports = () => {}",
	} {
		s, err := engine.CompileLang("test", src, engine.JS)
		if err != nil {
			t.Fatalf("CompileLang(%q) error = %v", src, err)
		}
		if s.Source() != src {
			t.Errorf("CompileLang(%q) source = %q; want it unchanged", src, s.Source())
		}
	}
}

// TestTypeScriptStackTracesPointAtTheTypeScript: the inline source map
// takes positions in a stack trace back to the TypeScript.
func TestTypeScriptStackTracesPointAtTheTypeScript(t *testing.T) {
	src := "import * as T from 'types';\ninterface X { a: number }\n\nexport default function (ctx: any) {\n  const x: X = {a: 1};\n  ctx.request.eventType = new Error(\"here\").stack;\n}\n"
	s, err := engine.CompileLang("test", src, engine.TS)
	if err != nil {
		t.Fatal(err)
	}
	call := preCall(t)
	call.InPlace = true
	if _, err := newEngine(t).Run(context.Background(), s, call); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("test:%d:", 6)
	if got := call.Request.(*eventsv1.SendEventRequest).GetEventType(); !strings.Contains(got, want) {
		t.Fatalf("stack = %q; want it to contain %q", got, want)
	}
}
