package engine

import (
	"cmp"
	"log/slog"
	"time"
)

type options struct {
	logger    *slog.Logger
	timeout   time.Duration
	maxStack  int
	maxRuns   int
	queueWait time.Duration
	heapLimit int64
	memory    int64
}

// DefaultMaxCallStackSize is the default bound on the depth of JavaScript
// calls.
const DefaultMaxCallStackSize = 10000

// DefaultQueueWait is how long a run waits for room by default when the
// engine's runs in flight are at their limit.
const DefaultQueueWait = 100 * time.Millisecond

var defaultOptions = options{
	timeout:   DefaultTimeout,
	maxStack:  DefaultMaxCallStackSize,
	queueWait: DefaultQueueWait,
	memory:    DefaultMemoryBudget,
}

// Option configures an Engine.
type Option func(*options)

func evaluateOptions(opts []Option) options {
	o := defaultOptions
	o.logger = slog.Default()
	o.maxRuns = DefaultMaxRuns()
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLogger sets the logger that scripts' ctx.log and bridge write to
// (default, and when l is nil, slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = cmp.Or(l, slog.Default()) }
}

// WithTimeout sets the time limit of runs whose Call names none (default
// DefaultTimeout; zero or less means the default).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = positiveOr(d, DefaultTimeout) }
}

// WithMaxCallStackSize bounds the depth of JavaScript calls; deeper
// recursion throws a RangeError (default DefaultMaxCallStackSize; zero or
// less means the default).
func WithMaxCallStackSize(n int) Option {
	return func(o *options) { o.maxStack = positiveOr(n, DefaultMaxCallStackSize) }
}

// WithMaxRuns bounds the runs in flight at once, counting runs abandoned at
// their timeout until they really end (default DefaultMaxRuns; zero or
// less means the default).
func WithMaxRuns(n int) Option {
	return func(o *options) { o.maxRuns = positiveOr(n, DefaultMaxRuns()) }
}

// WithQueueWait sets how long a run waits for room when the runs in flight
// are at their limit before it fails with Kind Overloaded (default
// DefaultQueueWait; zero or less fails at once).
func WithQueueWait(d time.Duration) Option {
	return func(o *options) { o.queueWait = max(d, 0) }
}

// WithHeapLimit sets the size of the process's heap past which the engine
// interrupts the longest-running run, again every few milliseconds while
// the heap stays over it (none by default; zero or less turns it off). It
// bounds, loosely, what no built-in's budget sees, such as a string doubled
// with the + operator; see DefaultHeapLimit.
func WithHeapLimit(bytes int64) Option {
	return func(o *options) { o.heapLimit = bytes }
}

// WithMemoryBudget bounds what the built-in functions that allocate in
// proportion to an argument ("x".repeat(n), new ArrayBuffer(n),
// JSON.stringify...) may build in one run, in bytes (DefaultMemoryBudget
// by default; zero or less means the default); past it they throw a
// RangeError. See budget for the list.
func WithMemoryBudget(bytes int64) Option {
	return func(o *options) { o.memory = positiveOr(bytes, DefaultMemoryBudget) }
}

// positiveOr returns v when it is positive, def otherwise: the value of an
// option for which zero would fail every run.
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
