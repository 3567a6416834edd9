package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// readTimeout bounds one attempt to read every hook in the background; a
// read blocks until etcd answers, so this only paces the log lines.
const readTimeout = 5 * time.Second

// Registry follows the hooks in etcd and serves them as Snapshots.
type Registry struct {
	client  *clientv3.Client
	opts    options
	current atomic.Pointer[Snapshot]
	jobs    queue
	// save is signalled after a publish the snapshot file must follow.
	save chan struct{}

	// mu guards the fields below. The watch goroutine hands batches out
	// under it; compile workers apply them under it.
	mu      sync.Mutex
	entries map[string]*entry
	// latest is the newest change handed out for each key in this
	// generation: an older one that finishes compiling later is dropped.
	latest map[string]version
	// seq numbers the changes handed out.
	seq uint64
	// compiling holds the compiles in progress, so that a batch needing
	// one waits for its result instead of compiling the same value again.
	compiling map[compileID]*compile
	// gen counts the full reads: a batch handed out before the last one is
	// dropped when it completes.
	gen          uint64
	rev          int64
	synced       bool
	fromSnapshot bool
	lastSync     time.Time
	// staged is set while a staged apply's marker exists (ApplyMarker);
	// held while publishing waits for it to complete, and for the batches
	// dispatched before its end (inflight counts them); reread while the
	// entries are from before an apply and must be read again at its end.
	staged, held, reread bool
	inflight             int
	// loads counts, while a batch larger than loadLines is applied, the
	// keys it loaded and deleted, which are then logged at debug, one
	// line each, and told in one line at info (nil otherwise).
	loads *loadCount
	// utilValues holds the value and revision of every key under
	// UtilsDir; utils is the set they make, which hooks compile against.
	utilValues map[string]utilValue
	utils      *Utils
	// retryKick wakes retryLoop when a key's history is to be looked at
	// again.
	retryKick chan struct{}

	// syncMu orders the changes of synced with the calls to opts.onSync.
	syncMu sync.Mutex

	startMu sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// entry is what the registry holds for one etcd key.
type entry struct {
	// modRev is the revision of the latest value seen for the key.
	modRev int64
	// hook runs for the key: its latest valid version, or a broken
	// placeholder when it never had one; nil when the key covers no method
	// or its service is not hookable.
	hook *Hook
	// cache is in force for a key under CacheDir: its latest valid
	// version; nil when it never had one.
	cache *CacheConfig
	// raw is the stored value hook or cache was built from.
	raw []byte
	// utils are those hook was compiled against.
	utils *Utils
	// cacheErr says why a key under CacheDir has no valid version.
	cacheErr error
	// ignored says why a key's hook or cache configuration is not in force
	// on this server although it may be valid: its service is not
	// hookable here. Empty otherwise.
	ignored string
	// invalid says why the key's latest value is not in force while hook,
	// an earlier version, runs; nil otherwise.
	invalid error
	// recheck is set when a full read could not read the key's history, or
	// the value is the snapshot file's: the next full read builds its value
	// again instead of keeping the entry.
	recheck bool
	// retry is set when etcd did not give the key's history: retryLoop
	// looks again. createRev is the revision that last created the key.
	retry     bool
	createRev int64
	// last, while the key's latest value is invalid, is the newest earlier
	// version that ran (at lastRev): the one running, or the one a change
	// of utils broke. A change of utils compiles it again (see
	// lastVersion).
	last    []byte
	lastRev int64
}

// lastVersion returns the version of the key, older than its value at
// latestRev, that a change of utils compiles again when that value does
// not compile: the one e keeps for it, or else the one running.
func (e *entry) lastVersion(latestRev int64) ([]byte, int64) {
	switch {
	case e == nil:
	case e.last != nil && e.lastRev < latestRev:
		return e.last, e.lastRev
	case e.hook != nil && e.hook.Err == nil && e.hook.Revision < latestRev:
		return e.raw, e.hook.Revision
	}
	return nil, 0
}

// version is the newest change of a key handed out to compile.
type version struct {
	modRev int64
	// seq is the change's: only that change may put the key in force.
	seq   uint64
	value []byte
	del   bool
}

// Status is what a registry reports about itself to operators and health
// checks.
type Status struct {
	// Revision is the etcd revision of the hooks in force.
	Revision int64
	// Synced is true while the registry has read every hook from etcd and
	// follows its changes; false before, and while etcd is unreachable.
	Synced bool
	// FromSnapshot is true while the hooks in force came from the snapshot
	// file and etcd has not been read since.
	FromSnapshot bool
	// LastSync is when the registry last heard from etcd: a full read or a
	// change. Zero when it never did.
	LastSync time.Time
	// Broken lists the hooks whose key has no valid version, as
	// "id: error", and the response cache configurations with none, as
	// "cache/<service>/<method>: error", ordered.
	Broken []string
	// Invalid lists the hooks whose key holds an invalid document while
	// an earlier, valid version of the key runs, as
	// "id: revision N still runs: error", ordered.
	Invalid []string
	// Held is true while a staged apply is in progress: changes after
	// Revision wait for it to complete.
	Held bool
	// Ignored lists the hooks and response cache configurations that are
	// not in force on this server because their service is not hookable
	// here (a misspelt service, or one the server does not hook), as
	// "id: reason" (cache ones as "cache/<service>/<method>: reason"),
	// ordered.
	Ignored []string
}

// New returns a registry reading hooks through client. Start (or
// StartFromSnapshot) loads them.
func New(client *clientv3.Client, opts ...Option) *Registry {
	r := &Registry{
		client:     client,
		opts:       evaluateOptions(opts),
		entries:    map[string]*entry{},
		latest:     map[string]version{},
		compiling:  map[compileID]*compile{},
		utils:      NewUtils("", nil),
		utilValues: map[string]utilValue{},
		save:       make(chan struct{}, 1),
		retryKick:  make(chan struct{}, 1),
		jobs:       queue{ready: make(chan struct{}, 1)},
	}
	r.current.Store(newSnapshot(0, nil, nil, r.opts.hookable))
	return r
}

// Snapshot returns the hooks in force. It never returns nil.
func (r *Registry) Snapshot() *Snapshot { return r.current.Load() }

// Status reports the registry's state.
func (r *Registry) Status() Status {
	r.mu.Lock()
	s := Status{Revision: r.current.Load().Revision, Synced: r.synced, FromSnapshot: r.fromSnapshot, LastSync: r.lastSync, Held: r.held}
	for k, e := range r.entries {
		if e.invalid != nil && e.hook != nil && e.hook.Err == nil {
			s.Invalid = append(s.Invalid, fmt.Sprintf("%s: revision %d still runs: %v", e.hook.ID, e.hook.Revision, e.invalid))
		}
		if e.cacheErr != nil {
			s.Broken = append(s.Broken, strings.TrimPrefix(k, r.opts.prefix)+": "+e.cacheErr.Error())
		}
		if e.ignored != "" {
			id := strings.TrimPrefix(k, HooksDir(r.opts.prefix))
			if id == k {
				id = strings.TrimPrefix(k, r.opts.prefix)
			}
			s.Ignored = append(s.Ignored, id+": "+e.ignored)
		}
	}
	slices.Sort(s.Ignored)
	slices.Sort(s.Invalid)
	r.mu.Unlock()
	for _, h := range r.Snapshot().Hooks() {
		if h.Err != nil {
			s.Broken = append(s.Broken, h.ID+": "+h.Err.Error())
		}
	}
	slices.Sort(s.Broken)
	return s
}

// Start reads every hook, then follows changes in the background until
// Close. ctx bounds reading etcd: Start returns once the hooks are in
// force, or with an error when etcd could not be read before ctx ended; it
// may then be called again.
func (r *Registry) Start(ctx context.Context) error {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if r.started {
		return errors.New("registry: already started")
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.startWorkers(rctx)
	rev, err := r.readAll(ctx, rctx, true)
	if err != nil {
		cancel()
		r.wg.Wait()
		return err
	}
	r.run(rctx, cancel, rev+1)
	return nil
}

// SnapshotInfo describes the snapshot file StartFromSnapshot served.
type SnapshotInfo struct {
	// Revision is the etcd revision the file reflects.
	Revision int64
	// Saved is when the file was written.
	Saved time.Time
	// Hooks is how many documents it holds.
	Hooks int
}

// StartFromSnapshot puts in force the hooks of the snapshot file (see
// WithSnapshotFile), then follows etcd in the background until Close: it
// reads every hook as soon as etcd answers, then watches. It fails, and
// may be called again, when there is no snapshot file or it is unusable.
func (r *Registry) StartFromSnapshot() (SnapshotInfo, error) {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if r.started {
		return SnapshotInfo{}, errors.New("registry: already started")
	}
	if r.opts.snapshotFile == "" {
		return SnapshotInfo{}, errors.New("registry: no snapshot file configured")
	}
	f, err := readSnapshotFile(r.opts.snapshotFile, r.opts.prefix)
	if err != nil {
		return SnapshotInfo{}, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r.startWorkers(rctx)
	b := &batch{rev: f.Revision, full: true, fromFile: true, done: make(chan struct{})}
	for _, h := range f.Hooks {
		b.changes = append(b.changes, change{key: h.Key, value: []byte(h.Value), modRev: h.ModRevision})
	}
	r.dispatch(b)
	<-b.done // workers stop only when rctx ends
	r.mu.Lock()
	r.fromSnapshot = true
	r.mu.Unlock()
	r.run(rctx, cancel, 0)
	return SnapshotInfo{Revision: f.Revision, Saved: f.Saved, Hooks: len(f.Hooks)}, nil
}

// run starts following etcd from rev (reading everything first when rev is
// zero) and saving the snapshot file. startMu is held.
func (r *Registry) run(ctx context.Context, cancel context.CancelFunc, rev int64) {
	r.started = true
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.follow(ctx, rev)
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.retryLoop(ctx)
	}()
	if r.opts.snapshotFile != "" {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.saveLoop(ctx)
		}()
	}
}

// Close stops following etcd, writes the snapshot file if a change is
// pending, and waits for every goroutine of the registry. The last
// snapshot stays in force.
func (r *Registry) Close() {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
		r.cancel = nil
	}
}

