package proxy_test

import (
	"io"
	"net"
	"sync"
	"testing"
)

// tcpRelay listens on loopback and copies bytes both ways between each
// connection it accepts and a connection of its own to backend, without
// reading them: the least any proxy in front of backend costs, one that
// knows nothing of HTTP/2 or gRPC. It stops when tb ends.
func tcpRelay(tb testing.TB, backend string) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			wg.Go(func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { io.Copy(c, b); c.(*net.TCPConn).CloseWrite() })
		}
	})
	tb.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}
