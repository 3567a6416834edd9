package store

import (
	"context"
	"errors"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// CacheEntry is one key under the response cache directory, decoded as
// the daemon's registry decodes it.
type CacheEntry struct {
	Path        string
	Key         registry.CacheKey
	Raw         []byte
	ModRevision int64
	// Config is the configuration when the key and document are valid;
	// Err says what is wrong otherwise.
	Config *registry.CacheConfig
	Err    error
}

func (s *Store) cacheEntry(path string, value []byte, mod int64) CacheEntry {
	e := CacheEntry{Path: path, Raw: value, ModRevision: mod}
	e.Key, e.Err = registry.ParseCacheKey(s.cfg.Prefix, path)
	if e.Err == nil {
		e.Config, e.Err = registry.BuildCache(e.Key, value)
	}
	return e
}

// Caches returns every response cache configuration, sorted by key, with
// the revision read at.
func (s *Store) Caches(ctx context.Context) ([]CacheEntry, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, registry.CacheDir(s.cfg.Prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	out := make([]CacheEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, s.cacheEntry(string(kv.Key), kv.Value, kv.ModRevision))
	}
	slices.SortFunc(out, func(a, b CacheEntry) int { return strings.Compare(a.Path, b.Path) })
	return out, resp.Header.Revision, nil
}

// ErrNoCache is returned for a method with no response cache
// configuration in etcd.
var ErrNoCache = errors.New("no response cache configuration in etcd")

// Cache returns a method's response cache configuration, with the
// revision read at; ErrNoCache when it has none.
func (s *Store) Cache(ctx context.Context, k registry.CacheKey) (*CacheEntry, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, k.Path(s.cfg.Prefix))
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, ErrNoCache
	}
	kv := resp.Kvs[0]
	e := s.cacheEntry(string(kv.Key), kv.Value, kv.ModRevision)
	return &e, resp.Header.Revision, nil
}
