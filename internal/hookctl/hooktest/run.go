// Package hooktest runs hooks locally, with the engine the daemon uses and
// no etcd, and checks them against case files (*.test.yaml) kept beside a
// manifest, so hooks can be unit-tested before they are pushed.
//
// A run takes a compiled hook (registry.Compile), a concrete method whose
// message types come from a schema source, a request (and a response, for a
// post-hook) as protojson, and metadata. Its Result says what the daemon
// would do with the call: go on with a (possibly changed) message, reject it
// with a status, answer in the handler's place, or fail; and what the script
// logged.
package hooktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
)

// The actions of a Result.
const (
	ActionContinue = "continue"
	ActionReject   = "reject"
	ActionRespond  = "respond"
	ActionError    = "error"
)

// Runner runs hooks.
type Runner struct {
	src            *schema.Source
	defaultTimeout time.Duration
}

// Option configures a Runner.
type Option func(*Runner)

// WithDefaultTimeout sets the timeout of hooks whose document sets none, as
// the daemon's --hook-timeout does (engine.DefaultTimeout by default).
func WithDefaultTimeout(d time.Duration) Option {
	return func(r *Runner) { r.defaultTimeout = d }
}

// NewRunner returns a runner that takes message types from src.
func NewRunner(src *schema.Source, opts ...Option) *Runner {
	r := &Runner{src: src, defaultTimeout: engine.DefaultTimeout}
	for _, f := range opts {
		f(r)
	}
	return r
}

// Input is one call to run a hook on.
type Input struct {
	Hook *registry.Hook
	// Service and Method name the called method; for a SERVICE/* or */*
	// hook they say which method the call is for.
	Service, Method string
	Metadata        map[string][]string
	// Request and Response are protojson; empty means an empty message.
	Request, Response json.RawMessage
	// Error is the status the call failed with, for an error hook
	// (UNKNOWN with no message when nil).
	Error *Status
	// Calls answer the script's calls to other methods (ctx.call), by
	// "pkg.Service/Method"; a call to any other method fails with
	// UNIMPLEMENTED.
	Calls map[string]CallStub
}

// CallStub is how a called method answers in a test: with Response
// (protojson), or failing with Error.
type CallStub struct {
	Response json.RawMessage `json:"response,omitempty"`
	Error    *Status         `json:"error,omitempty"`
}

// stubCaller answers ctx.call from calls, as the daemon does: a call of a
// method the schema does not have as unary fails with UNIMPLEMENTED, a
// request that does not fit its type with INVALID_ARGUMENT, and the answer
// is calls' response, which must fit its type (checkCalls), as protojson.
func (r *Runner) stubCaller(calls map[string]CallStub) engine.Caller {
	return func(_ context.Context, method string, request []byte) ([]byte, error) {
		method = strings.TrimPrefix(method, "/")
		t, err := r.unaryTypes(method)
		if err != nil {
			return nil, status.Errorf(codes.Unimplemented, "ctx.call: %v", err)
		}
		if err := (protojson.UnmarshalOptions{Resolver: r.src.Resolver()}).Unmarshal(request, t.Request.New().Interface()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ctx.call %s: request: %v", method, err)
		}
		stub, ok := calls[method]
		if !ok {
			return nil, status.Errorf(codes.Unimplemented, "hookctl test: no answer for a call to %s (a case in a test file answers it under calls:)", method)
		}
		if stub.Error != nil {
			c, _ := ParseCode(stub.Error.Code) // checked by checkCalls
			return nil, status.Error(c, stub.Error.Message)
		}
		resp, err := r.Parse(t.Response, stub.Response) // checked by checkCalls
		if err != nil {
			return nil, status.Errorf(codes.Internal, "ctx.call %s: response: %v", method, err)
		}
		return protojson.MarshalOptions{Resolver: r.src.Resolver()}.Marshal(resp)
	}
}

// unaryTypes returns the types of a unary method, "pkg.Service/Method".
func (r *Runner) unaryTypes(method string) (*Types, error) {
	svc, m, ok := strings.Cut(method, "/")
	if !ok {
		return nil, fmt.Errorf("%q is not SERVICE/METHOD", method)
	}
	t, err := r.Types(svc, m)
	if err != nil {
		return nil, err
	}
	if st := schema.Streaming(t.Method); st != "" {
		return nil, fmt.Errorf("%s is a streaming method (%s); only unary methods can be called", method, st)
	}
	return t, nil
}

// checkCalls reports what is wrong with a case's answers to calls: a
// method that cannot be called, a code that is not one, a response that
// does not fit the method's type.
func (r *Runner) checkCalls(calls map[string]CallStub) error {
	for method, stub := range calls {
		t, err := r.unaryTypes(method)
		if err != nil {
			return fmt.Errorf("calls.%s: %w", method, err)
		}
		if stub.Error != nil {
			if c, ok := ParseCode(stub.Error.Code); !ok || c == codes.OK {
				return fmt.Errorf("calls.%s.error: %q is not a gRPC code name other than OK", method, stub.Error.Code)
			}
			continue
		}
		if _, err := r.Parse(t.Response, stub.Response); err != nil {
			return fmt.Errorf("calls.%s.response: %w", method, err)
		}
	}
	return nil
}

