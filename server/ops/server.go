package ops

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// Config is what a Server serves.
type Config struct {
	// Addr is the listen address; it decides whether credentials are
	// required (any address but loopback).
	Addr string
	// AuthFile holds the credentials, one a line: "bearer TOKEN" or
	// "basic USER:PASSWORD"; blank lines and lines starting with # are
	// skipped. Empty: no authentication, on loopback only.
	AuthFile string
	// Page serves the API Hooks page and its API; without it, /metrics
	// only.
	Page bool
	// ReadOnly shows the page but refuses every write.
	ReadOnly bool
	// Telemetry's registry is served at /metrics; none when nil or when
	// its metrics are off.
	Telemetry *Telemetry
	// What the page shows and changes: the registry and quarantine in
	// force, the etcd client and prefix hooks live under, and the message
	// types of the methods served (for the method picker and the test
	// panel; nil when unknown).
	Registry interface {
		Status() registry.Status
		Snapshot() *registry.Snapshot
	}
	Quarantine *interceptor.Quarantine
	Etcd       *clientv3.Client
	Prefix     string
	Schema     func(ctx context.Context) (*schema.Source, error)
	// HookTimeout and MaxHookTimeout are the daemon's --hook-timeout and
	// --max-hook-timeout, which the page's checks and test runs use.
	HookTimeout, MaxHookTimeout time.Duration
	Logger                      *slog.Logger
}

// Server is the operators' HTTP listener.
type Server struct {
	cfg   Config
	log   *slog.Logger
	creds *credentials
	// csrf is the token every write must carry, in the X-CSRF-Token
	// header; the page reads it from /api/state, which a page of another
	// origin cannot read.
	csrf  string
	store *store.Store
	// lost reads the hooks for /api/state while the registry does not
	// follow etcd: it waits less for an etcd that is likely down, so the
	// page soon shows what the daemon runs.
	lost *store.Store
	h    http.Handler
}

// New checks cfg and returns a Server. It refuses the page on an address
// other than loopback without credentials, and bad credentials files.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.Prefix == "" {
		s.cfg.Prefix = registry.DefaultPrefix
	}
	if cfg.AuthFile != "" {
		c, err := readCredentials(cfg.AuthFile)
		if err != nil {
			return nil, err
		}
		s.creds = c
	}
	if cfg.Page && s.creds == nil && !IsLoopback(cfg.Addr) {
		return nil, fmt.Errorf("--http-listen %s is not a loopback address: the hooks page needs --http-auth-file there (or serve /metrics alone with --http-page=false)", cfg.Addr)
	}
	if cfg.Page {
		if cfg.Etcd == nil {
			return nil, errors.New("ops: the page needs an etcd client")
		}
		s.store = store.New(cfg.Etcd, store.Config{Prefix: s.cfg.Prefix, Endpoints: cfg.Etcd.Endpoints()})
		s.lost = store.New(cfg.Etcd, store.Config{Prefix: s.cfg.Prefix, Endpoints: cfg.Etcd.Endpoints(), CommandTimeout: lostTimeout})
	}
	b := make([]byte, 24)
	rand.Read(b)
	s.csrf = base64.RawURLEncoding.EncodeToString(b)

	mux := http.NewServeMux()
	if cfg.Telemetry != nil && cfg.Telemetry.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Telemetry.Registry, promhttp.HandlerOpts{ErrorLog: slogErrorLog{s.log}}))
	}
	if cfg.Page {
		sub, _ := fs.Sub(assets, "assets")
		mux.Handle("GET /", withHeaders(http.FileServerFS(sub)))
		s.routes(mux)
	}
	s.h = s.authenticate(mux)
	if cfg.Page && s.creds == nil {
		s.h = loopbackHostOnly(s.h)
	}
	return s, nil
}

// Handler returns the server's handler.
func (s *Server) Handler() http.Handler { return s.h }

