package engine

import (
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

// DefaultQueueWait is how long a run waits for room by default when the
// engine's runs in flight are at their limit.
const DefaultQueueWait = 100 * time.Millisecond

var defaultOptions = options{
	timeout:   DefaultTimeout,
	maxStack:  10000,
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
	o.maxRuns = max(1, o.maxRuns)
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

// WithMaxRuns bounds the runs in flight at once, counting runs abandoned at
// their timeout until they really end (default DefaultMaxRuns).
func WithMaxRuns(n int) Option {
	return func(o *options) { o.maxRuns = n }
}

// WithQueueWait sets how long a run waits for room when the runs in flight
// are at their limit before it fails with Kind Overloaded (default
// DefaultQueueWait; zero fails at once).
func WithQueueWait(d time.Duration) Option {
	return func(o *options) { o.queueWait = d }
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
// by default); past it they throw a RangeError. See budget for the list.
func WithMemoryBudget(bytes int64) Option {
	return func(o *options) { o.memory = bytes }
}
