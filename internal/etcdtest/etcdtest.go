// Package etcdtest starts a real embedded etcd for tests, on free loopback
// ports, with a client connected to it. It can stop and restart the server
// on the same ports and data, to test outages.
package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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
	e := &Etcd{t: t, cfg: embedetcd.Config{Dir: t.TempDir(), Fast: true, LogLevel: "panic"}}
	// A port found free may be taken before etcd binds it (by another
	// process on a busy machine): try others.
	for attempt := 1; ; attempt++ {
		e.cfg.ClientAddr, e.cfg.PeerAddr = FreeAddr(t), FreeAddr(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		server, err := embedetcd.Start(ctx, e.cfg)
		cancel()
		if err == nil {
			e.server = server
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			t.Fatalf("start etcd: %v", err)
		}
	}
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

// FreeAddr returns a loopback host:port that was free a moment ago. It is
// below the range the kernel takes the local ports of outgoing connections
// from, so that the test's own connections (a client dialling again and
// again) cannot take it before it is bound.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(ephemeralStart()-10000))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralStart returns the first port of the kernel's range for the
// local ports of outgoing connections (Linux's default: 32768).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return 32768
	}
	return n
}
