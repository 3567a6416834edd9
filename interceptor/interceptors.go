package interceptor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Source hands out the hooks in force. *registry.Registry is one.
type Source interface {
	Snapshot() *registry.Snapshot
}

// UnaryServerInterceptor returns an interceptor that runs the pre-hooks,
// the handler, then the post-hooks of each unary call, and the error hooks
// when the handler or a post-hook ended the call with an error. A method
// with a response cache configuration is answered from its cache, without
// hooks or handler, while the cache holds a response to the same request.
//
// It panics when src is nil, or a nil pointer: a server built so would
// fail every call.
func UnaryServerInterceptor(src Source, opts ...Option) grpc.UnaryServerInterceptor {
	mustHaveSource("UnaryServerInterceptor", src)
	h := newHooks(evaluateOptions(opts))
	f := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		chain := src.Snapshot().Lookup(info.FullMethod)
		if chain == nil {
			return handler(ctx, req)
		}
		return h.unary(ctx, req, info.FullMethod, handler, chain)
	}
	if h.opts.calls != nil {
		h.opts.calls.setInterceptor(f)
	}
	return f
}

// StreamServerInterceptor returns an interceptor that runs the pre-hooks on
// every message a client sends on a stream. A pre-hook's rejection ends the
// stream with its status, and its answer is sent as the stream's last
// message before it ends with OK, whatever the handler returns: the
// handler's context is cancelled, and its later sends and receives fail.
// Post-hooks and error hooks never run on streams, and streams are never
// cached.
//
// It panics when src is nil, or a nil pointer: a server built so would
// fail every call.
func StreamServerInterceptor(src Source, opts ...Option) grpc.StreamServerInterceptor {
	mustHaveSource("StreamServerInterceptor", src)
	h := newHooks(evaluateOptions(opts))
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		chain := src.Snapshot().Lookup(info.FullMethod)
		if chain == nil {
			return handler(srv, ss)
		}
		for _, hook := range chain.Post {
			if hookLogs.firstStreamSkip(hook) {
				h.opts.logger.Warn("post-hook skipped: post-hooks never run on streams",
					"method", info.FullMethod, "hook", hook.ID)
			}
		}
		for _, hook := range chain.Error {
			if hookLogs.firstStreamSkip(hook) {
				h.opts.logger.Warn("error hook skipped: error hooks never run on streams",
					"method", info.FullMethod, "hook", hook.ID)
			}
		}
		if len(chain.Pre) == 0 {
			return handler(srv, ss)
		}
		w := newHookedStream(ss, h, chain, info.FullMethod)
		return w.end(handler(srv, w))
	}
}

// mustHaveSource panics, naming the function fn, when src is nil or holds
// a nil pointer, map or func: the interceptor would panic on every call.
func mustHaveSource(fn string, src Source) {
	if src == nil {
		panic("interceptor: " + fn + " with a nil Source")
	}
	switch v := reflect.ValueOf(src); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func:
		if v.IsNil() {
			panic(fmt.Sprintf("interceptor: %s with a nil %T as its Source", fn, src))
		}
	}
}

func (h *hooks) unary(ctx context.Context, req any, method string, handler grpc.UnaryHandler, chain *registry.Chain) (any, error) {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "hooks of %s need protobuf messages, got %T", method, req)
	}
	if chain.Cache != nil {
		return h.cached(ctx, msg, method, handler, chain)
	}
	resp, _, err := h.call(ctx, msg, method, handler, chain)
	return resp, err
}

// call runs a unary call through its hooks: pre-hooks, handler, post-hooks,
// and error hooks when the handler or a post-hook ended it with an error.
// A pre-hook's rejection or failure ends the call as it is: the pre-hook
// chose the status. rescued reports a response an error hook gave in place
// of an error.
func (h *hooks) call(ctx context.Context, msg proto.Message, method string, handler grpc.UnaryHandler, chain *registry.Chain) (resp any, rescued bool, err error) {
	if len(chain.Pre) > 0 {
		call := engine.Call{Method: method, Phase: engine.Pre, ResponseType: h.responseType(method)}
		next, answer, err := h.runHooks(ctx, chain.Pre, call, msg)
		if err != nil || answer != nil {
			return answer, false, err
		}
		msg = next
	}
	resp, err = handler(ctx, msg)
	if err == nil && len(chain.Post) > 0 {
		resp, err = h.post(ctx, method, msg, resp, chain.Post)
	}
	if err != nil && len(chain.Error) > 0 {
		return h.onError(ctx, method, msg, chain.Error, err)
	}
	return resp, false, err
}