// readAll reads every hook at one revision (getCtx bounds the read), has
// them put in force once compiled, and marks the registry synced. When
// wait is set, it returns once they are in force (ctx bounds the wait);
// otherwise at once, so that changes after the read are followed while
// its documents compile.
func (r *Registry) readAll(getCtx, ctx context.Context, wait bool) (int64, error) {
	// One transaction reads hooks, caches and utils at one revision.
	dirs := r.dirs()
	resp, err := r.client.Txn(getCtx).Then(
		clientv3.OpGet(dirs[0], clientv3.WithPrefix()),
		clientv3.OpGet(dirs[1], clientv3.WithPrefix()),
		clientv3.OpGet(dirs[2], clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("registry: read %s, %s and %s: %w", dirs[0], dirs[1], dirs[2], err)
	}
	current, rev := resp, resp.Header.Revision
	old, oldRev, err := r.startingMidApply(getCtx, resp)
	if err != nil {
		return 0, err
	}
	if old != nil {
		resp, rev = old, oldRev
	}
	b := &batch{rev: rev, full: true, beforeApply: resp != current, look: r.newLook(ctx, getCtx), done: make(chan struct{})}
	for _, op := range resp.Responses {
		for _, kv := range op.GetResponseRange().Kvs {
			b.changes = append(b.changes, change{key: string(kv.Key), value: kv.Value, modRev: kv.ModRevision, createRev: kv.CreateRevision})
		}
	}
	r.dispatch(b)
	if wait {
		select {
		case <-b.done:
		case <-ctx.Done():
			return 0, fmt.Errorf("registry: compile hooks: %w", ctx.Err())
		}
	}
	r.setSynced(true)
	return current.Header.Revision, nil
}

// dirs returns the etcd prefixes the registry follows: hooks, response
// cache configurations, then utils.
func (r *Registry) dirs() [3]string {
	return [3]string{HooksDir(r.opts.prefix), CacheDir(r.opts.prefix), UtilsDir(r.opts.prefix)}
}

// follow keeps the registry in step with etcd until ctx ends: it reads
// everything when rev is zero, then watches from rev, and reads everything
// again whenever the watch breaks or the connection to etcd comes back.
// A read that succeeds after failing, or after a start from the snapshot
// file, says so once.
func (r *Registry) follow(ctx context.Context, rev int64) {
	backoff := r.opts.retryMin
	// A registry started from the snapshot file had not read etcd: its
	// first read succeeding is etcd answering again too.
	r.mu.Lock()
	failed := rev == 0 && r.fromSnapshot
	r.mu.Unlock()
	for ctx.Err() == nil {
		if rev == 0 {
			attempt, cancel := context.WithTimeout(ctx, readTimeout)
			got, err := r.readAll(attempt, ctx, false)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.setSynced(false)
				r.opts.logger.Warn("cannot read hooks from etcd; serving the last ones read", "error", err, "retry_in", backoff)
				failed = true
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, r.opts.retryMax)
				continue
			}
			if failed {
				r.opts.logger.Info("etcd answers again; every hook is read", "revision", got)
				failed = false
			}
			backoff = r.opts.retryMin
			rev = got + 1
		}
		rev = r.watch(ctx, rev)
	}
}

