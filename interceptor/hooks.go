package interceptor

import (
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// hooks is the state both interceptors share.
type hooks struct {
	opts *options

	// responseTypes caches the response type of each method the program
	// has descriptors of; it is copied on write, so reads take no lock.
	responseTypes atomic.Pointer[map[string]protoreflect.MessageType]
	mu            sync.Mutex

	// caches holds the response cache of each cache configuration in use,
	// by weak pointer to it: see cacheFor.
	caches sync.Map

	// caller makes the hooks' calls to other methods (ctx.call); nil
	// without WithCalls or WithCaller.
	caller engine.Caller
}

func newHooks(o *options) *hooks {
	h := &hooks{opts: o, caller: o.caller}
	h.responseTypes.Store(&map[string]protoreflect.MessageType{})
	return h
}

// responseType returns the response type of a full method, from the
// descriptors linked into the program (or from WithResponseTypes), or nil
// when it is not known there.
func (h *hooks) responseType(method string) protoreflect.MessageType {
	if h.opts.responseTypes != nil {
		return h.opts.responseTypes(method)
	}
	if mt, ok := (*h.responseTypes.Load())[method]; ok {
		return mt
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.responseTypes.Load()
	if mt, ok := old[method]; ok {
		return mt
	}
	mt := lookupResponseType(method)
	if mt == nil {
		// Not kept: with grpc.UnknownServiceHandler, clients name
		// methods, and made-up names must not grow the map.
		return nil
	}
	m := make(map[string]protoreflect.MessageType, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[method] = mt
	h.responseTypes.Store(&m)
	return mt
}

func lookupResponseType(method string) protoreflect.MessageType {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil
	}
	return mt
}
