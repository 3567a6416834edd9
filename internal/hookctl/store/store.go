// Package store is hookctl's access to the hooks in etcd: reading them with
// the revisions they were read at, writing guarded by those revisions (so a
// change made meanwhile by someone else is never overwritten), and walking a
// hook's history. Every call is bounded by a timeout, and etcd failures come
// back as the errors below, which say what happened in words a person can act
// on.
package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/fleet"
)

// Config says how to reach etcd, with etcdctl's names.
type Config struct {
	Endpoints                   []string
	CACert, Cert, Key           string
	User, Password              string
	DialTimeout, CommandTimeout time.Duration
	// Prefix is the etcd prefix hooks live under (<prefix>hooks/...).
	Prefix string
	// Limits are etcd's limits writes must respect.
	Limits Limits
	// MaxHookTimeout is the daemons' --max-hook-timeout: a stored document
	// asking for longer is invalid. registry.DefaultMaxTimeout when zero.
	MaxHookTimeout time.Duration
}

// UnreachableError is returned when etcd cannot be reached, or takes the
// connection but does not answer in time (Err is then a *NoAnswerError).
type UnreachableError struct {
	Endpoints []string
	Err       error
}

func (e *UnreachableError) Error() string {
	var na *NoAnswerError
	if errors.As(e.Err, &na) {
		return fmt.Sprintf("etcd at %s %v", strings.Join(e.Endpoints, ","), e.Err)
	}
	return fmt.Sprintf("etcd at %s: %v", strings.Join(e.Endpoints, ","), e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// NoAnswerError is etcd taking a connection but not answering a request
// within a timeout: it has no leader (quorum lost), or is overloaded.
type NoAnswerError struct {
	// Timeout is how long the request was given; What names it: "dial
	// timeout" or "command timeout".
	Timeout time.Duration
	What    string
}

func (e *NoAnswerError) Error() string {
	return fmt.Sprintf("did not answer within the %s (%v): connected, but it has no leader (quorum lost), or is overloaded", e.What, e.Timeout)
}

// timedOut describes a request to client that found no answer within
// timeout (named by what): a *NoAnswerError when the connection is up, or
// a plain error that says no answer came.
func timedOut(client *clientv3.Client, what string, timeout time.Duration) error {
	if client.ActiveConnection().GetState() == connectivity.Ready {
		return &NoAnswerError{Timeout: timeout, What: what}
	}
	return fmt.Errorf("no answer within the %s (%v)", what, timeout)
}

// ConflictError is returned when a guarded write found that etcd changed
// since it was read: nothing was written.
type ConflictError struct {
	// Changed lists the keys (without prefix) that changed, when known.
	Changed []string
	// ReadRevision is the revision the write was planned from.
	ReadRevision int64
	// Apply is the marker of another staged apply in progress, if any.
	Apply *Marker
}

// maxNamed is how many changed keys a ConflictError names.
const maxNamed = 10

func (e *ConflictError) Error() string {
	if m := e.Apply; m != nil {
		return fmt.Sprintf("a staged apply is in progress (%s) and daemons hold back changes until it completes; nothing was written: "+
			"apply its manifest again to complete it, or apply --abort to undo it", m.Describe())
	}
	msg := "etcd changed since it was read"
	if e.ReadRevision > 0 {
		msg += fmt.Sprintf(" at revision %d", e.ReadRevision)
	}
	if n := len(e.Changed); n > maxNamed {
		msg += " (" + strings.Join(e.Changed[:maxNamed], ", ") + fmt.Sprintf(", and %d more)", n-maxNamed)
	} else if n > 0 {
		msg += " (" + strings.Join(e.Changed, ", ") + ")"
	}
	return msg + "; nothing was written: run the command again"
}

// RefusedError is returned when etcd answered and refused the request: its
// Reason is etcd's (permission denied, authentication failed, request too
// large...). Running the command again does not help.
type RefusedError struct {
	Reason string
	Err    error
}

func (e *RefusedError) Error() string { return "etcd refused the request: " + e.Reason }

func (e *RefusedError) Unwrap() error { return e.Err }

// refusal returns the *RefusedError of an etcd refusal, or nil.
func refusal(err error) error {
	reasons := []struct {
		err    error
		reason string
	}{
		{rpctypes.ErrPermissionDenied, "permission denied (the etcd user lacks a role granting this prefix)"},
		{rpctypes.ErrAuthFailed, "authentication failed (check --user and --password)"},
		{rpctypes.ErrInvalidAuthToken, "invalid auth token"},
		{rpctypes.ErrUserEmpty, "authentication is enabled: give --user"},
		{rpctypes.ErrRequestTooLarge, "request is too large (etcd's --max-request-bytes; lower hookctl's --max-request-bytes to match)"},
		{rpctypes.ErrTooManyOps, "too many operations in one transaction (etcd's --max-txn-ops; lower hookctl's --max-txn-ops to match)"},
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return &RefusedError{Reason: r.reason, Err: err}
		}
	}
	switch status.Code(err) {
	case codes.ResourceExhausted:
		return &RefusedError{Reason: "request is too large: " + status.Convert(err).Message(), Err: err}
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.FailedPrecondition:
		return &RefusedError{Reason: status.Convert(err).Message(), Err: err}
	}
	return nil
}

// ErrNotFound is returned for a hook that is not in etcd.
var ErrNotFound = errors.New("no such hook in etcd")

// CompactedError is returned when a revision asked for is older than what
// etcd still keeps.
type CompactedError struct {
	// Revision is the revision asked for.
	Revision int64
	// CompactRevision is etcd's compaction point when known: history before it
	// is gone.
	CompactRevision int64
}

func (e *CompactedError) Error() string {
	if e.CompactRevision > 0 {
		return fmt.Sprintf("revision %d was compacted: etcd keeps history from revision %d on", e.Revision, e.CompactRevision)
	}
	return fmt.Sprintf("revision %d was compacted: etcd no longer keeps it", e.Revision)
}

// Store reads and writes hooks.
type Store struct {
	client *clientv3.Client
	cfg    Config
}

// Open connects to etcd and checks, within the dial timeout, that it
// answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = registry.DefaultPrefix
	}
	tlsCfg, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Username:    cfg.User,
		Password:    cfg.Password,
		Context:     context.WithoutCancel(ctx),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		if refused := refusal(err); refused != nil {
			return nil, refused
		}
		return nil, &UnreachableError{Endpoints: cfg.Endpoints, Err: err}
	}
	s := &Store{client: client, cfg: cfg}
	probe, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := client.Get(probe, registry.HooksDir(cfg.Prefix), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
			err = timedOut(client, "dial timeout", cfg.DialTimeout)
		}
		client.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if refused := refusal(err); refused != nil {
			return nil, refused
		}
		if tlsCfg != nil {
			if refused := tlsRefusal(ctx, cfg, tlsCfg); refused != nil {
				return nil, refused
			}
		}
		return nil, &UnreachableError{Endpoints: cfg.Endpoints, Err: err}
	}
	return s, nil
}