// watch follows changes from rev until the watch breaks, etcd comes back
// after the connection was lost, or ctx ends. It returns the revision to
// watch from next, or zero to read everything again.
func (r *Registry) watch(ctx context.Context, rev int64) int64 {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	back := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watchConnection(wctx, back)
	}()
	// One watch per prefix, from the same revision, on one stream. A
	// transaction that changes both prefixes arrives as two batches.
	dirs := r.dirs()
	lctx := clientv3.WithRequireLeader(wctx)
	hooksCh := r.client.Watch(lctx, dirs[0], clientv3.WithPrefix(), clientv3.WithRev(rev))
	cacheCh := r.client.Watch(lctx, dirs[1], clientv3.WithPrefix(), clientv3.WithRev(rev))
	utilsCh := r.client.Watch(lctx, dirs[2], clientv3.WithPrefix(), clientv3.WithRev(rev))
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return 0
		case <-back:
			r.opts.logger.Info("etcd answers again; reading every hook")
			return 0
		case resp, ok = <-hooksCh:
		case resp, ok = <-cacheCh:
		case resp, ok = <-utilsCh:
		}
		switch {
		case !ok:
			return 0
		case resp.CompactRevision != 0:
			r.opts.logger.Warn("hook watch fell behind a compaction; reading every hook again",
				"revision", rev, "compacted", resp.CompactRevision)
			return 0
		case resp.Err() != nil:
			r.opts.logger.Warn("hook watch ended; reading every hook again", "error", resp.Err())
			return 0
		}
		if len(resp.Events) > 0 {
			b := &batch{rev: resp.Header.Revision, done: make(chan struct{})}
			for _, ev := range resp.Events {
				b.changes = append(b.changes, change{
					key: string(ev.Kv.Key), value: ev.Kv.Value, modRev: ev.Kv.ModRevision,
					createRev: ev.Kv.CreateRevision, del: ev.Type == mvccpb.DELETE,
				})
			}
			ended := r.applyEnded(b)
			r.dispatch(b)
			if ended {
				return 0 // the hooks in force are from before it: read them again
			}
		}
		rev = max(rev, resp.Header.Revision+1)
		r.mu.Lock()
		r.lastSync = time.Now()
		r.mu.Unlock()
	}
}

