package events

import (
	"log/slog"
	"time"
)

// DefaultPrefix is the etcd key prefix used when WithPrefix is not given.
const DefaultPrefix = "/apihooks/"

// DefaultRequestTimeout bounds each etcd request when WithRequestTimeout is
// not given.
const DefaultRequestTimeout = 5 * time.Second

type options struct {
	prefix         string
	logger         *slog.Logger
	now            func() time.Time
	requestTimeout time.Duration
}

// Option configures a Service.
type Option func(*options)

// WithPrefix sets the etcd key prefix; events are stored under
// prefix+"events/". The default is DefaultPrefix. A prefix that does not end
// in "/" is used as given.
func WithPrefix(p string) Option {
	return func(o *options) { o.prefix = p }
}

// WithLogger sets the logger for events that cannot be decoded and for etcd
// failures. The default is slog.Default(). A nil logger is ignored.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithClock sets the clock used for created_at. The default is time.Now.
// A nil clock is ignored.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithRequestTimeout bounds each etcd read or write (not the watch of
// StreamEvents). When it expires before the caller's own deadline, the call
// fails with UNAVAILABLE. The default is DefaultRequestTimeout; d <= 0
// leaves only the caller's deadline.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}
