package proxy_test

import (
	"log/slog"
	"testing"

	"github.com/apihooks/apihooks/interceptor/isolate"
)

// testPool returns a pool of this test binary's workers (the pool's
// default command), closed when t ends.
func testPool(t *testing.T) *isolate.Pool {
	t.Helper()
	p := isolate.New(isolate.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(p.Close)
	return p
}
