package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// lookBackVersions is how many earlier versions of a key the registry
// looks at in etcd's history, newest first, for one that is valid when the
// key's current document is not. It looks when it reads everything (at
// start, after losing etcd or falling behind a compaction), where it did
// not follow the key's changes: one that follows them keeps the version it
// runs, which is the one it would find.
const lookBackVersions = 10

// look is what the look-backs of one full read share: a context whose
// deadline bounds them all, and the snapshot file, read once.
type look struct {
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	file   *snapshotFile
}

// newLook returns the look of a read made under getCtx: its look-backs end
// with ctx, and within readTimeout or three quarters of what getCtx has
// left, whichever is sooner, so that what they find is applied before
// getCtx ends.
func (r *Registry) newLook(ctx, getCtx context.Context) *look {
	budget := readTimeout
	if d, ok := getCtx.Deadline(); ok {
		budget = min(budget, time.Until(d)*3/4)
	}
	l := &look{}
	l.ctx, l.cancel = context.WithTimeout(ctx, budget)
	return l
}

// snapshot returns the snapshot file, read the first time; nil when there
// is none or it is unusable.
func (l *look) snapshot(r *Registry) *snapshotFile {
	l.once.Do(func() {
		if r.opts.snapshotFile != "" {
			l.file, _ = readSnapshotFile(r.opts.snapshotFile, r.opts.prefix)
		}
	})
	return l.file
}

// lookBackEnd says why looking back ended without a valid version.
type lookBackEnd int

const (
	// endCreated: every version since the key was (last) created is invalid.
	endCreated lookBackEnd = iota
	// endUtils: a version is a valid document that fails against the
	// utils of now, and a util it imports changed since it was written (or
	// etcd cannot say): a util change broke it, and its key fails closed.
	endUtils
	// endBound: the lookBackVersions versions before are invalid too.
	endBound
	// endCompacted: etcd compacted the versions before.
	endCompacted
	// endUnreadable: etcd did not answer.
	endUnreadable
	// endNotRead: history was not looked at: the value is the snapshot
	// file's, or was compiled for it.
	endNotRead
	// endFollowed: history was not looked at: the registry followed the
	// key's changes, and runs its last valid version, if any.
	endFollowed
)

// past is what the registry found in the history of a key whose current
// document is invalid.
type past struct {
	// hook is the newest valid earlier version, compiled against the
	// read's utils, and raw its document; nil when none was found.
	hook *Hook
	raw  []byte
	// end says why none was found; err is etcd's error for
	// endUnreadable; broke, for endUtils, is the version a change of utils
	// broke, at brokeRev.
	end      lookBackEnd
	err      error
	broke    []byte
	brokeRev int64
	// brokeErr is why broke, an earlier version than the key's value, no
	// longer compiles; nil when broke is the value.
	brokeErr error
	// file is the snapshot file's version of the key, compiled, and
	// fileRaw its document, when history could not tell (endBound,
	// endCompacted, endUnreadable) and the file holds a valid earlier
	// version of the key; nil otherwise.
	file    *Hook
	fileRaw []byte
}

// needsPast reports whether the history of c, built invalid for b, is to
// be looked at: when b is (part of) a full read of etcd (not of the
// snapshot file), and c is a hook in force here that is not compiled again
// for a change of utils.
func (r *Registry) needsPast(c *change, b *batch) bool {
	if b.look == nil || b.fromFile || c.isCache || c.kerr != nil || c.err == nil || c.recompile {
		return false
	}
	return r.opts.hookable(c.k.Service) || c.k.Service == Wildcard
}