// watchConnection marks the registry not synced when the connection to
// etcd is lost, and closes back when it is ready again, so the registry
// reads everything at once instead of waiting for the watch to resume.
func (r *Registry) watchConnection(ctx context.Context, back chan<- struct{}) {
	conn := r.client.ActiveConnection()
	if conn == nil {
		return
	}
	lost := false
	for state := conn.GetState(); ; state = conn.GetState() {
		switch state {
		case connectivity.Ready:
			if lost {
				close(back)
				return
			}
		case connectivity.TransientFailure, connectivity.Connecting:
			if !lost {
				lost = true
				r.setSynced(false)
				r.opts.logger.Warn("lost etcd; serving the last hooks read", "revision", r.Snapshot().Revision)
			}
		case connectivity.Shutdown:
			return
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
	}
}

// setSynced records whether the registry is in step with etcd and tells
// opts.onSync when that changes.
func (r *Registry) setSynced(v bool) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	changed := r.synced != v
	r.synced = v
	if v {
		r.lastSync = time.Now()
		r.fromSnapshot = false
	}
	r.mu.Unlock()
	if changed {
		r.opts.onSync(v)
	}
}

// batch is the changes of one etcd transaction (one watch response), or
// every hook of a full read: it is put in force all at once, when every
// document in it is compiled.
type batch struct {
	gen uint64
	// rev is the etcd revision the batch brings the registry to.
	rev int64
	// full is set for a full read: keys not in it are removed.
	full bool
	// fromFile is set for a full read of the snapshot file, which is not
	// written back.
	fromFile bool
	// beforeApply is set for a full read of the hooks from before a staged
	// apply in progress, which must be read again when it completes.
	beforeApply bool
	// retry is set for a batch of retryLoop: dispatch gives it its
	// changes.
	retry bool
	// read is set for a full read, and for each batch of documents it
	// compiles, whose transaction is txn.
	read *read
	txn  int64
	// look is set for a full read of etcd, each batch of documents it
	// compiles, and a batch of retryLoop: their invalid hooks' history is
	// looked at under it.
	look    *look
	changes []change
	// utils are the utils the batch's hooks compile against.
	utils   *Utils
	pending atomic.Int64
	// done is closed once the batch is applied or dropped.
	done chan struct{}
}

// change is one key's new value, or its deletion.
type change struct {
	key    string
	value  []byte
	modRev int64
	// createRev is the revision that last created the key; zero when
	// unknown (the snapshot file's).
	createRev int64
	del       bool
	// seq numbers the change among those handed out.
	seq uint64
	// skip is set when the key already holds this value; later when the
	// value is compiled and applied in a batch of its own.
	skip, later bool
	// util is set for a key under UtilsDir, which has no entry: the
	// registry's utils follow it. recompile is set for a hook's value
	// compiled again because a util it, or its last version, imports
	// changed: changed names those utils (nil: unknown, any).
	util, recompile bool
	changed         map[string]bool
	// last is the key's last version (see entry.lastVersion), at lastRev,
	// compiled again with the value when it is recompiled; lastHook is what
	// it gave, when the value does not compile because it is invalid
	// whatever those utils, and last compiles.
	last     []byte
	lastRev  int64
	lastHook *Hook
	// lastErr is why last did not compile, when it did not.
	lastErr error
	// What building the value gave.
	k    Key
	kerr error
	hook *Hook
	err  error
	// past is what a full read found in the key's history when the value
	// is an invalid hook.
	past *past
	// For a key under CacheDir.
	isCache bool
	ck      CacheKey
	cache   *CacheConfig
}

