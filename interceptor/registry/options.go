package registry

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

type options struct {
	prefix   string
	logger   *slog.Logger
	hookable func(service string) bool
	// services are those WithServices named; nil by default.
	services     []string
	retryMin     time.Duration
	retryMax     time.Duration
	maxTimeout   time.Duration
	snapshotFile string
	onSync       func(synced bool)
	// build, when set, decodes and compiles a document in place of
	// BuildWithUtils; tests set it.
	build func(k Key, b []byte, maxTimeout time.Duration, utils *Utils) (*Hook, error)
}

// Option configures a Registry.
type Option func(*options)

func evaluateOptions(opts []Option) options {
	o := options{
		prefix:     DefaultPrefix,
		logger:     slog.Default(),
		hookable:   DefaultHookable,
		retryMin:   defaultRetryMin,
		retryMax:   defaultRetryMax,
		maxTimeout: DefaultMaxTimeout,
		onSync:     func(bool) {},
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// DefaultHookable admits every service except gRPC's own (grpc.*).
func DefaultHookable(service string) bool { return !strings.HasPrefix(service, "grpc.") }

// WithPrefix sets the etcd prefix (default "/apihooks/"); hooks live under
// prefix + "hooks/", at the root of the keyspace for an empty prefix.
func WithPrefix(p string) Option {
	return func(o *options) { o.prefix = p }
}

// WithLogger sets the logger for loaded, invalid and ignored hooks
// (default, and when l is nil, slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = cmp.Or(l, slog.Default()) }
}

// WithServices limits hooks to the named services; hooks for any other are
// ignored with a log line; with no names, every hook is. By default every
// service but grpc.* is hookable.
func WithServices(services ...string) Option {
	set := make(map[string]bool, len(services))
	for _, s := range services {
		set[s] = true
	}
	names := slices.Sorted(maps.Keys(set))
	return func(o *options) {
		o.hookable = func(s string) bool { return set[s] }
		o.services = names
	}
}

// notHookable says why hooks of service are ignored.
func (o *options) notHookable(service string) string {
	if o.services == nil {
		return fmt.Sprintf("its service %s is not hookable on this server (gRPC's own grpc.* services are hookable only where the server names them)", service)
	}
	return fmt.Sprintf("its service %s is not hookable on this server, which hooks %s", service, strings.Join(o.services, ", "))
}

// The bounds of the backoff between attempts to read etcd again.
const (
	defaultRetryMin = 100 * time.Millisecond
	defaultRetryMax = time.Second
)

// WithRetry sets the bounds of the backoff between attempts to read etcd
// again after a watch broke (default 100ms and 1s). A bound of zero or
// less means its default, and a maxWait below minWait is minWait.
func WithRetry(minWait, maxWait time.Duration) Option {
	return func(o *options) {
		o.retryMin = minWait
		if minWait <= 0 {
			o.retryMin = defaultRetryMin
		}
		o.retryMax = maxWait
		if maxWait <= 0 {
			o.retryMax = defaultRetryMax
		}
		o.retryMax = max(o.retryMax, o.retryMin)
	}
}

// WithMaxTimeout sets the largest timeout a document may set (default
// DefaultMaxTimeout; zero or less sets no limit); a document asking for
// more is invalid.
func WithMaxTimeout(d time.Duration) Option {
	return func(o *options) { o.maxTimeout = d }
}

// WithSnapshotFile keeps a copy of the documents in force in the file at
// path, rewritten after each change, so StartFromSnapshot can serve them
// while etcd is unreachable (none by default, and for an empty path).
func WithSnapshotFile(path string) Option {
	return func(o *options) { o.snapshotFile = path }
}

// WithOnSync sets a function called, from the registry's goroutines, each
// time the registry becomes synced with etcd (true) or loses etcd (false).
// It must not block. A nil f calls nothing.
func WithOnSync(f func(synced bool)) Option {
	return func(o *options) {
		if f == nil {
			f = func(bool) {}
		}
		o.onSync = f
	}
}
