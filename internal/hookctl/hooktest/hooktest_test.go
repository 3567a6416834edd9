package hooktest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hooktest"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// dynamicSource is the example service as a descriptor set, so runs use
// dynamic messages rather than generated ones.
func dynamicSource(t *testing.T) *schema.Source {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	var add func(f protoreflect.FileDescriptor)
	seen := map[string]bool{}
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := range f.Imports().Len() {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(eventsv1.File_events_v1_events_proto)
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := schema.FromDescriptorSet(p)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func compile(t *testing.T, phase engine.Phase, script, params string, onError registry.OnError) *registry.Hook {
	t.Helper()
	k := registry.Key{Service: "events.v1.EventService", Method: "SendEvent", Phase: phase, Name: "h"}
	d := &registry.Document{Script: script, OnError: onError}
	if params != "" {
		d.Params = json.RawMessage(params)
	}
	h, err := registry.Compile(k, d)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRunWithBuiltInAndDynamicTypes(t *testing.T) {
	sources := map[string]*schema.Source{"built-in": schema.Builtin(), "descriptor set": dynamicSource(t)}
	cases := []struct {
		name    string
		phase   engine.Phase
		script  string
		params  string
		onError registry.OnError
		md      map[string][]string
		req     string
		resp    string
		want    string // the Result as JSON, without logs
	}{
		{"a changed request", engine.Pre, `module.exports = (ctx) => { ctx.request.eventData = {n: ctx.params.n}; }`, `{"n":2}`, "", nil,
			`{"toUserId":"a"}`, "", `{"action":"continue","request":{"toUserId":"a","eventData":{"n":2}}}`},
		{"a rejection", engine.Pre, `({status: 429, message: "slow down"})`, "", "", nil,
			"", "", `{"action":"reject","status":{"code":"RESOURCE_EXHAUSTED","message":"slow down"}}`},
		{"an answer", engine.Pre, `module.exports = (ctx) => ({response: {eventId: ctx.metadata["x-id"][0]}})`, "", "", map[string][]string{"x-id": {"7"}},
			"", "", `{"action":"respond","response":{"eventId":"7"}}`},
		{"a changed response", engine.Post, `module.exports = (ctx) => { ctx.response.eventId += "!"; }`, "", "", nil,
			"", `{"eventId":"1"}`, `{"action":"continue","response":{"eventId":"1!"}}`},
		{"a result that does not fit", engine.Pre, `({messageOverride: {nope: 1}})`, "", "", nil,
			"", "", `{"action":"error","status":{"code":"INTERNAL","message":"hook events.v1.EventService/SendEvent/pre/h: result.messageOverride: `},
		{"a failure skipped by onError continue", engine.Pre, `throw new Error("x")`, "", registry.Continue, nil,
			`{"toUserId":"a"}`, "", `{"action":"continue","request":{"toUserId":"a"},"skipped":{"kind":"thrown","message":"x","at":"1:7"}}`},
		{"a coded error", engine.Pre, `var e = new Error("gone"); e.code = "NOT_FOUND"; throw e`, "", "", nil,
			"", "", `{"action":"reject","status":{"code":"NOT_FOUND","message":"gone"}}`},
	}
	for sname, src := range sources {
		for _, tc := range cases {
			t.Run(sname+"/"+tc.name, func(t *testing.T) {
				r := hooktest.NewRunner(src, hooktest.WithDefaultTimeout(5e9))
				res, err := r.Run(context.Background(), &hooktest.Input{
					Hook: compile(t, tc.phase, tc.script, tc.params, tc.onError), Service: "events.v1.EventService", Method: "SendEvent",
					Metadata: tc.md, Request: json.RawMessage(tc.req), Response: json.RawMessage(tc.resp),
				})
				if err != nil {
					t.Fatal(err)
				}
				res.Logs = nil
				b, _ := json.Marshal(res)
				got := strings.Replace(string(b), `,"logs":null`, "", 1)
				if len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
					t.Errorf("got %s; want %s", got, tc.want)
				}
			})
		}
	}
}

func TestLoadAndRunTheExampleCases(t *testing.T) {
	m, err := manifest.Load("../../../scripts")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := hooktest.LoadCases(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases beside scripts/hooks.yaml")
	}
	r := hooktest.NewRunner(dynamicSource(t), hooktest.WithDefaultTimeout(5e9))
	for _, c := range cases {
		if res := r.RunCase(context.Background(), m, c); !res.Pass {
			t.Errorf("%s:%d %s: %v", c.File, c.Line, c.Name, res.Problems)
		}
	}
}

func TestParseCode(t *testing.T) {
	for in, want := range map[string]string{
		"PERMISSION_DENIED": "PERMISSION_DENIED", "permission_denied": "PERMISSION_DENIED", "PermissionDenied": "PERMISSION_DENIED",
		"7": "PERMISSION_DENIED", "CANCELED": "CANCELLED", "cancelled": "CANCELLED", "OK": "OK",
	} {
		c, ok := hooktest.ParseCode(in)
		if !ok || hooktest.CodeName(c) != want {
			t.Errorf("ParseCode(%q): got %v, %v; want %s", in, hooktest.CodeName(c), ok, want)
		}
	}
	if _, ok := hooktest.ParseCode("NOPE"); ok {
		t.Error("ParseCode(NOPE): got ok; want not")
	}
}

// A case answers the hook's calls to other methods (ctx.call) with its
// calls: section; a call it does not answer fails with UNIMPLEMENTED.
func TestCaseFilesAnswerCallsBetweenMethods(t *testing.T) {
	dir := t.TempDir()
	write := writer(t, dir)
	write("ask.js", `module.exports = async (ctx) => {
  const r = await ctx.call("events.v1.EventService/GetEvents", {userId: ctx.request.toUserId});
  ctx.request.eventType = "after " + (r.events || []).length;
  try { await ctx.call("events.v1.EventService/SendEvent", {}) } catch (e) { ctx.request.eventData = {other: e.code} }
};
`)
	write("misfit.js", `module.exports = async (ctx) => {
  try { await ctx.call("events.v1.EventService/GetEvents", {nope: 1}) } catch (e) { return {status: e.code, message: e.message} }
};
`)
	write("hooks.yaml", "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: ask\n    script: ask.js\n"+
		"  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: misfit\n    script: misfit.js\n")
	write("ask.test.yaml", `hook: events.v1.EventService/SendEvent pre ask
cases:
  - name: the called method's answer comes from calls
    request: {toUserId: a}
    calls:
      events.v1.EventService/GetEvents:
        response: {events: [{eventId: "1"}, {eventId: "2"}]}
    expect:
      action: continue
      request: {toUserId: a, eventType: after 2, eventData: {other: UNIMPLEMENTED}}
  - name: a called method may fail
    request: {toUserId: a}
    calls:
      events.v1.EventService/GetEvents:
        error: {code: NOT_FOUND, message: no such user}
    expect: {action: reject, status: NOT_FOUND, message: no such user}
  - name: an answer that does not fit the called method's response
    request: {toUserId: a}
    calls:
      events.v1.EventService/GetEvents:
        response: {eventId: "x"}
    expect: {action: continue}
`)
	write("misfit.test.yaml", `hook: events.v1.EventService/SendEvent pre misfit
cases:
  - name: a request that does not fit the called method's fails as in the daemon
    calls:
      events.v1.EventService/GetEvents:
        response: {}
    expect: {action: reject, status: INVALID_ARGUMENT, messageContains: 'ctx.call events.v1.EventService/GetEvents: request:'}
`)
	m, cases := loadCases(t, dir)
	if len(cases) != 4 {
		t.Fatalf("loaded %d cases; want 4", len(cases))
	}
	r := hooktest.NewRunner(schema.Builtin(), hooktest.WithDefaultTimeout(5e9))
	for _, c := range cases {
		res := r.RunCase(context.Background(), m, c)
		if strings.HasPrefix(c.Name, "an answer that does not fit") {
			if res.Pass || !strings.Contains(fmt.Sprint(res.Problems), "calls.events.v1.EventService/GetEvents.response: not a events.v1.GetEventsResponse") {
				t.Errorf("%s: pass %v, problems %v; want the case refused, naming the answer", c.Name, res.Pass, res.Problems)
			}
			continue
		}
		if !res.Pass {
			t.Errorf("%s: %v (actual %+v)", c.Name, res.Problems, res.Actual)
		}
	}
}

// A case of an error hook gives the call's error with error:.
func TestCaseFilesGiveAnErrorHookItsError(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"hide.js":    "module.exports = (ctx) => ctx.error.code === \"INTERNAL\" ? {status: \"UNAVAILABLE\", message: \"try later\"} : undefined;\n",
		"hooks.yaml": "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: error\n    name: hide\n    script: hide.js\n",
		"hide.test.yaml": `hook: events.v1.EventService/SendEvent error hide
cases:
  - name: an internal error is hidden
    error: {code: INTERNAL, message: db down}
    expect: {action: reject, status: UNAVAILABLE, message: try later}
  - name: other errors go on
    error: {code: NOT_FOUND, message: gone}
    expect: {action: continue}
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := hooktest.LoadCases(m)
	if err != nil || len(cases) != 2 {
		t.Fatalf("LoadCases: %d cases, %v; want 2", len(cases), err)
	}
	r := hooktest.NewRunner(schema.Builtin(), hooktest.WithDefaultTimeout(5e9))
	for _, c := range cases {
		if res := r.RunCase(context.Background(), m, c); !res.Pass {
			t.Errorf("%s: %v (actual %+v)", c.Name, res.Problems, res.Actual)
		}
	}
}

// A case gives a binary metadata key's values in base64, as the hook sees
// them; a value that is not base64 is refused, naming the key.
func TestCaseFilesGiveBinaryMetadataInBase64(t *testing.T) {
	dir := t.TempDir()
	write := writer(t, dir)
	write("trace.js", `module.exports = (ctx) => { ctx.request.eventType = ctx.metadata["x-trace-bin"].join() }`+"\n")
	write("hooks.yaml", "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: trace\n    script: trace.js\n")
	write("trace.test.yaml", `hook: events.v1.EventService/SendEvent pre trace
cases:
  - name: padded or not, the hook sees it padded
    metadata: {x-trace-bin: ["3q0Avu8=", "3q0Avu8"]}
    expect: {action: continue, request: {eventType: "3q0Avu8=,3q0Avu8="}}
`)
	m, cases := loadCases(t, dir)
	r := hooktest.NewRunner(schema.Builtin(), hooktest.WithDefaultTimeout(5e9))
	if res := r.RunCase(context.Background(), m, cases[0]); !res.Pass {
		t.Errorf("%s: %v (actual %+v)", cases[0].Name, res.Problems, res.Actual)
	}

	write("trace.test.yaml", `hook: events.v1.EventService/SendEvent pre trace
cases:
  - name: not base64
    metadata: {x-trace-bin: "not base64!"}
    expect: {action: continue}
`)
	if _, err := hooktest.LoadCases(m); err == nil || !strings.Contains(err.Error(), "metadata.x-trace-bin: a binary key's values are written in base64") {
		t.Errorf("a case with a binary value that is not base64: %v; want it refused, naming the key", err)
	}
}

// A case that fails on a hook's throw says where the hook threw.
func TestAFailingCaseSaysWhereTheHookThrew(t *testing.T) {
	dir := t.TempDir()
	write := writer(t, dir)
	write("h.ts", "export default function main(ctx: any) {\n  const x: string | undefined = undefined;\n  return x!.toUpperCase();\n}\n")
	write("hooks.yaml", "hooks:\n  - method: events.v1.EventService/SendEvent\n    phase: pre\n    name: h\n    script: h.ts\n")
	write("h.test.yaml", "hook: events.v1.EventService/SendEvent pre h\ncases:\n  - name: goes on\n    expect: {action: continue}\n")
	m, cases := loadCases(t, dir)
	res := hooktest.NewRunner(schema.Builtin(), hooktest.WithDefaultTimeout(5e9)).RunCase(context.Background(), m, cases[0])
	if res.Pass || !strings.Contains(fmt.Sprint(res.Problems), "(thrown at line 3, column ") {
		t.Errorf("pass %v, problems %v; want the case failed, saying where the hook threw", res.Pass, res.Problems)
	}
}

// writer returns a function that writes a file into dir.
func writer(t *testing.T, dir string) func(name, text string) {
	return func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// loadCases loads the manifest in dir and its case files.
func loadCases(t *testing.T, dir string) (*manifest.Manifest, []*hooktest.Case) {
	t.Helper()
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := hooktest.LoadCases(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, cases
}
