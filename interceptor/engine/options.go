package engine

import (
	"log/slog"
	"time"
)

type options struct {
	logger   *slog.Logger
	timeout  time.Duration
	maxStack int
}

var defaultOptions = options{
	timeout:  DefaultTimeout,
	maxStack: 10000,
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
