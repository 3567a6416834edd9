package engine

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
	"weak"

	"github.com/dop251/goja"
	"github.com/dop251/goja/unistring"
)

// DefaultMemoryBudget is the memory budget of a run when the engine is
// given none: see WithMemoryBudget.
const DefaultMemoryBudget = 64 << 20

// maxNativeNesting bounds how deep JSON.parse, JSON.stringify, join and
// flat may recurse in native code: a stack overflow there is fatal.
const maxNativeNesting = MaxNesting

// A run's memory budget bounds what the built-in functions that allocate in
// proportion to an argument may build in one run. Each of them checks the
// size it would allocate before allocating and throws a RangeError
// instead when that is more than what is left:
//
//   - String.prototype.repeat, padStart, padEnd, concat, replace and
//     replaceAll (with a string or a function replacement), normalize,
//     toUpperCase, toLowerCase, toLocaleUpperCase, toLocaleLowerCase;
//     String.fromCharCode, fromCodePoint and raw;
//   - Array.prototype.join (also behind toString and String(array)),
//     fill, concat, flat, flatMap, push, unshift, splice, slice, map,
//     filter, toReversed, toSorted, toSpliced, with, and the ones that walk
//     every index natively: sort, reverse, includes, indexOf, lastIndexOf,
//     copyWithin; Array.from and Array.of; new Set(array);
//   - Function.prototype.apply, Reflect.apply and Reflect.construct
//     (their argument list);
//   - ArrayBuffer and every typed array constructor, however reached
//     (new, .constructor, subclasses, Reflect.construct, species, from,
//     of);
//   - JSON.parse (the text's size and nesting) and JSON.stringify (the
//     estimated size and the nesting of the value).
//
// eval (direct or not), Function, AsyncFunction, GeneratorFunction and
// RegExp (with match, matchAll and search given a string) measure the code
// or pattern they compile as Compile does, and throw a RangeError instead
// of overflowing the stack; see checkCode.
//
// New strings, arrays and buffers count against the budget for the rest of
// the run; operations that may reuse storage (fill, join's walk) only have
// to fit in what is left. Nesting deeper than MaxNesting in join,
// stringify, parse and flat throws a RangeError too, as native recursion
// that deep would overflow the stack.
//
// What the budget cannot see: the + operator and template literals, which
// the virtual machine runs without calling a built-in (s += s doubles a
// string on every step), spreading a sparse array of huge length ([...a]
// after a.length = 2**32-1), and values a script's own toString or toJSON
// return (they are counted only where a guarded built-in makes them).
// Nor does it cover RegExp.prototype[Symbol.replace] and [Symbol.split]
// called directly, Promise.all and its kin over a sparse array, or native
// loops over a huge sparse array that allocate nothing (they take time, not
// memory). These are bounded only by the run's timeout, for what runs as
// JavaScript, and, finally, by the process.
type budget struct {
	limit int64
	used  int64
	// depth is the nesting of guarded recursive built-ins now running.
	depth int
	// err is the last error the budget threw, so that the run can report
	// it as a RangeError.
	err *goja.Object
	// ctors are the built-in objects guarded in this runtime.
	ctors map[*goja.Object]bool
}

// budgets maps the runtimes of runs to their budgets; others are in
// foreign, kept only as long as their runtime.
var budgets = struct {
	sync.Mutex
	runs    map[*goja.Runtime]*budget
	foreign map[weak.Pointer[goja.Runtime]]*budget
}{runs: map[*goja.Runtime]*budget{}, foreign: map[weak.Pointer[goja.Runtime]]*budget{}}

// attachBudget makes b the budget of vm's guarded built-ins until
// detachBudget.
func attachBudget(vm *goja.Runtime, b *budget) {
	budgets.Lock()
	budgets.runs[vm] = b
	budgets.Unlock()
}

func detachBudget(vm *goja.Runtime) {
	budgets.Lock()
	delete(budgets.runs, vm)
	budgets.Unlock()
}

// budgetOf returns the budget of vm: its run's, or for a runtime the engine
// did not make, one of DefaultMemoryBudget.
func budgetOf(vm *goja.Runtime) *budget {
	budgets.Lock()
	defer budgets.Unlock()
	if b := budgets.runs[vm]; b != nil {
		return b
	}
	k := weak.Make(vm)
	b := budgets.foreign[k]
	if b == nil {
		b = &budget{limit: DefaultMemoryBudget}
		budgets.foreign[k] = b
		runtime.AddCleanup(vm, func(k weak.Pointer[goja.Runtime]) {
			budgets.Lock()
			delete(budgets.foreign, k)
			budgets.Unlock()
		}, k)
	}
	return b
}

// charge counts n bytes that what is about to allocate, or throws a
// RangeError when they do not fit in what is left.
func (b *budget) charge(vm *goja.Runtime, what string, n int64) {
	b.fit(vm, what, n)
	b.used += n
}

// fit throws a RangeError when n bytes do not fit in what is left, without
// counting them.
func (b *budget) fit(vm *goja.Runtime, what string, n int64) {
	b.fitAtLeast(vm, what, n, false)
}

