package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// Limits are the etcd server limits a write must respect. They default to
// etcd's own defaults.
type Limits struct {
	// MaxTxnOps is etcd's --max-txn-ops: compares and operations of one
	// transaction each count (default 128).
	MaxTxnOps int
	// MaxRequestBytes is etcd's --max-request-bytes (default 1.5 MiB).
	MaxRequestBytes int
}

// Default etcd limits.
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1536 * 1024
)

// requestOverhead is room kept in each request for the transaction's
// framing, its compares and the marker.
const requestOverhead = 16 * 1024

func (l Limits) withDefaults() Limits {
	if l.MaxTxnOps <= 0 {
		l.MaxTxnOps = DefaultMaxTxnOps
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return l
}

// MaxDocumentBytes is the largest document that fits in one request.
func (l Limits) MaxDocumentBytes() int { return l.withDefaults().MaxRequestBytes - requestOverhead }

// TooLargeError is returned when a document cannot fit in one etcd request.
type TooLargeError struct {
	Key         string
	Size, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: the document is %d bytes; etcd takes at most %d in one request (its --max-request-bytes, less %d for the transaction)",
		e.Key, e.Size, e.Limit+requestOverhead, requestOverhead)
}

// Marker is the record of a staged apply, kept at registry.ApplyMarker
// while it runs. Daemons hold back changes while it exists.
type Marker struct {
	// ReadRevision is the revision the apply was planned from: what was in
	// force before it.
	ReadRevision int64 `json:"readRevision"`
	// Started is when it started, By who started it (user@host).
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
	// Transactions is how many transactions the apply takes.
	Transactions int `json:"transactions"`
	Origin
	// CreateRevision is the marker key's; set when read.
	CreateRevision int64 `json:"-"`
}

// Origin says which manifest a staged apply writes, so that only that
// manifest completes it.
type Origin struct {
	// Manifest identifies the manifest's content and how it is applied (a
	// digest); empty in markers of writes that are not a manifest's.
	Manifest string `json:"manifest,omitempty"`
	// Source is the manifest's path as given, Owner its owner: for people.
	Source string `json:"source,omitempty"`
	Owner  string `json:"owner,omitempty"`
}

// Describe names the staged apply for a message: when and by whom it was
// started, and its manifest.
func (m *Marker) Describe() string {
	s := fmt.Sprintf("started %s by %s", m.Started.Format(time.RFC3339), m.By)
	if m.Source != "" {
		s += ", of " + m.Source
	}
	if m.Owner != "" {
		s += " (owner " + m.Owner + ")"
	}
	return s
}

