package protojs

import (
	"testing"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// benchRequest is a SendEventRequest of about 250 bytes of JSON: two string
// fields and a four-key Struct.
func benchRequest(b *testing.B) *eventsv1.SendEventRequest {
	data, err := structpb.NewStruct(map[string]any{
		"title":    "Your order #1042 has shipped and arrives on Thursday",
		"orderId":  "ord_8f14e45fceea167a5a36dedd4bea2543",
		"quantity": 3.0,
		"urgent":   false,
	})
	if err != nil {
		b.Fatal(err)
	}
	return &eventsv1.SendEventRequest{
		ToUserId:  "user_c9f0f895fb98ab9159f51fd0297e236d",
		EventType: "commerce.order.shipped",
		EventData: data,
	}
}

// BenchmarkRoundTrip converts a request to a JavaScript value and back into
// a fresh message, in a reused runtime.
func BenchmarkRoundTrip(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		v := ToValue(vm, req.ProtoReflect())
		out := &eventsv1.SendEventRequest{}
		if err := FromValue(vm, v, out.ProtoReflect()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProtojsonBaseline does the same through JSON text:
// protojson.Marshal, JSON.parse, JSON.stringify, protojson.Unmarshal.
func BenchmarkProtojsonBaseline(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	jsonObj := vm.Get("JSON").ToObject(vm)
	parse, _ := goja.AssertFunction(jsonObj.Get("parse"))
	stringify, _ := goja.AssertFunction(jsonObj.Get("stringify"))
	b.ReportAllocs()
	for b.Loop() {
		text, err := protojson.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		v, err := parse(goja.Undefined(), vm.ToValue(string(text)))
		if err != nil {
			b.Fatal(err)
		}
		s, err := stringify(goja.Undefined(), v)
		if err != nil {
			b.Fatal(err)
		}
		out := &eventsv1.SendEventRequest{}
		if err := protojson.Unmarshal([]byte(s.String()), out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkToValue and BenchmarkFromValue split the round trip.
func BenchmarkToValue(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		ToValue(vm, req.ProtoReflect())
	}
}

func BenchmarkFromValue(b *testing.B) {
	vm := goja.New()
	req := benchRequest(b)
	v := ToValue(vm, req.ProtoReflect())
	b.ReportAllocs()
	for b.Loop() {
		out := &eventsv1.SendEventRequest{}
		if err := FromValue(vm, v, out.ProtoReflect()); err != nil {
			b.Fatal(err)
		}
	}
}
