package registry

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// Chain is the ordered hooks of one method, and its response cache
// configuration. It is shared and read-only.
type Chain struct {
	// Pre, Post and Error are the hooks to run, in order: ascending Order,
	// ties broken by key. Disabled hooks are left out; broken ones are in.
	Pre, Post, Error []*Hook
	// Cache is the method's response cache configuration, or nil when its
	// responses are not cached.
	Cache *CacheConfig
}

// Snapshot is an immutable view of every hook at one etcd revision.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
	methods  map[string]*Chain // by full method, "/svc/Method"
	services map[string]*Chain // by service, for methods with no hook of their own
	global   *Chain
	hookable func(service string) bool
	hooks    []*Hook
	caches   map[string]*CacheConfig // by full method
}

// Lookup returns the hooks and cache configuration of a full method
// ("/events.v1.EventService/SendEvent"), or nil when it has neither. It
// takes no lock and does not allocate.
func (s *Snapshot) Lookup(fullMethod string) *Chain {
	if s == nil || (len(s.hooks) == 0 && len(s.caches) == 0) {
		return nil
	}
	if c, ok := s.methods[fullMethod]; ok {
		return c
	}
	svc := serviceOf(fullMethod)
	if c, ok := s.services[svc]; ok {
		return c
	}
	if s.global != nil && s.hookable(svc) {
		return s.global
	}
	return nil
}

// Hooks returns every hook in the snapshot, enabled or not, broken or not,
// ordered by key. The slice must not be changed.
func (s *Snapshot) Hooks() []*Hook { return s.hooks }

// Cache returns the response cache configuration of a full method, or nil
// when its responses are not cached.
func (s *Snapshot) Cache(fullMethod string) *CacheConfig {
	if s == nil {
		return nil
	}
	return s.caches[fullMethod]
}

// Caches returns the response cache configurations of the snapshot,
// ordered by method.
func (s *Snapshot) Caches() []*CacheConfig {
	if s == nil {
		return nil
	}
	out := slices.Collect(maps.Values(s.caches))
	slices.SortFunc(out, func(a, b *CacheConfig) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return out
}

// serviceOf returns the service of "/svc/Method".
func serviceOf(fullMethod string) string {
	fullMethod = strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(fullMethod, '/'); i >= 0 {
		return fullMethod[:i]
	}
	return fullMethod
}

// newSnapshot builds a snapshot of hooks and caches (by full method), which
// hookable has filtered.
func newSnapshot(rev int64, hooks []*Hook, caches map[string]*CacheConfig, hookable func(string) bool) *Snapshot {
	slices.SortFunc(hooks, func(a, b *Hook) int { return strings.Compare(a.ID, b.ID) })
	s := &Snapshot{
		Revision: rev,
		methods:  map[string]*Chain{},
		services: map[string]*Chain{},
		hookable: hookable,
		hooks:    hooks,
		caches:   caches,
	}
	var global []*Hook
	byService := map[string][]*Hook{}
	byMethod := map[string][]*Hook{}
	for _, h := range hooks {
		if h.Doc != nil && !h.Doc.IsEnabled() {
			continue
		}
		switch {
		case h.Key.Service == Wildcard:
			global = append(global, h)
		case h.Key.Method == Wildcard:
			byService[h.Key.Service] = append(byService[h.Key.Service], h)
		default:
			m := "/" + h.Key.Service + "/" + h.Key.Method
			byMethod[m] = append(byMethod[m], h)
		}
	}
	for m, hs := range byMethod {
		svc := serviceOf(m)
		s.methods[m] = newChain(hs, byService[svc], global)
	}
	for svc, hs := range byService {
		s.services[svc] = newChain(hs, global)
	}
	if len(global) > 0 {
		s.global = newChain(global)
	}
	// A cached method has a chain of its own, so that Lookup still finds
	// everything in one map lookup.
	for m, cfg := range caches {
		c, ok := s.methods[m]
		if !ok {
			c = newChain(byService[serviceOf(m)], global)
		}
		c.Cache = cfg
		s.methods[m] = c
	}
	return s
}

// newChain merges hook lists into one chain per phase.
func newChain(lists ...[]*Hook) *Chain {
	c := &Chain{}
	for _, l := range lists {
		for _, h := range l {
			switch h.Key.Phase {
			case engine.Post:
				c.Post = append(c.Post, h)
			case engine.ErrorPhase:
				c.Error = append(c.Error, h)
			default:
				c.Pre = append(c.Pre, h)
			}
		}
	}
	byOrder := func(a, b *Hook) int {
		return cmp.Or(cmp.Compare(a.order(), b.order()), strings.Compare(a.ID, b.ID))
	}
	slices.SortFunc(c.Pre, byOrder)
	slices.SortFunc(c.Post, byOrder)
	slices.SortFunc(c.Error, byOrder)
	return c
}

func (h *Hook) order() int {
	if h.Doc == nil {
		return 0
	}
	return h.Doc.Order
}