// lookBack looks in etcd's history for the newest valid version of the
// key of c, whose current value (compiled against utils) is invalid: at
// most lookBackVersions versions back, and never before the key was last
// created, so a key deleted and created again does not bring back the
// version from before. A version that compiles against utils is valid; one
// that does not is passed over, unless a change of the utils it imports
// broke it (see brokenByUtils), which ends the search (endUtils). When
// history cannot tell, the snapshot file's version is taken, if valid.
// l.ctx bounds every read of etcd.
func (r *Registry) lookBack(l *look, c *change, utils *Utils) *past {
	ctx := l.ctx
	switch broken, err := r.brokenByUtils(ctx, c.k, c.value, c.modRev, utils); {
	case err != nil:
		return r.fromFile(l, c, utils, &past{end: endUnreadable, err: err})
	case broken:
		return &past{end: endUtils, broke: c.value, brokeRev: c.modRev}
	}
	rev := c.modRev
	for range lookBackVersions {
		if rev <= c.createRev {
			return &past{end: endCreated}
		}
		resp, err := r.client.Get(ctx, c.key, clientv3.WithRev(rev-1))
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			return r.fromFile(l, c, utils, &past{end: endCompacted})
		case err != nil:
			return r.fromFile(l, c, utils, &past{end: endUnreadable, err: err})
		case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != c.createRev:
			return &past{end: endCreated}
		}
		kv := resp.Kvs[0]
		h, buildErr := r.buildHook(c.k, kv.Value, utils)
		if buildErr == nil {
			h.Revision = kv.ModRevision
			return &past{hook: h, raw: kv.Value}
		}
		switch broken, err := r.brokenByUtils(ctx, c.k, kv.Value, kv.ModRevision, utils); {
		case err != nil:
			return r.fromFile(l, c, utils, &past{end: endUnreadable, err: err})
		case broken:
			return &past{end: endUtils, broke: kv.Value, brokeRev: kv.ModRevision, brokeErr: buildErr}
		}
		rev = kv.ModRevision
	}
	return r.fromFile(l, c, utils, &past{end: endBound})
}

// brokenByUtils reports whether value, the version of k written at rev,
// which does not compile against utils, is a valid document (as hookctl
// judges it, against stub utils) importing a util that changed since rev:
// a registry that followed that change compiled the key's value again
// and, as it fails, failed the key closed. Otherwise the value failed when
// it was written, and an earlier version kept running. It fails when etcd
// does not say which utils were deleted since rev.
func (r *Registry) brokenByUtils(ctx context.Context, k Key, value []byte, rev int64, utils *Utils) (bool, error) {
	if !bytes.Contains(value, []byte(engine.UtilsPrefix)) {
		return false, nil // invalid whatever the utils
	}
	if _, err := r.buildHook(k, value, StubUtils()); err != nil {
		return false, nil // an invalid document
	}
	dir := UtilsDir(r.opts.prefix)
	changed := map[string]bool{}
	note := func(key string) {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, dir), "/")
		changed[name] = true
	}
	for key, modRev := range utils.modRevs {
		if modRev > rev {
			note(key)
		}
	}
	resp, err := r.client.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithKeysOnly())
	if err != nil {
		return false, err
	}
	for _, kv := range resp.Kvs {
		if _, ok := utils.modRevs[string(kv.Key)]; !ok {
			note(string(kv.Key)) // deleted since
		}
	}
	return len(changed) > 0 && MentionsUtil(value, utils.Dependents(changed)), nil
}

// fromFile adds to p the snapshot file's version of the key of c, when the
// file holds one written since the key was last created and before its
// current value, and it compiles against utils. It returns p.
func (r *Registry) fromFile(l *look, c *change, utils *Utils, p *past) *past {
	f := l.snapshot(r)
	if f == nil {
		return p
	}
	for _, h := range f.Hooks {
		if h.Key != c.key || h.ModRevision < c.createRev || h.ModRevision >= c.modRev {
			continue
		}
		if hook, err := r.buildHook(c.k, []byte(h.Value), utils); err == nil {
			hook.Revision = h.ModRevision
			p.file, p.fileRaw = hook, []byte(h.Value)
		}
	}
	return p
}

// buildHook decodes and compiles b, stored at k, against utils.
func (r *Registry) buildHook(k Key, b []byte, utils *Utils) (*Hook, error) {
	if r.opts.build != nil {
		return r.opts.build(k, b, r.opts.maxTimeout, utils)
	}
	return BuildWithUtils(k, b, r.opts.maxTimeout, utils)
}

