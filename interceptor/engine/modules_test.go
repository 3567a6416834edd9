package engine_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// utilMap is a set of utils: "Name@Version" → source (TypeScript when it
// starts with "//ts"); active maps a name to its active version.
type utilMap struct {
	src    map[string]string
	active map[string]string
}

func (m utilMap) Module(path string) (string, engine.Lang, string, error) {
	name := strings.TrimPrefix(path, engine.UtilsPrefix)
	if !strings.Contains(name, "@") {
		v, ok := m.active[name]
		if !ok {
			return "", "", "", fmt.Errorf("no util %q", name)
		}
		name += "@" + v
	}
	src, ok := m.src[name]
	if !ok {
		return "", "", "", fmt.Errorf("no util version %q", name)
	}
	lang := engine.JS
	if strings.HasPrefix(src, "//ts") {
		lang = engine.TS
	}
	return src, lang, engine.UtilsPrefix + name, nil
}

// TestUtils is what importing utils compiles to, case by case: each
// script sets the request's eventType, or fails to compile.
func TestUtils(t *testing.T) {
	mods := utilMap{
		src: map[string]string{
			"Addition@1":  `module.exports = { add: (a, b) => a + b, version: 1 };`,
			"Addition@2":  `export function add(a, b) { return a + b + 100 } export const version = 2;`,
			"Greeting@1":  "//ts\nimport { add } from 'utils/Addition';\nexport function greet(who: string): string { return `hi ${who} ${add(1, 1)}` }",
			"Broken@1":    `export function oops( {`,
			"BrokenCJS@1": "module.exports = {\n  add: (a, b) => a +\n};",
			"CycleA@1":    `import { b } from 'utils/CycleB'; export const a = () => b;`,
			"CycleB@1":    `import { a } from 'utils/CycleA'; export const b = () => a;`,
		},
		active: map[string]string{"Addition": "2", "Greeting": "1", "Broken": "1", "BrokenCJS": "1", "CycleA": "1", "CycleB": "1"},
	}
	tests := []struct {
		name      string
		lang      engine.Lang
		script    string
		wantType  string
		wantUtils string
		wantErr   string
	}{
		{name: "import * as gets the active version",
			script:   `import * as addition from 'utils/Addition'; export default function (ctx) { ctx.request.eventType = "v" + addition.version + ":" + addition.add(1, 2) }`,
			wantType: "v2:103", wantUtils: "utils/Addition@2"},
		{name: "require in a plain body script gets the active version",
			script:   `const addition = require('utils/Addition'); ({messageOverride: {eventType: "sum " + addition.add(2, 3)}})`,
			wantType: "sum 105", wantUtils: "utils/Addition@2"},
		{name: "a body script that requires a util keeps its completion value, however pure",
			script:   "const addition = require(\"utils/Addition\");\n({messageOverride: {eventType: \"pure\"}})",
			wantType: "pure", wantUtils: "utils/Addition@2"},
		{name: "Name@Version pins a version",
			script:   `const addition = require('utils/Addition@1'); module.exports = function (ctx) { ctx.request.eventType = "v" + addition.version }`,
			wantType: "v1", wantUtils: "utils/Addition@1"},
		{name: "a TypeScript util imports another util", lang: engine.TS,
			script:   `import { greet } from 'utils/Greeting'; export default function (ctx: any) { ctx.request.eventType = greet(ctx.request.toUserId) }`,
			wantType: "hi alice 102", wantUtils: "utils/Addition@2,utils/Greeting@1"},
		{name: "a missing util is an error naming it",
			script: `const x = require('utils/Nope'); module.exports = function () {}`, wantErr: `no util "Nope"`},
		{name: "a missing version is an error naming it",
			script: `import * as a from 'utils/Addition@7'; export default function () {}`, wantErr: `no util version "Addition@7"`},
		{name: "a broken util is an error naming it",
			script: `import { oops } from 'utils/Broken'; export default function () { oops() }`, wantErr: `in utils/Broken@1 at 1:`},
		{name: "a cycle between utils is an error naming it",
			script:  `import { a } from 'utils/CycleA'; export default function () { a() }`,
			wantErr: `cycle: utils/CycleA@1 → utils/CycleB@1 → utils/CycleA@1`},
		{name: "require of a TypeScript util that imports another util",
			script:   `const g = require('utils/Greeting'); module.exports = function (ctx) { ctx.request.eventType = g.greet("bob") }`,
			wantType: "hi bob 102", wantUtils: "utils/Addition@2,utils/Greeting@1"},
		{name: "require of the active and the pinned version gives one module",
			script:   `const a = require('utils/Addition'), b = require('utils/Addition@2'); module.exports = function (ctx) { ctx.request.eventType = String(a === b) }`,
			wantType: "true", wantUtils: "utils/Addition@2"},
		{name: "a cycle between required utils is an error naming it",
			script:  `const a = require('utils/CycleA'); module.exports = function () {}`,
			wantErr: `cycle: utils/CycleA@1 → utils/CycleB@1 → utils/CycleA@1`},
		{name: "a broken required util is an error naming it",
			script: `const b = require('utils/Broken'); module.exports = function () {}`, wantErr: `in utils/Broken@1 at 1:`},
		{name: "a required CommonJS util with a syntax error is an error naming it, at its own line",
			script: `const b = require('utils/BrokenCJS'); module.exports = function () {}`, wantErr: `in utils/BrokenCJS@1 at 3:1: Unexpected token }`},
		{name: "a module that is neither types nor a util is an error",
			script: `import * as fs from 'fs'; export default function () {}`, wantErr: `cannot find module "fs"`},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := engine.CompileModules("test", tt.script, tt.lang, mods)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CompileModules() error = %v; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileModules() error = %v", err)
			}
			if got := strings.Join(s.Utils(), ","); got != tt.wantUtils {
				t.Errorf("Utils() = %q; want %q", got, tt.wantUtils)
			}
			call := preCall(t)
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

// TestUtilsWithoutModules: a script compiled with no utils available says
// so when it imports one.
func TestUtilsWithoutModules(t *testing.T) {
	_, err := engine.CompileLang("x", `import * as a from 'utils/Addition'; export default function () {}`, engine.JS)
	if err == nil || !strings.Contains(err.Error(), `cannot find module "utils/Addition": no utils are available here`) {
		t.Fatalf("CompileLang() error = %v; want it to say no utils are available", err)
	}
}

// TestAThrownErrorSaysWhere: an error a hook throws says where: the line
// and column in the hook's own source (TypeScript's, not the JavaScript it
// compiles to), or the util's file, line and column.
func TestAThrownErrorSaysWhere(t *testing.T) {
	eng := newEngine(t, engine.WithTimeout(10*time.Second), engine.WithQueueWait(time.Minute)) // not about budgets
	mods := utilMap{
		src:    map[string]string{"Strict@1": "//ts\nexport function need(x: string | undefined): string {\n  if (!x) throw new Error(\"missing\");\n  return x;\n}"},
		active: map[string]string{"Strict": "1"},
	}
	const name = "events.v1.EventService/SendEvent/pre/h"
	for _, tt := range []struct {
		name, script string
		lang         engine.Lang
		wantAt       string
	}{
		{"a JavaScript hook", "module.exports = function (ctx) {\n  const x = undefined;\n  return x.toUpperCase();\n};\n", engine.JS, "3:10"},
		{"an async hook, after an await", "module.exports = async function (ctx) {\n  await null;\n\n  throw new Error(\"late\");\n};\n", engine.JS, "4:9"},
		{"a TypeScript hook", "type A = {a: string};\nexport default function main(ctx: any) {\n  const a: A | undefined = undefined;\n  return a!.a.length;\n}\n", engine.TS, "4:12"},
		{"a util it imports", "import { need } from 'utils/Strict';\nexport default function main(ctx: any) {\n  need(undefined);\n}\n", engine.TS, "utils/Strict@1:3:16"},
		{"a thrown string", "module.exports = () => { throw \"plain\" }", engine.JS, "1:26"},
		{"a rejection whose stack is a getter that throws", "module.exports = async () => {\n  await null;\n  const e = new Error(\"x\");\n  Object.defineProperty(e, \"stack\", {get() { throw new Error(\"no\") }});\n  throw e;\n};\n", engine.JS, ""},
		{"a rejection with a forged stack", "module.exports = async () => {\n  await null;\n  const e = new Error(\"x\");\n  e.stack = \"x\".repeat(1 << 20) + \"\\n\\tat fake:1:1\";\n  throw e;\n};\n", engine.JS, ""},
		{"a rejection with a stack naming a util it did not import", "module.exports = async () => {\n  await null;\n  const e = new Error(\"x\");\n  e.stack = \"Error\\n\\tat utils/Evil@9:99:1\";\n  throw e;\n};\n", engine.JS, ""},
		{"a rejection's stack as goja made it", "module.exports = async () => {\n  await null;\n  throw new Error(\"x\");\n};\n", engine.JS, "3:9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := engine.CompileModules(name, tt.script, tt.lang, mods)
			if err != nil {
				t.Fatal(err)
			}
			_, err = eng.Run(context.Background(), s, preCall(t))
			var ee *engine.Error
			if !errors.As(err, &ee) || ee.Kind != engine.Thrown || ee.At != tt.wantAt {
				t.Fatalf("got %#v; want a Thrown error at %q", err, tt.wantAt)
			}
		})
	}
}

