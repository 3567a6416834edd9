package engine

import (
	"fmt"
	"strings"

	"github.com/dop251/goja"
)

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
		// An async function's promise leads to Promise.
		once(gojaPromise(vm), guardPromiseCtor)
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
	return named(vm, "eval", func(call goja.FunctionCall) goja.Value {
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
	// RegExp.prototype[Symbol.replace], called directly: with a string
	// replacement, String.prototype.replace counts what it makes; with a
	// function, each replacement it returns is charged.
	if proto, ok := ctor.Get("prototype").(*goja.Object); ok {
		fn, _ := proto.GetSymbol(goja.SymReplace).(*goja.Object)
		guardCall(fn, func(f nativeCall) nativeCall {
			return func(call goja.FunctionCall) goja.Value {
				repl := call.Argument(1)
				if goja.IsUndefined(call.Argument(0)) {
					return f(call)
				}
				if replacer, isFn := goja.AssertFunction(repl); isFn {
					s := call.Argument(0).ToString()
					n, w := strLen(s)
					b.charge(vm, "RegExp.prototype[Symbol.replace]", mul(n, w))
					return f(goja.FunctionCall{This: call.This, Arguments: []goja.Value{s, chargedReplacer(b, vm, "RegExp.prototype[Symbol.replace]", replacer, w)}})
				}
				s, r := call.Argument(0).ToString(), repl.ToString()
				b.fit(vm, "RegExp.prototype[Symbol.replace]", replaceBound(s, r, true))
				return f(goja.FunctionCall{This: call.This, Arguments: []goja.Value{s, r}})
			}
		})
		// [Symbol.split], [Symbol.match] (global) and [Symbol.matchAll],
		// called directly: at most one piece or match a character, and
		// one more, as String.prototype's split and match count them.
		for _, m := range []struct {
			sym        *goja.Symbol
			what       string
			each       int64
			globalOnly bool
		}{
			{goja.SymSplit, "RegExp.prototype[Symbol.split]", pieceSize, false},
			{goja.SymMatch, "RegExp.prototype[Symbol.match]", pieceSize, true},
			{goja.SymMatchAll, "RegExp.prototype[Symbol.matchAll]", matchSize, false},
		} {
			fn, _ := proto.GetSymbol(m.sym).(*goja.Object)
			guardCall(fn, func(f nativeCall) nativeCall {
				return func(call goja.FunctionCall) goja.Value {
					if goja.IsUndefined(call.Argument(0)) {
						return f(call)
					}
					if m.globalOnly {
						if o, ok := call.This.(*goja.Object); !ok || !o.Get("global").ToBoolean() {
							return f(call)
						}
					}
					s := call.Argument(0).ToString()
					n, _ := strLen(s)
					b.fit(vm, m.what, mul(n+1, m.each))
					return f(goja.FunctionCall{This: call.This, Arguments: append([]goja.Value{s}, call.Arguments[1:]...)})
				}
			})
		}
	}
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
