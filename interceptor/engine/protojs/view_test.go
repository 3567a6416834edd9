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
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	testingv1 "github.com/apihooks/apihooks/gen/apihooks/testing/v1"
	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// scriptFunc compiles body as the body of a strict-mode function of m.
func scriptFunc(t testing.TB, vm *goja.Runtime, body string) goja.Callable {
	t.Helper()
	v, err := vm.RunString("(function(m) {\n\"use strict\";\n" + body + "\n})")
	if err != nil {
		t.Fatalf("compiling %s: %v", body, err)
	}
	fn, ok := goja.AssertFunction(v)
	if !ok {
		t.Fatalf("%s is not a function", body)
	}
	return fn
}

// runOn runs body with m bound to obj and returns its result.
func runOn(t testing.TB, vm *goja.Runtime, body string, obj goja.Value) goja.Value {
	t.Helper()
	res, err := scriptFunc(t, vm, body)(goja.Undefined(), obj)
	if err != nil {
		t.Fatalf("running %s: %v", body, err)
	}
	return res
}

// viewBase is a message with every kind of field populated.
func viewBase(t testing.TB) *testingv1.AllTypes {
	return &testingv1.AllTypes{
		FDouble: 1.5, FFloat: 0.25, FInt32: -42, FInt64: 1 << 60, FUint32: 7, FUint64: 1<<63 + 5,
		FSint32: -3, FSint64: -(1 << 40), FFixed32: 9, FFixed64: 10, FSfixed32: -11, FSfixed64: 12,
		FBool: true, FString: "str", FBytes: []byte("bytes"), FEnum: testingv1.Color_COLOR_RED,
		FNested: nested("fn", 5, "a", "b"),
		OString: proto.String(""),
		RInt32:  []int32{3, 1, 2},
		RInt64:  []int64{10, -20},
		RString: []string{"x", "y", "z"},
		REnum:   []testingv1.Color{testingv1.Color_COLOR_RED, testingv1.Color_COLOR_GREEN},
		RNested: []*testingv1.Nested{nested("r0", 0), nested("r1", 1, "t"), nested("r2", 2)},
		RBytes:  [][]byte{{0xff}, []byte("hi")},
		RDouble: []float64{1.5, math.Inf(1)},
		MString: map[string]string{"a": "1", "b": "2"},
		MNested: map[int32]*testingv1.Nested{1: nested("m1", 1), 2: nested("m2", 2, "mt")},
		MBool:   map[bool]int64{true: 1},
		MEnum:   map[uint64]testingv1.Color{5: testingv1.Color_COLOR_GREEN},
		Choice:  &testingv1.AllTypes_CString{CString: "c"},
		WStruct: mustStruct(t, map[string]any{
			"a": 1.0, "list": []any{1.0, "two"}, "s": "str", "n": nil,
			"nested": map[string]any{"deep": false, "x": []any{map[string]any{"y": 1.0}}},
		}),
		WValue:     structpb.NewStructValue(mustStruct(t, map[string]any{"k": "v"})),
		WList:      &structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewNumberValue(1)}},
		WTimestamp: timestamppb.New(time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC)),
		WDuration:  durationpb.New(1500 * time.Millisecond),
		WInt64:     wrapperspb.Int64(5),
		WString:    wrapperspb.String("w"),
		WBool:      wrapperspb.Bool(false),
		WBytes:     wrapperspb.Bytes([]byte{1}),
		WDouble:    wrapperspb.Double(2),
		WUint32:    wrapperspb.UInt32(3),
		WFieldMask: &fieldmaskpb.FieldMask{Paths: []string{"f_string"}},
		WEmpty:     &emptypb.Empty{},
		WAny:       mustAny(t, nested("in any", 3)),
		RValue:     []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("s"), structpb.NewStructValue(mustStruct(t, map[string]any{"o": 1.0})), structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewBoolValue(true)}})},
		MValue:     map[string]*structpb.Value{"a": structpb.NewNumberValue(1), "o": structpb.NewStructValue(mustStruct(t, map[string]any{"p": true}))},
	}
}

// TestViewJSON checks that a view stringifies exactly as ToValue's object
// does, and that reading it leaves the message as it was.
func TestViewJSON(t *testing.T) {
	cases := equivalenceCases(t)
	cases = append(cases, struct {
		name string
		msg  *testingv1.AllTypes
	}{"view base", viewBase(t)})
	for _, tc := range cases {
		for _, dynamic := range []bool{false, true} {
			name := tc.name
			var m proto.Message = tc.msg
			if dynamic {
				name += "/dynamic"
				m = toDynamic(t, tc.msg)
			}
			t.Run(name, func(t *testing.T) {
				vm := goja.New()
				want := stringify(t, vm, ToValue(vm, m.ProtoReflect()))
				c := proto.Clone(m)
				obj, v := NewView(vm, c.ProtoReflect())
				if v.Touched() {
					t.Error("Touched before any use")
				}
				if got := stringify(t, vm, obj); got != want {
					t.Errorf("JSON.stringify(view)\n got %s\nwant %s", got, want)
				}
				if !v.Touched() {
					t.Error("not Touched after JSON.stringify")
				}
				if err := v.Err(); err != nil {
					t.Errorf("Err() = %v", err)
				}
				if !proto.Equal(c, m) {
					t.Errorf("reading changed the message: %v", c)
				}
			})
		}
	}
}

// tryStringify returns JSON.stringify(v), or "" if it throws.
func tryStringify(vm *goja.Runtime, v goja.Value) string {
	fn, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	out, err := fn(goja.Undefined(), v)
	if err != nil {
		return ""
	}
	return out.String()
}

