package engine

import (
	"fmt"

	"github.com/dop251/goja"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Style is how a module's function is called and what its return value
// means.
type Style string

// The styles WithStyle accepts.
const (
	// CtxStyle, the default, calls main(ctx, g) and reads its result as
	// a result object: {status, message, messageOverride, response}, or
	// nothing to go on. g is there for scripts that only read it; a
	// function that declares one parameter gets ctx alone.
	CtxStyle Style = ""
	// APIMaker calls main(g), as API Maker's hooks are called. Returning
	// undefined (or null) goes on to the next hook, with the changes made
	// to g.req.body (pre) or g.res.output (post); returning any other value
	// ends the chain and answers the call with it, which must fit the
	// method's response type. A thrown error ends the call: with the
	// status its code or status property names, else UNKNOWN.
	APIMaker Style = "apimaker"
)

// WithStyle returns the script called in style. A script in the API Maker
// style must be a module: it exports the function main(g).
func (s *Script) WithStyle(style Style) (*Script, error) {
	switch style {
	case CtxStyle:
	case APIMaker:
		if !s.module {
			return nil, fmt.Errorf("compile: %s: style %q: the script must export its function, "+
				"module.exports = main (or export default main)", s.name, style)
		}
	default:
		return nil, fmt.Errorf("compile: %s: style %q is not %q (or empty, for the ctx style)", s.name, style, APIMaker)
	}
	if style == s.style {
		return s, nil
	}
	c := *s
	c.style = style
	return &c, nil
}

// Style returns how the script is called.
func (s *Script) Style() Style { return s.style }

// g builds g, which ctx keeps as ctx.g. The objects of g's sub aliases
// (g.req, g.res) are allocated with it.
func (r *run) g() goja.Value {
	b := &gBlock{}
	b.top = aliasObject{c: &r.c, layout: gLayout, kids: &b.kids}
	return r.vm.NewDynamicObject(&b.top)
}

// gBlock is g's aliasObject and those of its sub aliases, allocated at once.
type gBlock struct {
	top  aliasObject
	kids [maxSubs]aliasObject
}

// alias is a property of an aliasObject: one of ctx's properties (prop),
// or an object of more aliases (sub, the sub'th of its layout's).
type alias struct {
	name string
	prop int
	sub  []alias
	// subIndex numbers the aliases with a sub layout, from 0.
	subIndex int
}

// maxSubs bounds the aliases with a sub layout in one layout.
const maxSubs = 2

// gLayout is g, the global object of API Maker's hooks, as ctx's
// properties under API Maker's names. This is the one place g's
// properties are listed.
var gLayout = []alias{
	{name: "req", prop: -1, subIndex: 0, sub: []alias{
		{name: "body", prop: propRequest},
		{name: "headers", prop: propMetadata},
	}},
	{name: "res", prop: -1, subIndex: 1, sub: []alias{
		{name: "output", prop: propResponse},
	}},
	{name: "log", prop: propLog},
	{name: "params", prop: propParams},
	{name: "method", prop: propMethod},
	{name: "phase", prop: propPhase},
	{name: "hook", prop: propHook},
	{name: "error", prop: propError},
	{name: "call", prop: propCall},
}

// aliasObject shows ctx's properties under other names: reading one reads
// ctx's, assigning or deleting one does that to ctx's, so that g.req.body
// is ctx.request and g.res.output = x is ctx.response = x.
type aliasObject struct {
	c      *ctxObject
	layout []alias
	// subs are the objects of the layout's sub aliases, by subIndex, once
	// built or assigned (set says which; a deleted one is nil); kids, when
	// not nil, are where their aliasObjects go.
	subs  [maxSubs]goja.Value
	set   [maxSubs]bool
	kids  *[maxSubs]aliasObject
	extra map[string]goja.Value
}

func (a *aliasObject) find(key string) *alias {
	for i := range a.layout {
		if a.layout[i].name == key {
			return &a.layout[i]
		}
	}
	return nil
}

func (a *aliasObject) Get(key string) goja.Value {
	al := a.find(key)
	switch {
	case al == nil:
		return a.extra[key]
	case al.prop >= 0:
		return a.c.Get(propNames[al.prop])
	case a.set[al.subIndex]:
		return a.subs[al.subIndex]
	}
	var kid *aliasObject
	if a.kids != nil {
		kid = &a.kids[al.subIndex]
	} else {
		kid = &aliasObject{}
	}
	*kid = aliasObject{c: a.c, layout: al.sub}
	v := a.c.r.vm.NewDynamicObject(kid)
	a.subs[al.subIndex], a.set[al.subIndex] = v, true
	return v
}

func (a *aliasObject) Set(key string, v goja.Value) bool {
	al := a.find(key)
	switch {
	case al == nil:
		if a.extra == nil {
			a.extra = map[string]goja.Value{}
		}
		a.extra[key] = v
		return true
	case al.prop >= 0:
		return a.c.Set(propNames[al.prop], v)
	}
	a.subs[al.subIndex], a.set[al.subIndex] = v, true
	return true
}

func (a *aliasObject) Has(key string) bool {
	al := a.find(key)
	switch {
	case al == nil:
		_, ok := a.extra[key]
		return ok
	case al.prop >= 0:
		return a.c.Has(propNames[al.prop])
	}
	return !a.set[al.subIndex] || a.subs[al.subIndex] != nil
}

func (a *aliasObject) Delete(key string) bool {
	al := a.find(key)
	switch {
	case al == nil:
		delete(a.extra, key)
		return true
	case al.prop >= 0:
		return a.c.Delete(propNames[al.prop])
	}
	a.subs[al.subIndex], a.set[al.subIndex] = nil, true
	return true
}

func (a *aliasObject) Keys() []string {
	keys := make([]string, 0, len(a.layout)+len(a.extra))
	for _, al := range a.layout {
		if al.prop == propError && a.c.r.call.Phase != ErrorPhase {
			continue
		}
		if a.Has(al.name) {
			keys = append(keys, al.name)
		}
	}
	for k := range a.extra {
		keys = append(keys, k)
	}
	return keys
}

// decodeReturn reads what an API Maker style function returned: nothing
// (undefined or null) goes on, with the live message; any other value
// answers the call.
func (r *run) decodeReturn(v goja.Value) (Outcome, error) {
	if !present(v) {
		if r.call.Phase == ErrorPhase {
			return Outcome{Action: Continue}, nil
		}
		return r.goOnLive()
	}
	var mt protoreflect.MessageType
	if r.call.Phase == Post && r.call.Response != nil {
		mt = r.call.Response.ProtoReflect().Type()
	} else {
		mt = r.call.ResponseType
	}
	if mt == nil {
		return Outcome{}, &Error{Kind: BadResult, Message: "return value: this call cannot be answered by a hook; return nothing to go on"}
	}
	m, err := r.fill(mt, v, "return value")
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Action: Respond, Message: m}, nil
}