// fitAtLeast is fit for an estimate that stopped counting once it was too
// large: n is then a lower bound.
func (b *budget) fitAtLeast(vm *goja.Runtime, what string, n int64, atLeast bool) {
	if n >= 0 && n <= b.limit-b.used {
		return
	}
	size := byteSize(n)
	if atLeast {
		size = "at least " + size
	}
	msg := fmt.Sprintf("hook memory budget of %s exceeded: %s would allocate %s", byteSize(b.limit), what, size)
	if n < 0 {
		msg = fmt.Sprintf("hook memory budget of %s exceeded: %s would allocate more than %s", byteSize(b.limit), what, byteSize(math.MaxInt64))
	}
	if b.used > 0 {
		msg += fmt.Sprintf(" after %s", byteSize(b.used))
	}
	b.throw(vm, msg)
}

// throw throws a RangeError with msg.
func (b *budget) throw(vm *goja.Runtime, msg string) {
	e, err := vm.New(gojaRangeError(vm), vm.ToValue(msg))
	if err != nil {
		panic(err)
	}
	b.err = e
	panic(e)
}

// enter counts one more level of a recursive built-in, and exit one less.
func (b *budget) enter(vm *goja.Runtime, what string) {
	if b.depth >= maxNativeNesting {
		b.throw(vm, fmt.Sprintf("%s: nesting deeper than %d levels", what, maxNativeNesting))
	}
	b.depth++
}

func (b *budget) exit() { b.depth-- }

// Sizes of what goja allocates, in bytes.
const (
	valueSize = 16 // an element of an array or of an argument list
	// numberChars bounds the characters of a number's string form.
	numberChars = 24
)

// mul multiplies sizes, saturating at MaxInt64.
func mul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// add adds sizes, saturating at MaxInt64.
func add(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// asciiType is the type of goja's one-byte strings; any other string takes
// two bytes a character.
var asciiType = reflect.TypeOf(goja.New().ToValue("a"))

// strLen returns the length of s in characters and the bytes a character
// of it takes.
func strLen(s goja.Value) (n, width int64) {
	width = 2
	if reflect.TypeOf(s) == asciiType {
		width = 1
	}
	if str, ok := s.(goja.String); ok {
		return int64(str.Length()), width
	}
	return int64(len(s.String())), width
}

// toLength converts v as ToLength does, to a count in [0, 2**53-1].
func toLength(v goja.Value) int64 {
	if v == nil {
		return 0 // an absent property
	}
	f := v.ToFloat()
	switch {
	case math.IsNaN(f) || f <= 0:
		return 0
	case f >= 1<<53-1:
		return 1<<53 - 1
	}
	return int64(f)
}

// toInteger converts v as ToIntegerOrInfinity does, saturated to int64.
func toInteger(v goja.Value) int64 {
	if v == nil {
		return 0
	}
	f := v.ToFloat()
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(math.Trunc(f))
}

// relIndex resolves a relative index (negative from the end) into [0, n].
func relIndex(v goja.Value, n, def int64) int64 {
	if v == nil || goja.IsUndefined(v) {
		return def
	}
	i := toInteger(v)
	if i < 0 {
		i = max(n+i, 0)
	}
	return min(i, n)
}

func coercible(v goja.Value) bool { return v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) }

// lengthOf reads o.length as ToLength does.
func lengthOf(vm *goja.Runtime, v goja.Value) int64 {
	return toLength(v.ToObject(vm).Get("length"))
}

// --- access to goja's internals ---
//
// goja builds its built-in objects lazily, per runtime, from templates
// shared by all runtimes: an object's property is made by the template's
// factory when a script first reaches it. Wrapping the factories of the
// built-ins that allocate (once, at start) guards them in every runtime at
// no cost to runs that never touch them, and whatever path a script takes
// to a built-in (a literal's prototype, .constructor, Reflect,
// getOwnPropertyDescriptors, a computed name) ends at the same guarded
// function object. The guard changes the native function the object
// calls, so the object keeps its identity, name and length.
//
// The templates and the fields below are goja's, at the version pinned in
// go.mod; TestGuardsAreInstalled fails when an upgrade moves them.

// objectTemplate mirrors goja's objectTemplate.
type objectTemplate struct {
	propNames    []unistring.String
	props        map[unistring.String]func(*goja.Runtime) goja.Value
	symProps     map[*goja.Symbol]func(*goja.Runtime) goja.Value
	symPropNames []*goja.Symbol
	protoFactory func(*goja.Runtime) *goja.Object
}

//go:linkname getStringProtoTemplate github.com/dop251/goja.getStringProtoTemplate
func getStringProtoTemplate() *objectTemplate

//go:linkname getArrayProtoTemplate github.com/dop251/goja.getArrayProtoTemplate
func getArrayProtoTemplate() *objectTemplate

//go:linkname getFunctionProtoTemplate github.com/dop251/goja.getFunctionProtoTemplate
func getFunctionProtoTemplate() *objectTemplate

//go:linkname getGlobalObjectTemplate github.com/dop251/goja.getGlobalObjectTemplate
func getGlobalObjectTemplate() *objectTemplate

//go:linkname gojaRangeError github.com/dop251/goja.(*Runtime).getRangeError
func gojaRangeError(r *goja.Runtime) *goja.Object

//go:linkname gojaRegExp github.com/dop251/goja.(*Runtime).getRegExp
func gojaRegExp(r *goja.Runtime) *goja.Object

//go:linkname gojaAsyncFunction github.com/dop251/goja.(*Runtime).getAsyncFunction
func gojaAsyncFunction(r *goja.Runtime) *goja.Object