// sameJSON reports whether two JSON texts denote the same value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("bad JSON %s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// viewScripts are function bodies run on m, both as a native object from
// ToValue and as a view.
var viewScripts = []struct{ name, js string }{
	{"scalars of every kind", `m.fDouble = 2.5; m.fFloat = "NaN"; m.fInt32 = "17"; m.fInt64 = 5; m.fUint32 = 4e3;
		m.fUint64 = "18446744073709551615"; m.fSint32 = -1; m.fSint64 = "-9"; m.fFixed32 = 1; m.fFixed64 = "2";
		m.fSfixed32 = -2; m.fSfixed64 = 3; m.fBool = false; m.fString = "new"`},
	{"zero scalars", `m.fDouble = 0; m.fInt64 = "0"; m.fBool = false; m.fString = ""; m.fBytes = ""; m.fEnum = 0`},
	{"int64 arithmetic as string", `m.fInt64 = String(BigInt(m.fInt64) * 2n); m.fUint64 = String(BigInt(m.fUint64) - 5n)`},
	{"int64 as number, bigint and exponent", `m.fInt64 = 2**53; m.fSint64 = -7n; m.fFixed64 = "1e3"; m.fInt32 = 5.0`},
	{"float extremes", `m.fDouble = Infinity; m.fFloat = "-Infinity"; m.rDouble.push(NaN, -0, "1e-7")`},
	{"bytes", `m.fBytes = "aGk="; m.rBytes.push("-_8"); m.rBytes[0] = "AQ"`},
	{"enums by name and number", `m.fEnum = "COLOR_GREEN"; m.rEnum.push(2, "COLOR_UNSPECIFIED", 42); m.rEnum[0] = 0`},
	{"unknown enum number", `m.fEnum = 42; m.mEnum["9"] = 77`},
	{"read modify write", `m.fInt32 = m.fInt32 + 1; m.fString = m.fString + m.fEnum + m.fInt64 + m.fBytes + m.fDouble + m.fFloat`},
	{"reads of unset members", `m.fString = [m.cInt32, m.cNested, m.oInt32, m.oString, m.nope, typeof m.fNested.toString].join("|")`},
	{"proto names", `delete m.fString; m.f_string = "p"; m.o_int32 = 0; delete m.rString; m.r_string = ["q"]`},
	{"null and undefined unset", `m.fString = null; m.fNested = undefined; m.rString = null; m.mString = null; m.wStruct = null; m.wInt64 = null; m.oString = null`},
	{"delete fields", `delete m.fNested; delete m.rNested; delete m.mString; delete m.wStruct; delete m.cString; delete m.fInt64; delete m.wAny; delete m.nope`},
	{"nested edit", `m.fNested.name = "changed"; m.fNested.tags.push("c"); m.fNested.count = "7"; delete m.fNested.tags`},
	{"nested create", `delete m.fNested; m.fNested = {name: "created", tags: ["q"]}; m.fNested.count = 3; m.fNested.tags.push("r")`},
	{"nested replace by view", `m.fNested = m.rNested[1]`},
	{"nested emptied", `delete m.fNested.name; delete m.fNested.count; m.fNested.tags.length = 0`},
	{"repeated scalar ops", `m.rInt32.push(4, 5); m.rInt32.pop(); m.rInt32.shift(); m.rInt32.unshift(0, -1);
		m.rInt32.splice(1, 1, 9, 8); m.rInt32.reverse(); m.rInt32.sort((a, b) => a - b); m.rInt32.copyWithin(0, 2)`},
	{"repeated index and length", `m.rString.length = 1; m.rString[1] = "n"; m.rString[m.rString.length] = "end"; m.rString[0] += "!"`},
	{"repeated fill", `m.rString.fill("f"); m.rDouble.fill("NaN", 1)`},
	{"repeated int64", `m.rInt64.push("3", 4, 5n); m.rInt64[0] = String(BigInt(m.rInt64[0]) + 1n)`},
	{"repeated splice all", `m.rString.splice(0, m.rString.length, ...m.rString.map(s => s.toUpperCase()))`},
	{"repeated emptied and refilled", `m.rNested.length = 0; m.rNested.push({name: "only"}); m.rString.splice(0); m.rString.push("again")`},
	{"repeated assigned empty then pushed", `m.rString = []; m.rString.push("a"); m.rInt32 = [7, "8"]`},
	{"holes filled", `delete m.rString[0]; m.rString[0] = "back"; m.rInt32.length = 5; m.rInt32.length = 2; m.rString[4] = "w"; m.rString.splice(3, 1, "v")`},
	{"message unshift own element", `m.rNested.unshift(m.rNested[1])`},
	{"message reverse", `m.rNested.reverse()`},
	{"message sort", `m.rNested.sort((a, b) => a.name < b.name ? 1 : -1)`},
	{"message splice and push", `m.rNested.splice(1, 1); m.rNested.push({name: "pushed", count: 4}); m.rNested[0].tags = ["t0"]; m.rNested[0].tags.push("t1")`},
	{"message shift then edit", `m.rNested.shift(); m.rNested[0].name = "first"`},
	{"message pop then unshift", `const x = m.rNested.pop(); m.rNested.unshift(x)`},
	{"message move by index", `m.rNested[1] = m.rNested[0]; m.rNested[0] = {name: "zero"}`},
	{"message rotate", `m.rNested.push(...m.rNested.splice(0, 2))`},
	{"message filter map", `m.rNested = m.rNested.filter(n => n.count !== undefined).map(n => n)`},
	{"message forEach edit", `m.rNested.forEach((n, i) => { n.count = Number(n.count || 0) + i; n.tags = [String(i)] })`},
	{"message element fields", `m.rNested[2].tags = ["a"]; m.rNested[0].count = 100; delete m.rNested[1].tags`},
	{"message copy via JSON", `m.fNested = JSON.parse(JSON.stringify(m.rNested[1]))`},
	{"map set and delete", `m.mString.c = "3"; delete m.mString.a; m.mString["b"] = "two"; m.mString[""] = "empty"`},
	{"map of messages", `m.mNested[1].name = "edited"; m.mNested["3"] = {count: "3"}; delete m.mNested[2]; m.mBool["false"] = "-5"; m.mEnum["7"] = "COLOR_RED"; m.mEnum[5] = 1`},
	{"map replaced", `m.mNested = {"10": m.mNested[1], "-4": {name: "neg"}}; m.mString = {z: "26"}`},
	{"map nested message edit", `m.mNested[2].tags.push("x"); m.mNested[2].tags.shift()`},
	{"struct assign", `Object.assign(m.wStruct, {a: 2, b: {c: [1, 2]}, z: null, u: undefined})`},
	{"struct deep edits", `m.wStruct.list.push(3); m.wStruct.list[0] = "zero"; delete m.wStruct.s; m.wStruct.nested.deep = true;
		m.wStruct.nested.x[0].y = "yy"; m.wStruct.nested.x.push([true]); m.wStruct.n = undefined`},
	{"struct list moves", `m.wStruct.list.splice(0, 1); m.wStruct.list.unshift({k: 1}); m.wStruct.list.reverse(); m.wStruct.added = m.wStruct.nested`},
	{"struct replaced", `m.wStruct = {fresh: [1, {two: 2}], d: new Date(0)}; m.wStruct.fresh[1].two = 3`},
	{"struct keys", `m.wStruct.keys = Object.keys(m.wStruct).join(); let s = ""; for (const k in m.wStruct.nested) s += k; m.wStruct.forin = s; m.wStruct.spread = {...m.wStruct.nested}`},
	{"value kinds", `m.wValue = 5; m.rValue[0] = null; m.rValue[1] = true; m.rValue.push({a: [1]}); m.mValue.o.p = false; m.mValue.n = "str"; m.mValue.z = null`},
	{"value struct edit", `m.wValue.k = "changed"; m.wValue.more = [1, 2]; m.rValue[2].o = 2; m.rValue[3].push(false)`},
	{"value null and list", `m.wValue = null; m.wList = [1, 2]; m.wList.push(null); m.wList[0] = [1, [2]]`},
	{"value list holes", `m.wList.length = 4; delete m.wList[0]; m.rValue[6] = "far"`},
	{"wrappers", `m.wInt64 = "7"; m.wString = ""; m.wBool = true; m.wBytes = "AQ"; m.wDouble = "Infinity"; m.wUint32 = 3`},
	{"time and masks", `m.wTimestamp = "2024-01-02T03:04:05.5+01:00"; m.wDuration = "-1.5s"; m.wFieldMask = "fString,fNested.name"; m.wEmpty = {}`},
	{"date", `m.wTimestamp = new Date(Date.UTC(2020, 0, 2, 3, 4, 5, 678))`},
	{"well-known reads", `m.fString = [m.wTimestamp, m.wDuration, m.wFieldMask, m.wInt64, m.wBool, JSON.stringify(m.wAny), JSON.stringify(m.wEmpty)].join("|")`},
	{"any", `m.wAny = {"@type": "type.googleapis.com/apihooks.testing.v1.Nested", name: "anyname"}`},
	{"oneof switch", `delete m.cString; m.cNested = {name: "cn"}; m.cNested.count = 1`},
	{"oneof zero", `delete m.cString; m.cInt32 = 0`},
	{"optional fields", `m.oString = undefined; m.oInt32 = 0`},
	{"optional values", `m.oString = "now"; m.oInt32 = -1`},
	{"views to other fields", `delete m.cString; m.cNested = m.fNested; m.wStruct = m.wValue; m.rValue = m.wList; m.rNested[0] = m.fNested; m.mNested[1] = m.rNested[2]; m.mValue.copied = m.wList`},
	{"object keys and in", `m.fString = Object.keys(m).join() + ("fNested" in m) + ("nope" in m) + ("f_string" in m) + m.hasOwnProperty("wAny") + JSON.stringify({...m.mString})`},
	{"identity", `m.fString = String([m.fNested === m.fNested, m.rNested[0] === m.rNested[0], m.wStruct.nested === m.wStruct.nested, m.mNested[1] === m.mNested[1], m.rNested === m.rNested])`},
	{"array methods read", `m.fString = [m.rString.join("-"), m.rString.indexOf("y"), m.rString.includes("z"), m.rNested.map(n => n.name).join(), Array.isArray(m.rNested), m.rString.slice(1).length, [...m.rInt32].join()].join("|")`},
	{"stringify inside script", `m.fString = JSON.stringify(m.fNested) + JSON.stringify(m.rNested) + JSON.stringify(m.wStruct)`},
	{"unicode strings", `m.fString = "ключ 🌍"; m.fString += "!"; m.rString.push("値"); m.mString["ключ"] = "v"; m.wStruct["ключ"] = "値"; m.fBytes = "ключ"; m.fBytes = "AQ"`},
	{"values read back as assigned", `m.fInt64 = 5; m.fInt64 += 10; m.fEnum = 2; m.fString = String(m.fEnum === 2); m.wTimestamp = new Date(0);
		m.fBytes = m.wTimestamp.getTime() === 0 ? "AQ" : "AA"; m.fFloat = 0.1; m.fDouble = m.fFloat; m.mBool["true"] = 1; m.mBool["true"] += 1;
		m.rInt64[0] = 1; m.rInt64[0] += 1; m.oString = null; m.oInt32 = m.oString === null ? 1 : 2`},
	{"objects kept as assigned", `const arr = []; m.rString = arr; arr.push("late"); (m.rNested[0].tags ??= []).push("x"); const o = {name: "o"};
		m.rNested.push(o); o.count = 3; m.wStruct.obj = {}; m.wStruct.obj.added = [1]; m.mNested[3] = o; o.tags = ["shared"]`},
	{"aliasing views", `delete m.cString; m.cNested = m.fNested; m.fNested.name = "both"; m.wValue = m.wStruct.nested; m.wStruct.nested.deep = 1;
		m.rNested.push(m.rNested[0]); m.rNested[0].name = "twice"; const kept = m.rNested[1]; m.rNested.reverse(); kept.count = 9`},
	{"self assignment", `m.fNested = m.fNested; m.rNested[0] = m.rNested[0]; m.mNested[1] = m.mNested[1]; m.wStruct = m.wStruct; m.rString = m.rString`},
}

