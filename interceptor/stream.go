package interceptor

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// errAnswered is what the handler's RecvMsg and SendMsg return once a
// pre-hook has answered the call; the interceptor then ends the stream with
// OK.
var errAnswered = status.Error(codes.Aborted, "the call was answered by a hook")

// hookedStream runs pre-hooks on every message the client sends. Once a
// hook rejected or answered a message, the call is over for the handler
// too: its context is cancelled, and its RecvMsg and SendMsg fail with the
// rejection's status (errAnswered after an answer), so that a handler that
// sends from another goroutine than the one receiving stops as well.
type hookedStream struct {
	grpc.ServerStream
	hooks  *hooks
	chain  *registry.Chain
	method string

	// ctx is the handler's context: the call's, cancelled when a hook
	// ends the call, with the rejection's status (or errAnswered) as its
	// cause.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// ended holds how a hook ended the call: the rejection's status, or
	// errAnswered once its answer was sent. RecvMsg sets it; the handler's
	// sends and the interceptor read it, while a goroutine of the handler
	// may still be receiving.
	ended atomic.Pointer[error]

	// mu serializes sends, which a handler may make from another goroutine
	// than the one receiving: its own, and a hook's answer. A rejection
	// does not take it: it sends nothing.
	mu sync.Mutex
}

// newHookedStream wraps ss, the stream of a call of method, to run the
// pre-hooks of chain on each message the client sends. The caller calls
// end once the handler returned.
func newHookedStream(ss grpc.ServerStream, h *hooks, chain *registry.Chain, method string) *hookedStream {
	ctx, cancel := context.WithCancelCause(ss.Context())
	return &hookedStream{ServerStream: ss, hooks: h, chain: chain, method: method, ctx: ctx, cancel: cancel}
}

// end releases the stream's context and returns the status the call ends
// with, given err, the handler's: a hook's rejection, or nil after its
// answer, whatever the handler returned; err otherwise.
func (s *hookedStream) end(err error) error {
	s.cancel(nil)
	switch e := s.endedErr(); {
	case e == errAnswered:
		return nil
	case e != nil:
		return e
	}
	return err
}

// endedErr is the status a hook ended the call with (errAnswered for an
// answer), or nil.
func (s *hookedStream) endedErr() error {
	if p := s.ended.Load(); p != nil {
		return *p
	}
	return nil
}

// finish records err as how the call ended and cancels the handler's
// context; it returns err.
func (s *hookedStream) finish(err error) error {
	s.ended.Store(&err)
	s.cancel(err)
	return err
}

// Context returns the call's context, cancelled once a hook rejected or
// answered a message.
func (s *hookedStream) Context() context.Context { return s.ctx }

func (s *hookedStream) RecvMsg(m any) error {
	if err := s.endedErr(); err != nil {
		return err
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return s.finish(status.Errorf(codes.Internal, "hooks of %s need protobuf messages, got %T", s.method, m))
	}
	call := engine.Call{Method: s.method, Phase: engine.Pre, ResponseType: s.hooks.responseType(s.method)}
	cur, answer, err := s.hooks.runHooks(s.ctx, s.chain.Pre, call, msg)
	switch {
	case err != nil:
		return s.finish(err)
	case answer != nil:
		return s.answer(answer)
	}
	if cur != msg {
		proto.Reset(msg)
		proto.Merge(msg, cur)
	}
	return nil
}

// answer sends a hook's answer as the stream's last message, and ends the
// call: with OK once it was sent, with the send's status otherwise.
func (s *hookedStream) answer(m proto.Message) error {
	s.mu.Lock()
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		err = errAnswered
	}
	// Before the handler's next send takes the lock.
	s.finish(err)
	s.mu.Unlock()
	return err
}

// SendMsg sends the handler's message, unless a hook ended the call: it
// then fails with the hook's rejection, or errAnswered after its answer.
func (s *hookedStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.endedErr(); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}
