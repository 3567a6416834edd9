package protojs

import (
	"testing"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// benchFunc compiles body as a function of m in vm.
func benchFunc(b *testing.B, vm *goja.Runtime, body string) goja.Callable {
	b.Helper()
	v, err := vm.RunString("(function(m) {\n" + body + "\n})")
	if err != nil {
		b.Fatal(err)
	}
	fn, ok := goja.AssertFunction(v)
	if !ok {
		b.Fatal("not a function")
	}
	return fn
}

// viewBenches are the scripts the view and native benchmarks run on the
// request of BenchmarkRoundTrip; check, when set, tells whether the script
// did its work, from the message it ends with and its result.
var viewBenches = []struct {
	name   string
	script string
	check  func(m *eventsv1.SendEventRequest, res goja.Value) bool
}{
	{"set-field", `m.eventType = "checked"`,
		func(m *eventsv1.SendEventRequest, _ goja.Value) bool { return m.EventType == "checked" }},
	{"read-field", `return m.toUserId`,
		func(m *eventsv1.SendEventRequest, res goja.Value) bool { return res.String() == m.ToUserId }},
	// The core of the first seed script: Object.assign of one key into
	// the request's Struct.
	{"struct-assign", `Object.assign(m.eventData, {source: "hook"})`,
		func(m *eventsv1.SendEventRequest, _ goja.Value) bool { return m.EventData.Fields["source"] != nil }},
}

// BenchmarkView wraps a clone of the request in a view and runs each
// script on it, in a reused runtime; "in-place" runs it on the request
// itself, the view's own cost without the clone.
func BenchmarkView(b *testing.B) {
	for _, inPlace := range []bool{false, true} {
		for _, bb := range viewBenches {
			name := bb.name
			if inPlace {
				name += "/in-place"
			}
			b.Run(name, func(b *testing.B) {
				vm := goja.New()
				req := benchRequest(b)
				fn := benchFunc(b, vm, bb.script)
				b.ReportAllocs()
				for b.Loop() {
					m := req
					if !inPlace {
						m = proto.Clone(req).(*eventsv1.SendEventRequest)
					}
					obj, v := NewView(vm, m.ProtoReflect())
					res, err := fn(goja.Undefined(), obj)
					if err != nil {
						b.Fatal(err)
					}
					if err := v.Err(); err != nil {
						b.Fatal(err)
					}
					if !bb.check(m, res) {
						b.Fatalf("%s: the script did not do its work", bb.name)
					}
				}
			})
		}
	}
}

// BenchmarkNative runs the scripts of BenchmarkView on the native path:
// ToValue, the script, FromValue into a fresh message.
func BenchmarkNative(b *testing.B) {
	for _, bb := range viewBenches {
		b.Run(bb.name, func(b *testing.B) {
			vm := goja.New()
			req := benchRequest(b)
			fn := benchFunc(b, vm, bb.script)
			b.ReportAllocs()
			for b.Loop() {
				obj := ToValue(vm, req.ProtoReflect())
				res, err := fn(goja.Undefined(), obj)
				if err != nil {
					b.Fatal(err)
				}
				out := &eventsv1.SendEventRequest{}
				if err := FromValue(vm, obj, out.ProtoReflect()); err != nil {
					b.Fatal(err)
				}
				if !bb.check(out, res) {
					b.Fatalf("%s: the script did not do its work", bb.name)
				}
			}
		})
	}
}

// BenchmarkClone is the proto.Clone that the view benchmarks include.
func BenchmarkClone(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		proto.Clone(req)
	}
}
