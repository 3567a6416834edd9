package proxy

import (
	"context"
	"errors"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// hooked serves a call of a method with hooks: its messages are decoded
// with the backend's descriptors and go through the same interceptors as a
// Go service's. Unary calls get pre-, post- and error hooks; streams get
// pre-hooks on each message the client sends.
func (p *Proxy) hooked(ss grpc.ServerStream, fullMethod string, chain *registry.Chain) error {
	ctx := ss.Context()
	m := p.method(ctx, fullMethod)
	if m == nil {
		return p.notDescribed(ctx, fullMethod)
	}
	if m.streaming() {
		info := &grpc.StreamServerInfo{FullMethod: fullMethod,
			IsClientStream: m.desc.IsStreamingClient(), IsServerStream: m.desc.IsStreamingServer()}
		ds := &decodingStream{ServerStream: ss, p: p, method: fullMethod}
		return p.stream(nil, ds, info, func(_ any, hs grpc.ServerStream) error {
			if !info.IsClientStream {
				return forwardServerStream(hs, p.cc, fullMethod, m.in.NewMessage(), m.in.NewMessage())
			}
			return forward(hs, p.cc, fullMethod, func() any { return m.in.NewMessage() })
		})
	}

	var f frame
	if err := recvRequest(ss, fullMethod, &f); err != nil {
		return err
	}
	req, err := p.decode(ctx, fullMethod, false, f.bytes(), true)
	f.free()
	if err != nil {
		return err
	}
	// Post-hooks and response caches need the response decoded; other
	// calls pass it back as it came.
	decodeResponse := len(chain.Post) > 0 || chain.Cache != nil
	handler := func(ctx context.Context, req any) (any, error) {
		if err := decodeErr(fullMethod, req); err != nil {
			return nil, err
		}
		var header, trailer metadata.MD
		out := new(frame)
		err := p.cc.Invoke(outgoing(ctx), fullMethod, req, out, grpc.Header(&header), grpc.Trailer(&trailer))
		// Through ctx, so that a response cache keeps them with the
		// response.
		if len(header) > 0 {
			if err := grpc.SetHeader(ctx, header); err != nil {
				return nil, err
			}
		}
		if trailer = backendTrailer(trailer); len(trailer) > 0 {
			if err := grpc.SetTrailer(ctx, trailer); err != nil {
				return nil, err
			}
		}
		if err != nil {
			return nil, err
		}
		if !decodeResponse {
			if c := p.src.Snapshot().Lookup(fullMethod); c == nil || (len(c.Post) == 0 && c.Cache == nil) {
				return out, nil
			}
		}
		defer out.free()
		return p.decode(ctx, fullMethod, true, out.bytes(), true)
	}
	resp, err := p.unary(ctx, req, &grpc.UnaryServerInfo{FullMethod: fullMethod}, handler)
	if err != nil {
		return err
	}
	return ss.SendMsg(resp)
}

// notDescribed returns the status of a hooked call of a method the
// backend's descriptors do not describe: without them its hooks cannot
// run, so the call is not forwarded. A method or service the backend does
// not have is UNIMPLEMENTED, as the backend would say; a backend the proxy
// cannot reach yet (a sidecar starting before it) is UNAVAILABLE, which
// clients retry; descriptors the proxy cannot learn (no reflection, or
// descriptors that do not build) are the proxy's own failure, INTERNAL.
func (p *Proxy) notDescribed(ctx context.Context, fullMethod string) error {
	if err := ctx.Err(); err != nil {
		// The call ended while the descriptors were being learned.
		return status.FromContextError(err).Err()
	}
	name := strings.TrimPrefix(fullMethod, "/")
	service, method, _ := strings.Cut(name, "/")
	err := p.desc.lastErr()
	switch {
	case slices.Contains(p.desc.current().services, service):
		return status.Errorf(codes.Unimplemented, "unknown method %s for service %s", method, service)
	case err == nil:
		return status.Errorf(codes.Unimplemented, "unknown service %s", service)
	case status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.Unavailable, "the backend is unavailable: the proxy cannot learn its descriptors, which the hooks of %s need", name)
	}
	return status.Errorf(codes.Internal, "the hooks of %s cannot run: the proxy cannot learn the backend's descriptors (its log says why)", name)
}