// dispatch hands the documents of b to the compile workers; the last one
// to finish applies b. A batch with nothing to compile is applied at once.
func (r *Registry) dispatch(b *batch) {
	r.mu.Lock()
	if b.full {
		r.gen++
		clear(r.latest)
	}
	b.gen = r.gen
	if b.retry {
		r.retryChangesLocked(b)
	}
	r.followUtils(b)
	var builds []int
	for i := range b.changes {
		c := &b.changes[i]
		r.seq++
		c.seq = r.seq
		r.latest[c.key] = version{modRev: c.modRev, seq: c.seq, value: c.value, del: c.del}
		if c.del || c.util || c.key == ApplyMarker(r.opts.prefix) {
			continue
		}
		if e := r.entries[c.key]; e != nil && e.modRev == c.modRev && !c.recompile && !e.recheck {
			last, lastRev := e.lastVersion(c.modRev)
			imports := bytes.Contains(c.value, []byte(engine.UtilsPrefix)) || bytes.Contains(last, []byte(engine.UtilsPrefix))
			if e.utils == b.utils || !imports {
				c.skip = true // unchanged since the last read
				continue
			}
			c.recompile = true // the utils changed since it was compiled
			c.last, c.lastRev = last, lastRev
		}
		builds = append(builds, i)
	}
	var push []job
	switch {
	case b.full:
		for _, p := range r.splitReadLocked(b, builds) {
			push = append(push, r.compileLocked(p, nil)...)
		}
	case len(builds) == 0:
		r.applyLocked(b)
		r.mu.Unlock()
		close(b.done)
		return
	default:
		push = r.compileLocked(b, builds)
	}
	r.mu.Unlock()
	for _, j := range push {
		r.jobs.push(j)
	}
}

// compileLocked has the changes of b at indexes (all of them when nil)
// compiled, and returns the jobs to queue: a value already compiling for
// another batch waits for that compile. mu is held.
func (r *Registry) compileLocked(b *batch, indexes []int) []job {
	if indexes == nil {
		indexes = make([]int, len(b.changes))
		for i := range indexes {
			indexes[i] = i
		}
	}
	b.pending.Store(int64(len(indexes)))
	if !b.retry {
		// A retry looks again at values already in force: a staged
		// apply that ends does not wait for it.
		r.inflight++
	}
	var push []job
	for _, i := range indexes {
		j := job{b: b, i: i}
		id := compileID{key: b.changes[i].key, modRev: b.changes[i].modRev, utils: b.utils}
		if c := r.compiling[id]; c != nil {
			c.waiting = append(c.waiting, j)
			continue
		}
		r.compiling[id] = &compile{}
		push = append(push, j)
	}
	return push
}

// read is what a full read leaves to do while its documents compile. They
// compile as one batch per etcd transaction they come from, each put in
// force once its own documents are compiled, so that a slow document holds
// back only its own transaction.
type read struct {
	// left counts the read's batches not yet applied, by the revision of
	// their transaction.
	left map[int64]int
	// gone are the keys the read did not find, each with the revision of
	// its value in force. A key is removed once no batch of the read newer
	// than that value is left: its deletion may be part of one of them.
	gone map[string]int64
	// beforeApply is the full read's: see batch.
	beforeApply bool
	// rev is the full read's revision.
	rev int64
	// loads counts, for a read of more than loadLines keys (or one that
	// removes keys too), what its batches loaded and deleted: see
	// Registry.loads.
	loads *loadCount
	// done is the full read's, closed once every batch is applied.
	done chan struct{}
}

// splitReadLocked applies at once what the full read b needs no compile
// for, and returns its documents to compile (builds) as one batch per
// transaction. Hooks compiled again because utils changed form one batch,
// as new as the read. mu is held.
func (r *Registry) splitReadLocked(b *batch, builds []int) []*batch {
	rd := &read{left: map[int64]int{}, gone: map[string]int64{}, beforeApply: b.beforeApply, rev: b.rev, done: b.done}
	b.read = rd
	seen := make(map[string]bool, len(b.changes))
	for _, c := range b.changes {
		seen[c.key] = true
	}
	for k, e := range r.entries {
		if !seen[k] && e.modRev <= b.rev {
			rd.gone[k] = e.modRev
		}
	}
	if len(b.changes)+len(rd.gone) > loadLines {
		rd.loads = &loadCount{}
	}
	byTxn := map[int64]*batch{}
	var parts []*batch
	for _, i := range builds {
		c := &b.changes[i]
		txn := c.modRev
		if c.recompile {
			txn = b.rev
		}
		p := byTxn[txn]
		if p == nil {
			p = &batch{gen: b.gen, rev: b.rev, txn: txn, fromFile: b.fromFile, utils: b.utils, read: rd, look: b.look, done: make(chan struct{})}
			byTxn[txn] = p
			parts = append(parts, p)
			rd.left[txn]++
		}
		p.changes = append(p.changes, *c)
		c.later = true
	}
	r.applyLocked(b)
	return parts
}

// removeGoneLocked removes the keys a full read did not find whose
// deletion can no longer be part of a batch of the read still compiling.
// mu is held.
func (r *Registry) removeGoneLocked(rd *read) {
	for k, modRev := range rd.gone {
		newer := false
		for txn, n := range rd.left {
			if n > 0 && txn > modRev {
				newer = true
				break
			}
		}
		if newer {
			continue
		}
		delete(rd.gone, k)
		if e := r.entries[k]; e != nil && e.modRev == modRev {
			delete(r.entries, k) // not put again since the read
			r.logLoad(true, deletedWhat(r.opts.prefix, k), "key", k, "found_at_revision", rd.rev)
		}
	}
}

