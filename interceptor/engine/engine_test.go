package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// leakWait bounds how long TestMain waits for abandoned runs to end.
const leakWait = 15 * time.Second

// TestMain checks that no run leaves a goroutine behind. A run abandoned at
// its timeout inside a backtracking match goes on until the match timeout,
// so the check waits for it; regexp2 keeps a clock goroutine of its own for
// about a second after a timed match.
func TestMain(m *testing.M) {
	engine.BoundRegexpMatches()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakWait)
		for {
			err := goleak.Find(goleak.IgnoreAnyFunction("github.com/dlclark/regexp2/v2.runClock"))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
				code = 1
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Exit(code)
}

func request(t testing.TB) *eventsv1.SendEventRequest {
	t.Helper()
	data, err := structpb.NewStruct(map[string]any{"score": 10, "tags": []any{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	return &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login", EventData: data}
}

// newEngine returns an engine that discards what scripts log, unless opts
// say otherwise, and closes it when the test ends.
func newEngine(t testing.TB, opts ...engine.Option) *engine.Engine {
	e := engine.New(append([]engine.Option{engine.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	t.Cleanup(e.Close)
	return e
}

func compile(t testing.TB, src string) *engine.Script {
	t.Helper()
	s, err := engine.Compile("test", src)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

// js renders a message as protojson text, compactly, for comparisons.
func js(t testing.TB, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	json.Unmarshal(b, &v)
	out, _ := json.Marshal(v)
	return string(out)
}

func preCall(t testing.TB) *engine.Call {
	return &engine.Call{
		Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Hook: "h",
		Params:       map[string]any{"blocked": "mallory", "extradata": map[string]any{"source": "hook"}},
		Metadata:     map[string][]string{"x-user": {"u1", "u2"}},
		Request:      request(t),
		ResponseType: (&eventsv1.SendEventResponse{}).ProtoReflect().Type(),
	}
}

func postCall(t testing.TB) *engine.Call {
	c := preCall(t)
	c.Phase = engine.Post
	c.Response = &eventsv1.SendEventResponse{EventId: "e1"}
	c.ResponseType = nil
	return c
}

// TestScriptContract is the script contract, case by case.
func TestScriptContract(t *testing.T) {
	tests := []struct {
		name   string
		script string
		call   func(testing.TB) *engine.Call
		// want: the outcome's action, and for Reject the code and message,
		// for Continue and Respond the message as protojson.
		wantAction  engine.Action
		wantCode    codes.Code
		wantMessage string
		wantJSON    string
		// wantKind: the run fails with this kind, its message containing wantErr.
		wantKind engine.Kind
		wantErr  string
	}{
		{name: "module returning nothing goes on with the request unchanged",
			script:   `module.exports = function main(ctx) {}`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "body returning nothing goes on",
			script:   `var x = 1; undefined`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "in-place changes to the request apply, nested arrays included",
			script: `module.exports = function (ctx) {
				ctx.request.eventType = "signup"; ctx.request.eventData.tags.push("c"); ctx.request.eventData.tags.splice(0, 1);
				delete ctx.request.eventData.score; ctx.request.eventData.extra = {n: null}; }`,
			wantJSON: `{"eventData":{"extra":{"n":null},"tags":["b","c"]},"eventType":"signup","toUserId":"alice"}`},
		{name: "async module",
			script:   `module.exports = async function (ctx) { await null; ctx.request.eventType = "async"; }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"async","toUserId":"alice"}`},
		{name: "exports property assignment is a module too",
			script:   `function main(ctx) { ctx.request.toUserId = "bob" }; module.exports = main`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"bob"}`},
		{name: "ctx shows method, phase, hook, params and metadata",
			script: `module.exports = function (ctx) {
				ctx.request.eventType = [ctx.method, ctx.phase, ctx.hook, ctx.params.blocked, ctx.metadata["x-user"].join("+"), Object.keys(ctx.metadata).join()].join(" "); }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"/events.v1.EventService/SendEvent pre h mallory u1+u2 x-user","toUserId":"alice"}`},
		{name: "metadata writes are ignored",
			script: `module.exports = function (ctx) {
				ctx.metadata["x-user"][0] = "root"; ctx.metadata["x-admin"] = ["yes"]; delete ctx.metadata["x-user"];
				ctx.request.eventType = ctx.metadata["x-user"].join() + " " + ctx.metadata["x-admin"]; }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"u1,u2 undefined","toUserId":"alice"}`},
		{name: "metadata cannot grow",
			script:   `module.exports = function (ctx) { ctx.metadata["x-user"].push("p") }`,
			wantKind: engine.Thrown, wantErr: "returned false"},
		{name: "strict-mode writes to metadata throw",
			script:   `module.exports = function (ctx) { "use strict"; ctx.metadata["x-admin"] = ["yes"] }`,
			wantKind: engine.Thrown, wantErr: "returned false"},
		{name: "assigning ctx.request replaces the request",
			script:   `module.exports = function (ctx) { ctx.request = {toUserId: "zed"} }`,
			wantJSON: `{"toUserId":"zed"}`},
		{name: "deleting ctx.request does not fit the message",
			script:   `module.exports = function (ctx) { delete ctx.request }`,
			wantKind: engine.BadResult, wantErr: "ctx.request: want a events.v1.SendEventRequest object, got undefined"},
		{name: "data.message is ctx.request",
			script: `data.message.eventType = "via-data"; ctx.request.toUserId = "via-ctx";
				data.message === ctx.request && data.parms === ctx.params ? undefined : {status: 500, message: "not the same object"}`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"via-data","toUserId":"via-ctx"}`},
		{name: "ctx lists its properties and keeps the script's own",
			script:   `module.exports = function (ctx) { ctx.mine = 1; ctx.request.eventType = Object.keys(ctx).join() + " " + ctx.mine + " " + ("log" in ctx) }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"method,phase,hook,params,metadata,request,response,log,call,mine 1 true","toUserId":"alice"}`},
		{name: "objects assigned into the request stay live, as on any object",
			script: `module.exports = function (ctx) {
				const extra = {}; ctx.request.eventData.extra = extra; extra.n = 1;
				(ctx.request.eventData.more ??= []).push("x"); }`,
			wantJSON: `{"eventData":{"extra":{"n":1},"more":["x"],"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "a bad value overwritten before the end is no error",
			script:   `module.exports = function (ctx) { ctx.request.toUserId = 5; ctx.request.toUserId = "ok" }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"ok"}`},
		{name: "messageOverride replaces the request",
			script:   `module.exports = function () { return {messageOverride: {toUserId: "carol", eventType: "x"}} }`,
			wantJSON: `{"eventType":"x","toUserId":"carol"}`},
		{name: "messageOverride with status 200 goes on",
			script:   `module.exports = function () { return {status: 200, messageOverride: {toUserId: "carol"}} }`,
			wantJSON: `{"toUserId":"carol"}`},
		{name: "status OK by name goes on", script: `module.exports = () => ({status: "ok"})`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "status 0 goes on", script: `({status: 0})`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},
		{name: "HTTP 403 rejects with PERMISSION_DENIED", script: `({status: 403, message: "no"})`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied, wantMessage: "no"},
		{name: "a code name in any case rejects", script: `({status: "permission_Denied", message: "no"})`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied, wantMessage: "no"},
		{name: "a gRPC code number rejects", script: `({status: 5, message: "gone"})`,
			wantAction: engine.Reject, wantCode: codes.NotFound, wantMessage: "gone"},
		{name: "a rejection without a message names the hook", script: `({status: 429})`,
			wantAction: engine.Reject, wantCode: codes.ResourceExhausted, wantMessage: "rejected by hook h"},
		{name: "a rejection wins over an override", script: `({status: 401, message: "who", messageOverride: {}})`,
			wantAction: engine.Reject, wantCode: codes.Unauthenticated, wantMessage: "who"},
		{name: "response answers in the handler's place",
			script:     `module.exports = () => ({response: {eventId: "cached"}})`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"cached"}`},
		{name: "a thrown error ends the call with UNKNOWN and its message",
			script:   `module.exports = () => { throw new Error("boom") }`,
			wantKind: engine.Thrown, wantErr: "boom"},
		{name: "a thrown error with a code is a rejection",
			script:     `module.exports = () => { throw Object.assign(new Error("not yours"), {code: "PERMISSION_DENIED"}) }`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied, wantMessage: "not yours"},
		{name: "a thrown object with an HTTP code is a rejection",
			script:     `throw {code: 404, message: "no such user"}`,
			wantAction: engine.Reject, wantCode: codes.NotFound, wantMessage: "no such user"},
		{name: "a thrown string", script: `throw "plain"`, wantKind: engine.Thrown, wantErr: "plain"},
		{name: "a rejected promise is a thrown error",
			script:   `module.exports = async () => { throw new TypeError("bad") }`,
			wantKind: engine.Thrown, wantErr: "bad"},
		{name: "a promise that never settles is an error",
			script:   `module.exports = async () => { await new Promise(() => {}) }`,
			wantKind: engine.BadResult, wantErr: "never settled"},
		{name: "endless recursion is a RangeError",
			script:   `function f() { return f() + 1 }; module.exports = f`,
			wantKind: engine.Thrown, wantErr: "RangeError"},
		{name: "an override that does not fit names the field",
			script:   `({messageOverride: {toUserId: 5}})`,
			wantKind: engine.BadResult, wantErr: `result.messageOverride: field "toUserId"`},
		{name: "an unknown override field is named",
			script:   `({messageOverride: {toUser: "x"}})`,
			wantKind: engine.BadResult, wantErr: `toUser`},
		{name: "a request changed in place so it no longer fits names the field",
			script:   `module.exports = (ctx) => { ctx.request.eventData = "text" }`,
			wantKind: engine.BadResult, wantErr: `ctx.request: field "eventData"`},
		{name: "a response that does not fit names the field",
			script:   `({response: {eventId: {}}})`,
			wantKind: engine.BadResult, wantErr: `result.response: field "eventId"`},
		{name: "an unknown result field is rejected",
			script:   `({messageOveride: {}})`,
			wantKind: engine.BadResult, wantErr: `result: unknown field "messageOveride"`},
		{name: "an unknown status is rejected",
			script:   `({status: "NOPE"})`,
			wantKind: engine.BadResult, wantErr: `result.status`},
		{name: "a result that is not an object is rejected",
			script:   `module.exports = () => 42`,
			wantKind: engine.BadResult, wantErr: "result: want an object"},
		{name: "a Map is not a result object, though it holds a status",
			script:   `module.exports = () => new Map([["status", 403]])`,
			wantKind: engine.BadResult, wantErr: "result: want an object with status, message, messageOverride, response, or nothing; got a Map"},
		{name: "nor is a generator object, though the generator returns a rejection",
			script:   `module.exports = function* () { return {status: 403} }`,
			wantKind: engine.BadResult, wantErr: "got a generator object (the script's function is a generator, function*: make it a plain function)"},
		{name: "nor is a Proxy",
			script:   `module.exports = () => new Proxy({}, {get: () => 403})`,
			wantKind: engine.BadResult, wantErr: "got a Proxy"},
		{name: "a bad result says what it got, in a script's terms: an array",
			script:   `module.exports = () => []`,
			wantKind: engine.BadResult, wantErr: "got an array"},
		{name: "a Date",
			script:   `module.exports = () => new Date()`,
			wantKind: engine.BadResult, wantErr: "got a Date"},
		{name: "a string",
			script:   `module.exports = () => "403"`,
			wantKind: engine.BadResult, wantErr: `got the string "403"`},
		{name: "the request itself",
			script:   `module.exports = (ctx) => ctx.request`,
			wantKind: engine.BadResult, wantErr: "got a message (such as ctx.request) or another object that is not plain"},
		{name: "a number that is no gRPC code",
			script:   `({status: 17})`,
			wantKind: engine.BadResult, wantErr: "result.status: the number 17 is not a gRPC code name, a gRPC code (0 to 16) or an HTTP status (100 to 599)"},
		{name: "a message that would encode to more than the memory budget is refused, though it allocates little",
			script: `module.exports = (ctx) => {
  const s = "z".repeat(1 << 20), fields = {};
  for (let i = 0; i < 100; i++) fields["k" + i] = s;
  return {messageOverride: {toUserId: "a", eventType: "b", eventData: fields}};
}`,
			wantKind: engine.Exhausted, wantErr: "RangeError: hook memory budget of 64 MiB exceeded: the events.v1.SendEventRequest it gave would encode to 100 MiB"},
		{name: "so is one changed in place",
			script: `module.exports = (ctx) => {
  const s = "z".repeat(1 << 20), fields = {};
  for (let i = 0; i < 100; i++) fields["k" + i] = s;
  ctx.request.eventData = fields;
}`,
			wantKind: engine.Exhausted, wantErr: "would encode to 100 MiB"},
		{name: "a class's instance is a result object",
			script:     `class Deny { constructor() { this.status = 403; this.message = "no" } }; module.exports = () => new Deny()`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied, wantMessage: "no"},
		{name: "messageOverride and response together are rejected",
			script:   `({messageOverride: {}, response: {}})`,
			wantKind: engine.BadResult, wantErr: "exclusive"},
		{name: "a rejection wins over a messageOverride that fits",
			script:     `({status: 403, message: "no", messageOverride: {toUserId: "bob"}})`,
			wantAction: engine.Reject, wantCode: codes.PermissionDenied, wantMessage: "no"},
		{name: "a rejection with a messageOverride that does not fit is a bad result",
			script:   `({status: 403, messageOverride: {foo: 1}})`,
			wantKind: engine.BadResult, wantErr: `result.messageOverride: `},
		{name: "so is one with a response that does not fit",
			script:   `({status: 403, response: {nope: 1}})`,
			wantKind: engine.BadResult, wantErr: `result.response: `},
		{name: "and one with both",
			script:   `({status: 403, messageOverride: {}, response: {}})`,
			wantKind: engine.BadResult, wantErr: "exclusive"},
		{name: "a thrown error whose code is no gRPC code is a bad result, not an error to skip",
			script:   `module.exports = () => { throw Object.assign(new Error("typo"), {code: "PERMISION_DENIED"}) }`,
			wantKind: engine.BadResult, wantErr: `thrown error's code: the string "PERMISION_DENIED" is not a gRPC code name`},
		{name: "so is one whose status is OK",
			script:   `module.exports = () => { throw Object.assign(new Error("ok?"), {status: 200}) }`,
			wantKind: engine.BadResult, wantErr: `thrown error's status: the number 200 is OK; a thrown error's is an error code`},
		{name: "a rejection's message must be a string",
			script:   `({status: 403, message: {a: 1}})`,
			wantKind: engine.BadResult, wantErr: "result.message: want a string, got "},
		{name: "module.exports must be a function",
			script:   `module.exports = {main: 1}`,
			wantKind: engine.BadResult, wantErr: "module.exports is not a function"},
		{name: "scripts have no file, network, process or timer access",
			script: `module.exports = () => {
				const seen = ["require", "process", "setTimeout", "setInterval", "fetch", "XMLHttpRequest", "load", "readFile"].filter(n => typeof globalThis[n] !== "undefined");
				if (seen.length) return {status: 500, message: seen.join()}; }`,
			wantJSON: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`},

		{name: "post: in-place change to the response", call: postCall,
			script:   `module.exports = (ctx) => { ctx.response.eventId = "x-" + ctx.response.eventId + "-" + ctx.request.toUserId }`,
			wantJSON: `{"eventId":"x-e1-alice"}`},
		{name: "post: messageOverride replaces the response", call: postCall,
			script: `({messageOverride: {eventId: "over"}})`, wantJSON: `{"eventId":"over"}`},
		{name: "post: response ends the chain with it", call: postCall,
			script: `({response: {eventId: "final"}})`, wantAction: engine.Respond, wantJSON: `{"eventId":"final"}`},
		{name: "post: a rejection", call: postCall,
			script: `({status: 503, message: "later"})`, wantAction: engine.Reject, wantCode: codes.Unavailable, wantMessage: "later"},
		{name: "post: a request override fitting only the request type is refused", call: postCall,
			script: `({messageOverride: {toUserId: "x"}})`, wantKind: engine.BadResult, wantErr: `toUserId`},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := tt.call
			if mk == nil {
				mk = preCall
			}
			call := mk(t)
			before := js(t, call.Request)
			out, err := e.Run(context.Background(), compile(t, tt.script), call)
			if after := js(t, call.Request); after != before {
				t.Fatalf("the caller's request changed: %s; want it untouched (%s)", after, before)
			}
			if tt.wantKind != 0 {
				ee, ok := err.(*engine.Error)
				if !ok || ee.Kind != tt.wantKind || !strings.Contains(ee.Message, tt.wantErr) {
					t.Fatalf("Run() = %+v, %v; want a failure of kind %d containing %q", out, err, tt.wantKind, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run() error = %v", err)
			}
			if out.Action != tt.wantAction {
				t.Fatalf("action = %d; want %d (outcome %+v)", out.Action, tt.wantAction, out)
			}
			if tt.wantAction == engine.Reject {
				if out.Status.Code() != tt.wantCode || out.Status.Message() != tt.wantMessage {
					t.Fatalf("status = %v %q; want %v %q", out.Status.Code(), out.Status.Message(), tt.wantCode, tt.wantMessage)
				}
				return
			}
			msg := out.Message
			if msg == nil { // unchanged
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

func TestSeedScriptRunsUnchanged(t *testing.T) {
	src, err := os.ReadFile("../../scripts/addvalue.js")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	e := newEngine(t, engine.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	out, err := e.Run(context.Background(), compile(t, string(src)), preCall(t))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := `{"eventData":{"score":10,"source":"hook","tags":["a","b"]},"eventType":"login","toUserId":"alice"}`
	if got := js(t, out.Message); out.Action != engine.Continue || got != want {
		t.Fatalf("outcome = %d %s; want continue with %s", out.Action, got, want)
	}
	if !strings.Contains(logs.String(), `"msg":"running from prehook_sendevent_addvalue hookparms: "`) ||
		!strings.Contains(logs.String(), `"value":{"blocked":"mallory","extradata":{"source":"hook"}}`) {
		t.Fatalf("logs = %s; want bridge.logInfoJson lines with the params as JSON", logs.String())
	}
}

func TestLogsCarryMethodAndHook(t *testing.T) {
	var logs bytes.Buffer
	e := newEngine(t, engine.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	call := preCall(t)
	call.ID = "events.v1.EventService/SendEvent/pre/h"
	_, err := e.Run(context.Background(), compile(t, `module.exports = (ctx) => { ctx.log.warn("careful", {n: 1}); ctx.log.error("bad") }`), call)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines; want 2: %s", len(lines), logs.String())
	}
	for _, want := range []string{`"level":"WARN","msg":"careful","method":"/events.v1.EventService/SendEvent","hook":"events.v1.EventService/SendEvent/pre/h","origin":"script","value":{"n":1}`} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("log line = %s; want it to contain %s", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], `"level":"ERROR","msg":"bad"`) {
		t.Fatalf("log line = %s; want an error line", lines[1])
	}
}

func TestTimeouts(t *testing.T) {
	// The regular expression's run goes on after its timeout and keeps its
	// slot: leave room for the runs after it.
	e := newEngine(t, engine.WithMaxRuns(8))
	tests := []struct {
		name   string
		script string
	}{
		{name: "an endless loop", script: `module.exports = () => { for (;;) {} }`},
		{name: "an endless loop in the body", script: `while (true) {}`},
		// A backtracking match runs in native code that interrupts do not
		// reach; the run still ends at the timeout (the match goes on in
		// the background until the regexp timeout stops it).
		{name: "a catastrophic regular expression", script: `/^(?=a)(a+)+b$/.test("a".repeat(40) + "c")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := preCall(t)
			call.Timeout = 30 * time.Millisecond
			_, err := e.Run(context.Background(), compile(t, tt.script), call)
			ee, ok := err.(*engine.Error)
			if !ok || ee.Kind != engine.Timeout || ee.Message != "timed out after 30ms of CPU time" {
				t.Fatalf("Run() error = %v; want a timeout after 30ms", err)
			}
			if ee.Kind.Code() != codes.DeadlineExceeded {
				t.Fatalf("code = %v; want DeadlineExceeded", ee.Kind.Code())
			}
		})
	}
	// The engine is still fine afterwards.
	out, err := e.Run(context.Background(), compile(t, `({status: 403})`), preCall(t))
	if err != nil || out.Action != engine.Reject {
		t.Fatalf("after timeouts: Run() = %+v, %v; want a rejection", out, err)
	}
}

func TestCanceledContextStopsTheRun(t *testing.T) {
	e := newEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	call := preCall(t)
	call.Timeout = time.Minute
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err := e.Run(ctx, compile(t, `for (;;) {}`), call)
	ee, ok := err.(*engine.Error)
	if !ok || ee.Kind != engine.Canceled || ee.Err != context.Canceled {
		t.Fatalf("Run() error = %v; want Canceled", err)
	}
}

func TestGlobalsDoNotLeakBetweenCalls(t *testing.T) {
	e := newEngine(t)
	s := compile(t, `
		if (typeof counter !== "undefined") throw new Error("saw a global of another call: " + counter);
		counter = ctx.request.toUserId;
		Object.prototype.polluted = true;
		Array.prototype.push = function () { throw new Error("patched") };
		if (({}).polluted !== true) throw new Error("own prototype change not visible");
		undefined`)
	probe := compile(t, `module.exports = (ctx) => { if (({}).polluted) throw new Error("polluted prototype"); ctx.request.eventData.tags.push("ok") }`)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call := preCall(t)
			call.Request.(*eventsv1.SendEventRequest).ToUserId = fmt.Sprint("user", i)
			if _, err := e.Run(context.Background(), s, call); err != nil {
				errs <- err
			}
			if _, err := e.Run(context.Background(), probe, preCall(t)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Run: %v", err)
	}
}

func TestParseCode(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		status string
		want   codes.Code
	}{
		{`"PERMISSION_DENIED"`, codes.PermissionDenied}, {`"unauthenticated"`, codes.Unauthenticated},
		{`"Cancelled"`, codes.Canceled}, {`3`, codes.InvalidArgument}, {`16`, codes.Unauthenticated},
		{`400`, codes.InvalidArgument}, {`401`, codes.Unauthenticated}, {`403`, codes.PermissionDenied},
		{`404`, codes.NotFound}, {`409`, codes.Aborted}, {`429`, codes.ResourceExhausted},
		{`499`, codes.Canceled}, {`500`, codes.Internal}, {`501`, codes.Unimplemented},
		{`503`, codes.Unavailable}, {`504`, codes.DeadlineExceeded},
		{`418`, codes.InvalidArgument}, {`502`, codes.Internal}, {`302`, codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			out, err := e.Run(context.Background(), compile(t, `({status: `+tt.status+`, message: "m"})`), preCall(t))
			if err != nil {
				t.Fatal(err)
			}
			if out.Action != engine.Reject || out.Status.Code() != tt.want {
				t.Fatalf("status %s: action %d code %v; want reject with %v", tt.status, out.Action, out.Status.Code(), tt.want)
			}
		})
	}
	for _, bad := range []string{`17`, `99`, `600`, `1.5`, `-1`, `"NOPE"`, `true`} {
		_, err := e.Run(context.Background(), compile(t, `({status: `+bad+`})`), preCall(t))
		if ee, ok := err.(*engine.Error); !ok || ee.Kind != engine.BadResult {
			t.Errorf("status %s: error = %v; want BadResult", bad, err)
		}
	}
	for _, ok := range []string{`0`, `200`, `204`, `"OK"`} {
		out, err := e.Run(context.Background(), compile(t, `({status: `+ok+`})`), preCall(t))
		if err != nil || out.Action != engine.Continue {
			t.Errorf("status %s: %+v %v; want continue", ok, out, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := engine.Compile("events.v1.EventService/SendEvent/pre/x", "function (")
	if err == nil || !strings.Contains(err.Error(), "compile: events.v1.EventService/SendEvent/pre/x: Line 1:10") {
		t.Fatalf("Compile error = %v; want one naming the script and the line", err)
	}
}

func TestRequestWithAJSONFormThatIsNotAnObject(t *testing.T) {
	e := newEngine(t)
	call := &engine.Call{Method: "/x.v1.Clock/Set", Phase: engine.Pre, Hook: "h",
		Request: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	s := compile(t, `module.exports = function (ctx) {
		if (ctx.request !== "2026-01-02T03:04:05Z") throw new Error("got " + ctx.request);
		ctx.request = "2030-01-01T00:00:00Z" }`)
	out, err := e.Run(context.Background(), s, call)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Message.(*timestamppb.Timestamp).AsTime(); !got.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("request = %v; want 2030-01-01", got)
	}
}

func TestModuleTopLevelErrorsReachEveryCall(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name, script string
		wantKind     engine.Kind
		wantErr      string
	}{
		{"a throw", `throw new Error("top"); module.exports = () => {}`, engine.Thrown, "top"},
		{"an endless loop", `for (;;) {} module.exports = () => {}`, engine.Timeout, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.script)
			for range 3 {
				call := preCall(t)
				call.Timeout = 20 * time.Millisecond
				_, err := e.Run(context.Background(), s, call)
				if ee, ok := err.(*engine.Error); !ok || ee.Kind != tt.wantKind || !strings.Contains(ee.Message, tt.wantErr) {
					t.Fatalf("Run() error = %v; want kind %v containing %q", err, tt.wantKind, tt.wantErr)
				}
			}
		})
	}
}