// New returns a Store over a client that is already connected (a daemon's
// own); cfg's Endpoints only name it in errors. Close closes the client.
func New(client *clientv3.Client, cfg Config) *Store {
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = registry.DefaultPrefix
	}
	return &Store{client: client, cfg: cfg}
}

func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.CACert == "" && cfg.Cert == "" && cfg.Key == "" {
		return nil, nil
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	info := transport.TLSInfo{CertFile: cfg.Cert, KeyFile: cfg.Key, TrustedCAFile: cfg.CACert}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: %w", err)
	}
	return c, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.client.Close() }

// Prefix returns the etcd prefix.
func (s *Store) Prefix() string { return s.cfg.Prefix }

// Path returns the etcd key of a hook.
func (s *Store) Path(k registry.Key) string { return k.Path(s.cfg.Prefix) }

// wrap turns an etcd error into one of the package's errors.
func (s *Store) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return &CompactedError{}
	}
	if refused := refusal(err); refused != nil {
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			p := s.cfg.Prefix
			refused.(*RefusedError).Reason = fmt.Sprintf("permission denied: the etcd user lacks a role granting this under %s "+
				"(hookctl reads %s, %s, %s and %s, and writes the first three)", p,
				registry.HooksDir(p), registry.UtilsDir(p), registry.CacheDir(p), fleet.Dir(p))
		}
		return refused
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		err = timedOut(s.client, "command timeout", s.cfg.CommandTimeout)
	}
	return &UnreachableError{Endpoints: s.cfg.Endpoints, Err: err}
}

func (s *Store) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CommandTimeout)
}

// Entry is one key under the hooks directory.
type Entry struct {
	// Path is the etcd key.
	Path string
	// Key is the parsed key; KeyErr is set when the key is not a valid hook
	// key (Key may then be partly set, as registry.ParseKey returns it).
	Key    registry.Key
	KeyErr error
	// Raw is the stored value; Doc is it decoded, or nil with DocErr.
	Raw    []byte
	Doc    *registry.Document
	DocErr error
	// ModRevision, CreateRevision and Version are etcd's.
	ModRevision, CreateRevision, Version int64
}

// Valid reports whether the entry is a valid key with a valid document.
func (e *Entry) Valid() bool { return e.KeyErr == nil && e.DocErr == nil }

