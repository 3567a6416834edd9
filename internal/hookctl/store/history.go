package store

import (
	"context"
	"errors"

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
	if err != nil {
		return nil, err
	}
	h := &History{Versions: []Entry{*cur}}
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
