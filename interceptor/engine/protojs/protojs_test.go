package protojs

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	testingv1 "github.com/apihooks/apihooks/gen/apihooks/testing/v1"
	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// stringify runs JSON.stringify(v) in vm.
func stringify(t testing.TB, vm *goja.Runtime, v goja.Value) string {
	t.Helper()
	fn, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	if !ok {
		t.Fatal("JSON.stringify is not a function")
	}
	out, err := fn(goja.Undefined(), v)
	if err != nil {
		t.Fatalf("JSON.stringify: %v", err)
	}
	return out.String()
}

// parse runs JSON.parse(s) in vm.
func parse(t testing.TB, vm *goja.Runtime, s string) goja.Value {
	t.Helper()
	fn, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
	if !ok {
		t.Fatal("JSON.parse is not a function")
	}
	out, err := fn(goja.Undefined(), vm.ToValue(s))
	if err != nil {
		t.Fatalf("JSON.parse(%s): %v", s, err)
	}
	return out
}

// assertSameJSON checks that two JSON texts denote the same value.
func assertSameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", got, want)
	}
}

func nested(name string, count int64, tags ...string) *testingv1.Nested {
	return &testingv1.Nested{Name: name, Count: count, Tags: tags}
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustStruct(t testing.TB, v map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func equivalenceCases(t testing.TB) []struct {
	name string
	msg  *testingv1.AllTypes
} {
	ts := timestamppb.New(time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC))
	return []struct {
		name string
		msg  *testingv1.AllTypes
	}{
		{"empty", &testingv1.AllTypes{}},
		{"scalars", &testingv1.AllTypes{
			FDouble: 1.5, FFloat: 0.1, FInt32: -42, FInt64: -1 << 60, FUint32: math.MaxUint32,
			FUint64: math.MaxUint64, FSint32: math.MinInt32, FSint64: math.MinInt64, FFixed32: 7,
			FFixed64: 1<<53 + 1, FSfixed32: -7, FSfixed64: math.MaxInt64, FBool: true,
			FString: "héllo 🌍 \u0000 \"q\"", FBytes: []byte{0, 1, 2, 0xfb, 0xff}, FEnum: testingv1.Color_COLOR_GREEN,
		}},
		{"int64 just beyond 2^53", &testingv1.AllTypes{FInt64: 1<<53 + 1, FUint64: 1<<63 + 3, FSint64: -(1<<53 + 1)}},
		{"float extremes", &testingv1.AllTypes{FDouble: math.MaxFloat64, FFloat: math.MaxFloat32, RDouble: []float64{math.SmallestNonzeroFloat64, math.Copysign(0, -1), 1e21, 1e-7, 123456789.125}}},
		{"nan and infinities", &testingv1.AllTypes{FDouble: math.NaN(), FFloat: float32(math.Inf(-1)), RDouble: []float64{math.Inf(1), math.Inf(-1), math.NaN()}}},
		{"unknown enum numbers", &testingv1.AllTypes{FEnum: 99, REnum: []testingv1.Color{testingv1.Color_COLOR_RED, -5, 0}, MEnum: map[uint64]testingv1.Color{1: 7}}},
		{"presence with zero values", &testingv1.AllTypes{OString: proto.String(""), OInt32: proto.Int32(0)}},
		{"presence with values", &testingv1.AllTypes{OString: proto.String("x"), OInt32: proto.Int32(-3)}},
		{"nested", &testingv1.AllTypes{FNested: nested("n", 1<<62, "a", "b")}},
		{"empty nested", &testingv1.AllTypes{FNested: &testingv1.Nested{}}},
		{"repeated", &testingv1.AllTypes{
			RInt32: []int32{1, -2, 0}, RInt64: []int64{math.MinInt64, 0, 5}, RString: []string{"", "x", "ü"},
			REnum: []testingv1.Color{0, 1, 2}, RNested: []*testingv1.Nested{nested("a", 1, "t1", "t2"), {}},
			RBytes: [][]byte{{}, []byte("hello"), {0xff, 0xfe}}, RDouble: []float64{0, 1.25, -3},
		}},
		{"maps", &testingv1.AllTypes{
			MString: map[string]string{"b": "2", "a": "1", "": "empty", "ключ": "v"},
			MNested: map[int32]*testingv1.Nested{-1: nested("neg", 0), 10: nested("ten", 10), 2: {}},
			MBool:   map[bool]int64{true: 1 << 60, false: -1},
			MEnum:   map[uint64]testingv1.Color{math.MaxUint64: testingv1.Color_COLOR_RED, 0: 0},
		}},
		{"oneof string", &testingv1.AllTypes{Choice: &testingv1.AllTypes_CString{CString: ""}}},
		{"oneof nested", &testingv1.AllTypes{Choice: &testingv1.AllTypes_CNested{CNested: nested("c", 3)}}},
		{"oneof int32 zero", &testingv1.AllTypes{Choice: &testingv1.AllTypes_CInt32{CInt32: 0}}},
		{"struct", &testingv1.AllTypes{WStruct: mustStruct(t, map[string]any{
			"s": "str", "n": 1.5, "i": 42.0, "b": false, "null": nil,
			"list": []any{1.0, "two", true, nil, []any{}, map[string]any{}},
			"obj":  map[string]any{"deep": map[string]any{"x": []any{map[string]any{"y": "z"}}}},
			"big":  1e300, "neg": -0.5, "unicode ключ": "値",
		})}},
		{"empty struct and list", &testingv1.AllTypes{WStruct: &structpb.Struct{}, WList: &structpb.ListValue{}}},
		{"value kinds", &testingv1.AllTypes{
			WValue: structpb.NewNullValue(),
			RValue: []*structpb.Value{
				structpb.NewNullValue(), structpb.NewBoolValue(true), structpb.NewNumberValue(-2.5),
				structpb.NewStringValue("s"), structpb.NewStructValue(mustStruct(t, map[string]any{"a": 1.0})),
				structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1)}}),
			},
			MValue: map[string]*structpb.Value{"n": structpb.NewNullValue(), "s": structpb.NewStringValue("x"), "e": structpb.NewStructValue(&structpb.Struct{})},
		}},
		{"value string", &testingv1.AllTypes{WValue: structpb.NewStringValue("NaN")}},
		{"list value", &testingv1.AllTypes{WList: &structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewNullValue(), structpb.NewListValue(&structpb.ListValue{})}}}},
		{"timestamps and durations", &testingv1.AllTypes{WTimestamp: ts, WDuration: durationpb.New(-1500 * time.Millisecond)}},
		{"timestamp edges", &testingv1.AllTypes{WTimestamp: &timestamppb.Timestamp{Seconds: -62135596800}, WDuration: &durationpb.Duration{Seconds: 315576000000, Nanos: 999999999}}},
		{"timestamp micro", &testingv1.AllTypes{WTimestamp: &timestamppb.Timestamp{Seconds: 1, Nanos: 1000}, WDuration: &durationpb.Duration{Nanos: -1}}},
		{"zero timestamp and duration", &testingv1.AllTypes{WTimestamp: &timestamppb.Timestamp{}, WDuration: &durationpb.Duration{}}},
		{"wrappers", &testingv1.AllTypes{
			WInt64: wrapperspb.Int64(-1 << 62), WString: wrapperspb.String("w"), WBool: wrapperspb.Bool(false),
			WBytes: wrapperspb.Bytes([]byte("bytes")), WDouble: wrapperspb.Double(math.Inf(1)), WUint32: wrapperspb.UInt32(0),
		}},
		{"field mask and empty", &testingv1.AllTypes{WFieldMask: &fieldmaskpb.FieldMask{Paths: []string{"f_string", "f_nested.name", "w_any"}}, WEmpty: &emptypb.Empty{}}},
		{"empty field mask", &testingv1.AllTypes{WFieldMask: &fieldmaskpb.FieldMask{}}},
		{"any nested", &testingv1.AllTypes{WAny: mustAny(t, nested("in any", -5, "x"))}},
		{"any timestamp", &testingv1.AllTypes{WAny: mustAny(t, ts)}},
		{"any struct", &testingv1.AllTypes{WAny: mustAny(t, mustStruct(t, map[string]any{"k": []any{"v"}}))}},
		{"any empty", &testingv1.AllTypes{WAny: mustAny(t, &emptypb.Empty{})}},
		{"any of any", &testingv1.AllTypes{WAny: mustAny(t, mustAny(t, wrapperspb.Int64(5)))}},
		{"any of all types", &testingv1.AllTypes{WAny: mustAny(t, &testingv1.AllTypes{FInt64: 3, MBool: map[bool]int64{true: 1}, WValue: structpb.NewBoolValue(true)})}},
		{"empty any", &testingv1.AllTypes{WAny: &anypb.Any{}}},
	}
}

