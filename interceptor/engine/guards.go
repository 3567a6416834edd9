package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/dop251/goja"
	"github.com/dop251/goja/unistring"
)

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
		guardStringExpansions()
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
		guardMethod(arr, "join", guardJoin("Array.prototype.join", true))
		guardMethod(arr, "toLocaleString", guardJoin("Array.prototype.toLocaleString", false))
		guardMethod(arr, "fill", guardFill)
		guardMethod(arr, "concat", guardArrayConcat)
		guardMethod(arr, "flat", guardFlat("flat"))
		guardMethod(arr, "flatMap", guardFlat("flatMap"))
		guardMethod(arr, "push", guardArgs("Array.prototype.push"))
		guardMethod(arr, "unshift", guardArgs("Array.prototype.unshift"))
		guardMethod(arr, "splice", guardSplice)
		guardMethod(arr, "slice", guardSlice)
		for _, name := range []string{"map", "filter", "toReversed", "toSorted", "toSpliced", "with"} {
			guardMethod(arr, name, guardCopy("Array.prototype."+name))
		}
		for _, name := range []string{"sort", "reverse", "includes", "indexOf", "lastIndexOf", "copyWithin",
			"forEach", "some", "every", "reduce", "reduceRight"} {
			guardMethod(arr, name, guardWalk("Array.prototype."+name))
		}
		// An array's iterator walks every index below length natively when
		// a spread ([...a], f(...a)) or Array.from drains it, holes
		// included: a sparse array of length 2**32-1 would fill memory
		// after any timeout. keys and entries are the same walk.
		guardIterator(arr, "values", goja.SymIterator, guardWalk("Array.prototype.values"))
		guardMethod(arr, "keys", guardWalk("Array.prototype.keys"))
		guardMethod(arr, "entries", guardWalk("Array.prototype.entries"))
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
		guardObject(g, "Promise", guardPromiseCtor)
		factories := map[string]func(*goja.Runtime) goja.Value{}
		for _, name := range typedArrayNames {
			factories[name] = g.props[unistring.String(name)]
		}
		guardObject(g, "BigInt", noBigInt)
		dv := getDataViewProtoTemplate()
		guardMethod(dv, "getBigInt64", refuseBigInt)
		guardMethod(dv, "getBigUint64", refuseBigInt)
		for _, name := range typedArrayNames {
			guardObject(g, name, func(b *budget, vm *goja.Runtime, ctor *goja.Object) {
				if strings.HasPrefix(name, "Big") {
					noBigInt(b, vm, ctor)
					return
				}
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
			// string is then converted by it. Bound it the same way, but
			// for a replacer function: RegExp.prototype[Symbol.replace]
			// charges what it returns, and an object of the script's
			// must not be handed a replacer that charges nothing more.
			s := call.This.ToString()
			if _, isFn := goja.AssertFunction(repl); isFn {
				return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{pattern, repl}})
			}
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
		b.charge(vm, what, mul(n, w))
		return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{pattern, chargedReplacer(b, vm, what, fn, w)}})
	}
	repl = repl.ToString()
	b.charge(vm, what, replaceBound(s, repl, all))
	return orig(goja.FunctionCall{This: s, Arguments: []goja.Value{pattern, repl}})
}

// chargedReplacer is fn, a replace's replacer function, charging each
// replacement it returns (as characters w bytes wide, or wider) before the
// replace adds it to what it makes: a native function, a bound
// String.prototype.valueOf say, allocates nothing of its own to count.
func chargedReplacer(b *budget, vm *goja.Runtime, what string, fn goja.Callable, w int64) goja.Value {
	v := vm.ToValue(func(call goja.FunctionCall) goja.Value {
		v, err := fn(call.This, call.Arguments...)
		if err != nil {
			panic(err)
		}
		str := v.ToString()
		rn, rw := strLen(str)
		b.charge(vm, what, mul(rn, max(rw, w)))
		return str
	})
	return v
}

// replaceBound bounds the bytes of s with every match (at most one a
// character, and one more, when all) replaced by repl, each of whose $
// patterns may insert the whole of s.
func replaceBound(s, repl goja.Value, all bool) int64 {
	n, w := strLen(s)
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
	return mul(add(n, mul(matches, per)), max(w, rw))
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

// guardJoin bounds join (and so toString and String(array)), or, without
// a separator argument (withSep false), toLocaleString, which joins its
// elements' toLocaleString with ",": it walks the elements and adds their
// lengths, converting none (an element that is an object is counted by its
// own join, or not at all), and it bounds nested joins' depth.
func guardJoin(name string, withSep bool) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		return boundJoin(b, vm, orig, call, name, withSep)
	}
}

