package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// tsHook is a TypeScript hook of about 2 KB: types, an interface, helper
// functions and the seed's module shape.
var tsHook = func() string {
	var b strings.Builder
	b.WriteString(`import * as T from 'types';

interface Extra { source?: string; count?: number; tags?: string[] }

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
`)
	for i := 0; b.Len() < 1800; i++ {
		fmt.Fprintf(&b, `
function rule%d(e: Extra): Extra {
  const tags: string[] = e.tags ?? [];
  return { ...e, count: clamp((e.count ?? 0) + %d, 0, 100), tags: [...tags, "r%d"] };
}
`, i, i, i)
	}
	b.WriteString(`
async function main(ctx: any): Promise<void> {
  ctx.request.eventType = "checked";
}
module.exports = main;
`)
	return b.String()
}()

// jsHook is the JavaScript a developer would write for tsHook's main.
const jsHook = `async function main(ctx) {
  ctx.request.eventType = "checked";
}
module.exports = main;
`

// BenchmarkCompileLang is the load cost of a hook, paid when its key
// changes: a 2 KB TypeScript hook transpiled and compiled, against the
// same hook's JavaScript compiled alone.
func BenchmarkCompileLang(b *testing.B) {
	js, err := engine.Transpile("bench", tsHook, engine.TS)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, src string
		lang      engine.Lang
	}{
		{fmt.Sprintf("ts-%dB", len(tsHook)), tsHook, engine.TS},
		{fmt.Sprintf("its-js-%dB", len(js)), js, engine.JS},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := engine.CompileLang("bench", c.src, c.lang); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunLang shows that a TypeScript hook's run costs what the same
// JavaScript hook's does: the transpiling was done at compile time. The
// export-default forms pay for esbuild's module helpers on each run.
func BenchmarkRunLang(b *testing.B) {
	e := newEngine(b)
	ctx := context.Background()
	for _, c := range []struct {
		name, src string
		lang      engine.Lang
	}{
		{"js", jsHook, engine.JS},
		{"ts", strings.Replace(jsHook, "(ctx)", "(ctx: any): Promise<void>", 1), engine.TS},
		{"ts-2KB", tsHook, engine.TS},
		{"js-export-default", `export default async function (ctx) { ctx.request.eventType = "checked" }`, engine.JS},
		{"ts-export-default", `export default async function (ctx: any) { ctx.request.eventType = "checked" }`, engine.TS},
	} {
		s, err := engine.CompileLang("bench", c.src, c.lang)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			call := preCall(b)
			call.InPlace = true
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Run(ctx, s, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