// TestModuleForms is what the function a module exports sees of the
// module around it, whatever the form of the module.
func TestModuleForms(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name, script string
		// wantType is ctx.request.eventType after the run; or the run
		// fails with a thrown error whose message contains wantErr.
		wantType, wantErr string
	}{
		{name: "a function",
			script: `module.exports = function (ctx) { ctx.request.eventType = "fn" }`, wantType: "fn"},
		{name: "an arrow function",
			script: `module.exports = (ctx) => { ctx.request.eventType = "arrow" }`, wantType: "arrow"},
		{name: "sloppy mode lets a function assign an undeclared name",
			script: `module.exports = function (ctx) { undeclared = "sloppy"; ctx.request.eventType = undeclared }`, wantType: "sloppy"},
		{name: "use strict before the export makes the function strict",
			script: `"use strict"; module.exports = function (ctx) { undeclared = 1 }`, wantErr: "undeclared is not defined"},
		{name: "the function reads module",
			script: `module.exports = function (ctx) { ctx.request.eventType = typeof module.exports }`, wantType: "function"},
		{name: "the function reads exports",
			script: `module.exports = function (ctx) { ctx.request.eventType = typeof exports }`, wantType: "object"},
		{name: "eval in the function sees module",
			script: `module.exports = function (ctx) { ctx.request.eventType = eval("typeof module") }`, wantType: "object"},
		{name: "a Unicode escape may spell module",
			script: `module.exports = function (ctx) { ctx.request.eventType = typeof \u006dodule }`, wantType: "object"},
		{name: "a direct eval spelled with an escape sees module",
			script: `module.exports = function (ctx) { ctx.request.eventType = ev\u0061l("typeof mod" + "ule") }`, wantType: "object"},
		{name: "an arrow function may read new.target",
			script: `module.exports = (ctx) => { ctx.request.eventType = String(new.target) }`, wantType: "undefined"},
		{name: "a hashbang line before the export",
			script: "#!/usr/bin/env node\nmodule.exports = function (ctx) { ctx.request.eventType = \"bang\" }", wantType: "bang"},
		{name: "a hashbang line before top-level code",
			script: "#!/usr/bin/env node\nconst t = \"bang\"\nmodule.exports = function (ctx) { ctx.request.eventType = t }", wantType: "bang"},
		{name: "a strict module's arrow function has no this",
			script: `"use strict"; module.exports = (ctx) => { ctx.request.eventType = String(this) }`, wantType: "undefined"},
		{name: "a top-level declaration is the module's, not a global",
			script:   `const tag = "local"; module.exports = function (ctx) { ctx.request.eventType = tag + " " + typeof globalThis.tag }`,
			wantType: "local undefined"},
		{name: "exports.main is the hook, as export function main is",
			script: `exports.main = function (ctx) { ctx.request.eventType = "main" }`, wantType: "main"},
		{name: "exports.default is the hook, as export default is",
			script: `exports.default = (ctx) => { ctx.request.eventType = "default" }`, wantType: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := preCall(t)
			out, err := e.Run(context.Background(), compile(t, tt.script), call)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run() = %+v, %v; want an error containing %q", out, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run() error = %v", err)
			}
			msg := call.Request
			if out.Message != nil {
				msg = out.Message
			}
			if got := msg.(*eventsv1.SendEventRequest).GetEventType(); got != tt.wantType {
				t.Fatalf("eventType = %q; want %q", got, tt.wantType)
			}
		})
	}
}

