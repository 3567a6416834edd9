package lazypb_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// BenchmarkSizeOfABigChangedMessage: proto.Size of a message a hook filled
// with 100 MiB (what a hook's memory budget measures) costs a walk of its
// fields, not an encoding of it.
func BenchmarkSizeOfABigChangedMessage(b *testing.B) {
	md := (&eventsv1.GetEventsResponse{}).ProtoReflect().Descriptor()
	events := md.Fields().ByName("events")
	ev := events.Message()
	m := lazypb.NewType(md).NewMessage()
	list := m.Mutable(events).List()
	s := strings.Repeat("x", 1<<20)
	for range 100 {
		e := list.NewElement()
		e.Message().Set(ev.Fields().ByName("event_type"), protoreflect.ValueOfString(s))
		list.Append(e)
	}
	for b.Loop() {
		if n := proto.Size(m); n < 100<<20 {
			b.Fatalf("size %d; want over 100 MiB", n)
		}
	}
}
