package interceptor

import (
	"fmt"
	"testing"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// TestResponseTypesKeepOnlyKnownMethods: a server with
// grpc.UnknownServiceHandler and a hook on every method sees the method
// names clients make up; they are looked up, never kept, so they cannot
// grow what the interceptors hold.
func TestResponseTypesKeepOnlyKnownMethods(t *testing.T) {
	h := newHooks(&options{})
	for i := range 1000 {
		if mt := h.responseType(fmt.Sprintf("/made.Up/M%d", i)); mt != nil {
			t.Fatalf("a made-up method has response type %v", mt.Descriptor().FullName())
		}
	}
	const sendEvent = "/events.v1.EventService/SendEvent"
	for range 2 {
		if mt := h.responseType(sendEvent); mt == nil || mt.Descriptor() != (&eventsv1.SendEventResponse{}).ProtoReflect().Descriptor() {
			t.Fatalf("response type of %s = %v; want events.v1.SendEventResponse", sendEvent, mt)
		}
	}
	if n := len(*h.responseTypes.Load()); n != 1 {
		t.Fatalf("%d response types kept after 1000 made-up methods and one real one; want 1", n)
	}
}
