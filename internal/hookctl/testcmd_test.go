package hookctl_test

import (
	"encoding/json"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
)

func TestTestRunsTheExampleCases(t *testing.T) {
	t.Parallel()
	r := runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", scriptsDir})
	if r.code != 0 {
		t.Fatalf("test -f scripts: %s", r)
	}
	mustContain(t, "output", r.stdout, "ok    ../../scripts/deny-guest.test.yaml:3  events to the blocked user are refused with 403", " passed, 0 failed")
	mustNotContain(t, "output", r.stdout, "FAIL")
}

func TestTestReportsFailingCasesWithExpectedAndActual(t *testing.T) {
	t.Parallel()
	dir := copyDir(t, scriptsDir)
	writeFile(t, filepath.Join(dir, "wrong.test.yaml"), `hook: events.v1.EventService/SendEvent pre deny-guest
cases:
  - name: expects the wrong status
    request: {toUserId: mallory, eventType: login}
    expect: {action: reject, status: NOT_FOUND}
  - name: expects a rejection where the call goes on
    request: {toUserId: alice, eventType: login}
    expect: {action: reject}
  - name: expects another request
    request: {toUserId: alice, eventType: login}
    expect: {action: continue, request: {toUserId: bob, eventType: login}}
  - name: passes
    request: {toUserId: alice, eventType: login}
    expect: {action: continue}
`)
	r := runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir})
	if r.code != 1 {
		t.Fatalf("test -f: got exit %d; want 1\n%s", r.code, r)
	}
	wrong := filepath.Join(dir, "wrong.test.yaml")
	mustContain(t, "output", r.stdout,
		"FAIL  "+wrong+":3  expects the wrong status",
		"status: got PERMISSION_DENIED; want NOT_FOUND",
		"FAIL  "+wrong+":6  expects a rejection where the call goes on",
		"action: got continue; want reject",
		"FAIL  "+wrong+":9  expects another request",
		`request: got {"toUserId":"alice","eventType":"login"}; want {"toUserId":"bob","eventType":"login"}`,
		`expected: {"action":"continue","request":{"toUserId":"bob","eventType":"login"}}`,
		`actual:   {"action":"continue","request":{"toUserId":"alice","eventType":"login"},"logs":[]}`,
		"ok    "+wrong+":12  passes",
		"11 passed, 3 failed")

	r = runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir, "-o", "json"})
	var out struct {
		Passed, Failed int
		Cases          []struct {
			Name     string
			Pass     bool
			Problems []string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("test -o json: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || out.Passed != 11 || out.Failed != 3 {
		t.Errorf("test -o json: got exit %d, %d passed, %d failed; want 1, 11, 3", r.code, out.Passed, out.Failed)
	}
}

func TestCaseFileProblemsNameFileAndLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, want string
	}{
		{"a hook not in the manifest", "hook: events.v1.EventService/SendEvent pre nope\ncases:\n  - expect: {action: continue}\n",
			`x.test.yaml:3: case "case 1": hook events.v1.EventService/SendEvent pre nope is not in`},
		{"an unknown action", "hook: events.v1.EventService/SendEvent pre deny-guest\ncases:\n  - expect: {action: accept}\n",
			`x.test.yaml:3: expect.action: "accept" is not continue, reject, respond, error`},
		{"an unknown status", "hook: events.v1.EventService/SendEvent pre deny-guest\ncases:\n  - expect: {action: reject, status: NOPE}\n",
			`x.test.yaml:3: expect.status: "NOPE" is not a gRPC code name`},
		{"an unknown field", "hook: events.v1.EventService/SendEvent pre deny-guest\ncases:\n  - expect: {action: reject}\n    reqest: {}\n",
			`x.test.yaml:4: case: unknown field "reqest"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, scriptsDir)
			writeFile(t, filepath.Join(dir, "x.test.yaml"), tc.file)
			r := runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir})
			if r.code != 1 {
				t.Fatalf("test: got exit %d; want 1\n%s", r.code, r)
			}
			mustContain(t, "stderr", r.stderr, tc.want)
		})
	}
}

func TestTestRunsOneScript(t *testing.T) {
	t.Parallel()
	deny := filepath.Join(scriptsDir, "deny-guest.js")
	stamp := filepath.Join(scriptsDir, "stamp-response.js")
	dir := t.TempDir()
	respond := filepath.Join(dir, "respond.js")
	writeFile(t, respond, `module.exports = (ctx) => ({response: {eventId: "cached-" + ctx.metadata["x-tenant"][0]}});`)
	gStyle := filepath.Join(dir, "g.js")
	writeFile(t, gStyle, `module.exports = async (g) => { console.log("answering", g.req.headers["x-tenant"]); return {eventId: "g-" + g.req.headers["x-tenant"][0]} };`)
	binary := filepath.Join(dir, "binary.js")
	writeFile(t, binary, `module.exports = (ctx) => ({response: {eventId: ctx.metadata["x-trace-bin"][0]}});`)
	throws := filepath.Join(dir, "throws.js")
	writeFile(t, throws, `throw new Error("boom")`)
	slow := filepath.Join(dir, "slow.js")
	writeFile(t, slow, `while (true) {}`)
	req := filepath.Join(dir, "req.json")
	writeFile(t, req, `{"toUserId":"mallory","eventType":"login"}`)
	mapErr := filepath.Join(dir, "map.js")
	writeFile(t, mapErr, `module.exports = c => c.error.code === "NOT_FOUND" ? {response: {eventId: "none"}} : {status: "UNAVAILABLE", message: c.error.code + " " + c.error.message}`)
	cases := []struct {
		name string
		args []string
		code int
		want map[string]any
	}{
		{"a rejection", []string{"--script", deny, "--phase", "pre", "--params", `{"blocked":"mallory"}`, "--request", "@" + req}, 0,
			map[string]any{"action": "reject", "status": map[string]any{"code": "PERMISSION_DENIED", "message": "events to mallory are not allowed"}}},
		{"a call that goes on", []string{"--script", deny, "--phase", "pre", "--request", `{"toUserId":"alice","eventType":"x"}`}, 0,
			map[string]any{"action": "continue", "request": map[string]any{"toUserId": "alice", "eventType": "x"}}},
		{"a post-hook with its logs", []string{"--script", stamp, "--phase", "post", "--response", `{"eventId":"1"}`}, 0,
			map[string]any{"action": "continue", "response": map[string]any{"eventId": "evt-1"},
				"logs": []any{map[string]any{"level": "info", "message": "event stored", "value": map[string]any{"id": "evt-1"}}}}},
		{"an answer in the handler's place", []string{"--script", respond, "--phase", "pre", "--metadata", "X-Tenant=acme"}, 0,
			map[string]any{"action": "respond", "response": map[string]any{"eventId": "cached-acme"}}},
		{"binary metadata is given as the hook sees it, in base64", []string{"--script", binary, "--phase", "pre", "--metadata", "x-trace-bin=3q0Avu8"}, 0,
			map[string]any{"action": "respond", "response": map[string]any{"eventId": "3q0Avu8="}}},
		{"an API Maker style hook answers with the value it returns", []string{"--script", gStyle, "--phase", "pre", "--style", "apimaker", "--metadata", "X-Tenant=acme"}, 0,
			map[string]any{"action": "respond", "response": map[string]any{"eventId": "g-acme"},
				"logs": []any{map[string]any{"level": "info", "message": `answering ["acme"]`}}}},
		{"a thrown error", []string{"--script", throws, "--phase", "pre"}, 1,
			map[string]any{"action": "error", "status": map[string]any{"code": "UNKNOWN", "message": "boom"},
				"error": map[string]any{"kind": "thrown", "message": "boom", "at": "1:7"}}},
		{"a thrown error with onError continue", []string{"--script", throws, "--phase", "pre", "--on-error", "continue"}, 0,
			map[string]any{"action": "continue", "request": map[string]any{}, "skipped": map[string]any{"kind": "thrown", "message": "boom", "at": "1:7"}}},
		{"an error hook replaces the status", []string{"--script", mapErr, "--phase", "error", "--error", "INTERNAL: disk full"}, 0,
			map[string]any{"action": "reject", "status": map[string]any{"code": "UNAVAILABLE", "message": "INTERNAL disk full"}}},
		{"an error hook answers", []string{"--script", mapErr, "--phase", "error", "--error", "not_found"}, 0,
			map[string]any{"action": "respond", "response": map[string]any{"eventId": "none"}}},
		{"an error hook that fails keeps the call's status", []string{"--script", throws, "--phase", "error", "--error", "ABORTED:conflict"}, 1,
			map[string]any{"action": "error", "status": map[string]any{"code": "ABORTED", "message": "conflict"},
				"error": map[string]any{"kind": "thrown", "message": "boom", "at": "1:7"}}},
		{"a timeout", []string{"--script", slow, "--phase", "pre", "--timeout", "50ms"}, 1,
			map[string]any{"action": "error", "status": map[string]any{"code": "DEADLINE_EXCEEDED", "message": "hook " + sendEvent + "/pre/slow timed out after 50ms of CPU time"},
				"error": map[string]any{"kind": "timeout", "message": "timed out after 50ms of CPU time"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"test", "--method", sendEvent, "--hook-timeout", "2s"}, tc.args...)
			r := runHookctl(t, args)
			if r.code != tc.code {
				t.Fatalf("test: got exit %d; want %d\n%s", r.code, tc.code, r)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
			}
			for k, want := range tc.want {
				if !jsonEqual(got[k], want) {
					t.Errorf("%s: got %s; want %s", k, mustJSON(got[k]), mustJSON(want))
				}
			}
		})
	}
}

func TestTestRefusesWhatCannotRun(t *testing.T) {
	t.Parallel()
	stamp := filepath.Join(scriptsDir, "stamp-response.js")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.js")
	writeFile(t, bad, "\n\nvar = 1;\n")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a post-hook on a stream", []string{"--script", stamp, "--method", "events.v1.EventService/StreamEvents", "--phase", "post"}, 1, "post-hooks never run on streams"},
		{"an error hook on a stream", []string{"--script", stamp, "--method", "events.v1.EventService/PublishEvents", "--phase", "error"}, 1, "error hooks never run on streams"},
		{"an error that is OK", []string{"--script", stamp, "--method", sendEvent, "--phase", "error", "--error", "OK"}, 1, `error: "OK" is not a gRPC code name other than OK`},
		{"an unknown method", []string{"--script", stamp, "--method", "events.v1.EventService/Nope", "--phase", "pre"}, 1, "has no method Nope"},
		{"a request of the wrong shape", []string{"--script", stamp, "--method", sendEvent, "--phase", "pre", "--request", `{"nope":1}`}, 1, "request: not a events.v1.SendEventRequest"},
		{"a script that does not compile", []string{"--script", bad, "--method", sendEvent, "--phase", "pre"}, 1, bad + ":3:5: hook"},
		{"-f with --script", []string{"-f", scriptsDir, "--script", stamp}, 2, "give one or the other"},
		{"neither", []string{"--phase", "pre"}, 2, "give -f DIR, or --script FILE"},
		{"a wildcard method", []string{"--script", stamp, "--method", "events.v1.EventService/*", "--phase", "pre"}, 2, "name one method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runHookctl(t, append([]string{"test"}, tc.args...))
			if r.code != tc.code {
				t.Fatalf("test: got exit %d; want %d\n%s", r.code, tc.code, r)
			}
			mustContain(t, "stderr", r.stderr, tc.want)
		})
	}
}

func jsonEqual(a, b any) bool { return mustJSON(a) == mustJSON(b) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(b))
}

func TestTestWritesJUnitXML(t *testing.T) {
	t.Parallel()
	r := runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", scriptsDir, "-o", "junit"})
	if r.code != 0 {
		t.Fatalf("test -o junit: %s", r)
	}
	var suites struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name      string    `xml:"name,attr"`
				Classname string    `xml:"classname,attr"`
				Failure   *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(r.stdout), &suites); err != nil {
		t.Fatalf("not XML: %v\n%s", err, r.stdout)
	}
	if suites.Tests == 0 || suites.Failures != 0 || len(suites.Suites) != 4 {
		t.Errorf("got %d tests, %d failures, %d suites; want some tests, 0 failures, one suite per case file (4)", suites.Tests, suites.Failures, len(suites.Suites))
	}

	dir := copyDir(t, scriptsDir)
	writeFile(t, filepath.Join(dir, "deny-guest.js"), "undefined\n") // denies nobody now
	r = runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir, "-o", "junit"})
	if r.code != 1 {
		t.Fatalf("a failing case: got exit %d; want 1\n%s", r.code, r)
	}
	mustContain(t, "junit of a failing case", r.stdout, "<failure message=", `classname="events.v1.EventService/SendEvent pre deny-guest"`)

	// A case file that does not load: the report says so, as one failure.
	writeFile(t, filepath.Join(dir, "broken.test.yaml"), "hook: events.v1.EventService/SendEvent pre deny-guest\ncases: [{name: x, expect: {action: maybe}}]\n")
	r = runHookctl(t, []string{"test", "--hook-timeout", "5s", "-f", dir, "-o", "junit"})
	if r.code != 1 {
		t.Fatalf("an invalid case file: got exit %d; want 1\n%s", r.code, r)
	}
	if err := xml.Unmarshal([]byte(r.stdout), &suites); err != nil || suites.Tests != 1 || suites.Failures != 1 {
		t.Fatalf("junit of an invalid case file: %v, %d tests, %d failures; want XML with one failure\n%s", err, suites.Tests, suites.Failures, r.stdout)
	}
	mustContain(t, "junit of an invalid case file", r.stdout, "no case ran", "broken.test.yaml")
}