// post runs the post-hooks on the handler's response.
func (h *hooks) post(ctx context.Context, method string, req proto.Message, resp any, hooks []*registry.Hook) (any, error) {
	respMsg, ok := resp.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "hooks of %s need protobuf messages, got %T", method, resp)
	}
	call := engine.Call{Method: method, Phase: engine.Post, Request: req}
	respMsg, answer, err := h.runHooks(ctx, hooks, call, respMsg)
	if err != nil || answer != nil {
		return answer, err
	}
	return respMsg, nil
}

// onError runs the error hooks on callErr, the error the handler or a
// post-hook ended the call with. Each hook sees the status so far and may
// replace it, answer in its place, or leave it. A hook that fails never
// hides the call's error: run logs the failure, and the call ends with the
// status as it stood before that hook (later error hooks do not run),
// unless the hook's onError is "continue", which skips it.
func (h *hooks) onError(ctx context.Context, method string, req proto.Message, hooks []*registry.Hook, callErr error) (resp any, rescued bool, err error) {
	err = callErr
	st := status.Convert(callErr)
	for _, hook := range hooks {
		call := engine.Call{Method: method, Phase: engine.ErrorPhase, Request: req, ResponseType: h.responseType(method), Status: st}
		out, failed := h.run(ctx, hook, &call)
		if failed != nil {
			return nil, false, err
		}
		switch out.Action {
		case engine.Reject:
			st = keepDetails(out.Status, st)
			err = st.Err()
		case engine.Respond:
			return out.Message, true, nil
		}
	}
	return nil, false, err
}

// keepDetails returns an error hook's status, hooks, with the details of
// the status the call had, was, when it keeps was's message (the hook
// changed only the code: a RetryInfo or an ErrorInfo still describes the
// error). A hook that words a message of its own (redacting it) drops them
// with it.
func keepDetails(hooks, was *status.Status) *status.Status {
	if hooks.Message() != was.Message() || len(was.Proto().GetDetails()) == 0 || len(hooks.Proto().GetDetails()) > 0 {
		return hooks
	}
	p := was.Proto()
	p.Code = int32(hooks.Code())
	return status.FromProto(p)
}

// runHooks runs hooks in order on msg, the request (pre) or the response
// (post), which each hook may replace. It returns the message to go on
// with; or answer, when a hook answered the call; or the status error that
// ends the call. call is the template of each hook's Call.
func (h *hooks) runHooks(ctx context.Context, hooks []*registry.Hook, call engine.Call, msg proto.Message) (next, answer proto.Message, err error) {
	for _, hook := range hooks {
		c := call
		if c.Phase == engine.Post {
			c.Response = msg
		} else {
			c.Request = msg
		}
		out, err := h.run(ctx, hook, &c)
		if err != nil {
			return nil, nil, err
		}
		switch out.Action {
		case engine.Reject:
			return nil, nil, out.Status.Err()
		case engine.Respond:
			return nil, out.Message, nil
		}
		if out.Message != nil {
			msg = out.Message
		}
	}
	return msg, nil, nil
}

// run runs one hook. A failure comes back as a status error, or, for a hook
// whose onError is "continue", as a logged Continue that changes nothing.
// The observer, when there is one, is told how the run ended.
func (h *hooks) run(ctx context.Context, hook *registry.Hook, call *engine.Call) (engine.Outcome, error) {
	if h.opts.observer == nil {
		out, _, err := h.runHook(ctx, hook, call)
		return out, err
	}
	start := time.Now()
	out, r, err := h.runHook(ctx, hook, call)
	run := HookRun{Method: call.Method, Hook: hook.ID, Revision: hook.Revision, Phase: call.Phase,
		Outcome: r.outcome, Kind: r.kind, Skipped: r.skipped, Start: start}
	if r.ran {
		run.Duration = time.Since(start)
	}
	if run.Outcome == "" {
		switch out.Action {
		case engine.Reject:
			run.Outcome = OutcomeReject
		case engine.Respond:
			run.Outcome = OutcomeRespond
		default:
			run.Outcome = OutcomeContinue
		}
	}
	h.opts.observer(ctx, run)
	return out, err
}