// toDynamic copies m into a dynamicpb message, so the generic (non-generated)
// code paths are exercised too.
func toDynamic(t testing.TB, m proto.Message) *dynamicpb.Message {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dm := dynamicpb.NewMessage(m.ProtoReflect().Descriptor())
	if err := proto.Unmarshal(b, dm); err != nil {
		t.Fatal(err)
	}
	return dm
}

func TestEquivalence(t *testing.T) {
	vm := goja.New()
	for _, tc := range equivalenceCases(t) {
		for _, dynamic := range []bool{false, true} {
			name := tc.name
			var m proto.Message = tc.msg
			newMsg := func() proto.Message { return &testingv1.AllTypes{} }
			if dynamic {
				name += "/dynamic"
				m = toDynamic(t, tc.msg)
				newMsg = func() proto.Message { return dynamicpb.NewMessage(m.ProtoReflect().Descriptor()) }
			}
			t.Run(name, func(t *testing.T) {
				pj, err := protojson.Marshal(m)
				if err != nil {
					t.Fatalf("protojson.Marshal: %v", err)
				}
				// JSON.stringify(ToValue(m)) is protojson's JSON.
				v := ToValue(vm, m.ProtoReflect())
				assertSameJSON(t, stringify(t, vm, v), string(pj))

				// FromValue(JSON.parse(protojson text)) gives m back.
				got := newMsg()
				if err := FromValue(vm, parse(t, vm, string(pj)), got.ProtoReflect()); err != nil {
					t.Fatalf("FromValue(JSON.parse(%s)): %v", pj, err)
				}
				if !proto.Equal(got, m) {
					t.Errorf("FromValue(JSON.parse(protojson)) = %v, want %v", got, m)
				}

				// FromValue(ToValue(m)) round-trips.
				got = newMsg()
				if err := FromValue(vm, v, got.ProtoReflect()); err != nil {
					t.Fatalf("FromValue(ToValue(m)): %v", err)
				}
				if !proto.Equal(got, m) {
					t.Errorf("FromValue(ToValue(m)) = %v, want %v", got, m)
				}
			})
		}
	}
}