// maxHookTimeout is the longest timeout a hook document may set here.
func (s *Server) maxHookTimeout() time.Duration {
	return cmp.Or(s.cfg.MaxHookTimeout, registry.DefaultMaxTimeout)
}

// Serve serves on lis until ctx ends, then stops within a few seconds.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	err := srv.Serve(lis)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// IsLoopback reports whether the listen address addr is on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHostOnly refuses a request whose Host is not a loopback name
// (localhost, *.localhost) or address. The page without credentials
// listens on loopback, but a page of another site whose name the browser
// was made to resolve to 127.0.0.1 (DNS rebinding) would reach it as its
// own origin: its Host header names that site.
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		ip := net.ParseIP(strings.Trim(host, "[]"))
		if host != "localhost" && !strings.HasSuffix(host, ".localhost") && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, fmt.Sprintf("Host %q is not a loopback name or address: without --http-auth-file, the page answers only to localhost and loopback addresses", r.Host), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// withHeaders adds the page's security headers: no framing, no resources
// from elsewhere.
func withHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// credentials are the accepted bearer tokens and basic-auth pairs, as
// SHA-256 digests, so comparing them takes the same time whatever they are.
type credentials struct {
	bearer [][32]byte
	basic  [][32]byte
}

func readCredentials(file string) (*credentials, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--http-auth-file: %w", err)
	}
	defer f.Close()
	c := &credentials{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, value, _ := strings.Cut(line, " ")
		value = strings.TrimSpace(value)
		switch strings.ToLower(kind) {
		case "bearer":
			if len(value) < 16 {
				return nil, fmt.Errorf("--http-auth-file %s line %d: a bearer token needs at least 16 characters", file, n)
			}
			c.bearer = append(c.bearer, sha256.Sum256([]byte(value)))
		case "basic":
			user, pass, ok := strings.Cut(value, ":")
			if !ok || user == "" || len(pass) < 8 {
				return nil, fmt.Errorf("--http-auth-file %s line %d: want basic USER:PASSWORD, with a password of at least 8 characters", file, n)
			}
			c.basic = append(c.basic, sha256.Sum256([]byte(value)))
		default:
			return nil, fmt.Errorf("--http-auth-file %s line %d: want \"bearer TOKEN\" or \"basic USER:PASSWORD\"", file, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--http-auth-file %s: %w", file, err)
	}
	if len(c.bearer)+len(c.basic) == 0 {
		return nil, fmt.Errorf("--http-auth-file %s holds no credentials", file)
	}
	return c, nil
}

func matchAny(list [][32]byte, v string) bool {
	d := sha256.Sum256([]byte(v))
	ok := 0
	for _, x := range list {
		ok |= subtle.ConstantTimeCompare(x[:], d[:])
	}
	return ok == 1
}

func (c *credentials) allow(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	// The scheme's name is case-insensitive (RFC 9110).
	if scheme, tok, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return matchAny(c.bearer, strings.TrimSpace(tok))
	}
	if user, pass, ok := r.BasicAuth(); ok {
		return matchAny(c.basic, user+":"+pass)
	}
	return false
}

// authenticate requires credentials on every path when there are some.
func (s *Server) authenticate(h http.Handler) http.Handler {
	if s.creds == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.creds.allow(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="apihooks", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkWrite refuses a POST, PUT or DELETE without the CSRF token or from a
// page of another origin, and a change in read-only mode. It writes the
// refusal and returns false.
func (s *Server) checkWrite(w http.ResponseWriter, r *http.Request, change bool) bool {
	if change && s.cfg.ReadOnly {
		writeError(w, http.StatusForbidden, "the page is read-only (--http-read-only)")
		return false
	}
	tok := r.Header.Get("X-CSRF-Token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
		writeError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token: reload the page")
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		writeError(w, http.StatusForbidden, "cross-site request refused")
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return false
		}
	}
	return true
}

type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Error(fmt.Sprint(v...)) }
