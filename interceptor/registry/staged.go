package registry

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ApplyMarker returns the etcd key of the marker of a staged apply: while it
// exists, a registry holds back every change under prefix and keeps the
// hooks in force as they were; when the transaction that removes it
// arrives, everything changed meanwhile is put in force at once. It lives
// under HooksDir so that it arrives in order with the hooks it guards; it
// is never a valid hook key.
func ApplyMarker(prefix string) string { return HooksDir(prefix) + ".apply" }

// heldLocked reports whether publishing must wait: while a staged apply's
// marker exists, while batches that arrived before its removal still
// compile, or while a full read from before the apply must be replaced. mu
// is held.
func (r *Registry) heldLocked() bool {
	switch {
	case r.staged || r.reread:
		if !r.held {
			r.held = true
			r.opts.logger.Info("staged apply in progress: holding back hook changes until it completes",
				"revision_in_force", r.current.Load().Revision)
		}
		return true
	case r.held && r.inflight > 0:
		return true
	case r.held:
		r.held = false
		r.opts.logger.Info("staged apply complete: its changes are in force at once", "revision", r.rev)
	}
	return false
}

// markerChange notes the marker's state from c; it reports whether c is the
// marker. mu is held.
func (r *Registry) markerChange(c *change) bool {
	if c.key != ApplyMarker(r.opts.prefix) {
		return false
	}
	if r.latest[c.key].seq == c.seq {
		r.staged = !c.del
	}
	return true
}

// readBeforeApply reads hooks and caches as they were just before the
// staged apply whose marker was created at createRev, so that a registry
// starting in the middle of one serves what was in force. It fails, with
// ErrApplyInProgress, when etcd no longer holds that revision.
func (r *Registry) readBeforeApply(ctx context.Context, createRev int64) (*clientv3.TxnResponse, error) {
	dirs := r.dirs()
	resp, err := r.client.Txn(ctx).Then(
		clientv3.OpGet(dirs[0], clientv3.WithPrefix(), clientv3.WithRev(createRev-1)),
		clientv3.OpGet(dirs[1], clientv3.WithPrefix(), clientv3.WithRev(createRev-1)),
		clientv3.OpGet(dirs[2], clientv3.WithPrefix(), clientv3.WithRev(createRev-1)),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("registry: %w (since revision %d) and the hooks from before it cannot be read: %w", ErrApplyInProgress, createRev, err)
	}
	return resp, nil
}

// ErrApplyInProgress is the error of a Start during a staged apply whose
// starting point etcd no longer holds: until the apply completes (hookctl
// apply -f again) or is undone (hookctl apply --abort), only a snapshot
// file can serve hooks.
var ErrApplyInProgress = errors.New("a staged apply is in progress")

// startingMidApply returns, for a registry with nothing in force yet that
// finds a staged apply's marker in the full read resp, the hooks as they
// were before that apply, and the revision they were read at; nil
// otherwise. When those cannot be read (etcd compacted them), it fails:
// the apply's partial state must never be served, nor no hooks at all.
func (r *Registry) startingMidApply(ctx context.Context, resp *clientv3.TxnResponse) (*clientv3.TxnResponse, int64, error) {
	if r.current.Load().Revision != 0 {
		return nil, 0, nil // what is in force stays, held back until the apply ends
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		if string(kv.Key) == ApplyMarker(r.opts.prefix) {
			old, err := r.readBeforeApply(ctx, kv.CreateRevision)
			return old, kv.CreateRevision - 1, err
		}
	}
	return nil, 0, nil
}

// applyEnded reports whether b ends a staged apply while the entries are
// from before it, so that everything must be read again.
func (r *Registry) applyEnded(b *batch) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.reread {
		return false
	}
	for _, c := range b.changes {
		if c.del && c.key == ApplyMarker(r.opts.prefix) {
			return true
		}
	}
	return false
}