// compileID names a compile: a key's value, and the utils it compiles
// against.
type compileID struct {
	key    string
	modRev int64
	utils  *Utils
}

// compile is a compile in progress.
type compile struct {
	// waiting are the documents of later batches that need its result.
	waiting []job
}

// startWorkers starts the compile workers, which stop when ctx ends.
func (r *Registry) startWorkers(ctx context.Context) {
	n := max(runtime.GOMAXPROCS(0), 2) // one slow document never stops all
	for range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				j, ok := r.jobs.pop(ctx)
				if !ok {
					return
				}
				c := &j.b.changes[j.i]
				r.build(c, j.b.utils)
				r.buildLast(c, j.b.utils)
				if r.needsPast(c, j.b) {
					c.past = r.lookBack(j.b.look, c, j.b.utils)
				}
				r.mu.Lock()
				id := compileID{key: c.key, modRev: c.modRev, utils: j.b.utils}
				waiting := r.compiling[id].waiting
				delete(r.compiling, id)
				r.mu.Unlock()
				r.built(j)
				for _, w := range waiting {
					wc := &w.b.changes[w.i]
					wc.built(c)
					if wc.past == nil && r.needsPast(wc, w.b) {
						wc.past = r.lookBack(w.b.look, wc, w.b.utils)
					}
					r.built(w)
				}
			}
		}()
	}
}

// build decodes and compiles the value of c against utils. What it builds
// may be shared by several batches: it is not changed once built.
func (r *Registry) build(c *change, utils *Utils) {
	if c.isCache = strings.HasPrefix(c.key, CacheDir(r.opts.prefix)); c.isCache {
		c.ck, c.kerr = ParseCacheKey(r.opts.prefix, c.key)
		if c.kerr == nil {
			c.cache, c.err = BuildCache(c.ck, c.value)
		}
		if c.err == nil && c.kerr == nil {
			c.cache.Revision = c.modRev
		}
		return
	}
	if c.k, c.kerr = ParseKey(r.opts.prefix, c.key); c.kerr == nil {
		c.hook, c.err = r.buildHook(c.k, c.value, utils)
		if c.err == nil {
			c.hook.Revision = c.modRev
		}
	}
}

// buildLast compiles the last version of c, recompiled, against utils,
// when the value of c does not compile and is invalid whatever the utils
// that changed: it is not a valid document importing one of them. As a
// registry that starts does (see lookBack), the last version then runs if
// it compiles, and otherwise its key fails closed.
func (r *Registry) buildLast(c *change, utils *Utils) {
	if !c.recompile || c.last == nil || c.kerr != nil || c.err == nil || r.brokeValue(c) {
		return
	}
	h, err := r.buildHook(c.k, c.last, utils)
	if err != nil {
		c.lastErr = err
		return
	}
	h.Revision = c.lastRev
	c.lastHook = h
}

// ranAndBroke is the error of a key whose version at rev, which ran under
// an invalid newer document (invalid says why), no longer compiles after a
// change of utils (broke says why, naming the util).
func ranAndBroke(rev int64, broke, invalid error) error {
	return fmt.Errorf("revision %d, which ran, no longer compiles: %v; the newer document is invalid: %v", rev, broke, invalid)
}

// brokeValue reports whether the value of c, recompiled, is a valid
// document (against stub utils) importing a util that changed.
func (r *Registry) brokeValue(c *change) bool {
	if c.changed != nil && !MentionsUtil(c.value, c.changed) || !bytes.Contains(c.value, []byte(engine.UtilsPrefix)) {
		return false
	}
	_, err := r.buildHook(c.k, c.value, StubUtils())
	return err == nil
}

// built copies what building the same value gave from.
func (c *change) built(from *change) {
	c.k, c.kerr, c.hook, c.err, c.past = from.k, from.kerr, from.hook, from.err, from.past
	c.lastHook, c.lastErr = from.lastHook, from.lastErr
	c.isCache, c.ck, c.cache = from.isCache, from.ck, from.cache
}

// built notes that the document j is built; the last of its batch applies
// the batch.
func (r *Registry) built(j job) {
	if j.b.pending.Add(-1) != 0 {
		return
	}
	r.mu.Lock()
	if !j.b.retry {
		r.inflight--
	}
	r.applyLocked(j.b)
	r.mu.Unlock()
	close(j.b.done)
}