// notLogged returns what logs the failures of hook on method that were
// not logged (logThrottle.failure), once it stops failing.
func (h *hooks) notLogged(method string, hook *registry.Hook) func(n int64) {
	id := hook.ID
	return func(n int64) {
		h.opts.logger.Warn("hook failures not logged since its last line about them",
			"method", method, "hook", id, "failures_not_logged", n)
	}
}

// ran says how a run ended, for the observer, when its Outcome's Action
// does not: outcome is empty when the Action tells.
type ran struct {
	outcome Outcome
	kind    engine.Kind
	skipped bool
	// ran is false for a hook that was not run.
	ran bool
}

// runHook is run, without the observer.
func (h *hooks) runHook(ctx context.Context, hook *registry.Hook, call *engine.Call) (engine.Outcome, ran, error) {
	if hook.Err != nil {
		if call.Phase == engine.ErrorPhase {
			if log, suppressed := hookLogs.failure(hook, time.Now(), h.notLogged(call.Method, hook)); log {
				h.opts.logger.WarnContext(ctx, "error hook not run: its document is invalid; the call keeps its error status",
					"method", call.Method, "hook", hook.ID, "error", hook.Err, "failures_not_logged", suppressed)
			}
		}
		return engine.Outcome{}, ran{outcome: OutcomeInvalid}, status.Errorf(codes.Internal, "hook %s: %v", hook.ID, hook.Err)
	}
	why, run := h.opts.quarantine.check(hook)
	if why != "" {
		if hook.OnError == registry.Continue {
			return engine.Outcome{Action: engine.Continue}, ran{outcome: OutcomeQuarantined, skipped: true}, nil
		}
		return engine.Outcome{}, ran{outcome: OutcomeQuarantined}, status.Errorf(codes.Unavailable, "hook %s not run: %s", hook.ID, why)
	}
	call.Hook = hook.Key.Name
	call.ID = hook.ID
	call.Params = hook.Params
	call.Timeout = hook.Timeout
	call.Caller = h.caller
	// A pre-hook may change the request in place unless it has to be
	// undone: a call whose hook failed or rejected ends there, but one
	// whose hook may fail and be skipped goes on with the request as it
	// was. The handler's response may be shared beyond this call, so
	// post-hooks always change a copy.
	call.InPlace = call.Phase == engine.Pre && hook.OnError != registry.Continue
	out, err := h.runner(hook).Run(ctx, hook.Script, call)
	if err == nil {
		return out, ran{ran: true}, nil
	}
	var ee *engine.Error
	if !errors.As(err, &ee) {
		return engine.Outcome{}, ran{outcome: OutcomeError, ran: true}, status.Errorf(codes.Internal, "hook %s: %v", hook.ID, err)
	}
	if why := h.opts.quarantine.strike(hook, ee, run); why != "" {
		h.opts.logger.WarnContext(ctx, "hook quarantined: calls fail fast without running it, or skip it (onError: continue)",
			"method", call.Method, "hook", hook.ID, "revision", hook.Revision, "reason", why, "for", h.opts.quarantine.dur)
	}
	skip := hook.Skips(ee.Kind)
	if ee.Kind == engine.Canceled && ctx.Err() != nil {
		// Not the hook's failure: the client gave up on the call (its
		// deadline, or a cancellation) while the hook ran.
		h.opts.logger.DebugContext(ctx, "call ended while its hook ran: the client's deadline passed or the client cancelled it",
			"method", call.Method, "hook", hook.ID, "error", ee.Message)
	} else if log, suppressed := hookLogs.failure(hook, time.Now(), h.notLogged(call.Method, hook)); log {
		msg := "hook failed; call aborted"
		switch {
		case skip:
			msg = "hook failed; going on without it (onError: continue)"
		case call.Phase == engine.ErrorPhase:
			msg = "error hook failed; the call ends with the error status it had"
		}
		attrs := []any{"method", call.Method, "hook", hook.ID, "error", ee.Message, "failures_not_logged", suppressed}
		if ee.At != "" {
			attrs = append(attrs, "at", ee.At)
		}
		h.opts.logger.WarnContext(ctx, msg, attrs...)
	}
	// A run refused for want of room, or by a closed engine, never
	// started: it has no duration.
	r := ran{outcome: errorOutcome(ee.Kind), kind: ee.Kind, skipped: skip,
		ran: ee.Kind != engine.Overloaded && ee.Kind != engine.Closed}
	if skip {
		return engine.Outcome{Action: engine.Continue}, r, nil
	}
	return engine.Outcome{}, r, ee.Status(hook.ID).Err()
}