// TestViewDifferential runs each script on a native object from ToValue
// (then FromValue into a fresh message) and on a view of a clone, and
// checks that both give the same message.
func TestViewDifferential(t *testing.T) {
	base := viewBase(t)
	for _, dynamic := range []bool{false, true} {
		var m proto.Message = base
		if dynamic {
			m = toDynamic(t, base)
		}
		for _, sc := range viewScripts {
			name := sc.name
			if dynamic {
				name += "/dynamic"
			}
			t.Run(name, func(t *testing.T) {
				vm := goja.New()
				native := ToValue(vm, m.ProtoReflect())
				nativeRes := runOn(t, vm, sc.js, native)
				nativeJSON := tryStringify(vm, native)
				want := m.ProtoReflect().New().Interface()
				if err := FromValue(vm, native, want.ProtoReflect()); err != nil {
					t.Fatalf("native path: FromValue: %v", err)
				}

				vm2 := goja.New()
				got := proto.Clone(m)
				obj, v := NewView(vm2, got.ProtoReflect())
				viewRes := runOn(t, vm2, sc.js, obj)
				viewJSON := tryStringify(vm2, obj)
				if err := v.Err(); err != nil {
					t.Fatalf("Err() = %v", err)
				}
				if !proto.Equal(got, want) {
					t.Errorf("view gives\n%v\nnative gives\n%v", got, want)
				}
				if !v.Touched() {
					t.Error("not Touched")
				}
				if !nativeRes.StrictEquals(viewRes) {
					t.Errorf("script result: view %v, native %v", viewRes, nativeRes)
				}
				// The view looks like the native object after the script
				// (but for the proto names the native object keeps as
				// extra properties).
				if strings.Contains(sc.js, "m.f_") || strings.Contains(sc.js, "m.r_") || strings.Contains(sc.js, "m.o_") {
					return
				}
				if g, w := viewJSON, nativeJSON; g != "" && w != "" && !sameJSON(t, g, w) {
					t.Errorf("after the script, JSON.stringify(view)\n%s\nnative\n%s", g, w)
				} else if (g == "") != (w == "") {
					t.Errorf("after the script, JSON.stringify(view) = %q, native %q", g, w)
				}
			})
		}
	}
}