// applyLocked puts the changes of b in force and publishes them; changes
// that a newer one of the same key overtook are dropped. mu is held.
func (r *Registry) applyLocked(b *batch) {
	rd := b.read
	if rd != nil && !b.full {
		if rd.left[b.txn]--; rd.left[b.txn] == 0 {
			delete(rd.left, b.txn)
		}
	}
	finished := rd != nil && len(rd.left) == 0
	if finished {
		defer close(rd.done) // once what the read brings is in force
		if b.look != nil {
			b.look.cancel() // its look-backs are over
		}
	}
	if b.gen != r.gen {
		return // a full read since has replaced it
	}
	if b.full {
		r.reread = false
		if r.latest[ApplyMarker(r.opts.prefix)].modRev <= b.rev {
			r.staged = false // unless the read has the marker
		}
	}
	// A full read is counted whole, across its batches, and told with
	// its last one.
	switch {
	case rd != nil && rd.loads != nil:
		r.loads = rd.loads
	case len(b.changes) > loadLines:
		r.loads = &loadCount{}
	}
	for i := range b.changes {
		c := &b.changes[i]
		if c.util || c.later || r.markerChange(c) {
			continue
		}
		if r.latest[c.key].seq != c.seq {
			continue // a newer change of the key was handed out since
		}
		switch {
		case c.del:
			delete(r.entries, c.key)
			delete(r.latest, c.key)
			r.logLoad(true, deletedWhat(r.opts.prefix, c.key), "key", c.key, "revision", c.modRev)
		case c.skip:
		case c.isCache:
			r.putCache(c)
		default:
			r.put(c, b)
		}
	}
	if rd != nil {
		r.removeGoneLocked(rd)
	}
	// Told before the changes are published, so that the line is there
	// once they are in force.
	switch {
	case r.loads == nil:
	case rd == nil || rd.loads == nil:
		r.tellLoads(r.loads, b.rev)
	case finished:
		r.tellLoads(rd.loads, rd.rev)
	}
	r.loads = nil
	r.rev = max(r.rev, b.rev)
	if !r.heldLocked() {
		r.publishLocked(!b.fromFile)
	}
	if finished && rd.beforeApply {
		// What is now in force comes from before the apply: hold it until
		// the apply completes, then read everything again.
		r.reread = true
	}
}

// loadLines is the most keys a batch of changes logs at info one by one:
// a larger one (a manifest of hundreds of hooks, a full read) is told in
// one line, its keys at debug.
const loadLines = 10

// loadCount counts what a large batch loaded and deleted.
type loadCount struct{ loaded, deleted int }

// tellLoads logs what a large batch, or a large full read, loaded and
// deleted. mu is held.
func (r *Registry) tellLoads(n *loadCount, rev int64) {
	if n.loaded+n.deleted > 0 {
		r.opts.logger.Info("hooks and cache configurations loaded; each is logged at debug",
			"loaded", n.loaded, "deleted", n.deleted, "revision", rev)
	}
}

// logLoad logs that a key was loaded or deleted: at info, or, within a
// large batch, at debug, counted for the batch's line. mu is held.
func (r *Registry) logLoad(deleted bool, msg string, attrs ...any) {
	if r.loads == nil {
		r.opts.logger.Info(msg, attrs...)
		return
	}
	if deleted {
		r.loads.deleted++
	} else {
		r.loads.loaded++
	}
	r.opts.logger.Debug(msg, attrs...)
}

// deletedWhat is the log message of the deletion of key.
func deletedWhat(prefix, key string) string {
	if strings.HasPrefix(key, CacheDir(prefix)) {
		return "response cache configuration deleted; the method is not cached"
	}
	return "hook deleted"
}