func TestKeyOrderMatchesProtojson(t *testing.T) {
	vm := goja.New()
	// JavaScript lists integer-like keys first whatever their insertion
	// order, so the int-keyed map is left out here.
	m := &testingv1.AllTypes{
		FString: "s", FInt32: 1, WAny: mustAny(t, nested("n", 1)), RString: []string{"r"},
		MString: map[string]string{"b": "", "a": "", "c": ""},
		WStruct: mustStruct(t, map[string]any{"z": 1.0, "a": 2.0, "m": 3.0}),
		Choice:  &testingv1.AllTypes_CString{CString: "c"},
	}
	pj, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, pj); err != nil {
		t.Fatal(err)
	}
	got := stringify(t, vm, ToValue(vm, m.ProtoReflect()))
	if got != compact.String() {
		t.Errorf("key order differs\n got: %s\nwant: %s", got, compact.String())
	}
}

func TestFromValueAcceptance(t *testing.T) {
	tests := []struct {
		name    string
		js      string
		want    string // protojson text of the expected message
		wantErr string // substring of the error, including the path
		// deviation marks inputs on which FromValue deliberately differs
		// from protojson applied to JSON.stringify's output, or that
		// JSON.stringify cannot render.
		deviation bool
	}{
		{name: "empty", js: `({})`, want: `{}`},
		{name: "json names", js: `({fString: "a", fInt32: 1, fNested: {name: "n"}})`, want: `{"fString":"a","fInt32":1,"fNested":{"name":"n"}}`},
		{name: "proto names", js: `({f_string: "a", f_int32: 1, o_int32: 0, r_nested: [{tags: []}], w_struct: {}})`, want: `{"fString":"a","fInt32":1,"oInt32":0,"rNested":[{}],"wStruct":{}}`},
		{name: "quoted ints", js: `({fInt32: "-12", fInt64: "9223372036854775807", fUint64: "18446744073709551615", fUint32: "4294967295", rInt64: ["1", 2]})`, want: `{"fInt32":-12,"fInt64":"9223372036854775807","fUint64":"18446744073709551615","fUint32":4294967295,"rInt64":["1","2"]}`},
		{name: "exponent ints", js: `({fInt32: "1e3", fInt64: "1.5e1", fUint32: 2e3, fSint64: "-0"})`, want: `{"fInt32":1000,"fInt64":"15","fUint32":2000}`},
		{name: "integral float number", js: `({fInt32: 5.0, fInt64: 2**60, fUint64: 2**64 - 2**11})`, want: `{"fInt32":5,"fInt64":"1152921504606847000","fUint64":"18446744073709550000"}`},
		{name: "int64 beyond 2^53 as number reads its printed digits", js: `({fInt64: 9007199254740993})`, want: `{"fInt64":"9007199254740992"}`},
		{name: "enum names and numbers", js: `({fEnum: 2, rEnum: ["COLOR_RED", 0, 42], mEnum: {"5": "COLOR_GREEN"}})`, want: `{"fEnum":"COLOR_GREEN","rEnum":["COLOR_RED","COLOR_UNSPECIFIED",42],"mEnum":{"5":"COLOR_GREEN"}}`},
		{name: "url base64 unpadded", js: `({fBytes: "-_8", rBytes: ["+/8=", "+/8", "", "AA=="]})`, want: `{"fBytes":"+/8=","rBytes":["+/8=","+/8=","","AA=="]}`},
		{name: "null means unset", js: `({fString: null, fNested: null, rString: null, mString: null, wStruct: null, wTimestamp: null, wInt64: null, cString: null, cInt32: 4})`, want: `{"cInt32":4}`},
		{name: "undefined means absent", js: `({fString: undefined, f_string: "x", fNested: undefined})`, want: `{"fString":"x"}`},
		{name: "null value", js: `({wValue: null, rValue: [null, 1, "s", true, {a: null}, [null]], mValue: {k: null}})`, want: `{"wValue":null,"rValue":[null,1,"s",true,{"a":null},[null]],"mValue":{"k":null}}`},
		{name: "float strings", js: `({fDouble: "NaN", fFloat: "-Infinity", rDouble: ["Infinity", "1.5", "-2e3", 7]})`, want: `{"fDouble":"NaN","fFloat":"-Infinity","rDouble":["Infinity",1.5,-2000,7]}`},
		{name: "map keys of every kind", js: `({mBool: {"true": "1", "false": 2}, mNested: {"-3": {}, "+4": {name: "plus"}}, mEnum: {"18446744073709551615": 1}})`, want: `{"mBool":{"true":"1","false":"2"},"mNested":{"-3":{},"4":{"name":"plus"}},"mEnum":{"18446744073709551615":"COLOR_RED"}}`},
		{name: "timestamp with offset", js: `({wTimestamp: "2024-01-02T03:04:05.5+01:00"})`, want: `{"wTimestamp":"2024-01-02T02:04:05.500Z"}`},
		{name: "date for timestamp", js: `({wTimestamp: new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 678))})`, want: `{"wTimestamp":"2020-01-02T03:04:05.678Z"}`},
		{name: "date in struct", js: `({wStruct: {at: new Date(0)}})`, want: `{"wStruct":{"at":"1970-01-01T00:00:00.000Z"}}`},
		{name: "duration forms", js: `({wDuration: "+.5s"})`, want: `{"wDuration":"0.500s"}`},
		{name: "wrappers", js: `({wInt64: 5, wString: "", wBool: false, wBytes: "AQ", wDouble: "NaN", wUint32: "7"})`, want: `{"wInt64":"5","wString":"","wBool":false,"wBytes":"AQ==","wDouble":"NaN","wUint32":7}`},
		{name: "field mask", js: `({wFieldMask: " fString,fNested.name "})`, want: `{"wFieldMask":"fString,fNested.name"}`},
		{name: "empty", js: `({wEmpty: {}})`, want: `{"wEmpty":{}}`},
		{name: "any nested", js: `({wAny: {"@type": "type.googleapis.com/apihooks.testing.v1.Nested", count: "3", name: "x"}})`, want: `{"wAny":{"@type":"type.googleapis.com/apihooks.testing.v1.Nested","name":"x","count":"3"}}`},
		{name: "any wkt", js: `({wAny: {value: "1s", "@type": "type.googleapis.com/google.protobuf.Duration"}})`, want: `{"wAny":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}}`},
		{name: "any empty without value", js: `({wAny: {"@type": "type.googleapis.com/google.protobuf.Empty"}})`, want: `{"wAny":{"@type":"type.googleapis.com/google.protobuf.Empty","value":{}}}`},
		{name: "empty any", js: `({wAny: {}})`, want: `{"wAny":{}}`},
		{name: "array holes are null", js: `({rValue: [1, , 3], wList: [undefined]})`, want: `{"rValue":[1,null,3],"wList":[null]}`},
		{name: "boxed primitives", js: `({fString: new String("s"), fInt32: new Number(3), fBool: new Boolean(true)})`, want: `{"fString":"s","fInt32":3,"fBool":true}`},
		{name: "getter", js: `({get fString() { return "g" }})`, want: `{"fString":"g"}`},
		{name: "inherited properties are ignored", js: `Object.create({fString: "inherited"}, {fInt32: {value: 1, enumerable: true}})`, want: `{"fInt32":1}`},
		{name: "non-enumerable properties are ignored", js: `Object.defineProperty({}, "fString", {value: "x", enumerable: false})`, want: `{}`},
		{name: "nan number for double", js: `({fDouble: NaN, rDouble: [Infinity, -Infinity]})`, want: `{"fDouble":"NaN","rDouble":["Infinity","-Infinity"]}`, deviation: true},
		{name: "bigint for int64", js: `({fInt64: 2n ** 63n - 1n, fUint64: 2n ** 64n - 1n, fInt32: -5n})`, want: `{"fInt64":"9223372036854775807","fUint64":"18446744073709551615","fInt32":-5}`, deviation: true},

		{name: "unknown field", js: `({fString: "a", bogus: 1})`, wantErr: `field "bogus": unknown field`},
		{name: "unknown nested field", js: `({rNested: [{}, {nam: "x"}]})`, wantErr: `field "rNested[1].nam": unknown field`},
		{name: "null for unknown field is still unknown", js: `({bogus: null})`, wantErr: `field "bogus": unknown field`},
		{name: "duplicate names", js: `({fString: "a", f_string: "b"})`, wantErr: `duplicate field`},
		{name: "two oneof members", js: `({cString: "a", cInt32: 1})`, wantErr: `oneof choice is already set`},
		{name: "string for number", js: `({fInt32: true})`, wantErr: `field "fInt32": want int32, got boolean`},
		{name: "number for string", js: `({fString: 5})`, wantErr: `field "fString": want string, got number`},
		{name: "fractional int", js: `({fInt32: 1.5})`, wantErr: `field "fInt32": invalid int32 value 1.5`},
		{name: "fractional int string", js: `({fInt64: "1.5"})`, wantErr: `field "fInt64": invalid int64 value "1.5"`},
		{name: "int32 out of range", js: `({fInt32: 2147483648})`, wantErr: `field "fInt32": int32 value 2147483648 out of range`},
		{name: "int64 out of range", js: `({fInt64: "9223372036854775808"})`, wantErr: `field "fInt64": int64 value "9223372036854775808" out of range`},
		{name: "uint negative", js: `({fUint32: -1})`, wantErr: `field "fUint32": uint32 value -1 out of range`},
		{name: "int64 2^63 as number", js: `({fInt64: 2**63})`, wantErr: `field "fInt64": int64 value`},
		{name: "int with spaces", js: `({fInt32: " 1"})`, wantErr: `field "fInt32": invalid int32 value`},
		{name: "int hex", js: `({fInt32: "0x10"})`, wantErr: `field "fInt32": invalid int32 value`},
		{name: "int leading zero", js: `({fInt32: "01"})`, wantErr: `field "fInt32": invalid int32 value`},
		{name: "int plus sign", js: `({fInt32: "+1"})`, wantErr: `field "fInt32": invalid int32 value`},
		{name: "float out of range", js: `({fFloat: 1e39})`, wantErr: `field "fFloat": float value`},
		{name: "double string out of range", js: `({fDouble: "1e400"})`, wantErr: `field "fDouble": invalid double value`},
		{name: "float bad string", js: `({rDouble: [1, "nan"]})`, wantErr: `field "rDouble[1]": invalid double value "nan"`},
		{name: "bad enum name", js: `({fEnum: "COLOR_BLUE"})`, wantErr: `field "fEnum": invalid value "COLOR_BLUE" for enum apihooks.testing.v1.Color`},
		{name: "enum name as number string", js: `({fEnum: "1"})`, wantErr: `field "fEnum": invalid value "1"`},
		{name: "fractional enum", js: `({rEnum: [1.5]})`, wantErr: `field "rEnum[0]": invalid value 1.5`},
		{name: "bad base64", js: `({fBytes: "!!!"})`, wantErr: `field "fBytes": invalid base64 value "!!!"`},
		{name: "bad timestamp", js: `({wTimestamp: "2024-13-01T00:00:00Z"})`, wantErr: `field "wTimestamp": invalid google.protobuf.Timestamp value`},
		{name: "timestamp without zone", js: `({wTimestamp: "2024-01-01T00:00:00"})`, wantErr: `field "wTimestamp": invalid google.protobuf.Timestamp`},
		{name: "timestamp out of range", js: `({wTimestamp: "0000-12-31T23:59:59Z"})`, wantErr: `field "wTimestamp": google.protobuf.Timestamp value "0000-12-31T23:59:59Z" out of range`},
		{name: "timestamp too precise", js: `({wTimestamp: "2024-01-01T00:00:00.1234567891Z"})`, wantErr: `field "wTimestamp": invalid google.protobuf.Timestamp`},
		{name: "timestamp number", js: `({wTimestamp: 0})`, wantErr: `field "wTimestamp": want RFC 3339 string, got number`},
		{name: "invalid date", js: `({wTimestamp: new Date(NaN), fString: new Date(NaN)})`, want: `{}`},
		{name: "bad duration", js: `({wDuration: "1m"})`, wantErr: `field "wDuration": invalid google.protobuf.Duration value "1m"`},
		{name: "duration too precise", js: `({wDuration: "0.0000000001s"})`, wantErr: `field "wDuration": invalid google.protobuf.Duration`},
		{name: "duration out of range", js: `({wDuration: "315576000001s"})`, wantErr: `field "wDuration": google.protobuf.Duration value "315576000001s" out of range`},
		{name: "field mask with underscore", js: `({wFieldMask: "f_string"})`, wantErr: `field "wFieldMask": google.protobuf.FieldMask contains invalid path: "f_string"`},
		{name: "struct not object", js: `({wStruct: [1]})`, wantErr: `field "wStruct": want object, got array`},
		{name: "list not array", js: `({rString: "a"})`, wantErr: `field "rString": want array, got string`},
		{name: "null in list", js: `({rString: ["a", null]})`, wantErr: `field "rString[1]": want string, got null`},
		{name: "null nested message in list", js: `({rNested: [null]})`, wantErr: `field "rNested[0]": want object, got null`},
		{name: "map not object", js: `({mString: [["a", "b"]]})`, wantErr: `field "mString": want object, got array`},
		{name: "bad map key", js: `({mNested: {x: {}}})`, wantErr: `field "mNested.x": invalid int32 map key "x"`},
		{name: "bad bool map key", js: `({mBool: {"True": "1"}})`, wantErr: `field "mBool.True": invalid bool map key`},
		{name: "duplicate map key", js: `({mNested: {"1": {}, "01": {}}})`, wantErr: `duplicate map key`},
		{name: "bad map value", js: `({mString: {"a b": 1}})`, wantErr: `field "mString["a b"]": want string, got number`},
		{name: "null scalar map value", js: `({mString: {a: null}})`, wantErr: `field "mString.a": want string, got null`},
		{name: "list value not array", js: `({wList: {}})`, wantErr: `field "wList": want array, got object`},
		{name: "empty with field", js: `({wEmpty: {a: 1}})`, wantErr: `field "wEmpty.a": unknown field`},
		{name: "any without type", js: `({wAny: {name: "x"}})`, wantErr: `field "wAny": missing "@type" field`},
		{name: "any unknown type", js: `({wAny: {"@type": "type.googleapis.com/no.Such"}})`, wantErr: `field "wAny.@type": unable to resolve`},
		{name: "any wkt without value", js: `({wAny: {"@type": "type.googleapis.com/google.protobuf.Duration"}})`, wantErr: `field "wAny": missing "value" field`},
		{name: "any bad embedded field", js: `({wAny: {"@type": "type.googleapis.com/apihooks.testing.v1.Nested", count: "x"}})`, wantErr: `field "wAny.count": invalid int64 value "x"`},
		{name: "any wkt extra field", js: `({wAny: {"@type": "type.googleapis.com/google.protobuf.Duration", value: "1s", extra: 1}})`, wantErr: `field "wAny.extra": unknown field`},
		{name: "struct deep error", js: `({wStruct: {items: [1, 2, Symbol("s")]}})`, wantErr: `field "wStruct.items[2]": want JSON value, got symbol`, deviation: true},
		{name: "value nan", js: `({wValue: NaN})`, wantErr: `field "wValue": invalid google.protobuf.Value number NaN`, deviation: true},
		{name: "struct infinity", js: `({wStruct: {x: 1/0}})`, wantErr: `field "wStruct.x": invalid google.protobuf.Value number`, deviation: true},
		{name: "function", js: `({fString: function() {}})`, wantErr: `field "fString": want string, got function`, deviation: true},
		{name: "arrow function in struct", js: `({wStruct: {f: () => 1}})`, wantErr: `field "wStruct.f": want JSON value, got function`, deviation: true},
		{name: "bigint for double", js: `({fDouble: 1n})`, wantErr: `field "fDouble": want double, got bigint`, deviation: true},
		{name: "bigint out of range", js: `({fInt32: 2n ** 31n})`, wantErr: `field "fInt32": int32 value 2147483648 out of range`, deviation: true},
		{name: "top level array", js: `([])`, wantErr: `want object, got array`},
		{name: "top level null", js: `null`, wantErr: `want object, got null`},
		{name: "cycle", js: `(function() { var o = {}; o.self = o; return {wStruct: o}; })()`, wantErr: `exceeded max recursion depth`, deviation: true},
		{name: "throwing getter", js: `({get fString() { throw new Error("boom") }})`, wantErr: `boom`, deviation: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := goja.New()
			v, err := vm.RunString(tc.js)
			if err != nil {
				t.Fatalf("evaluating %s: %v", tc.js, err)
			}
			got := &testingv1.AllTypes{}
			err = FromValue(vm, v, got.ProtoReflect())

			// What protojson makes of the JSON text of the same value.
			var pjErr error
			var pjMsg *testingv1.AllTypes
			if !tc.deviation {
				text := stringify(t, vm, v)
				pjMsg = &testingv1.AllTypes{}
				pjErr = protojson.Unmarshal([]byte(text), pjMsg)
			}

			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("FromValue succeeded with %v, want error containing %q", got, tc.wantErr)
				}
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Errorf("error %T %v is not a *FieldError", err, err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if !tc.deviation && pjErr == nil {
					t.Errorf("protojson accepts %s, giving %v", tc.js, pjMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromValue: %v", err)
			}
			want := &testingv1.AllTypes{}
			if err := protojson.Unmarshal([]byte(tc.want), want); err != nil {
				t.Fatalf("bad want %s: %v", tc.want, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("FromValue = %v, want %v", got, want)
			}
			if !tc.deviation {
				if pjErr != nil {
					t.Errorf("protojson rejects the same JSON: %v", pjErr)
				} else if !proto.Equal(pjMsg, got) {
					t.Errorf("protojson gives %v, FromValue gives %v", pjMsg, got)
				}
			}
		})
	}
}

func TestFieldErrorPath(t *testing.T) {
	vm := goja.New()
	v, err := vm.RunString(`({toUserId: "u", eventData: {items: [1, 2, function() {}]}})`)
	if err != nil {
		t.Fatal(err)
	}
	err = FromValue(vm, v, (&eventsv1.SendEventRequest{}).ProtoReflect())
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want a *FieldError", err)
	}
	if fe.Path != "eventData.items[2]" {
		t.Errorf("Path = %q, want %q", fe.Path, "eventData.items[2]")
	}
	if !strings.HasPrefix(err.Error(), `field "eventData.items[2]": `) {
		t.Errorf("Error() = %q", err.Error())
	}

	v, _ = vm.RunString(`({toUserId: 42})`)
	err = FromValue(vm, v, (&eventsv1.SendEventRequest{}).ProtoReflect())
	if err == nil || err.Error() != `field "toUserId": want string, got number` {
		t.Errorf("got %v", err)
	}
}

