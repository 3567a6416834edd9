package engine

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dop251/goja"
)

const (
	levelDebug = slog.LevelDebug
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

// logFunc returns a script-facing log function, f(msg, value?), as ctx.log
// and bridge have them: msg is the line's message (a string as it is, any
// other value as its JSON form), and value, when given, is logged as its
// JSON form under the attribute "value" (see jsonOf).
func (r *run) logFunc(level slog.Level) func(goja.FunctionCall) goja.Value {
	return func(fc goja.FunctionCall) goja.Value {
		if !r.e.logEnabled(r.ctx, level) {
			return goja.Undefined()
		}
		msg := r.text(fc.Argument(0))
		if len(fc.Arguments) < 2 {
			r.log(level, msg, nil, false)
		} else {
			r.log(level, msg, r.jsonOf(fc.Argument(1)), true)
		}
		return goja.Undefined()
	}
}

// Bounds of what one run logs: a line's message, and its value's JSON, are
// cut at MaxLogLine bytes; past MaxRunLog bytes in all, the run's further
// lines are dropped, saying so once. A script cannot fill the daemon's log
// faster than its time limit lets it.
const (
	MaxLogLine = 16 << 10
	MaxRunLog  = 256 << 10
)

// log writes a line the script logged, within the run's bounds.
func (r *run) log(level slog.Level, msg string, value json.RawMessage, hasValue bool) {
	if r.logFull {
		return
	}
	msg = cut(msg, MaxLogLine)
	if len(value) > MaxLogLine {
		value, _ = json.Marshal(cut(string(value), MaxLogLine))
	}
	r.logged += len(msg) + len(value)
	fromScript := true
	if r.logged > MaxRunLog {
		r.logFull = true
		level, value, hasValue, fromScript = levelWarn, nil, false, false
		msg = fmt.Sprintf("the hook logged more than %d KiB in this run: its further lines are dropped", MaxRunLog>>10)
	}
	id := cmp.Or(r.call.ID, r.call.Hook)
	if ok, warn, dropped := r.e.logRates.take(id, len(msg)+len(value), time.Now()); !ok {
		if warn {
			r.e.log(r.ctx, &r.call, levelWarn, fmt.Sprintf("the hook logs more than %d KiB a second: %d lines dropped", LogRate>>10, dropped), nil, false, false)
		}
		return
	}
	r.e.log(r.ctx, &r.call, level, msg, value, hasValue, fromScript)
}

// text is v as a log line shows it: a string as it is, any other value as
// its JSON form, and one JSON has none of (undefined, a function, a
// symbol, a BigInt) as JavaScript's String does.
func (r *run) text(v goja.Value) string {
	if s, ok := v.(goja.String); ok {
		return s.String()
	}
	if s, ok := r.stringify(v); ok {
		return s
	}
	return v.String()
}

// jsonOf is v's JSON form, as JSON.stringify writes it: the live view of a
// message (ctx.request, ctx.response) is written as protojson writes the
// message. A value JSON has no form for is null, and so is an object
// JSON.stringify refuses (a cycle); another value it refuses (a BigInt) is
// its String as a JSON string.
func (r *run) jsonOf(v goja.Value) json.RawMessage {
	if s, ok := r.stringify(v); ok {
		return json.RawMessage(s)
	}
	if isObject(v) || goja.IsUndefined(v) {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(v.String())
	return b
}

// stringify calls the run's JSON.stringify on v, so that what a script
// logs counts against its memory budget like any string it builds. It
// reports false when the result is not a string: v has no JSON form, or
// JSON.stringify threw. An error it cannot swallow (the budget's
// RangeError, an interrupt) goes on up to the script.
func (r *run) stringify(v goja.Value) (string, bool) {
	if r.jsonStringify == nil {
		var ok bool
		if o, isObj := r.vm.Get("JSON").(*goja.Object); isObj {
			r.jsonStringify, ok = goja.AssertFunction(o.Get("stringify"))
		}
		if !ok {
			return "", false // the script took JSON.stringify away
		}
	}
	out, err := r.jsonStringify(goja.Undefined(), v)
	if err != nil {
		var ex *goja.Exception
		if !errors.As(err, &ex) || isUncatchable(err) {
			panic(err)
		}
		if obj, ok := ex.Value().(*goja.Object); ok && obj == r.budget.err {
			panic(obj)
		}
		return "", false
	}
	s, ok := out.(goja.String)
	if !ok {
		return "", false
	}
	return s.String(), true
}

// isUncatchable reports whether err ends the run whatever the script does:
// an interrupt (a timeout, the heap limit) or a stack overflow.
func isUncatchable(err error) bool {
	var interrupted *goja.InterruptedError
	var overflow *goja.StackOverflowError
	return errors.As(err, &interrupted) || errors.As(err, &overflow)
}

// metadataObject shows incoming metadata to a script as a read-only object
// of string arrays; writes are ignored. The values of binary keys (their
// names end in "-bin") are base64-encoded, as on the wire: gRPC gives
// them decoded, as bytes that are not text.
type metadataObject struct {
	vm *goja.Runtime
	md map[string][]string
}

func (m metadataObject) Get(key string) goja.Value {
	vals, ok := m.md[key]
	if !ok {
		return nil
	}
	if strings.HasSuffix(key, "-bin") {
		enc := make([]string, len(vals))
		for i, v := range vals {
			enc[i] = base64.StdEncoding.EncodeToString([]byte(v))
		}
		vals = enc
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

// named returns f as a JavaScript function called name. goja names a Go
// function by its Go name, which String(f) would show a script:
// "github.com/.../engine.(*run).callFunction.func1".
func named(vm *goja.Runtime, name string, f func(goja.FunctionCall) goja.Value) goja.Value {
	fn := vm.ToValue(f).(*goja.Object)
	_ = fn.DefineDataProperty("name", vm.ToValue(name), goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_TRUE)
	return fn
}