//go:linkname gojaGeneratorFunction github.com/dop251/goja.(*Runtime).getGeneratorFunction
func gojaGeneratorFunction(r *goja.Runtime) *goja.Object

type (
	nativeCall      = func(goja.FunctionCall) goja.Value
	nativeConstruct = func(args []goja.Value, newTarget *goja.Object) *goja.Object
)

// nativeField returns the field name of fn's native implementation, ready
// to set, or an invalid value when fn is not a native function.
func nativeField(fn *goja.Object, name string) reflect.Value {
	if fn == nil {
		return reflect.Value{}
	}
	self := reflect.ValueOf(fn).Elem().Field(selfIndex)
	if self.IsNil() {
		return reflect.Value{}
	}
	impl := self.Elem()
	if impl.Kind() != reflect.Pointer {
		return reflect.Value{}
	}
	f, ok := fieldOf(impl.Elem(), name)
	if !ok {
		return reflect.Value{}
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// selfIndex is the index of goja.Object's field self, its implementation.
var selfIndex = func() int {
	f, ok := reflect.TypeFor[goja.Object]().FieldByName("self")
	if !ok || len(f.Index) != 1 {
		panic("engine: goja.Object has no field self")
	}
	return f.Index[0]
}()

// fieldIndexes caches the index of a field by struct type and name:
// FieldByName searches embedded structs every time.
var fieldIndexes sync.Map // fieldKey → []int, nil when absent

type fieldKey struct {
	t    reflect.Type
	name string
}

func fieldOf(v reflect.Value, name string) (reflect.Value, bool) {
	k := fieldKey{v.Type(), name}
	idx, ok := fieldIndexes.Load(k)
	if !ok {
		var index []int
		if f, found := v.Type().FieldByName(name); found {
			index = f.Index
		}
		idx, _ = fieldIndexes.LoadOrStore(k, index)
	}
	index := idx.([]int)
	if index == nil {
		return reflect.Value{}, false
	}
	return v.FieldByIndex(index), true
}

// guardCall replaces fn's native call with wrap(the original).
func guardCall(fn *goja.Object, wrap func(nativeCall) nativeCall) bool {
	f := nativeField(fn, "f")
	if !f.IsValid() || f.Type() != reflect.TypeFor[nativeCall]() || f.IsNil() {
		return false
	}
	orig := f.Interface().(nativeCall)
	f.Set(reflect.ValueOf(wrap(orig)))
	return true
}

// guardConstruct replaces fn's native construct with wrap(the original).
func guardConstruct(fn *goja.Object, wrap func(nativeConstruct) nativeConstruct) bool {
	f := nativeField(fn, "construct")
	if !f.IsValid() || f.Type() != reflect.TypeFor[nativeConstruct]() || f.IsNil() {
		return false
	}
	orig := f.Interface().(nativeConstruct)
	f.Set(reflect.ValueOf(wrap(orig)))
	return true
}

// propObject returns the object a template's factory made: the value of
// the property descriptor it returns.
func propObject(v goja.Value) *goja.Object {
	if o, ok := v.(*goja.Object); ok {
		return o
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil
	}
	if rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	f, ok := fieldOf(rv.Elem(), "value")
	if !ok {
		return nil
	}
	val, _ := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(goja.Value)
	o, _ := val.(*goja.Object)
	return o
}

// methodGuard is the check a guarded method runs before its original.
type methodGuard func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value

// guardMethod wraps the factory of the method name in t.
func guardMethod(t *objectTemplate, name string, g methodGuard) {
	orig := t.props[unistring.String(name)]
	if orig == nil {
		panic("engine: goja has no built-in " + name + " to guard")
	}
	t.props[unistring.String(name)] = func(vm *goja.Runtime) goja.Value {
		v := orig(vm)
		guardCall(propObject(v), func(f nativeCall) nativeCall {
			b := budgetOf(vm)
			return func(call goja.FunctionCall) goja.Value { return g(b, vm, f, call) }
		})
		return v
	}
}

// guardObject wraps the factory of the property name in t so that the
// object it makes is guarded by patch, once per runtime.
func guardObject(t *objectTemplate, name string, patch func(b *budget, vm *goja.Runtime, o *goja.Object)) {
	orig := t.props[unistring.String(name)]
	if orig == nil {
		panic("engine: goja has no built-in " + name + " to guard")
	}
	t.props[unistring.String(name)] = func(vm *goja.Runtime) goja.Value {
		v := orig(vm)
		if o := propObject(v); o != nil {
			b := budgetOf(vm)
			if !b.ctors[o] {
				if b.ctors == nil {
					b.ctors = map[*goja.Object]bool{}
				}
				b.ctors[o] = true
				patch(b, vm, o)
			}
		}
		return v
	}
}

// guardStatic guards the function o[name] with g.
func guardStatic(b *budget, vm *goja.Runtime, o *goja.Object, name string, g methodGuard) {
	fn, _ := o.Get(name).(*goja.Object)
	guardCall(fn, func(f nativeCall) nativeCall {
		return func(call goja.FunctionCall) goja.Value { return g(b, vm, f, call) }
	})
}

// typedArrayNames are the global constructors of binary data.
var typedArrayNames = []string{
	"ArrayBuffer", "DataView", "Uint8Array", "Uint8ClampedArray", "Int8Array", "Uint16Array",
	"Int16Array", "Uint32Array", "Int32Array", "Float32Array", "Float64Array",
	"BigInt64Array", "BigUint64Array",
}

var installGuards sync.Once

// guardBuiltins installs the guards in goja's templates. It runs once,
// before the first runtime of the engine is made.
func guardBuiltins() {
	installGuards.Do(func() {
		str := getStringProtoTemplate()
		guardMethod(str, "repeat", guardRepeat)
		guardMethod(str, "padStart", guardPad("padStart"))
		guardMethod(str, "padEnd", guardPad("padEnd"))
		guardMethod(str, "concat", guardConcat)
		guardMethod(str, "replace", guardReplace("replace"))
		guardMethod(str, "replaceAll", guardReplace("replaceAll"))
		for _, name := range []string{"normalize", "toUpperCase", "toLowerCase", "toLocaleUpperCase", "toLocaleLowerCase"} {
			guardMethod(str, name, guardCase(name))
		}
		guardObject(str, "constructor", guardStringCtor)
		for _, name := range []string{"match", "matchAll", "search"} {
			guardMethod(str, name, guardPattern("String.prototype."+name))
		}

		arr := getArrayProtoTemplate()
		guardMethod(arr, "join", guardJoin)
		guardMethod(arr, "fill", guardFill)
		guardMethod(arr, "concat", guardArrayConcat)
		guardMethod(arr, "flat", guardFlat("flat"))
		guardMethod(arr, "flatMap", guardFlat("flatMap"))
		guardMethod(arr, "push", guardArgs("Array.prototype.push"))
		guardMethod(arr, "unshift", guardArgs("Array.prototype.unshift"))
		guardMethod(arr, "splice", guardArgs("Array.prototype.splice"))
		guardMethod(arr, "slice", guardSlice)
		for _, name := range []string{"map", "filter", "toReversed", "toSorted", "toSpliced", "with"} {
			guardMethod(arr, name, guardCopy("Array.prototype."+name))
		}
		for _, name := range []string{"sort", "reverse", "includes", "indexOf", "lastIndexOf", "copyWithin"} {
			guardMethod(arr, name, guardWalk("Array.prototype."+name))
		}
		guardObject(arr, "constructor", guardArrayCtor)

		fn := getFunctionProtoTemplate()
		guardMethod(fn, "apply", guardApply("Function.prototype.apply", 1))
		guardObject(fn, "constructor", guardFunctionCtor("Function"))

		g := getGlobalObjectTemplate()
		guardObject(g, "String", guardStringCtor)
		guardObject(g, "Array", guardArrayCtor)
		guardObject(g, "JSON", guardJSON)
		guardObject(g, "Reflect", guardReflect)
		guardObject(g, "Set", guardSetCtor)
		guardObject(g, "Function", guardFunctionCtor("Function"))
		guardObject(g, "eval", guardEval)
		guardObject(g, "RegExp", guardRegExpCtor)
		factories := map[string]func(*goja.Runtime) goja.Value{}
		for _, name := range typedArrayNames {
			factories[name] = g.props[unistring.String(name)]
		}
		for _, name := range typedArrayNames {
			guardObject(g, name, func(b *budget, vm *goja.Runtime, ctor *goja.Object) {
				guardTypedArray(b, vm, name, ctor)
				if ab := propObject(factories["ArrayBuffer"](vm)); !b.ctors[ab] {
					b.ctors[ab] = true
					guardTypedArray(b, vm, "ArrayBuffer", ab)
				}
			})
		}
	})
}

func init() { guardBuiltins() }

// --- the guards ---

// thisString converts call.This to a string as a String.prototype method
// does, once, so that the original sees a primitive and converts nothing
// again.
func thisString(call goja.FunctionCall) (goja.Value, bool) {
	if !coercible(call.This) {
		return nil, false // the original throws the TypeError
	}
	return call.This.ToString(), true
}

func guardRepeat(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	s, ok := thisString(call)
	if !ok {
		return orig(call)
	}
	count := call.Argument(0).ToNumber()
	n, w := strLen(s)
	if c := count.ToFloat(); !math.IsInf(c, 1) && c >= 1 && n > 0 {
		b.charge(vm, "String.prototype.repeat", mul(mul(n, w), toInteger(count)))
	}
	return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{count}})
}