func TestMutation(t *testing.T) {
	vm := goja.New()
	m := &testingv1.AllTypes{
		FString: "gone",
		RString: []string{"a"},
		RNested: []*testingv1.Nested{nested("n", 1, "t1", "t2")},
		WStruct: mustStruct(t, map[string]any{"list": []any{1.0, 2.0}}),
		MString: map[string]string{"a": "b"},
		FInt64:  5,
	}
	if err := vm.Set("m", ToValue(vm, m.ProtoReflect())); err != nil {
		t.Fatal(err)
	}
	_, err := vm.RunString(`
		m.rString.push("x");
		m.rNested[0].tags.splice(0, 1);
		delete m.fString;
		m.wStruct.list.push(3);
		m.wStruct.added = {deep: [true]};
		m.mString.k = "v";
		m.rNested.push({name: "new"});
		m.fInt64 = String(BigInt(m.fInt64) * 2n);
		m.fEnum = "COLOR_RED";
	`)
	if err != nil {
		t.Fatal(err)
	}
	got := &testingv1.AllTypes{}
	if err := FromValue(vm, vm.Get("m"), got.ProtoReflect()); err != nil {
		t.Fatal(err)
	}
	want := &testingv1.AllTypes{
		RString: []string{"a", "x"},
		RNested: []*testingv1.Nested{nested("n", 1, "t2"), nested("new", 0)},
		WStruct: mustStruct(t, map[string]any{"list": []any{1.0, 2.0, 3.0}, "added": map[string]any{"deep": []any{true}}}),
		MString: map[string]string{"a": "b", "k": "v"},
		FInt64:  10,
		FEnum:   testingv1.Color_COLOR_RED,
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestToValueTypes(t *testing.T) {
	vm := goja.New()
	m := &testingv1.AllTypes{FInt64: 1, FInt32: 2, FDouble: math.NaN(), WValue: structpb.NewNumberValue(3)}
	if err := vm.Set("m", ToValue(vm, m.ProtoReflect())); err != nil {
		t.Fatal(err)
	}
	v, err := vm.RunString(`[typeof m.fInt64, typeof m.fInt32, typeof m.fDouble, typeof m.wValue, Array.isArray(m.rString), Object.getPrototypeOf(m) === Object.prototype].join()`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.String(), "string,number,string,number,false,true"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestToValueInvalid(t *testing.T) {
	vm := goja.New()
	var nilMsg *testingv1.AllTypes
	if got := stringify(t, vm, ToValue(vm, nilMsg.ProtoReflect())); got != "{}" {
		t.Errorf("nil message: %s", got)
	}
	// Messages protojson refuses to marshal are converted best-effort.
	m := &testingv1.AllTypes{
		WValue: &structpb.Value{},
		RValue: []*structpb.Value{structpb.NewNumberValue(math.Inf(1))},
		WAny:   &anypb.Any{TypeUrl: "type.googleapis.com/no.Such", Value: []byte{1}},
	}
	got := stringify(t, vm, ToValue(vm, m.ProtoReflect()))
	assertSameJSON(t, got, `{"wValue":null,"rValue":[null],"wAny":{"@type":"type.googleapis.com/no.Such"}}`)
}

func TestFromGo(t *testing.T) {
	vm := goja.New()
	var decoded any
	dec := json.NewDecoder(strings.NewReader(`{"b": [1, "two", true, null, {"x": 1.5}], "a": {}, "n": 12345678901234567890, "e": []}`))
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	v := FromGo(vm, decoded)
	if err := vm.Set("v", v); err != nil {
		t.Fatal(err)
	}
	res, err := vm.RunString(`v.b.push(7); v.a.k = 1; delete v.e; v.b.splice(1, 1); [Array.isArray(v.b), typeof v.n, JSON.stringify(v)].join("|")`)
	if err != nil {
		t.Fatal(err)
	}
	want := `true|number|{"a":{"k":1},"b":[1,true,null,{"x":1.5},7],"n":12345678901234567000}`
	if res.String() != want {
		t.Errorf("got  %s\nwant %s", res, want)
	}
	if got := FromGo(vm, nil); !goja.IsNull(got) {
		t.Errorf("FromGo(nil) = %v", got)
	}
	if got := FromGo(vm, 3.5).ToFloat(); got != 3.5 {
		t.Errorf("FromGo(3.5) = %v", got)
	}

	// A value from FromGo feeds FromValue like any other.
	m := &eventsv1.SendEventRequest{}
	obj := vm.NewObject()
	obj.Set("toUserId", "u1")
	obj.Set("eventData", FromGo(vm, map[string]any{"k": []any{"v", 1.0}}))
	if err := FromValue(vm, obj, m.ProtoReflect()); err != nil {
		t.Fatal(err)
	}
	want2 := &eventsv1.SendEventRequest{ToUserId: "u1", EventData: mustStruct(t, map[string]any{"k": []any{"v", 1.0}})}
	if !proto.Equal(m, want2) {
		t.Errorf("got %v, want %v", m, want2)
	}
}

func TestWellKnownTopLevel(t *testing.T) {
	vm := goja.New()
	for _, m := range []proto.Message{
		structpb.NewStringValue("s"), structpb.NewNullValue(),
		mustStruct(t, map[string]any{"a": 1.0}), timestamppb.New(time.Unix(1, 0)),
		wrapperspb.String("w"), mustAny(t, wrapperspb.Bool(true)), &emptypb.Empty{},
	} {
		pj, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		v := ToValue(vm, m.ProtoReflect())
		assertSameJSON(t, stringify(t, vm, v), string(pj))
		got := m.ProtoReflect().New().Interface()
		if err := FromValue(vm, v, got.ProtoReflect()); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !proto.Equal(got, m) {
			t.Errorf("got %v, want %v", got, m)
		}
	}
}

// proto2Types builds, at run time, a proto2 message with a required field
// and an extension range, and registers two extensions of it globally.
func proto2Types(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	const fileName = "protojs_test/ext.proto"
	if fd, err := protoregistry.GlobalFiles.FindFileByPath(fileName); err == nil {
		return fd.Messages().ByName("Ext")
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String(fileName),
		Package: proto.String("protojs.test"),
		Syntax:  proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Ext"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("a"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(), JsonName: proto.String("a")},
				{Name: proto.String("req"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), JsonName: proto.String("req")},
			},
			ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(200)}},
		}},
		Extension: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("note"), Number: proto.Int32(100), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Extendee: proto.String(".protojs.test.Ext")},
			{Name: proto.String("nums"), Number: proto.Int32(101), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Extendee: proto.String(".protojs.test.Ext")},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < fd.Extensions().Len(); i++ {
		if err := protoregistry.GlobalTypes.RegisterExtension(dynamicpb.NewExtensionType(fd.Extensions().Get(i))); err != nil {
			t.Fatal(err)
		}
	}
	return fd.Messages().ByName("Ext")
}

