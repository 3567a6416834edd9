package protojs

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
)

// maxDepth bounds the nesting of objects and arrays FromValue follows, as
// protojson's default recursion limit does; it also stops cyclic values.
const maxDepth = 10000

// FromValue fills m, which must be empty, from v, accepting exactly what
// protojson.Unmarshal (default options: unknown fields rejected) accepts for
// the same JSON: JSON or original proto field names, null meaning "unset"
// (except for google.protobuf.Value, where it is null_value), numbers or
// decimal strings for integers, "NaN"/"Infinity"/"-Infinity" for floats,
// enum names or numbers, standard or URL base64 with or without padding, and
// the well-known types' JSON forms. JavaScript `undefined` (a property set
// to undefined) counts as absent, as JSON.stringify would drop it.
// A value that does not fit returns an error that names the field path (for
// example `field "eventData.items[2]": ...` or
// `field "toUserId": want string, got number`) and, when it returns an
// error, m may be partly filled: callers pass a fresh message.
//
// "The same JSON" is what JSON.stringify would write for v: array holes and
// undefined array elements read as null, a Date reads as its ISO string and
// boxed primitives as their primitive. Beyond that, FromValue accepts two
// things JSON text cannot express: the numbers NaN, Infinity and -Infinity
// for float and double fields, and BigInt values for integer fields. Values
// JSON.stringify would drop or reject (functions, symbols, BigInt elsewhere)
// and NaN or ±Infinity for a google.protobuf.Value are errors. A toJSON
// method other than Date's is not called, and a -0 number stays -0 rather
// than becoming 0. A string value with an unpaired UTF-16 surrogate is an
// error, as protojson rejects the escape JSON.stringify writes for it. A
// JavaScript exception raised while reading v (a throwing getter or Proxy
// trap) is returned as an error. Errors are *FieldError values.
func FromValue(vm *goja.Runtime, v goja.Value, m protoreflect.Message) error {
	return FromValueCounting(vm, v, m, nil)
}

// FromValueCounting is FromValue, counting what it writes into m in c.
func FromValueCounting(vm *goja.Runtime, v goja.Value, m protoreflect.Message, c *Counter) error {
	if m == nil || !m.IsValid() {
		return &FieldError{Err: errors.New("invalid message")}
	}
	d := decoder{vm: vm, counter: c}
	var err error
	if ex := vm.Try(func() {
		cv, k := classify(vm, v)
		err = d.message(cv, k, m)
	}); ex != nil {
		return &FieldError{Err: fmt.Errorf("exception while reading value: %w", ex)}
	}
	if err != nil {
		return toFieldError(err)
	}
	if err := proto.CheckInitialized(m.Interface()); err != nil {
		return &FieldError{Err: err}
	}
	return nil
}

type decoder struct {
	vm    *goja.Runtime
	depth int
	// elemMessage, when set, converts the message elements of lists and
	// the message values of maps in place of message (a View uses it to
	// copy views assigned as elements).
	elemMessage func(dst protoreflect.Message, v goja.Value, k kind) error
	// gate, when set, is let go while reading a value runs script code,
	// and stops the conversion if it closed meanwhile.
	gate *Gate
	// counter, when set, counts the strings and byte strings written.
	counter *Counter
}

// elementMessage converts a list element or map value into m.
func (d *decoder) elementMessage(v goja.Value, k kind, m protoreflect.Message) error {
	if d.elemMessage != nil {
		return d.elemMessage(m, v, k)
	}
	return d.message(v, k, m)
}

var errDepth = errors.New("exceeded max recursion depth")

// Counted per value besides its bytes (see Counter): a field's tag and a
// varint, or a message's tag and length.
const (
	scalarCost  = 11
	messageCost = 6
)

func (d *decoder) enter() error {
	d.counter.add(messageCost)
	d.depth++
	if d.depth > maxDepth {
		return errDepth
	}
	return nil
}

func (d *decoder) get(obj *goja.Object, key string) (goja.Value, kind) {
	defer d.gate.reacquire(d.gate.release())
	return classify(d.vm, obj.Get(key))
}

