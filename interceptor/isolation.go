package interceptor

import (
	"context"
	"errors"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Runner runs a compiled script for a call, with the contract of
// engine.Engine.Run: *engine.Engine runs it in the server's process,
// *isolate.Pool in a worker process.
type Runner interface {
	Run(ctx context.Context, s *engine.Script, call *engine.Call) (engine.Outcome, error)
}

// Isolation says where hooks run.
type Isolation string

// The isolation modes of a server.
const (
	// InProcess runs hooks in the server's process, except those that ask
	// for process isolation.
	InProcess Isolation = "inprocess"
	// Process runs every hook in a worker process.
	Process Isolation = "process"
)

// WithProcessRunner sets the runner of hooks that run in a worker process
// (an *isolate.Pool). Without one, such hooks fail with INTERNAL.
func WithProcessRunner(r Runner) Option {
	return func(o *options) { o.process = r }
}

// WithIsolation sets where hooks run (default InProcess).
func WithIsolation(mode Isolation) Option {
	return func(o *options) { o.isolation = mode }
}

// WithProcessIsolated runs the hooks for which isolated reports true in a
// worker process, whatever the server's mode (default: those whose
// document says "isolation": "process"; a function that always reports
// false runs them in process, as on a server without a pool).
func WithProcessIsolated(isolated func(*registry.Hook) bool) Option {
	return func(o *options) { o.isolated = isolated }
}

// asksForProcess reports whether hook's document asks for a worker
// process.
func asksForProcess(hook *registry.Hook) bool { return hook.Isolation == registry.Process }

// runner returns the runner of hook.
func (h *hooks) runner(hook *registry.Hook) Runner {
	if h.opts.isolation != Process && !h.opts.isolated(hook) {
		return h.opts.engine
	}
	if h.opts.process == nil {
		return noProcessRunner{}
	}
	return h.opts.process
}

// noProcessRunner fails every run: the server has no process runner.
type noProcessRunner struct{}

var errNoProcessRunner = errors.New("the hook must run in a worker process, and this server has no process runner")

func (noProcessRunner) Run(context.Context, *engine.Script, *engine.Call) (engine.Outcome, error) {
	return engine.Outcome{}, errNoProcessRunner
}