func boundJoin(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall, name string, withSep bool) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	n := toLength(o.Get("length"))
	sepLen, w := int64(1), int64(1)
	args := call.Arguments
	if withSep {
		sep := call.Argument(0)
		if !goja.IsUndefined(sep) {
			sep = sep.ToString()
			sepLen, w = strLen(sep)
		}
		args = []goja.Value{sep}
	}
	// Every element costs at least a step; the separators are certain.
	b.fit(vm, name, add(mul(n, w*sepLen), n))
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
	b.fit(vm, name, total)
	b.enter(vm, name)
	defer b.exit()
	res := orig(goja.FunctionCall{This: o, Arguments: args})
	l, lw := strLen(res)
	b.charge(vm, name, mul(l, lw))
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

// guardSplice counts the elements splice adds, and bounds the elements it
// may move or remove by what is left.
func guardSplice(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	o := call.This.ToObject(vm)
	b.fit(vm, "Array.prototype.splice", mul(toLength(o.Get("length")), valueSize))
	b.charge(vm, "Array.prototype.splice", mul(int64(len(call.Arguments)), valueSize))
	return orig(goja.FunctionCall{This: o, Arguments: call.Arguments})
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
// also copies them), reverse, includes, indexOf, lastIndexOf, copyWithin,
// and forEach, some, every, reduce and reduceRight, which call no
// JavaScript for a hole.
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
		if !est.toJSON {
			return orig(call)
		}
		var repl goja.Value
		user, isFn := goja.AssertFunction(call.Argument(1))
		switch r, isObj := call.Argument(1).(*goja.Object); {
		case isFn || !isObj:
			// A replacer that is neither a function nor an array is
			// ignored.
			repl = est.chargeToJSON(user, nil)
		case r.ClassName() == "Array":
			repl = est.chargeToJSON(nil, jsonKeys(b, vm, r))
		default:
			repl = est.chargeToJSON(nil, nil)
		}
		return orig(goja.FunctionCall{This: call.This, Arguments: []goja.Value{call.Argument(0), repl, call.Argument(2)}})
	})
}