// TestViewErrors checks that assignments that do not fit are recorded with
// their full path, leave the field as it was, and let the script go on.
func TestViewErrors(t *testing.T) {
	// Each want is the whole error or, ending in "...", its beginning. An
	// element that does not fit, appended by push, stays as the zero value.
	tests := []struct {
		js, want string
		grown    func(*testingv1.AllTypes)
	}{
		{js: `m.fString = 5`, want: `field "fString": want string, got number`},
		{js: `m.fInt32 = 1.5`, want: `field "fInt32": invalid int32 value 1.5`},
		{js: `m.fUint32 = -1`, want: `field "fUint32": uint32 value -1 out of range`},
		{js: `m.fInt64 = "1.5"`, want: `field "fInt64": invalid int64 value "1.5"`},
		{js: `m.fEnum = "NOPE"`, want: `field "fEnum": invalid value "NOPE" for enum apihooks.testing.v1.Color`},
		{js: `m.fBytes = "!!!"`, want: `field "fBytes": invalid base64 value "!!!": illegal base64 data at input byte 0`},
		{js: `m.fNested = "x"`, want: `field "fNested": want object, got string`},
		{js: `m.fNested = {nam: "x"}`, want: `field "fNested.nam": unknown field`},
		{js: `m.fNested.count = "x"`, want: `field "fNested.count": invalid int64 value "x"`},
		{js: `m.fNested.tags.push(1)`, want: `field "fNested.tags[2]": want string, got number`, grown: func(m *testingv1.AllTypes) { m.FNested.Tags = append(m.FNested.Tags, "") }},
		{js: `m.rString = "x"`, want: `field "rString": want array, got string`},
		{js: `m.rString = ["a", null]`, want: `field "rString[1]": want string, got null`},
		{js: `m.rNested[1].name = 5`, want: `field "rNested[1].name": want string, got number`},
		{js: `m.rNested[1] = {nam: "x"}`, want: `field "rNested[1].nam": unknown field`},
		{js: `m.rNested.push(null)`, want: `field "rNested[3]": want object, got null`, grown: func(m *testingv1.AllTypes) { m.RNested = append(m.RNested, &testingv1.Nested{}) }},
		{js: `m.rInt32.push("x")`, want: `field "rInt32[3]": invalid int32 value "x"`, grown: func(m *testingv1.AllTypes) { m.RInt32 = append(m.RInt32, 0) }},
		{js: `m.rNested[1].tags.push(1)`, want: `field "rNested[1].tags[1]": want string, got number`, grown: func(m *testingv1.AllTypes) { m.RNested[1].Tags = append(m.RNested[1].Tags, "") }},
		{js: `m.mString["a b"] = 1`, want: `field "mString["a b"]": want string, got number`},
		{js: `m.mString.k = null`, want: `field "mString.k": want string, got null`},
		{js: `m.mNested.x = {}`, want: `field "mNested.x": invalid int32 map key "x"`},
		{js: `m.mNested[2].tags[0] = 1`, want: `field "mNested["2"].tags[0]": want string, got number`},
		{js: `m.mNested = {x: {}}`, want: `field "mNested.x": invalid int32 map key "x"`},
		{js: `m.wStruct.nested.b = function() {}`, want: `field "wStruct.nested.b": want JSON value, got function`},
		{js: `m.wStruct.a = {b: () => 1}`, want: `field "wStruct.a.b": want JSON value, got function`},
		{js: `m.wStruct.list.push(Symbol("s"))`, want: `field "wStruct.list[2]": want JSON value, got symbol`, grown: func(m *testingv1.AllTypes) {
			l := m.WStruct.Fields["list"].GetListValue()
			l.Values = append(l.Values, structpb.NewNullValue())
		}},
		{js: `m.wStruct.nested.x[0].y = 1/0`, want: `field "wStruct.nested.x[0].y": invalid google.protobuf.Value number Infinity`},
		{js: `m.wStruct = [1]`, want: `field "wStruct": want object, got array`},
		{js: `m.wValue = NaN`, want: `field "wValue": invalid google.protobuf.Value number NaN`},
		{js: `m.wValue.k = () => 1`, want: `field "wValue.k": want JSON value, got function`},
		{js: `m.mValue.o.q = () => 1`, want: `field "mValue.o.q": want JSON value, got function`},
		{js: `m.rValue[2].o = () => 1`, want: `field "rValue[2].o": want JSON value, got function`},
		{js: `m.wList = {}`, want: `field "wList": want array, got object`},
		{js: `m.wTimestamp = "yesterday"`, want: `field "wTimestamp": invalid google.protobuf.Timestamp value "yesterday"`},
		{js: `m.wDuration = 1`, want: `field "wDuration": want duration string, got number`},
		{js: `m.wInt64 = "x"`, want: `field "wInt64": invalid int64 value "x"`},
		{js: `m.wAny = {name: "x"}`, want: `field "wAny": missing "@type" field`},
		{js: `m.bogus = 1`, want: `field "bogus": unknown field`},
		{js: `m.bogus = null`, want: `field "bogus": unknown field`},
		{js: `m.fNested = {get name() { throw new Error("boom") }}`, want: `field "fNested": exception while reading value: Error: boom...`},
		{js: `m.fString = 5; m.fInt32 = "x"`, want: `field "fString": want string, got number`},
		{js: `m.fBytes = "ключ"; m.fBytes = "ключ"`, want: `field "fBytes": invalid base64 value "ключ": illegal base64 data at input byte 0`},
	}
	base := viewBase(t)
	want := proto.Clone(base).(*testingv1.AllTypes)
	want.FBool = false
	for _, tc := range tests {
		t.Run(tc.js, func(t *testing.T) {
			vm := goja.New()
			got := proto.Clone(base).(*testingv1.AllTypes)
			obj, v := NewView(vm, got.ProtoReflect())
			runOn(t, vm, tc.js+";\nm.fBool = false", obj)
			err := v.Err()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Err() = %v, want a *FieldError", err)
			}
			if w, ok := strings.CutSuffix(tc.want, "..."); ok && !strings.HasPrefix(err.Error(), w) || !ok && err.Error() != tc.want {
				t.Errorf("Err() = %s\n         want %s", err, tc.want)
			}
			want := proto.Clone(want).(*testingv1.AllTypes)
			if tc.grown != nil {
				tc.grown(want)
			}
			if !proto.Equal(got, want) {
				t.Errorf("message changed: %v", got)
			}

			// FromValue reports the same path for the native object, unless
			// it reports an exception (without a path) or finds a later
			// error first.
			if strings.Contains(tc.want, "exception") || strings.Contains(tc.js, ";") {
				return
			}
			vm = goja.New()
			native := ToValue(vm, base.ProtoReflect())
			if _, err := scriptFunc(t, vm, tc.js)(goja.Undefined(), native); err != nil {
				return // the native object rejects the assignment itself
			}
			nerr := FromValue(vm, native, (&testingv1.AllTypes{}).ProtoReflect())
			if nerr == nil {
				t.Fatalf("native path accepts it")
			}
			var nfe *FieldError
			if errors.As(nerr, &nfe) && nfe.Path != fe.Path {
				t.Errorf("path %q, native path %q", fe.Path, nfe.Path)
			}
		})
	}
}