func guardPad(name string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		s, ok := thisString(call)
		if !ok {
			return orig(call)
		}
		maxLen := call.Argument(0).ToNumber()
		args := []goja.Value{maxLen}
		fill := call.Argument(1)
		if !goja.IsUndefined(fill) {
			fill = fill.ToString()
			args = append(args, fill)
		}
		n, w := strLen(s)
		if m := toLength(maxLen); m > n {
			if !goja.IsUndefined(fill) {
				if _, fw := strLen(fill); fw > w {
					w = fw
				}
			}
			b.charge(vm, "String.prototype."+name, mul(m, w))
		}
		return orig(goja.FunctionCall{This: s, Arguments: args})
	}
}

func guardConcat(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	s, ok := thisString(call)
	if !ok {
		return orig(call)
	}
	total, w := strLen(s)
	args := make([]goja.Value, len(call.Arguments))
	for i, a := range call.Arguments {
		args[i] = a.ToString()
		n, aw := strLen(args[i])
		total = add(total, n)
		w = max(w, aw)
	}
	b.charge(vm, "String.prototype.concat", mul(total, w))
	return orig(goja.FunctionCall{This: s, Arguments: args})
}

// guardReplace bounds what replace and replaceAll build: every match (at
// most one a character, and one more) replaced by the replacement, each of
// whose $ patterns may insert the whole string. A function's replacements
// are counted as it returns them.
func guardReplace(name string) methodGuard {
	what := "String.prototype." + name
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if !coercible(call.This) {
			return orig(call)
		}
		pattern, repl := call.Argument(0), call.Argument(1)
		if _, isObj := pattern.(*goja.Object); isObj {
			// A RegExp (or any object with Symbol.replace) replaces; the
			// string is then converted by it. Bound it the same way.
			s := call.This.ToString()
			return replaceBounded(b, vm, orig, what, s, pattern, repl, true)
		}
		s := call.This.ToString()
		pattern = pattern.ToString()
		return replaceBounded(b, vm, orig, what, s, pattern, repl, name == "replaceAll")
	}
}