// Marker returns the marker of a staged apply that has not completed, or
// nil when there is none.
func (s *Store) Marker(ctx context.Context) (*Marker, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, registry.ApplyMarker(s.cfg.Prefix))
	if err != nil {
		return nil, s.wrap(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	m := &Marker{}
	if err := json.Unmarshal(resp.Kvs[0].Value, m); err != nil {
		m = &Marker{} // still a marker: daemons hold back while it exists
	}
	m.CreateRevision = resp.Kvs[0].CreateRevision
	return m, nil
}

// step is one transaction of a staged write: its guards and operations.
type step struct {
	guards map[string]int64
	puts   []string
	dels   []string
}

// split cuts w into transactions within the limits, puts first, then
// deletes. It fails for a document that fits in no request.
func (s *Store) split(w *Write) ([]step, error) {
	l := s.cfg.Limits.withDefaults()
	// Each transaction also has the directory compare, the marker compare
	// and a marker operation.
	opsRoom := l.MaxTxnOps - 3
	bytesRoom := l.MaxRequestBytes - requestOverhead
	var steps []step
	cur := step{guards: map[string]int64{}}
	ops, size := 0, 0
	add := func(key string, value []byte, del bool) error {
		cost, n := 1, len(key)+len(value)+16
		if _, ok := w.Guards[key]; ok {
			cost, n = cost+1, n+len(key)+16
		}
		if n > bytesRoom {
			return &TooLargeError{Key: key, Size: len(value), Limit: bytesRoom}
		}
		if ops+cost > opsRoom || size+n > bytesRoom {
			steps = append(steps, cur)
			cur, ops, size = step{guards: map[string]int64{}}, 0, 0
		}
		ops, size = ops+cost, size+n
		if g, ok := w.Guards[key]; ok {
			cur.guards[key] = g
		}
		if del {
			cur.dels = append(cur.dels, key)
		} else {
			cur.puts = append(cur.puts, key)
		}
		return nil
	}
	puts := make([]string, 0, len(w.Puts))
	for k := range w.Puts {
		puts = append(puts, k)
	}
	slices.Sort(puts)
	for _, k := range puts {
		if err := add(k, w.Puts[k], false); err != nil {
			return nil, err
		}
	}
	for _, k := range w.Deletes {
		if err := add(k, nil, true); err != nil {
			return nil, err
		}
	}
	// Guards of keys the write leaves alone go in the first transaction.
	for k, g := range w.Guards {
		if _, put := w.Puts[k]; !put && !slices.Contains(w.Deletes, k) {
			cur.guards[k] = g
			ops++
		}
	}
	if len(steps) == 0 && ops+len(w.Keep) <= opsRoom && size+len(w.Keep)*64 <= bytesRoom {
		for k, g := range w.Keep {
			cur.guards[k] = g
		}
	}
	return append(steps, cur), nil
}

// Transactions returns how many transactions Commit would take for w.
func (s *Store) Transactions(w *Write) (int, error) {
	steps, err := s.split(w)
	if err != nil {
		return 0, err
	}
	if len(steps) > 1 {
		return len(steps) + 1, nil // the marker's removal
	}
	return 1, nil
}

// txn runs one step: guarded by the directory's mod revision (nothing put
// under it after guardRev), the marker (absent when markerRev is 0, else
// created at markerRev) and the step's guards; then its operations and
// markerOp. It returns the revision written.
func (s *Store) txn(ctx context.Context, w *Write, st step, guardRev, markerRev int64, markerOp *clientv3.Op) (int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	dir, marker := registry.HooksDir(s.cfg.Prefix), registry.ApplyMarker(s.cfg.Prefix)
	var cmps []clientv3.Cmp
	if guardRev > 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(dir).WithPrefix(), "<", guardRev+1))
	}
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(marker), "=", markerRev))
	keys := make([]string, 0, len(st.guards))
	for k := range st.guards {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", st.guards[k]))
	}
	ops := make([]clientv3.Op, 0, len(st.puts)+len(st.dels)+1)
	for _, k := range st.puts {
		ops = append(ops, clientv3.OpPut(k, string(w.Puts[k])))
	}
	for _, k := range st.dels {
		ops = append(ops, clientv3.OpDelete(k))
	}
	if markerOp != nil {
		ops = append(ops, *markerOp)
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, s.wrap(err)
	}
	if !resp.Succeeded {
		return 0, s.conflict(ctx, w, guardRev, markerRev)
	}
	return resp.Header.Revision, nil
}

// Commit writes w and returns the revision of its last transaction. A
// write that fits in one transaction (etcd's --max-txn-ops and
// --max-request-bytes, see Limits) is written in one. A larger one is
// staged: the first transaction creates the marker (registry.ApplyMarker),
// which makes every daemon hold back changes, the next ones write the rest,
// each guarded against any other change since the previous one, and the
// last removes the marker, when daemons put everything in force at once.
// If the write stops part way, the marker stays, the daemons keep what was
// in force before, and a later Commit with Resume set (apply does it) or
// Abort finishes the job.
//
// When anything guarded changed, the transaction writes nothing and Commit
// returns a *ConflictError.
func (s *Store) Commit(ctx context.Context, w *Write) (int64, error) {
	steps, err := s.split(w)
	if err != nil {
		return 0, err
	}
	marker := registry.ApplyMarker(s.cfg.Prefix)
	markerRev := int64(0)
	if w.Resume != nil {
		markerRev = w.Resume.CreateRevision
	}
	if len(steps) == 1 {
		var end *clientv3.Op
		if w.Resume != nil {
			del := clientv3.OpDelete(marker)
			end = &del
		}
		return s.txn(ctx, w, steps[0], w.ReadRevision, markerRev, end)
	}
	m := Marker{ReadRevision: w.ReadRevision, Started: time.Now().UTC(), By: whoami(), Transactions: len(steps) + 1, Origin: w.Origin}
	if w.Resume != nil && w.Resume.ReadRevision > 0 {
		m.ReadRevision = w.Resume.ReadRevision // what was in force before stays the reference
	}
	b, _ := json.Marshal(m)
	start := clientv3.OpPut(marker, string(b))
	rev, err := s.txn(ctx, w, steps[0], w.ReadRevision, markerRev, &start)
	if err != nil {
		return 0, err
	}
	if markerRev == 0 {
		markerRev = rev
	}
	for i, st := range steps[1:] {
		if w.Step != nil {
			if err := w.Step(i+1, len(steps)+1); err != nil {
				return 0, &StagedError{Done: i + 1, Total: len(steps) + 1, Err: err}
			}
		}
		if rev, err = s.txn(ctx, w, st, rev, markerRev, nil); err != nil {
			return 0, &StagedError{Done: i + 1, Total: len(steps) + 1, Err: err}
		}
	}
	if w.Step != nil {
		if err := w.Step(len(steps), len(steps)+1); err != nil {
			return 0, &StagedError{Done: len(steps), Total: len(steps) + 1, Err: err}
		}
	}
	end := clientv3.OpDelete(marker)
	if rev, err = s.txn(ctx, w, step{}, rev, markerRev, &end); err != nil {
		return 0, &StagedError{Done: len(steps), Total: len(steps) + 1, Err: err}
	}
	return rev, nil
}

