package engine_test

import (
	"context"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// benchUtils holds one small util, in both module forms.
var benchUtils = utilMap{
	src: map[string]string{
		"Addition@1": `export function add(a, b) { return a + b }`,
		"Legacy@1":   `module.exports = { add: function (a, b) { return a + b } };`,
	},
	active: map[string]string{"Addition": "1", "Legacy": "1"},
}

// The same hook four ways: with add inline, as an ES module and as a
// plain script, importing it from a util, and requiring it from one.
const (
	inlineAdd = `function add(a, b) { return a + b }
module.exports = function (ctx) { ctx.request.eventType = "sum " + add(1, 2) };`
	inlineESMAdd = `function add(a, b) { return a + b }
export default function (ctx) { ctx.request.eventType = "sum " + add(1, 2) }`
	importAdd = `import { add } from 'utils/Addition';
export default function (ctx) { ctx.request.eventType = "sum " + add(1, 2) }`
	requireAdd = `var add = require('utils/Legacy').add;
module.exports = function (ctx) { ctx.request.eventType = "sum " + add(1, 2) };`
)

// BenchmarkCompileUtils is the load cost of a hook that imports a util,
// paid when the hook or the util changes, against the same hook with the
// util's code inline.
func BenchmarkCompileUtils(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"inline", inlineAdd}, {"inline-esm", inlineESMAdd}, {"import", importAdd}, {"require", requireAdd},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := engine.CompileModules("bench", c.src, engine.JS, benchUtils); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunUtils shows what a run of a hook that imports a util costs,
// against the same hook with the util's code inline: the util is bundled
// at compile time, so a run loads no module.
func BenchmarkRunUtils(b *testing.B) {
	e := newEngine(b)
	ctx := context.Background()
	for _, c := range []struct{ name, src string }{
		{"inline", inlineAdd}, {"inline-esm", inlineESMAdd}, {"import", importAdd}, {"require", requireAdd},
	} {
		s, err := engine.CompileModules("bench", c.src, engine.JS, benchUtils)
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
