package protojs

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// View is a JavaScript object that reads and writes a message in place:
// reading a property converts that field (as protojson shows it) when it is
// read; assigning or deleting one stores it in the message, at once for a
// primitive and when Err is called for an object (see below). Nothing is
// converted unless the script touches it.
//
// Until the script changes it, a view looks exactly like the object
// ToValue builds: the same keys in the same order (so JSON.stringify of a
// view gives protojson's JSON) and the same values. Messages read as
// objects (goja dynamic objects); repeated fields and
// google.protobuf.ListValue as arrays (goja dynamic arrays), which
// Array.prototype methods such as push, pop, splice, shift, unshift, sort,
// reverse and fill work on; map fields and google.protobuf.Struct as
// objects keyed by map key; a google.protobuf.Value as its JSON value (a
// nested Struct or ListValue as a view); scalars as ToValue gives them
// (int64 as a decimal string, enums by name, bytes as base64, ...). Reading
// a message, list or map field twice gives the same object. Other
// well-known types (Timestamp, Duration, FieldMask, the wrappers, Any) read
// as a fresh copy of the value ToValue gives: changing an Any's copy in
// place changes nothing, assign the whole value instead.
//
// Once the script changes it, a view looks like the native object from
// ToValue would after the same changes. Assigning converts the value with
// FromValue's rules for that field, element or entry (JSON or original
// proto field names; null or undefined unset a field, except that null is
// null_value for a google.protobuf.Value), and a primitive (string, number,
// boolean, BigInt, null or undefined) that fits is stored at once; reading
// it back gives it as assigned (an int64 assigned the number 5 reads 5, not
// "5"). An object (plain object or array, Date, another view) assigned to
// any field, element or entry, and any value that does not fit, is kept
// as it is instead: reading it back gives that very object, changes made
// through it later are kept, assigning one object to two places gives both
// its final contents, and a value that does not fit is no error if the
// script assigns over it or removes it again. Err converts and stores the
// values kept this way, so Err must be called once the script has run,
// before the message is used. Keys the script adds are listed last, in the
// order it adds them; a repeated or map field it empties stays a property
// (an empty array or object) until it is deleted.
//
// Differences from the native object: assigning to a property that is not
// a field of the message, or to a map entry whose key does not fit the
// map's key type, is an error at once (as FromValue would report it) and
// the property is not kept; assigning one member of a oneof clears the
// others, where FromValue would reject an object holding two; assigning or
// deleting a field through its original proto name acts on the field,
// where a native object would hold a second property that FromValue
// rejects as a duplicate; an error names the path where the value was
// assigned. Views cannot have symbol properties and cannot be frozen,
// arrays cannot have properties other than their elements and length, and
// setting an array's length to a negative number throws a TypeError rather
// than a RangeError.
//
// An element deleted from an array, or added by growing its length, reads
// as undefined and is an error reported by Err, as FromValue would report
// a null element, unless it is overwritten or cut off before Err is called
// (in a list of google.protobuf.Value it is null). Arrays cannot have holes,
// though: methods that skip the holes of a native array (forEach, filter,
// map and the like) visit such an element as undefined.
type View struct {
	vm      *goja.Runtime
	gate    *Gate
	counter *Counter
	root    protoreflect.Message
	err     error
	holey   []*listView
	adopted []*adoption
	touched bool
	wrote   bool
	top     msgView
}

// A ViewOption configures NewView.
type ViewOption func(*View)

// WithGate guards every operation of the view with g: once g is closed,
// the view no longer touches m (see Gate).
func WithGate(g *Gate) ViewOption {
	return func(v *View) { v.gate = g }
}

// NewView returns a view of m. The caller owns m and must not use it
// concurrently with the script, unless the view has a gate and the caller
// has closed it. obj is what the script sees.
//
// m must be a message whose JSON form is an object or array: any message
// without a special JSON form, google.protobuf.Empty, Struct, ListValue, or
// a Value holding a Struct or ListValue. For other messages (Any,
// Timestamp, Duration, FieldMask, the wrappers, any other Value) and for a
// nil or invalid m, NewView returns nil, nil; use ToValue and FromValue for
// them.
func NewView(vm *goja.Runtime, m protoreflect.Message, opts ...ViewOption) (obj *goja.Object, v *View) {
	if m == nil || !m.IsValid() {
		return nil, nil
	}
	v = &View{vm: vm, root: m}
	for _, o := range opts {
		o(v)
	}
	switch wellKnown(m.Descriptor()) {
	case wktNone, wktEmpty:
		v.top = msgView{node: node{tree: v}, m: m}
		return vm.NewDynamicObject(&v.top), v
	}
	if !hasView(m) {
		return nil, nil
	}
	var k kid
	obj, _ = v.viewOf(nil, pathSeg{}, m, &k).(*goja.Object)
	return obj, v
}

// Err stores the values the script assigned that are kept as they are
// (see View) and returns the first assignment that does not fit the
// message (a *FieldError naming the full path from the root, e.g.
// `field "eventData.items[2]": ...` or
// `field "toUserId": want string, got number`), or nil. A failed
// assignment leaves a field or map entry as it was; an element it added
// to an array stays, as the zero value. Values assigned to a part of the
// message the script has since removed (an element it popped, say) are
// neither stored nor reported.
//
// Without a failed assignment, Err reports an array element left undefined
// (see View) and, if anything was written, a required field left unset, as
// FromValue does. Err is meant to be called once the script has run.
func (v *View) Err() (err error) {
	if v == nil {
		return nil
	}
	if !v.enter() {
		return errClosed
	}
	defer v.exit()
	defer func() {
		if v.gate.Closed() {
			// The gate may have stopped the conversion midway.
			err = errClosed
		}
	}()
	v.finish()
	if v.err != nil {
		return v.err
	}
	for _, lv := range v.holey {
		if len(lv.holes) == 0 || !lv.reachable() {
			continue
		}
		i := slices.Min(lv.holes)
		if _, err := lv.convert(goja.Null(), kNull); err != nil {
			return lv.pathError(atIndex(err, i))
		}
	}
	if v.wrote {
		if err := proto.CheckInitialized(v.root.Interface()); err != nil {
			return &FieldError{Err: err}
		}
	}
	return nil
}