// StagedError is returned when a staged write stopped part way: the
// daemons keep the hooks in force before it until an apply resumes it, or
// apply --abort puts back what was there.
type StagedError struct {
	// Done is how many of Total transactions were written.
	Done, Total int
	Err         error
}

func (e *StagedError) Error() string {
	return fmt.Sprintf("staged apply stopped after %d of %d transactions: %v; daemons keep the hooks in force before it: "+
		"run apply again to resume it, or apply --abort to undo it", e.Done, e.Total, e.Err)
}

func (e *StagedError) Unwrap() error { return e.Err }

// Abort undoes a staged apply that stopped part way: it puts back every key
// under the hooks and utils directories as it was at the marker's read
// revision, then removes the marker. It returns the revision written, or 0
// when there was no staged apply.
func (s *Store) Abort(ctx context.Context) (int64, error) {
	m, err := s.Marker(ctx)
	if err != nil || m == nil {
		return 0, err
	}
	if m.ReadRevision <= 0 {
		return 0, errors.New("the staged apply's marker does not say what was in force before it; delete it by hand once etcd holds what you want")
	}
	gctx, cancel := s.timeout(ctx)
	defer cancel()
	w := &Write{Guards: map[string]int64{}, Puts: map[string][]byte{}, Resume: m}
	for _, dir := range []string{registry.HooksDir(s.cfg.Prefix), registry.UtilsDir(s.cfg.Prefix)} {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if w.ReadRevision > 0 {
			opts = append(opts, clientv3.WithRev(w.ReadRevision)) // both directories at one revision
		}
		cur, err := s.client.Get(gctx, dir, opts...)
		if err != nil {
			return 0, s.wrap(err)
		}
		w.ReadRevision = cur.Header.Revision
		old, err := s.client.Get(gctx, dir, clientv3.WithPrefix(), clientv3.WithRev(m.ReadRevision))
		if err != nil {
			return 0, fmt.Errorf("read %s at revision %d, before the staged apply: %w", dir, m.ReadRevision, s.wrap(err))
		}
		want := map[string][]byte{}
		for _, kv := range old.Kvs {
			want[string(kv.Key)] = kv.Value
		}
		for _, kv := range cur.Kvs {
			k := string(kv.Key)
			if k == registry.ApplyMarker(s.cfg.Prefix) {
				continue // Commit removes it
			}
			v, ok := want[k]
			switch {
			case !ok:
				w.Deletes = append(w.Deletes, k)
				w.Guards[k] = kv.ModRevision
			case string(v) != string(kv.Value):
				w.Puts[k] = v
				w.Guards[k] = kv.ModRevision
			}
			delete(want, k)
		}
		for k, v := range want {
			if k != registry.ApplyMarker(s.cfg.Prefix) {
				w.Puts[k] = v
			}
		}
	}
	return s.Commit(ctx, w)
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