func (s *Store) entry(path string, value []byte, mod, create, version int64) Entry {
	e := Entry{Path: path, Raw: value, ModRevision: mod, CreateRevision: create, Version: version}
	e.Key, e.KeyErr = registry.ParseKey(s.cfg.Prefix, path)
	e.Doc, e.DocErr = registry.DecodeDocumentWithin(value, cmp.Or(s.cfg.MaxHookTimeout, registry.DefaultMaxTimeout))
	if e.DocErr == nil && e.KeyErr == nil {
		if _, err := registry.CompileWithUtils(e.Key, e.Doc, registry.StubUtils()); err != nil {
			e.DocErr = err
		}
	}
	return e
}

// List reads every key under the hooks directory at one revision, which it
// returns.
func (s *Store) List(ctx context.Context) ([]Entry, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, registry.HooksDir(s.cfg.Prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	entries := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if string(kv.Key) == registry.ApplyMarker(s.cfg.Prefix) {
			continue // a staged apply's, not a hook
		}
		entries = append(entries, s.entry(string(kv.Key), kv.Value, kv.ModRevision, kv.CreateRevision, kv.Version))
	}
	return entries, resp.Header.Revision, nil
}

// Get reads one hook. It returns ErrNotFound when it is absent, with the
// revision read at.
func (s *Store) Get(ctx context.Context, k registry.Key) (*Entry, int64, error) {
	return s.getAt(ctx, k, 0)
}

func (s *Store) getAt(ctx context.Context, k registry.Key, rev int64) (*Entry, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.client.Get(ctx, s.Path(k), opts...)
	if err != nil {
		err = s.wrap(err)
		var ce *CompactedError
		if errors.As(err, &ce) {
			ce.Revision = rev
			ce.CompactRevision = s.compactRevision(ctx)
		}
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, ErrNotFound
	}
	kv := resp.Kvs[0]
	e := s.entry(string(kv.Key), kv.Value, kv.ModRevision, kv.CreateRevision, kv.Version)
	return &e, resp.Header.Revision, nil
}

// compactRevision asks etcd where its history starts, by opening a watch at
// revision 1, which etcd cancels naming its compaction revision. It is only
// called after etcd reported a compaction, and returns 0 when it cannot tell.
func (s *Store) compactRevision(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	wch := s.client.Watch(ctx, registry.HooksDir(s.cfg.Prefix), clientv3.WithPrefix(), clientv3.WithRev(1))
	for resp := range wch {
		if resp.CompactRevision > 0 {
			return resp.CompactRevision
		}
		if resp.Err() != nil || len(resp.Events) > 0 {
			break
		}
	}
	return 0
}

// Write is a set of changes written in one transaction, guarded by what was
// read.
type Write struct {
	// ReadRevision, when set, guards the whole hooks directory: nothing under
	// it may have been put since (no key may have a newer mod revision, which
	// also catches keys created meanwhile).
	ReadRevision int64
	// Guards maps etcd keys to the mod revision each must still have; 0 means
	// the key must still be absent. They catch deletions, which the directory
	// guard cannot see.
	Guards map[string]int64
	// Puts maps etcd keys to their new values.
	Puts map[string][]byte
	// Deletes lists etcd keys to delete.
	Deletes []string
	// Keep maps etcd keys the write leaves alone but depends on to their
	// mod revisions. They are guarded when the write fits in one
	// transaction with room to spare, which catches their deletion
	// meanwhile; a staged write guards only what it changes.
	Keep map[string]int64
	// Resume, when set, is the marker of a staged apply that stopped part
	// way, which this write takes over and completes.
	Resume *Marker
	// Origin is recorded in the marker of a staged write.
	Origin Origin
	// Step, when set, is called before each transaction of a staged write
	// after the first, with how many were written of how many; an error
	// stops the write there (tests use it to stop part way).
	Step func(done, total int) error
}

// conflict finds which guarded keys changed, for the error message.
func (s *Store) conflict(ctx context.Context, w *Write, readRev, markerRev int64) error {
	ce := &ConflictError{ReadRevision: readRev}
	if m, err := s.Marker(ctx); err == nil && m != nil && m.CreateRevision != markerRev {
		ce.Apply = m
	}
	seen := map[string]bool{}
	note := func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		ce.Changed = append(ce.Changed, strings.TrimPrefix(path, registry.HooksDir(s.cfg.Prefix)))
	}
	if readRev > 0 {
		resp, err := s.client.Get(ctx, registry.HooksDir(s.cfg.Prefix), clientv3.WithPrefix(),
			clientv3.WithMinModRev(readRev+1), clientv3.WithKeysOnly())
		if err == nil {
			for _, kv := range resp.Kvs {
				if string(kv.Key) != registry.ApplyMarker(s.cfg.Prefix) {
					note(string(kv.Key))
				}
			}
		}
	}
	for k, rev := range w.Guards {
		resp, err := s.client.Get(ctx, k, clientv3.WithKeysOnly())
		if err != nil {
			continue
		}
		now := int64(0)
		if len(resp.Kvs) > 0 {
			now = resp.Kvs[0].ModRevision
		}
		if now != rev {
			note(k)
		}
	}
	slices.Sort(ce.Changed)
	return ce
}