// Touched reports whether the script read or wrote anything through the
// view. A view never touched has not changed the message.
func (v *View) Touched() bool {
	return v != nil && v.touched
}

// finish stores every adopted value still in place. Values held by views
// no longer in the message stay adopted until the end, as a view may still
// be part of an object stored later, whose conversion reads them.
func (v *View) finish() {
	for i := 0; i < len(v.adopted); i++ {
		if a := v.adopted[i]; a.live && a.holder.base().reachable() {
			a.holder.store(a)
			a.kill()
		}
	}
	for i := 0; i < len(v.adopted); i++ {
		v.adopted[i].kill()
	}
	v.adopted = v.adopted[:0]
}

// errClosed is what Err returns once the view's gate is closed.
var errClosed = &FieldError{Err: errors.New("the message was taken back from the script")}

// enter begins an operation on the message; it reports false, and the
// operation must not touch the message, when the view's gate is closed.
func (t *View) enter() bool { return t.gate == nil || t.gate.Enter() }

// begin begins an operation the script makes through the view, as enter
// does, and records that the script read the message or, for a write,
// changed it.
func (t *View) begin(write bool) bool {
	if !t.enter() {
		return false
	}
	t.touched = true
	t.wrote = t.wrote || write
	return true
}

// exit ends an operation begun by enter or begin; deferred, it also ends one the
// gate stopped midway.
func (t *View) exit() {
	if t.gate == nil {
		return
	}
	t.gate.Exit()
	if p := recover(); p != nil {
		if _, ok := p.(stopped); !ok {
			panic(p)
		}
	}
}

// classify classifies val as classify does, letting go of the gate while
// that runs script code: the toString or valueOf of a boxed primitive.
func (t *View) classify(val goja.Value) (goja.Value, kind) {
	if o, ok := val.(*goja.Object); ok && t.gate != nil {
		switch o.ClassName() {
		case "String", "Number":
			defer t.gate.reacquire(t.gate.release())
		}
	}
	return classify(t.vm, val)
}

// node is what every view object has: its place in the view tree.
type node struct {
	tree   *View
	parent *node   // nil for the root
	seg    pathSeg // how the parent reaches this node
	// detached is set when the parent stops holding this node's value (the
	// field was assigned or deleted, the element overwritten or cut off).
	detached bool
	// adopters counts the live adoptions of this node's view object.
	adopters int
	// pending counts the live adoptions held by this node and the nodes
	// below it.
	pending int
}

func (n *node) base() *node { return n }

// reachable reports whether the node is still part of the message:
// attached to its parent up to the root, or adopted on the way.
func (n *node) reachable() bool {
	for p := n; p != nil; p = p.parent {
		if p.adopters > 0 {
			return true
		}
		if p.detached {
			return false
		}
	}
	return true
}

// pathError adds the path from the root to n to err, which already holds
// the segments below n, and returns it as a *FieldError.
func (n *node) pathError(err error) error {
	for p := n; p.parent != nil; p = p.parent {
		err = withSeg(err, p.seg)
	}
	return toFieldError(err)
}

// fail records err, which already holds the segments below n, as the
// view's error unless an earlier one is recorded or n is no longer part of
// the message.
func (n *node) fail(err error) {
	t := n.tree
	if t.err != nil || !n.reachable() {
		return
	}
	t.err = n.pathError(err)
}

// handler is a view object's handler: *msgView, *listView or *mapView.
type handler interface {
	base() *node
	// store converts and stores the adopted value a, which the handler
	// holds, recording an error if it does not fit.
	store(a *adoption)
}

// adoption is a value the script assigned to a slot that is kept as it is
// (an object, or a value that does not fit) until Err stores it.
type adoption struct {
	val         goja.Value
	holder      handler
	seg         pathSeg                      // the slot, as the script named it
	fd          protoreflect.FieldDescriptor // the field, for a message slot
	mk          protoreflect.MapKey          // the key, for a map slot
	placeholder bool                         // the slot was empty before
	live        bool
}

// adopt registers a, held by holder, for val.
func (t *View) adopt(holder handler, val goja.Value, a *adoption) *adoption {
	a.val, a.holder, a.live = val, holder, true
	for p := holder.base(); p != nil; p = p.parent {
		p.pending++
	}
	if h := viewHandler(val); h != nil {
		h.base().adopters++
	}
	t.adopted = append(t.adopted, a)
	return a
}

// errAdopt marks a value that is adopted without converting it first.
var errAdopt = errors.New("adopted")

// kill ends the adoption: the slot was assigned again, removed or stored.
func (a *adoption) kill() {
	if a == nil || !a.live {
		return
	}
	a.live = false
	for p := a.holder.base(); p != nil; p = p.parent {
		p.pending--
	}
	if h := viewHandler(a.val); h != nil {
		h.base().adopters--
	}
}

// kid caches what a slot of a view (a field, element or entry) holds
// besides what the message has: the view object of a message, list or map,
// an adopted value, or a shadow.
type kid struct {
	obj   *goja.Object
	h     handler
	msg   protoreflect.Message // the message the view shows, if any
	adopt *adoption
	// shadow is the primitive the script assigned, stored in the message,
	// when reading the slot back would otherwise not give it (an int64
	// assigned as a number reads back as a number, as on a native object).
	shadow goja.Value
}

// value returns what the slot reads as if it holds an adopted or a
// shadowed value, or nil.
func (k *kid) value() goja.Value {
	if k == nil {
		return nil
	}
	if k.adopt != nil && k.adopt.live {
		return k.adopt.val
	}
	return k.shadow
}

// holds reports whether the slot already holds val: its view, or the
// value the script assigned.
func (k *kid) holds(val goja.Value) bool {
	if k == nil || val == nil {
		return false
	}
	if k.obj != nil && sameValue(k.obj, val) {
		return true
	}
	return sameValue(k.value(), val)
}

