package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/proxy"
)

const (
	hooksDir  = "/apihooks/hooks/events.v1.EventService/"
	getEvents = "events.v1.EventService/GetEvents"
	sendEvent = "events.v1.EventService/SendEvent"
)

// putHooks replaces every hook with hooks (key under hooksDir → script),
// each with a generous timeout, and waits until probe says they are in
// force.
func putHooks(t *testing.T, d *daemon, hooks map[string]string, probe func() bool) {
	t.Helper()
	putHooksWithin(t, d, hooks, nil, probe)
}

// putIsolated puts the hook key (under the EventService) with script, run
// in a worker process, beside the hooks in etcd.
func putIsolated(t *testing.T, d *daemon, key, script string) {
	t.Helper()
	doc, _ := json.Marshal(map[string]any{"script": script, "timeout": "5s", "isolation": "process"})
	if _, err := d.etcd.Put(context.Background(), hooksDir+key, string(doc)); err != nil {
		t.Fatal(err)
	}
}

// putHooksWithin is putHooks with the timeouts that timeouts names.
func putHooksWithin(t *testing.T, d *daemon, hooks, timeouts map[string]string, probe func() bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.etcd.Delete(ctx, "/apihooks/hooks/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	var ops []clientv3.Op
	for k, script := range hooks {
		timeout := timeouts[k]
		if timeout == "" {
			timeout = "5s"
		}
		doc, _ := json.Marshal(map[string]any{"script": script, "timeout": timeout})
		ops = append(ops, clientv3.OpPut(hooksDir+k, string(doc)))
	}
	if _, err := d.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hooks to be in force", probe)
}

// TestCallsBetweenMethods is ctx.call as a hook author sees it, through the
// daemon: the answer of another method, through its hooks, with the
// caller's metadata; its errors; cycles; and the depth limit.
func TestCallsBetweenMethods(t *testing.T) {
	d := startDaemon(t)
	client := eventsv1.NewEventServiceClient(d.conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	send := func(ctx context.Context, to string) error {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: to, EventType: "t"})
		return err
	}
	// rejectedWith waits for SendEvent to fail with this message.
	rejectedWith := func(to, msg string) func() bool {
		return func() bool {
			return strings.Contains(status.Convert(send(ctx, to)).Message(), msg)
		}
	}

	t.Run("a hook uses another method's answer, which ran that method's hooks with the caller's metadata", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/ask": `module.exports = async function (ctx) {
				const r = await ctx.call("` + getEvents + `", {userId: "quiet"});
				return {status: "ABORTED", message: "answer: " + r.events.map(e => e.eventType).join(",")};
			}`,
			"GetEvents/post/add": `module.exports = function (ctx) {
				const events = ctx.response.events || [];
				events.push({eventId: "x", eventType: "added-for-" + ctx.metadata["x-tenant"][0]});
				ctx.response.events = events;
			}`,
		}, rejectedWith("bob", "answer:"))
		err := send(ctx, "bob")
		if got, want := status.Convert(err), "answer: added-for-acme"; got.Code() != codes.Aborted || got.Message() != want {
			t.Fatalf("SendEvent = %v; want ABORTED %q", err, want)
		}
	})

	t.Run("an error of the called method is thrown with its code and message", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/ask": `module.exports = async function (ctx) {
				try { await ctx.call("` + getEvents + `", {userId: "carol"}); }
				catch (e) { return {status: 409, message: "caught " + e.code + ": " + e.message}; }
			}`,
			"GetEvents/pre/deny": `({status: 404, message: "no such user"})`,
		}, rejectedWith("bob", "caught"))
		err := send(ctx, "bob")
		if got, want := status.Convert(err).Message(), "caught NOT_FOUND: no such user"; got != want {
			t.Fatalf("SendEvent = %v; want %q", err, want)
		}
	})

	t.Run("an uncaught error of the called method ends the caller with its status", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/ask":  `module.exports = async function (ctx) { await ctx.call("` + getEvents + `", {userId: "carol"}) }`,
			"GetEvents/pre/deny": `({status: 403, message: "not yours"})`,
		}, rejectedWith("bob", "not yours"))
		if err := send(ctx, "bob"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("SendEvent = %v; want PERMISSION_DENIED", err)
		}
	})

	t.Run("an unknown method and a bad request are errors naming them", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/ask": `module.exports = async function (ctx) {
				const errs = [];
				for (const [m, req] of [["events.v1.EventService/Nope", {}], ["` + getEvents + `", {nope: 1}]]) {
					try { await ctx.call(m, req); } catch (e) { errs.push(e.code + " " + e.message); }
				}
				return {status: 400, message: errs.join(" | ")};
			}`,
		}, rejectedWith("bob", "Nope"))
		msg := status.Convert(send(ctx, "bob")).Message()
		for _, want := range []string{"UNIMPLEMENTED", "events.v1.EventService/Nope", "INVALID_ARGUMENT", "nope"} {
			if !strings.Contains(msg, want) {
				t.Errorf("SendEvent's message %q does not say %q", msg, want)
			}
		}
	})

	t.Run("a cycle A→B→A fails with FAILED_PRECONDITION naming the chain", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"SendEvent/pre/a": `module.exports = async function (ctx) { await ctx.call("` + getEvents + `", {userId: "x"}) }`,
			"GetEvents/pre/b": `module.exports = async function (ctx) { await ctx.call("` + sendEvent + `", {toUserId: "y", eventType: "t"}) }`,
		}, rejectedWith("bob", "cycle"))
		err := send(ctx, "bob")
		want := "cycle detected: " + sendEvent + "/pre/a → " + getEvents + "/pre/b → " + sendEvent + "/pre/a"
		if got := status.Convert(err); got.Code() != codes.FailedPrecondition || got.Message() != want {
			t.Fatalf("SendEvent = %v; want FAILED_PRECONDITION %q", err, want)
		}
	})

	t.Run("a hook in a worker process calls the same way", func(t *testing.T) {
		putHooks(t, d, map[string]string{
			"GetEvents/pre/deny": `({status: 404, message: "no such user"})`,
		}, func() bool { return status.Code(send(ctx, "bob")) == codes.OK })
		putIsolated(t, d, "SendEvent/pre/ask", `module.exports = async function (ctx) {
			try { await ctx.call("`+getEvents+`", {userId: "carol"}); }
			catch (e) { return {status: 409, message: "caught in a worker " + e.code + ": " + e.message}; }
		}`)
		waitFor(t, "the isolated hook's call", rejectedWith("bob", "caught in a worker NOT_FOUND: no such user"))
	})

	t.Run("a cycle through hooks in worker processes is caught", func(t *testing.T) {
		// Each hook runs in a worker: a call made while every worker is
		// busy with the runs that wait for it gets a worker of its own.
		putHooks(t, d, nil, func() bool { return status.Code(send(ctx, "bob")) == codes.OK })
		putIsolated(t, d, "GetEvents/pre/b", `module.exports = async function (ctx) { await ctx.call("`+sendEvent+`", {toUserId: "y", eventType: "t"}) }`)
		putIsolated(t, d, "SendEvent/pre/a", `module.exports = async function (ctx) { await ctx.call("`+getEvents+`", {userId: "x"}) }`)
		waitFor(t, "the cycle", rejectedWith("bob", "cycle"))
		err := send(ctx, "bob")
		want := "cycle detected: " + sendEvent + "/pre/a → " + getEvents + "/pre/b → " + sendEvent + "/pre/a"
		if got := status.Convert(err); got.Code() != codes.FailedPrecondition || got.Message() != want {
			t.Fatalf("SendEvent = %v; want FAILED_PRECONDITION %q", err, want)
		}
	})

	t.Run("time spent in a call counts against the caller's time limit", func(t *testing.T) {
		putHooksWithin(t, d, map[string]string{
			"SendEvent/pre/ask":  `module.exports = async function (ctx) { await ctx.call("` + getEvents + `", {userId: "x"}) }`,
			"GetEvents/pre/spin": `for (;;) {}`,
		}, map[string]string{"SendEvent/pre/ask": "1s"}, rejectedWith("bob", "timed out"))
		err := send(ctx, "bob")
		if got := status.Convert(err); got.Code() != codes.DeadlineExceeded || !strings.Contains(got.Message(), "SendEvent/pre/ask") {
			t.Fatalf("SendEvent = %v; want DEADLINE_EXCEEDED naming the calling hook, whose 1s the call used up", err)
		}
	})

	// Hooks d1...d9 of GetEvents each call GetEvents for the next user
	// when the request is for theirs: a chain of calls nine deep.
	deep := map[string]string{}
	for i := 1; i <= 9; i++ {
		deep[fmt.Sprintf("GetEvents/pre/d%d", i)] = fmt.Sprintf(`module.exports = async function (ctx) {
			if (ctx.request.userId !== "d%d") return;
			const r = await ctx.call(%q, {userId: "d%d"});
			return {response: r};
		}`, i, getEvents, i+1)
	}
	deepest := func(ctx context.Context, from int) error {
		_, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: fmt.Sprint("d", from)})
		return err
	}

	t.Run("calls nest eight deep", func(t *testing.T) {
		putHooks(t, d, deep, func() bool { return deepest(ctx, 1) != nil })
		if err := deepest(ctx, 2); err != nil {
			t.Fatalf("GetEvents through 8 nested calls = %v; want it answered", err)
		}
	})

	t.Run("a ninth nested call fails with FAILED_PRECONDITION", func(t *testing.T) {
		err := deepest(ctx, 1)
		if got := status.Convert(err); got.Code() != codes.FailedPrecondition || !strings.Contains(got.Message(), "deeper than 8") {
			t.Fatalf("GetEvents through 9 nested calls = %v; want FAILED_PRECONDITION deeper than 8", err)
		}
	})

	t.Run("a client cannot send a chain of its own", func(t *testing.T) {
		var hops []string
		for i := 1; i <= 8; i++ {
			hops = append(hops, fmt.Sprintf("%s/pre/d%d", getEvents, i))
		}
		forged := metadata.AppendToOutgoingContext(ctx, "apihooks-call-chain", strings.Join(hops, " -> "))
		if err := deepest(forged, 2); err != nil {
			t.Fatalf("GetEvents with a forged chain header = %v; want it answered as without", err)
		}
	})
}

// TestCallsThroughTheProxy: in proxy mode, a hook's ctx.call goes to the
// backend through the proxy's own hooks.
func TestCallsThroughTheProxy(t *testing.T) {
	backend := startDaemon(t)
	front := startDaemonWith(t, func(c *server.Config) { c.Proxy = proxy.Backend{Target: backend.addrs[0]} })
	client := eventsv1.NewEventServiceClient(front.conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
	putHooks(t, front, map[string]string{
		"SendEvent/pre/ask": `module.exports = async function (ctx) {
			const r = await ctx.call("` + getEvents + `", {userId: "quiet"});
			return {status: "ABORTED", message: "answer: " + r.events.map(e => e.eventType).join(",")};
		}`,
		"GetEvents/post/add": `module.exports = function (ctx) {
			const events = ctx.response.events || [];
			events.push({eventId: "x", eventType: "added-by-the-proxy-for-" + ctx.metadata["x-tenant"][0]});
			ctx.response.events = events;
		}`,
	}, func() bool {
		_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "bob", EventType: "t"})
		return strings.Contains(status.Convert(err).Message(), "answer:")
	})
	_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "bob", EventType: "t"})
	if got, want := status.Convert(err), "answer: added-by-the-proxy-for-acme"; got.Code() != codes.Aborted || got.Message() != want {
		t.Fatalf("SendEvent through the proxy = %v; want ABORTED %q", err, want)
	}
}

// TestACallThroughTheProxyReachesNoneOfGRPCsOwnServices: as on the
// built-in server, a hook's ctx.call cannot reach the backend's health,
// reflection or other grpc.* services, which the proxy does not forward
// to clients either, unless --hook-services names one: a service hooks
// apply to is one they may call.
func TestACallThroughTheProxyReachesNoneOfGRPCsOwnServices(t *testing.T) {
	for _, tt := range []struct {
		name         string
		hookServices []string
		want         string
	}{
		{name: "by default", want: "UNIMPLEMENTED: ctx.call: grpc.health.v1.Health/Check is one of gRPC's own services"},
		{name: "named by --hook-services", hookServices: []string{"events.v1.EventService", "grpc.health.v1.Health"},
			want: "reached the backend's health: SERVING"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backend := startDaemon(t)
			front := startDaemonWith(t, func(c *server.Config) {
				c.Proxy = proxy.Backend{Target: backend.addrs[0]}
				c.HookServices = tt.hookServices
			})
			client := eventsv1.NewEventServiceClient(front.conn)
			ctx := context.Background()
			putHooks(t, front, map[string]string{
				"SendEvent/pre/peek": `module.exports = async function (ctx) {
			let r;
			try { r = await ctx.call("grpc.health.v1.Health/Check", {}) } catch (e) { return {status: "ABORTED", message: e.code + ": " + e.message} }
			return {status: "ABORTED", message: "reached the backend's health: " + r.status};
		}`,
			}, func() bool {
				_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "bob", EventType: "t"})
				return status.Code(err) == codes.Aborted
			})
			_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "bob", EventType: "t"})
			if got := status.Convert(err).Message(); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("a hook's call of the backend's health: %q; want %q", got, tt.want)
			}
		})
	}
}