// TestViewHoles checks that elements left undefined are reported as
// FromValue reports null elements.
func TestViewHoles(t *testing.T) {
	for _, tc := range []struct{ js, want, check string }{
		{`m.rString.length = 5`, `field "rString[3]": want string, got null`, `m.rString[3] === undefined && m.rString.length === 5`},
		{`delete m.rNested[1]`, `field "rNested[1]": want object, got null`, `m.rNested[1] === undefined && m.rNested.length === 3`},
		{`m.rInt32[4] = 1`, `field "rInt32[3]": want int32, got null`, `m.rInt32[3] === undefined && m.rInt32[4] === 1`},
		{`m.rNested[1].tags[2] = undefined`, `field "rNested[1].tags[1]": want string, got null`, `m.rNested[1].tags.length === 3 && m.rNested[1].tags[2] === undefined`},
		{`m.rString.length = 5; m.rString.length = 4; m.rString[3] = "x"; delete m.rNested[0]; m.rNested.shift()`, ``, `m.rString.join() === "x,y,z,x" && m.rNested.length === 2`},
		{`m.wList.length = 3; delete m.wStruct.list[0]`, ``, `m.wList[2] === undefined && m.wStruct.list[0] === undefined`},
		{`m.rString.length = 5; delete m.rString`, ``, `m.rString === undefined`},
		{`m.rString.length = 5; m.rString = []`, ``, `m.rString.length === 0`},
		{`const t = m.rString; m.rString.length = 5; m.rString = ["a"]; t.length = 7`, ``, `m.rString.length === 1`},
		{`delete m.rNested[1].tags[0]; m.fNested = m.rNested[1]; m.rNested = []`, `field "fNested.tags[0]": want string, got null`, `m.fNested.tags[0] === undefined`},
	} {
		t.Run(tc.js, func(t *testing.T) {
			vm := goja.New()
			got := proto.Clone(viewBase(t))
			obj, v := NewView(vm, got.ProtoReflect())
			if res := runOn(t, vm, tc.js+";\nreturn "+tc.check, obj); !res.ToBoolean() {
				t.Errorf("%s is false", tc.check)
			}
			err := v.Err()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Err() = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Err() = %v, want %s", err, tc.want)
			}
		})
	}
	// In a Value list a hole is null.
	vm := goja.New()
	m := &testingv1.AllTypes{WList: &structpb.ListValue{}}
	obj, v := NewView(vm, m.ProtoReflect())
	if r := runOn(t, vm, `m.wList[2] = 1; return m.wList[0] === undefined`, obj); !r.ToBoolean() || v.Err() != nil {
		t.Fatalf("got %v, %v", r, v.Err())
	}
	want := &testingv1.AllTypes{WList: &structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue(), structpb.NewNullValue(), structpb.NewNumberValue(1)}}}
	if !proto.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
}

// TestViewDifferences covers the documented differences from the native
// path, and cases the differential scripts cannot check (removed parts of
// the message, key order).
func TestViewDifferences(t *testing.T) {
	run := func(js string) (*testingv1.AllTypes, *View, goja.Value) {
		vm := goja.New()
		m := viewBase(t)
		obj, v := NewView(vm, m.ProtoReflect())
		return m, v, runOn(t, vm, js, obj)
	}

	// Assigning a oneof member clears the others.
	m, v, _ := run(`m.cNested = {name: "x"}`)
	if v.Err() != nil || m.GetCString() != "" || m.GetCNested().GetName() != "x" {
		t.Errorf("oneof switch: %v, %v", v.Err(), m.Choice)
	}

	// A proto name replaces the field.
	m, v, _ = run(`m.f_string = "p"`)
	if v.Err() != nil || m.FString != "p" {
		t.Errorf("proto name: %v, %q", v.Err(), m.FString)
	}

	// Deleting through a proto name unsets the field.
	m, v, _ = run(`delete m.f_string`)
	if v.Err() != nil || m.FString != "" {
		t.Errorf("proto name delete: %v, %q", v.Err(), m.FString)
	}

	// Unknown fields and bad map keys are reported at once.
	_, v, _ = run(`m.bogus = 1; delete m.bogus; m.mNested.x = {}; delete m.mNested.x`)
	if err := v.Err(); err == nil || err.Error() != `field "bogus": unknown field` {
		t.Errorf("unknown field: %v", err)
	}

	// As for a native object, a part of the message the script replaced or
	// removed no longer writes into the message, and values that do not
	// fit it are not reported.
	m, v, _ = run(`const n = m.fNested; m.fNested = {name: "new"}; n.name = "lost"; n.count = "bad"; const t = m.rString; m.rString = ["r"]; t.push("lost")`)
	if v.Err() != nil || m.FNested.Name != "new" || !reflect.DeepEqual(m.RString, []string{"r"}) {
		t.Errorf("detached: %v, %v, %v", v.Err(), m.FNested, m.RString)
	}
	m, v, _ = run(`const x = m.rNested.pop(); x.name = 5; const e = m.mNested[1]; delete m.mNested[1]; e.name = 6`)
	if v.Err() != nil || len(m.RNested) != 2 || m.MNested[1] != nil {
		t.Errorf("removed element: %v, %v", v.Err(), m)
	}

	// An Any reads as a copy.
	m, v, _ = run(`const a = m.wAny; a.name = "changed"`)
	if v.Err() != nil || !proto.Equal(m.WAny, viewBase(t).WAny) {
		t.Errorf("any copy: %v, %v", v.Err(), m.WAny)
	}

	// Keys the script adds are listed last, as on a native object.
	_, _, r := run(`m.mString.aa = "x"; m.fNested = undefined; m.fNested = {}; const k = Object.keys(m); return Object.keys(m.mString).join() + "|" + k.slice(k.indexOf("fEnum"), k.indexOf("fEnum") + 2).join()`)
	if r.String() != "a,b,aa|fEnum,fNested" {
		t.Errorf("key order: %s", r)
	}
}

