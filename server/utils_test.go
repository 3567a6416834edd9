package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// TestUtils is utils as a hook author sees them, through the daemon:
// imports of the active or a pinned version, activation of another, and
// missing, broken and cyclic utils failing the hooks that import them.
func TestUtils(t *testing.T) {
	d := startDaemon(t)
	client := eventsv1.NewEventServiceClient(d.conn)
	ctx := context.Background()
	putUtil := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := d.etcd.Put(ctx, "/apihooks/utils/"+key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	send := func() *status.Status {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "bob", EventType: "t"})
		return status.Convert(err)
	}
	says := func(msg string) func() bool {
		return func() bool { return strings.Contains(send().Message(), msg) }
	}
	putUtil("Addition/1", map[string]string{"script": `module.exports = { add: (a, b) => a + b, version: 1 };`})
	putUtil("Addition/2", map[string]string{"script": `export function add(a: number, b: number): number { return a + b + 100 } export const version = 2;`, "lang": "ts"})
	putUtil("Addition/active", map[string]int{"version": 1})

	t.Run("a hook imports the active version", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/add": `import * as addition from 'utils/Addition';
				export default function () { return {status: 409, message: "v" + addition.version + " " + addition.add(1, 2)} }`,
		}, says("v1 3"))
	})

	t.Run("a plain script requires a pinned version", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/add": `const addition = require('utils/Addition@2');
				({status: 409, message: "v" + addition.version + " " + addition.add(1, 2)})`,
		}, says("v2 103"))
	})

	t.Run("activating another version changes the dependent hooks on the next call", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/add": `const addition = require('utils/Addition');
				({status: 409, message: "v" + addition.version})`,
		}, says("v1"))
		putUtil("Addition/active", map[string]int{"version": 2})
		waitFor(t, "the hook to use version 2", says("v2"))
	})

	t.Run("a broken active version fails the dependent hooks closed, naming the util", func(t *testing.T) {
		putUtil("Addition/3", map[string]string{"script": `export function add( {`})
		putUtil("Addition/active", map[string]int{"version": 3})
		waitFor(t, "the hook to fail", func() bool { return send().Code() == codes.Internal })
		if st := send(); !strings.Contains(st.Message(), "utils/Addition@3") {
			t.Fatalf("SendEvent = %v; want INTERNAL naming utils/Addition@3", st)
		}
		putUtil("Addition/active", map[string]int{"version": 2})
		waitFor(t, "the hook to use version 2 again", says("v2"))
	})

	t.Run("a missing util fails the hook closed, naming it", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/add": `const m = require('utils/Missing'); ({status: 409, message: "ran"})`,
		}, func() bool { return send().Code() == codes.Internal })
		if st := send(); !strings.Contains(st.Message(), `no util "Missing"`) {
			t.Fatalf("SendEvent = %v; want INTERNAL naming the util Missing", st)
		}
	})

	t.Run("the missing util, once stored and active, lets the hook run", func(t *testing.T) {
		putUtil("Missing/1", map[string]string{"script": `module.exports = {}`})
		putUtil("Missing/active", map[string]int{"version": 1})
		waitFor(t, "the hook to run", says("ran"))
	})

	t.Run("a cycle between utils fails the hook closed, naming it", func(t *testing.T) {
		putUtil("CycleA/1", map[string]string{"script": `import { b } from 'utils/CycleB'; export const a = () => b;`})
		putUtil("CycleA/active", map[string]int{"version": 1})
		putUtil("CycleB/1", map[string]string{"script": `import { a } from 'utils/CycleA'; export const b = () => a;`})
		putUtil("CycleB/active", map[string]int{"version": 1})
		putHooks(t, d, map[string]string{
			"SendEvent/pre/add": `import { a } from 'utils/CycleA'; export default function () { a() }`,
		}, func() bool { return send().Code() == codes.Internal })
		if st, want := send(), "utils/CycleA@1 → utils/CycleB@1 → utils/CycleA@1"; !strings.Contains(st.Message(), want) {
			t.Fatalf("SendEvent = %v; want INTERNAL naming the cycle %s", st, want)
		}
	})

	t.Run("a hook in a worker process runs its utils too", func(t *testing.T) {
		if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/add",
			`{"script":"import { add } from 'utils/Addition'; export default function () { return {status: 409, message: 'worker ' + add(1, 2)} }", "isolation": "process", "timeout": "5s"}`); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the hook to run in a worker", says("worker 103"))
	})
}