// put applies one built value. An invalid value never replaces a valid
// version of the key, found in the key's history (see putInvalid); a key
// that has none becomes a broken hook, so the methods it covers fail
// instead of running without it. mu is held.
func (r *Registry) put(c *change, b *batch) {
	key, modRev, utils := c.key, c.modRev, b.utils
	old := r.entries[key]
	log := r.opts.logger.With("key", key, "revision", modRev)
	k, err := c.k, c.kerr
	if err == nil {
		if h, err := c.hook, c.err; err == nil {
			var ignored string
			if !r.opts.hookable(k.Service) && k.Service != Wildcard {
				ignored = r.opts.notHookable(k.Service)
				log.Warn("hook ignored: "+ignored, "service", k.Service)
				h = nil
			} else {
				r.logLoad(false, "hook loaded", "key", key, "revision", modRev, "enabled", h.Doc.IsEnabled())
			}
			r.entries[key] = &entry{modRev: modRev, hook: h, raw: c.value, utils: utils, ignored: ignored}
			return
		}
		err = c.err
	}
	if k.Service == "" {
		log.Error("hook key ignored: it names no method", "error", err)
		r.entries[key] = &entry{modRev: modRev}
		return
	}
	if !r.opts.hookable(k.Service) && k.Service != Wildcard {
		ignored := r.opts.notHookable(k.Service)
		log.Warn("invalid hook ignored: "+ignored, "error", err)
		r.entries[key] = &entry{modRev: modRev, ignored: ignored}
		return
	}
	if c.recompile {
		// A key whose history etcd did not give stays to be looked at
		// again (retryLoop, or the next full read) through a change of
		// utils: this value is the same, and so is what its history may
		// hold.
		carry := func(e *entry) *entry {
			if old != nil && old.modRev == modRev && (old.retry || old.recheck) {
				e.retry, e.recheck, e.createRev = old.retry, old.recheck, old.createRev
				if e.retry {
					select {
					case r.retryKick <- struct{}{}:
					default:
					}
				}
			}
			return e
		}
		if h := c.lastHook; h != nil {
			// The value is invalid whatever the utils; the version that
			// ran compiles against them, and runs.
			log.Error("invalid hook document; the previous version keeps running, compiled again after a change of utils",
				"error", err, "running_revision", h.Revision)
			r.entries[key] = carry(&entry{modRev: modRev, hook: h, raw: c.last, utils: utils, invalid: err, last: c.last, lastRev: c.lastRev})
			return
		}
		// The utils it imports, or its last version imports, changed: the
		// version running is not what its documents now mean, so calls
		// fail closed. The version that broke is compiled again at the
		// next change of utils.
		if c.lastErr != nil {
			// What the change of utils broke is the version that ran:
			// its error names the util.
			err = ranAndBroke(c.lastRev, c.lastErr, err)
		}
		if old != nil && old.hook != nil && old.hook.Err != nil && old.hook.Err.Error() == err.Error() {
			// Another change of utils, the same failure: said already.
			log.Debug("hook still does not compile after a change of utils", "error", err)
		} else {
			log.Error("hook no longer compiles after a change of the utils it imports; calls it covers fail until it is fixed", "error", err)
		}
		last, lastRev := c.last, c.lastRev
		if last == nil || r.brokeValue(c) {
			last, lastRev = c.value, modRev
		}
		id := strings.TrimPrefix(key, HooksDir(r.opts.prefix))
		r.entries[key] = carry(&entry{modRev: modRev, raw: c.value, utils: utils, hook: &Hook{Key: k, ID: id, Revision: modRev, Err: err}, last: last, lastRev: lastRev})
		return
	}
	r.putInvalid(c, old, err, b)
}

// putCache applies one built cache configuration. As for hooks, an invalid
// value never replaces a valid version of the key; a key that never had one
// leaves the method uncached. mu is held.
func (r *Registry) putCache(c *change) {
	key, modRev := c.key, c.modRev
	old := r.entries[key]
	log := r.opts.logger.With("key", key, "revision", modRev)
	switch {
	case c.kerr != nil:
		log.Error("response cache key ignored", "error", c.kerr)
		r.entries[key] = &entry{modRev: modRev, cacheErr: c.kerr}
		return
	case !r.opts.hookable(c.ck.Service):
		ignored := r.opts.notHookable(c.ck.Service)
		log.Warn("response cache ignored: "+ignored, "service", c.ck.Service)
		r.entries[key] = &entry{modRev: modRev, ignored: ignored}
		return
	case c.err == nil:
		r.logLoad(false, "response cache configuration loaded", "key", key, "revision", modRev, "ttl", c.cache.TTL,
			"max_entries", c.cache.MaxEntries, "max_bytes", c.cache.MaxBytes, "key_metadata", c.cache.KeyMetadata)
		r.entries[key] = &entry{modRev: modRev, cache: c.cache, raw: c.value}
		return
	case old != nil && old.cache != nil:
		log.Error("invalid response cache document; the previous version stays in force",
			"error", c.err, "running_revision", old.cache.Revision)
		old.modRev = modRev
		return
	}
	log.Error("invalid response cache document; the method is not cached until it is fixed", "error", c.err)
	r.entries[key] = &entry{modRev: modRev, cacheErr: c.err}
}

// publishLocked swaps in a snapshot of the current entries and, when save
// is set, has the snapshot file follow. mu is held.
func (r *Registry) publishLocked(save bool) {
	hooks := make([]*Hook, 0, len(r.entries))
	var caches map[string]*CacheConfig
	for _, e := range r.entries {
		if e.hook != nil {
			hooks = append(hooks, e.hook)
		}
		if e.cache != nil {
			if caches == nil {
				caches = map[string]*CacheConfig{}
			}
			caches[e.cache.Key.FullMethod()] = e.cache
		}
	}
	r.current.Store(newSnapshot(r.rev, hooks, caches, r.opts.hookable))
	if save && r.opts.snapshotFile != "" {
		select {
		case r.save <- struct{}{}:
		default:
		}
	}
}

// job is one document of a batch to compile.
type job struct {
	b *batch
	i int
}

// queue is the compile workers' queue: pushing never blocks, so the watch
// goroutine keeps reading while documents compile.
type queue struct {
	mu    sync.Mutex
	items []job
	ready chan struct{} // holds a token while items may be non-empty
}

func (q *queue) push(j job) {
	q.mu.Lock()
	q.items = append(q.items, j)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the next job, waiting for one until ctx ends.
func (q *queue) pop(ctx context.Context) (job, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			j := q.items[0]
			q.items[0] = job{}
			q.items = q.items[1:]
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			return j, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return job{}, false
		case <-q.ready:
		}
	}
}
