package engine

import (
	"log/slog"
	"time"
)

type options struct {
	logger   *slog.Logger
	timeout  time.Duration
	maxStack int
	memory   int64
}

var defaultOptions = options{
	timeout:  DefaultTimeout,
	maxStack: 10000,
	memory:   DefaultMemoryBudget,
}

// Option configures an Engine.
type Option func(*options)

func evaluateOptions(opts []Option) options {
	o := defaultOptions
	o.logger = slog.Default()
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLogger sets the logger that scripts' ctx.log and bridge write to.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithTimeout sets the timeout of runs whose Call names none.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithMaxCallStackSize bounds the depth of JavaScript calls; deeper
// recursion throws a RangeError.
func WithMaxCallStackSize(n int) Option {
	return func(o *options) { o.maxStack = n }
}

// WithMemoryBudget bounds what the built-in functions that allocate in
// proportion to an argument ("x".repeat(n), new ArrayBuffer(n),
// JSON.stringify...) may build in one run, in bytes (DefaultMemoryBudget
// by default); past it they throw a RangeError. See budget for the list.
func WithMemoryBudget(bytes int64) Option {
	return func(o *options) { o.memory = bytes }
}
