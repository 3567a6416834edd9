package engine

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sync"
	"weak"

	"github.com/dop251/goja"
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
//     copyWithin, forEach, some, every, reduce, reduceRight; Array.from
//     and Array.of; new Set(array);
//   - Function.prototype.apply, Reflect.apply and Reflect.construct
//     (their argument list);
//   - ArrayBuffer and every typed array constructor, however reached
//     (new, .constructor, subclasses, Reflect.construct, species, from,
//     of);
//   - JSON.parse (the text's size and nesting) and JSON.stringify (the
//     estimated size and the nesting of the value);
//   - Promise.all, allSettled, any and race over an array;
//     RegExp.prototype[Symbol.replace] called directly, with a string or
//     a function (each replacement it returns is charged).
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
// after a.length = 2**32-1), and values a script's own toString returns
// (counted only where a guarded built-in makes them; what a toJSON returns
// is charged as JSON.stringify writes it), or
// native loops over a huge sparse array that allocate nothing (they take
// time, not memory). These are bounded only by the
// run's timeout, for what runs as JavaScript, and, finally, by the
// process.
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