// jsonKeys returns the keys an array replacer of JSON.stringify lists:
// its strings and numbers, and String and Number objects.
func jsonKeys(b *budget, vm *goja.Runtime, list *goja.Object) map[string]bool {
	n := toLength(list.Get("length"))
	b.fit(vm, "JSON.stringify", mul(n, pieceSize))
	keys := map[string]bool{}
	for i := int64(0); i < n; i++ {
		switch v := list.Get(itoa(i)); {
		case v == nil:
		case isString(v):
			keys[v.String()] = true
		case isObject(v):
			if c := v.(*goja.Object).ClassName(); c == "String" || c == "Number" {
				keys[v.String()] = true
			}
		default:
			if _, isNum := v.Export().(int64); isNum {
				keys[v.String()] = true
			} else if _, isNum := v.Export().(float64); isNum {
				keys[v.String()] = true
			}
		}
	}
	return keys
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
// nesting deeper than MaxNesting. toJSON is set when an object has a
// toJSON method, whose results the estimate cannot see.
type jsonEstimate struct {
	b      *budget
	vm     *goja.Runtime
	seen   map[*goja.Object]int64
	indent int64
	toJSON bool
}

// chargeToJSON returns the replacer JSON.stringify is given in place of
// user's (nil: none) when a value has toJSON methods: it charges what a
// toJSON returned, before stringify writes it (a bound native allocates
// nothing of its own to count), and leaves what the estimate counted.
//
// keys, when not nil, is an array replacer's list of keys, which the
// function applies in its place (stringify takes one replacer): it leaves
// out the properties of objects not in it. Unlike the list, it keeps the
// object's own order of keys, and passes over inherited properties.
func (e *jsonEstimate) chargeToJSON(user goja.Callable, keys map[string]bool) goja.Value {
	root := true
	return e.vm.ToValue(func(call goja.FunctionCall) goja.Value {
		key, v := call.Argument(0), call.Argument(1)
		var raw goja.Value
		holder, isObj := call.This.(*goja.Object)
		if isObj {
			if keys != nil && !root && holder.ClassName() != "Array" && !keys[key.String()] {
				return goja.Undefined()
			}
			raw = holder.Get(key.String())
		}
		root = false
		if user != nil {
			var err error
			if v, err = user(call.This, call.Arguments...); err != nil {
				panic(err)
			}
		}
		if raw == nil || !raw.SameAs(v) {
			e.b.charge(e.vm, "JSON.stringify", e.size(v, 0))
		}
		return v
	})
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
	if _, ok := goja.AssertFunction(o.Get("toJSON")); ok {
		e.toJSON = true
	}
	if depth >= maxNativeNesting {
		e.b.throw(e.vm, fmt.Sprintf("JSON.stringify: nesting deeper than %d levels", maxNativeNesting))
	}
	e.seen[o] = 0
	total := int64(2)
	pad := mul(depth+1, e.indent) + 1
	limit := e.b.limit - e.b.used
	keys := o.Keys()
	if o.ClassName() == "Array" {
		// A hole is written null, and every element takes a comma.
		n := toLength(o.Get("length"))
		total = add(total, add(n, mul(n-int64(len(keys)), 4)))
	}
	for _, k := range keys {
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
	if name != "ArrayBuffer" {
		guardTypedArrayJoins(b, vm, ctor)
	}
}

// guardTypedArrayJoins bounds join and toLocaleString of the prototype every
// typed array shares (%TypedArray%.prototype), as Array's are: a script
// reaches them only through a typed array's constructor, guarded first.
func guardTypedArrayJoins(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	proto, ok := ctor.Get("prototype").(*goja.Object)
	if !ok || proto.Prototype() == nil {
		return
	}
	shared := proto.Prototype()
	if _, isTyped := goja.AssertFunction(shared.Get("subarray")); !isTyped || b.ctors[shared] {
		return // not %TypedArray%.prototype, or guarded already
	}
	if b.ctors == nil {
		b.ctors = map[*goja.Object]bool{}
	}
	b.ctors[shared] = true
	for _, m := range []struct {
		name    string
		withSep bool
	}{{"join", true}, {"toLocaleString", false}} {
		fn, ok := shared.Get(m.name).(*goja.Object)
		if !ok {
			continue
		}
		g := guardJoin("%TypedArray%.prototype."+m.name, m.withSep)
		guardCall(fn, func(f nativeCall) nativeCall {
			return func(call goja.FunctionCall) goja.Value { return g(b, vm, f, call) }
		})
	}
}

// promiseSize bounds what Promise.all and its kin keep for an element: a
// promise, its reaction and its result.
const promiseSize = 256

// guardPromiseCtor bounds Promise.all, allSettled, any and race over an
// array, which walk every index natively and make a promise for each.
func guardPromiseCtor(b *budget, vm *goja.Runtime, ctor *goja.Object) {
	for _, name := range []string{"all", "allSettled", "any", "race"} {
		what := "Promise." + name
		guardStatic(b, vm, ctor, name, func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
			if o, ok := call.Argument(0).(*goja.Object); ok && o.ClassName() == "Array" {
				b.charge(vm, what, mul(toLength(o.Get("length")), promiseSize))
			}
			return orig(call)
		})
	}
}

// errNoBigInt is why a script cannot make a BigInt: the operators of
// BigInts (2n ** 2n ** 40n, 1n << 2n ** 40n) allocate without bound in one
// native step, which no budget or timeout stops. BigInt literals are
// refused at compile time; these guards refuse the built-ins that make a
// BigInt out of other values.
const errNoBigInt = "BigInt is not available to hooks: BigInt arithmetic allocates without bound"

// noBigInt makes BigInt, BigInt64Array and BigUint64Array throw whether
// called or constructed.
func noBigInt(_ *budget, vm *goja.Runtime, fn *goja.Object) {
	guardCall(fn, func(nativeCall) nativeCall {
		return func(goja.FunctionCall) goja.Value { panic(vm.NewTypeError(errNoBigInt)) }
	})
	guardConstruct(fn, func(nativeConstruct) nativeConstruct {
		return func([]goja.Value, *goja.Object) *goja.Object { panic(vm.NewTypeError(errNoBigInt)) }
	})
}

// refuseBigInt is the guard of DataView's getBigInt64 and getBigUint64.
func refuseBigInt(_ *budget, vm *goja.Runtime, _ nativeCall, _ goja.FunctionCall) goja.Value {
	panic(vm.NewTypeError(errNoBigInt))
}
