package server_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
)

// stuckHandler is a log handler that blocks each record whose message is
// "stuck" until release is closed: a hook that logs it is stuck in native
// code, as one inside a huge built-in operation would be. Other records
// are dropped.
type stuckHandler struct {
	slog.Handler
	entered chan struct{}
	release chan struct{}
}

func (stuckHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h stuckHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "stuck" {
		return nil
	}
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

func (h stuckHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stuckHandler) WithGroup(string) slog.Handler      { return h }

// SIGTERM with a hook run stuck in native code still ends the daemon within
// its shutdown timeout, with the embedded etcd closed and every port free.
func TestShutdownAbandonsRunsStuckInNativeCode(t *testing.T) {
	h := stuckHandler{Handler: slog.DiscardHandler, entered: make(chan struct{}, 1), release: make(chan struct{})}
	// Released only once the daemon has stopped, so that the leak check
	// at the end finds the run's goroutine gone.
	t.Cleanup(func() { close(h.release) })
	d := startDaemonWith(t, func(c *server.Config) { c.Logger, c.ShutdownTimeout = slog.New(h), 3*time.Second })
	ctx := context.Background()
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/stuck",
		`{"script": "module.exports = (ctx) => { ctx.log.info('stuck') }", "timeout": "5s"}`); err != nil {
		t.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	deadline := time.Now().Add(startTimeout)
	for entered := false; !entered; {
		callCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			client.SendEvent(callCtx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
		}()
		select {
		case <-h.entered:
			entered = true
		case <-done: // the hook was not loaded yet
			if time.Now().After(deadline) {
				t.Fatal("the hook never ran")
			}
		}
	}

	d.stop(t) // fails the test unless the daemon stops

	for _, addr := range d.addrs {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after shutdown, %s is still taken: %v", addr, err)
		}
		lis.Close()
	}
}