// sameValue reports whether a and b are the same object, or equal
// primitives. (Values cannot be compared with ==: some of goja's strings
// are slices.)
func sameValue(a, b goja.Value) bool {
	if a == nil || b == nil {
		return false
	}
	ao, aObj := a.(*goja.Object)
	bo, bObj := b.(*goja.Object)
	if aObj || bObj {
		return ao == bo
	}
	return a.StrictEquals(b)
}

// drop detaches the cached view and ends the adoption, if any, and empties
// k.
func (k *kid) drop() {
	if k.h != nil {
		k.h.base().detached = true
	}
	k.adopt.kill()
	*k = kid{}
}

var (
	typeMsgView  = reflect.TypeOf((*msgView)(nil))
	typeListView = reflect.TypeOf((*listView)(nil))
	typeMapView  = reflect.TypeOf((*mapView)(nil))
)

// viewHandler returns the handler of v if v is a view, or nil.
func viewHandler(v goja.Value) handler {
	obj, ok := v.(*goja.Object)
	if !ok {
		return nil
	}
	switch obj.ExportType() {
	case typeMsgView, typeListView, typeMapView:
		h, _ := obj.Export().(handler)
		return h
	}
	return nil
}

// viewMessage returns the message the view h shows, or nil if h shows a
// repeated or map field.
func viewMessage(h handler) protoreflect.Message {
	switch h := h.(type) {
	case *msgView:
		return h.m
	case *mapView:
		return h.src
	case *listView:
		return h.src
	}
	return nil
}

// valueKind returns the field of the google.protobuf.Value m that is set,
// or nil.
func valueKind(m protoreflect.Message) protoreflect.FieldDescriptor {
	od := m.Descriptor().Oneofs().ByName("kind")
	if od == nil {
		return nil
	}
	return m.WhichOneof(od)
}

// hasView reports whether m reads as a view (an object or array) rather
// than as a primitive or a copy.
func hasView(m protoreflect.Message) bool {
	switch wellKnown(m.Descriptor()) {
	case wktNone, wktEmpty, wktStruct, wktListValue:
		return true
	case wktValue:
		fd := valueKind(m)
		return fd != nil && (fd.Number() == valueStructField || fd.Number() == valueListField)
	}
	return false
}

// viewOf returns the view of m, for which hasView is true, found at seg
// under parent, reusing the one cached in k if it still shows m.
func (t *View) viewOf(parent *node, seg pathSeg, m protoreflect.Message, k *kid) goja.Value {
	w := wellKnown(m.Descriptor())
	if w == wktValue {
		m = m.Mutable(valueKind(m)).Message()
		w = wellKnown(m.Descriptor())
	}
	if k.obj != nil && k.msg == m {
		return k.obj
	}
	k.drop()
	n := node{tree: t, parent: parent, seg: seg}
	switch w {
	case wktStruct:
		fd := m.Descriptor().Fields().ByNumber(structFieldsField)
		mv := &mapView{node: n, fd: fd, mp: m.Mutable(fd).Map(), src: m}
		k.obj, k.h = t.vm.NewDynamicObject(mv), mv
	case wktListValue:
		fd := m.Descriptor().Fields().ByNumber(listValuesField)
		lv := &listView{node: n, fd: fd, l: m.Mutable(fd).List(), src: m, isValue: true}
		k.obj, k.h = t.vm.NewDynamicArray(lv), lv
	default:
		mv := &msgView{node: n, m: m}
		k.obj, k.h = t.vm.NewDynamicObject(mv), mv
	}
	k.msg = m
	return k.obj
}

// guard runs f, turning a JavaScript exception raised while it reads a
// value (a throwing getter, say) into an error.
func (t *View) guard(f func() error) (err error) {
	if ex := t.vm.Try(func() { err = f() }); ex != nil {
		return fmt.Errorf("exception while reading value: %w", ex)
	}
	return err
}

// readsAs reports whether reading pv, stored for field (or element or map
// value) fd, gives val, the primitive of kind k the script assigned.
func (t *View) readsAs(fd protoreflect.FieldDescriptor, pv protoreflect.Value, val goja.Value, k kind) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return k == kString && pv.String() == val.String()
	case protoreflect.BoolKind:
		return k == kBool
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return k == kInt || k == kFloat
	case protoreflect.EnumKind:
		if k == kString && !isNullValueEnum(fd) {
			return true
		}
	case protoreflect.MessageKind:
		if isValueMessage(fd) {
			switch k {
			case kNull, kBool, kInt, kFloat:
				return true
			case kString:
				m := pv.Message()
				return m.Get(m.Descriptor().Fields().ByNumber(valueStringField)).String() == val.String()
			}
		}
	}
	return val.StrictEquals(encoder{t.vm}.singular(fd, pv))
}

// isZero reports whether pv is the zero value of the scalar field fd, which
// a field without presence does not keep.
func isZero(pv protoreflect.Value, fd protoreflect.FieldDescriptor) bool {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return !pv.Bool()
	case protoreflect.StringKind:
		return pv.String() == ""
	case protoreflect.BytesKind:
		return len(pv.Bytes()) == 0
	case protoreflect.EnumKind:
		return pv.Enum() == 0
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return math.Float64bits(pv.Float()) == 0
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return pv.Int() == 0
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return pv.Uint() == 0
	}
	return false
}

// convertMessage fills dst, a fresh message, from the JavaScript value cv
// of kind k. A view of a message with dst's descriptor, or of a Struct or
// ListValue for a Value, is copied, unless values assigned below it are
// yet to be stored or elements below it read as undefined; anything else,
// views of other messages included, is decoded as FromValue does.
// copied counts a message copied into the view's.
func (t *View) copied(src protoreflect.Message) {
	if t.counter != nil {
		t.counter.add(proto.Size(src.Interface()))
	}
}

