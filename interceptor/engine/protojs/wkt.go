package protojs

import (
	"google.golang.org/protobuf/reflect/protoreflect"
)

// wkt identifies a well-known type with a special JSON form.
type wkt uint8

const (
	wktNone wkt = iota
	wktAny
	wktTimestamp
	wktDuration
	wktWrapper
	wktStruct
	wktListValue
	wktValue
	wktFieldMask
	wktEmpty
)

// wellKnown returns the well-known type md is, if any.
func wellKnown(md protoreflect.MessageDescriptor) wkt {
	const prefix = "google.protobuf."
	name := md.FullName()
	if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
		return wktNone
	}
	switch name[len(prefix):] {
	case "Any":
		return wktAny
	case "Timestamp":
		return wktTimestamp
	case "Duration":
		return wktDuration
	case "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
		"FloatValue", "DoubleValue", "StringValue", "BytesValue":
		return wktWrapper
	case "Struct":
		return wktStruct
	case "ListValue":
		return wktListValue
	case "Value":
		return wktValue
	case "FieldMask":
		return wktFieldMask
	case "Empty":
		return wktEmpty
	}
	return wktNone
}

// Field numbers of the well-known types.
const (
	anyTypeURLField   = 1
	anyValueField     = 2
	secondsField      = 1
	nanosField        = 2
	wrapperValueField = 1
	structFieldsField = 1
	listValuesField   = 1
	fieldMaskPaths    = 1

	valueNullField   = 1
	valueNumberField = 2
	valueStringField = 3
	valueBoolField   = 4
	valueStructField = 5
	valueListField   = 6
)

const (
	maxTimestampSeconds  = 253402300799
	minTimestampSeconds  = -62135596800
	maxDurationSeconds   = 315576000000
	maxNanos             = 999999999
	nullValueEnumName    = "google.protobuf.NullValue"
	valueMessageFullName = "google.protobuf.Value"
)

func isValueMessage(fd protoreflect.FieldDescriptor) bool {
	md := fd.Message()
	return md != nil && md.FullName() == valueMessageFullName
}

func isNullValueEnum(fd protoreflect.FieldDescriptor) bool {
	ed := fd.Enum()
	return ed != nil && ed.FullName() == nullValueEnumName
}

// jsonCamelCase converts a snake_case FieldMask path to lowerCamelCase as
// the protobuf JSON mapping specifies.
func jsonCamelCase(s string) string {
	b := make([]byte, 0, len(s))
	wasUnderscore := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' {
			if wasUnderscore && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		wasUnderscore = c == '_'
	}
	return string(b)
}

// jsonSnakeCase converts a lowerCamelCase FieldMask path to snake_case.
func jsonSnakeCase(s string) string {
	b := make([]byte, 0, len(s)+4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			b = append(b, '_')
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