func replaceBounded(b *budget, vm *goja.Runtime, orig nativeCall, what string, s, pattern, repl goja.Value, all bool) goja.Value {
	n, w := strLen(s)
	if fn, ok := goja.AssertFunction(repl); ok {
		wrapped := vm.ToValue(func(call goja.FunctionCall) goja.Value {
			v, err := fn(call.This, call.Arguments...)
			if err != nil {
				panic(err)
			}
			str := v.ToString()
			rn, rw := strLen(str)
			b.charge(vm, what, mul(rn, max(rw, w)))
			return str
		})
		b.charge(vm, what, mul(n, w))
		return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{pattern, wrapped}})
	}
	repl = repl.ToString()
	rn, rw := strLen(repl)
	matches := int64(1)
	if all {
		matches = n + 1
	}
	per := rn
	if rs := repl.String(); len(rs) > 0 {
		dollars := int64(0)
		for i := 0; i < len(rs); i++ {
			if rs[i] == '$' {
				dollars++
			}
		}
		per = add(per, mul(dollars, n))
	}
	b.charge(vm, what, mul(add(n, mul(matches, per)), max(w, rw)))
	return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{pattern, repl}})
}

// guardCase bounds normalize and the case conversions: a character may
// become three (toUpperCase) or eighteen (normalize with NFKD).
func guardCase(name string) methodGuard {
	factor := int64(3)
	if name == "normalize" {
		factor = 18
	}
	what := "String.prototype." + name
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		s, ok := thisString(call)
		if !ok {
			return orig(call)
		}
		n, _ := strLen(s)
		b.charge(vm, what, mul(n, 2*factor))
		return orig(goja.FunctionCall{This: s, Arguments: call.Arguments})
	}
}

// guardStringCtor guards String's static methods.
func guardStringCtor(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	args := func(name string) methodGuard {
		return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
			b.charge(vm, "String."+name, mul(int64(len(call.Arguments)), 4))
			return orig(call)
		}
	}
	guardStatic(b, vm, ctor, "fromCharCode", args("fromCharCode"))
	guardStatic(b, vm, ctor, "fromCodePoint", args("fromCodePoint"))
	guardStatic(b, vm, ctor, "raw", func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		// raw reads raw[0..length) and converts each, "undefined" when
		// missing: count nine characters a segment.
		if cooked, ok := call.Argument(0).(*goja.Object); ok {
			if raw, ok := cooked.Get("raw").(*goja.Object); ok {
				b.fit(vm, "String.raw", mul(toLength(raw.Get("length")), 9))
			}
		}
		return orig(call)
	})
}

// guardJoin bounds join (and so toString and String(array)): it walks the
// elements and adds their lengths, converting none (an element that is an
// object is counted by its own join, or not at all), and it bounds nested
// joins' depth.
func guardJoin(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	n := toLength(o.Get("length"))
	sep := call.Argument(0)
	sepLen, w := int64(1), int64(1)
	if !goja.IsUndefined(sep) {
		sep = sep.ToString()
		sepLen, w = strLen(sep)
	}
	// Every element costs at least a step; the separators are certain.
	b.fit(vm, "Array.prototype.join", add(mul(n, w*sepLen), n))
	total := mul(max(n-1, 0), sepLen*w)
	for i := int64(0); i < n && total <= b.limit-b.used; i++ {
		switch v := o.Get(itoa(i)); {
		case v == nil || goja.IsUndefined(v) || goja.IsNull(v):
		case isString(v):
			l, lw := strLen(v)
			total = add(total, mul(l, max(lw, w)))
		case isObject(v):
		default:
			total = add(total, numberChars)
		}
	}
	b.fit(vm, "Array.prototype.join", total)
	b.enter(vm, "Array.prototype.join")
	defer b.exit()
	res := orig(goja.FunctionCall{This: o, Arguments: []goja.Value{sep}})
	l, lw := strLen(res)
	b.charge(vm, "Array.prototype.join", mul(l, lw))
	return res
}

func isString(v goja.Value) bool { _, ok := v.(goja.String); return ok }

func isObject(v goja.Value) bool { _, ok := v.(*goja.Object); return ok }

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// guardFill bounds fill by the elements it sets.
func guardFill(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	n := toLength(o.Get("length"))
	start := relIndex(call.Argument(1), n, 0)
	end := relIndex(call.Argument(2), n, n)
	b.fit(vm, "Array.prototype.fill", mul(max(end-start, 0), valueSize))
	return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
}