// TestStackTracesPointAtTheSource: the line and column of an error's
// stack frame are those of the hook's own source.
func TestStackTracesPointAtTheSource(t *testing.T) {
	e := newEngine(t)
	for _, src := range []string{
		`module.exports = function (ctx) { ctx.request.eventType = new Error("here").stack }`,
		"module.exports = function (ctx) {\n  ctx.request.eventType = new Error(\"here\").stack\n}",
		"const where = \"here\"\nmodule.exports = function (ctx) { ctx.request.eventType = new Error(where).stack }",
		`ctx.request.eventType = new Error("here").stack; undefined`,
	} {
		at := strings.Index(src, "new Error")
		line := strings.Count(src[:at], "\n") + 1
		col := at - strings.LastIndex(src[:at], "\n")
		want := fmt.Sprintf("at test:%d:%d(", line, col)
		call := preCall(t)
		call.InPlace = true
		if _, err := e.Run(context.Background(), compile(t, src), call); err != nil {
			t.Fatal(err)
		}
		if got := call.Request.(*eventsv1.SendEventRequest).GetEventType(); !strings.Contains(got, want) {
			t.Errorf("script %q: stack = %q; want it to contain %q", src, got, want)
		}
	}
}

func TestCodeByName(t *testing.T) {
	tests := []struct {
		name   string
		want   codes.Code
		wantOK bool
	}{
		{"PERMISSION_DENIED", codes.PermissionDenied, true},
		{"permission_denied", codes.PermissionDenied, true},
		{" Cancelled ", codes.Canceled, true},
		{"OK", codes.OK, true},
		{"UNAUTHENTICATED", codes.Unauthenticated, true},
		{"PermissionDenied", 0, false},
		{"CANCELED", 0, false},
		{"7", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		if c, ok := engine.CodeByName(tt.name); c != tt.want || ok != tt.wantOK {
			t.Errorf("CodeByName(%q) = %v, %v; want %v, %v", tt.name, c, ok, tt.want, tt.wantOK)
		}
	}
}

// TestLongStatusMessagesAreCut: a rejection's or a thrown error's message
// longer than MaxStatusMessage is cut, saying how long it was: in a
// header, a message larger than the client takes would end its whole
// connection.
func TestLongStatusMessagesAreCut(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		name, script string
		want         codes.Code
	}{
		{"a rejection", `module.exports = () => ({status: 400, message: "é".repeat(30000)})`, codes.InvalidArgument},
		{"a thrown error", `module.exports = () => { throw new Error("é".repeat(30000)) }`, codes.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.Run(context.Background(), compile(t, tc.script), preCall(t))
			var st *status.Status
			switch {
			case err != nil:
				var ee *engine.Error
				if !errors.As(err, &ee) {
					t.Fatal(err)
				}
				st = ee.Status("x")
			default:
				st = out.Status
			}
			msg := st.Message()
			if st.Code() != tc.want || len(msg) > engine.MaxStatusMessage || !utf8.ValidString(msg) ||
				!strings.HasPrefix(msg, "éé") || !strings.HasSuffix(msg, "… (cut: 60000 bytes in all)") {
				t.Fatalf("status %v, message of %d bytes ending %q; want %v, at most %d bytes, valid UTF-8, saying it was cut from 60000",
					st.Code(), len(msg), msg[max(0, len(msg)-40):], tc.want, engine.MaxStatusMessage)
			}
		})
	}
}

