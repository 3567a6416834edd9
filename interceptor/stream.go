package interceptor

import (
	"sync"
	"sync/atomic"

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

	// rejected holds the status a hook ended the stream with. RecvMsg
	// sets it; the interceptor reads it once the handler returned, while
	// a goroutine of the handler may still be receiving.
	rejected atomic.Pointer[error]

	// mu serializes sends, which a handler may make from another goroutine
	// than the one receiving: its own, and a hook's answer.
	mu sync.Mutex
	// responded is set once a hook answered in the handler's place; the
	// handler's own messages are dropped from then on.
	responded bool
}

// reject records err as the status the stream ends with, and returns it.
func (s *hookedStream) reject(err error) error {
	s.rejected.Store(&err)
	return err
}

// rejectedErr is the status a hook ended the stream with, or nil.
func (s *hookedStream) rejectedErr() error {
	if p := s.rejected.Load(); p != nil {
		return *p
	}
	return nil
}

// answered reports whether a hook answered the call.
func (s *hookedStream) answered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.responded
}

func (s *hookedStream) RecvMsg(m any) error {
	switch {
	case s.rejectedErr() != nil:
		return s.rejectedErr()
	case s.answered():
		return errAnswered
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return s.reject(status.Errorf(codes.Internal, "hooks of %s need protobuf messages, got %T", s.method, m))
	}
	ctx := s.Context()
	call := engine.Call{Method: s.method, Phase: engine.Pre, ResponseType: s.hooks.responseType(s.method)}
	cur, answer, err := s.hooks.runHooks(ctx, s.chain.Pre, call, msg)
	switch {
	case err != nil:
		return s.reject(err)
	case answer != nil:
		s.mu.Lock()
		err := s.ServerStream.SendMsg(answer)
		s.responded = err == nil
		s.mu.Unlock()
		if err != nil {
			return s.reject(err)
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