func TestExtensionsAndRequired(t *testing.T) {
	md := proto2Types(t)
	vm := goja.New()
	text := `{"a":0,"req":"r","[protojs.test.nums]":["-1","2"],"[protojs.test.note]":"n"}`
	m := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(text), m); err != nil {
		t.Fatal(err)
	}
	pj, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	v := ToValue(vm, m)
	var compact bytes.Buffer
	if err := json.Compact(&compact, pj); err != nil {
		t.Fatal(err)
	}
	if got := stringify(t, vm, v); got != compact.String() {
		t.Errorf("ToValue gives %s, protojson %s", got, compact.String())
	}
	got := dynamicpb.NewMessage(md)
	if err := FromValue(vm, v, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, m) {
		t.Errorf("round trip gives %v, want %v", got, m)
	}

	for _, tc := range []struct{ js, wantErr string }{
		{`({a: 1})`, `required field protojs.test.Ext.req not set`},
		{`({req: "r", "[protojs.test.missing]": 1})`, `field "[protojs.test.missing]": unknown field`},
		{`({req: "r", "[protojs.test.Ext]": 1})`, `field "[protojs.test.Ext]": unknown field`},
		{`({req: "r", "[protojs.test.nums]": [1.5]})`, `field "[protojs.test.nums][0]": invalid int64 value 1.5`},
		{`({req: "r", "[protojs.test.note]": 1})`, `field "[protojs.test.note]": want string, got number`},
	} {
		v, err := vm.RunString(tc.js)
		if err != nil {
			t.Fatal(err)
		}
		err = FromValue(vm, v, dynamicpb.NewMessage(md))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got error %v, want %q", tc.js, err, tc.wantErr)
		}
		if pjErr := protojson.Unmarshal([]byte(stringify(t, vm, v)), dynamicpb.NewMessage(md)); pjErr == nil {
			t.Errorf("%s: protojson accepts it", tc.js)
		}
	}
}