// keys returns the own enumerable keys of obj.
func (d *decoder) keys(obj *goja.Object) []string {
	defer d.gate.reacquire(d.gate.release())
	return obj.Keys()
}

// length returns the length of the array obj.
func (d *decoder) length(obj *goja.Object) int {
	defer d.gate.reacquire(d.gate.release())
	return arrayLength(obj)
}

// element returns array element i as JSON.stringify sees it: holes and
// undefined are null.
func (d *decoder) element(obj *goja.Object, i int) (goja.Value, kind) {
	v, k := d.get(obj, strconv.Itoa(i))
	if k == kUndefined {
		return goja.Null(), kNull
	}
	return v, k
}

func arrayLength(obj *goja.Object) int {
	n := obj.Get("length").ToInteger()
	if n < 0 {
		return 0
	}
	return int(n)
}

// message fills m from v.
func (d *decoder) message(v goja.Value, k kind, m protoreflect.Message) error {
	if err := d.enter(); err != nil {
		return err
	}
	err := d.messageBody(v, k, m)
	d.depth--
	return err
}

func (d *decoder) messageBody(v goja.Value, k kind, m protoreflect.Message) error {
	md := m.Descriptor()
	switch wellKnown(md) {
	case wktNone, wktEmpty:
		if k != kObject {
			return wantError("object", k)
		}
		return d.fields(v.(*goja.Object), m, false)
	case wktStruct:
		if k != kObject {
			return wantError("object", k)
		}
		if s, ok := m.Interface().(*structpb.Struct); ok {
			return d.pbStruct(v.(*goja.Object), s)
		}
		fd := md.Fields().ByNumber(structFieldsField)
		return d.mapField(v, k, m.Mutable(fd).Map(), fd)
	case wktListValue:
		if k != kArray {
			return wantError("array", k)
		}
		if l, ok := m.Interface().(*structpb.ListValue); ok {
			return d.pbList(v.(*goja.Object), l)
		}
		fd := md.Fields().ByNumber(listValuesField)
		return d.list(v, k, m.Mutable(fd).List(), fd)
	case wktValue:
		if x, ok := m.Interface().(*structpb.Value); ok {
			return d.pbValue(x, v, k)
		}
		return d.knownValue(v, k, m)
	case wktWrapper:
		fd := md.Fields().ByNumber(wrapperValueField)
		pv, err := d.scalar(v, k, fd)
		if err != nil {
			return err
		}
		m.Set(fd, pv)
		return nil
	case wktTimestamp:
		return timestampInto(v, k, m)
	case wktDuration:
		return durationInto(v, k, m)
	case wktFieldMask:
		return fieldMaskInto(v, k, m)
	case wktAny:
		return d.anyInto(v, k, m)
	}
	return nil
}

// numSet is a set of small non-negative integers.
type numSet struct {
	lo uint64
	hi map[int32]struct{}
}

// add adds n and reports whether it was absent.
func (s *numSet) add(n int32) bool {
	if 0 <= n && n < 64 {
		bit := uint64(1) << uint(n)
		if s.lo&bit != 0 {
			return false
		}
		s.lo |= bit
		return true
	}
	if _, ok := s.hi[n]; ok {
		return false
	}
	if s.hi == nil {
		s.hi = make(map[int32]struct{})
	}
	s.hi[n] = struct{}{}
	return true
}

// fields fills a message without a special JSON form from obj's properties.
// With skipType the "@type" property of an Any is ignored.
func (d *decoder) fields(obj *goja.Object, m protoreflect.Message, skipType bool) error {
	md := m.Descriptor()
	fds := md.Fields()
	var seen, seenOneofs numSet
	for _, key := range d.keys(obj) {
		if skipType && key == "@type" {
			continue
		}
		v, k := d.get(obj, key)
		if k == kUndefined {
			continue
		}
		fd := fds.ByJSONName(key)
		if fd == nil {
			fd = fds.ByTextName(key)
		}
		if fd == nil {
			var err error
			if fd, err = extensionField(md, key); err != nil {
				return inField(err, key)
			}
			if fd == nil {
				return inField(errors.New("unknown field"), key)
			}
		}
		if !seen.add(int32(fd.Number())) {
			return inField(fmt.Errorf("duplicate field: both %q and %q are set", fd.JSONName(), fd.TextName()), key)
		}
		if k == kNull && !isValueMessage(fd) && !isNullValueEnum(fd) {
			continue
		}
		var err error
		switch {
		case fd.IsList():
			err = d.list(v, k, m.Mutable(fd).List(), fd)
		case fd.IsMap():
			err = d.mapField(v, k, m.Mutable(fd).Map(), fd)
		default:
			if od := fd.ContainingOneof(); od != nil && !seenOneofs.add(int32(od.Index())) {
				err = fmt.Errorf("oneof %s is already set", od.Name())
				break
			}
			err = d.singular(v, k, m, fd)
		}
		if err != nil {
			return inField(err, key)
		}
	}
	return nil
}

