package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Dir returns the etcd prefix of the daemons' records under prefix.
func Dir(prefix string) string { return prefix + "daemons/" }

// Record is what a daemon publishes about itself.
type Record struct {
	// ID names the daemon; its record is at Dir(prefix)+ID.
	ID string `json:"id"`
	// Address is its gRPC listen address.
	Address string `json:"address"`
	// Version is the daemon's build (module version and VCS revision).
	Version string `json:"version"`
	// Isolation is where its hooks run by default: inprocess or process.
	Isolation string `json:"isolation"`
	// Revision is the etcd revision of the hooks in force.
	Revision int64 `json:"revision"`
	// Synced is false while the daemon cannot follow etcd.
	Synced bool `json:"synced"`
	// Held is true while a staged apply is in progress: changes after
	// Revision wait for it to complete.
	Held bool `json:"held,omitempty"`
	// Broken lists the hooks with no valid version, as "id: error".
	Broken []string `json:"broken,omitempty"`
	// Invalid lists the hooks whose newest document the daemon refused
	// while an earlier version still runs, as "id: revision N still runs:
	// error".
	Invalid []string `json:"invalid,omitempty"`
	// Quarantined lists the hooks taken out of service, as "id: reason".
	Quarantined []string `json:"quarantined,omitempty"`
	// Ignored lists the hooks (and response cache configurations) the
	// daemon does not run although they are in etcd, as "id: reason": a
	// service it does not hook, or, in proxy mode, a method the backend
	// does not serve.
	Ignored []string `json:"ignored,omitempty"`
	// StartedAt is when the daemon started.
	StartedAt time.Time `json:"startedAt"`
	// Stopping is true once the daemon has begun to shut down: it takes
	// no new calls, and will load no more changes.
	Stopping bool `json:"stopping,omitempty"`
}

// StoppingHold is how long, at least, a daemon that shuts down keeps its
// record saying so before the record goes, within its shutdown deadline:
// long enough for a reader that polls (hookctl --wait reads every 100 ms)
// to see why it went.
const StoppingHold = 500 * time.Millisecond

// Version returns this binary's version for a Record: the main module's
// version and, when built from a checkout, its VCS revision.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

type options struct {
	prefix   string
	ttl      time.Duration
	interval time.Duration
	logger   *slog.Logger
}

// Option configures Register.
type Option func(*options)

// WithPrefix sets the etcd prefix (default "/apihooks/").
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithTTL sets the lease's time to live: how long a record outlives a
// daemon that died without closing it (default 10s).
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithInterval sets how often the daemon's state is checked for changes
// (default 200ms); a change is written at most once per interval.
func WithInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithLogger sets the logger for etcd failures.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Registration keeps a daemon's record in etcd until Close.
type Registration struct {
	client *clientv3.Client
	key    string
	state  func() Record
	opts   options
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	// revokeBy, when set, is when the lease's revoke must be over.
	revokeBy atomic.Pointer[time.Time]
	// stopping is set by CloseBy; written is signalled when a record
	// that says so is written, and kick asks the session to write now.
	stopping    atomic.Bool
	kick        chan struct{}
	written     chan struct{}
	writtenOnce sync.Once
}

// Register starts keeping the record that state returns under
// Dir(prefix)+id, attached to a lease kept alive until Close. state is
// called every interval, from a goroutine of the registration; the record is
// written when it changed. When the lease is lost (etcd unreachable past the
// TTL), a new one is granted and the record written again.
func Register(client *clientv3.Client, id string, state func() Record, opts ...Option) *Registration {
	o := options{prefix: "/apihooks/", ttl: 10 * time.Second, interval: 200 * time.Millisecond, logger: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registration{client: client, key: Dir(o.prefix) + id, state: state, opts: o, cancel: cancel, done: make(chan struct{}),
		kick: make(chan struct{}, 1), written: make(chan struct{})}
	go r.run(ctx)
	return r
}

// Key returns the etcd key of the record.
func (r *Registration) Key() string { return r.key }

// Close stops keeping the record and revokes its lease, so the record
// disappears at once (when etcd answers within a second).
func (r *Registration) Close() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}

// CloseBy is Close for a daemon that shuts down by deadline: its record
// first says it is stopping, for StoppingHold (or until the deadline, if
// sooner), then goes, its revoke given until the deadline at most.
func (r *Registration) CloseBy(deadline time.Time) {
	r.revokeBy.Store(&deadline)
	r.stopping.Store(true)
	select {
	case r.kick <- struct{}{}:
	default:
	}
	// A record etcd does not take within the hold (etcd down) is not
	// waited for longer.
	hold := time.NewTimer(min(StoppingHold, time.Until(deadline)))
	defer hold.Stop()
	select {
	case <-r.written:
		hold.Reset(min(StoppingHold, time.Until(deadline)))
		select {
		case <-hold.C:
		case <-r.done:
		}
	case <-hold.C:
	case <-r.done:
	}
	r.Close()
}

func (r *Registration) run(ctx context.Context) {
	defer close(r.done)
	backoff := r.opts.interval
	for ctx.Err() == nil {
		written, err := r.session(ctx)
		if written {
			// A record that was kept is a new start: the next failure
			// is retried soon again.
			backoff = r.opts.interval
		}
		if err != nil && ctx.Err() == nil {
			r.opts.logger.Warn("cannot keep the daemon's record in etcd; retrying", "key", r.key, "error", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session grants a lease, writes the record with it and keeps both until
// ctx ends (then revokes the lease) or the lease is lost. written says
// whether the record was written.
func (r *Registration) session(ctx context.Context) (written bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, r.opts.ttl)
	lease, err := r.client.Grant(gctx, int64(max(r.opts.ttl/time.Second, 2)))
	cancel()
	if err != nil {
		return false, fmt.Errorf("grant lease: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if by := r.revokeBy.Load(); by != nil {
			var cancelBy context.CancelFunc
			rctx, cancelBy = context.WithDeadline(rctx, *by)
			defer cancelBy()
		}
		_, _ = r.client.Revoke(rctx, lease.ID)
	}()
	kctx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	alive, err := r.client.KeepAlive(kctx, lease.ID)
	if err != nil {
		return false, fmt.Errorf("keep lease alive: %w", err)
	}
	var last []byte
	write := func() error {
		rec := r.state()
		rec.Stopping = r.stopping.Load()
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if !slices.Equal(b, last) {
			pctx, cancel := context.WithTimeout(ctx, r.opts.ttl)
			defer cancel()
			if _, err := r.client.Put(pctx, r.key, string(b), clientv3.WithLease(lease.ID)); err != nil {
				return fmt.Errorf("write %s: %w", r.key, err)
			}
			last = b
		}
		if rec.Stopping {
			r.writtenOnce.Do(func() { close(r.written) })
		}
		return nil
	}
	if err := write(); err != nil {
		return false, err
	}
	tick := time.NewTicker(r.opts.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case _, ok := <-alive:
			if !ok {
				return true, fmt.Errorf("lease %x lost", lease.ID)
			}
		case <-tick.C:
			if err := write(); err != nil {
				return true, err
			}
		case <-r.kick:
			if err := write(); err != nil {
				return true, err
			}
		}
	}
}

// List reads every daemon's record under prefix, ordered by ID, with the
// revision read at. Records that cannot be decoded are skipped.
func List(ctx context.Context, client *clientv3.Client, prefix string) ([]Record, int64, error) {
	resp, err := client.Get(ctx, Dir(prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, err
	}
	out := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec Record
		if json.Unmarshal(kv.Value, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, resp.Header.Revision, nil
}