func (t *View) convertMessage(dst protoreflect.Message, cv goja.Value, k kind) error {
	if h := viewHandler(cv); h != nil && h.base().pending == 0 {
		if src := viewMessage(h); src != nil {
			dmd, smd := dst.Descriptor(), src.Descriptor()
			if dmd == smd {
				proto.Merge(dst.Interface(), src.Interface())
				t.copied(src)
				return nil
			}
			if wellKnown(dmd) == wktValue {
				var num protoreflect.FieldNumber
				switch wellKnown(smd) {
				case wktStruct:
					num = valueStructField
				case wktListValue:
					num = valueListField
				}
				if num != 0 && dmd.Fields().ByNumber(num).Message() == smd {
					proto.Merge(dst.Mutable(dmd.Fields().ByNumber(num)).Message().Interface(), src.Interface())
					t.copied(src)
					return nil
				}
			}
		}
	}
	d := decoder{vm: t.vm, gate: t.gate, counter: t.counter}
	if k == kObject || k == kArray {
		return t.guard(func() error { return d.message(cv, k, dst) })
	}
	return d.message(cv, k, dst)
}

// fillList appends the elements of the array cv to l, the empty list of
// the repeated field fd, as FromValue does; views assigned as elements are
// copied.
func (t *View) fillList(l protoreflect.List, fd protoreflect.FieldDescriptor, cv goja.Value, k kind) error {
	if k != kArray {
		return wantError("array", k)
	}
	return t.guard(func() error {
		d := decoder{vm: t.vm, elemMessage: t.convertMessage, gate: t.gate, counter: t.counter}
		return d.list(cv, k, l, fd)
	})
}

// fillMap adds the properties of the object cv to mp, the empty map of the
// map field fd, as FromValue does; views assigned as values are copied.
func (t *View) fillMap(mp protoreflect.Map, fd protoreflect.FieldDescriptor, cv goja.Value, k kind) error {
	if k != kObject {
		return wantError("object", k)
	}
	return t.guard(func() error {
		d := decoder{vm: t.vm, elemMessage: t.convertMessage, gate: t.gate, counter: t.counter}
		return d.mapField(cv, k, mp, fd)
	})
}

// msgView is the view of a message without a special JSON form.
type msgView struct {
	node
	m    protoreflect.Message
	kids []fieldKid
	// added lists the fields the script made properties, in order: Keys
	// lists them last, as a native object lists properties added to it.
	added []protoreflect.FieldDescriptor
	// hasKey, hasFd and hasResult remember the last Has, which goja calls
	// right before Set; a write forgets them.
	hasKey    string
	hasFd     protoreflect.FieldDescriptor
	hasResult bool
}

// fieldKid caches what field fd holds (see kid). For a list or map field,
// its presence also keeps the field a property while the list or map is
// empty, as an emptied array stays a property of a native object.
type fieldKid struct {
	fd protoreflect.FieldDescriptor
	kid
}

func (v *msgView) kid(fd protoreflect.FieldDescriptor) *fieldKid {
	num := fd.Number()
	for i := range v.kids {
		if v.kids[i].fd.Number() == num {
			return &v.kids[i]
		}
	}
	return nil
}

// slot returns the kid of field fd, or nil.
func (v *msgView) slot(fd protoreflect.FieldDescriptor) *kid {
	if k := v.kid(fd); k != nil {
		return &k.kid
	}
	return nil
}

func (v *msgView) addKid(fd protoreflect.FieldDescriptor) *fieldKid {
	v.kids = append(v.kids, fieldKid{fd: fd})
	return &v.kids[len(v.kids)-1]
}

// dropKid forgets what field fd holds, detaching its view. A list or map
// view keeps a copy of the elements it showed, since the message's list or
// map may be reused for the field's new value.
func (v *msgView) dropKid(fd protoreflect.FieldDescriptor) {
	i := slices.IndexFunc(v.kids, func(k fieldKid) bool { return k.fd.Number() == fd.Number() })
	if i < 0 {
		return
	}
	k := &v.kids[i]
	switch h := k.h.(type) {
	case *listView:
		if !fd.IsList() {
			break // a ListValue's view: the message stays as it was
		}
		l := v.m.NewField(fd).List()
		for j, n := 0, h.l.Len(); j < n; j++ {
			l.Append(h.l.Get(j))
		}
		h.l = l
	case *mapView:
		if !fd.IsMap() {
			break // a Struct's view: the message stays as it was
		}
		mp := v.m.NewField(fd).Map()
		h.mp.Range(func(mk protoreflect.MapKey, val protoreflect.Value) bool {
			mp.Set(mk, val)
			return true
		})
		h.mp = mp
	}
	k.drop()
	v.kids = slices.Delete(v.kids, i, i+1)
}

// jsonField returns the field or extension a native object from ToValue
// has as property key, or nil.
func (v *msgView) jsonField(key string) protoreflect.FieldDescriptor {
	md := v.m.Descriptor()
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	if len(key) > 2 && key[0] == '[' {
		fd, _ := extensionField(md, key)
		return fd
	}
	return nil
}

// anyField returns the field FromValue would fill for key: by JSON name,
// original name or extension name.
func (v *msgView) anyField(key string) (protoreflect.FieldDescriptor, error) {
	md := v.m.Descriptor()
	fds := md.Fields()
	if fd := fds.ByJSONName(key); fd != nil {
		return fd, nil
	}
	if fd := fds.ByTextName(key); fd != nil {
		return fd, nil
	}
	fd, err := extensionField(md, key)
	if err == nil && fd == nil {
		err = errors.New("unknown field")
	}
	return fd, err
}

// present reports whether fd is a property of the view.
func (v *msgView) present(fd protoreflect.FieldDescriptor) bool {
	if v.m.Has(fd) {
		return true
	}
	k := v.kid(fd)
	return k != nil && (fd.IsList() || fd.IsMap() || k.value() != nil)
}