func guardArrayConcat(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	total := lengthIfSpreadable(vm, o)
	for _, a := range call.Arguments {
		total = add(total, lengthIfSpreadable(vm, a))
	}
	b.charge(vm, "Array.prototype.concat", mul(total, valueSize))
	return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
}

// lengthIfSpreadable is the number of elements concat takes from v.
func lengthIfSpreadable(vm *goja.Runtime, v goja.Value) int64 {
	o, ok := v.(*goja.Object)
	if !ok {
		return 1
	}
	if sp := o.GetSymbol(goja.SymIsConcatSpreadable); sp != nil && !goja.IsUndefined(sp) {
		if !sp.ToBoolean() {
			return 1
		}
		return toLength(o.Get("length"))
	}
	if o.ClassName() == "Array" {
		return toLength(o.Get("length"))
	}
	return 1
}

// guardFlat bounds flat and flatMap: it walks the arrays to the depth
// flat would, counting elements, and refuses nesting deeper than
// MaxNesting.
func guardFlat(name string) methodGuard {
	what := "Array.prototype." + name
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if !coercible(call.This) {
			return orig(call)
		}
		o := call.This.ToObject(vm)
		depth := int64(1)
		if name == "flat" && !goja.IsUndefined(call.Argument(0)) {
			depth = toInteger(call.Argument(0))
		}
		var count func(o *goja.Object, d int64) int64
		count = func(o *goja.Object, d int64) int64 {
			n := toLength(o.Get("length"))
			if d <= 0 || n > (b.limit-b.used)/valueSize {
				return n
			}
			b.enter(vm, what)
			defer b.exit()
			total := int64(0)
			for i := int64(0); i < n && total <= (b.limit-b.used)/valueSize; i++ {
				if e, ok := o.Get(itoa(i)).(*goja.Object); ok && e.ClassName() == "Array" {
					total = add(total, count(e, d-1))
				} else {
					total++
				}
			}
			return total
		}
		if name == "flat" {
			b.charge(vm, what, mul(count(o, depth), valueSize))
		} else {
			b.fit(vm, what, mul(toLength(o.Get("length")), valueSize))
		}
		return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
	}
}

// guardArgs counts the elements push, unshift and splice add.
func guardArgs(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		b.charge(vm, what, mul(int64(len(call.Arguments)), valueSize))
		return orig(call)
	}
}

func guardSlice(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	n := toLength(o.Get("length"))
	start := relIndex(call.Argument(0), n, 0)
	end := relIndex(call.Argument(1), n, n)
	b.charge(vm, "Array.prototype.slice", mul(max(end-start, 0), valueSize))
	return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
}

// guardCopy bounds the methods that make an array as long as this one.
func guardCopy(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if !coercible(call.This) {
			return orig(call)
		}
		o := call.This.ToObject(vm)
		b.charge(vm, what, mul(toLength(o.Get("length")), valueSize))
		return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
	}
}

// guardWalk bounds the methods that walk every index below length in
// native code, holes included, and that a timeout cannot stop: sort (which
// also copies them), reverse, includes, indexOf, lastIndexOf, copyWithin.
// Their length, as elements, has to fit in what is left of the budget.
func guardWalk(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if !coercible(call.This) {
			return orig(call)
		}
		o := call.This.ToObject(vm)
		b.fit(vm, what, mul(toLength(o.Get("length")), valueSize))
		return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
	}
}

// guardSetCtor bounds new Set(array), which walks every index of the array.
func guardSetCtor(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	guardConstruct(ctor, func(f nativeConstruct) nativeConstruct {
		return func(args []goja.Value, newTarget *goja.Object) *goja.Object {
			if len(args) > 0 {
				if o, ok := args[0].(*goja.Object); ok && o.ClassName() == "Array" {
					b.fit(vm, "Set", mul(toLength(o.Get("length")), valueSize))
				}
			}
			return f(args, newTarget)
		}
	})
}

// guardArrayCtor guards Array.from and Array.of.
func guardArrayCtor(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	guardStatic(b, vm, ctor, "from", func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if o, ok := call.Argument(0).(*goja.Object); ok {
			if it := o.GetSymbol(goja.SymIterator); it == nil || goja.IsUndefined(it) || goja.IsNull(it) {
				b.charge(vm, "Array.from", mul(toLength(o.Get("length")), valueSize))
			} else if o.ClassName() == "Array" {
				b.charge(vm, "Array.from", mul(toLength(o.Get("length")), valueSize))
			}
		}
		return orig(call)
	})
	guardStatic(b, vm, ctor, "of", guardArgs("Array.of"))
}

// guardApply bounds the argument list apply builds from an array-like.
func guardApply(what string, arg int) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if o, ok := call.Argument(arg).(*goja.Object); ok {
			b.fit(vm, what, mul(toLength(o.Get("length")), valueSize))
		}
		return orig(call)
	}
}

func guardReflect(b *budget, vm *goja.Runtime, reflectObj *goja.Object) {
	guardStatic(b, vm, reflectObj, "apply", guardApply("Reflect.apply", 2))
	guardStatic(b, vm, reflectObj, "construct", guardApply("Reflect.construct", 1))
}