// TestViewRoots checks views of well-known types at the top level.
func TestViewRoots(t *testing.T) {
	vm := goja.New()
	s := mustStruct(t, map[string]any{"a": 1.0})
	obj, v := NewView(vm, s.ProtoReflect())
	runOn(t, vm, `m.b = [true]; m.a = {c: null}; m.bad = () => 1`, obj)
	if err := v.Err(); err == nil || err.Error() != `field "bad": want JSON value, got function` {
		t.Errorf("struct root error: %v", err)
	}
	if want := mustStruct(t, map[string]any{"a": map[string]any{"c": nil}, "b": []any{true}}); !proto.Equal(s, want) {
		t.Errorf("struct root: %v", s)
	}

	l := &structpb.ListValue{}
	obj, v = NewView(vm, l.ProtoReflect())
	runOn(t, vm, `m.push(1, "2"); m.unshift(null); m.push([]); m.pop()`, obj)
	if want, _ := structpb.NewList([]any{nil, 1.0, "2"}); !proto.Equal(l, want) || v.Err() != nil {
		t.Errorf("list root: %v, %v", l, v.Err())
	}

	val := structpb.NewStructValue(s)
	obj, _ = NewView(vm, val.ProtoReflect())
	runOn(t, vm, `m.z = 1; m.y = {}; delete m.y`, obj)
	if val.GetStructValue().Fields["z"].GetNumberValue() != 1 {
		t.Errorf("value root: %v", val)
	}

	e := &emptypb.Empty{}
	obj, v = NewView(vm, e.ProtoReflect())
	if got := stringify(t, vm, obj); got != "{}" {
		t.Errorf("empty root: %s", got)
	}
	runOn(t, vm, `m.x = 1`, obj)
	if err := v.Err(); err == nil || err.Error() != `field "x": unknown field` {
		t.Errorf("empty root error: %v", err)
	}

	for _, m := range []proto.Message{timestamppb.Now(), wrapperspb.String("s"), structpb.NewStringValue("s"), mustAny(t, &emptypb.Empty{})} {
		if obj, v := NewView(vm, m.ProtoReflect()); obj != nil || v != nil {
			t.Errorf("%T: got a view", m)
		}
	}
	var nilMsg *testingv1.AllTypes
	if obj, v := NewView(vm, nilMsg.ProtoReflect()); obj != nil || v != nil || v.Err() != nil || v.Touched() {
		t.Error("nil message: got a view")
	}
}

// TestViewExtensionsAndRequired checks extensions and required fields.
func TestViewExtensionsAndRequired(t *testing.T) {
	md := proto2Types(t)
	text := `{"a":0,"req":"r","[protojs.test.nums]":["-1","2"],"[protojs.test.note]":"n"}`
	m := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(text), m); err != nil {
		t.Fatal(err)
	}
	vm := goja.New()
	obj, v := NewView(vm, m)
	if got, want := stringify(t, vm, obj), stringify(t, vm, ToValue(vm, m)); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	runOn(t, vm, `m["[protojs.test.nums]"].push(3); m["[protojs.test.note]"] = "changed"; m.a = 5`, obj)
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	want := dynamicpb.NewMessage(md)
	if err := protojson.Unmarshal([]byte(`{"a":5,"req":"r","[protojs.test.nums]":["-1","2","3"],"[protojs.test.note]":"changed"}`), want); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}

	runOn(t, vm, `delete m.req; m["[protojs.test.nums]"].length = 0; m["[protojs.test.missing]"] = 1`, obj)
	if err := v.Err(); err == nil || err.Error() != `field "[protojs.test.missing]": unknown field` {
		t.Errorf("Err() = %v", err)
	}
	m2 := dynamicpb.NewMessage(md)
	m2.Set(md.Fields().ByName("req"), protoreflect.ValueOfString("r"))
	obj, v = NewView(vm, m2)
	runOn(t, vm, `delete m.req`, obj)
	if err := v.Err(); err == nil || !strings.Contains(err.Error(), "required field protojs.test.Ext.req not set") {
		t.Errorf("Err() = %v", err)
	}
}

// TestViewLaziness checks that nothing is converted unless read.
func TestViewLaziness(t *testing.T) {
	vm := goja.New()
	m := viewBase(t)
	for _, s := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		m.MString[s] = strings.Repeat(s, 20)
		m.RNested = append(m.RNested, nested(s, 1, s, s))
		m.WStruct.Fields[s] = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue(s)}})
	}
	_, v := NewView(vm, m.ProtoReflect())
	if v.Touched() || v.Err() != nil {
		t.Error("untouched view: Touched or Err")
	}

	read := scriptFunc(t, vm, `return m.fString`)
	perView := testing.AllocsPerRun(200, func() {
		obj, _ := NewView(vm, m.ProtoReflect())
		if res, err := read(goja.Undefined(), obj); err != nil || res.String() != "str" {
			t.Fatalf("got %v, %v", res, err)
		}
	})
	native := testing.AllocsPerRun(20, func() {
		obj := ToValue(vm, m.ProtoReflect())
		if _, err := read(goja.Undefined(), obj); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("NewView + one read: %.0f allocs; ToValue + one read: %.0f allocs", perView, native)
	if perView > 10 {
		t.Errorf("NewView and reading one string field allocate %.0f objects, want a handful", perView)
	}
	if native < 20*perView {
		t.Errorf("ToValue allocates %.0f objects, not much more than the view's %.0f: is the message large?", native, perView)
	}

	// Writing one field leaves the others alone: calling the function costs
	// goja two allocations, and protoreflect's Set of a string field two.
	obj, v := NewView(vm, m.ProtoReflect())
	set := scriptFunc(t, vm, `m.fString = "set"`)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := set(goja.Undefined(), obj); err != nil {
			t.Fatal(err)
		}
	}); allocs > 4 {
		t.Errorf("setting a string field allocates %.0f objects", allocs)
	}
	if !v.Touched() || v.Err() != nil || m.FString != "set" {
		t.Errorf("after set: %v %v %q", v.Touched(), v.Err(), m.FString)
	}
}

// TestViewSeedScript runs the core of the first seed script.
func TestViewSeedScript(t *testing.T) {
	req := &eventsv1.SendEventRequest{
		ToUserId:  "u1",
		EventType: "commerce.order.shipped",
		EventData: mustStruct(t, map[string]any{"title": "shipped", "orderId": "o1", "quantity": 3.0}),
	}
	vm := goja.New()
	m := proto.Clone(req).(*eventsv1.SendEventRequest)
	obj, v := NewView(vm, m.ProtoReflect())
	hookParms := FromGo(vm, map[string]any{"extradata": map[string]any{"source": "hook", "tags": []any{"a", 1.0}}})
	if err := vm.Set("hookParms", hookParms); err != nil {
		t.Fatal(err)
	}
	const script = `Object.assign(m.eventData, hookParms.extradata); m.eventData.tags.push(true); return JSON.stringify(m)`
	res := runOn(t, vm, script, obj)
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(req).(*eventsv1.SendEventRequest)
	want.EventData.Fields["source"] = structpb.NewStringValue("hook")
	want.EventData.Fields["tags"] = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewNumberValue(1), structpb.NewBoolValue(true)}})
	if !proto.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	// JSON.stringify gives what it gives for the native object after the
	// same script: keys the script added come last.
	vm2 := goja.New()
	if err := vm2.Set("hookParms", FromGo(vm2, map[string]any{"extradata": map[string]any{"source": "hook", "tags": []any{"a", 1.0}}})); err != nil {
		t.Fatal(err)
	}
	nativeRes := runOn(t, vm2, script, ToValue(vm2, req.ProtoReflect()))
	if res.String() != nativeRes.String() {
		t.Errorf("JSON.stringify(m)\n got %s\nwant %s", res, nativeRes)
	}
	const wantJSON = `{"toUserId":"u1","eventType":"commerce.order.shipped","eventData":{"orderId":"o1","quantity":3,"title":"shipped","source":"hook","tags":["a",1,true]}}`
	if res.String() != wantJSON {
		t.Errorf("JSON.stringify(m)\n got %s\nwant %s", res, wantJSON)
	}

	// A fresh view of the result stringifies as protojson writes it.
	pj, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, pj); err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewView(vm, m.ProtoReflect())
	if got := stringify(t, vm, fresh); got != compact.String() {
		t.Errorf("fresh view\n got %s\nwant %s", got, compact.String())
	}

	// Setting a field of an unset message throws, as with a native object.
	empty := &eventsv1.SendEventRequest{}
	obj, _ = NewView(vm, empty.ProtoReflect())
	_, err = scriptFunc(t, vm, `m.eventData.x = 1`)(goja.Undefined(), obj)
	var ex *goja.Exception
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), "TypeError") {
		t.Errorf("got %v, want a TypeError", err)
	}
}

