package protojs

import (
	"cmp"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
)

// ToValue returns m as a native JavaScript object shaped exactly as
// protojson.Marshal (default options) would shape it: JSON (lowerCamelCase)
// field names, unpopulated fields omitted, 64-bit integers as decimal
// strings, enums as their value names (numbers for unknown values), bytes as
// standard base64, NaN/Infinity as strings, well-known types in their JSON
// forms (Struct/Value/ListValue as plain JSON values, Timestamp and Duration
// and FieldMask as strings, wrappers as their bare value, Empty as {}, Any
// via its type URL). The result is built from vm.NewObject / vm.NewArray
// etc., so scripts may mutate it freely (push/splice/delete on nested arrays
// and objects must work, as they do on any JS object).
//
// Object keys are inserted in protojson's order: fields in declaration
// order, then extensions by full name, and map and Struct entries sorted by
// key (JavaScript itself lists integer-like keys first, in numeric order).
// A nil or invalid message gives an empty object. ToValue cannot fail:
// for the few messages protojson.Marshal rejects (a Timestamp or Duration
// out of range, a Value with no kind or a non-finite number, an irreversible
// FieldMask path, an Any whose type cannot be resolved, invalid UTF-8) it
// converts what it can: out-of-range times are formatted anyway, a Value
// with no kind is null, a non-finite number_value is the JavaScript number,
// an unresolvable Any holds only its "@type", and invalid UTF-8 becomes
// U+FFFD.
func ToValue(vm *goja.Runtime, m protoreflect.Message) goja.Value {
	if m == nil || !m.IsValid() {
		return vm.NewObject()
	}
	return encoder{vm}.message(m)
}

type encoder struct {
	vm *goja.Runtime
}

func (e encoder) message(m protoreflect.Message) goja.Value {
	switch wellKnown(m.Descriptor()) {
	case wktNone, wktEmpty:
		return e.fields(m, "")
	case wktStruct:
		if s, ok := m.Interface().(*structpb.Struct); ok {
			return e.pbStruct(s)
		}
		fd := m.Descriptor().Fields().ByNumber(structFieldsField)
		return e.mapValue(fd, m.Get(fd).Map())
	case wktListValue:
		if l, ok := m.Interface().(*structpb.ListValue); ok {
			return e.pbList(l)
		}
		fd := m.Descriptor().Fields().ByNumber(listValuesField)
		return e.list(fd, m.Get(fd).List())
	case wktValue:
		if v, ok := m.Interface().(*structpb.Value); ok {
			return e.pbValue(v)
		}
		return e.knownValue(m)
	case wktWrapper:
		fd := m.Descriptor().Fields().ByNumber(wrapperValueField)
		return e.singular(fd, m.Get(fd))
	case wktTimestamp:
		return e.vm.ToValue(formatTimestamp(secondsNanos(m)))
	case wktDuration:
		return e.vm.ToValue(formatDuration(secondsNanos(m)))
	case wktFieldMask:
		return e.vm.ToValue(formatFieldMask(m))
	case wktAny:
		return e.anyValue(m)
	}
	return e.fields(m, "")
}

// fields converts a message without a special JSON form. A non-empty
// typeURL is emitted first as "@type", as inside an Any.
func (e encoder) fields(m protoreflect.Message, typeURL string) *goja.Object {
	obj := e.vm.NewObject()
	if typeURL != "" {
		obj.Set("@type", typeURL)
	}
	md := m.Descriptor()
	fds := md.Fields()
	for i, n := 0, fds.Len(); i < n; i++ {
		fd := fds.Get(i)
		if !m.Has(fd) {
			continue
		}
		obj.Set(fd.JSONName(), e.field(fd, m.Get(fd)))
	}
	if md.ExtensionRanges().Len() > 0 {
		var exts []protoreflect.FieldDescriptor
		m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			if fd.IsExtension() {
				exts = append(exts, fd)
			}
			return true
		})
		slices.SortFunc(exts, func(a, b protoreflect.FieldDescriptor) int {
			return cmp.Compare(a.FullName(), b.FullName())
		})
		for _, fd := range exts {
			obj.Set(fd.JSONName(), e.field(fd, m.Get(fd)))
		}
	}
	return obj
}