// Get implements goja.DynamicObject.
func (v *msgView) Get(key string) goja.Value {
	t := v.tree
	if !t.begin(false) {
		return nil
	}
	defer t.exit()
	fd := v.jsonField(key)
	if fd == nil {
		return nil
	}
	if val := v.slot(fd).value(); val != nil {
		return val
	}
	if fd.IsList() || fd.IsMap() {
		k := v.kid(fd)
		if k == nil {
			if !v.m.Has(fd) {
				return nil
			}
			k = v.addKid(fd)
		}
		if k.obj == nil {
			n := node{tree: t, parent: &v.node, seg: pathSeg{kind: segField, name: fd.JSONName()}}
			if fd.IsList() {
				lv := &listView{node: n, fd: fd, l: v.m.Mutable(fd).List()}
				lv.isValue = isValueMessage(fd)
				k.obj, k.h = t.vm.NewDynamicArray(lv), lv
			} else {
				mv := &mapView{node: n, fd: fd, mp: v.m.Mutable(fd).Map()}
				k.obj, k.h = t.vm.NewDynamicObject(mv), mv
			}
		}
		return k.obj
	}
	if !v.m.Has(fd) {
		return nil
	}
	val := v.m.Get(fd)
	if fd.Message() != nil && hasView(val.Message()) {
		k := v.kid(fd)
		if k == nil {
			k = v.addKid(fd)
		}
		return t.viewOf(&v.node, pathSeg{kind: segField, name: fd.JSONName()}, val.Message(), &k.kid)
	}
	return encoder{t.vm}.singular(fd, val)
}

// Has implements goja.DynamicObject.
func (v *msgView) Has(key string) bool {
	if !v.tree.begin(false) {
		return false
	}
	defer v.tree.exit()
	fd := v.jsonField(key)
	has := fd != nil && v.present(fd)
	if fd != nil {
		v.hasKey, v.hasFd, v.hasResult = key, fd, has
	}
	return has
}

// Set implements goja.DynamicObject. It returns true even when the value
// does not fit; the error is recorded for Err.
func (v *msgView) Set(key string, val goja.Value) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	cv, k := t.classify(val)
	var fd protoreflect.FieldDescriptor
	var was bool
	if v.hasFd != nil && key == v.hasKey {
		fd, was = v.hasFd, v.hasResult
	} else {
		var err error
		if fd, err = v.anyField(key); fd == nil {
			if k != kUndefined {
				v.fail(inField(err, key))
			}
			return true
		}
		was = v.present(fd)
	}
	v.hasFd = nil
	switch _, isObj := val.(*goja.Object); {
	case k == kUndefined || k == kNull && !isValueMessage(fd) && !isNullValueEnum(fd):
		// The field is unset, but the property stays, reading as
		// assigned, as on a native object.
		v.clear(fd)
		v.addKid(fd).shadow = val
	case isObj || !v.assign(fd, val, cv, k):
		v.adoptField(fd, key, val)
	}
	if !was {
		v.forget(fd)
		v.added = append(v.added, fd)
	}
	return true
}

// forget removes fd from added.
func (v *msgView) forget(fd protoreflect.FieldDescriptor) {
	if len(v.added) > 0 {
		v.added = slices.DeleteFunc(v.added, func(a protoreflect.FieldDescriptor) bool { return a.Number() == fd.Number() })
	}
}

// isAdded reports whether fd is in added.
func (v *msgView) isAdded(fd protoreflect.FieldDescriptor) bool {
	return len(v.added) > 0 && slices.ContainsFunc(v.added, func(a protoreflect.FieldDescriptor) bool { return a.Number() == fd.Number() })
}

// adoptField makes val, an object or a value that does not fit, the value
// of field fd, which the script named key.
func (v *msgView) adoptField(fd protoreflect.FieldDescriptor, key string, val goja.Value) {
	if v.slot(fd).holds(val) {
		return
	}
	v.dropKid(fd)
	placeholder := false
	if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && !v.m.Has(fd) {
		v.m.Set(fd, v.m.NewField(fd))
		placeholder = true
	}
	k := v.addKid(fd)
	k.adopt = v.tree.adopt(v, val, &adoption{seg: pathSeg{kind: segField, name: key}, fd: fd, placeholder: placeholder})
	v.clearOthers(fd)
}

// store implements handler.
func (v *msgView) store(a *adoption) {
	v.hasFd = nil
	t, m, fd := v.tree, v.m, a.fd
	cv, k := t.classify(a.val)
	var err error
	switch {
	case fd.IsList():
		nl := m.NewField(fd)
		if err = t.fillList(nl.List(), fd, cv, k); err == nil {
			m.Set(fd, nl)
		}
	case fd.IsMap():
		nm := m.NewField(fd)
		if err = t.fillMap(nm.Map(), fd, cv, k); err == nil {
			m.Set(fd, nm)
		}
	case fd.Message() != nil:
		nv := m.NewField(fd)
		if err = t.convertMessage(nv.Message(), cv, k); err == nil {
			m.Set(fd, nv)
		} else if a.placeholder {
			m.Clear(fd)
		}
	default:
		d := decoder{vm: t.vm, gate: t.gate, counter: t.counter}
		var pv protoreflect.Value
		if pv, err = d.scalar(cv, k, fd); err == nil {
			m.Set(fd, pv)
		}
	}
	if kd := v.kid(fd); kd != nil && kd.adopt == a {
		kd.adopt = nil
	}
	if err != nil {
		v.fail(inField(err, a.seg.name))
	}
}

// clearOthers forgets the views and adopted values of the other members
// of fd's oneof, which setting fd has cleared.
func (v *msgView) clearOthers(fd protoreflect.FieldDescriptor) {
	od := fd.ContainingOneof()
	if od == nil {
		return
	}
	fds := od.Fields()
	for i, n := 0, fds.Len(); i < n; i++ {
		if other := fds.Get(i); other.Number() != fd.Number() {
			v.dropKid(other)
		}
	}
}

