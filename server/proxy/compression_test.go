package proxy_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/types/dynamicpb"
)

// headersSeen records the compression and the grpc-accept-encoding of the
// last headers a gRPC end received.
type headersSeen struct {
	mu          sync.Mutex
	compression string
	accepts     []string
}

func (h *headersSeen) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *headersSeen) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InHeader); ok {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.compression = in.Compression
		md, _ := metadata.FromIncomingContext(ctx)
		h.accepts = append(md.Get("grpc-accept-encoding"), in.Header.Get("grpc-accept-encoding")...)
	}
}
func (h *headersSeen) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *headersSeen) HandleConn(context.Context, stats.ConnStats) {}

func (h *headersSeen) last() (string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.compression, slices.Clone(h.accepts)
}

// TestCompressionCrossesTheProxy: a client's call compressed with gzip or
// deflate goes through and comes back compressed the same way, whether its
// method has hooks or not; the backend hears only of compressions the
// proxy reads, whatever the client accepts, and is sent calls it can read
// whatever it has (uncompressed).
func TestCompressionCrossesTheProxy(t *testing.T) {
	backend := &headersSeen{}
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"), grpc.StatsHandler(backend))
	w := newWorld(t, addr, nil)
	client := &headersSeen{}
	conn := dial(t, w.addr, grpc.WithStatsHandler(client))
	// A client that would also read a compression the proxy does not.
	ctx := metadata.AppendToOutgoingContext(callCtx(t), "grpc-accept-encoding", "x-unknown")

	call := func(t *testing.T) {
		// The proxy registers deflate, which grpc-go does not have.
		for _, name := range []string{gzip.Name, "deflate"} {
			resp := dynamicpb.NewMessage(echoMsg(2))
			if err := conn.Invoke(ctx, sayMethod, newMsg(strings.Repeat("a", 1000), ""), resp, grpc.UseCompressor(name)); err != nil {
				t.Fatalf("Say with %s: %v", name, err)
			}
			if got := nameOf(resp); got != strings.Repeat("a", 1000) && got != "hi "+strings.Repeat("a", 1000) {
				t.Fatalf("Say with %s answered %.20q...", name, got)
			}
			got, accepts := backend.last()
			if got != "" {
				t.Errorf("a call compressed with %s reached the backend compressed with %q; want it uncompressed", name, got)
			}
			for _, a := range accepts {
				if strings.Contains(a, "x-unknown") {
					t.Errorf("the backend was told the client accepts %q: it may answer in a compression the proxy cannot read", a)
				}
			}
			if got, _ := client.last(); got != name {
				t.Errorf("a call compressed with %s was answered compressed with %q", name, got)
			}

			chat, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, chatMethod, grpc.UseCompressor(name))
			if err != nil {
				t.Fatal(err)
			}
			if err := chat.SendMsg(newMsg("b", "")); err != nil {
				t.Fatalf("Chat with %s: send: %v", name, err)
			}
			if err := chat.RecvMsg(dynamicpb.NewMessage(echoMsg(2))); err != nil {
				t.Fatalf("Chat with %s: receive: %v", name, err)
			}
			chat.CloseSend()
			if got, _ := backend.last(); got != "" {
				t.Errorf("a stream compressed with %s reached the backend compressed with %q; want it uncompressed", name, got)
			}
		}
	}
	t.Run("without hooks", call)
	w.setHooks(t, map[string]string{sayKey + "pre/hi": doc(`module.exports = c => { c.request.name = "hi " + c.request.name }`)})
	t.Run("with a pre-hook", call)
}