// TestDeepSourcesAreRefusedBeforeTheBundler: esbuild's parser recurses
// once per level, as goja's does, and a stack overflow ends the process.
// A TypeScript script, a JavaScript module, and a util of either, nested
// too deeply, are refused with the same error as a JavaScript script, and
// the process goes on.
func TestDeepSourcesAreRefusedBeforeTheBundler(t *testing.T) {
	deep := map[string]string{
		"parentheses":   strings.Repeat("(", 300000) + "1" + strings.Repeat(")", 300000),
		"unary !":       strings.Repeat("!", 500000) + "1",
		"arrow chain":   strings.Repeat("a => ", 150000) + "1",
		"brackets":      strings.Repeat("[", 300000) + strings.Repeat("]", 300000),
		"a conditional": strings.Repeat("a ? b : ", 100000) + "c",
	}
	for shape, expr := range deep {
		for _, tt := range []struct {
			name     string
			src      string
			lang     engine.Lang
			mods     utilMap
			wantUtil string
		}{
			{name: "TypeScript", src: "export default (ctx: any) => " + expr, lang: engine.TS},
			{name: "a JavaScript module", src: "export default (ctx) => " + expr, lang: engine.JS},
			{name: "a JavaScript util", src: "import {f} from 'utils/Deep'; export default f", lang: engine.JS,
				mods: utilMap{src: map[string]string{"Deep@1": "export const f = () => " + expr}, active: map[string]string{"Deep": "1"}}, wantUtil: "utils/Deep"},
			{name: "a TypeScript util", src: "import {f} from 'utils/Deep'; export default f", lang: engine.TS,
				mods: utilMap{src: map[string]string{"Deep@1": "//ts\nexport const f = (): any => " + expr}, active: map[string]string{"Deep": "1"}}, wantUtil: "utils/Deep"},
		} {
			t.Run(shape+" in "+tt.name, func(t *testing.T) {
				_, err := engine.CompileModules("events.v1.EventService/SendEvent/pre/deep", tt.src, tt.lang, tt.mods)
				if err == nil || !(strings.Contains(err.Error(), "nesting deeper than") || strings.Contains(err.Error(), "expression deeper than")) ||
					!strings.Contains(err.Error(), tt.wantUtil) {
					t.Fatalf("CompileModules() error = %v; want the nesting refused, naming %q", err, cmp.Or(tt.wantUtil, "the script"))
				}
			})
		}
	}
}