// assign stores val, a primitive of kind k, in field fd, and reports
// whether it fits.
func (v *msgView) assign(fd protoreflect.FieldDescriptor, val, cv goja.Value, k kind) bool {
	t, m := v.tree, v.m
	var pv protoreflect.Value
	switch {
	case fd.IsList() || fd.IsMap():
		return false
	case fd.Message() != nil:
		pv = m.NewField(fd)
		if t.convertMessage(pv.Message(), cv, k) != nil {
			return false
		}
	default:
		var err error
		d := decoder{vm: t.vm, gate: t.gate, counter: t.counter}
		if pv, err = d.scalar(cv, k, fd); err != nil {
			return false
		}
	}
	if len(v.kids) > 0 {
		v.dropKid(fd)
	}
	m.Set(fd, pv)
	if !fd.HasPresence() && isZero(pv, fd) || !t.readsAs(fd, pv, val, k) {
		v.addKid(fd).shadow = val
	}
	v.clearOthers(fd)
	return true
}

// clear unsets field fd.
func (v *msgView) clear(fd protoreflect.FieldDescriptor) {
	v.dropKid(fd)
	if v.m.Has(fd) {
		v.m.Clear(fd)
	}
}

// Delete implements goja.DynamicObject.
func (v *msgView) Delete(key string) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	v.hasFd = nil
	if fd, _ := v.anyField(key); fd != nil {
		v.clear(fd)
		v.forget(fd)
	}
	return true
}

// Keys implements goja.DynamicObject: the present fields in ToValue's
// order, then those the script added, in the order it added them.
func (v *msgView) Keys() []string {
	if !v.tree.begin(false) {
		return nil
	}
	defer v.tree.exit()
	md := v.m.Descriptor()
	fds := md.Fields()
	var keys []string
	for i, n := 0, fds.Len(); i < n; i++ {
		if fd := fds.Get(i); v.present(fd) && !v.isAdded(fd) {
			keys = append(keys, fd.JSONName())
		}
	}
	if md.ExtensionRanges().Len() > 0 {
		var exts []protoreflect.FieldDescriptor
		v.m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			if fd.IsExtension() {
				exts = append(exts, fd)
			}
			return true
		})
		for _, k := range v.kids {
			if k.fd.IsExtension() && (k.fd.IsList() || k.fd.IsMap()) && !v.m.Has(k.fd) {
				exts = append(exts, k.fd)
			}
		}
		slices.SortFunc(exts, func(a, b protoreflect.FieldDescriptor) int {
			return cmp.Compare(a.FullName(), b.FullName())
		})
		for _, fd := range exts {
			if !v.isAdded(fd) {
				keys = append(keys, fd.JSONName())
			}
		}
	}
	for _, fd := range v.added {
		if v.present(fd) {
			keys = append(keys, fd.JSONName())
		}
	}
	jsKeyOrder(keys)
	return keys
}

// listView is the view of a repeated field or of a ListValue's values.
type listView struct {
	node
	fd      protoreflect.FieldDescriptor // the repeated field
	l       protoreflect.List
	src     protoreflect.Message // the ListValue, if this is one
	kids    []kid                // by index
	holes   []int                // indexes of elements that read as undefined
	isValue bool                 // elements are google.protobuf.Value
}

// maxGrowth bounds how far assigning length or an index beyond the end may
// grow a list at once.
const maxGrowth = 1 << 20

func (v *listView) isHole(i int) bool {
	return len(v.holes) > 0 && slices.Contains(v.holes, i)
}

// addHole makes element i read as undefined. Like an adoption, a hole
// counts as pending, so that copying a message with one goes through its
// view.
func (v *listView) addHole(i int) {
	if v.isHole(i) {
		return
	}
	if v.holes == nil {
		v.tree.holey = append(v.tree.holey, v)
	}
	v.holes = append(v.holes, i)
	v.addPending(1)
}

// removeHoles removes the holes for which drop is true.
func (v *listView) removeHoles(drop func(int) bool) {
	if n := len(v.holes); n > 0 {
		v.holes = slices.DeleteFunc(v.holes, drop)
		v.addPending(len(v.holes) - n)
	}
}

func (v *listView) removeHole(i int) {
	v.removeHoles(func(h int) bool { return h == i })
}

func (v *listView) addPending(d int) {
	for p := &v.node; p != nil; p = p.parent {
		p.pending += d
	}
}

func (v *listView) dropKid(i int) {
	if i < len(v.kids) {
		v.kids[i].drop()
	}
}

// newElement returns the value an element added by growing the list
// holds: null for a Value, the zero value otherwise.
func (v *listView) newElement() protoreflect.Value {
	el := v.l.NewElement()
	if v.isValue {
		m := el.Message()
		m.Set(m.Descriptor().Fields().ByNumber(valueNullField), protoreflect.ValueOfEnum(0))
	}
	return el
}

// grow appends elements that read as undefined up to length n.
func (v *listView) grow(n int) bool {
	cur := v.l.Len()
	if n-cur > maxGrowth {
		v.fail(fmt.Errorf("array length %d too large", n))
		return false
	}
	for range n - cur {
		v.tree.gate.check()
		v.l.Append(v.newElement())
	}
	// The new elements are holes; none of them was one already.
	if v.holes == nil {
		v.tree.holey = append(v.tree.holey, v)
	}
	for i := cur; i < n; i++ {
		v.holes = append(v.holes, i)
	}
	v.addPending(n - cur)
	return true
}

// convert converts one element as FromValue does.
func (v *listView) convert(cv goja.Value, k kind) (protoreflect.Value, error) {
	if v.fd.Message() != nil {
		el := v.l.NewElement()
		if err := v.tree.convertMessage(el.Message(), cv, k); err != nil {
			return protoreflect.Value{}, err
		}
		return el, nil
	}
	d := decoder{vm: v.tree.vm, gate: v.tree.gate, counter: v.tree.counter}
	return d.scalar(cv, k, v.fd)
}

// ensureKids makes room in kids for every element.
func (v *listView) ensureKids() {
	if n := v.l.Len(); n > len(v.kids) {
		v.kids = append(v.kids, make([]kid, n-len(v.kids))...)
	}
}

