package engine

import (
	"log/slog"
	"slices"

	"github.com/dop251/goja"
	"google.golang.org/grpc/metadata"

	"github.com/apihooks/apihooks/interceptor/engine/protojs"
)

// The properties of ctx, in the order Object.keys lists them.
const (
	propMethod = iota
	propPhase
	propHook
	propParams
	propMetadata
	propRequest
	propResponse
	propLog
	propError
	// propG is ctx.g, the g of API Maker style hooks (see gObject): not
	// listed by Object.keys, as it only shows ctx's own properties again.
	propG
	propCall
	numProps
)

var propNames = [numProps]string{"method", "phase", "hook", "params", "metadata", "request", "response", "log", "error", "g", "call"}

func propIndex(key string) int {
	for i, n := range propNames {
		if n == key {
			return i
		}
	}
	return -1
}

// ctxObject is the ctx a script sees. Its properties are built when first
// read, so a hook pays only for what it uses; a script may also assign or
// delete them (ctx.request = {...}), and add its own.
type ctxObject struct {
	r       *run
	vals    [numProps]goja.Value
	deleted [numProps]bool
	extra   map[string]goja.Value
}

func (c *ctxObject) Get(key string) goja.Value {
	i := propIndex(key)
	if i < 0 {
		return c.extra[key]
	}
	if c.deleted[i] {
		return nil
	}
	if v := c.vals[i]; v != nil {
		return v
	}
	v := c.build(i)
	c.vals[i] = v
	return v
}

// build makes property i from the call.
func (c *ctxObject) build(i int) goja.Value {
	vm, call := c.r.vm, &c.r.call
	switch i {
	case propMethod:
		return vm.ToValue(call.Method)
	case propPhase:
		return vm.ToValue(string(call.Phase))
	case propHook:
		return vm.ToValue(call.Hook)
	case propParams:
		p := protojs.FromGo(vm, call.Params)
		if goja.IsNull(p) || goja.IsUndefined(p) {
			p = vm.NewObject()
		}
		return p
	case propMetadata:
		md := call.Metadata
		if md == nil {
			md, _ = metadata.FromIncomingContext(c.r.ctx)
		}
		return vm.NewDynamicObject(metadataObject{vm: vm, md: md})
	case propRequest:
		return c.r.view(propRequest, call.Request)
	case propResponse:
		return c.r.view(propResponse, call.Response)
	case propLog:
		return c.r.logObject()
	case propError:
		return c.r.errorValue()
	case propG:
		return c.r.g()
	case propCall:
		return c.r.callFunction()
	}
	return goja.Undefined()
}

// touched reports whether property i was read or assigned, so whether the
// script may have changed it.
func (c *ctxObject) touched(i int) bool { return c.vals[i] != nil || c.deleted[i] }

func (c *ctxObject) Set(key string, v goja.Value) bool {
	if i := propIndex(key); i >= 0 {
		c.vals[i], c.deleted[i] = v, false
		return true
	}
	if c.extra == nil {
		c.extra = map[string]goja.Value{}
	}
	c.extra[key] = v
	return true
}

func (c *ctxObject) Has(key string) bool {
	if i := propIndex(key); i >= 0 {
		return !c.deleted[i]
	}
	_, ok := c.extra[key]
	return ok
}

func (c *ctxObject) Delete(key string) bool {
	if i := propIndex(key); i >= 0 {
		c.vals[i], c.deleted[i] = nil, true
		return true
	}
	delete(c.extra, key)
	return true
}

func (c *ctxObject) Keys() []string {
	keys := make([]string, 0, numProps+len(c.extra))
	for i, n := range propNames {
		if !c.deleted[i] && i != propG && (i != propError || c.r.call.Phase == ErrorPhase) {
			keys = append(keys, n)
		}
	}
	for k := range c.extra {
		keys = append(keys, k)
	}
	return keys
}

// dataObject is the seed-style global data: data.message is ctx.request,
// data.parms is ctx.params, data.response is ctx.response.
type dataObject struct {
	c     *ctxObject
	extra map[string]goja.Value
}

var dataProps = map[string]int{"message": propRequest, "parms": propParams, "response": propResponse}

func (d *dataObject) Get(key string) goja.Value {
	if i, ok := dataProps[key]; ok {
		return d.c.Get(propNames[i])
	}
	return d.extra[key]
}

func (d *dataObject) Set(key string, v goja.Value) bool {
	if i, ok := dataProps[key]; ok {
		return d.c.Set(propNames[i], v)
	}
	if d.extra == nil {
		d.extra = map[string]goja.Value{}
	}
	d.extra[key] = v
	return true
}

func (d *dataObject) Has(key string) bool {
	if i, ok := dataProps[key]; ok {
		return d.c.Has(propNames[i])
	}
	_, ok := d.extra[key]
	return ok
}

func (d *dataObject) Delete(key string) bool {
	if i, ok := dataProps[key]; ok {
		return d.c.Delete(propNames[i])
	}
	delete(d.extra, key)
	return true
}

func (d *dataObject) Keys() []string {
	keys := []string{"message", "parms", "response"}
	for k := range d.extra {
		keys = append(keys, k)
	}
	return keys
}

// bridgeObject is the seed-style global bridge of log functions, built when
// first used. Each takes a message and an optional value; the ...Json forms
// are the same functions under brainCloud's other names, since every value
// is logged as JSON.
type bridgeObject struct {
	r    *run
	vals map[string]goja.Value
}

var bridgeNames = []string{
	"logDebug", "logInfo", "logWarning", "logError",
	"logDebugJson", "logInfoJson", "logWarningJson", "logErrorJson",
}

// bridgeLevel is the level each of bridgeNames logs at.
var bridgeLevel = map[string]slog.Level{
	"logDebug": levelDebug, "logInfo": levelInfo, "logWarning": levelWarn, "logError": levelError,
	"logDebugJson": levelDebug, "logInfoJson": levelInfo, "logWarningJson": levelWarn, "logErrorJson": levelError,
}

func (b *bridgeObject) Get(key string) goja.Value {
	if v, ok := b.vals[key]; ok {
		return v
	}
	level, ok := bridgeLevel[key]
	if !ok {
		return nil
	}
	v := named(b.r.vm, key, b.r.logFunc(level))
	b.Set(key, v)
	return v
}

func (b *bridgeObject) Set(key string, v goja.Value) bool {
	if b.vals == nil {
		b.vals = map[string]goja.Value{}
	}
	b.vals[key] = v
	return true
}

func (b *bridgeObject) Has(key string) bool {
	_, ok := b.vals[key]
	return ok || slices.Contains(bridgeNames, key)
}

func (b *bridgeObject) Delete(key string) bool { delete(b.vals, key); return true }

func (b *bridgeObject) Keys() []string { return bridgeNames }
