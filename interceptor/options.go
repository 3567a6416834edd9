package interceptor

import (
	"log/slog"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

type options struct {
	engine     *engine.Engine
	logger     *slog.Logger
	quarantine *Quarantine
	// observer, when set, is told of every hook run: see observe.go.
	observer Observer
	// Process isolation: see isolation.go.
	process   Runner
	isolation Isolation
	isolated  func(*registry.Hook) bool
	// responseTypes, when set, replaces the lookup of response types in
	// the descriptors linked into the program.
	responseTypes func(method string) protoreflect.MessageType
	// calls, when set, are the methods hooks may call (ctx.call), and
	// caller makes those calls.
	calls  *Calls
	caller engine.Caller
}

// Option configures the interceptors.
type Option func(*options)

func evaluateOptions(opts []Option) *options {
	o := &options{}
	for _, f := range opts {
		f(o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.engine == nil {
		// Nobody closes this engine: its idle workers exit on their own.
		// An embedder that wants to close it passes its own (WithEngine).
		engine.BoundRegexpMatches()
		o.engine = engine.New(engine.WithLogger(o.logger))
	}
	if o.quarantine == nil {
		o.quarantine = NewQuarantine(DefaultQuarantineAfter, DefaultQuarantineWindow, DefaultQuarantineFor)
	}
	if o.isolated == nil {
		o.isolated = asksForProcess
	}
	return o
}

// WithEngine sets the engine that runs scripts (default, and when e is
// nil: engine.New with the interceptor's logger and engine.DefaultTimeout).
func WithEngine(e *engine.Engine) Option {
	return func(o *options) { o.engine = e }
}

// WithLogger sets the logger for skipped and failed hooks (default, and
// when l is nil, slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithQuarantine sets the Quarantine that takes runaway hooks out of
// service (default, and when q is nil: one of the interceptor's own, with
// DefaultQuarantineAfter, DefaultQuarantineWindow and DefaultQuarantineFor).
// Give the unary and the stream interceptor the same one.
func WithQuarantine(q *Quarantine) Option {
	return func(o *options) { o.quarantine = q }
}

// WithResponseTypes sets where the response type of a method comes from,
// the type of a pre-hook's or an error hook's response answer: types(method)
// is called on each hooked call and returns nil when the method is not
// known. By default, and when types is nil, the type is looked up, once
// per method, in the descriptors linked into the program. A proxy that
// learns its descriptors at run time supplies its own.
func WithResponseTypes(types func(fullMethod string) protoreflect.MessageType) Option {
	return func(o *options) { o.responseTypes = types }
}
