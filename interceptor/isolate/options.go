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
		startTimeout: 10 * time.Second,
		args:         []string{WorkerArg},
	}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.workers < 1 {
		o.workers = 1
	}
	return o
}

// WithWorkers sets how many worker processes the pool keeps at most, so how
// many runs go on at once (default GOMAXPROCS).
func WithWorkers(n int) Option {
	return func(o *options) { o.workers = n }
}

// WithMemoryLimit sets how much memory a worker may take beyond its
// baseline (default DefaultMemoryLimit); see ServeWorker. Zero or less sets
// no limit.
func WithMemoryLimit(bytes int64) Option {
	return func(o *options) { o.memoryLimit = bytes }
}

// WithTimeout sets the timeout of runs whose Call names none (default
// engine.DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithStartTimeout bounds starting a worker process (default 10s).
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = d }
}

// WithCommand sets the worker command: a program that calls ServeWorker
// with its standard input and output (default: this program, os.Executable,
// with the argument WorkerArg).
func WithCommand(path string, args ...string) Option {
	return func(o *options) { o.path, o.args = path, args }
}

// WithLogger sets the logger for the lines scripts log, the workers'
// standard error, and their starts and deaths.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithQueueWait sets how long a run waits for a free worker when every
// worker is busy, before it fails with Kind Overloaded (default
// engine.DefaultQueueWait).
func WithQueueWait(d time.Duration) Option {
	return func(o *options) { o.queueWait = d }
}
