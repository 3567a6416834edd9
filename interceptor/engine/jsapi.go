package engine

import (
	"log/slog"

	"github.com/dop251/goja"
)

const (
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

// logFunc returns a script-facing log function: f(msg, value?). With
// jsonValue, the value is rendered as JSON text, as bridge.logInfoJson does.
func (r *run) logFunc(level slog.Level, jsonValue bool) func(goja.FunctionCall) goja.Value {
	return func(fc goja.FunctionCall) goja.Value {
		msg := fc.Argument(0).String()
		if len(fc.Arguments) < 2 {
			r.e.log(r.ctx, &r.call, level, msg, nil, false)
			return goja.Undefined()
		}
		v := fc.Argument(1)
		var value any = v.Export()
		if jsonValue {
			if b, err := v.ToObject(r.vm).MarshalJSON(); err == nil {
				value = string(b)
			}
		}
		r.e.log(r.ctx, &r.call, level, msg, value, true)
		return goja.Undefined()
	}
}

// metadataObject shows incoming metadata to a script as a read-only object
// of string arrays; writes are ignored.
type metadataObject struct {
	vm *goja.Runtime
	md map[string][]string
}

func (m metadataObject) Get(key string) goja.Value {
	vals, ok := m.md[key]
	if !ok {
		return nil
	}
	return m.vm.NewDynamicArray(stringArray{vm: m.vm, vals: vals})
}

func (m metadataObject) Set(string, goja.Value) bool { return false }
func (m metadataObject) Has(key string) bool         { _, ok := m.md[key]; return ok }
func (m metadataObject) Delete(string) bool          { return false }
func (m metadataObject) Keys() []string {
	keys := make([]string, 0, len(m.md))
	for k := range m.md {
		keys = append(keys, k)
	}
	return keys
}

// stringArray is a read-only JavaScript array of strings.
type stringArray struct {
	vm   *goja.Runtime
	vals []string
}

func (a stringArray) Len() int { return len(a.vals) }
func (a stringArray) Get(i int) goja.Value {
	if i < 0 || i >= len(a.vals) {
		return nil
	}
	return a.vm.ToValue(a.vals[i])
}
func (a stringArray) Set(int, goja.Value) bool { return false }
func (a stringArray) SetLen(int) bool          { return false }
