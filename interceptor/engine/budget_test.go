package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// generous is the timeout of runs in tests that are not about timeouts.
const generous = 30 * time.Second

// runModule runs a module whose function is body, with a generous timeout.
func runModule(t *testing.T, e *engine.Engine, body string) (engine.Outcome, error) {
	t.Helper()
	call := preCall(t)
	call.Timeout = generous
	return e.Run(context.Background(), compile(t, "module.exports = function (ctx) {\n"+body+"\n}"), call)
}

// TestBudgetTurnsProcessKillersIntoRangeErrors runs every one-line process
// killer found on main (a fatal out of memory, a fatal stack overflow, or
// minutes of native work with gigabytes held) and the other ways to reach
// the same built-ins: each ends in a RangeError, at once, and the process
// lives on. It is also the test that every guard is installed.
func TestBudgetTurnsProcessKillersIntoRangeErrors(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct{ name, body, want string }{
		{"repeat 2**45", `"x".repeat(2**45)`, "String.prototype.repeat would allocate 32 TiB"},
		{"repeat reached by a computed name", `""["re" + "peat"].call("x", 2**45)`, "String.prototype.repeat would allocate 32 TiB"},
		{"repeat reached through its descriptor", `Object.getOwnPropertyDescriptors(Object.getPrototypeOf("")).repeat.value.call("ab", 2**40)`, "String.prototype.repeat would allocate 2 TiB"},
		{"repeat of a string a toString returns", `String.prototype.repeat.call({toString() { return "xy" }}, 2**44)`, "would allocate 32 TiB"},
		{"repeat twice", `"x".repeat(2**20).repeat(2**20)`, "String.prototype.repeat would allocate 1 TiB after 1 MiB"},
		{"padEnd 2**45", `"".padEnd(2**45)`, "String.prototype.padEnd would allocate 32 TiB"},
		{"padStart 2**45", `"".padStart(2**45, "ab")`, "String.prototype.padStart would allocate 32 TiB"},
		{"concat of a large string with itself", `const s = "x".repeat(2**24); s.concat(s, s, s, s)`, "String.prototype.concat would allocate 80 MiB after 16 MiB"},
		{"replaceAll with a repeating replacement", `"x".repeat(2**20).replaceAll("x", "$&$&$&$&$&$&$&$&")`, "String.prototype.replaceAll would allocate"},
		{"replace with a function returning a large string", `const big = "y".repeat(2**20); "x".repeat(1000).replace(/x/g, () => big)`, "RegExp.prototype[Symbol.replace] would allocate 1 MiB after"},
		{"replace with a string pattern and a function returning a large string", `const big = "y".repeat(2**20); "x".repeat(1000).replaceAll("x", () => big)`, "String.prototype.replaceAll would allocate 1 MiB after"},
		{"toUpperCase of a large string", `"ß".repeat(2**24).toUpperCase()`, "String.prototype.toUpperCase would allocate 96 MiB after 32 MiB"},
		{"String.raw of a huge length", `String.raw({raw: {length: 2**40}})`, "String.raw would allocate 9 TiB"},
		{"new ArrayBuffer 2**45", `new ArrayBuffer(2**45)`, "ArrayBuffer would allocate 32 TiB"},
		{"new Uint8Array 2**40", `new Uint8Array(2**40)`, "Uint8Array would allocate 1 TiB"},
		{"a typed array from an array-like of huge length", `new Float64Array({length: 2**40})`, "Float64Array would allocate 8 TiB"},
		{"a typed array constructor reached through an instance", `new (new Float64Array(1).constructor)(2**40)`, "Float64Array would allocate 8 TiB"},
		{"a typed array constructor reached through a buffer", `new (new Int16Array(1).buffer.constructor)(2**45)`, "ArrayBuffer would allocate 32 TiB"},
		{"a subclass of a typed array", `class X extends Uint8Array {}; new X(2**40)`, "Uint8Array would allocate 1 TiB"},
		{"Reflect.construct of a typed array", `Reflect.construct(Int32Array, [2**40])`, "Int32Array would allocate 4 TiB"},
		{"TypedArray.from an array-like", `Uint16Array.from({length: 2**40})`, "Uint16Array would allocate 2 TiB"},
		{"Array(5e7).fill(0)", `new Array(5e7).fill(0)`, "Array.prototype.fill would allocate 762.9 MiB"},
		{"fill after growing length", `const a = []; a.length = 2**32 - 1; a.fill(0)`, "Array.prototype.fill would allocate 64 GiB"},
		{"Array.from a huge length", `Array.from({length: 5e7})`, "Array.from would allocate 762.9 MiB"},
		{"join of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.join("abc")`, "Array.prototype.join would allocate"},
		{"join of many references to a large string", `Array(1000).fill("x".repeat(2**20)).join("")`, "Array.prototype.join would allocate"},
		{"concat of huge sparse arrays", `const a = []; a.length = 2**32 - 1; a.concat(a)`, "Array.prototype.concat would allocate 128 GiB"},
		{"slice of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.slice()`, "Array.prototype.slice would allocate 64 GiB"},
		{"map of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.map(x => x)`, "Array.prototype.map would allocate 64 GiB"},
		{"toReversed of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.toReversed()`, "Array.prototype.toReversed would allocate 64 GiB"},
		{"a spread of a huge sparse array", `const a = []; a.length = 2**32 - 1; [...a]`, "Array.prototype.values would"},
		{"a call with a huge sparse array spread", `const a = []; a.length = 2**32 - 1; Math.max(...a)`, "Array.prototype.values would"},
		{"a spread after the iterator was reached by name", `const a = []; a.length = 2**32 - 1; a.values; [...a]`, "Array.prototype.values would"},
		{"a spread of an array-like of huge length", `[...{length: 2**40, [Symbol.iterator]: Array.prototype[Symbol.iterator]}]`, "Array.prototype.values would"},
		{"a destructuring rest of a huge sparse array", `const a = []; a.length = 2**32 - 1; const [x, ...rest] = a`, "Array.prototype.values would"},
		{"keys of a huge sparse array spread", `const a = []; a.length = 2**32 - 1; [...a.keys()]`, "Array.prototype.keys would"},
		{"split of a large string into characters", `"x".repeat(6e7).split("")`, "String.prototype.split would"},
		{"split of a large string by a pattern", `"x".repeat(6e7).split(/(?:)/)`, "String.prototype.split would"},
		{"a global match of every character", `"x".repeat(6e7).match(/x/g)`, "String.prototype.match would"},
		{"every match of a large string spread", `[..."x".repeat(6e7).matchAll(/x/g)]`, "String.prototype.matchAll would"},
		{"a spread of a large string", `[..."x".repeat(6e7)]`, "String.prototype[Symbol.iterator] would"},
		{"Array.from of a large string", `Array.from("x".repeat(6e7))`, "String.prototype[Symbol.iterator] would"},
		{"Object.keys of a large string", `Object.keys("x".repeat(6e7))`, "Object.keys would"},
		{"Object.entries of a large typed array", `Object.entries(new Uint8Array(6e7))`, "Object.entries would"},
		{"JSON.stringify of a huge sparse array", `const a = []; a.length = 2**32 - 1; JSON.stringify(a)`, "JSON.stringify would"},
		{"RegExp's Symbol.split called directly", `/(?:)/[Symbol.split]("x".repeat(6e7))`, "RegExp.prototype[Symbol.split] would"},
		{"RegExp's Symbol.match called directly", `/x/g[Symbol.match]("x".repeat(6e7))`, "RegExp.prototype[Symbol.match] would"},
		{"RegExp's Symbol.matchAll called directly", `[.../x/g[Symbol.matchAll]("x".repeat(6e7))]`, "RegExp.prototype[Symbol.matchAll] would"},
		{"sort of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.sort()`, "Array.prototype.sort would allocate 64 GiB"},
		{"includes on a huge sparse array", `const a = []; a.length = 2**32 - 1; a.includes(1)`, "Array.prototype.includes would allocate 64 GiB"},
		{"forEach over a huge sparse array", `const a = []; a.length = 2**32 - 1; a.forEach(x => x)`, "Array.prototype.forEach would allocate 64 GiB"},
		{"splice of a huge sparse array", `const a = []; a.length = 2**32 - 1; a.splice(0)`, "Array.prototype.splice would allocate 64 GiB"},
		{"new Set of a huge sparse array", `const a = []; a.length = 2**32 - 1; new Set(a)`, "Set would allocate 64 GiB"},
		{"Promise.all of a huge sparse array", `const a = []; a.length = 2**32 - 1; Promise.all(a)`, "Promise.all would allocate 1 TiB"},
		{"Promise.all reached through an async function", `const a = []; a.length = 2**32 - 1; (async () => 1)().constructor.all(a)`, "Promise.all would allocate 1 TiB"},
		{"Symbol.replace of a regular expression called directly", `/x/g[Symbol.replace]("x".repeat(2**20), "$&".repeat(1000))`, "RegExp.prototype[Symbol.replace] would allocate"},
		{"apply with a huge array-like", `Math.max.apply(null, {length: 2**32 - 1})`, "Function.prototype.apply would allocate 64 GiB"},
		{"Reflect.apply with a huge array-like", `Reflect.apply(Math.max, null, {length: 2**32 - 1})`, "Reflect.apply would allocate 64 GiB"},
		{"JSON.parse of 4e6 nested brackets", `JSON.parse("[".repeat(4e6) + "]".repeat(4e6))`, "JSON.parse: nesting deeper than 1000 levels"},
		{"JSON.stringify of 1e5 references to a 1 MB string", `const b = "x".repeat(1e6); JSON.stringify(Array(1e5).fill(b))`, "JSON.stringify would allocate at least"},
		{"JSON.stringify of a deep object", `let o = {}; for (let i = 0; i < 1e5; i++) o = {a: o}; JSON.stringify(o)`, "JSON.stringify: nesting deeper than 1000 levels"},
		{"String of a deep array", `let a = []; for (let i = 0; i < 1e5; i++) a = [a]; String(a)`, "Array.prototype.join: nesting deeper than 1000 levels"},
		{"toLocaleString of a deep array", `let a = []; for (let i = 0; i < 1e5; i++) a = [a]; a.toLocaleString()`, "Array.prototype.toLocaleString: nesting deeper than 1000 levels"},
		{"toLocaleString of 1e4 references to a 10 MB string", `Array(1e4).fill("x".repeat(1e7)).toLocaleString()`, "Array.prototype.toLocaleString would allocate"},
		{"join of a typed array with a long separator", `new Uint8Array(1e6).join("x".repeat(1e6))`, "%TypedArray%.prototype.join would allocate"},
		{"toLocaleString of a large typed array", `new Float64Array(6e6).toLocaleString()`, "%TypedArray%.prototype.toLocaleString would allocate"},
		{"join of a typed array reached through ArrayBuffer", `new Int8Array(new ArrayBuffer(1e6)).join("y".repeat(1e6))`, "%TypedArray%.prototype.join would allocate"},
		{"Symbol.replace called directly with a native replacer", `const big = "x".repeat(1e7); /./g[Symbol.replace]("y".repeat(1e4), String.prototype.valueOf.bind(big))`, "RegExp.prototype[Symbol.replace] would allocate"},
		{"replace with a native replacer", `const big = "x".repeat(1e7); "y".repeat(1e4).replace(/./g, String.prototype.valueOf.bind(big))`, "RegExp.prototype[Symbol.replace] would allocate"},
		{"a replacer a pattern object of the script's was handed, used again", `let leaked; "ab".replace({[Symbol.replace](s, r) { leaked = r; return "" }}, () => "z"); const big = "x".repeat(4e6); const keep = []; for (let i = 0; i < 100; i++) keep.push(/^x/[Symbol.replace](big, leaked))`, "RegExp.prototype[Symbol.replace] would allocate"},
		{"JSON.stringify of objects whose toJSON is a bound native", `const big = "x".repeat(1e7); JSON.stringify(Array(1e4).fill({toJSON: String.prototype.valueOf.bind(big)}))`, "JSON.stringify would allocate"},
		{"JSON.stringify of a toJSON that returns a large array", `const big = "x".repeat(1e6); JSON.stringify({toJSON: () => Array(1000).fill(big)})`, "JSON.stringify would allocate"},
		{"JSON.stringify of a toJSON with a list of keys", `const big = "x".repeat(1e6); JSON.stringify(Array(300).fill({toJSON: String.prototype.valueOf.bind(big)}), ["a"])`, "JSON.stringify would allocate"},
		{"JSON.stringify of a toJSON with a huge list of keys", `const keys = []; keys.length = 2**32 - 1; JSON.stringify({toJSON() { return 1 }}, keys)`, "JSON.stringify would allocate"},
		{"JSON.stringify of a toJSON with a replacer", `const big = "x".repeat(1e7); JSON.stringify(Array(1e4).fill({toJSON: String.prototype.valueOf.bind(big)}), (k, v) => v)`, "JSON.stringify would allocate"},
		{"flat of a deep array", `let a = []; for (let i = 0; i < 1e5; i++) a = [a]; a.flat(Infinity)`, "Array.prototype.flat: nesting deeper than 1000 levels"},
		{"direct eval of 300k nested parentheses", `eval("(".repeat(3e5) + "1" + ")".repeat(3e5))`, "eval: nesting deeper than 1000 levels at line 1 col 1002"},
		{"indirect eval of a long chain", `(0, eval)("1+".repeat(3e5) + "1")`, "eval: expression deeper than 4000 tokens"},
		{"eval reached by a computed name", `globalThis["ev" + "al"]("[".repeat(3e5))`, "eval: nesting deeper than 1000 levels"},
		{"a direct eval inside eval", `const s = "(".repeat(3e5); eval("eval(s)")`, "eval: code compiled at run time may not call eval directly"},
		{"new Function of deep nesting", `new Function("return " + "(".repeat(3e5) + "1" + ")".repeat(3e5))`, "Function: nesting deeper than 1000 levels"},
		{"Function reached through a function's constructor", `(() => 1).constructor("[".repeat(3e5))`, "Function: nesting deeper than 1000 levels"},
		{"AsyncFunction reached through an async function", `(async () => 1).constructor("[".repeat(3e5))`, "AsyncFunction: nesting deeper than 1000 levels"},
		{"GeneratorFunction reached through a generator", `(function* () {}).constructor("[".repeat(3e5))`, "GeneratorFunction: nesting deeper than 1000 levels"},
		{"AsyncFunction reached through code compiled at run time", `new Function("return (async () => 1).constructor")()("[".repeat(3e5))`, "AsyncFunction: nesting deeper than 1000 levels"},
		{"new RegExp of deeply nested groups", `new RegExp("(?=a)" + "(".repeat(1e6) + "a" + ")".repeat(1e6))`, "RegExp: pattern nested deeper than 1000 groups"},
		{"RegExp reached through a literal", `/x/.constructor("(?=a)" + "(".repeat(1e6))`, "RegExp: pattern nested deeper than 1000 groups"},
		{"match with a pattern string", `"a".match("(?=a)" + "(".repeat(1e6) + "a" + ")".repeat(1e6))`, "String.prototype.match: pattern nested deeper than 1000 groups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runModule(t, e, tc.body)
			var ee *engine.Error
			if !errors.As(err, &ee) || ee.Kind != engine.Exhausted || !strings.HasPrefix(ee.Message, "RangeError: ") {
				t.Fatalf("got %v; want the budget's RangeError, uncaught (Kind Exhausted)", err)
			}
			if !strings.Contains(ee.Message, tc.want) {
				t.Errorf("got %q; want it to say %q", ee.Message, tc.want)
			}
		})
	}
}

// TestBudgetErrorsCanBeCaught checks that the RangeError is an ordinary
// error a script may catch and handle.
func TestBudgetErrorsCanBeCaught(t *testing.T) {
	e := newEngine(t)
	out, err := runModule(t, e, `try { "x".repeat(2**45) } catch (e) { ctx.request.eventType = e.name + ": " + (e instanceof RangeError) }`)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Message.(*eventsv1.SendEventRequest).EventType; got != "RangeError: true" {
		t.Errorf("got %q; want RangeError: true", got)
	}
}

// TestBudgetIsPerRunAndCumulative: allocations add up within a run, and
// every run starts with the whole budget.
func TestBudgetIsPerRunAndCumulative(t *testing.T) {
	e := newEngine(t, engine.WithMemoryBudget(1<<20))
	body := `const a = "x".repeat(600000); const b = "y".repeat(600000)`
	for range 2 {
		_, err := runModule(t, e, body)
		const want = "RangeError: hook memory budget of 1 MiB exceeded: String.prototype.repeat would allocate 585.9 KiB after 585.9 KiB"
		if err == nil || err.Error() != want {
			t.Errorf("got %v; want %s", err, want)
		}
		if _, err := runModule(t, e, `const a = "x".repeat(600000)`); err != nil {
			t.Errorf("one half of the budget: %v", err)
		}
	}
}

// TestGuardedBuiltinsBehaveAsBefore runs ordinary calls of every guarded
// built-in and compares the results with what JavaScript specifies: the
// guards change nothing a script under budget can see, this, coercions
// (once each), name and length included.
func TestGuardedBuiltinsBehaveAsBefore(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct{ expr, want string }{
		{`"ab".repeat(3)`, `"ababab"`},
		{`"ab".repeat(0) + "|" + "".repeat(2**45)`, `"|"`},
		{`String.prototype.repeat.call(5, 2)`, `"55"`},
		{`(() => { let n = 0; const o = {toString() { n++; return "ab" }}; return String.prototype.repeat.call(o, 2) + n })()`, `"abab1"`},
		{`(() => { let n = 0; const c = {valueOf() { n++; return 2 }}; return "ab".repeat(c) + n })()`, `"abab1"`},
		{`(() => { try { String.prototype.repeat.call(null, 1) } catch (e) { return e.name } })()`, `"TypeError"`},
		{`(() => { try { "a".repeat(-1) } catch (e) { return e.name + ": " + e.message } })()`, `"RangeError: Invalid count value"`},
		{`"é".repeat(2)`, `"éé"`},
		{`"5".padStart(3, "0") + "5".padEnd(3) + "|" + "abc".padStart(2) + "x".padEnd(5, "ab")`, `"0055  |abcxabab"`},
		{`"a".concat(1, null, [2, 3], {})`, `"a1null2,3[object Object]"`},
		{`"a-b-c".replace("-", "+") + "a-b-c".replaceAll("-", "$&$&") + "abc".replace(/b/, "[$&]")`, `"a+b-ca--b--c" + "a[b]c"`},
		{`"abc".replace(/[ac]/g, (m, i) => m.toUpperCase() + i)`, `"A0bC2"`},
		{`"abc".replaceAll("b", () => 7)`, `"a7c"`},
		{`"ß".toUpperCase() + "ABC".toLowerCase() + "\u0041\u030a".normalize("NFC").length`, `"SSabc1"`},
		{`String.fromCharCode(72, 105) + String.fromCodePoint(0x1F600).length + String.raw` + "`a${1}b\\n`", `"Hi2a1b\\n"`},
		{`[1, [2, [3]], null, undefined, "x"].join("-") + String([1, [2, 3]])`, `"1-2,3---x1,2,3"`},
		{`(() => { const a = [1]; a.push(a); return String(a) })()`, `"1,"`},
		{`Array.prototype.join.call({length: 2, 0: "a", 1: "b"}, "+")`, `"a+b"`},
		{`JSON.stringify({d: new Date(0), o: {toJSON(k) { return {k, n: [1, 2]} }}, s: "x"}, (k, v) => k === "s" ? v + "!" : v, 1)`, `"{\n \"d\": \"1970-01-01T00:00:00.000Z\",\n \"o\": {\n  \"k\": \"o\",\n  \"n\": [\n   1,\n   2\n  ]\n },\n \"s\": \"x!\"\n}"`},
		{`JSON.stringify({a: 1, t: {toJSON() { return "T" }}}, ["t"])`, `"{\"t\":\"T\"}"`},
		{`JSON.stringify([{a: 1, b: {toJSON() { return {a: 2, c: 3} }}, c: 4}], ["a", "b", 7, new String("c")]) + JSON.stringify({d: new Date(0), x: 1}, ["d"])`, `"[{\"a\":1,\"b\":{\"a\":2,\"c\":3},\"c\":4}]{\"d\":\"1970-01-01T00:00:00.000Z\"}"`},
		{`(() => { new Uint8Array(1); new ArrayBuffer(1); new DataView(new ArrayBuffer(1)); return ({length: 2**40}).toLocaleString() + ({}).toLocaleString() })()`, `"[object Object][object Object]"`},
		{`[1, [2, "x"], null].toLocaleString() + "|" + new Uint8Array([1, 2, 3]).join("-") + "|" + new Int16Array([4, 5]).toLocaleString() + "|" + new Uint8Array(2).join()`, `"1,2,x,|1-2-3|4,5|0,0"`},
		{`JSON.stringify(["a,b,,c".split(","), "abc".split(""), "a1b2".split(/\d/), "a,b,c".split(",", 2), "x".split(), "aXbX".match(/X/g), [..."aXbX".matchAll(/X/g)].map(m => m.index), [..."héllo"], Array.from("ab"), Object.keys("ab"), Object.values(new Uint8Array([7, 8])), Object.entries({k: 1}), JSON.stringify([1, , 3])])`, `"[[\"a\",\"b\",\"\",\"c\"],[\"a\",\"b\",\"c\"],[\"a\",\"b\",\"\"],[\"a\",\"b\"],[\"x\"],[\"X\",\"X\"],[1,3],[\"h\",\"é\",\"l\",\"l\",\"o\"],[\"a\",\"b\"],[\"0\",\"1\"],[7,8],[[\"k\",1]],\"[1,null,3]\"]"`},
		{`(() => { const a = [1, 2]; let n = 0; for (const x of a) n += x; const [h, ...t] = [3, 4, 5]; return JSON.stringify([[...a, ...[3]], Math.max(...a), [...a.keys()], [...a.entries()], n, h, t, a[Symbol.iterator] === a.values]) })()`, `"[[1,2,3],2,[0,1],[[0,1],[1,2]],3,3,[4,5],true]"`},
		{`JSON.stringify([new Array(3).fill(0), [1, 2, 3].fill(9, 1), Array.from({length: 2}, (_, i) => i), Array.of(7, 8)])`, `"[[0,0,0],[1,9,9],[0,1],[7,8]]"`},
		{`JSON.stringify([[1].concat([2], 3, [[4]]), [1, [2, [3, [4]]]].flat(2), [1, 2].flatMap(x => [x, x * 2])])`, `"[[1,2,3,[4]],[1,2,3,[4]],[1,2,2,4]]"`},
		{`(() => { const a = [3, 1, 2]; a.push(4, 5); a.unshift(0); a.splice(1, 1, "s"); return JSON.stringify([a, a.slice(1, -1), a.map(x => x + 1), a.filter(x => x > 2), a.toReversed(), a.toSorted(), a.toSpliced(0, 1), a.with(0, "w")]) })()`, `"[[0,\"s\",1,2,4,5],[\"s\",1,2,4],[1,\"s1\",2,3,5,6],[4,5],[5,4,2,1,\"s\",0],[0,1,2,4,5,\"s\"],[\"s\",1,2,4,5],[\"w\",\"s\",1,2,4,5]]"`},
		{`(() => { const a = [3, 1, 2]; return JSON.stringify([a.includes(2), a.indexOf(1), a.lastIndexOf(3), [...new Set([1, 1, 2])], [1, 2, 3, 4].copyWithin(0, 2), a.slice().sort(), a.slice().reverse()]) })()`, `"[true,1,0,[1,2],[3,4,3,4],[1,2,3],[2,1,3]]"`},
		{`[eval("1 + 2"), (0, eval)("typeof ctx"), new Function("a", "b", "return a + b")(1, 2), Function("return this")() === globalThis, RegExp("a+", "g").test("caa"), new RegExp(/b/).source, "abc".match("b").index, "abc".search("c"), [..."abab".matchAll("b")].length].join()`, `"3,undefined,3,true,true,b,1,2,2"`},
		{`(() => { const AsyncFunction = (async () => {}).constructor; const GeneratorFunction = (function* () {}).constructor; return [typeof AsyncFunction("return 1"), [...GeneratorFunction("yield 1; yield 2")()].join("+")].join() })()`, `"function,1+2"`},
		{`[/b/g[Symbol.replace]("abcb", "[$&]"), /b/[Symbol.replace]("abc", () => "B")].join()`, `"a[b]c[b],aBc"`},
		{`(() => { let n = 0; [1, , 3].forEach(x => n += x); return [n, [1, 2].some(x => x > 1), [1, 2].every(x => x > 1), [1, 2, 3].reduce((a, x) => a + x), ["a", "b"].reduceRight((a, x) => a + x)].join() })()`, `"4,true,false,6,ba"`},
		{`Math.max.apply(null, [1, 3, 2]) + Reflect.apply(Math.min, null, [4, 5]) + Reflect.construct(Date, [0]).getTime()`, `7`},
		{`JSON.stringify(JSON.parse('{"a": [1, {"b": "c"}], "d": null}', (k, v) => v === "c" ? "C" : v))`, `"{\"a\":[1,{\"b\":\"C\"}],\"d\":null}"`},
		{`JSON.stringify({a: [1, "x"], b: {toJSON() { return "B" }}, c: undefined}, null, 2)`, `"{\n  \"a\": [\n    1,\n    \"x\"\n  ],\n  \"b\": \"B\"\n}"`},
		{`JSON.stringify({a: 1, b: 2}, ["b"])`, `"{\"b\":2}"`},
		{`(() => { const b = new ArrayBuffer(8); const v = new Uint8Array(b, 2, 4); v[0] = 7; return [b.byteLength, v.length, new Uint8Array(b)[2], new Float64Array([1.5, 2]).join(), Int16Array.from([1, 2]).length, Uint8Array.of(1, 2, 3).length, new DataView(b).getUint8(2)].join() })()`, `"8,4,7,1.5,2,2,3,7"`},
		{`(() => { class X extends Uint8Array {}; const x = new X(3); return [x.length, x instanceof X, x.map(v => v + 1) instanceof X].join() })()`, `"3,true,true"`},
		{`(() => { try { Uint8Array(2) } catch (e) { return e.name } })()`, `"TypeError"`},
		{`[String.prototype.repeat.name, String.prototype.repeat.length, String.prototype.padEnd.length, Array.prototype.fill.length, Array.prototype.join.name, JSON.stringify.length, JSON.parse.name, Uint8Array.name, Uint8Array.length, ArrayBuffer.length, Function.prototype.apply.length].join()`, `"repeat,1,1,1,join,3,parse,Uint8Array,3,1,2"`},
		{`[typeof "".repeat, "".constructor === String, [].constructor === Array, Object.getPrototypeOf(Uint8Array) === Object.getPrototypeOf(Int8Array), new Uint8Array(1).buffer.constructor === ArrayBuffer].join()`, `"function,true,true,true,true"`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			out, err := runModule(t, e, "ctx.request.eventType = JSON.stringify("+tc.expr+")")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if strings.HasPrefix(want, `"`) && strings.Contains(want, `" + "`) {
				want = strings.ReplaceAll(want, `" + "`, "")
			}
			if got := out.Message.(*eventsv1.SendEventRequest).EventType; got != want {
				t.Errorf("got %s; want %s", got, want)
			}
		})
	}
}

// BenchmarkRunGuardedBuiltins is a run that reaches guarded built-ins for
// the first time in its runtime, as every run does: each is guarded when
// first reached. An async function or a regular expression literal makes
// the run guard AsyncFunction or RegExp before the script starts.
func BenchmarkRunGuardedBuiltins(b *testing.B) {
	e := newEngine(b)
	for _, tc := range []struct{ name, body string }{
		{"strings", `c.request.eventType = "ab".repeat(2).padEnd(6, "-")`},
		{"json", `c.request.eventType = JSON.stringify(JSON.parse('{"a":[1,2]}'))`},
		{"arrays", `c.request.eventType = [1, 2, 3].map(x => x * 2).join("+")`},
		{"typed arrays", `c.request.eventType = String(new Uint8Array(4).length)`},
		{"async and a regular expression", `await 1; c.request.eventType = String(/a/.test("a"))`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := compile(b, "module.exports = async c => { "+tc.body+" }")
			call := preCall(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Run(ctx, s, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A BigInt's operators allocate without bound in one native step
// (2n ** 2n ** 40n asks for 128 GiB): hooks cannot make one, neither from a
// literal, which does not compile, nor from the built-ins that convert
// other values.
func TestHooksCannotMakeBigInts(t *testing.T) {
	if _, err := engine.Compile("big", `module.exports = () => String(2n ** (2n ** 40n))`); err == nil ||
		!strings.Contains(err.Error(), "BigInt literals are not available to hooks") {
		t.Fatalf("Compile of a BigInt literal: %v; want it refused", err)
	}
	e := newEngine(t)
	for _, body := range []string{
		`BigInt(2) ** BigInt(2)`,
		`globalThis["Big" + "Int"](2)`,
		`new BigInt64Array(1)`,
		`BigUint64Array.of()`,
		`new DataView(new ArrayBuffer(8)).getBigUint64(0)`,
		`eval("1n")`,
	} {
		_, err := runModule(t, e, body)
		if err == nil || !strings.Contains(err.Error(), "BigInt") || !strings.Contains(err.Error(), "not available to hooks") {
			t.Errorf("%s: %v; want an error saying BigInt is not available to hooks", body, err)
		}
	}
}