// Status is a gRPC status as a result shows it.
type Status struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Failure is a failed run.
type Failure struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	// At is where a thrown error was thrown: "3:12" (line and column in
	// the hook's script), or "utils/Name@1:3:12" in a util.
	At string `json:"at,omitempty"`
}

// where says At for people.
func (f *Failure) where() string {
	if f == nil || f.At == "" {
		return ""
	}
	if line, col, ok := strings.Cut(f.At, ":"); ok && !strings.Contains(col, ":") {
		return fmt.Sprintf(" (thrown at line %s, column %s of the script)", line, col)
	}
	return " (thrown at " + f.At + ")"
}

// Log is one line the script logged.
type Log struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Value   any    `json:"value,omitempty"`
}

// Result is what a run did.
type Result struct {
	// Action is continue, reject, respond or error.
	Action string `json:"action"`
	// Status is the rejection (reject) or the status the daemon ends the
	// call with (error).
	Status *Status `json:"status,omitempty"`
	// Request is the request the call goes on with (pre-hooks, continue).
	Request json.RawMessage `json:"request,omitempty"`
	// Response is the response the call goes on with (post-hooks, continue)
	// or the hook's answer (respond).
	Response json.RawMessage `json:"response,omitempty"`
	// Error is the failure, for error.
	Error *Failure `json:"error,omitempty"`
	// Skipped is a failure that onError "continue" turned into going on.
	Skipped *Failure `json:"skipped,omitempty"`
	Logs    []Log    `json:"logs"`

	message proto.Message
}

// Message returns the resulting request (pre, continue) or response
// (post continue, or respond); nil otherwise.
func (r *Result) Message() proto.Message { return r.message }

// Types are a method's message types.
type Types struct {
	Method   protoreflect.MethodDescriptor
	Request  protoreflect.MessageType
	Response protoreflect.MessageType
}

// Types returns the message types of service/method.
func (r *Runner) Types(service, method string) (*Types, error) {
	md, err := r.src.Method(service, method)
	if err != nil {
		return nil, err
	}
	return &Types{Method: md, Request: r.src.MessageType(md.Input()), Response: r.src.MessageType(md.Output())}, nil
}

// Parse reads protojson into a new message of type mt. Empty input gives an
// empty message.
func (r *Runner) Parse(mt protoreflect.MessageType, b json.RawMessage) (proto.Message, error) {
	m := mt.New().Interface()
	if len(bytes.TrimSpace(b)) == 0 {
		return m, nil
	}
	if err := (protojson.UnmarshalOptions{Resolver: r.src.Resolver()}).Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("not a %s: %v", mt.Descriptor().FullName(), err)
	}
	return m, nil
}

// JSON shows a message as compact protojson.
func (r *Runner) JSON(m proto.Message) json.RawMessage {
	b, err := (protojson.MarshalOptions{Resolver: r.src.Resolver()}).Marshal(m)
	if err != nil {
		b, _ = json.Marshal(err.Error())
		return b
	}
	var c bytes.Buffer
	if json.Compact(&c, b) != nil {
		return b
	}
	return c.Bytes()
}

