package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// fuzzTimeout bounds each fuzzed run; what matters is that the process
// survives, not what the script returns.
const fuzzTimeout = 200 * time.Millisecond

// FuzzCompileAndRun feeds scripts to Compile and Run: the process must never
// crash, whatever the script. The seeds are the hostile documents and
// one-line killers found on main, and ordinary hooks; the fuzzer mutates
// their bytes.
func FuzzCompileAndRun(f *testing.F) {
	for _, seed := range []string{
		`module.exports = function (ctx) { ctx.request.eventType = "checked" }`,
		`module.exports = async ctx => { if (ctx.request.toUserId === "bob") return {status: 403, message: "no"} }`,
		`({messageOverride: {toUserId: ctx.request.toUserId.toUpperCase()}})`,
		`const m = /([a-z]+)@(\w+)/.exec("a@b"); ({response: {eventId: m[1] + "/" + m[2]}})`,
		"module.exports = c => { c.request.eventType = `${c.hook}:${[1, 2].map(x => x * 2).join()}` }",
		strings.Repeat("(", 2000) + "1" + strings.Repeat(")", 2000),
		strings.Repeat("1+", 5000) + "1",
		strings.Repeat("x=>", 5000) + "1",
		"a" + strings.Repeat(".b", 5000),
		strings.Repeat("!", 5000) + "1",
		strings.Repeat("`${", 1100) + strings.Repeat("}`", 1100),
		`module.exports = () => { "x".repeat(2**45) }`,
		`module.exports = () => { new ArrayBuffer(2**45) }`,
		`module.exports = () => { "".padEnd(2**45) }`,
		`module.exports = () => { JSON.parse("[".repeat(4e6) + "]".repeat(4e6)) }`,
		`module.exports = () => { new Array(5e7).fill(0) }`,
		`module.exports = () => { const b = "x".repeat(1e6); JSON.stringify(Array(1e5).fill(b)) }`,
		`let a = []; for (let i = 0; i < 1e5; i++) a = [a]; String(a)`,
		`let o = {}; for (let i = 0; i < 1e5; i++) o = {a: o}; JSON.stringify(o)`,
		`new (new Float64Array(1).constructor)(2**40)`,
		`eval("(".repeat(3e5) + "1" + ")".repeat(3e5))`,
		`new Function("return " + "[".repeat(3e5))`,
		`(async () => 1).constructor("[".repeat(3e5))`,
		`new RegExp("(?=a)" + "(".repeat(1e6))`,
		`const b = new ArrayBuffer(8); new Uint8Array(b, 2, 4)[0] = 7; new DataView(b).getUint8(2)`,
		`while (true) {}`,
		`function f() { f() } f()`,
		`function f(){} / "/" + ((((1))))`,
	} {
		f.Add(seed)
	}
	e := newEngine(f)
	f.Fuzz(func(t *testing.T, src string) {
		s, err := engine.Compile("fuzz", src)
		if err != nil {
			return
		}
		call := preCall(t)
		call.Timeout = fuzzTimeout
		e.Run(context.Background(), s, call)
	})
}
