package interceptor

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// errAnswered is what the handler's RecvMsg returns once a pre-hook has
// answered the call; the interceptor then ends the stream with OK.
var errAnswered = status.Error(codes.Aborted, "the call was answered by a hook")

// hookedStream runs pre-hooks on every message the client sends.
type hookedStream struct {
	grpc.ServerStream
	hooks  *hooks
	chain  *registry.Chain
	method string
	md     metadata.MD

	// rejected is the status a hook ended the stream with.
	rejected error
	// responded is set once a hook answered in the handler's place; the
	// handler's own messages are dropped from then on.
	responded bool
}

func (s *hookedStream) RecvMsg(m any) error {
	switch {
	case s.rejected != nil:
		return s.rejected
	case s.responded:
		return errAnswered
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(proto.Message)
	if !ok {
		s.rejected = status.Errorf(codes.Internal, "hooks of %s need protobuf messages, got %T", s.method, m)
		return s.rejected
	}
	ctx := s.Context()
	if s.md == nil {
		s.md, _ = metadata.FromIncomingContext(ctx)
	}
	cur := msg
	for _, hook := range s.chain.Pre {
		out, err := s.hooks.run(ctx, hook, &engine.Call{
			Method: s.method, Phase: engine.Pre, Metadata: s.md,
			Request: cur, ResponseType: s.hooks.responseType(s.method),
		})
		if err != nil {
			s.rejected = err
			return err
		}
		switch out.Action {
		case engine.Reject:
			s.rejected = out.Status.Err()
			return s.rejected
		case engine.Respond:
			if err := s.ServerStream.SendMsg(out.Message); err != nil {
				s.rejected = err
				return err
			}
			s.responded = true
			return errAnswered
		}
		if out.Message != nil {
			cur = out.Message
		}
	}
	if cur != msg {
		proto.Reset(msg)
		proto.Merge(msg, cur)
	}
	return nil
}

func (s *hookedStream) SendMsg(m any) error {
	if s.responded {
		return nil
	}
	return s.ServerStream.SendMsg(m)
}
