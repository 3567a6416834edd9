package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Registry follows the hooks in etcd and serves them as Snapshots.
type Registry struct {
	client *clientv3.Client
	opts   options

	current atomic.Pointer[Snapshot]

	// entries is owned by the watch goroutine (and by Start before it).
	entries map[string]*entry

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// entry is what the registry holds for one etcd key.
type entry struct {
	// modRev is the revision of the latest value seen for the key.
	modRev int64
	// hook runs for the key: its latest valid version, or a broken
	// placeholder when it never had one; nil when the key covers no method
	// or its service is not hookable.
	hook *Hook
}

// New returns a registry reading hooks through client. Start loads them.
func New(client *clientv3.Client, opts ...Option) *Registry {
	r := &Registry{client: client, opts: evaluateOptions(opts), entries: map[string]*entry{}}
	r.current.Store(newSnapshot(0, nil, r.opts.hookable))
	return r
}

// Snapshot returns the hooks in force. It never returns nil.
func (r *Registry) Snapshot() *Snapshot { return r.current.Load() }

// Start reads every hook, then follows changes in the background until
// Close. ctx bounds the first read only: Start returns once it is in force,
// or with an error when etcd could not be read before ctx ended.
func (r *Registry) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return errors.New("registry: already started")
	}
	rev, err := r.reload(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.follow(wctx, rev+1)
	}()
	return nil
}

// Close stops following etcd and waits for the watch to end. The last
// snapshot stays in force.
func (r *Registry) Close() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// reload reads every hook at one revision and swaps in a snapshot of them.
func (r *Registry) reload(ctx context.Context) (int64, error) {
	dir := HooksDir(r.opts.prefix)
	resp, err := r.client.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("registry: read %s: %w", dir, err)
	}
	seen := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		r.put(string(kv.Key), kv.Value, kv.ModRevision)
	}
	for k := range r.entries {
		if !seen[k] {
			r.remove(k)
		}
	}
	r.publish(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// follow watches from rev until ctx ends, reading everything again whenever
// the watch breaks (compaction, cancellation by the server).
func (r *Registry) follow(ctx context.Context, rev int64) {
	dir := HooksDir(r.opts.prefix)
	backoff := r.opts.retryMin
	for ctx.Err() == nil {
		wch := r.client.Watch(clientv3.WithRequireLeader(ctx), dir, clientv3.WithPrefix(), clientv3.WithRev(rev))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				r.opts.logger.Warn("hook watch fell behind a compaction; reading every hook again",
					"revision", rev, "compacted", resp.CompactRevision)
				break
			}
			if err := resp.Err(); err != nil {
				r.opts.logger.Warn("hook watch ended; reading every hook again", "error", err)
				break
			}
			for _, ev := range resp.Events {
				switch ev.Type {
				case mvccpb.PUT:
					r.put(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision)
				case mvccpb.DELETE:
					r.remove(string(ev.Kv.Key))
					r.opts.logger.Info("hook deleted", "key", string(ev.Kv.Key))
				}
			}
			if len(resp.Events) > 0 {
				r.publish(resp.Header.Revision)
			}
			rev = resp.Header.Revision + 1
			backoff = r.opts.retryMin
		}
		// The watch ended: read everything again (this also catches up
		// after a compaction), retrying until etcd answers.
		for ctx.Err() == nil {
			got, err := r.reload(ctx)
			if err == nil {
				rev = got + 1
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.opts.logger.Warn("cannot read hooks from etcd; serving the last ones read", "error", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, r.opts.retryMax)
		}
	}
}

// put applies one stored value. An invalid value never replaces a valid
// version of the key; a key that never had one becomes a broken hook, so the
// methods it covers fail instead of running without it.
func (r *Registry) put(key string, value []byte, modRev int64) {
	old := r.entries[key]
	if old != nil && old.modRev == modRev {
		return // unchanged since the last read
	}
	log := r.opts.logger.With("key", key, "revision", modRev)
	k, err := ParseKey(r.opts.prefix, key)
	if err == nil {
		var h *Hook
		if h, err = Build(k, value); err == nil {
			h.Revision = modRev
			if !r.opts.hookable(k.Service) && k.Service != Wildcard {
				log.Warn("hook ignored: its service is not hookable on this server", "service", k.Service)
				h = nil
			} else {
				log.Info("hook loaded", "enabled", h.Doc.IsEnabled())
			}
			r.entries[key] = &entry{modRev: modRev, hook: h}
			return
		}
	}
	if k.Service == "" {
		log.Error("hook key ignored: it names no method", "error", err)
		r.entries[key] = &entry{modRev: modRev}
		return
	}
	if !r.opts.hookable(k.Service) && k.Service != Wildcard {
		log.Warn("invalid hook ignored: its service is not hookable on this server", "error", err)
		r.entries[key] = &entry{modRev: modRev}
		return
	}
	if old != nil && old.hook != nil && old.hook.Err == nil {
		log.Error("invalid hook document; the previous version keeps running",
			"error", err, "running_revision", old.hook.Revision)
		old.modRev = modRev
		return
	}
	log.Error("invalid hook document; calls it covers fail until it is fixed", "error", err)
	id := strings.TrimPrefix(key, HooksDir(r.opts.prefix))
	r.entries[key] = &entry{modRev: modRev, hook: &Hook{Key: k, ID: id, Revision: modRev, Err: err}}
}

func (r *Registry) remove(key string) { delete(r.entries, key) }

// publish swaps in a snapshot of the current entries.
func (r *Registry) publish(rev int64) {
	hooks := make([]*Hook, 0, len(r.entries))
	for _, e := range r.entries {
		if e.hook != nil {
			hooks = append(hooks, e.hook)
		}
	}
	r.current.Store(newSnapshot(rev, hooks, r.opts.hookable))
}
