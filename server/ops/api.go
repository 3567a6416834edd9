package ops

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hooktest"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

//go:embed assets
var assets embed.FS

// maxBody bounds a request body: a hook document with its script, or a
// test's request.
const maxBody = 1 << 20

// lostTimeout bounds /api/state's read of etcd while the registry does not
// follow it.
const lostTimeout = time.Second

// DaemonsDir is where a fleet of daemons reports itself under the prefix;
// the page shows what it finds there.
func DaemonsDir(prefix string) string { return prefix + "daemons/" }

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("GET /api/methods", s.methods)
	mux.HandleFunc("GET /api/history", s.history)
	mux.HandleFunc("GET /api/hook", s.hook)
	// Validating and testing change nothing, but run a script: they are
	// writes for CSRF's sake.
	mux.HandleFunc("POST /api/validate", s.write(s.validate, false))
	mux.HandleFunc("POST /api/test", s.write(s.test, false))
	mux.HandleFunc("PUT /api/hooks", s.write(s.put, true))
	mux.HandleFunc("DELETE /api/hooks", s.write(s.delete, true))
	mux.HandleFunc("POST /api/enabled", s.write(s.setEnabled, true))
	mux.HandleFunc("POST /api/rollback", s.write(s.rollback, true))
}

// apiError is an error with its HTTP status.
type apiError struct {
	code int
	msg  string
	// line and column place a script error, when known.
	line, column int
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": msg})
}

