package registry

import (
	"fmt"
	"sync/atomic"
)

// Static is a fixed set of hooks, for embedding the interceptors, or
// testing them, without etcd. Build each hook with Build or Compile. It is
// safe for concurrent use.
type Static struct {
	current atomic.Pointer[Snapshot]
}

// NewStatic returns a source that serves hooks, with no response cache
// configurations. A hook applies to the service it names, grpc.* ones
// included; global hooks (*/*) apply to every service but grpc.*. Two hooks
// with the same key, or a nil hook, panic: they are a programming error.
func NewStatic(hooks ...*Hook) *Static {
	s := &Static{}
	s.Set(hooks...)
	return s
}

// Snapshot returns the hooks in force. It never returns nil.
func (s *Static) Snapshot() *Snapshot { return s.current.Load() }

// Set replaces the hooks in force by hooks, as NewStatic takes them. Calls
// already running go on with the hooks they started with.
func (s *Static) Set(hooks ...*Hook) {
	seen := make(map[Key]bool, len(hooks))
	own := make([]*Hook, 0, len(hooks))
	for i, h := range hooks {
		if h == nil {
			panic(fmt.Sprintf("registry: NewStatic: hook %d is nil", i))
		}
		if seen[h.Key] {
			panic(fmt.Sprintf("registry: NewStatic: hook %s given twice", h.Key))
		}
		seen[h.Key] = true
		own = append(own, h)
	}
	var rev int64
	if old := s.current.Load(); old != nil {
		rev = old.Revision + 1
	}
	s.current.Store(newSnapshot(rev, own, nil, DefaultHookable))
}
