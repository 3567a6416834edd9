package interceptor

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// Calls is the set of unary methods a hook may call with ctx.call: the
// services registered through its Registrar. A call runs in process,
// without the network: the unary interceptor built WithCalls runs the
// method's hooks around the service's own handler, with the calling hook's
// context, so its metadata and deadline, and the chain of hooks the call
// came from, which no client can send. Other interceptors of the server do
// not run on such calls.
type Calls struct {
	mu      sync.RWMutex
	methods map[string]callable
	unary   atomic.Pointer[grpc.UnaryServerInterceptor]
}

// callable is one unary method of a registered service.
type callable struct {
	impl    any
	handler grpc.MethodHandler
}

// NewCalls returns an empty set of methods.
func NewCalls() *Calls { return &Calls{methods: map[string]callable{}} }

// WithCalls lets hooks call the methods of c with ctx.call. The unary
// interceptor built with it is the one that runs the hooks of those calls.
// A nil c lets hooks call nothing (ctx.call fails with UNIMPLEMENTED), as
// without the option.
func WithCalls(c *Calls) Option {
	return func(o *options) {
		if c == nil {
			o.calls, o.caller = nil, nil
			return
		}
		o.calls, o.caller = c, c.call
	}
}

// WithCaller makes c the hooks' ctx.call, for a server whose methods are
// not registered Go services (a proxy): c must run the hooks of the method
// it calls, passing on the context it is given (see engine.Caller).
func WithCaller(c engine.Caller) Option {
	return func(o *options) { o.calls, o.caller = nil, c }
}

// Registrar returns a grpc.ServiceRegistrar that registers each service on
// srv, and its unary methods in c.
func (c *Calls) Registrar(srv grpc.ServiceRegistrar) grpc.ServiceRegistrar {
	return registrar{srv: srv, c: c}
}

type registrar struct {
	srv grpc.ServiceRegistrar
	c   *Calls
}

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.srv.RegisterService(desc, impl)
	r.c.RegisterService(desc, impl)
}

// RegisterService adds the unary methods of a service implemented by impl.
// It makes *Calls a grpc.ServiceRegistrar itself, for services that hooks
// may call but the server does not serve.
func (c *Calls) RegisterService(desc *grpc.ServiceDesc, impl any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = callable{impl: impl, handler: m.Handler}
	}
}

// setInterceptor makes f the interceptor that runs the hooks of calls.
func (c *Calls) setInterceptor(f grpc.UnaryServerInterceptor) { c.unary.Store(&f) }

// call is the engine.Caller of hooks: see engine.Caller.
func (c *Calls) call(ctx context.Context, method string, request []byte) ([]byte, error) {
	full := "/" + strings.TrimPrefix(method, "/")
	c.mu.RLock()
	m, ok := c.methods[full]
	c.mu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "ctx.call: this server has no unary method %s", strings.TrimPrefix(method, "/"))
	}
	var unary grpc.UnaryServerInterceptor
	if p := c.unary.Load(); p != nil {
		unary = *p
	}
	dec := func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "ctx.call %s: request type %T is not a protobuf message", full, v)
		}
		if err := protojson.Unmarshal(request, msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "ctx.call %s: request: %v", full[1:], err)
		}
		return nil
	}
	ctx = grpc.NewContextWithServerTransportStream(ctx, callStream{method: full})
	resp, err := m.handler(m.impl, ctx, dec, unary)
	return CallAnswer(full, resp, err)
}

// CallAnswer is the answer of an engine.Caller to a hook's ctx.call of
// fullMethod ("/package.Service/Method"), from what the call returned: the
// response as protojson text, or the call's error as a gRPC status.
func CallAnswer(fullMethod string, resp any, err error) ([]byte, error) {
	if err != nil {
		return nil, status.Convert(err).Err()
	}
	method := strings.TrimPrefix(fullMethod, "/")
	msg, ok := resp.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "ctx.call %s: response type %T is not a protobuf message", method, resp)
	}
	out, err := protojson.Marshal(msg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "ctx.call %s: response: %v", method, err)
	}
	return out, nil
}

// callStream is the transport stream of an in-process call: it names the
// method, and drops the headers and trailers a handler sets, which have no
// client to go to.
type callStream struct{ method string }

func (s callStream) Method() string             { return s.method }
func (callStream) SetHeader(metadata.MD) error  { return nil }
func (callStream) SendHeader(metadata.MD) error { return nil }
func (callStream) SetTrailer(metadata.MD) error { return nil }