// guardJSON guards JSON.parse and JSON.stringify.
func guardJSON(b *budget, vm *goja.Runtime, json *goja.Object) {
	guardStatic(b, vm, json, "parse", func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		text := call.Argument(0).ToString()
		n, w := strLen(text)
		// A parsed value takes a few times its text.
		b.charge(vm, "JSON.parse", mul(mul(n, w), 4))
		if d, at := jsonDepth(text.String()); d > maxNativeNesting {
			b.throw(vm, fmt.Sprintf("JSON.parse: nesting deeper than %d levels at position %d", maxNativeNesting, at))
		}
		args := append([]goja.Value{text}, call.Arguments[min(1, len(call.Arguments)):]...)
		return orig(goja.FunctionCall{This: call.This, Arguments: args})
	})
	guardStatic(b, vm, json, "stringify", func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		est := jsonEstimate{b: b, vm: vm, seen: map[*goja.Object]int64{}}
		indent := int64(0)
		switch sp := call.Argument(2).(type) {
		case goja.String:
			indent = min(int64(sp.Length()), 10)
		default:
			if sp != nil && !goja.IsUndefined(sp) && !isObject(sp) {
				indent = min(max(toInteger(sp), 0), 10)
			}
		}
		est.indent = indent
		size := est.size(call.Argument(0), 0)
		b.fitAtLeast(vm, "JSON.stringify", size, true)
		b.used += size
		return orig(call)
	})
}

// jsonDepth returns the deepest nesting of brackets in a JSON text, outside
// strings, and where it is reached.
func jsonDepth(s string) (depth, at int) {
	d := 0
	inStr := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr:
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			d++
			if d > depth {
				depth, at = d, i
			}
		case c == ']' || c == '}':
			d--
		}
	}
	return depth, at
}

// jsonEstimate estimates the size of JSON.stringify's output from the
// value's own enumerable properties (not calling toJSON or a replacer),
// once for every object however often it is referenced, and refuses
// nesting deeper than MaxNesting.
type jsonEstimate struct {
	b      *budget
	vm     *goja.Runtime
	seen   map[*goja.Object]int64
	indent int64
}

func (e *jsonEstimate) size(v goja.Value, depth int64) int64 {
	switch {
	case v == nil || goja.IsUndefined(v) || goja.IsNull(v):
		return 4
	case isString(v):
		n, _ := strLen(v)
		return n + 2
	}
	o, ok := v.(*goja.Object)
	if !ok {
		return numberChars
	}
	if _, isFn := goja.AssertFunction(o); isFn {
		return 0
	}
	if s, ok := e.seen[o]; ok {
		return s // a repeat, or a cycle (stringify throws)
	}
	if depth >= maxNativeNesting {
		e.b.throw(e.vm, fmt.Sprintf("JSON.stringify: nesting deeper than %d levels", maxNativeNesting))
	}
	e.seen[o] = 0
	total := int64(2)
	pad := mul(depth+1, e.indent) + 1
	limit := e.b.limit - e.b.used
	for _, k := range o.Keys() {
		total = add(total, add(add(int64(len(k))+4, pad), e.size(o.Get(k), depth+1)))
		if total > limit {
			break
		}
	}
	e.seen[o] = total
	return total
}

// guardTypedArray guards the constructor of binary data name. A script
// can reach one only through the global object, or ArrayBuffer through a
// typed array's buffer: the first time a typed array constructor is
// reached, ArrayBuffer is guarded with it.
func guardTypedArray(b *budget, vm *goja.Runtime, name string, ctor *goja.Object) {
	var bytesPer int64
	switch name {
	case "DataView":
		return // a view of a buffer: allocates nothing
	case "ArrayBuffer":
		bytesPer = 1
	default:
		bytesPer = toLength(ctor.Get("BYTES_PER_ELEMENT"))
	}
	// check counts what the arguments ask for: a length, or the length of
	// an array-like to copy (a buffer to view has none).
	check := func(args []goja.Value) {
		if len(args) == 0 || goja.IsUndefined(args[0]) {
			return
		}
		a, isObj := args[0].(*goja.Object)
		switch {
		case isObj && name == "ArrayBuffer":
			b.charge(vm, name, a.ToNumber().ToInteger())
		case isObj:
			b.charge(vm, name, mul(toLength(a.Get("length")), bytesPer))
		default:
			b.charge(vm, name, mul(toLength(args[0]), bytesPer))
		}
	}
	guardConstruct(ctor, func(f nativeConstruct) nativeConstruct {
		return func(args []goja.Value, newTarget *goja.Object) *goja.Object {
			check(args)
			return f(args, newTarget)
		}
	})
	guardCall(ctor, func(f nativeCall) nativeCall {
		return func(call goja.FunctionCall) goja.Value {
			check(call.Arguments)
			return f(call)
		}
	})
}

// --- code compiled at run time ---
//
// eval, the Function constructors and RegExp compile a string at run time
// with recursive parsers: a source nested too deeply overflows the stack,
// which is fatal. Their guards measure the source as Compile measures a
// script, and throw a RangeError instead. Code compiled at run time may
// not call eval directly, as a direct eval would go to goja's parser
// unguarded; a script's own direct eval calls are rewritten by Compile to
// check their source first (see guardDirectEval).

// checkCode measures src, code that what is about to compile, and guards
// the compilers it may reach.
func checkCode(b *budget, vm *goja.Runtime, what, src string) {
	uses, err := checkSource(src)
	if err != nil {
		b.throw(vm, what+": "+err.Error())
	}
	if uses.eval {
		b.throw(vm, what+": code compiled at run time may not call eval directly")
	}
	guardCompilers(b, vm, uses)
}