// putInvalid applies c, an invalid value of a hook, old being the key's
// entry. When c is a change the registry follows (from the watch), the
// version running here keeps running, if any: it is the key's last valid
// one. When c comes from a full read, the key runs the newest valid
// earlier version that its history (c.past) holds; when history cannot
// tell, the version running here, or else the snapshot file's, provided it
// is from since the key was last created. Otherwise the key is broken.
// When etcd did not answer, the registry looks again later (retryLoop),
// and so it does for a change it follows while it has to. mu is held.
func (r *Registry) putInvalid(c *change, old *entry, err error, b *batch) {
	key, modRev, utils := c.key, c.modRev, b.utils
	log := r.opts.logger.With("key", key, "revision", modRev)
	p := c.past
	if p == nil && b.look == nil && !b.fromFile {
		p = &past{end: endFollowed}
	}
	if p == nil {
		p = &past{end: endNotRead}
	}
	// The next full read builds the value again when history could not be
	// read now; when etcd did not answer, the registry looks again before.
	retry := p.hook == nil && (p.end == endUnreadable || p.end == endFollowed && old != nil && old.retry)
	recheck := retry || p.hook == nil && p.end == endNotRead
	if retry {
		select {
		case r.retryKick <- struct{}{}:
		default:
		}
	}
	keep := func(h *Hook, raw []byte, hookUtils *Utils) {
		log.Error("invalid hook document; the previous version keeps running", "error", err, "running_revision", h.Revision)
		r.entries[key] = &entry{modRev: modRev, hook: h, raw: raw, utils: hookUtils, invalid: err,
			recheck: recheck, retry: retry, createRev: c.createRev, last: raw, lastRev: h.Revision}
	}
	running := old != nil && old.hook != nil && old.hook.Err == nil &&
		old.hook.Revision >= c.createRev && old.hook.Revision < modRev
	switch {
	case p.hook != nil && running && old.hook.Revision == p.hook.Revision && old.utils == utils:
		keep(old.hook, old.raw, old.utils) // the same: the running one stays
		return
	case p.hook != nil:
		keep(p.hook, p.raw, utils)
		return
	case p.end == endUtils && p.brokeErr != nil:
		err = ranAndBroke(p.brokeRev, p.brokeErr, err)
	case p.end == endCreated || p.end == endUtils:
	case running:
		keep(old.hook, old.raw, old.utils)
		return
	case p.file != nil:
		keep(p.file, p.fileRaw, utils)
		return
	case p.end == endBound:
		err = fmt.Errorf("%w (the %d versions before it are invalid too; older ones are not searched)", err, lookBackVersions)
	case p.end == endCompacted:
		err = fmt.Errorf("%w (etcd compacted its earlier versions)", err)
	case p.end == endUnreadable:
		err = fmt.Errorf("%w (its earlier versions could not be read: %v)", err, p.err)
	}
	// The version a change of utils broke is compiled again at the next.
	var last []byte
	var lastRev int64
	switch {
	case p.end == endUtils:
		last, lastRev = p.broke, p.brokeRev
	case p.end == endFollowed:
		last, lastRev = old.lastVersion(modRev)
	}
	log.Error("invalid hook document; calls it covers fail until it is fixed", "error", err)
	id := strings.TrimPrefix(key, HooksDir(r.opts.prefix))
	r.entries[key] = &entry{modRev: modRev, raw: c.value, hook: &Hook{Key: c.k, ID: id, Revision: modRev, Err: err},
		recheck: recheck, retry: retry, createRev: c.createRev, last: last, lastRev: lastRev}
}

// retryLoop looks again in the history of the keys whose history etcd did
// not give (entry.retry), off the watch and backing off, until it does or
// their value changes. It ends with ctx.
func (r *Registry) retryLoop(ctx context.Context) {
	wait := r.opts.retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.retryKick:
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			b := &batch{retry: true, look: r.newLook(ctx, ctx), done: make(chan struct{})}
			r.dispatch(b)
			select {
			case <-ctx.Done():
				b.look.cancel()
				return
			case <-b.done:
			}
			b.look.cancel()
			if len(b.changes) == 0 {
				wait = r.opts.retryMin
				break
			}
			wait = min(2*wait, r.opts.retryMax)
		}
	}
}

// retryChangesLocked gives b, a batch of retryLoop, the latest value of
// each key to look back for again. mu is held.
func (r *Registry) retryChangesLocked(b *batch) {
	b.rev = r.rev
	for key, e := range r.entries {
		if v, ok := r.latest[key]; e.retry && ok && !v.del && v.modRev == e.modRev {
			b.changes = append(b.changes, change{key: key, value: v.value, modRev: v.modRev, createRev: e.createRev})
		}
	}
}