func (e encoder) field(fd protoreflect.FieldDescriptor, v protoreflect.Value) goja.Value {
	switch {
	case fd.IsList():
		return e.list(fd, v.List())
	case fd.IsMap():
		return e.mapValue(fd, v.Map())
	}
	return e.singular(fd, v)
}

func (e encoder) list(fd protoreflect.FieldDescriptor, l protoreflect.List) goja.Value {
	n := l.Len()
	items := make([]any, n)
	for i := 0; i < n; i++ {
		items[i] = e.singular(fd, l.Get(i))
	}
	return e.vm.NewArray(items...)
}

type mapEntry struct {
	k protoreflect.MapKey
	v protoreflect.Value
}

func (e encoder) mapValue(fd protoreflect.FieldDescriptor, mp protoreflect.Map) goja.Value {
	obj := e.vm.NewObject()
	n := mp.Len()
	if n == 0 {
		return obj
	}
	entries := make([]mapEntry, 0, n)
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		entries = append(entries, mapEntry{k, v})
		return true
	})
	switch fd.MapKey().Kind() {
	case protoreflect.BoolKind:
		slices.SortFunc(entries, func(a, b mapEntry) int {
			return cmp.Compare(b2i(a.k.Bool()), b2i(b.k.Bool()))
		})
	case protoreflect.StringKind:
		slices.SortFunc(entries, func(a, b mapEntry) int { return strings.Compare(a.k.String(), b.k.String()) })
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		slices.SortFunc(entries, func(a, b mapEntry) int { return cmp.Compare(a.k.Uint(), b.k.Uint()) })
	default:
		slices.SortFunc(entries, func(a, b mapEntry) int { return cmp.Compare(a.k.Int(), b.k.Int()) })
	}
	vfd := fd.MapValue()
	for _, en := range entries {
		obj.Set(en.k.String(), e.singular(vfd, en.v))
	}
	return obj
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (e encoder) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) goja.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return e.vm.ToValue(v.Bool())
	case protoreflect.StringKind:
		return e.vm.ToValue(v.String())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return e.vm.ToValue(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return e.vm.ToValue(int64(v.Uint()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return e.vm.ToValue(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return e.vm.ToValue(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.FloatKind:
		return e.float(v.Float(), 32)
	case protoreflect.DoubleKind:
		return e.float(v.Float(), 64)
	case protoreflect.BytesKind:
		return e.vm.ToValue(base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == nullValueEnumName {
			return goja.Null()
		}
		if evd := ed.Values().ByNumber(v.Enum()); evd != nil {
			return e.vm.ToValue(string(evd.Name()))
		}
		return e.vm.ToValue(int64(v.Enum()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	}
	return goja.Undefined()
}

// float converts a float or double as protojson writes it: non-finite
// values as strings, a float as the double its shortest decimal form
// denotes.
func (e encoder) float(f float64, bits int) goja.Value {
	switch {
	case math.IsNaN(f):
		return e.vm.ToValue("NaN")
	case math.IsInf(f, 1):
		return e.vm.ToValue("Infinity")
	case math.IsInf(f, -1):
		return e.vm.ToValue("-Infinity")
	}
	if bits == 32 {
		var buf [32]byte
		f, _ = strconv.ParseFloat(string(strconv.AppendFloat(buf[:0], f, 'g', -1, 32)), 64)
	}
	return e.vm.ToValue(f)
}

func (e encoder) pbStruct(s *structpb.Struct) *goja.Object {
	obj := e.vm.NewObject()
	fields := s.GetFields()
	if len(fields) == 0 {
		return obj
	}
	var buf [16]string
	for _, k := range sortedKeys(fields, buf[:0]) {
		obj.Set(k, e.pbValue(fields[k]))
	}
	return obj
}

func (e encoder) pbList(l *structpb.ListValue) goja.Value {
	values := l.GetValues()
	items := make([]any, len(values))
	for i, v := range values {
		items[i] = e.pbValue(v)
	}
	return e.vm.NewArray(items...)
}

func (e encoder) pbValue(v *structpb.Value) goja.Value {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return e.vm.ToValue(k.NumberValue)
	case *structpb.Value_StringValue:
		return e.vm.ToValue(k.StringValue)
	case *structpb.Value_BoolValue:
		return e.vm.ToValue(k.BoolValue)
	case *structpb.Value_StructValue:
		return e.pbStruct(k.StructValue)
	case *structpb.Value_ListValue:
		return e.pbList(k.ListValue)
	}
	return goja.Null()
}

// knownValue converts a google.protobuf.Value that is not a *structpb.Value.
func (e encoder) knownValue(m protoreflect.Message) goja.Value {
	od := m.Descriptor().Oneofs().ByName("kind")
	if od == nil {
		return goja.Null()
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return goja.Null()
	}
	v := m.Get(fd)
	switch fd.Number() {
	case valueNumberField:
		return e.vm.ToValue(v.Float())
	case valueStringField:
		return e.vm.ToValue(v.String())
	case valueBoolField:
		return e.vm.ToValue(v.Bool())
	case valueStructField, valueListField:
		return e.message(v.Message())
	}
	return goja.Null()
}

func secondsNanos(m protoreflect.Message) (int64, int64) {
	fds := m.Descriptor().Fields()
	return m.Get(fds.ByNumber(secondsField)).Int(), m.Get(fds.ByNumber(nanosField)).Int()
}

// trimNanos drops trailing groups of three zeros from nine fraction digits
// at the end of b, and the dot if all are zero, as protojson does.
func trimNanos(b []byte) []byte {
	for i := 0; i < 3 && len(b) >= 3 && string(b[len(b)-3:]) == "000"; i++ {
		if i == 2 {
			return b[:len(b)-4]
		}
		b = b[:len(b)-3]
	}
	return b
}

// formatTimestamp formats a Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9
// fraction digits.
func formatTimestamp(secs, nanos int64) string {
	var buf [40]byte
	b := time.Unix(secs, nanos).UTC().AppendFormat(buf[:0], "2006-01-02T15:04:05.000000000")
	b = trimNanos(b)
	return string(append(b, 'Z'))
}

// formatDuration formats a Duration as decimal seconds with 0, 3, 6 or 9
// fraction digits and an "s" suffix.
func formatDuration(secs, nanos int64) string {
	var buf [40]byte
	b := buf[:0]
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	if nanos < 0 {
		nanos = -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, '.')
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + nanos%10)
		nanos /= 10
	}
	b = append(b, frac[:]...)
	b = trimNanos(b)
	return string(append(b, 's'))
}

func formatFieldMask(m protoreflect.Message) string {
	l := m.Get(m.Descriptor().Fields().ByNumber(fieldMaskPaths)).List()
	var b strings.Builder
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonCamelCase(l.Get(i).String()))
	}
	return b.String()
}

func (e encoder) anyValue(m protoreflect.Message) goja.Value {
	fds := m.Descriptor().Fields()
	typeFd := fds.ByNumber(anyTypeURLField)
	if !m.Has(typeFd) {
		return e.vm.NewObject()
	}
	typeURL := m.Get(typeFd).String()
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return e.typeOnly(typeURL)
	}
	em := mt.New()
	err = proto.UnmarshalOptions{AllowPartial: true, Resolver: protoregistry.GlobalTypes}.
		Unmarshal(m.Get(fds.ByNumber(anyValueField)).Bytes(), em.Interface())
	if err != nil {
		return e.typeOnly(typeURL)
	}
	switch wellKnown(em.Descriptor()) {
	case wktNone, wktEmpty:
		return e.fields(em, typeURL)
	}
	obj := e.vm.NewObject()
	obj.Set("@type", typeURL)
	obj.Set("value", e.message(em))
	return obj
}

func (e encoder) typeOnly(typeURL string) goja.Value {
	obj := e.vm.NewObject()
	obj.Set("@type", typeURL)
	return obj
}
