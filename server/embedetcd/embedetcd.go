// Package embedetcd runs a single-node etcd inside the current process, so
// the daemon works out of the box and tests run against a real etcd.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config says where the embedded etcd keeps its data and listens.
type Config struct {
	// Dir is the data directory. It is created when missing.
	Dir string
	// ClientAddr is the host:port clients (and etcdctl) connect to.
	ClientAddr string
	// PeerAddr is the host:port of the raft peer listener.
	PeerAddr string
	// Fast shortens raft timings (for tests; a single node needs no margin).
	Fast bool
	// LogLevel is etcd's own log level ("error" when empty). etcd logs
	// through zap, to stderr.
	LogLevel string
	// History is how long etcd keeps the revisions a key had: older ones
	// are compacted away, periodically (0: never, and the database grows
	// until etcd's 2 GiB quota makes it read-only).
	History time.Duration
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	level     zap.AtomicLevel
}

// Start starts etcd and waits until it serves clients or ctx ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.ClientAddr == "" || cfg.PeerAddr == "" {
		return nil, errors.New("embedetcd: Dir, ClientAddr and PeerAddr are required")
	}
	ec := embed.NewConfig()
	ec.Name = "apihooks"
	ec.Dir = cfg.Dir
	clientURL := url.URL{Scheme: "http", Host: cfg.ClientAddr}
	peerURL := url.URL{Scheme: "http", Host: cfg.PeerAddr}
	ec.ListenClientUrls = []url.URL{clientURL}
	ec.AdvertiseClientUrls = []url.URL{clientURL}
	ec.ListenPeerUrls = []url.URL{peerURL}
	ec.AdvertisePeerUrls = []url.URL{peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.Fast {
		ec.TickMs = 10
		ec.ElectionMs = 100
	}
	if cfg.History > 0 {
		ec.AutoCompactionMode = "periodic"
		ec.AutoCompactionRetention = cfg.History.String()
	}
	level := cfg.LogLevel
	if level == "" {
		level = "error"
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: log level %q: %w", level, err)
	}
	zc := zap.NewProductionConfig()
	atomicLevel := zap.NewAtomicLevelAt(lvl)
	zc.Level = atomicLevel
	zc.OutputPaths = []string{"stderr"}
	zc.ErrorOutputPaths = []string{"stderr"}
	zl, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("embedetcd: logger: %w", err)
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	ec.LogLevel = level

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: etcd failed: %w", err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedetcd: waiting for etcd: %w", ctx.Err())
	case <-time.After(time.Minute):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("embedetcd: etcd not ready after a minute")
	}
	return &Server{etcd: e, endpoints: []string{clientURL.Host}, level: atomicLevel}, nil
}

// Endpoints returns the client endpoints, as host:port.
func (s *Server) Endpoints() []string { return s.endpoints }

// Err reports a fatal error of the running server.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops etcd and waits for it. The errors etcd logs about its own
// listeners closing are silenced.
func (s *Server) Close() {
	s.level.SetLevel(zapcore.FatalLevel)
	s.etcd.Close()
}
