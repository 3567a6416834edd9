package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// TestBodyScriptsReturnRetval is brainCloud's result rule: a body script
// that set the global retval returns it, whatever its last statement
// evaluates to.
func TestBodyScriptsReturnRetval(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		wantAction engine.Action
		wantCode   codes.Code
		wantJSON   string
		// plainOnly: bundling (TypeScript, imports) drops a last
		// statement that is undefined; README says so.
		plainOnly bool
	}{
		{name: "retval wins over the completion value of its last assignment",
			script:     `var retval = {}; retval.status = 200; retval.messageOverride = {toUserId: "bob", eventType: "x"};`,
			wantAction: engine.Continue, wantJSON: `{"eventType":"x","toUserId":"bob"}`},
		{name: "a retval with a non-200 status rejects the call",
			script:     `var retval = {status: 403, message: "no"}; "done";`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied},
		{name: "retval declared with let counts too",
			script:     `let retval = {status: 404}; 1 + 1;`,
			wantAction: engine.Reject, wantCode: codes.NotFound},
		{name: "retval assigned without a declaration counts too",
			script:     `retval = {status: 503}; 42;`,
			wantAction: engine.Reject, wantCode: codes.Unavailable},
		{name: "a null retval leaves the completion value the result",
			script:     `var retval = null; ({status: 429});`,
			wantAction: engine.Reject, wantCode: codes.ResourceExhausted},
		{name: "a script without retval returns its completion value as before",
			script:     `ctx.request.eventType = "seen"; undefined;`,
			wantAction: engine.Continue, wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"seen","toUserId":"alice"}`,
			plainOnly: true},
		{name: "a last expression null goes on",
			script:     `ctx.request.eventType = "seen"; null;`,
			wantAction: engine.Continue, wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"seen","toUserId":"alice"}`},
		{name: "a last expression is the result",
			script:     `ctx.request.eventType = "seen"; ({status: "ABORTED"});`,
			wantAction: engine.Reject, wantCode: codes.Aborted},
		{name: "a module's return value is its result, retval or not",
			script:     `module.exports = () => { var retval = {status: 403}; return undefined; }`,
			wantAction: engine.Continue, wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
	}
	// The same script as plain JavaScript, as TypeScript, and with an
	// import of a util (which has a retval of its own): the last two are
	// bundled, and bundling must keep every statement and the name retval.
	mods := utilMap{src: map[string]string{"Side@1": `export var retval = {status: 500}; export const one = 1;`},
		active: map[string]string{"Side": "1"}}
	forms := []struct {
		name    string
		compile func(src string) (*engine.Script, error)
	}{
		{"js", func(src string) (*engine.Script, error) { return engine.Compile("test", src) }},
		{"ts", func(src string) (*engine.Script, error) { return engine.CompileLang("test", src, engine.TS) }},
		{"js importing a util", func(src string) (*engine.Script, error) {
			return engine.CompileModules("test", "import * as side from 'utils/Side';\n"+src, engine.JS, mods)
		}},
	}
	e := newEngine(t)
	for _, form := range forms {
		for _, tt := range tests {
			if tt.plainOnly && form.name != "js" {
				continue
			}
			t.Run(form.name+"/"+tt.name, func(t *testing.T) {
				call := preCall(t)
				s, err := form.compile(tt.script)
				if err != nil {
					t.Fatalf("compile: %v", err)
				}
				out, err := e.Run(context.Background(), s, call)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if out.Action != tt.wantAction {
					t.Fatalf("action = %d; want %d (outcome %+v)", out.Action, tt.wantAction, out)
				}
				if tt.wantAction == engine.Reject {
					if out.Status.Code() != tt.wantCode {
						t.Fatalf("code = %v; want %v", out.Status.Code(), tt.wantCode)
					}
					return
				}
				msg := out.Message
				if msg == nil {
					msg = call.Request
				}
				if got := js(t, msg); got != tt.wantJSON {
					t.Fatalf("message = %s; want %s", got, tt.wantJSON)
				}
			})
		}
	}
}

// logLine is one line of slog's JSON handler.
type logLine struct {
	Level  string          `json:"level"`
	Msg    string          `json:"msg"`
	Method string          `json:"method"`
	Hook   string          `json:"hook"`
	Value  json.RawMessage `json:"value"`
}

