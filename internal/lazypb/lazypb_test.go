package lazypb_test

import (
	"bytes"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// event is a request whose eventData, a Struct, holds most of its bytes.
func event(t *testing.T) []byte {
	t.Helper()
	data, err := structpb.NewStruct(map[string]any{
		"title": "Weekly summary", "score": 1250, "tags": []any{"a", "b"},
		"location": map[string]any{"city": "Lisbon"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&eventsv1.SendEventRequest{ToUserId: "u-1", EventType: "weekly", EventData: data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var eventDesc = (&eventsv1.SendEventRequest{}).ProtoReflect().Descriptor()

// holders are the two kinds of messages a Type may hold its decoded fields
// in: dynamicpb's (NewType), and a generated type's (NewTypeOf). Each
// returns the Type of like's messages, and a new message of the held type.
var holders = []struct {
	name string
	of   func(like proto.Message) (*lazypb.Type, func() protoreflect.Message)
}{
	{"dynamicpb", func(like proto.Message) (*lazypb.Type, func() protoreflect.Message) {
		md := like.ProtoReflect().Descriptor()
		return lazypb.NewType(md), func() protoreflect.Message { return dynamicpb.NewMessage(md) }
	}},
	{"generated", func(like proto.Message) (*lazypb.Type, func() protoreflect.Message) {
		mt := like.ProtoReflect().Type()
		return lazypb.NewTypeOf(mt), mt.New
	}},
}

// withEachHolder runs test once for each of holders, with the Type of
// like's messages and a maker of messages of the held type.
func withEachHolder(t *testing.T, like proto.Message, test func(t *testing.T, typ *lazypb.Type, held func() protoreflect.Message)) {
	for _, h := range holders {
		t.Run(h.name, func(t *testing.T) {
			typ, held := h.of(like)
			test(t, typ, held)
		})
	}
}

func decode(t *testing.T, md protoreflect.MessageDescriptor, b []byte) *lazypb.Message {
	t.Helper()
	return decodeAs(t, lazypb.NewType(md), b)
}

func decodeAs(t *testing.T, typ *lazypb.Type, b []byte) *lazypb.Message {
	t.Helper()
	m := typ.NewMessage()
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// marshal encodes m, and checks that proto.Size, which lazypb answers
// without encoding, is the length of what it encodes to.
func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	n := proto.Size(m)
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b) {
		t.Fatalf("proto.Size = %d; want %d, the length of what it encodes to", n, len(b))
	}
	return b
}

// same fails unless a and b, wire bytes of messages of md, decode to equal
// messages.
func same(t *testing.T, md protoreflect.MessageDescriptor, a, b []byte) {
	t.Helper()
	x, y := dynamicpb.NewMessage(md), dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(a, x); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, y); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(x, y) {
		t.Fatalf("got %v; want %v", x, y)
	}
}

func TestAMessageNobodyChangedMarshalsToTheBytesItCameIn(t *testing.T) {
	withEachHolder(t, &eventsv1.SendEventRequest{}, nobodyChanged)
}

func nobodyChanged(t *testing.T, typ *lazypb.Type, _ func() protoreflect.Message) {
	b := event(t)
	b = append(b, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "again")...) // to_user_id twice
	m := decodeAs(t, typ, b)
	if got := marshal(t, m); !bytes.Equal(got, b) {
		t.Fatalf("marshal: %x; want the bytes it came in, %x", got, b)
	}
	// Reading a string, or cloning, changes nothing.
	if got := m.Get(eventDesc.Fields().ByName("to_user_id")).String(); got != "again" {
		t.Fatalf("to_user_id %q; want the last one, again", got)
	}
	c := proto.Clone(m)
	for name, msg := range map[string]proto.Message{"the message read": m, "its clone": c} {
		if got := marshal(t, msg); !bytes.Equal(got, b) {
			t.Fatalf("marshal of %s: %x; want the bytes it came in, %x", name, got, b)
		}
	}
	// A clone changes apart from its original.
	c.ProtoReflect().Set(eventDesc.Fields().ByName("to_user_id"), protoreflect.ValueOfString("other"))
	if got := marshal(t, m); !bytes.Equal(got, b) {
		t.Fatalf("marshal after its clone changed: %x; want the bytes it came in, %x", got, b)
	}
	// Reading a message field hands out a value that may change: the
	// message is encoded again, to the same content.
	m.Get(eventDesc.Fields().ByName("event_data"))
	same(t, eventDesc, marshal(t, m), b)
}

// TestFieldsDecodeAsTheirHolderDecodesThem: whatever is read or changed, a
// lazy message answers and encodes as a message of the type it holds its
// fields in (dynamicpb's, or a generated one) given the same bytes and the
// same changes.
func TestFieldsDecodeAsTheirHolderDecodesThem(t *testing.T) {
	withEachHolder(t, &eventsv1.SendEventRequest{}, decodeAsHeld)
}

func decodeAsHeld(t *testing.T, lt *lazypb.Type, held func() protoreflect.Message) {
	fields := eventDesc.Fields()
	user, typ, data := fields.ByName("to_user_id"), fields.ByName("event_type"), fields.ByName("event_data")
	for _, tt := range []struct {
		name   string
		change func(m protoreflect.Message)
	}{
		{"set a string", func(m protoreflect.Message) { m.Set(typ, protoreflect.ValueOfString("checked")) }},
		{"clear a string", func(m protoreflect.Message) { m.Clear(user) }},
		{"change a map in a message", func(m protoreflect.Message) {
			st := m.Mutable(data).Message()
			mp := st.Mutable(st.Descriptor().Fields().ByName("fields")).Map()
			mp.Clear(protoreflect.ValueOfString("title").MapKey())
		}},
		{"read everything", func(m protoreflect.Message) {
			m.Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool { return true })
		}},
		{"drop the unknown fields", func(m protoreflect.Message) { m.SetUnknown(nil) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := event(t)
			b = protowire.AppendTag(b, 99, protowire.VarintType) // an unknown field
			b = protowire.AppendVarint(b, 7)
			want := held()
			if err := proto.Unmarshal(b, want.Interface()); err != nil {
				t.Fatal(err)
			}
			got := decodeAs(t, lt, b)
			tt.change(want)
			tt.change(got)
			same(t, eventDesc, marshal(t, got), marshal(t, want.Interface()))
			if !proto.Equal(proto.Clone(got), want.Interface()) {
				t.Fatalf("a clone of %v; want %v", got, want)
			}
			det := proto.MarshalOptions{Deterministic: true}
			a, err := det.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if w, _ := det.Marshal(want.Interface()); !bytes.Equal(a, w) {
				t.Fatalf("deterministic marshal %x; want its holder's %x", a, w)
			}
		})
	}
}

// TestTheLastMemberOfAOneofWins: a oneof decodes whole, so the member that
// came last is the one set, and setting another drops every member that
// came.
func TestTheLastMemberOfAOneofWins(t *testing.T) {
	withEachHolder(t, &structpb.Value{}, lastMemberWins)
}

func lastMemberWins(t *testing.T, typ *lazypb.Type, _ func() protoreflect.Message) {
	md := typ.Descriptor()
	b := marshal(t, structpb.NewStringValue("first"))
	b = append(b, marshal(t, structpb.NewNumberValue(2))...)
	m := decodeAs(t, typ, b)
	num := md.Fields().ByName("number_value")
	if !m.Has(num) || m.Get(num).Float() != 2 {
		t.Fatalf("number_value %v; want 2, the member that came last", m.Get(num))
	}
	m = decodeAs(t, typ, b)
	m.Set(md.Fields().ByName("bool_value"), protoreflect.ValueOfBool(true))
	same(t, md, marshal(t, m), marshal(t, structpb.NewBoolValue(true)))
	if od := md.Oneofs().ByName("kind"); decodeAs(t, typ, b).WhichOneof(od) != num {
		t.Fatal("WhichOneof is not number_value, the member that came last")
	}
}

// simple is a request with a message in it, payload, which is not a
// well-known type.
func simple(t *testing.T) []byte {
	return marshal(t, &testgrpc.SimpleRequest{ResponseSize: 3, Payload: &testgrpc.Payload{Body: []byte("abc")}})
}

var simpleDesc = (&testgrpc.SimpleRequest{}).ProtoReflect().Descriptor()

// inPayload is a payload field (3) holding inner.
func inPayload(inner []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), inner)
}