// TestViewAcrossTrees assigns a view from one message to another.
func TestViewAcrossTrees(t *testing.T) {
	vm := goja.New()
	a, b := viewBase(t), &testingv1.AllTypes{}
	objA, _ := NewView(vm, a.ProtoReflect())
	objB, vb := NewView(vm, b.ProtoReflect())
	if err := vm.Set("a", objA); err != nil {
		t.Fatal(err)
	}
	// Changes made through an assigned view later are kept, as for a
	// native object assigned to two places.
	runOn(t, vm, `m.fNested = a.fNested; m.rNested = a.rNested; m.wStruct = a.wStruct; m.mNested = a.mNested; m.wValue = a.wStruct.nested; a.fNested.name = "both"; m.rNested[0].name = "both"`, objB)
	if err := vb.Err(); err != nil {
		t.Fatal(err)
	}
	base := viewBase(t)
	base.FNested.Name, base.RNested[0].Name = "both", "both"
	want := &testingv1.AllTypes{FNested: base.FNested, RNested: base.RNested, WStruct: base.WStruct, MNested: base.MNested,
		WValue: structpb.NewStructValue(base.WStruct.Fields["nested"].GetStructValue())}
	if !proto.Equal(b, want) {
		t.Errorf("got %v, want %v", b, want)
	}
	if a.FNested.Name != "both" || a.RNested[0].Name != "both" {
		t.Errorf("a = %v", a)
	}

	// Views of dynamic messages assigned to a generated one.
	d := toDynamic(t, viewBase(t))
	objD, _ := NewView(vm, d)
	if err := vm.Set("d", objD); err != nil {
		t.Fatal(err)
	}
	c := &testingv1.AllTypes{}
	objC, vc := NewView(vm, c.ProtoReflect())
	runOn(t, vm, `m.fNested = d.fNested; m.rNested = d.rNested; m.wStruct = d.wStruct; m.mValue = d.mValue; m.wList = d.wList`, objC)
	if err := vc.Err(); err != nil {
		t.Fatal(err)
	}
	base = viewBase(t)
	want = &testingv1.AllTypes{FNested: base.FNested, RNested: base.RNested, WStruct: base.WStruct, MValue: base.MValue, WList: base.WList}
	if !proto.Equal(c, want) {
		t.Errorf("got %v, want %v", c, want)
	}
}