// guardCompilers guards, before a script or code compiled at run time
// starts, the compilers it may reach without the global object.
func guardCompilers(b *budget, vm *goja.Runtime, uses sourceUses) {
	once := func(o *goja.Object, patch func(*budget, *goja.Runtime, *goja.Object)) {
		if b.ctors[o] {
			return
		}
		if b.ctors == nil {
			b.ctors = map[*goja.Object]bool{}
		}
		b.ctors[o] = true
		patch(b, vm, o)
	}
	if uses.regexp {
		once(gojaRegExp(vm), guardRegExpCtor)
	}
	if uses.async {
		once(gojaAsyncFunction(vm), guardFunctionCtor("AsyncFunction"))
	}
	if uses.generator {
		once(gojaGeneratorFunction(vm), guardFunctionCtor("GeneratorFunction"))
	}
}

// guardFunctionCtor guards a Function constructor: it converts its
// arguments to strings, once, and measures the function they make.
func guardFunctionCtor(name string) func(*budget, *goja.Runtime, *goja.Object) {
	return func(b *budget, vm *goja.Runtime, ctor *goja.Object) {
		check := func(args []goja.Value) []goja.Value {
			strs := make([]goja.Value, len(args))
			var src strings.Builder
			src.WriteString("(function anonymous(")
			for i, a := range args {
				strs[i] = a.ToString()
				if i == len(args)-1 {
					src.WriteString("\n) {\n")
				} else if i > 0 {
					src.WriteString(",")
				}
				src.WriteString(strs[i].String())
			}
			src.WriteString("\n})")
			checkCode(b, vm, name, src.String())
			return strs
		}
		guardConstruct(ctor, func(f nativeConstruct) nativeConstruct {
			return func(args []goja.Value, newTarget *goja.Object) *goja.Object {
				return f(check(args), newTarget)
			}
		})
		guardCall(ctor, func(f nativeCall) nativeCall {
			return func(call goja.FunctionCall) goja.Value {
				return f(goja.FunctionCall{This: call.This, Arguments: check(call.Arguments)})
			}
		})
	}
}

// guardEval guards indirect calls of eval; Compile guards direct ones.
func guardEval(b *budget, vm *goja.Runtime, eval *goja.Object) {
	guardCall(eval, func(f nativeCall) nativeCall {
		return func(call goja.FunctionCall) goja.Value {
			if src, ok := call.Argument(0).(goja.String); ok {
				checkCode(b, vm, "eval", src.String())
			}
			return f(call)
		}
	})
}

// evalSourceChecker returns the function a script's direct eval calls
// pass their source through.
func evalSourceChecker(b *budget, vm *goja.Runtime) goja.Value {
	return vm.ToValue(func(call goja.FunctionCall) goja.Value {
		src := call.Argument(0)
		if s, ok := src.(goja.String); ok {
			checkCode(b, vm, "eval", s.String())
		}
		return src
	})
}

// maxPatternNesting bounds the groups of a regular expression compiled at
// run time: goja's and regexp2's parsers recurse per group.
const maxPatternNesting = MaxNesting

// checkPattern measures a regular expression's source.
func checkPattern(b *budget, vm *goja.Runtime, what, pattern string) {
	depth, inClass := 0, false
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\':
			i++
		case inClass:
			inClass = c != ']'
		case c == '[':
			inClass = true
		case c == '(':
			if depth++; depth > maxPatternNesting {
				b.throw(vm, fmt.Sprintf("%s: pattern nested deeper than %d groups at position %d", what, maxPatternNesting, i))
			}
		case c == ')':
			depth--
		}
	}
}

// guardRegExpCtor guards RegExp(pattern) and new RegExp(pattern): a
// pattern that is not a RegExp is converted to a string, once, and
// measured.
func guardRegExpCtor(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	check := func(args []goja.Value) []goja.Value {
		if len(args) == 0 || goja.IsUndefined(args[0]) {
			return args
		}
		if o, ok := args[0].(*goja.Object); ok && o.ClassName() == "RegExp" {
			return args
		}
		out := append([]goja.Value(nil), args...)
		out[0] = args[0].ToString()
		checkPattern(b, vm, "RegExp", out[0].String())
		return out
	}
	guardConstruct(ctor, func(f nativeConstruct) nativeConstruct {
		return func(args []goja.Value, newTarget *goja.Object) *goja.Object {
			return f(check(args), newTarget)
		}
	})
	guardCall(ctor, func(f nativeCall) nativeCall {
		return func(call goja.FunctionCall) goja.Value {
			return f(goja.FunctionCall{This: call.This, Arguments: check(call.Arguments)})
		}
	})
}

// guardPattern guards match, matchAll and search, which compile a pattern
// given as a string.
func guardPattern(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		p := call.Argument(0)
		if _, isObj := p.(*goja.Object); isObj || !coercible(call.This) || goja.IsUndefined(p) || goja.IsNull(p) {
			return orig(call)
		}
		s := call.This.ToString()
		p = p.ToString()
		checkPattern(b, vm, what, p.String())
		guardCompilers(b, vm, sourceUses{regexp: true})
		return orig(goja.FunctionCall{This: s, Arguments: append([]goja.Value{p}, call.Arguments[1:]...)})
	}
}
