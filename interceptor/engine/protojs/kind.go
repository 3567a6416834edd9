package protojs

import (
	"math/big"
	"reflect"
	"strconv"
	"time"

	"github.com/dop251/goja"
)

// kind is the JSON-relevant type of a JavaScript value.
type kind uint8

const (
	kUndefined kind = iota
	kNull
	kBool
	kInt   // a number held by goja as an integer (always within ±2^53)
	kFloat // any other number, including NaN, ±Infinity and -0
	kString
	kObject
	kArray
	kFunction
	kSymbol
	kBigInt
)

func (k kind) String() string {
	switch k {
	case kUndefined:
		return "undefined"
	case kNull:
		return "null"
	case kBool:
		return "boolean"
	case kInt, kFloat:
		return "number"
	case kString:
		return "string"
	case kObject:
		return "object"
	case kArray:
		return "array"
	case kFunction:
		return "function"
	case kSymbol:
		return "symbol"
	case kBigInt:
		return "bigint"
	}
	return "unknown"
}

var (
	typeInt64   = reflect.TypeOf(int64(0))
	typeFloat64 = reflect.TypeOf(float64(0))
	typeBool    = reflect.TypeOf(false)
	typeBigInt  = reflect.TypeOf((*big.Int)(nil))
)

// classify returns the kind of v as JSON.stringify would see it. Dates and
// boxed primitives (new String(...) and the like) are replaced by the
// primitive JSON.stringify writes for them: a Date by its ISO string, or
// null when it is invalid.
func classify(vm *goja.Runtime, v goja.Value) (goja.Value, kind) {
	switch x := v.(type) {
	case nil:
		return goja.Undefined(), kUndefined
	case *goja.Object:
		switch x.ClassName() {
		case "Object":
			return v, kObject
		case "Array":
			return v, kArray
		case "Function":
			return v, kFunction
		case "Date":
			t, ok := x.Export().(time.Time)
			if !ok {
				return goja.Null(), kNull
			}
			return vm.ToValue(isoString(t)), kString
		case "String":
			return x.ToString(), kString
		case "Number":
			return classify(vm, x.ToNumber())
		case "Boolean":
			if b, ok := x.Export().(bool); ok {
				return vm.ToValue(b), kBool
			}
		}
		if _, ok := goja.AssertFunction(x); ok {
			return v, kFunction
		}
		return v, kObject
	case goja.String:
		return v, kString
	case *goja.Symbol:
		return v, kSymbol
	}
	switch v.ExportType() {
	case typeInt64:
		return v, kInt
	case typeFloat64:
		return v, kFloat
	case typeBool:
		return v, kBool
	case typeBigInt:
		return v, kBigInt
	}
	if goja.IsUndefined(v) {
		return v, kUndefined
	}
	if goja.IsNull(v) {
		return v, kNull
	}
	return v, kObject
}

// isoString formats t as Date.prototype.toISOString does.
func isoString(t time.Time) string {
	t = t.UTC()
	y := t.Year()
	if 0 <= y && y <= 9999 {
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	sign := "+"
	if y < 0 {
		sign, y = "-", -y
	}
	ys := strconv.Itoa(y)
	for len(ys) < 6 {
		ys = "0" + ys
	}
	return sign + ys + t.Format("-01-02T15:04:05.000Z")
}

// describe renders a primitive value for an error message.
func describe(v goja.Value, k kind) string {
	switch k {
	case kString:
		s := v.String()
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return strconv.Quote(s)
	case kInt, kFloat, kBool, kBigInt:
		return v.String()
	}
	return k.String()
}
