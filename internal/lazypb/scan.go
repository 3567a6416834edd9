package lazypb

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var errRecursionDepth = errors.New("exceeded maximum recursion depth")

// scan splits b, a message of md, into the spans of its fields, checking
// the wire structure of the whole message down to depth levels, and
// reports whether it holds a field that would be unknown (see
// Message.Unknown).
func scan(b []byte, md protoreflect.MessageDescriptor, depth int) (spans []span, unknown bool, err error) {
	spans = make([]span, 0, 8)
	unknown, err = walk(b, md, depth, &spans)
	return spans, unknown, err
}

// walk checks the wire structure of b, a message of md, and reports
// whether it holds a field that would be unknown; with spans, it appends
// those of b's fields. Well-known types (google.protobuf.*) never change:
// it does not look into them, and leaves what may be wrong inside one to
// decoding.
func walk(b []byte, md protoreflect.MessageDescriptor, depth int, spans *[]span) (unknown bool, err error) {
	if depth--; depth < 0 {
		return false, errRecursionDepth
	}
	fields := md.Fields()
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return false, protowire.ParseError(n)
		}
		v := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if v < 0 {
			return false, protowire.ParseError(v)
		}
		fd := fields.ByNumber(num)
		known := fd != nil && fits(fd, typ)
		switch {
		case !known:
			unknown = true
		case fd.Message() != nil && fd.Message().ParentFile().Package() != "google.protobuf":
			var inner []byte
			if typ == protowire.StartGroupType {
				inner, _ = protowire.ConsumeGroup(num, b[i+n:])
			} else {
				inner, _ = protowire.ConsumeBytes(b[i+n:])
			}
			u, err := walk(inner, fd.Message(), depth, nil)
			if err != nil {
				return false, err
			}
			unknown = unknown || u
		}
		if spans != nil {
			*spans = append(*spans, span{num: num, start: i, end: i + n + v, known: known})
		}
		i += n + v
	}
	return unknown, nil
}

// fits reports whether a field of fd may come with wire type typ; proto
// keeps one that does not as an unknown field.
func fits(fd protoreflect.FieldDescriptor, typ protowire.Type) bool {
	var want protowire.Type
	switch fd.Kind() {
	case protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		want = protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		want = protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		want = protowire.Fixed64Type
	case protoreflect.GroupKind:
		want = protowire.StartGroupType
	default: // string, bytes, message
		want = protowire.BytesType
	}
	// A repeated number may come packed.
	packable := want == protowire.VarintType || want == protowire.Fixed32Type || want == protowire.Fixed64Type
	return typ == want || fd.IsList() && packable && typ == protowire.BytesType
}