// runLogging runs script as a pre-hook on an engine that logs at debug
// level as JSON, and returns its lines.
func runLogging(t *testing.T, script string, opts ...engine.Option) ([]logLine, error) {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	e := newEngine(t, append([]engine.Option{engine.WithLogger(slog.New(h))}, opts...)...)
	_, err := e.Run(context.Background(), compile(t, script), preCall(t))
	var lines []logLine
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %s: %v", l, err)
		}
		lines = append(lines, ll)
	}
	return lines, err
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// TestLoggedValuesAreJSON is what a script's log lines look like: every
// value as its JSON form, messages as protojson, with the method and the
// hook attached.
func TestLoggedValuesAreJSON(t *testing.T) {
	reqJSON, err := protojson.Marshal(request(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		script    string
		wantLevel string
		wantMsg   string
		// wantValue is the value's JSON, "" for none; "request" for the
		// request's protojson.
		wantValue string
	}{
		{name: "ctx.log writes the request as protojson, not a Go dump",
			script:    `module.exports = ctx => { ctx.log.info("m", ctx.request) }`,
			wantLevel: "INFO", wantMsg: "m", wantValue: "request"},
		{name: "ctx.log.debug exists",
			script:    `module.exports = ctx => { ctx.log.debug("d", [1, "two", null]) }`,
			wantLevel: "DEBUG", wantMsg: "d", wantValue: `[1,"two",null]`},
		{name: "bridge.logInfoJson writes an object as JSON",
			script:    `bridge.logInfoJson("p: ", data.parms)`,
			wantLevel: "INFO", wantMsg: "p: ", wantValue: `{"blocked":"mallory","extradata":{"source":"hook"}}`},
		{name: "bridge.logDebug logs at debug",
			script:    `bridge.logDebug("d", 1)`,
			wantLevel: "DEBUG", wantMsg: "d", wantValue: `1`},
		{name: "bridge.logWarningJson logs at warn",
			script:    `bridge.logWarningJson("w", {a: true})`,
			wantLevel: "WARN", wantMsg: "w", wantValue: `{"a":true}`},
		{name: "bridge.logErrorJson logs the message as JSON at error",
			script:    `bridge.logErrorJson("e", data.message)`,
			wantLevel: "ERROR", wantMsg: "e", wantValue: "request"},
		{name: "bridge.logError logs a string as a JSON string",
			script:    `bridge.logError("e", "text")`,
			wantLevel: "ERROR", wantMsg: "e", wantValue: `"text"`},
		{name: "an object as the message is its JSON",
			script:    `module.exports = ctx => { ctx.log.warn({a: 1}) }`,
			wantLevel: "WARN", wantMsg: `{"a":1}`},
		{name: "console.log joins its values as Node does, others as JSON",
			script:    `module.exports = ctx => { console.log("user", ctx.request.toUserId, 3, {a: [1]}, true) }`,
			wantLevel: "INFO", wantMsg: `user alice 3 {"a":[1]} true`},
		{name: "console.warn in a body script",
			script:    `console.warn("slow:", 250, "ms"); undefined`,
			wantLevel: "WARN", wantMsg: "slow: 250 ms"},
		{name: "console.error and undefined",
			script:    `module.exports = () => { console.error("none", undefined) }`,
			wantLevel: "ERROR", wantMsg: "none undefined"},
		{name: "console.debug logs at debug",
			script:    `module.exports = () => { console.debug("x") }`,
			wantLevel: "DEBUG", wantMsg: "x"},
		{name: "console.info with the live request",
			script:    `module.exports = ctx => { ctx.request.eventType = "changed"; console.info(ctx.request.eventType) }`,
			wantLevel: "INFO", wantMsg: "changed"},
		{name: "a value JSON cannot write is logged as its string",
			script:    `module.exports = () => { const a = {}; a.self = a; console.log("cycle", a) }`,
			wantLevel: "INFO", wantMsg: "cycle [object Object]"},
		{name: "a value with no JSON form is null",
			script:    `module.exports = c => { c.log.info("f", function () {}) }`,
			wantLevel: "INFO", wantMsg: "f", wantValue: `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := runLogging(t, tt.script)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(lines) != 1 {
				t.Fatalf("logged %d lines; want 1: %+v", len(lines), lines)
			}
			l := lines[0]
			if l.Level != tt.wantLevel || l.Msg != tt.wantMsg {
				t.Fatalf("line = %s %q; want %s %q", l.Level, l.Msg, tt.wantLevel, tt.wantMsg)
			}
			if l.Method != "/events.v1.EventService/SendEvent" || l.Hook != "h" {
				t.Fatalf("line's method, hook = %q, %q; want the call's", l.Method, l.Hook)
			}
			switch tt.wantValue {
			case "":
				if l.Value != nil {
					t.Fatalf("value = %s; want none", l.Value)
				}
			case "request":
				if !sameJSON(t, l.Value, reqJSON) {
					t.Fatalf("value = %s; want the request as protojson, %s", l.Value, reqJSON)
				}
			default:
				if !sameJSON(t, l.Value, []byte(tt.wantValue)) {
					t.Fatalf("value = %s; want %s", l.Value, tt.wantValue)
				}
			}
		})
	}
}

// TestLoggingCountsAgainstTheMemoryBudget: a value too large to write
// within the run's memory budget ends the run as any built-in over it
// does, and logs nothing.
func TestLoggingCountsAgainstTheMemoryBudget(t *testing.T) {
	for _, script := range []string{
		`module.exports = ctx => { const o = {s: "x".repeat(1000)}; const a = []; for (let i = 0; i < 2000; i++) a.push(o); ctx.log.info("big", a) }`,
		`module.exports = () => { const o = {s: "x".repeat(1000)}; const a = []; for (let i = 0; i < 2000; i++) a.push(o); console.log(a) }`,
	} {
		lines, err := runLogging(t, script, engine.WithMemoryBudget(1<<20))
		ee, ok := err.(*engine.Error)
		if !ok || ee.Kind != engine.Exhausted || !strings.Contains(ee.Message, "JSON.stringify") {
			t.Fatalf("Run() error = %v; want the memory budget exceeded by JSON.stringify", err)
		}
		if len(lines) != 0 {
			t.Fatalf("logged %+v; want nothing", lines)
		}
	}
}

func compileStyle(t *testing.T, src string, style engine.Style) *engine.Script {
	t.Helper()
	s, err := compile(t, src).WithStyle(style)
	if err != nil {
		t.Fatalf("WithStyle: %v", err)
	}
	return s
}

// TestAPIMakerStyle is the contract of hooks in API Maker's style, case by
// case: main(g), what returning means, and errors.
func TestAPIMakerStyle(t *testing.T) {
	errorCall := func(t testing.TB) *engine.Call {
		c := preCall(t)
		c.Phase = engine.ErrorPhase
		c.Status = status.New(codes.NotFound, "no such user")
		return c
	}
	tests := []struct {
		name   string
		script string
		call   func(testing.TB) *engine.Call
		// want: the action, the code (Reject) or the message (as
		// protojson), or a failure of wantKind containing wantErr.
		wantAction engine.Action
		wantCode   codes.Code
		wantMsg    string
		wantJSON   string
		wantKind   engine.Kind
		wantErr    string
	}{
		{name: "pre: returning nothing goes on with the changes to g.req.body",
			script:   `module.exports = function main(g) { g.req.body.eventType = g.req.headers["x-user"][1] + "/" + g.params.blocked; }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"u2/mallory","toUserId":"alice"}`},
		{name: "pre: an async main that returns nothing goes on",
			script:   `async function main(g) { await null; g.req.body.toUserId = "bob"; } module.exports = main;`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"bob"}`},
		{name: "pre: returning null goes on too",
			script:   `module.exports = g => null`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "pre: assigning g.req.body replaces the request",
			script:   `module.exports = g => { g.req.body = {toUserId: "carol"} }`,
			wantJSON: `{"toUserId":"carol"}`},
		{name: "pre: returning a value answers the call with it",
			script:     `module.exports = async g => ({eventId: "from-" + g.req.body.toUserId})`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"from-alice"}`},
		{name: "pre: a returned value that does not fit the response fails naming it",
			script:   `module.exports = g => ({toUserId: "x"})`,
			wantKind: engine.BadResult, wantErr: `return value: `},
		{name: "pre: a returned string does not fit either",
			script:   `module.exports = g => "ok"`,
			wantKind: engine.BadResult, wantErr: `return value: `},
		{name: "post: assigning g.res.output replaces the output and goes on", call: postCall,
			script:   `module.exports = g => { g.res.output = {eventId: "over-" + g.res.output.eventId} }`,
			wantJSON: `{"eventId":"over-e1"}`},
		{name: "pre: a change of g.req.body that does not fit is named so",
			script:   `module.exports = g => { g.req.body.colour = 1 }`,
			wantKind: engine.BadResult, wantErr: `g.req.body: `},
		{name: "post: an output assigned that does not fit is named so", call: postCall,
			script:   `module.exports = g => { g.res.output = {colour: 1} }`,
			wantKind: engine.BadResult, wantErr: `g.res.output: `},
		{name: "post: changing g.res.output in place goes on with it", call: postCall,
			script:   `module.exports = g => { g.res.output.eventId += "!" }`,
			wantJSON: `{"eventId":"e1!"}`},
		{name: "post: returning the output ends the chain with it", call: postCall,
			script:     `module.exports = g => { g.res.output.eventId = "last"; return g.res.output }`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"last"}`},
		{name: "a thrown error with an HTTP status ends the call with its code",
			script:     `module.exports = g => { throw Object.assign(new Error("no such user"), {status: 404}) }`,
			wantAction: engine.Reject, wantCode: codes.NotFound, wantMsg: "no such user"},
		{name: "a thrown error with a code name ends the call with it",
			script:     `module.exports = g => { const e = new Error("later"); e.code = "UNAVAILABLE"; throw e }`,
			wantAction: engine.Reject, wantCode: codes.Unavailable, wantMsg: "later"},
		{name: "a thrown error without a status is UNKNOWN",
			script:   `module.exports = g => { throw new Error("boom") }`,
			wantKind: engine.Thrown, wantErr: "boom"},
		{name: "g lists its properties, and not ctx's",
			script:     `module.exports = g => ({eventId: Object.keys(g).join() + ";" + Object.keys(g.req).join() + ";" + typeof ctx})`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"req,res,log,params,method,phase,hook,call;body,headers;undefined"}`},
		{name: "error: returning a value answers in the error's place", call: errorCall,
			script:     `module.exports = g => ({eventId: g.error.code})`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"NOT_FOUND"}`},
		{name: "error: returning nothing keeps the error", call: errorCall,
			script:     `module.exports = g => {}`,
			wantAction: engine.Continue},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := tt.call
			if mk == nil {
				mk = preCall
			}
			call := mk(t)
			out, err := e.Run(context.Background(), compileStyle(t, tt.script, engine.APIMaker), call)
			if tt.wantKind != 0 {
				ee, ok := err.(*engine.Error)
				if !ok || ee.Kind != tt.wantKind || !strings.Contains(ee.Message, tt.wantErr) {
					t.Fatalf("Run() = %+v, %v; want a failure of kind %v containing %q", out, err, tt.wantKind, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.Action != tt.wantAction {
				t.Fatalf("action = %d; want %d (outcome %+v)", out.Action, tt.wantAction, out)
			}
			if tt.wantAction == engine.Reject {
				if out.Status.Code() != tt.wantCode || out.Status.Message() != tt.wantMsg {
					t.Fatalf("status = %v %q; want %v %q", out.Status.Code(), out.Status.Message(), tt.wantCode, tt.wantMsg)
				}
				return
			}
			if tt.wantJSON == "" {
				return
			}
			var msg proto.Message = out.Message
			if msg == nil {
				msg = call.Request
				if call.Phase == engine.Post {
					msg = call.Response
				}
			}
			if got := js(t, msg); got != tt.wantJSON {
				t.Fatalf("message = %s; want %s", got, tt.wantJSON)
			}
		})
	}
}