// InputError is a problem with the input of a run (not with the hook).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Run runs in.Hook on the call in describes.
func (r *Runner) Run(ctx context.Context, in *Input) (*Result, error) {
	h := in.Hook
	t, err := r.Types(in.Service, in.Method)
	if err != nil {
		return nil, &InputError{err}
	}
	if h.Key.Phase != engine.Pre && schema.Streaming(t.Method) != "" {
		return nil, &InputError{fmt.Errorf("%s never run on streams, and %s/%s is %s", schema.PhaseHooks(h.Key.Phase), in.Service, in.Method, schema.Streaming(t.Method))}
	}
	var callErr *status.Status
	if h.Key.Phase == engine.ErrorPhase {
		callErr = status.New(codes.Unknown, "")
		if in.Error != nil {
			c, ok := ParseCode(in.Error.Code)
			if !ok || c == codes.OK {
				return nil, &InputError{fmt.Errorf("error: %q is not a gRPC code name other than OK", in.Error.Code)}
			}
			callErr = status.New(c, in.Error.Message)
		}
	} else if in.Error != nil {
		return nil, &InputError{errors.New("error: only an error hook sees the call's error")}
	}
	req, err := r.Parse(t.Request, in.Request)
	if err != nil {
		return nil, &InputError{fmt.Errorf("request: %w", err)}
	}
	if err := r.checkCalls(in.Calls); err != nil {
		return nil, &InputError{err}
	}
	call := &engine.Call{
		Method:   "/" + in.Service + "/" + in.Method,
		Phase:    h.Key.Phase,
		Hook:     h.Key.Name,
		ID:       h.ID,
		Params:   h.Params,
		Metadata: in.Metadata,
		Request:  req,
		Timeout:  h.Timeout,
		Status:   callErr,
		Caller:   r.stubCaller(in.Calls),
	}
	if call.Metadata == nil {
		call.Metadata = map[string][]string{}
	}
	var current proto.Message = req
	if h.Key.Phase == engine.Post {
		resp, err := r.Parse(t.Response, in.Response)
		if err != nil {
			return nil, &InputError{fmt.Errorf("response: %w", err)}
		}
		call.Response = resp
		current = resp
	} else {
		if len(bytes.TrimSpace(in.Response)) > 0 {
			return nil, &InputError{fmt.Errorf("response: a%s sees no response", map[engine.Phase]string{
				engine.Pre: " pre-hook runs before the handler and", engine.ErrorPhase: "n error hook runs on a failed call and"}[h.Key.Phase])}
		}
		call.ResponseType = t.Response
	}

	logs := &logCapture{}
	engine.BoundRegexpMatches()
	eng := engine.New(engine.WithLogger(slog.New(logs)), engine.WithTimeout(r.defaultTimeout))
	defer eng.Close()
	out, err := eng.Run(ctx, h.Script, call)
	res := &Result{}
	if err != nil {
		var ee *engine.Error
		if !errors.As(err, &ee) {
			return nil, err
		}
		f := &Failure{Kind: ee.Kind.String(), Message: ee.Message, At: ee.At}
		if h.Key.Phase == engine.ErrorPhase {
			// An error hook's failure never hides the call's error.
			res.Action, res.Error = ActionError, f
			if h.Skips(ee.Kind) {
				res.Action, res.Error, res.Skipped = ActionContinue, nil, f
			}
			res.Status = &Status{Code: CodeName(callErr.Code()), Message: callErr.Message()}
		} else if h.Skips(ee.Kind) {
			res.Action, res.Skipped = ActionContinue, f
			res.setMessage(r, h.Key.Phase, current)
		} else {
			res.Action, res.Error = ActionError, f
			st := ee.Status(h.ID)
			res.Status = &Status{Code: CodeName(st.Code()), Message: st.Message()}
		}
	} else {
		switch out.Action {
		case engine.Continue:
			res.Action = ActionContinue
			if h.Key.Phase == engine.ErrorPhase {
				res.Status = &Status{Code: CodeName(callErr.Code()), Message: callErr.Message()}
				break
			}
			m := out.Message
			if m == nil {
				m = current
			}
			res.setMessage(r, h.Key.Phase, m)
		case engine.Reject:
			res.Action = ActionReject
			res.Status = &Status{Code: CodeName(out.Status.Code()), Message: out.Status.Message()}
		case engine.Respond:
			res.Action = ActionRespond
			res.message = out.Message
			res.Response = r.JSON(out.Message)
		}
	}
	res.Logs = logs.lines()
	return res, nil
}

func (res *Result) setMessage(r *Runner, phase engine.Phase, m proto.Message) {
	res.message = m
	if phase == engine.Post {
		res.Response = r.JSON(m)
	} else {
		res.Request = r.JSON(m)
	}
}

// CodeName returns a code's canonical name: "PERMISSION_DENIED".
func CodeName(c codes.Code) string { return engine.CodeName(c) }

// ParseCode reads a code as a case file gives it: a name as scripts give it
// (engine.CodeByName: "permission_denied"), Go's name for it in any case
// ("PermissionDenied", "CANCELED"), or its number ("7").
func ParseCode(s string) (codes.Code, bool) {
	if c, ok := engine.CodeByName(s); ok {
		return c, true
	}
	s = strings.TrimSpace(s)
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(s, c.String()) || s == strconv.Itoa(int(c)) {
			return c, true
		}
	}
	return 0, false
}

// logCapture is a slog handler that keeps what scripts log.
type logCapture struct {
	mu  sync.Mutex
	out []Log
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }

func (l *logCapture) Handle(_ context.Context, rec slog.Record) error {
	line := Log{Level: strings.ToLower(rec.Level.String()), Message: rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "value" {
			line.Value = jsonable(a.Value.Any())
		}
		return true
	})
	l.mu.Lock()
	l.out = append(l.out, line)
	l.mu.Unlock()
	return nil
}

func (l *logCapture) lines() []Log {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out == nil {
		return []Log{}
	}
	return append([]Log(nil), l.out...)
}

// jsonable returns v when it encodes as JSON, and its text otherwise.
func jsonable(v any) any {
	if _, err := json.Marshal(v); err != nil {
		return fmt.Sprint(v)
	}
	return v
}
