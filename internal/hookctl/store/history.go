package store

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// History is the versions of a hook that etcd still holds.
type History struct {
	// Versions are newest first; Versions[0] is the current one.
	Versions []Entry
	// Complete is true when the oldest version is the one that created the
	// key (Version 1).
	Complete bool
	// Truncated is true when the walk stopped at the limit asked for.
	Truncated bool
	// Compacted is true when older versions exist but etcd compacted them:
	// the versions before Versions[len-1] (Missing of them) are gone.
	Compacted bool
	Missing   int64
	// CompactRevision is etcd's compaction point, when known.
	CompactRevision int64
	// DeletedAt is the revision that deleted the hook, when it is deleted:
	// Versions[0] is then its last version, not a current one.
	DeletedAt int64
}

// GetAt reads the version of a hook in force at revision rev. It returns
// ErrNotFound when the hook did not exist then, and a *CompactedError when
// etcd no longer holds that revision.
func (s *Store) GetAt(ctx context.Context, k registry.Key, rev int64) (*Entry, error) {
	e, _, err := s.getAt(ctx, k, rev)
	return e, err
}

// History walks back from the current version of a hook, one version at a
// time (each read at the revision just before the last one's), until the
// version that created the key, a compacted revision, or limit versions
// (0: no limit).
func (s *Store) History(ctx context.Context, k registry.Key, limit int) (*History, error) {
	cur, _, err := s.Get(ctx, k)
	var deletedAt int64
	if errors.Is(err, ErrNotFound) {
		cur, deletedAt, err = s.lastDeleted(ctx, k)
	}
	if err != nil {
		return nil, err
	}
	h := &History{Versions: []Entry{*cur}, DeletedAt: deletedAt}
	for {
		last := h.Versions[len(h.Versions)-1]
		if last.Version <= 1 {
			h.Complete = true
			return h, nil
		}
		if limit > 0 && len(h.Versions) >= limit {
			h.Truncated = true
			return h, nil
		}
		prev, err := s.GetAt(ctx, k, last.ModRevision-1)
		var ce *CompactedError
		switch {
		case errors.As(err, &ce):
			h.Compacted = true
			h.Missing = last.Version - 1
			h.CompactRevision = ce.CompactRevision
			return h, nil
		case errors.Is(err, ErrNotFound):
			// Version > 1 says an older version exists; etcd disagreeing
			// means the key's history is not what it reports.
			h.Complete = true
			return h, nil
		case err != nil:
			return nil, err
		}
		h.Versions = append(h.Versions, *prev)
	}
}

// lastDeleted finds the last deletion of a hook that etcd still holds in
// its history, and returns the version it deleted with the revision that
// deleted it; ErrNotFound when there is none. It watches the key's
// deletions from the start of etcd's history up to now.
func (s *Store) lastDeleted(ctx context.Context, k registry.Key) (*Entry, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	path := s.Path(k)
	head, err := s.client.Get(ctx, path, clientv3.WithCountOnly())
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	now := head.Header.Revision
	start := int64(1)
	for {
		last, at, compacted, err := s.scanDeletes(ctx, path, start, now)
		if err != nil {
			return nil, 0, err
		}
		if compacted > 0 {
			start = compacted
			continue
		}
		if last == nil {
			return nil, 0, ErrNotFound
		}
		e := s.entry(string(last.Key), last.Value, last.ModRevision, last.CreateRevision, last.Version)
		return &e, at, nil
	}
}

// scanDeletes watches the deletions of path from start until revision now,
// returning the last deleted version and the revision that deleted it, or
// the compaction revision to start from instead.
func (s *Store) scanDeletes(ctx context.Context, path string, start, now int64) (*mvccpb.KeyValue, int64, int64, error) {
	var last *mvccpb.KeyValue
	var at int64
	compacted, err := s.watchDeletes(ctx, []string{path}, []clientv3.OpOption{clientv3.WithPrevKV()}, start, now, func(ev *clientv3.Event) {
		if ev.PrevKv != nil {
			last, at = ev.PrevKv, ev.Kv.ModRevision
		}
	})
	return last, at, compacted, err
}

// progressPoll is how often watchDeletes asks etcd whether its watches have
// caught up: etcd drops the request while they have not.
const progressPoll = 50 * time.Millisecond

// watchDeletes watches the deletions of each of keys (with opts, such as
// clientv3.WithPrefix) from revision start until revision now, and calls
// seen with each, in revision order for each key. It returns the
// compaction revision to start from instead when etcd has compacted start.
// etcd records no deletion anywhere but in its history, which only a watch
// reads.
func (s *Store) watchDeletes(ctx context.Context, keys []string, opts []clientv3.OpOption, start, now int64, seen func(*clientv3.Event)) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts = append([]clientv3.OpOption{clientv3.WithRev(start), clientv3.WithFilterPut(), clientv3.WithProgressNotify()}, opts...)
	wchs := make([]clientv3.WatchChan, len(keys))
	for i, k := range keys {
		wchs[i] = s.client.Watch(wctx, k, opts...)
	}
	// A progress notification says the watches have caught up with now,
	// after their events: ask for one until it comes (etcd answers only
	// once every watch of the stream has caught up, and comes to each).
	tick := time.NewTicker(progressPoll)
	defer tick.Stop()
	for _, wch := range wchs {
		for caughtUp := false; !caughtUp; {
			select {
			case <-ctx.Done():
				return 0, s.wrap(ctx.Err())
			case <-tick.C:
				_ = s.client.RequestProgress(wctx)
			case resp, ok := <-wch:
				switch {
				case !ok && ctx.Err() != nil:
					return 0, s.wrap(ctx.Err())
				case !ok:
					return 0, s.wrap(errors.New("the watch of etcd's history ended early"))
				case resp.CompactRevision > 0:
					return resp.CompactRevision, nil
				case resp.Err() != nil:
					return 0, s.wrap(resp.Err())
				}
				for _, ev := range resp.Events {
					if ev.Type == mvccpb.DELETE && ev.Kv.ModRevision <= now {
						seen(ev)
					}
				}
				caughtUp = resp.IsProgressNotify() && resp.Header.Revision >= now
			}
		}
	}
	return 0, nil
}