func TestUnknownFieldsAreFoundAtAnyDepth(t *testing.T) {
	newField := protowire.AppendString(protowire.AppendTag(nil, 42, protowire.BytesType), "new")
	wrongType := protowire.AppendFixed64(protowire.AppendTag(nil, 2, protowire.Fixed64Type), 1) // response_size is a varint
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"none", simple(t), false},
		{"in it", append(simple(t), newField...), true},
		{"in a message in it", append(simple(t), inPayload(newField)...), true},
		{"a known field with a wire type it does not allow", append(simple(t), wrongType...), true},
	} {
		if got := decode(t, simpleDesc, tt.b).Unknown(); got != tt.want {
			t.Errorf("%s: Unknown() = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestAMessageWhoseBytesAreBrokenDoesNotUnmarshal(t *testing.T) {
	b := simple(t)
	cut := []byte{0x12, 100, 'x'} // body: 100 bytes long, but 1 follows
	for name, bad := range map[string][]byte{"cut": b[:len(b)-1], "cut in a message in it": append(simple(t), inPayload(cut)...)} {
		if err := proto.Unmarshal(bad, lazypb.NewType(simpleDesc).NewMessage()); err == nil {
			t.Errorf("%s: Unmarshal succeeded; want an error", name)
		}
	}
}

// TestAFieldThatDoesNotDecode: what only decoding finds goes through as it
// came while the field is not decoded; once it is, it shows in Err and
// fails the marshal.
func TestAFieldThatDoesNotDecode(t *testing.T) {
	withEachHolder(t, &eventsv1.SendEventRequest{}, doesNotDecode)
}

func doesNotDecode(t *testing.T, typ *lazypb.Type, _ func() protoreflect.Message) {
	bad := protowire.AppendTag(nil, 1, protowire.BytesType) // to_user_id, a proto3 string
	bad = protowire.AppendBytes(bad, []byte{0xff})
	m := decodeAs(t, typ, bad)
	if got := marshal(t, m); !bytes.Equal(got, bad) {
		t.Fatalf("marshal before decoding: %x; want the bytes as they came, %x", got, bad)
	}
	m.Get(eventDesc.Fields().ByName("to_user_id"))
	if _, err := proto.Marshal(m); err == nil {
		t.Fatal("marshal succeeded; want the field's error")
	}
	if m.Err() == nil {
		t.Fatal("Err() = nil after the failed decode")
	}
}

// TestRequiredFieldsAreCheckedOnlyWhereThereMayBeSome: a message of a type
// that holds no required field is initialized without being decoded.
func TestRequiredFieldsAreCheckedOnlyWhereThereMayBeSome(t *testing.T) {
	part := (&descriptorpb.UninterpretedOption_NamePart{}).ProtoReflect().Descriptor()
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(&descriptorpb.UninterpretedOption_NamePart{NamePart: proto.String("x")}) // is_extension unset
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.CheckInitialized(decode(t, part, b)); err == nil {
		t.Fatal("CheckInitialized: nil; want the missing required field")
	}
	bad := protowire.AppendTag(nil, 1, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff})
	m := decode(t, eventDesc, bad)
	if err := proto.CheckInitialized(m); err != nil || m.Err() != nil {
		t.Fatalf("CheckInitialized of a type with no required field: %v, Err %v; want nil, and nothing decoded", err, m.Err())
	}
}

// TestCheckingRequiredFieldsDecodesNothing: a message of a type that may
// hold required fields (here, a proto2 type with an extension range) is
// checked without decoding it, so a field that does not decode, and that
// nothing read, still goes as it came once another field is set.
func TestCheckingRequiredFieldsDecodesNothing(t *testing.T) {
	files := new(protoregistry.Files)
	if err := files.RegisterFile(structpb.File_google_protobuf_struct_proto); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("made/up.proto"), Package: proto.String("made.up"), Syntax: proto.String("proto2"),
		Dependency: []string{"google/protobuf/struct.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Thing"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("data"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".google.protobuf.Struct"), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
				{Name: proto.String("name"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
			},
			ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(200)}},
		}},
	}, files)
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().Get(0)
	// data: a Struct whose one key is not UTF-8.
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff")
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0))
	data := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), entry))
	m := decode(t, md, data)
	m.Set(md.Fields().ByName("name"), protoreflect.ValueOfString("x"))
	got, err := proto.Marshal(m) // checks required fields
	if err != nil {
		t.Fatalf("marshal: %v; want the undecoded field as it came", err)
	}
	if !bytes.HasPrefix(got, data) || m.Err() != nil {
		t.Fatalf("marshal %x, Err %v; want %x first, as it came, and no error", got, m.Err(), data)
	}
}