// store implements handler.
func (v *listView) store(a *adoption) {
	i := a.seg.index
	cv, k := v.tree.classify(a.val)
	pv, err := v.convert(cv, k)
	if err == nil {
		v.l.Set(i, pv)
	}
	if i < len(v.kids) && v.kids[i].adopt == a {
		v.kids[i].adopt = nil
	}
	if err != nil {
		v.fail(atIndex(err, i))
	}
}

// Len implements goja.DynamicArray.
func (v *listView) Len() int {
	if !v.tree.begin(false) {
		return 0
	}
	defer v.tree.exit()
	return v.l.Len()
}

// Get implements goja.DynamicArray.
func (v *listView) Get(i int) goja.Value {
	t := v.tree
	if !t.begin(false) {
		return nil
	}
	defer t.exit()
	if i < 0 || i >= v.l.Len() {
		return nil
	}
	if v.isHole(i) {
		return goja.Undefined()
	}
	if i < len(v.kids) {
		if val := v.kids[i].value(); val != nil {
			return val
		}
	}
	val := v.l.Get(i)
	if v.fd.Message() != nil && hasView(val.Message()) {
		v.ensureKids()
		return t.viewOf(&v.node, pathSeg{kind: segIndex, index: i}, val.Message(), &v.kids[i])
	}
	return encoder{t.vm}.singular(v.fd, val)
}

// Set implements goja.DynamicArray. It returns true even when the value
// does not fit; the error is recorded for Err.
func (v *listView) Set(i int, val goja.Value) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	if i < 0 {
		// A native array would get a property that is not an element,
		// which FromValue ignores.
		return true
	}
	n := v.l.Len()
	cv, k := t.classify(val)
	if k == kUndefined {
		if i >= n {
			v.grow(i + 1)
			return true
		}
		v.dropKid(i)
		if v.isValue {
			v.l.Set(i, v.newElement())
		}
		v.addHole(i)
		return true
	}
	var pv protoreflect.Value
	err := errAdopt
	if _, isObj := val.(*goja.Object); !isObj {
		pv, err = v.convert(cv, k)
	}
	if i < len(v.kids) && v.kids[i].holds(val) {
		return true
	}
	if err != nil {
		if i >= n {
			if !v.grow(i) {
				return true
			}
			v.l.Append(v.newElement())
		} else {
			v.dropKid(i)
			v.removeHole(i)
		}
		v.ensureKids()
		v.kids[i].adopt = t.adopt(v, val, &adoption{seg: pathSeg{kind: segIndex, index: i}})
		return true
	}
	if i >= n {
		if !v.grow(i) {
			return true
		}
		v.l.Append(pv)
	} else {
		v.dropKid(i)
		v.removeHole(i)
		v.l.Set(i, pv)
	}
	if !t.readsAs(v.fd, pv, val, k) {
		v.ensureKids()
		v.kids[i].shadow = val
	}
	return true
}

// SetLen implements goja.DynamicArray.
func (v *listView) SetLen(n int) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	if n < 0 {
		return false
	}
	cur := v.l.Len()
	switch {
	case n < cur:
		for i := n; i < len(v.kids); i++ {
			v.kids[i].drop()
		}
		v.kids = v.kids[:min(n, len(v.kids))]
		if len(v.holes) > 0 {
			v.removeHoles(func(h int) bool { return h >= n })
		}
		v.l.Truncate(n)
	case n > cur:
		v.grow(n)
	}
	return true
}

// mapView is the view of a map field or of a Struct's fields.
type mapView struct {
	node
	fd   protoreflect.FieldDescriptor // the map field
	mp   protoreflect.Map
	src  protoreflect.Message // the Struct, if this is one
	kids map[string]*kid      // by canonical key
	// added lists the keys the script added, in order: Keys lists them
	// last, as a native object lists properties added to it.
	added []string
	keys  []string // Keys' result, nil when it must be rebuilt
}

// adding records that the script adds the key ck, not in the map yet.
func (v *mapView) adding(ck string) {
	v.added = append(v.added, ck)
	v.keys = nil
}

// removed records that the key ck is no longer in the map.
func (v *mapView) removed(ck string) {
	if len(v.added) > 0 {
		v.added = slices.DeleteFunc(v.added, func(k string) bool { return k == ck })
	}
	v.keys = nil
}

// canonicalKey parses key if it is a map key as ToValue writes it.
func (v *mapView) canonicalKey(key string) (protoreflect.MapKey, bool) {
	kfd := v.fd.MapKey()
	mk, err := mapKey(key, kfd)
	if err != nil {
		return mk, false
	}
	if kfd.Kind() == protoreflect.StringKind {
		return mk, true
	}
	return mk, mk.String() == key
}

func (v *mapView) dropKid(key string) {
	if k := v.kids[key]; k != nil {
		k.drop()
		delete(v.kids, key)
	}
}

// Get implements goja.DynamicObject.
func (v *mapView) Get(key string) goja.Value {
	t := v.tree
	if !t.begin(false) {
		return nil
	}
	defer t.exit()
	mk, ok := v.canonicalKey(key)
	if !ok {
		return nil
	}
	if val := v.kids[key].value(); val != nil {
		return val
	}
	val := v.mp.Get(mk)
	if !val.IsValid() {
		return nil
	}
	vfd := v.fd.MapValue()
	if vfd.Message() != nil && hasView(val.Message()) {
		k := v.kids[key]
		if k == nil {
			if v.kids == nil {
				v.kids = make(map[string]*kid)
			}
			k = new(kid)
			v.kids[key] = k
		}
		return t.viewOf(&v.node, pathSeg{kind: segKey, name: key}, val.Message(), k)
	}
	return encoder{t.vm}.singular(vfd, val)
}

// Has implements goja.DynamicObject.
func (v *mapView) Has(key string) bool {
	if !v.tree.begin(false) {
		return false
	}
	defer v.tree.exit()
	mk, ok := v.canonicalKey(key)
	return ok && v.mp.Has(mk)
}

