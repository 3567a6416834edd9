package hookctl_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// TestAgainstARealDaemon applies the example manifest to a running daemon's
// etcd, checked against the daemon's services by reflection, and sees the
// hooks run; and refuses hooks the daemon would never run.
func TestAgainstARealDaemon(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	conn := []string{"--endpoints", d.etcdAddr}
	run := func(code int, args ...string) result {
		t.Helper()
		r := runHookctl(t, append(append([]string{}, conn...), args...))
		if r.code != code {
			t.Fatalf("hookctl %s: got exit %d; want %d\n%s", strings.Join(args, " "), r.code, code, r)
		}
		return r
	}

	t.Run("a post-hook on StreamEvents is refused with --server", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "ok.js"), "undefined\n")
		writeFile(t, filepath.Join(dir, "hooks.yaml"), `hooks:
  - method: events.v1.EventService/SendEvent
    phase: pre
    name: fine
    script: ok.js
  - method: events.v1.EventService/StreamEvents
    phase: post
    name: never
    script: ok.js
  - method: grpc.health.v1.Health/Check
    phase: pre
    name: health
    script: ok.js
  - method: events.v1.EventService/Missing
    phase: pre
    name: missing
    script: ok.js
`)
		for _, cmd := range []string{"validate", "apply"} {
			r := run(1, cmd, "-f", dir, "--server", d.addr)
			mustContain(t, cmd, r.stderr,
				"hooks.yaml:6: hook events.v1.EventService/StreamEvents post never: post-hooks never run on streams: "+
					"events.v1.EventService/StreamEvents is server-streaming",
				"hooks.yaml:10: hook grpc.health.v1.Health/Check pre health: service grpc.health.v1.Health is not hookable",
				"hooks.yaml:14: hook events.v1.EventService/Missing pre missing: service events.v1.EventService has no method Missing",
				"3 problems found")
		}
		// Without a server to ask, the built-in example service still is;
		// other services cannot be checked.
		r := run(1, "validate", "-f", filepath.Join(dir, "hooks.yaml"))
		mustContain(t, "validate without --server", r.stderr, "post-hooks never run on streams", "has no method Missing", "2 problems found")
		r = run(1, "put", "events.v1.EventService/StreamEvents", "post", "never", "--script", filepath.Join(dir, "ok.js"), "--server", d.addr)
		mustContain(t, "put", r.stderr, "post-hooks never run on streams")
		// A daemon run with --hook-services naming grpc.health.v1.Health
		// runs hooks on it: hookctl given the same flag lets them in.
		r = run(1, "put", "grpc.health.v1.Health/Check", "pre", "health", "--script", filepath.Join(dir, "ok.js"), "--server", d.addr)
		mustContain(t, "put on grpc.health.v1.Health", r.stderr, "give hookctl the same --hook-services")
		r = run(1, "validate", "-f", filepath.Join(dir, "hooks.yaml"), "--server", d.addr, "--hook-services", "grpc.health.v1.Health,events.v1.EventService")
		mustContain(t, "validate --hook-services", r.stderr, "2 problems found")
		mustNotContain(t, "validate --hook-services", r.stderr, "grpc.health.v1.Health")
		r = run(0, "list")
		mustContain(t, "list", r.stdout, "No hooks")
	})

	t.Run("the example manifest applied with --server runs in the daemon", func(t *testing.T) {
		run(0, "test", "--hook-timeout", "5s", "-f", scriptsDir, "--server", d.addr)
		run(1, "diff", "-f", scriptsDir, "--server", d.addr)
		r := run(0, "apply", "-f", scriptsDir, "--prune", "--server", d.addr)
		mustContain(t, "apply", r.stdout, "4 added")
		run(0, "diff", "-f", scriptsDir, "--prune")

		cc, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		client := eventsv1.NewEventServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		data, _ := structpb.NewStruct(map[string]any{"device": "phone"})
		var resp *eventsv1.SendEventResponse
		for {
			resp, err = client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login", EventData: data})
			if err == nil && strings.HasPrefix(resp.EventId, "evt-") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("SendEvent: got %v, %v; want an id stamped evt- by the applied post-hook", resp, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		got, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "alice"})
		if err != nil || len(got.Events) == 0 {
			t.Fatalf("GetEvents: %v, %v", got, err)
		}
		ed := got.Events[len(got.Events)-1].EventData.AsMap()
		if ed["campaign"] != "autumn" || ed["source"] != "hook" || ed["device"] != "phone" {
			t.Errorf("eventData: got %v; want the addvalue hook's extradata merged in", ed)
		}
		_, err = client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "mallory", EventType: "login"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("SendEvent to mallory: got %v; want PERMISSION_DENIED from deny-guest", err)
		}

		run(0, "disable", "events.v1.EventService/SendEvent", "pre", "deny-guest")
		for {
			_, err = client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "mallory", EventType: "login", EventData: data})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("SendEvent to mallory after disable: %v; want it to go through", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r = run(1, "diff", "-f", scriptsDir)
		mustContain(t, "diff after disable", r.stdout, "enabled: false → true")
	})
}
