package interceptor

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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

	// rejected is the status a hook ended the stream with. Only RecvMsg
	// sets it, and gRPC calls RecvMsg from one goroutine at a time.
	rejected error

	// mu serializes sends, which a handler may make from another goroutine
	// than the one receiving: its own, and a hook's answer.
	mu sync.Mutex
	// responded is set once a hook answered in the handler's place; the
	// handler's own messages are dropped from then on.
	responded bool
}

// answered reports whether a hook answered the call.
func (s *hookedStream) answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.responded
}

func (s *hookedStream) RecvMsg(m any) error {
	switch {
	case s.rejected != nil:
		return s.rejected
	case s.answered():
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
	call := engine.Call{Method: s.method, Phase: engine.Pre, ResponseType: s.hooks.responseType(s.method)}
	cur, answer, err := s.hooks.runHooks(ctx, s.chain.Pre, call, msg)
	switch {
	case err != nil:
		s.rejected = err
		return err
	case answer != nil:
		s.mu.Lock()
		err := s.ServerStream.SendMsg(answer)
		s.responded = err == nil
		s.mu.Unlock()
		if err != nil {
			s.rejected = err
			return err
		}
		return errAnswered
	}
	if cur != msg {
		proto.Reset(msg)
		proto.Merge(msg, cur)
	}
	return nil
}

func (s *hookedStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.responded {
		return nil
	}
	return s.ServerStream.SendMsg(m)
}