// randomOps are statements the random differential test combines; %d is
// replaced by a small random number.
var randomOps = []string{
	`m.fString = "s%d"`, `m.fInt32 = %d`, `m.fInt64 = "%d"`, `m.fEnum = %d % 3`, `m.fEnum = "COLOR_GREEN"`,
	`m.fBool = %d % 2 === 0`, `m.fDouble = %d / 4`, `delete m.fString`, `delete m.fInt64`, `m.oInt32 = %d`, `delete m.oString`,
	`m.rString.push("p%d")`, `m.rString.pop()`, `m.rString.shift()`, `m.rString.unshift("u%d")`,
	`m.rString.splice(%d % 4, 1, "a", "b")`, `m.rString.reverse()`, `m.rString.sort()`, `m.rString.length = %d % 3`,
	`m.rString[%d % 4] = "i"`, `m.rString.fill("f", 1)`, `m.rString = ["n%d"]`, `delete m.rString`,
	`if (m.rString) m.rString.length = %d % 6`, `if (m.rString) delete m.rString[%d % 3]`,
	`m.rNested.push({name: "n%d", count: %d})`, `m.rNested.pop()`, `m.rNested.shift()`, `m.rNested.reverse()`,
	`m.rNested.sort((a, b) => (a && a.name || "") < (b && b.name || "") ? -1 : 1)`, `m.rNested.splice(%d % 3, 1)`,
	`m.rNested.push(m.rNested.shift())`, `m.rNested.unshift(m.rNested.pop())`, `m.rNested.splice(1, 0, {name: "s%d"})`,
	`if (m.rNested && m.rNested[%d % 3]) m.rNested[%d % 3].name = "e%d"`,
	`if (m.rNested && m.rNested[0]) (m.rNested[0].tags || (m.rNested[0].tags = [])).push("t%d")`,
	`if (m.rNested && m.rNested[1]) m.rNested[1].count = String(Number(m.rNested[1].count || 0) + %d)`,
	`m.rNested = m.rNested.filter((n, i) => n !== undefined && i !== %d % 3)`, `if (m.rNested) m.rNested.length = %d % 4`,
	`m.rInt32.push(%d)`, `m.rInt32.sort((a, b) => b - a)`, `m.rInt32.copyWithin(0, 1)`, `m.rInt32[%d % 3] = %d`,
	`m.mString.k%d = "v"`, `delete m.mString.a`, `m.mString.b = m.mString.b + "x"`,
	`m.mNested[%d % 4] = {name: "mn"}`, `delete m.mNested[%d % 3]`, `if (m.mNested && m.mNested[2]) m.mNested[2].tags.push("x")`,
	`m.wStruct.k%d = %d`, `m.wStruct.o%d = {a: [%d, "x"]}`, `delete m.wStruct.a`, `m.wStruct.list.push(%d)`,
	`m.wStruct.list.shift()`, `if (m.wStruct.nested) m.wStruct.nested.deep = %d`, `Object.assign(m.wStruct, {z: null, y: [true]})`,
	`m.wStruct.list = m.wStruct.list.concat([%d])`, `if (m.wStruct.nested && m.wStruct.nested.x) m.wStruct.nested.x.reverse()`,
	`m.wValue = %d`, `m.wValue = {v: %d}`, `m.wList.unshift([%d])`, `m.wList.length = %d % 4`,
	`m.fNested = {name: "f%d", tags: ["x"]}`, `if (m.fNested) m.fNested.tags.push("g")`, `delete m.fNested`,
	`if (m.fNested) m.fNested.count = %d`,
	`delete m.cString; delete m.cNested; delete m.cInt32; m.cInt32 = %d`,
	`delete m.cString; delete m.cNested; delete m.cInt32; m.cNested = {name: "c%d"}`,
	`m.wTimestamp = new Date(%d * 1e9)`, `m.wInt64 = %d`, `m.wInt64 = null`,
	`m.fString = JSON.stringify(m.rNested) + Object.keys(m.mString).join()`,
	`m.fString = String(m.rString && m.rString.length) + JSON.stringify(m.wStruct)`,
	`m.rString = %d`, `m.fInt32 = "x%d"`, `m.rNested.push(null)`,
	// Aliasing, idioms that rely on it, and values read back as assigned.
	`m.fNested = (m.rNested && m.rNested[0]) || {name: "z%d"}`, `if (m.rNested && m.rNested[0]) m.rNested.push(m.rNested[0])`,
	`var keep = m.rNested && m.rNested[1]`, `if (typeof keep === "object" && keep) keep.name = "kept%d"`,
	`(m.fNested ??= {}).name = "q%d"`, `if (m.rNested && m.rNested[0]) (m.rNested[0].tags ??= []).push("i%d")`,
	`var arr = []; m.rString = arr; arr.push("late%d")`, `if (typeof arr === "object") arr.push("later")`,
	`m.wStruct.alias = m.wStruct.list`, `if (m.wStruct.alias) m.wStruct.alias.push(%d)`, `m.wValue = m.wStruct`,
	`m.mNested[7] = m.fNested || {}`, `m.fInt64 = %d; m.fInt64 += 1`, `m.fEnum = 1; m.fString = String(m.fEnum === 1)`,
	`m.rInt64.push(%d); m.fString = String(m.rInt64[m.rInt64.length - 1] + 1)`, `m.fString = JSON.stringify(m).length > 0 ? "j" : "k"`,
	`m.fFloat = 0.1; m.fDouble = m.fFloat * 3`, `m.wTimestamp = new Date(%d * 1e10); m.fString = String(m.wTimestamp)`,
	`if (m.rNested) m.rNested.unshift(m.rNested[m.rNested.length - 1] || {})`, `m.fString = null; m.fBool = undefined`,
	`var o%d = {name: "o"}; m.cNested = undefined; m.cString = undefined; m.cInt32 = undefined; delete m.cString; m.cNested = o%d; o%d.count = "%d"`,
	`m.mString.k = String(%d); m.mString.k += 1`, `m.wStruct.n%d = m.wStruct.n%d || []; m.wStruct.n%d.push(%d)`,
	`m.rNested = [m.fNested || {}, m.fNested || {}]`, `if (m.rNested && m.rNested.length) m.rNested[0].count = %d`,
	`m.rValue.push({p: %d}); m.rValue[m.rValue.length - 1].q = [%d]`, `m.rValue.reverse()`, `m.rValue[%d % 5] = null`,
	`m.mValue.o.p = %d`, `m.mValue.n = m.mValue.o`, `if (m.mValue.n) m.mValue.n.z = "zz"`, `delete m.mValue.o`,
	`var extra = {a: {b: [%d]}}; Object.assign(m.wStruct, extra); extra.a.b.push("later")`,
	`m.wStruct.nested = {deep: {deeper: [%d]}}; m.wStruct.nested.deep.deeper.push(1)`,
	`m.wList.push({k: %d}); m.wList[m.wList.length - 1].k2 = true`, `m.wList = m.wList.slice(1)`,
	`m.rInt64[0] = %d; m.rInt64[0] *= 2`, `m.rEnum.push(%d % 3); m.rEnum[0] = m.rEnum[m.rEnum.length - 1]`,
	`m.mBool["true"] = %d; m.mBool["true"] += 1`, `m.mNested[1] = m.rNested && m.rNested[0] || {}`,
	`if (m.mNested && m.mNested[1]) m.mNested[1].tags = ["mt%d"]`, `m.fNested = JSON.parse(JSON.stringify(m.fNested || {}))`,
	`delete m.rNested[%d % 3]; m.rNested.push({name: "after hole"})`, `m.rNested.length = %d % 5; m.rNested.fill({name: "f"})`,
	`var shared = {name: "sh%d"}; m.rNested = [shared, shared]; shared.count = 1`,
	`delete m.cString; delete m.cInt32; m.cNested = m.rNested && m.rNested[0] || {}`,
	`m.fString = "ключ%d"`, `m.rString.push("値%d")`, `m.fBytes = "ключ"`, `m.fBytes = "AQ%d"`, `m.mString["ключ"] = "v%d"`,
	`m.wStruct["ключ%d"] = "値"`, `m.fEnum = "цвет"`, `m.fEnum = "COLOR_RED"`, `m.fNested = undefined; m.fNested = {name: "back"}`,
}

// TestViewRandomDifferential runs random combinations of randomOps on a
// native object and on a view and checks that they agree: on whether the
// result fits, on the message, and on JSON.stringify of the object after
// the script.
func TestViewRandomDifferential(t *testing.T) {
	base := viewBase(t)
	randomDifferential(t, base, 1, 3000, 6)
	randomDifferential(t, toDynamic(t, base), 2, 1000, 8)
}

func randomDifferential(t *testing.T, base proto.Message, seed uint64, scripts, maxOps int) {
	t.Helper()
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	agreeOK, agreeErr := 0, 0
	for i := 0; i < scripts; i++ {
		var b strings.Builder
		for j, n := 0, 1+next(maxOps); j < n; j++ {
			op := randomOps[next(len(randomOps))]
			num := next(10)
			b.WriteString(strings.ReplaceAll(op, "%d", string(rune('0'+num))))
			b.WriteString(";\n")
		}
		js := "try {\n" + b.String() + "} catch (e) { if (!(e instanceof TypeError)) throw e }"

		vm := goja.New()
		native := ToValue(vm, base.ProtoReflect())
		runOn(t, vm, js, native)
		nativeJSON := tryStringify(vm, native)
		want := base.ProtoReflect().New().Interface()
		nerr := FromValue(vm, native, want.ProtoReflect())

		vm2 := goja.New()
		got := proto.Clone(base)
		obj, v := NewView(vm2, got.ProtoReflect())
		runOn(t, vm2, js, obj)
		viewJSON := tryStringify(vm2, obj)
		verr := v.Err()

		if viewJSON != "" && nativeJSON != "" && !sameJSON(t, viewJSON, nativeJSON) || (viewJSON == "") != (nativeJSON == "") {
			t.Errorf("script %d:\n%s\nJSON.stringify(view)\n%s\nnative\n%s", i, js, viewJSON, nativeJSON)
		}
		switch {
		case (nerr == nil) != (verr == nil):
			t.Errorf("script %d:\n%s\nnative error %v, view error %v", i, js, nerr, verr)
		case nerr != nil:
			agreeErr++
		case !proto.Equal(got, want):
			t.Errorf("script %d:\n%s\nview gives\n%v\nnative gives\n%v", i, js, got, want)
		default:
			agreeOK++
		}
	}
	t.Logf("%d scripts agree on the message, %d on failing", agreeOK, agreeErr)
}
