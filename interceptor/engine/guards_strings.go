package engine

import (
	"strings"

	"github.com/dop251/goja"
)

// pieceSize bounds what goja allocates for one new string a native
// operation makes out of a larger one: the array element, the string's
// header and its box.
const pieceSize = 48

// matchSize bounds what one match array of a global match takes.
const matchSize = 128

// Guards of the native operations that turn a string, or a typed array,
// into one value per character, piece or match: a string that fits in the
// budget would otherwise make dozens of times its size.
func guardStringExpansions() {
	str := getStringProtoTemplate()
	guardMethod(str, "split", guardSplit)
	guardMethod(str, "match", guardGlobalMatch("String.prototype.match", pieceSize))
	guardMethod(str, "matchAll", guardGlobalMatch("String.prototype.matchAll", matchSize))
	guardSymMethod(str, goja.SymIterator, guardPerChar("String.prototype[Symbol.iterator]"))
	obj := getObjectTemplate()
	for _, name := range []string{"keys", "values", "entries", "getOwnPropertyNames"} {
		guardMethod(obj, name, guardOwnKeys("Object."+name))
	}
}

// guardSplit bounds split: one new string a piece.
func guardSplit(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
	if !coercible(call.This) {
		return orig(call)
	}
	s := call.This.ToString()
	n, _ := strLen(s)
	pieces := n + 1
	switch sep := call.Argument(0); {
	case goja.IsUndefined(sep):
		pieces = 1
	case isString(sep):
		if sep := sep.String(); sep != "" {
			pieces = int64(strings.Count(s.String(), sep)) + 1
		}
	}
	if limit := call.Argument(1); !goja.IsUndefined(limit) {
		pieces = min(pieces, int64(uint32(limit.ToInteger())))
	}
	b.fit(vm, "String.prototype.split", mul(pieces, pieceSize))
	return orig(goja.FunctionCall{This: s, Arguments: call.Arguments})
}

// guardGlobalMatch bounds match and matchAll with a global pattern: at
// most one match a character, and one more.
func guardGlobalMatch(what string, each int64) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		p, isObj := call.Argument(0).(*goja.Object)
		if !isObj || !coercible(call.This) || !p.Get("global").ToBoolean() {
			return orig(call)
		}
		s := call.This.ToString()
		n, _ := strLen(s)
		b.fit(vm, what, mul(n+1, each))
		return orig(goja.FunctionCall{This: s, Arguments: call.Arguments})
	}
}

// guardPerChar bounds the iterator of a string, which a spread or
// Array.from drains natively: one string a character.
func guardPerChar(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		if !coercible(call.This) {
			return orig(call)
		}
		s := call.This.ToString()
		n, _ := strLen(s)
		b.fit(vm, what, mul(n, pieceSize))
		return orig(goja.FunctionCall{This: s, Arguments: call.Arguments})
	}
}

// guardOwnKeys bounds Object.keys and its kin on a string or a typed
// array, which have one own property a character or element.
func guardOwnKeys(what string) methodGuard {
	return func(b *budget, vm *goja.Runtime, orig nativeCall, call goja.FunctionCall) goja.Value {
		arg := call.Argument(0)
		var n int64
		switch {
		case isString(arg):
			n, _ = strLen(arg)
		default:
			o, isObj := arg.(*goja.Object)
			if !isObj {
				break
			}
			switch bpe := o.Get("BYTES_PER_ELEMENT"); {
			case o.ClassName() == "String":
				n, _ = strLen(o.ToString())
			case bpe != nil && !goja.IsUndefined(bpe):
				n = toLength(o.Get("length")) // a typed array
			}
		}
		b.fit(vm, what, mul(n, 3*pieceSize))
		return orig(call)
	}
}