// method returns what the proxy knows of a method, learning the backend's
// descriptors again (at most once per interval) when it knows nothing.
func (p *Proxy) method(ctx context.Context, fullMethod string) *method {
	if m := p.desc.current().methods[fullMethod]; m != nil {
		return m
	}
	p.relearn(ctx)
	return p.desc.current().methods[fullMethod]
}

// relearn learns the backend's descriptors again, at most once per
// interval. A change and a failure are logged once, by the fetch (see
// Proxy.learned and Proxy.cannotLearn).
func (p *Proxy) relearn(ctx context.Context) {
	_, _ = p.desc.refresh(ctx, false)
}

// decode decodes b, a request or a response of a method, with the
// descriptors in force. When it carries fields they do not describe and
// refresh is set, the backend's descriptors are learned again (at most once
// per interval) and b decoded with the new ones.
func (p *Proxy) decode(ctx context.Context, fullMethod string, response bool, b []byte, refresh bool) (proto.Message, error) {
	what := "request"
	if response {
		what = "response"
	}
	for retried := false; ; retried = true {
		m := p.desc.current().methods[fullMethod]
		if m == nil {
			return nil, status.Errorf(codes.Internal, "%s: the backend's descriptors no longer describe it", fullMethod)
		}
		mt := m.in
		if response {
			mt = m.out
		}
		msg := mt.NewMessage()
		if err := unmarshal(b, msg); err != nil {
			return nil, status.Errorf(codes.Internal, "%s: the %s does not decode against its descriptor %s: %v",
				fullMethod, what, mt.Descriptor().FullName(), err)
		}
		if retried || !refresh || !msg.Unknown() {
			return msg, nil
		}
		if changed, _ := p.desc.refresh(ctx, false); !changed {
			return msg, nil
		}
	}
}

// decodeErr returns the status of a request, about to go to the backend,
// one of whose fields a hook read and that did not decode (a string that
// is not UTF-8, say): the hook saw it without that field, and the request
// cannot be encoded again. Nil for a request that decoded, or whose
// undecoded fields go on as they came.
func decodeErr(fullMethod string, m any) error {
	msg, ok := m.(*lazypb.Message)
	if !ok || msg.Err() == nil {
		return nil
	}
	return status.Errorf(codes.Internal, "%s: the request does not decode against its descriptor %s: %v",
		fullMethod, msg.Descriptor().FullName(), msg.Err())
}

// unmarshal decodes a backend's message into msg, leaving required fields
// to the backend to check, as it would without the proxy.
func unmarshal(b []byte, msg *lazypb.Message) error {
	return proto.UnmarshalOptions{AllowPartial: true}.Unmarshal(b, msg)
}

// decodingStream decodes the client's messages itself, so a message that
// does not fit its descriptor ends the call with a status that names the
// method.
type decodingStream struct {
	grpc.ServerStream
	p      *Proxy
	method string
}

func (s *decodingStream) RecvMsg(m any) error {
	var f frame
	if err := s.ServerStream.RecvMsg(&f); err != nil {
		return err
	}
	defer f.free()
	msg := m.(*lazypb.Message)
	if err := unmarshal(f.bytes(), msg); err != nil {
		return status.Errorf(codes.Internal, "%s: a request does not decode against its descriptor %s: %v",
			s.method, msg.Descriptor().FullName(), err)
	}
	if msg.Unknown() {
		// This stream goes on with the descriptors it began with; the
		// next calls get the new ones.
		s.p.relearn(s.Context())
	}
	return nil
}
