package engine

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/dop251/goja"
	"github.com/dop251/goja/unistring"
)

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
// The templates, methods and fields named here are goja's, unexported, at
// the version pinned in go.mod: an upgrade that renames a function fails to
// link, one that drops a guarded built-in panics at start (guardMethod),
// and TestBudgetTurnsProcessKillersIntoRangeErrors fails when a guard no
// longer takes hold.

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

//go:linkname getObjectTemplate github.com/dop251/goja.getObjectTemplate
func getObjectTemplate() *objectTemplate

//go:linkname getDataViewProtoTemplate github.com/dop251/goja.getDataViewProtoTemplate
func getDataViewProtoTemplate() *objectTemplate

//go:linkname gojaRangeError github.com/dop251/goja.(*Runtime).getRangeError
func gojaRangeError(r *goja.Runtime) *goja.Object

//go:linkname gojaError github.com/dop251/goja.(*Runtime).getError
func gojaError(r *goja.Runtime) *goja.Object

//go:linkname gojaRegExp github.com/dop251/goja.(*Runtime).getRegExp
func gojaRegExp(r *goja.Runtime) *goja.Object

//go:linkname gojaPromise github.com/dop251/goja.(*Runtime).getPromise
func gojaPromise(r *goja.Runtime) *goja.Object

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

// guardSymMethod wraps the factory of the method keyed by sym in t.
func guardSymMethod(t *objectTemplate, sym *goja.Symbol, g methodGuard) {
	orig := t.symProps[sym]
	if orig == nil {
		panic("engine: goja has no built-in " + sym.String() + " to guard")
	}
	t.symProps[sym] = func(vm *goja.Runtime) goja.Value {
		v := orig(vm)
		guardCall(propObject(v), func(f nativeCall) nativeCall {
			b := budgetOf(vm)
			return func(call goja.FunctionCall) goja.Value { return g(b, vm, f, call) }
		})
		return v
	}
}

// guardIterator wraps the factories of the method name and of the method
// keyed by sym in t, which make the same function object (Array.prototype's
// values and [Symbol.iterator]), so that the object is guarded once per
// runtime whichever way a script reaches it first: by name, or through the
// iteration a spread, for...of or destructuring starts.
func guardIterator(t *objectTemplate, name string, sym *goja.Symbol, g methodGuard) {
	byName, bySym := t.props[unistring.String(name)], t.symProps[sym]
	if byName == nil || bySym == nil {
		panic("engine: goja has no built-in " + name + " to guard")
	}
	wrap := func(orig func(*goja.Runtime) goja.Value) func(*goja.Runtime) goja.Value {
		return func(vm *goja.Runtime) goja.Value {
			v := orig(vm)
			fn := propObject(v)
			b := budgetOf(vm)
			if fn == nil || b.ctors[fn] {
				return v
			}
			if b.ctors == nil {
				b.ctors = map[*goja.Object]bool{}
			}
			b.ctors[fn] = true
			guardCall(fn, func(f nativeCall) nativeCall {
				return func(call goja.FunctionCall) goja.Value { return g(b, vm, f, call) }
			})
			return v
		}
	}
	t.props[unistring.String(name)] = wrap(byName)
	t.symProps[sym] = wrap(bySym)
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