// TestARunLogsABoundedAmount: a line's message and value are cut at
// MaxLogLine, and past MaxRunLog bytes a run's further lines are dropped,
// saying so once: a script cannot fill the daemon's log faster than its
// time limit lets it.
func TestARunLogsABoundedAmount(t *testing.T) {
	var logs bytes.Buffer // the run's lines are written from its worker, which Run waits for
	e := newEngine(t, engine.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	call := preCall(t)
	call.Timeout = 20 * time.Second // not about timeouts
	_, err := e.Run(context.Background(), compile(t, `module.exports = (ctx) => {
  const big = "y".repeat(1 << 20);
  ctx.log.info(big, {big});
  for (let i = 0; i < 2000; i++) console.log("line", i, big.slice(0, 1000));
}`), call)
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(out) > engine.MaxRunLog+engine.MaxLogLine+64<<10 {
		t.Errorf("the run logged %d bytes; want about %d at most", len(out), engine.MaxRunLog)
	}
	var first struct{ Msg, Value string }
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("first line is not JSON: %v", err)
	}
	if len(first.Msg) > engine.MaxLogLine || !strings.HasSuffix(first.Msg, "(cut: 1048576 bytes in all)") ||
		len(first.Value) > engine.MaxLogLine || !strings.Contains(first.Value, "(cut: ") {
		t.Errorf("first line: message of %d bytes, value of %d; want both cut at %d, saying so", len(first.Msg), len(first.Value), engine.MaxLogLine)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "its further lines are dropped") || strings.Count(out, "further lines are dropped") != 1 {
		t.Errorf("last line = %.200s; want, once, the notice that further lines are dropped", last)
	}
	// The notice is the daemon's, not the script's; the script's lines are.
	if last := lines[len(lines)-1]; strings.Contains(last, `"origin":"script"`) || !strings.Contains(lines[0], `"origin":"script"`) {
		t.Errorf("first line %.100s..., last %.300s; want origin script on the script's lines only", lines[0], last)
	}
}