// TestLongTypeScriptTypesCompile: a TypeScript type may be longer than an
// expression may: esbuild erases it. A chain just short of what esbuild is
// held to goes through it without harm (what it makes is held to
// MaxExprDepth as any JavaScript is).
func TestLongTypeScriptTypesCompile(t *testing.T) {
	var members []string
	for i := range 2100 {
		members = append(members, fmt.Sprintf("%q", fmt.Sprint("c", i)))
	}
	src := "type Code = " + strings.Join(members, " | ") + ";\nexport default (ctx: any) => { const c: Code = \"c1\"; return null }"
	if _, err := engine.CompileModules("events.v1.EventService/SendEvent/pre/codes", src, engine.TS, nil); err != nil {
		t.Fatalf("a union of 2,100 literals: %v; want it compiled", err)
	}
	chain := "export default (ctx: any) => " + strings.Repeat("!", engine.MaxBundlerExprDepth-100) + "1"
	if _, err := engine.CompileModules("events.v1.EventService/SendEvent/pre/chain", chain, engine.TS, nil); err != nil &&
		!strings.Contains(err.Error(), fmt.Sprintf("expression deeper than %d tokens", engine.MaxExprDepth)) {
		t.Fatalf("a chain esbuild parses: %v; want it compiled, or what esbuild makes of it refused as deeper than %d tokens", err, engine.MaxExprDepth)
	}
}