// extensionField resolves a "[full.name]" key to an extension of md. It
// returns nil without an error when key is not an extension name or the
// extension is unknown.
func extensionField(md protoreflect.MessageDescriptor, key string) (protoreflect.FieldDescriptor, error) {
	if len(key) < 2 || key[0] != '[' || key[len(key)-1] != ']' {
		return nil, nil
	}
	xt, err := protoregistry.GlobalTypes.FindExtensionByName(protoreflect.FullName(key[1 : len(key)-1]))
	if err != nil {
		if errors.Is(err, protoregistry.NotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("unable to resolve %s: %v", key, err)
	}
	fd := xt.TypeDescriptor()
	if !md.ExtensionRanges().Has(fd.Number()) || fd.ContainingMessage().FullName() != md.FullName() {
		return nil, fmt.Errorf("message %v cannot be extended by %v", md.FullName(), fd.FullName())
	}
	return fd, nil
}

func (d *decoder) singular(v goja.Value, k kind, m protoreflect.Message, fd protoreflect.FieldDescriptor) error {
	if fd.Message() != nil {
		return d.message(v, k, m.Mutable(fd).Message())
	}
	pv, err := d.scalar(v, k, fd)
	if err != nil {
		return err
	}
	m.Set(fd, pv)
	return nil
}

func (d *decoder) list(v goja.Value, k kind, l protoreflect.List, fd protoreflect.FieldDescriptor) error {
	if k != kArray {
		return wantError("array", k)
	}
	obj := v.(*goja.Object)
	n := d.length(obj)
	isMessage := fd.Message() != nil
	for i := 0; i < n; i++ {
		ev, ek := d.element(obj, i)
		if isMessage {
			el := l.NewElement()
			if err := d.elementMessage(ev, ek, el.Message()); err != nil {
				return atIndex(err, i)
			}
			l.Append(el)
			continue
		}
		pv, err := d.scalar(ev, ek, fd)
		if err != nil {
			return atIndex(err, i)
		}
		l.Append(pv)
	}
	return nil
}

func (d *decoder) mapField(v goja.Value, k kind, mp protoreflect.Map, fd protoreflect.FieldDescriptor) error {
	if k != kObject {
		return wantError("object", k)
	}
	obj := v.(*goja.Object)
	kfd, vfd := fd.MapKey(), fd.MapValue()
	isMessage := vfd.Message() != nil
	checkDup := kfd.Kind() != protoreflect.StringKind
	for _, key := range d.keys(obj) {
		ev, ek := d.get(obj, key)
		if ek == kUndefined {
			continue
		}
		d.counter.add(len(key))
		mk, err := mapKey(key, kfd)
		if err != nil {
			return atKey(err, key)
		}
		if checkDup && mp.Has(mk) {
			return atKey(errors.New("duplicate map key"), key)
		}
		if isMessage {
			nv := mp.NewValue()
			if err := d.elementMessage(ev, ek, nv.Message()); err != nil {
				return atKey(err, key)
			}
			mp.Set(mk, nv)
			continue
		}
		pv, err := d.scalar(ev, ek, vfd)
		if err != nil {
			return atKey(err, key)
		}
		mp.Set(mk, pv)
	}
	return nil
}

// mapKey parses a map key as protojson does.
func mapKey(key string, fd protoreflect.FieldDescriptor) (protoreflect.MapKey, error) {
	switch kd := fd.Kind(); kd {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(key).MapKey(), nil
	case protoreflect.BoolKind:
		switch key {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if n, err := strconv.ParseInt(key, 10, 32); err == nil {
			return protoreflect.ValueOfInt32(int32(n)).MapKey(), nil
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if n, err := strconv.ParseInt(key, 10, 64); err == nil {
			return protoreflect.ValueOfInt64(n).MapKey(), nil
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if n, err := strconv.ParseUint(key, 10, 32); err == nil {
			return protoreflect.ValueOfUint32(uint32(n)).MapKey(), nil
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if n, err := strconv.ParseUint(key, 10, 64); err == nil {
			return protoreflect.ValueOfUint64(n).MapKey(), nil
		}
	}
	return protoreflect.MapKey{}, fmt.Errorf("invalid %v map key %q", fd.Kind(), key)
}

func (d *decoder) scalar(v goja.Value, k kind, fd protoreflect.FieldDescriptor) (protoreflect.Value, error) {
	d.counter.add(scalarCost)
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if k == kBool {
			return protoreflect.ValueOfBool(v.ToBoolean()), nil
		}
		return protoreflect.Value{}, wantError("boolean", k)
	case protoreflect.StringKind:
		if k != kString {
			return protoreflect.Value{}, wantError("string", k)
		}
		str, err := jsString(v)
		d.counter.add(len(str))
		return protoreflect.ValueOfString(str), err
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := toInt(v, k, 32)
		return protoreflect.ValueOfInt32(int32(n)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := toInt(v, k, 64)
		return protoreflect.ValueOfInt64(n), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := toUint(v, k, 32)
		return protoreflect.ValueOfUint32(uint32(n)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := toUint(v, k, 64)
		return protoreflect.ValueOfUint64(n), err
	case protoreflect.FloatKind:
		f, err := toFloat(v, k, 32)
		return protoreflect.ValueOfFloat32(float32(f)), err
	case protoreflect.DoubleKind:
		f, err := toFloat(v, k, 64)
		return protoreflect.ValueOfFloat64(f), err
	case protoreflect.BytesKind:
		if k != kString {
			return protoreflect.Value{}, wantError("base64 string", k)
		}
		b, err := decodeBase64(v.String())
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("invalid base64 value %s: %v", describe(v, k), err)
		}
		d.counter.add(len(b))
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.EnumKind:
		return toEnum(v, k, fd)
	}
	return protoreflect.Value{}, fmt.Errorf("unsupported field kind %v", fd.Kind())
}

func toInt(v goja.Value, k kind, bits int) (int64, error) {
	var n int64
	var err error
	switch k {
	case kInt:
		n, err = checkInt(v.ToInteger(), bits)
	case kFloat:
		n, err = intFromFloat(v.ToFloat(), bits)
	case kString:
		n, err = intFromString(v.String(), bits)
	case kBigInt:
		b, _ := v.Export().(*big.Int)
		n, err = intFromBig(b, bits)
	default:
		return 0, wantError(intTypeName(bits, true), k)
	}
	if err != nil {
		return 0, numberError(err, intTypeName(bits, true), describe(v, k))
	}
	return n, nil
}

func toUint(v goja.Value, k kind, bits int) (uint64, error) {
	var n uint64
	var err error
	switch k {
	case kInt:
		i := v.ToInteger()
		if i < 0 {
			err = errOutOfRange
		} else {
			n, err = checkUint(uint64(i), bits)
		}
	case kFloat:
		n, err = uintFromFloat(v.ToFloat(), bits)
	case kString:
		n, err = uintFromString(v.String(), bits)
	case kBigInt:
		b, _ := v.Export().(*big.Int)
		n, err = uintFromBig(b, bits)
	default:
		return 0, wantError(intTypeName(bits, false), k)
	}
	if err != nil {
		return 0, numberError(err, intTypeName(bits, false), describe(v, k))
	}
	return n, nil
}

func toFloat(v goja.Value, k kind, bits int) (float64, error) {
	typ := "double"
	if bits == 32 {
		typ = "float"
	}
	switch k {
	case kInt:
		return float64(v.ToInteger()), nil
	case kFloat:
		f := v.ToFloat()
		if bits == 32 && !math.IsInf(f, 0) && math.IsInf(float64(float32(f)), 0) {
			return 0, fmt.Errorf("%s value %s out of range", typ, describe(v, k))
		}
		return f, nil
	case kString:
		if f, ok := floatFromString(v.String(), bits); ok {
			return f, nil
		}
		return 0, fmt.Errorf("invalid %s value %s", typ, describe(v, k))
	}
	return 0, wantError(typ, k)
}

func toEnum(v goja.Value, k kind, fd protoreflect.FieldDescriptor) (protoreflect.Value, error) {
	ed := fd.Enum()
	switch k {
	case kString:
		s := v.String()
		if evd := ed.Values().ByName(protoreflect.Name(s)); evd != nil {
			return protoreflect.ValueOfEnum(evd.Number()), nil
		}
		return protoreflect.Value{}, fmt.Errorf("invalid value %s for enum %s", describe(v, k), ed.FullName())
	case kInt, kFloat:
		n, err := toInt(v, k, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("invalid value %s for enum %s", describe(v, k), ed.FullName())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case kNull:
		if ed.FullName() == nullValueEnumName {
			return protoreflect.ValueOfEnum(0), nil
		}
	}
	return protoreflect.Value{}, wantError("enum name or number", k)
}

// jsString returns the JavaScript string v as UTF-8. An unpaired surrogate
// is an error, as protojson rejects the escape JSON.stringify writes for it;
// invalid UTF-8 in a string that came from Go becomes U+FFFD, as it would
// in JSON.stringify's output.
func jsString(v goja.Value) (string, error) {
	s := v.String()
	if utf8.ValidString(s) && !strings.Contains(s, "\uFFFD") {
		return s, nil
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if js, ok := v.(goja.String); ok {
		n := js.Length()
		for i := 0; i < n; i++ {
			c := rune(js.CharAt(i))
			if !utf16.IsSurrogate(c) {
				continue
			}
			if c < 0xDC00 && i+1 < n {
				if next := rune(js.CharAt(i + 1)); 0xDC00 <= next && next <= 0xDFFF {
					i++
					continue
				}
			}
			return "", fmt.Errorf("invalid string: unpaired UTF-16 surrogate at index %d", i)
		}
	}
	return s, nil
}

// decodeBase64 decodes standard or URL base64 with or without padding, as
// protojson does.
func decodeBase64(s string) ([]byte, error) {
	url := strings.ContainsAny(s, "-_")
	padded := len(s)%4 == 0
	var enc *base64.Encoding
	switch {
	case url && padded:
		enc = base64.URLEncoding
	case url:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	return enc.DecodeString(s)
}

// knownValue fills a google.protobuf.Value that is not a *structpb.Value.
func (d *decoder) knownValue(v goja.Value, k kind, m protoreflect.Message) error {
	d.counter.add(scalarCost)
	fds := m.Descriptor().Fields()
	switch k {
	case kNull:
		m.Set(fds.ByNumber(valueNullField), protoreflect.ValueOfEnum(0))
	case kBool:
		m.Set(fds.ByNumber(valueBoolField), protoreflect.ValueOfBool(v.ToBoolean()))
	case kInt, kFloat:
		f := v.ToFloat()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("invalid google.protobuf.Value number %s", describe(v, k))
		}
		m.Set(fds.ByNumber(valueNumberField), protoreflect.ValueOfFloat64(f))
	case kString:
		str, err := jsString(v)
		if err != nil {
			return err
		}
		d.counter.add(len(str))
		m.Set(fds.ByNumber(valueStringField), protoreflect.ValueOfString(str))
	case kObject:
		return d.message(v, k, m.Mutable(fds.ByNumber(valueStructField)).Message())
	case kArray:
		return d.message(v, k, m.Mutable(fds.ByNumber(valueListField)).Message())
	default:
		return wantError("JSON value", k)
	}
	return nil
}

// pbStruct fills s from obj.
func (d *decoder) pbStruct(obj *goja.Object, s *structpb.Struct) error {
	keys := d.keys(obj)
	if s.Fields == nil {
		s.Fields = make(map[string]*structpb.Value, len(keys))
	}
	values := make([]structpb.Value, len(keys))
	for i, key := range keys {
		v, k := d.get(obj, key)
		if k == kUndefined {
			continue
		}
		x := &values[i]
		s.Fields[key] = x
		d.counter.add(len(key))
		if err := d.pbValue(x, v, k); err != nil {
			return atKey(err, key)
		}
	}
	return nil
}

// pbList fills l from the array obj.
func (d *decoder) pbList(obj *goja.Object, l *structpb.ListValue) error {
	n := d.length(obj)
	l.Values = make([]*structpb.Value, 0, min(n, 1024))
	var values []structpb.Value
	for i := 0; i < n; i++ {
		v, k := d.element(obj, i)
		if len(values) == 0 {
			values = make([]structpb.Value, min(n-i, 1024))
		}
		x := &values[0]
		values = values[1:]
		l.Values = append(l.Values, x)
		if err := d.pbValue(x, v, k); err != nil {
			return atIndex(err, i)
		}
	}
	return nil
}

// pbValue sets the kind of x from v.
func (d *decoder) pbValue(x *structpb.Value, v goja.Value, k kind) error {
	d.counter.add(scalarCost)
	switch k {
	case kNull:
		x.Kind = &structpb.Value_NullValue{}
	case kBool:
		x.Kind = &structpb.Value_BoolValue{BoolValue: v.ToBoolean()}
	case kInt:
		x.Kind = &structpb.Value_NumberValue{NumberValue: float64(v.ToInteger())}
	case kFloat:
		f := v.ToFloat()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("invalid google.protobuf.Value number %s", describe(v, k))
		}
		x.Kind = &structpb.Value_NumberValue{NumberValue: f}
	case kString:
		str, err := jsString(v)
		if err != nil {
			return err
		}
		d.counter.add(len(str))
		x.Kind = &structpb.Value_StringValue{StringValue: str}
	case kObject:
		if err := d.enter(); err != nil {
			return err
		}
		s := &structpb.Struct{}
		x.Kind = &structpb.Value_StructValue{StructValue: s}
		err := d.pbStruct(v.(*goja.Object), s)
		d.depth--
		return err
	case kArray:
		if err := d.enter(); err != nil {
			return err
		}
		l := &structpb.ListValue{}
		x.Kind = &structpb.Value_ListValue{ListValue: l}
		err := d.pbList(v.(*goja.Object), l)
		d.depth--
		return err
	default:
		return wantError("JSON value", k)
	}
	return nil
}

func setSecondsNanos(m protoreflect.Message, secs int64, nanos int32) {
	fds := m.Descriptor().Fields()
	m.Set(fds.ByNumber(secondsField), protoreflect.ValueOfInt64(secs))
	m.Set(fds.ByNumber(nanosField), protoreflect.ValueOfInt32(nanos))
}

func timestampInto(v goja.Value, k kind, m protoreflect.Message) error {
	if k != kString {
		return wantError("RFC 3339 string", k)
	}
	s := v.String()
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("invalid google.protobuf.Timestamp value %s", describe(v, k))
	}
	secs := t.Unix()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return fmt.Errorf("google.protobuf.Timestamp value %s out of range", describe(v, k))
	}
	i := strings.LastIndexByte(s, '.')
	j := strings.LastIndexAny(s, "Z-+")
	if i >= 0 && j >= i && j-i > len(".999999999") {
		return fmt.Errorf("invalid google.protobuf.Timestamp value %s", describe(v, k))
	}
	setSecondsNanos(m, secs, int32(t.Nanosecond()))
	return nil
}

func durationInto(v goja.Value, k kind, m protoreflect.Message) error {
	if k != kString {
		return wantError("duration string", k)
	}
	secs, nanos, ok := parseDuration(v.String())
	if !ok {
		return fmt.Errorf("invalid google.protobuf.Duration value %s", describe(v, k))
	}
	if secs < -maxDurationSeconds || secs > maxDurationSeconds {
		return fmt.Errorf("google.protobuf.Duration value %s out of range", describe(v, k))
	}
	setSecondsNanos(m, secs, nanos)
	return nil
}

// parseDuration parses decimal seconds with an "s" suffix, an optional sign
// and at most nine fraction digits, such as "1s", "-0.5s", "1.s" or ".1s".
func parseDuration(s string) (int64, int32, bool) {
	if len(s) < 2 || s[len(s)-1] != 's' {
		return 0, 0, false
	}
	s = s[:len(s)-1]
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" {
		return 0, 0, false
	}
	var intp string
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		intp, s = s[:n], s[n:]
	case s[0] == '.':
	default:
		return 0, 0, false
	}
	var nanos int64
	if s != "" {
		if s[0] != '.' {
			return 0, 0, false
		}
		s = s[1:]
		n := 0
		for n < len(s) && n < 9 && isDigit(s[n]) {
			nanos = nanos*10 + int64(s[n]-'0')
			n++
		}
		if n < len(s) {
			return 0, 0, false
		}
		for ; n < 9; n++ {
			nanos *= 10
		}
	}
	var secs int64
	if intp != "" {
		var err error
		if secs, err = strconv.ParseInt(intp, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	return secs, int32(nanos), true
}

func fieldMaskInto(v goja.Value, k kind, m protoreflect.Message) error {
	if k != kString {
		return wantError("string", k)
	}
	str := strings.TrimSpace(v.String())
	if str == "" {
		return nil
	}
	l := m.Mutable(m.Descriptor().Fields().ByNumber(fieldMaskPaths)).List()
	for _, s0 := range strings.Split(str, ",") {
		s := jsonSnakeCase(s0)
		if strings.Contains(s0, "_") || !protoreflect.FullName(s).IsValid() {
			return fmt.Errorf("google.protobuf.FieldMask contains invalid path: %q", s0)
		}
		l.Append(protoreflect.ValueOfString(s))
	}
	return nil
}

func (d *decoder) anyInto(v goja.Value, k kind, m protoreflect.Message) error {
	if k != kObject {
		return wantError("object", k)
	}
	obj := v.(*goja.Object)
	keys := d.keys(obj)
	var typeVal goja.Value
	typeKind := kUndefined
	present := 0
	for _, key := range keys {
		kv, kk := d.get(obj, key)
		if kk == kUndefined {
			continue
		}
		present++
		if key == "@type" {
			typeVal, typeKind = kv, kk
		}
	}
	if present == 0 {
		return nil
	}
	if typeKind == kUndefined {
		return errors.New(`missing "@type" field`)
	}
	if typeKind != kString {
		return inField(wantError("string", typeKind), "@type")
	}
	typeURL := typeVal.String()
	if typeURL == "" {
		return inField(errors.New("empty type URL"), "@type")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return inField(fmt.Errorf("unable to resolve %q: %v", typeURL, err), "@type")
	}
	em := mt.New()
	if w := wellKnown(em.Descriptor()); w != wktNone {
		found := false
		for _, key := range keys {
			if key == "@type" {
				continue
			}
			kv, kk := d.get(obj, key)
			if kk == kUndefined {
				continue
			}
			if key != "value" {
				return inField(errors.New("unknown field"), key)
			}
			found = true
			if err := d.message(kv, kk, em); err != nil {
				return inField(err, key)
			}
		}
		if !found && w != wktEmpty {
			return errors.New(`missing "value" field`)
		}
	} else if err := d.fields(obj, em, true); err != nil {
		return err
	}
	// Marshalled here, within the run: one value written many times
	// into it must not make it huge first (see Counter).
	if n := proto.Size(em.Interface()); d.counter.over(int64(n)) {
		return fmt.Errorf("the Any value would encode to %d bytes, more than the hook may write", n)
	}
	b, err := proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(em.Interface())
	if err != nil {
		return fmt.Errorf("error marshaling Any value: %v", err)
	}
	fds := m.Descriptor().Fields()
	m.Set(fds.ByNumber(anyTypeURLField), protoreflect.ValueOfString(typeURL))
	m.Set(fds.ByNumber(anyValueField), protoreflect.ValueOfBytes(b))
	return nil
}
