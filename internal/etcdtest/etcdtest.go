// Package etcdtest starts a real embedded etcd for tests, on free loopback
// ports, with a client connected to it. It can stop and restart the server
// on the same ports and data, to test outages.
package etcdtest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/apihooks/apihooks/server/embedetcd"
)

// Etcd is a running test etcd.
type Etcd struct {
	t      testing.TB
	cfg    embedetcd.Config
	mu     sync.Mutex
	server *embedetcd.Server
	// Client is connected to the server; it survives Stop/Start.
	Client *clientv3.Client
}

// Start starts an etcd for the test; it is closed when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	e := &Etcd{t: t, cfg: embedetcd.Config{
		Dir:        t.TempDir(),
		ClientAddr: FreeAddr(t),
		PeerAddr:   FreeAddr(t),
		Fast:       true,
		LogLevel:   "panic",
	}}
	e.Start()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	e.Client = cli
	t.Cleanup(func() {
		cli.Close()
		e.Stop()
	})
	return e
}

// Endpoints returns the client endpoints.
func (e *Etcd) Endpoints() []string { return []string{e.cfg.ClientAddr} }

// Stop stops the server, keeping its data; Start brings it back.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		e.server.Close()
		e.server = nil
	}
}

// Start (re)starts a stopped server on the same ports and data.
func (e *Etcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 50 { // a port just released may linger briefly
		e.server, err = embedetcd.Start(ctx, e.cfg)
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("start etcd: %v", err)
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
