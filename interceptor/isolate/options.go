package isolate

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// DefaultMemoryLimit is a worker's memory limit unless WithMemoryLimit sets
// another.
const DefaultMemoryLimit = 64 << 20

// DefaultStartTimeout bounds starting a worker process unless
// WithStartTimeout sets another bound.
const DefaultStartTimeout = 10 * time.Second

// WorkerArg is the argument that makes apihooksd a hook worker.
const WorkerArg = "hook-worker"

type options struct {
	queueWait    time.Duration
	workers      int
	memoryLimit  int64
	timeout      time.Duration
	startTimeout time.Duration
	path         string
	args         []string
	logger       *slog.Logger
}

// Option configures a Pool.
type Option func(*options)

func evaluateOptions(opts []Option) options {
	o := options{
		queueWait:    engine.DefaultQueueWait,
		workers:      runtime.GOMAXPROCS(0),
		memoryLimit:  DefaultMemoryLimit,
		timeout:      engine.DefaultTimeout,
		startTimeout: DefaultStartTimeout,
		args:         []string{WorkerArg},
	}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// WithWorkers sets how many worker processes the pool keeps at most, so how
// many runs go on at once (default GOMAXPROCS; zero or less means the
// default).
func WithWorkers(n int) Option {
	return func(o *options) { o.workers = positiveOr(n, runtime.GOMAXPROCS(0)) }
}

// WithMemoryLimit sets how much memory a worker may take beyond its
// baseline (default DefaultMemoryLimit); see ServeWorker. Zero or less sets
// no limit.
func WithMemoryLimit(bytes int64) Option {
	return func(o *options) { o.memoryLimit = bytes }
}

// WithTimeout sets the time limit of runs whose Call names none (default
// engine.DefaultTimeout; zero or less means the default).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = positiveOr(d, engine.DefaultTimeout) }
}

// WithStartTimeout bounds starting a worker process (default
// DefaultStartTimeout; zero or less means the default).
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = positiveOr(d, DefaultStartTimeout) }
}

// positiveOr returns v when it is positive, def otherwise: the value of an
// option for which zero would fail every run.
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// WithCommand sets the worker command: a program that calls ServeWorker
// with its standard input and output (default: this program, os.Executable,
// with the argument WorkerArg; an empty path names this program, with args).
func WithCommand(path string, args ...string) Option {
	return func(o *options) { o.path, o.args = path, args }
}

// WithLogger sets the logger for the lines scripts log, the workers'
// standard error, and their starts and deaths (default, and when l is nil,
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithQueueWait sets how long a run waits for a free worker when every
// worker is busy, before it fails with Kind Overloaded (default
// engine.DefaultQueueWait; zero or less fails at once).
func WithQueueWait(d time.Duration) Option {
	return func(o *options) { o.queueWait = d }
}
