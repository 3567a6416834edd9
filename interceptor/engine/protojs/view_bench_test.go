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

// BenchmarkViewSetField clones the request of BenchmarkRoundTrip, wraps it
// in a view and runs a script that sets one field, in a reused runtime.
func BenchmarkViewSetField(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	fn := benchFunc(b, vm, `m.eventType = "checked"`)
	b.ReportAllocs()
	for b.Loop() {
		m := proto.Clone(req).(*eventsv1.SendEventRequest)
		obj, v := NewView(vm, m.ProtoReflect())
		if _, err := fn(goja.Undefined(), obj); err != nil {
			b.Fatal(err)
		}
		if err := v.Err(); err != nil {
			b.Fatal(err)
		}
		if m.EventType != "checked" {
			b.Fatal("not set")
		}
	}
}

// BenchmarkViewSetFieldInPlace is BenchmarkViewSetField without the
// clone: the view's own cost.
func BenchmarkViewSetFieldInPlace(b *testing.B) {
	vm := goja.New()
	m := benchRequest(b)
	fn := benchFunc(b, vm, `m.eventType = "checked"`)
	b.ReportAllocs()
	for b.Loop() {
		obj, v := NewView(vm, m.ProtoReflect())
		if _, err := fn(goja.Undefined(), obj); err != nil {
			b.Fatal(err)
		}
		if err := v.Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkViewReadField does the same with a script that reads one string
// field.
func BenchmarkViewReadField(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	fn := benchFunc(b, vm, `return m.toUserId`)
	b.ReportAllocs()
	for b.Loop() {
		m := proto.Clone(req).(*eventsv1.SendEventRequest)
		obj, v := NewView(vm, m.ProtoReflect())
		res, err := fn(goja.Undefined(), obj)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.Err(); err != nil || res.String() != req.ToUserId {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkViewStructAssign runs the core of the first seed script on a
// view: Object.assign of one key into the request's Struct.
func BenchmarkViewStructAssign(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	fn := benchFunc(b, vm, `Object.assign(m.eventData, {source: "hook"})`)
	b.ReportAllocs()
	for b.Loop() {
		m := proto.Clone(req).(*eventsv1.SendEventRequest)
		obj, v := NewView(vm, m.ProtoReflect())
		if _, err := fn(goja.Undefined(), obj); err != nil {
			b.Fatal(err)
		}
		if err := v.Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNativeSetField is BenchmarkViewSetField on the native path:
// ToValue, the same script, FromValue into a fresh message.
func BenchmarkNativeSetField(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	fn := benchFunc(b, vm, `m.eventType = "checked"`)
	b.ReportAllocs()
	for b.Loop() {
		obj := ToValue(vm, req.ProtoReflect())
		if _, err := fn(goja.Undefined(), obj); err != nil {
			b.Fatal(err)
		}
		out := &eventsv1.SendEventRequest{}
		if err := FromValue(vm, obj, out.ProtoReflect()); err != nil {
			b.Fatal(err)
		}
		if out.EventType != "checked" {
			b.Fatal("not set")
		}
	}
}

// BenchmarkNativeStructAssign is BenchmarkViewStructAssign on the native
// path.
func BenchmarkNativeStructAssign(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	fn := benchFunc(b, vm, `Object.assign(m.eventData, {source: "hook"})`)
	b.ReportAllocs()
	for b.Loop() {
		obj := ToValue(vm, req.ProtoReflect())
		if _, err := fn(goja.Undefined(), obj); err != nil {
			b.Fatal(err)
		}
		out := &eventsv1.SendEventRequest{}
		if err := FromValue(vm, obj, out.ProtoReflect()); err != nil {
			b.Fatal(err)
		}
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
