package hookctl_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl"
)

const sendEvent = "events.v1.EventService/SendEvent"

// writeEventsDescriptorSet writes the example service's FileDescriptorSet,
// as buf build -o would, with its imports.
func writeEventsDescriptorSet(t *testing.T) string {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
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
	path := filepath.Join(t.TempDir(), "events.binpb")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPutGetListEnableDisableDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	script := filepath.Join(scriptsDir, "deny-guest.js")

	r := e.want(0, "put", sendEvent, "pre", "deny", "--script", script,
		"--params", `{"blocked": "mallory"}`, "--order", "5", "--timeout", "300ms", "--description", "no mallory", "--isolation", "process")
	mustContain(t, "put", r.stdout, "created "+sendEvent+" pre deny at revision")
	doc, err := registry.DecodeDocument([]byte(e.hooks()[sendEvent+"/pre/deny"]))
	if err != nil {
		t.Fatalf("the registry refuses what put wrote: %v", err)
	}
	if doc.Script != readFile(t, script) || string(doc.Params) != `{"blocked":"mallory"}` || doc.Order != 5 ||
		doc.Timeout != "300ms" || doc.Description != "no mallory" || doc.Enabled != nil || doc.Isolation != registry.Process {
		t.Errorf("document: got %+v; want the flags' values", doc)
	}

	before := e.revision()
	r = e.want(0, "put", sendEvent, "pre", "deny", "--script", script,
		"--params", `{ "blocked":"mallory" }`, "--order", "5", "--timeout", "300ms", "--description", "no mallory", "--isolation", "process")
	mustContain(t, "same put", r.stdout, "unchanged")
	if e.revision() != before {
		t.Error("a put of the same document wrote to etcd")
	}

	r = e.want(0, "get", sendEvent, "pre", "deny")
	mustContain(t, "get", r.stdout, "hook:", sendEvent+" pre deny", "order:        5", "timeout:      300ms",
		`params:       {"blocked":"mallory"}`, "isolation:    process", "--- script ---", "module.exports")
	r = e.want(0, "get", sendEvent+"/pre/deny", "-o", "script")
	if r.stdout != readFile(t, script) {
		t.Errorf("get -o script: got %q; want the script", r.stdout)
	}
	r = e.want(0, "get", sendEvent, "pre", "deny", "-o", "json")
	var view map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil {
		t.Fatalf("get -o json: %v\n%s", err, r.stdout)
	}
	if view["hook"] != sendEvent+" pre deny" || view["enabled"] != true || view["order"] != 5.0 || view["isolation"] != "process" {
		t.Errorf("get -o json: got %v", view)
	}
	r = e.want(0, "get", sendEvent, "pre", "deny", "-o", "yaml")
	mustContain(t, "get -o yaml", r.stdout, "hook: events.v1.EventService/SendEvent pre deny", "script: |")

	e.want(0, "put", "events.v1.EventService/*", "pre", "audit", "--script", filepath.Join(scriptsDir, "deny-guest.js"), "--order", "1")
	e.want(0, "put", "events.v1.EventService/GetEvents", "pre", "other", "--script", filepath.Join(scriptsDir, "deny-guest.js"))
	e.want(0, "put", "*/*", "post", "last", "--script", filepath.Join(scriptsDir, "deny-guest.js"), "--order", "-1")
	e.want(0, "put", sendEvent, "error", "fallback", "--script", filepath.Join(scriptsDir, "deny-guest.js"), "--order", "-5")
	r = e.want(0, "list")
	mustContain(t, "list", r.stdout, "METHOD", "PHASE", "NAME", "ORDER", "ENABLED", "TIMEOUT", "ON-ERROR", "REVISION", "DESCRIPTION",
		"no mallory", "300ms", "abort")
	r = e.want(0, "list", sendEvent)
	mustContain(t, "list SendEvent", r.stdout, "audit", "deny", "fallback")
	mustNotContain(t, "list SendEvent", r.stdout, "other")
	if a, d, l, f := strings.Index(r.stdout, "audit"), strings.Index(r.stdout, "deny"), strings.Index(r.stdout, "last"), strings.Index(r.stdout, "fallback"); !(a < d && d < l && l < f) {
		t.Errorf("list SendEvent: got\n%s\nwant audit (pre, order 1), deny (pre, order 5), last (post, order -1), then fallback (error, order -5)", r.stdout)
	}
	r = e.want(0, "list", "-o", "json")
	var listed struct {
		Revision int64 `json:"revision"`
		Hooks    []struct {
			Hook string `json:"hook"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Hooks) != 5 || listed.Revision == 0 {
		t.Errorf("list -o json: got %s (%v); want 5 hooks and the revision", r.stdout, err)
	}

	r = e.want(0, "disable", sendEvent, "pre", "deny")
	mustContain(t, "disable", r.stdout, "disabled "+sendEvent+" pre deny at revision")
	doc2, err := registry.DecodeDocument([]byte(e.hooks()[sendEvent+"/pre/deny"]))
	if err != nil {
		t.Fatal(err)
	}
	if doc2.IsEnabled() {
		t.Error("disable: the document is still enabled")
	}
	doc2.Enabled = nil
	if doc2.Script != doc.Script || string(doc2.Params) != string(doc.Params) || doc2.Order != doc.Order ||
		doc2.Timeout != doc.Timeout || doc2.Description != doc.Description || doc2.Isolation != doc.Isolation {
		t.Errorf("disable changed more than enabled: got %+v; want %+v", doc2, doc)
	}
	r = e.want(0, "disable", sendEvent, "pre", "deny")
	mustContain(t, "disable again", r.stdout, "already disabled")
	r = e.want(0, "list", sendEvent)
	mustContain(t, "list", r.stdout, "false")
	e.want(0, "enable", sendEvent, "pre", "deny")
	doc3, _ := registry.DecodeDocument([]byte(e.hooks()[sendEvent+"/pre/deny"]))
	if !doc3.IsEnabled() {
		t.Error("enable: the document is still disabled")
	}

	r = e.want(0, "put", sendEvent, "pre", "deny", "--script", script, "--order", "6", "-o", "json")
	var res struct {
		Hook, Action, Change       string
		Revision, PreviousRevision int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("put -o json: %v\n%s", err, r.stdout)
	}
	if res.Hook != sendEvent+" pre deny" || res.Action != "updated" || res.Revision <= res.PreviousRevision ||
		!strings.Contains(res.Change, "order: 5 → 6") {
		t.Errorf("put -o json: got %+v; want an update of the order", res)
	}

	r = e.want(0, "delete", sendEvent, "pre", "deny")
	mustContain(t, "delete", r.stdout, "deleted "+sendEvent+" pre deny")
	r = e.want(1, "get", sendEvent, "pre", "deny")
	mustContain(t, "get deleted", r.stderr, "not found")
	e.want(1, "delete", sendEvent, "pre", "deny")
	e.want(1, "enable", sendEvent, "pre", "deny")
}

func TestPutValidatesBeforeWriting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.js")
	writeFile(t, bad, "// line 1\nmodule.exports = function (ctx) {\n  var x = ;\n};\n")
	ok := filepath.Join(scriptsDir, "deny-guest.js")
	set := writeEventsDescriptorSet(t)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a script that does not compile", []string{"put", sendEvent, "pre", "x", "--script", bad}, 1, bad + ":3:11: hook " + sendEvent + " pre x: SyntaxError: Unexpected token ;"},
		{"params that are not JSON", []string{"put", sendEvent, "pre", "x", "--script", ok, "--params", "{blocked:"}, 1, "--params: not valid JSON"},
		{"a timeout that does not parse", []string{"put", sendEvent, "pre", "x", "--script", ok, "--timeout", "soon"}, 1, "field timeout"},
		{"an unknown onError", []string{"put", sendEvent, "pre", "x", "--script", ok, "--on-error", "retry"}, 1, "field onError"},
		{"an unknown isolation", []string{"put", sendEvent, "pre", "x", "--script", ok, "--isolation", "thread"}, 1, "field isolation"},
		{"a timeout over the daemon's limit", []string{"put", sendEvent, "pre", "x", "--script", ok, "--timeout", "1h"}, 1, "more than the limit of 5s"},
		{"a bad name", []string{"put", sendEvent, "pre", "X!", "--script", ok}, 1, `name "X!" does not match`},
		{"a bad phase", []string{"put", sendEvent, "around", "x", "--script", ok}, 1, `phase "around"`},
		{"no script", []string{"put", sendEvent, "pre", "x"}, 2, "--script FILE is required"},
		{"a post-hook on a stream", []string{"put", "events.v1.EventService/StreamEvents", "post", "x", "--script", ok, "--descriptor-set", set}, 1, "post-hooks never run on streams"},
		{"an error hook on the example's stream, with no schema given", []string{"put", "events.v1.EventService/StreamEvents", "error", "x", "--script", ok}, 1, "error hooks never run on streams"},
		{"a missing script file", []string{"put", sendEvent, "pre", "x", "--script", filepath.Join(dir, "none.js")}, 1, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.want(tc.code, tc.args...)
			mustContain(t, "stderr", r.stderr, tc.want)
		})
	}
	if hooks := e.hooks(); len(hooks) != 0 {
		t.Errorf("hooks in etcd: got %v; want none", hooks)
	}
}

// --max-hook-timeout is the daemons' own: a hook may take as long as they
// allow, no longer.
func TestMaxHookTimeoutFollowsTheDaemons(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	script := filepath.Join(scriptsDir, "deny-guest.js")
	e.want(1, "put", sendEvent, "pre", "slow", "--script", script, "--timeout", "8s")
	r := e.want(1, "put", sendEvent, "pre", "slow", "--script", script, "--timeout", "8s", "--max-hook-timeout", "7s")
	mustContain(t, "stderr", r.stderr, `"8s" is more than the limit of 7s`)
	e.want(0, "put", sendEvent, "pre", "slow", "--script", script, "--timeout", "8s", "--max-hook-timeout", "10s")
	e.want(0, "disable", sendEvent, "pre", "slow", "--max-hook-timeout", "10s")

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hook.js"), "module.exports = function () {};\n")
	writeFile(t, filepath.Join(dir, "hooks.yaml"), "hooks:\n  - method: "+sendEvent+"\n    phase: pre\n    name: slow\n    script: hook.js\n    timeout: 8s\n")
	r = e.want(1, "validate", "-f", dir)
	mustContain(t, "stderr", r.stderr, "more than the limit of 5s")
	e.want(0, "validate", "-f", dir, "--max-hook-timeout", "10s")
}

func TestPutEnableDeleteAreGuardedByTheRevisionRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	script := filepath.Join(scriptsDir, "deny-guest.js")
	e.want(0, "put", sendEvent, "pre", "deny", "--script", script)
	concurrent := `{"script":"undefined","description":"someone else"}`
	for _, args := range [][]string{
		{"put", sendEvent, "pre", "deny", "--script", script, "--order", "3"},
		{"disable", sendEvent, "pre", "deny"},
		{"delete", sendEvent, "pre", "deny"},
		{"put", sendEvent, "pre", "fresh", "--script", script},
	} {
		t.Run(args[0]+" "+args[3], func(t *testing.T) {
			e.opts = []hookctl.Option{hookctl.WithBeforeCommit(func(ctx context.Context) error {
				_, err := e.etcd.Put(ctx, prefix+"hooks/"+sendEvent+"/pre/"+args[3], concurrent)
				return err
			})}
			r := e.want(3, args...)
			mustContain(t, "stderr", r.stderr, "conflict", sendEvent+"/pre/"+args[3], "nothing was written")
			if got := e.hooks()[sendEvent+"/pre/"+args[3]]; got != concurrent {
				t.Errorf("value: got %s; want the concurrent write %s", got, concurrent)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	unreachable := []string{"--endpoints", "127.0.0.1:1", "--dial-timeout", "200ms"}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "Usage:"},
		{"help of a command", []string{"apply", "--help"}, 0, "--prune"},
		{"an unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"an unknown flag", []string{"list", "--colour"}, 2, "unknown flag: --colour"},
		{"a hook in two words", []string{"get", sendEvent, "pre"}, 2, "want a hook as SERVICE/METHOD PHASE NAME"},
		{"apply without -f", []string{"apply"}, 2, `required flag(s) "filename" not set`},
		{"an unknown output format", []string{"list", "-o", "xml"}, 2, `--output "xml"`},
		{"etcd unreachable", append(unreachable, "list"), 3, "cannot reach etcd at 127.0.0.1:1"},
		{"etcd unreachable for apply", append(unreachable, "apply", "-f", scriptsDir), 3, "cannot reach etcd at 127.0.0.1:1"},
		{"validate needs no etcd", append(unreachable, "validate", "-f", scriptsDir), 0, "4 hooks valid"},
		{"test needs no etcd", append(unreachable, "test", "--hook-timeout", "5s", "-f", scriptsDir), 0, "passed, 0 failed"},
		{"a manifest that is not there", []string{"validate", "-f", "/nonexistent/dir"}, 1, "/nonexistent/dir"},
		{"completion", []string{"completion", "bash"}, 0, "bash completion"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runHookctl(t, tc.args)
			if r.code != tc.code {
				t.Fatalf("hookctl %s: got exit %d; want %d\n%s", strings.Join(tc.args, " "), r.code, tc.code, r)
			}
			mustContain(t, "output", r.stdout+r.stderr, tc.want)
		})
	}
}

func TestEndpointsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	endpoints := e.args[1]
	env := map[string]string{"HOOKCTL_ENDPOINTS": endpoints, "HOOKCTL_PREFIX": "/other/"}
	r := runHookctl(t, []string{"put", sendEvent, "pre", "x", "--script", filepath.Join(scriptsDir, "deny-guest.js")},
		hookctl.WithGetenv(func(k string) string { return env[k] }))
	if r.code != 0 {
		t.Fatalf("put with HOOKCTL_ENDPOINTS: %s", r)
	}
	resp, err := e.etcd.Get(context.Background(), "/other/hooks/"+sendEvent+"/pre/x")
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the hook under HOOKCTL_PREFIX: got %v, %v; want it written", resp, err)
	}
}