func TestStrings(t *testing.T) {
	vm := goja.New()
	for _, tc := range []struct {
		js, want, wantErr string
	}{
		{js: `({fString: "\uFFFD\ud83c\udf0d", rString: ["ü", "\u0000"]})`, want: "\uFFFD\U0001F30D"},
		{js: `({fString: "a\ud800b"})`, wantErr: `field "fString": invalid string: unpaired UTF-16 surrogate at index 1`},
		{js: `({fString: "\udc00"})`, wantErr: `unpaired UTF-16 surrogate at index 0`},
		{js: `({wStruct: {k: ["\ud83c"]}})`, wantErr: `field "wStruct.k[0]": invalid string`},
	} {
		v, err := vm.RunString(tc.js)
		if err != nil {
			t.Fatal(err)
		}
		got := &testingv1.AllTypes{}
		err = FromValue(vm, v, got.ProtoReflect())
		pjErr := protojson.Unmarshal([]byte(stringify(t, vm, v)), &testingv1.AllTypes{})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: got error %v, want %q", tc.js, err, tc.wantErr)
			}
			if pjErr == nil {
				t.Errorf("%s: protojson accepts it", tc.js)
			}
			continue
		}
		if err != nil || pjErr != nil {
			t.Errorf("%s: FromValue error %v, protojson error %v", tc.js, err, pjErr)
		} else if got.FString != tc.want {
			t.Errorf("%s: got %q, want %q", tc.js, got.FString, tc.want)
		}
	}

	// Invalid UTF-8 from Go reads back as U+FFFD, as JSON.stringify renders it.
	long := "0123456789abcdef-\xff-end"
	obj := vm.NewObject()
	obj.Set("fString", long)
	obj.Set("rString", []any{"\xfe"})
	got := &testingv1.AllTypes{}
	if err := FromValue(vm, obj, got.ProtoReflect()); err != nil {
		t.Fatal(err)
	}
	if want := "0123456789abcdef-\uFFFD-end"; got.FString != want || got.RString[0] != "\uFFFD" {
		t.Errorf("got %q %q", got.FString, got.RString)
	}
}

func TestDeepPathIsShortened(t *testing.T) {
	vm := goja.New()
	v, err := vm.RunString(`(function() { var o = {}; o.self = o; return {wStruct: o}; })()`)
	if err != nil {
		t.Fatal(err)
	}
	err = FromValue(vm, v, (&testingv1.AllTypes{}).ProtoReflect())
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(fe.Path, "wStruct.self.self.") || !strings.Contains(fe.Path, "...self") || len(fe.Path) > 400 {
		t.Errorf("Path = %q", fe.Path)
	}
	if !errors.Is(err, errDepth) {
		t.Errorf("error %v does not wrap the depth error", err)
	}
}
