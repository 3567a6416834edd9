package protojs

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/dop251/goja"
)

// FromGo converts a value decoded by encoding/json (map[string]any, []any,
// string, float64, json.Number, bool, nil) into a native JavaScript value
// (objects and arrays built with vm.NewObject/vm.NewArray, so they are
// mutable like any other).
//
// Object keys are inserted in sorted order, since Go maps have none. A
// json.Number becomes the number JSON.parse would give for it (±Infinity
// when it overflows), or a string if it is not a number at all. Values of
// other types are converted with vm.ToValue.
func FromGo(vm *goja.Runtime, v any) goja.Value {
	switch x := v.(type) {
	case nil:
		return goja.Null()
	case map[string]any:
		obj := vm.NewObject()
		if len(x) == 0 {
			return obj
		}
		var buf [16]string
		for _, k := range sortedKeys(x, buf[:0]) {
			obj.Set(k, FromGo(vm, x[k]))
		}
		return obj
	case []any:
		items := make([]any, len(x))
		for i, e := range x {
			items[i] = FromGo(vm, e)
		}
		return vm.NewArray(items...)
	case string:
		return vm.ToValue(x)
	case float64:
		return vm.ToValue(x)
	case bool:
		return vm.ToValue(x)
	case json.Number:
		if _, ok := parseNumber(string(x)); !ok {
			return vm.ToValue(string(x))
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return vm.ToValue(f)
	case goja.Value:
		return x
	}
	return vm.ToValue(v)
}

// sortedKeys appends the keys of m to buf in sorted order. Passing a buffer
// from the caller's stack spares an allocation for small objects.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}