// Daemons returns the records of the live daemons (see package fleet), with
// the revision read at.
func (s *Store) Daemons(ctx context.Context) ([]fleet.Record, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	recs, rev, err := fleet.List(ctx, s.client, s.cfg.Prefix)
	if err != nil {
		return nil, 0, s.wrap(err)
	}
	return recs, rev, nil
}

// HookKeys returns the keys a daemon loads (under the hooks, response
// cache and utils directories), each with its mod revision, as etcd held
// them at revision rev (0: now), and the revision read.
func (s *Store) HookKeys(ctx context.Context, rev int64) (map[string]int64, int64, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	keys := map[string]int64{}
	for _, dir := range s.loadedDirs() {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.client.Get(ctx, dir, opts...)
		if err != nil {
			err = s.wrap(err)
			var ce *CompactedError
			if errors.As(err, &ce) {
				ce.Revision = rev
			}
			return nil, 0, err
		}
		// The other directories are read at the same revision.
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			keys[string(kv.Key)] = kv.ModRevision
		}
	}
	return keys, rev, nil
}

// loadedDirs are the directories whose keys a daemon loads: hooks,
// response cache configurations and utils.
func (s *Store) loadedDirs() []string {
	return []string{registry.HooksDir(s.cfg.Prefix), registry.CacheDir(s.cfg.Prefix), registry.UtilsDir(s.cfg.Prefix)}
}

// NewestChange returns the revision of the newest change a daemon that has
// revision from in force has not loaded, when the keys it loads are now
// (at revision rev) those of now; 0 when it has every change. A change is
// a put, seen in a key's mod revision, or a deletion, which leaves no key
// behind (nor any trace outside etcd's history, for a key created after
// from): deletions are read from etcd's history, with a watch, after the
// newest put newer than from (an older one cannot be the newest change).
// When etcd has compacted that history, they are read from its compaction
// revision on: a deletion before it can no longer be seen.
func (s *Store) NewestChange(ctx context.Context, now map[string]int64, rev, from int64) (int64, error) {
	if from >= rev {
		return 0, nil
	}
	var newest int64
	for _, mod := range now {
		if mod > from {
			newest = max(newest, mod)
		}
	}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	seen := func(ev *clientv3.Event) { newest = max(newest, ev.Kv.ModRevision) }
	for start := max(from, newest) + 1; start <= rev; {
		compacted, err := s.watchDeletes(ctx, s.loadedDirs(), []clientv3.OpOption{clientv3.WithPrefix()}, start, rev, seen)
		if err != nil {
			return 0, err
		}
		if compacted == 0 {
			break
		}
		start = compacted
	}
	return newest, nil
}

// tlsRefusal finds why etcd did not answer over TLS, which the etcd client
// reports only as a timeout: it makes a TLS handshake with each endpoint
// and returns the first handshake failure (an x509 error, as etcdctl
// prints it), or nil.
// refusedAfterHandshake returns the alert a server sends once the
// handshake is over, which is when a TLS 1.3 server refuses a client
// certificate it requires (or one it does not trust); nil when none comes
// within a moment.
func refusedAfterHandshake(conn net.Conn) error {
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := conn.Read(make([]byte, 1))
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return err
	}
	return nil
}

func tlsRefusal(ctx context.Context, cfg Config, tlsCfg *tls.Config) error {
	for _, ep := range cfg.Endpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		c := tlsCfg.Clone()
		if c.ServerName == "" {
			c.ServerName, _, _ = net.SplitHostPort(host)
		}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: cfg.DialTimeout}, Config: c}
		hctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		conn, err := d.DialContext(hctx, "tcp", host)
		cancel()
		if err == nil {
			err = refusedAfterHandshake(conn)
			conn.Close()
			if err == nil {
				continue
			}
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, syscall.ECONNREFUSED) {
			continue // not a TLS failure
		}
		return &RefusedError{Reason: fmt.Sprintf("TLS handshake with %s failed: %v", host, err), Err: err}
	}
	return nil
}