// fail writes err, mapped to its HTTP status.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var ae *apiError
	var ce *store.ConflictError
	var ue *store.UnreachableError
	var cpe *store.CompactedError
	switch {
	case errors.As(err, &ae):
		body := map[string]any{"error": ae.msg}
		if ae.line > 0 {
			body["line"], body["column"] = ae.line, ae.column
		}
		writeJSON(w, ae.code, body)
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, "the hook changed since the page read it; nothing was written: reload and try again")
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &cpe):
		writeError(w, http.StatusGone, err.Error())
	case errors.As(err, &ue):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		s.log.Error("hooks page: request failed", "error", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// write wraps a handler of a JSON body: the CSRF check, the read-only
// check for a change (change is set), a bounded body, and errors.
func (s *Server) write(h func(ctx context.Context, body []byte) (any, error), change bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.checkWrite(w, r, change) {
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		out, err := h(r.Context(), body)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("request body: %v", err)
	}
	return b, nil
}

// hookView is one hook as the page shows it.
type hookView struct {
	Key         string          `json:"key"`
	Service     string          `json:"service"`
	Method      string          `json:"method"`
	Phase       string          `json:"phase"`
	Name        string          `json:"name"`
	Enabled     bool            `json:"enabled"`
	Order       int             `json:"order"`
	Description string          `json:"description,omitempty"`
	Lang        string          `json:"lang"`
	Timeout     string          `json:"timeout,omitempty"`
	OnError     string          `json:"onError,omitempty"`
	Isolation   string          `json:"isolation,omitempty"`
	Style       string          `json:"style,omitempty"`
	Owner       string          `json:"owner,omitempty"`
	Params      json.RawMessage `json:"params,omitempty"`
	Script      string          `json:"script,omitempty"`
	// Revision is the key's mod revision in etcd, the guard of a write.
	Revision int64 `json:"revision"`
	// Running is the revision of the version the daemon runs; zero when
	// it runs none.
	Running int64 `json:"running,omitempty"`
	// Error says why the stored document is invalid; Broken is set when
	// calls it covers fail for it (no valid version ever).
	Error  string `json:"error,omitempty"`
	Broken bool   `json:"broken,omitempty"`
	// Quarantined says until when and why, when the hook is.
	Quarantined string `json:"quarantined,omitempty"`
	// Ignored says why the daemon does not run the hook, valid or not,
	// when it ignores it: its service is not one the daemon hooks.
	Ignored string `json:"ignored,omitempty"`
}

type groupView struct {
	Target string     `json:"target"`
	Hooks  []hookView `json:"hooks"`
}

// daemonView is one record of the fleet registry: its key, its value, and
// the fields of a daemon's record when the value has them.
type daemonView struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Address  string `json:"address,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Synced   *bool  `json:"synced,omitempty"`
}

type stateView struct {
	CSRF         string `json:"csrf"`
	ReadOnly     bool   `json:"readOnly"`
	Revision     int64  `json:"revision"`
	EtcdRevision int64  `json:"etcdRevision"`
	// EtcdError says why the hooks in etcd could not be read; the hooks
	// shown are then those the daemon runs, and those it ignores, from
	// its memory.
	EtcdError    string       `json:"etcdError,omitempty"`
	Synced       bool         `json:"synced"`
	FromSnapshot bool         `json:"fromSnapshot"`
	LastSync     string       `json:"lastSync,omitempty"`
	Daemons      []daemonView `json:"daemons,omitempty"`
	Groups       []groupView  `json:"groups"`
}

var phaseRank = map[string]int{"pre": 0, "post": 1, "error": 2}

// state answers the hooks in etcd, each with what the daemon makes of it,
// and the daemon's own state. While etcd does not answer, the hooks are
// those the daemon runs from memory, with etcd's error.
func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	st := stateView{CSRF: s.csrf, ReadOnly: s.cfg.ReadOnly, Groups: []groupView{}}
	var snap *registry.Snapshot
	running := map[string]*registry.Hook{}
	ignored := map[string]string{}
	if s.cfg.Registry != nil {
		rs := s.cfg.Registry.Status()
		st.Revision, st.Synced, st.FromSnapshot = rs.Revision, rs.Synced, rs.FromSnapshot
		if !rs.LastSync.IsZero() {
			st.LastSync = rs.LastSync.UTC().Format(time.RFC3339)
		}
		snap = s.cfg.Registry.Snapshot()
		for _, h := range snap.Hooks() {
			running[h.ID] = h
		}
		// "id: reason"; a cache configuration's id ("cache/...") names
		// no hook.
		for _, ig := range rs.Ignored {
			if id, reason, ok := strings.Cut(ig, ": "); ok {
				ignored[id] = reason
			}
		}
	}
	read := s.store
	if s.cfg.Registry != nil && !st.Synced {
		read = s.lost
	}
	entries, rev, err := read.List(r.Context())
	switch {
	case err == nil:
		st.EtcdRevision = rev
		st.Daemons = s.daemons(r.Context())
	case snap == nil || r.Context().Err() != nil:
		s.fail(w, err)
		return
	default:
		st.EtcdError = err.Error()
		entries = s.inMemory(snap, ignored)
	}
	quarantined := map[string]string{}
	if s.cfg.Quarantine != nil {
		for _, q := range s.cfg.Quarantine.List(s.cfg.Registry) {
			quarantined[q.ID] = fmt.Sprintf("until %s: %s", q.Until.UTC().Format(time.TimeOnly), q.Reason)
		}
	}
	groups := map[string]*groupView{}
	for _, e := range entries {
		v := s.documentView(e)
		// Scripts are read one at a time, when the page opens a hook
		// (/api/hook): the page reads the state every few seconds.
		v.Script = ""
		id := v.Key
		v.Quarantined, v.Ignored = quarantined[id], ignored[id]
		if h := running[id]; h != nil {
			if h.Err != nil {
				v.Broken, v.Error = true, h.Err.Error()
			} else {
				v.Running = h.Revision
			}
		}
		target := e.Key.Service + "/" + e.Key.Method
		if e.KeyErr != nil {
			target = "(invalid keys)"
		}
		g := groups[target]
		if g == nil {
			g = &groupView{Target: target}
			groups[target] = g
		}
		g.Hooks = append(g.Hooks, v)
	}
	for _, g := range groups {
		slices.SortFunc(g.Hooks, func(a, b hookView) int {
			return cmp.Or(cmp.Compare(phaseRank[a.Phase], phaseRank[b.Phase]), cmp.Compare(a.Order, b.Order), strings.Compare(a.Key, b.Key))
		})
		st.Groups = append(st.Groups, *g)
	}
	slices.SortFunc(st.Groups, func(a, b groupView) int { return strings.Compare(a.Target, b.Target) })
	writeJSON(w, http.StatusOK, st)
}

// inMemory returns the hooks of snap, and those the daemon ignores (by ID,
// with why), as entries of etcd with what the daemon knows of them: what
// the page shows while etcd does not answer.
func (s *Server) inMemory(snap *registry.Snapshot, ignored map[string]string) []store.Entry {
	dir := registry.HooksDir(s.cfg.Prefix)
	var out []store.Entry
	held := map[string]bool{}
	for _, h := range snap.Hooks() {
		held[h.ID] = true
		out = append(out, store.Entry{Path: dir + h.ID, Key: h.Key, Doc: h.Doc, DocErr: h.Err, ModRevision: h.Revision})
	}
	for id := range ignored {
		if held[id] {
			continue // in proxy mode, a hook on a method the backend does not serve
		}
		k, err := registry.ParseKey(s.cfg.Prefix, dir+id)
		if err != nil {
			continue // a response cache configuration's
		}
		out = append(out, store.Entry{Path: dir + id, Key: k})
	}
	return out
}

// daemons reads the fleet registry, when there is one.
func (s *Server) daemons(ctx context.Context) []daemonView {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	dir := DaemonsDir(s.cfg.Prefix)
	resp, err := s.cfg.Etcd.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithLimit(200))
	if err != nil {
		return nil
	}
	var out []daemonView
	for _, kv := range resp.Kvs {
		v := string(kv.Value)
		if len(v) > 2000 {
			v = v[:2000] + "…"
		}
		dv := daemonView{Name: strings.TrimPrefix(string(kv.Key), dir), Value: v}
		json.Unmarshal(kv.Value, &dv) // the fields it has, if any
		dv.Name, dv.Value = strings.TrimPrefix(string(kv.Key), dir), v
		out = append(out, dv)
	}
	return out
}

type methodView struct {
	Service   string `json:"service"`
	Method    string `json:"method"`
	Streaming string `json:"streaming,omitempty"`
	Input     string `json:"input"`
	Output    string `json:"output"`
}

func (s *Server) schema(ctx context.Context) (*schema.Source, error) {
	if s.cfg.Schema == nil {
		return nil, &apiError{code: http.StatusNotImplemented, msg: "this daemon does not know its methods' descriptors"}
	}
	src, err := s.cfg.Schema(ctx)
	if err != nil {
		return nil, &apiError{code: http.StatusServiceUnavailable, msg: "descriptors: " + err.Error()}
	}
	return src, nil
}

func (s *Server) methods(w http.ResponseWriter, r *http.Request) {
	src, err := s.schema(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []methodView{}
	for _, svc := range src.Services() {
		if !registry.DefaultHookable(svc) {
			continue
		}
		sd, err := src.Service(svc)
		if err != nil {
			continue
		}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			out = append(out, methodView{Service: svc, Method: string(md.Name()), Streaming: schema.Streaming(md),
				Input: string(md.Input().FullName()), Output: string(md.Output().FullName())})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// docRequest is a hook and its document, as the page sends them.
type docRequest struct {
	Key      string          `json:"key"`
	Document json.RawMessage `json:"document"`
	// Revision guards a write: the key's mod revision the page read, 0
	// for a hook that must not exist yet.
	Revision int64 `json:"revision"`
}

func (s *Server) parseKey(id string) (registry.Key, error) {
	k, err := registry.ParseKey(s.cfg.Prefix, registry.HooksDir(s.cfg.Prefix)+id)
	if err != nil {
		return k, badRequest("hook %q: %v", id, err)
	}
	return k, nil
}

// build decodes, checks and compiles a document as the daemon would, and
// checks the key against the methods served, as hookctl does. It returns
// the document to store.
func (s *Server) build(ctx context.Context, id string, doc json.RawMessage) (registry.Key, []byte, error) {
	k, err := s.parseKey(id)
	if err != nil {
		return k, nil, err
	}
	if src, err := s.schema(ctx); err == nil {
		if err := src.CheckHook(k); err != nil {
			return k, nil, badRequest("hook %s: %v", id, err)
		}
	}
	d, err := registry.DecodeDocumentWithin(doc, s.maxHookTimeout())
	if err != nil {
		return k, nil, badRequest("%v", err)
	}
	raw, err := hookdoc.Encode(k, d, s.maxHookTimeout())
	if err != nil {
		ae := badRequest("%v", err)
		if pos, ok := hookdoc.ScriptPosition(err); ok {
			ae.msg = fmt.Sprintf("document: field script: line %d, column %d: %s", pos.Line, pos.Column, pos.Msg)
			ae.line, ae.column = pos.Line, pos.Column
		}
		return k, nil, ae
	}
	return k, raw, nil
}

func decode[T any](body []byte) (*T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, badRequest("request: %v", err)
	}
	return &v, nil
}

func (s *Server) validate(ctx context.Context, body []byte) (any, error) {
	req, err := decode[docRequest](body)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.build(ctx, req.Key, req.Document); err != nil {
		return nil, err
	}
	return map[string]any{"ok": true}, nil
}

func (s *Server) put(ctx context.Context, body []byte) (any, error) {
	req, err := decode[docRequest](body)
	if err != nil {
		return nil, err
	}
	if req.Revision < 0 {
		return nil, badRequest("revision: %d: want the hook's revision as read, or 0 to create it", req.Revision)
	}
	k, raw, err := s.build(ctx, req.Key, req.Document)
	if err != nil {
		return nil, err
	}
	path := s.store.Path(k)
	rev, err := s.store.Commit(ctx, &store.Write{Guards: map[string]int64{path: req.Revision}, Puts: map[string][]byte{path: raw}})
	if err != nil {
		return nil, err
	}
	s.log.Info("hooks page: hook written", "hook", req.Key, "revision", rev, "previous", req.Revision)
	return map[string]any{"revision": rev}, nil
}

type keyRequest struct {
	Key        string `json:"key"`
	Revision   int64  `json:"revision"`
	Enabled    bool   `json:"enabled"`
	ToRevision int64  `json:"toRevision"`
}

func (s *Server) delete(ctx context.Context, body []byte) (any, error) {
	req, err := decode[keyRequest](body)
	if err != nil {
		return nil, err
	}
	k, err := s.parseKey(req.Key)
	if err != nil {
		return nil, err
	}
	if req.Revision <= 0 {
		return nil, badRequest("revision: required, the hook's revision as read")
	}
	path := s.store.Path(k)
	rev, err := s.store.Commit(ctx, &store.Write{Guards: map[string]int64{path: req.Revision}, Deletes: []string{path}})
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		// Gone meanwhile (deleted twice) is not a change to reload.
		if _, _, gerr := s.store.Get(ctx, k); errors.Is(gerr, store.ErrNotFound) {
			return nil, &apiError{code: http.StatusNotFound, msg: fmt.Sprintf("hook %s does not exist (deleted meanwhile?)", req.Key)}
		}
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("hooks page: hook deleted", "hook", req.Key, "revision", rev)
	return map[string]any{"revision": rev}, nil
}

// current reads a hook and checks it is still at the revision the page read.
func (s *Server) current(ctx context.Context, req *keyRequest) (registry.Key, *store.Entry, error) {
	k, err := s.parseKey(req.Key)
	if err != nil {
		return k, nil, err
	}
	cur, _, err := s.store.Get(ctx, k)
	if err != nil {
		return k, nil, err
	}
	if req.Revision != cur.ModRevision {
		return k, nil, &store.ConflictError{ReadRevision: req.Revision}
	}
	return k, cur, nil
}

func (s *Server) setEnabled(ctx context.Context, body []byte) (any, error) {
	req, err := decode[keyRequest](body)
	if err != nil {
		return nil, err
	}
	k, cur, err := s.current(ctx, req)
	if err != nil {
		return nil, err
	}
	if cur.DocErr != nil {
		return nil, badRequest("hook %s: its document is invalid (%v): edit it instead", req.Key, cur.DocErr)
	}
	d := *cur.Doc
	enabled := req.Enabled
	d.Enabled = &enabled
	if enabled {
		d.Enabled = nil // the default
	}
	raw, err := hookdoc.Encode(k, &d, s.maxHookTimeout())
	if err != nil {
		return nil, badRequest("%v", err)
	}
	rev, err := s.store.Commit(ctx, &store.Write{Guards: map[string]int64{cur.Path: cur.ModRevision}, Puts: map[string][]byte{cur.Path: raw}})
	if err != nil {
		return nil, err
	}
	s.log.Info("hooks page: hook enabled or disabled", "hook", req.Key, "enabled", enabled, "revision", rev)
	return map[string]any{"revision": rev}, nil
}

type versionView struct {
	Revision int64  `json:"revision"`
	Version  int64  `json:"version"`
	Change   string `json:"change"`
	Error    string `json:"error,omitempty"`
	Document string `json:"document"`
}

// documentView shows e: its key and its document's fields.
func (s *Server) documentView(e store.Entry) hookView {
	id := strings.TrimPrefix(e.Path, registry.HooksDir(s.cfg.Prefix))
	v := hookView{Key: id, Revision: e.ModRevision, Service: e.Key.Service, Method: e.Key.Method,
		Phase: string(e.Key.Phase), Name: e.Key.Name}
	switch {
	case e.KeyErr != nil:
		v.Error = e.KeyErr.Error()
	case e.DocErr != nil:
		v.Error = e.DocErr.Error()
	}
	if d := e.Doc; d != nil {
		v.Enabled, v.Order, v.Description, v.Lang = d.IsEnabled(), d.Order, d.Description, string(cmp.Or(d.Lang, engine.JS))
		v.Timeout, v.OnError, v.Isolation, v.Params, v.Script = d.Timeout, string(d.OnError), string(d.Isolation), d.Params, d.Script
		v.Style, v.Owner = string(d.Style), d.Owner
	}
	return v
}

// hook answers one hook's document, its script included.
func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	k, err := s.parseKey(r.URL.Query().Get("key"))
	if err != nil {
		s.fail(w, err)
		return
	}
	e, _, err := s.store.Get(r.Context(), k)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.documentView(*e))
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	k, err := s.parseKey(r.URL.Query().Get("key"))
	if err != nil {
		s.fail(w, err)
		return
	}
	h, err := s.store.History(r.Context(), k, 50)
	if err != nil {
		s.fail(w, err)
		return
	}
	out := map[string]any{"truncated": h.Truncated, "compacted": h.Compacted, "missing": h.Missing}
	versions := []versionView{}
	for i, e := range h.Versions {
		v := versionView{Revision: e.ModRevision, Version: e.Version, Document: string(e.Raw)}
		if e.DocErr != nil {
			v.Error = e.DocErr.Error()
		}
		switch {
		case i+1 < len(h.Versions) && e.Doc != nil && h.Versions[i+1].Doc != nil:
			v.Change = hookdoc.Summary(h.Versions[i+1].Doc, e.Doc)
		case i+1 == len(h.Versions) && h.Complete:
			v.Change = "created"
		case e.DocErr != nil:
			v.Change = "invalid document"
		default:
			v.Change = "changed"
		}
		versions = append(versions, v)
	}
	out["versions"] = versions
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) rollback(ctx context.Context, body []byte) (any, error) {
	req, err := decode[keyRequest](body)
	if err != nil {
		return nil, err
	}
	k, cur, err := s.current(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.ToRevision <= 0 || req.ToRevision > cur.ModRevision {
		return nil, badRequest("toRevision %d: want a revision of the hook's history, at most %d", req.ToRevision, cur.ModRevision)
	}
	target, err := s.store.GetAt(ctx, k, req.ToRevision)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, badRequest("hook %s did not exist at revision %d", req.Key, req.ToRevision)
	case err != nil:
		return nil, err
	}
	if target.DocErr != nil {
		return nil, badRequest("the version of %s at revision %d is invalid, not rolling back to it: %v", req.Key, target.ModRevision, target.DocErr)
	}
	if _, err := registry.BuildWithin(k, target.Raw, s.maxHookTimeout()); err != nil {
		return nil, badRequest("the version of %s at revision %d: %v", req.Key, target.ModRevision, err)
	}
	if cur.DocErr == nil && hookdoc.Equal(cur.Doc, target.Doc) {
		return map[string]any{"revision": cur.ModRevision, "change": "no change"}, nil
	}
	rev, err := s.store.Commit(ctx, &store.Write{Guards: map[string]int64{cur.Path: cur.ModRevision}, Puts: map[string][]byte{cur.Path: target.Raw}})
	if err != nil {
		return nil, err
	}
	change := "replaced an invalid document"
	if cur.DocErr == nil {
		change = hookdoc.Summary(cur.Doc, target.Doc)
	}
	s.log.Info("hooks page: hook rolled back", "hook", req.Key, "to_revision", target.ModRevision, "revision", rev)
	return map[string]any{"revision": rev, "change": change}, nil
}

type testRequest struct {
	Key      string              `json:"key"`
	Document json.RawMessage     `json:"document"`
	Service  string              `json:"service"`
	Method   string              `json:"method"`
	Request  json.RawMessage     `json:"request"`
	Response json.RawMessage     `json:"response"`
	Metadata map[string][]string `json:"metadata"`
	Error    *hooktest.Status    `json:"error"`
}

// test runs a hook on a sample call exactly as hookctl test does.
func (s *Server) test(ctx context.Context, body []byte) (any, error) {
	req, err := decode[testRequest](body)
	if err != nil {
		return nil, err
	}
	k, raw, err := s.build(ctx, req.Key, req.Document)
	if err != nil {
		return nil, err
	}
	h, err := registry.Build(k, raw)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	src, err := s.schema(ctx)
	if err != nil {
		return nil, err
	}
	svc, method := cmp.Or(req.Service, k.Service), cmp.Or(req.Method, k.Method)
	if svc == registry.Wildcard || method == registry.Wildcard {
		return nil, badRequest("method: a hook on %s/%s needs a concrete method to test with", k.Service, k.Method)
	}
	run := hooktest.NewRunner(src, hooktest.WithDefaultTimeout(cmp.Or(s.cfg.HookTimeout, engine.DefaultTimeout)))
	res, err := run.Run(ctx, &hooktest.Input{Hook: h, Service: svc, Method: method, Metadata: req.Metadata,
		Request: req.Request, Response: req.Response, Error: req.Error})
	var ie *hooktest.InputError
	if errors.As(err, &ie) {
		return nil, badRequest("%v", ie.Err)
	}
	return res, err
}