// TestAMessageBuiltFromSharedValuesIsMeasured: values written many times
// over through one JavaScript reference (numbers and booleans too, which
// have no bytes of their own) count each time they are written, so a
// message that would encode past the run's budget is refused.
func TestAMessageBuiltFromSharedValuesIsMeasured(t *testing.T) {
	e := newEngine(t, engine.WithMemoryBudget(1<<20))
	for _, tc := range []struct{ name, script string }{
		{"given as an override", `module.exports = () => {
  const a = Array(1000).fill(1), b = Array(100).fill(a);
  return {messageOverride: {toUserId: "a", eventType: "b", eventData: {x: Array(3).fill(b)}}};
}`},
		{"changed in place", `module.exports = (ctx) => {
  const a = Array(1000).fill(true), b = Array(100).fill(a);
  ctx.request.eventData = {x: Array(3).fill(b)};
}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := preCall(t)
			call.Timeout = 20 * time.Second // not about timeouts
			_, err := e.Run(context.Background(), compile(t, tc.script), call)
			if !isExhausted(err) || !strings.Contains(err.Error(), "hook memory budget of 1 MiB exceeded: the events.v1.SendEventRequest it gave would encode to") {
				t.Fatalf("Run() = %v; want the message refused for its encoded size", err)
			}
		})
	}
}

func isExhausted(err error) bool {
	var ee *engine.Error
	return errors.As(err, &ee) && ee.Kind == engine.Exhausted
}

// TestAHookLogsAtABoundedRate: across its runs, a hook logs at most
// LogBurst at once and LogRate a second after that; the lines past it are
// dropped, and a warning says how many.
func TestAHookLogsAtABoundedRate(t *testing.T) {
	var logs bytes.Buffer
	e := newEngine(t, engine.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	s := compile(t, `module.exports = (ctx) => { const l = "y".repeat(10000); for (let i = 0; i < 20; i++) ctx.log.info(l) }`)
	start := time.Now()
	for range 25 { // 25 runs of 200 KB: five times the burst
		call := preCall(t)
		call.ID = "events.v1.EventService/SendEvent/pre/chatty"
		call.Timeout = 20 * time.Second // not about timeouts
		if _, err := e.Run(context.Background(), s, call); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	out := logs.String()
	logged := strings.Count(out, `"msg":"yyyy`) * 10000
	if most := engine.LogBurst + int(elapsed.Seconds()*engine.LogRate) + 10000; logged > most {
		t.Errorf("the hook logged %d bytes in %v; want at most %d", logged, elapsed, most)
	}
	if logged < engine.LogBurst-10000 {
		t.Errorf("the hook logged %d bytes; want its burst of %d first", logged, engine.LogBurst)
	}
	if !strings.Contains(out, "the hook logs more than 64 KiB a second") || !strings.Contains(out, "lines dropped") {
		t.Errorf("no warning that lines were dropped")
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "the hook logs more than 64 KiB a second") && strings.Contains(l, `"origin":"script"`) {
			t.Errorf("the daemon's warning carries origin script: %s", l)
		}
	}
}

// TestBinaryMetadataIsBase64: a script sees the values of binary metadata
// keys (-bin) base64-encoded, as on the wire, and text keys as they are.
func TestBinaryMetadataIsBase64(t *testing.T) {
	eng := newEngine(t, engine.WithTimeout(10*time.Second), engine.WithQueueWait(time.Minute)) // not about budgets
	call := preCall(t)
	call.Metadata = map[string][]string{"x-trace-bin": {"\xde\xad\x00\xbe\xef", ""}, "x-user": {"é"}}
	out, err := eng.Run(context.Background(), compile(t, `module.exports = function (ctx) {
		ctx.request.eventType = ctx.metadata["x-trace-bin"].join("|") + " " + ctx.metadata["x-user"][0] }`), call)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Message.(*eventsv1.SendEventRequest).GetEventType(); got != "3q0Avu8=| é" {
		t.Errorf("the script saw %q; want %q", got, "3q0Avu8=| é")
	}
}

// TestAFailedCallGivesTheScriptNoGoValue: ctx.call rejects with an Error
// made by the engine's own Error constructor, whatever the script put in
// the global Error, and never with a Go value it could reach into.
func TestAFailedCallGivesTheScriptNoGoValue(t *testing.T) {
	eng := newEngine(t, engine.WithTimeout(10*time.Second), engine.WithQueueWait(time.Minute)) // not about budgets
	for _, replace := range []string{"undefined", "function () { return {} }", "42"} {
		t.Run("Error = "+replace, func(t *testing.T) {
			src := `module.exports = async function (ctx) {
				const E = Error;
				globalThis.Error = ` + replace + `;
				try { await ctx.call("no.Such/Method", {}) } catch (e) {
					ctx.request.eventType = [typeof e.value, e instanceof E, e.code, Object.keys(e).join("+"), e.message.includes("ctx.call")].join(" ");
				}
			}`
			out, err := eng.Run(context.Background(), compile(t, src), preCall(t)) // no Caller: the call fails
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Message.(*eventsv1.SendEventRequest).GetEventType(); got != "undefined true UNIMPLEMENTED code true" {
				t.Errorf("the rejection: %q; want %q", got, "undefined true UNIMPLEMENTED code true")
			}
		})
	}
}

// TestTheEnginesFunctionsHaveTheirOwnNames: the functions the engine gives
// a script are named as the script knows them, not by their Go names
// (which would show the daemon's code paths).
func TestTheEnginesFunctionsHaveTheirOwnNames(t *testing.T) {
	eng := newEngine(t, engine.WithTimeout(10*time.Second), engine.WithQueueWait(time.Minute)) // not about budgets
	out, err := eng.Run(context.Background(), compile(t, `module.exports = function (ctx) {
		ctx.request.eventType = [ctx.call, ctx.log.info, ctx.log.error, console.log, console.warn].map(String).join(" | ") }`), preCall(t))
	if err != nil {
		t.Fatal(err)
	}
	const want = "function call() { [native code] } | function info() { [native code] } | function error() { [native code] } | " +
		"function log() { [native code] } | function warn() { [native code] }"
	if got := out.Message.(*eventsv1.SendEventRequest).GetEventType(); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