// Set implements goja.DynamicObject. It returns true even when the value
// does not fit; the error is recorded for Err.
func (v *mapView) Set(key string, val goja.Value) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	cv, k := t.classify(val)
	if k == kUndefined {
		v.Delete(key)
		return true
	}
	mk, err := mapKey(key, v.fd.MapKey())
	if err != nil {
		v.fail(atKey(err, key))
		return true
	}
	var pv protoreflect.Value
	vfd := v.fd.MapValue()
	ck := mk.String()
	if v.kids[ck].holds(val) {
		return true
	}
	err = errAdopt
	if _, isObj := val.(*goja.Object); !isObj {
		if vfd.Message() != nil {
			pv = v.mp.NewValue()
			err = t.convertMessage(pv.Message(), cv, k)
		} else {
			d := decoder{vm: t.vm, gate: t.gate, counter: t.counter}
			pv, err = d.scalar(cv, k, vfd)
		}
	}
	if err != nil {
		placeholder := !v.mp.Has(mk)
		if placeholder {
			v.adding(ck)
			v.mp.Set(mk, v.newValue())
		}
		v.dropKid(ck)
		if v.kids == nil {
			v.kids = make(map[string]*kid)
		}
		v.kids[ck] = &kid{adopt: t.adopt(v, val, &adoption{seg: pathSeg{kind: segKey, name: key}, mk: mk, placeholder: placeholder})}
		return true
	}
	if !v.mp.Has(mk) {
		v.adding(ck)
	}
	v.dropKid(ck)
	v.mp.Set(mk, pv)
	if !t.readsAs(vfd, pv, val, k) {
		if v.kids == nil {
			v.kids = make(map[string]*kid)
		}
		v.kids[ck] = &kid{shadow: val}
	}
	return true
}

// newValue returns an empty map value: null for a Value.
func (v *mapView) newValue() protoreflect.Value {
	val := v.mp.NewValue()
	if isValueMessage(v.fd.MapValue()) {
		m := val.Message()
		m.Set(m.Descriptor().Fields().ByNumber(valueNullField), protoreflect.ValueOfEnum(0))
	}
	return val
}

// store implements handler.
func (v *mapView) store(a *adoption) {
	t := v.tree
	cv, k := t.classify(a.val)
	var pv protoreflect.Value
	var err error
	if vfd := v.fd.MapValue(); vfd.Message() != nil {
		pv = v.mp.NewValue()
		err = t.convertMessage(pv.Message(), cv, k)
	} else {
		d := decoder{vm: t.vm, gate: t.gate, counter: t.counter}
		pv, err = d.scalar(cv, k, vfd)
	}
	switch {
	case err == nil:
		v.mp.Set(a.mk, pv)
	case a.placeholder:
		v.mp.Clear(a.mk)
		v.removed(a.mk.String())
	}
	ck := a.mk.String()
	if kd := v.kids[ck]; kd != nil && kd.adopt == a {
		delete(v.kids, ck)
	}
	if err != nil {
		v.fail(atKey(err, a.seg.name))
	}
}

// Delete implements goja.DynamicObject.
func (v *mapView) Delete(key string) bool {
	t := v.tree
	if !t.begin(true) {
		return true
	}
	defer t.exit()
	mk, ok := v.canonicalKey(key)
	if !ok || !v.mp.Has(mk) {
		return true
	}
	v.dropKid(key)
	v.mp.Clear(mk)
	v.removed(key)
	return true
}

// Keys implements goja.DynamicObject: the keys in ToValue's order, then
// those the script added, in the order it added them.
func (v *mapView) Keys() []string {
	if !v.tree.begin(false) {
		return nil
	}
	defer v.tree.exit()
	if v.keys == nil {
		keys := v.sortedKeys()
		if len(v.added) > 0 {
			keys = slices.DeleteFunc(keys, func(k string) bool { return slices.Contains(v.added, k) })
			keys = append(keys, v.added...)
		}
		jsKeyOrder(keys)
		v.keys = keys
	}
	return v.keys
}

// sortedKeys returns the keys in the order ToValue inserts them.
func (v *mapView) sortedKeys() []string {
	mks := make([]protoreflect.MapKey, 0, v.mp.Len())
	v.mp.Range(func(mk protoreflect.MapKey, _ protoreflect.Value) bool {
		mks = append(mks, mk)
		return true
	})
	switch v.fd.MapKey().Kind() {
	case protoreflect.BoolKind:
		slices.SortFunc(mks, func(a, b protoreflect.MapKey) int { return cmp.Compare(b2i(a.Bool()), b2i(b.Bool())) })
	case protoreflect.StringKind:
		slices.SortFunc(mks, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		slices.SortFunc(mks, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.Uint(), b.Uint()) })
	default:
		slices.SortFunc(mks, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.Int(), b.Int()) })
	}
	keys := make([]string, len(mks))
	for i, mk := range mks {
		keys[i] = mk.String()
	}
	return keys
}

// jsKeyOrder reorders keys, given in insertion order, as JavaScript lists
// an ordinary object's keys: array indexes first in numeric order, then the
// others in insertion order.
func jsKeyOrder(keys []string) {
	n := 0
	for _, k := range keys {
		if isArrayIndex(k) {
			n++
		}
	}
	if n == 0 {
		return
	}
	idx := make([]string, 0, n)
	rest := make([]string, 0, len(keys)-n)
	for _, k := range keys {
		if isArrayIndex(k) {
			idx = append(idx, k)
		} else {
			rest = append(rest, k)
		}
	}
	slices.SortStableFunc(idx, func(a, b string) int {
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	copy(keys, idx)
	copy(keys[n:], rest)
}

// isArrayIndex reports whether s is an array index as JavaScript property
// keys go: a canonical decimal below 2^32-1.
func isArrayIndex(s string) bool {
	if s == "" || len(s) > 10 || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n < 1<<32-1
}