// TestGInTheCtxStyle: a ctx-style hook reads g as main's second argument,
// or as ctx.g, and its result keeps the ctx style's meaning.
func TestGInTheCtxStyle(t *testing.T) {
	e := newEngine(t)
	for _, script := range []string{
		`module.exports = (ctx, g) => { if (g.req.body !== ctx.request || g !== ctx.g) throw new Error("not the same"); g.req.body.eventType = g.req.headers["x-user"][0]; return {status: 200} }`,
		`if (ctx.g.req.body !== ctx.request || Object.keys(ctx).includes("g")) throw new Error("not an alias"); ctx.g.req.body.eventType = ctx.g.req.headers["x-user"][0]; undefined`,
	} {
		call := preCall(t)
		out, err := e.Run(context.Background(), compile(t, script), call)
		if err != nil {
			t.Fatalf("Run(%s): %v", script, err)
		}
		if out.Action != engine.Continue || js(t, out.Message) != `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"u1","toUserId":"alice"}` {
			t.Fatalf("Run(%s) = %+v; want to go on with eventType u1", script, out)
		}
	}
}

func TestWithStyleRefuses(t *testing.T) {
	tests := []struct {
		name, script string
		style        engine.Style
		wantErr      string
	}{
		{name: "a body script in the apimaker style", script: `g.res.output = 1`, style: engine.APIMaker,
			wantErr: `style "apimaker": the script must export its function`},
		{name: "an unknown style", script: `module.exports = g => {}`, style: "express",
			wantErr: `style "express" is not "apimaker"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(t, tt.script).WithStyle(tt.style)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WithStyle() error = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestScriptGettersCannotCrashTheRun: a retval or a function length that
// is a getter runs as the script's code: what it throws is the hook's
// error, and an endless one times out.
func TestScriptGettersCannotCrashTheRun(t *testing.T) {
	e := newEngine(t)
	for _, tt := range []struct {
		script string
		kind   engine.Kind
	}{
		{`Object.defineProperty(globalThis, "retval", {get() { throw new Error("getter") }}); 1`, engine.Thrown},
		{`Object.defineProperty(globalThis, "retval", {get() { for (;;) {} }}); 1`, engine.Timeout},
		{`const f = () => {}; Object.defineProperty(f, "length", {get() { throw new Error("getter") }}); module.exports = f`, engine.Thrown},
	} {
		call := preCall(t)
		call.Timeout = 50 * time.Millisecond
		_, err := e.Run(context.Background(), compile(t, tt.script), call)
		ee, ok := err.(*engine.Error)
		if !ok || ee.Kind != tt.kind {
			t.Fatalf("Run(%s) error = %v; want a failure of kind %v", tt.script, err, tt.kind)
		}
	}
}
