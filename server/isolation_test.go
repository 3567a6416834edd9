package server_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
)

// TestDaemonIsolatesHooksInProcesses runs the daemon with --isolation
// process and a 32 MiB --hook-memory: a hook that allocates without bound
// fails its call naming the hook and the limit, the daemon goes on, and
// the other hooks keep working.
func TestDaemonIsolatesHooksInProcesses(t *testing.T) {
	d := startDaemonWith(t, func(c *server.Config) { c.Isolation, c.HookMemory = "process", 32<<20 })
	conn, etcd := d.conn, d.etcd
	hooks := map[string]string{
		"SendEvent/pre/hog":   `{"script":"module.exports = c => { if (c.request.toUserId !== 'hog') return; let s = 'x'; for (;;) s += s }", "timeout": "5s"}`,
		"GetEvents/pre/label": `{"script":"module.exports = c => ({status: 403, message: 'seen ' + c.request.userId})"}`,
	}
	for k, v := range hooks {
		if _, err := etcd.Put(context.Background(), "/apihooks/hooks/events.v1.EventService/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	client := eventsv1.NewEventServiceClient(conn)
	waitFor(t, "the hooks to be loaded", func() bool {
		_, err := client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "u"})
		return status.Code(err) == codes.PermissionDenied
	})
	for range 2 {
		_, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "hog", EventType: "t"})
		want := "hook events.v1.EventService/SendEvent/pre/hog: worker exceeded its memory limit of 32 MiB; killed"
		if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != want {
			t.Fatalf("SendEvent = %v; want RESOURCE_EXHAUSTED %q", err, want)
		}
		if _, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"}); err != nil {
			t.Fatalf("SendEvent after the hog: %v", err)
		}
		_, err = client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "v"})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "seen v") {
			t.Fatalf("GetEvents after the hog: %v; want the hook's 403", err)
		}
	}
}

// A document's isolation: "process" sends its hook to a worker process on a
// daemon that runs hooks in process, and the worker's memory limit applies.
func TestDocumentAsksForAWorkerProcess(t *testing.T) {
	d := startDaemonWith(t, func(c *server.Config) { c.HookMemory = 32 << 20 })
	if _, err := d.etcd.Put(context.Background(), "/apihooks/hooks/events.v1.EventService/SendEvent/pre/hog",
		`{"script":"module.exports = c => { if (c.request.toUserId !== 'hog') { c.request.eventType = 'in-worker'; return } let s = 'x'; for (;;) s += s }", "isolation": "process", "timeout": "5s"}`); err != nil {
		t.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	want := "hook events.v1.EventService/SendEvent/pre/hog: worker exceeded its memory limit of 32 MiB; killed"
	waitFor(t, "the hook to be loaded", func() bool {
		_, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "hog", EventType: "t"})
		return status.Code(err) == codes.ResourceExhausted && status.Convert(err).Message() == want
	})
	if _, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"}); err != nil {
		t.Fatalf("SendEvent after the hog: %v", err)
	}
	got, err := client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "a"})
	if err != nil || len(got.Events) != 1 || got.Events[0].EventType != "in-worker" {
		t.Fatalf("GetEvents = %v, %v; want the event the worker's hook changed", got, err)
	}
}
