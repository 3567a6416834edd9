package interceptor_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// TestClientControlledAllocationIsAnErrorNotACrash is the kill switch a
// careless hook hands every client: a length taken from the request. A
// client asking for 32 TiB gets an error status; the server goes on
// serving, the same hook included.
func TestClientControlledAllocationIsAnErrorNotACrash(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{sendEventKey + "pre/pad": doc(
		`module.exports = c => { c.request.toUserId = "x".repeat(Number(c.request.eventType)) }`, `"timeout":"5s"`)})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := e.client.SendEvent(ctx, &eventsv1.SendEventRequest{EventType: "35184372088832"})
			want := "hook events.v1.EventService/SendEvent/pre/pad: RangeError: hook memory budget of 64 MiB exceeded: String.prototype.repeat would allocate 32 TiB"
			if got := status.Code(err); got != codes.ResourceExhausted || !strings.HasPrefix(status.Convert(err).Message(), want) {
				errs <- status.Errorf(codes.Internal, "2**45 characters: got %v; want RESOURCE_EXHAUSTED %q", err, want)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := e.client.SendEvent(ctx, &eventsv1.SendEventRequest{EventType: "3"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := e.svc.received()
	if len(got) != 8 {
		t.Fatalf("handler received %d calls; want the 8 small ones", len(got))
	}
	for _, r := range got {
		if !strings.Contains(r, `"toUserId": "xxx"`) {
			t.Errorf("handler received %s; want toUserId xxx", r)
		}
	}
}
