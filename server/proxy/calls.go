package proxy

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/apihooks/apihooks/interceptor"
)

// call is the hooks' ctx.call (an engine.Caller): it calls a unary method
// of the backend through the proxy's own hooks, as a client's call through
// the proxy would, with the calling hook's context.
func (p *Proxy) call(ctx context.Context, method string, request []byte) ([]byte, error) {
	full := "/" + strings.TrimPrefix(method, "/")
	service, _, _ := strings.Cut(full[1:], "/")
	if strings.HasPrefix(service, "grpc.") && !slices.Contains(p.callable, service) {
		// As on the built-in server: gRPC's own services (the backend's
		// health, reflection, channelz...) are not the API hooks call.
		return nil, status.Errorf(codes.Unimplemented, "ctx.call: %s is one of gRPC's own services, which hooks do not call", full[1:])
	}
	m := p.method(ctx, full)
	switch {
	case m == nil:
		return nil, status.Errorf(codes.Unimplemented, "ctx.call: the backend's descriptors do not describe %s", full[1:])
	case m.streaming():
		return nil, status.Errorf(codes.Unimplemented, "ctx.call: %s is a streaming method; only unary methods can be called", full[1:])
	}
	req := m.in.NewMessage()
	if err := protojson.Unmarshal(request, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "ctx.call %s: request: %v", full[1:], err)
	}
	handler := func(ctx context.Context, req any) (any, error) {
		out := m.out.NewMessage()
		if err := p.cc.Invoke(outgoing(ctx), full, req, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	resp, err := p.unary(ctx, req, &grpc.UnaryServerInfo{FullMethod: full}, handler)
	return interceptor.CallAnswer(full, resp, err)
}
