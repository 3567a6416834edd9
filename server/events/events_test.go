package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/apihooks/apihooks/internal/logtest"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// server is a Service behind a real gRPC server on loopback, with a client.
type server struct {
	svc    *events.Service
	grpc   *grpc.Server
	client eventsv1.EventServiceClient
	logs   *syncBuffer
	// ended receives the status each streaming handler returned.
	ended chan error

	addr     string
	stopOnce sync.Once
	conn     *grpc.ClientConn
}

// startServer starts a server and checks, once it is stopped, that every
// goroutine started since (gRPC server and client, stream handlers, etcd
// watches and their etcd-side counterparts) is gone. The etcd server and
// client started before are left to TestMain.
func startServer(t *testing.T, cli *clientv3.Client, opts ...events.Option) *server {
	t.Helper()
	if _, err := cli.Get(t.Context(), "warmup"); err != nil { // connect first
		t.Fatalf("etcd get: %v", err)
	}
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	return startServerUnchecked(t, cli, opts...)
}

// startServerUnchecked starts a server without the goroutine check, for
// tests that restart etcd and so start new etcd goroutines.
func startServerUnchecked(t *testing.T, cli *clientv3.Client, opts ...events.Option) *server {
	t.Helper()
	s := &server{logs: &syncBuffer{}, ended: make(chan error, 100)}
	opts = append([]events.Option{events.WithLogger(slog.New(slog.NewTextHandler(s.logs, nil)))}, opts...)
	s.svc = events.New(cli, opts...)
	s.grpc = grpc.NewServer(grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			s.ended <- err
			return err
		}))
	eventsv1.RegisterEventServiceServer(s.grpc, s.svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.grpc.Serve(lis)
	}()
	s.conn, err = grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	s.client = eventsv1.NewEventServiceClient(s.conn)
	t.Cleanup(func() {
		s.stop(t)
		<-served
	})
	return s
}

// stop closes the client, closes the Service and gracefully stops the gRPC
// server, failing the test if draining takes too long.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.stopOnce.Do(func() {
		s.conn.Close()
		s.svc.Close()
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			s.grpc.Stop()
			t.Errorf("GracefulStop did not return within 10s")
		}
	})
}

// handlerEnded waits for a streaming handler to return and gives its error.
func (s *server) handlerEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("streaming handler still running after 10s")
		return nil
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatalf("structpb.NewStruct: %v", err)
	}
	return s
}

func send(t *testing.T, ctx context.Context, c eventsv1.EventServiceClient, user, typ string) string {
	t.Helper()
	resp, err := c.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: user, EventType: typ})
	if err != nil {
		t.Fatalf("SendEvent(%q, %q): got error %v; want nil", user, typ, err)
	}
	return resp.GetEventId()
}

func get(t *testing.T, ctx context.Context, c eventsv1.EventServiceClient, user string) []*eventsv1.Event {
	t.Helper()
	resp, err := c.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: user})
	if err != nil {
		t.Fatalf("GetEvents(%q): got error %v; want nil", user, err)
	}
	return resp.GetEvents()
}

func ids(evs []*eventsv1.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.GetEventId()
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: got non-status error %v; want %v %q", what, err, code, msg)
	}
	if st.Code() != code || !strings.HasPrefix(st.Message(), msg) {
		t.Fatalf("%s: got %v %q; want %v %q", what, st.Code(), st.Message(), code, msg)
	}
}

func recv(t *testing.T, stream grpc.ServerStreamingClient[eventsv1.Event]) *eventsv1.Event {
	t.Helper()
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: got error %v; want an event", err)
	}
	return ev
}

func TestSendThenGet(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	reqs := []*eventsv1.SendEventRequest{
		{ToUserId: "alice", EventType: "message", EventData: mustStruct(t, map[string]any{"text": "hi", "n": 1.5})},
		{ToUserId: "alice", EventType: "message", EventData: mustStruct(t, map[string]any{"nested": map[string]any{"ok": true}, "list": []any{"a", nil}})},
		{ToUserId: "alice", EventType: "ping"},
	}
	before := time.Now()
	var sent []string
	for _, req := range reqs {
		resp, err := s.client.SendEvent(ctx, req)
		if err != nil {
			t.Fatalf("SendEvent: got error %v; want nil", err)
		}
		if _, err := uuid.Parse(resp.GetEventId()); err != nil {
			t.Fatalf("event id %q: got parse error %v; want a UUID", resp.GetEventId(), err)
		}
		sent = append(sent, resp.GetEventId())
	}
	after := time.Now()

	got := get(t, ctx, s.client, "alice")
	if !equalStrings(ids(got), sent) {
		t.Fatalf("GetEvents ids: got %v; want %v", ids(got), sent)
	}
	seen := map[string]bool{}
	for i, ev := range got {
		if seen[ev.GetEventId()] {
			t.Errorf("event %d: got duplicate id %s; want unique ids", i, ev.GetEventId())
		}
		seen[ev.GetEventId()] = true
		if i > 0 && ev.GetEventId() <= got[i-1].GetEventId() {
			t.Errorf("event %d: got id %s after %s; want ascending ids", i, ev.GetEventId(), got[i-1].GetEventId())
		}
		if ev.GetToUserId() != reqs[i].GetToUserId() {
			t.Errorf("event %d to_user_id: got %q; want %q", i, ev.GetToUserId(), reqs[i].GetToUserId())
		}
		if ev.GetEventType() != reqs[i].GetEventType() {
			t.Errorf("event %d event_type: got %q; want %q", i, ev.GetEventType(), reqs[i].GetEventType())
		}
		if !proto.Equal(ev.GetEventData(), reqs[i].GetEventData()) {
			t.Errorf("event %d event_data: got %v; want %v", i, ev.GetEventData(), reqs[i].GetEventData())
		}
		if ev.GetCreatedAt() == nil {
			t.Fatalf("event %d created_at: got nil; want set", i)
		}
		at := ev.GetCreatedAt().AsTime()
		if at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)) {
			t.Errorf("event %d created_at: got %v; want between %v and %v", i, at, before, after)
		}
	}

	if got := get(t, ctx, s.client, "nobody"); len(got) != 0 {
		t.Errorf("GetEvents(nobody): got %d events; want 0", len(got))
	}
}

func TestValidation(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	long := strings.Repeat("x", events.MaxIDBytes+1)
	longest := strings.Repeat("x", events.MaxIDBytes)
	big := mustStruct(t, map[string]any{"blob": strings.Repeat("y", events.MaxEventBytes)})
	nan := &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(math.NaN())}}

	sendCall := func(req *eventsv1.SendEventRequest) func() error {
		return func() error { _, err := s.client.SendEvent(ctx, req); return err }
	}
	getCall := func(user string) func() error {
		return func() error { _, err := s.client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: user}); return err }
	}
	streamCall := func(user string) func() error {
		return func() error {
			stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: user})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}
	}

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string // prefix of the status message
	}{
		{"send/no user", sendCall(&eventsv1.SendEventRequest{EventType: "t"}), codes.InvalidArgument, "to_user_id is required"},
		{"send/slash in user", sendCall(&eventsv1.SendEventRequest{ToUserId: "a/b", EventType: "t"}), codes.InvalidArgument, `to_user_id must not contain "/"`},
		{"send/long user", sendCall(&eventsv1.SendEventRequest{ToUserId: long, EventType: "t"}), codes.InvalidArgument, "to_user_id is longer than 256 bytes"},
		{"send/max user", sendCall(&eventsv1.SendEventRequest{ToUserId: longest, EventType: "t"}), codes.OK, ""},
		{"send/no type", sendCall(&eventsv1.SendEventRequest{ToUserId: "u"}), codes.InvalidArgument, "event_type is required"},
		{"send/long type", sendCall(&eventsv1.SendEventRequest{ToUserId: "u", EventType: long}), codes.InvalidArgument, "event_type is longer than 256 bytes"},
		{"send/slash in type", sendCall(&eventsv1.SendEventRequest{ToUserId: "u", EventType: "chat/message"}), codes.OK, ""},
		{"send/NaN data", sendCall(&eventsv1.SendEventRequest{ToUserId: "u", EventType: "t", EventData: nan}), codes.InvalidArgument, "event_data cannot be encoded as JSON"},
		{"send/huge data", sendCall(&eventsv1.SendEventRequest{ToUserId: "u", EventType: "t", EventData: big}), codes.InvalidArgument, "event_data is too large"},
		{"get/no user", getCall(""), codes.InvalidArgument, "user_id is required"},
		{"get/slash in user", getCall("a/"), codes.InvalidArgument, `user_id must not contain "/"`},
		{"get/long user", getCall(long), codes.InvalidArgument, "user_id is longer than 256 bytes"},
		{"stream/no user", streamCall(""), codes.InvalidArgument, "user_id is required"},
		{"stream/slash in user", streamCall("/"), codes.InvalidArgument, `user_id must not contain "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("got error %v; want nil", err)
				}
				return
			}
			wantStatus(t, "error", err, tt.code, tt.msg)
		})
	}
	for range 2 { // the two StreamEvents calls
		wantStatus(t, "StreamEvents handler", s.handlerEnded(t), codes.InvalidArgument, "user_id")
	}
}

func TestEventsSurviveRestart(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := ctxT(t)

	first := startServerUnchecked(t, e.Client)
	want := []string{
		send(t, ctx, first.client, "carol", "a"),
		send(t, ctx, first.client, "carol", "b"),
	}
	first.stop(t)

	// Restart etcd itself too, and come back through a new etcd client.
	e.Stop()
	e.Start()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { cli.Close() })

	second := startServerUnchecked(t, cli)
	if got := ids(get(t, ctx, second.client, "carol")); !equalStrings(got, want) {
		t.Fatalf("GetEvents after restart: got %v; want %v", got, want)
	}
	third := send(t, ctx, second.client, "carol", "c")
	if third <= want[1] {
		t.Errorf("event id after restart: got %s; want greater than %s", third, want[1])
	}
}

func TestStreamEvents(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	stored := []string{send(t, ctx, s.client, "bob", "one"), send(t, ctx, s.client, "bob", "two")}
	send(t, ctx, s.client, "bobby", "not for bob")

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.StreamEvents(sctx, &eventsv1.StreamEventsRequest{UserId: "bob"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	for i, id := range stored {
		if got := recv(t, stream); got.GetEventId() != id || got.GetToUserId() != "bob" {
			t.Fatalf("stored event %d: got %s for %q; want %s for bob", i, got.GetEventId(), got.GetToUserId(), id)
		}
	}

	// Live events: bobby's must not reach bob's stream.
	send(t, ctx, s.client, "bobby", "still not for bob")
	live := []string{send(t, ctx, s.client, "bob", "three"), send(t, ctx, s.client, "bob", "four")}
	for i, id := range live {
		got := recv(t, stream)
		if got.GetEventId() != id || got.GetEventType() == "" || got.GetCreatedAt() == nil {
			t.Fatalf("live event %d: got %v; want id %s with type and created_at", i, got, id)
		}
	}

	cancel()
	_, err = stream.Recv()
	wantStatus(t, "Recv after cancel", err, codes.Canceled, "")
	wantStatus(t, "StreamEvents handler after cancel", s.handlerEnded(t), codes.Canceled, "")
}

func TestStreamEventsEmptyThenLive(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "erin"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	// The stream may start watching after this event is stored; either way
	// it must arrive exactly once.
	id := send(t, ctx, s.client, "erin", "hello")
	if got := recv(t, stream); got.GetEventId() != id {
		t.Fatalf("first event: got %s; want %s", got.GetEventId(), id)
	}
	id2 := send(t, ctx, s.client, "erin", "again")
	if got := recv(t, stream); got.GetEventId() != id2 {
		t.Fatalf("second event: got %s; want %s", got.GetEventId(), id2)
	}
}

func TestStreamEventsManyStored(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	// More than one page of stored events.
	want := publishN(t, ctx, e.Client, "/apihooks/", "frank", 1203)
	stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "frank"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	for i, id := range want {
		if got := recv(t, stream); got.GetEventId() != id {
			t.Fatalf("stored event %d: got %s; want %s", i, got.GetEventId(), id)
		}
	}
	live := send(t, ctx, s.client, "frank", "live")
	if got := recv(t, stream); got.GetEventId() != live {
		t.Fatalf("live event: got %s; want %s", got.GetEventId(), live)
	}
}

func TestStreamEventsWatchCompacted(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	const n = 20
	data := mustStruct(t, map[string]any{"blob": strings.Repeat("z", 50_000)})
	for range n {
		if _, err := s.client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "olga", EventType: "big", EventData: data}); err != nil {
			t.Fatalf("SendEvent: got error %v; want nil", err)
		}
	}

	// Fixed small flow-control windows: while the client does not read, the
	// handler blocks sending the stored events, before it starts watching.
	conn, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10),
		grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	stream, err := eventsv1.NewEventServiceClient(conn).StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "olga"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	recv(t, stream) // the stored events have been read at some revision R

	// Compact past R+1, the revision the watch will start from.
	send(t, ctx, s.client, "olga", "after the read")
	resp, err := e.Client.Put(ctx, "/unrelated", "x")
	if err != nil {
		t.Fatalf("etcd put: %v", err)
	}
	if _, err := e.Client.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("etcd compact: %v", err)
	}

	for range n - 1 {
		recv(t, stream)
	}
	_, err = stream.Recv()
	wantStatus(t, "Recv after compaction", err, codes.Unavailable, "event watch compacted")
	wantStatus(t, "StreamEvents handler after compaction", s.handlerEnded(t), codes.Unavailable, "event watch compacted")
}

func TestCloseEndsStreams(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	send(t, ctx, s.client, "gina", "stored")
	stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "gina"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	recv(t, stream)
	// A live event shows the stream is watching.
	live := send(t, ctx, s.client, "gina", "live")
	if got := recv(t, stream); got.GetEventId() != live {
		t.Fatalf("live event: got %s; want %s", got.GetEventId(), live)
	}

	s.svc.Close()
	_, err = stream.Recv()
	wantStatus(t, "Recv after Close", err, codes.Unavailable, "server is shutting down")
	wantStatus(t, "StreamEvents handler after Close", s.handlerEnded(t), codes.Unavailable, "server is shutting down")

	later, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "gina"})
	if err != nil {
		t.Fatalf("StreamEvents after Close: got error %v; want nil from the call", err)
	}
	_, err = later.Recv()
	wantStatus(t, "Recv on a stream opened after Close", err, codes.Unavailable, "server is shutting down")
	s.svc.Close() // a second Close is harmless

	// Unary calls keep working until the gRPC server stops.
	send(t, ctx, s.client, "gina", "after close")
}

func TestGracefulStopDrainsLiveStreams(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	var streams []grpc.ServerStreamingClient[eventsv1.Event]
	for i := range 3 {
		user := fmt.Sprintf("user%d", i)
		send(t, ctx, s.client, user, "stored")
		stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: user})
		if err != nil {
			t.Fatalf("StreamEvents: got error %v; want nil", err)
		}
		recv(t, stream)
		live := send(t, ctx, s.client, user, "live")
		if got := recv(t, stream); got.GetEventId() != live {
			t.Fatalf("live event: got %s; want %s", got.GetEventId(), live)
		}
		streams = append(streams, stream)
	}
	s.svc.Close()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
		t.Fatalf("GracefulStop after Close: still draining after 5s; want prompt return")
	}
	for i, stream := range streams {
		_, err := stream.Recv()
		wantStatus(t, fmt.Sprintf("stream %d", i), err, codes.Unavailable, "server is shutting down")
	}
}

func TestPublishEvents(t *testing.T) {
	tests := []struct {
		name      string
		reqs      []*eventsv1.SendEventRequest
		wantCount int32
		wantCode  codes.Code
		wantMsg   string
		wantKept  int // events stored for "hank" afterwards
	}{
		{
			name:      "all valid",
			reqs:      []*eventsv1.SendEventRequest{{ToUserId: "hank", EventType: "a"}, {ToUserId: "hank", EventType: "b"}, {ToUserId: "ivy", EventType: "c"}},
			wantCount: 3,
			wantKept:  2,
		},
		{
			name:     "none",
			wantKept: 0,
		},
		{
			name:     "invalid third message",
			reqs:     []*eventsv1.SendEventRequest{{ToUserId: "hank", EventType: "a"}, {ToUserId: "hank", EventType: "b"}, {EventType: "c"}, {ToUserId: "hank", EventType: "d"}},
			wantCode: codes.InvalidArgument,
			wantMsg:  "message 2: to_user_id is required",
			wantKept: 2,
		},
		{
			name:     "invalid first message",
			reqs:     []*eventsv1.SendEventRequest{{ToUserId: "hank"}},
			wantCode: codes.InvalidArgument,
			wantMsg:  "message 0: event_type is required",
			wantKept: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := etcdtest.Start(t)
			s := startServer(t, e.Client)
			ctx := ctxT(t)

			stream, err := s.client.PublishEvents(ctx)
			if err != nil {
				t.Fatalf("PublishEvents: got error %v; want nil", err)
			}
			for _, req := range tt.reqs {
				if err := stream.Send(req); err != nil {
					break // the server ended the stream; CloseAndRecv reports why
				}
			}
			resp, err := stream.CloseAndRecv()
			if tt.wantCode != codes.OK {
				wantStatus(t, "CloseAndRecv", err, tt.wantCode, tt.wantMsg)
				if st := status.Convert(err); st.Message() != tt.wantMsg {
					t.Errorf("message: got %q; want %q", st.Message(), tt.wantMsg)
				}
			} else {
				if err != nil {
					t.Fatalf("CloseAndRecv: got error %v; want nil", err)
				}
				if resp.GetCount() != tt.wantCount {
					t.Errorf("count: got %d; want %d", resp.GetCount(), tt.wantCount)
				}
			}
			if got := len(get(t, ctx, s.client, "hank")); got != tt.wantKept {
				t.Errorf("events stored for hank: got %d; want %d", got, tt.wantKept)
			}
		})
	}
}

func TestUsersDoNotLeak(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	want := map[string][]string{}
	for _, user := range []string{"bob", "bobby", "bo", "bob.x", "bob-"} {
		for i := range 2 {
			want[user] = append(want[user], send(t, ctx, s.client, user, fmt.Sprintf("e%d", i)))
		}
	}
	for user, w := range want {
		got := get(t, ctx, s.client, user)
		if !equalStrings(ids(got), w) {
			t.Errorf("GetEvents(%q): got %v; want %v", user, ids(got), w)
		}
		for _, ev := range got {
			if ev.GetToUserId() != user {
				t.Errorf("GetEvents(%q): got an event for %q", user, ev.GetToUserId())
			}
		}
	}
}

func TestGetEventsLimit(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	all := publishN(t, ctx, e.Client, "/apihooks/", "kim", events.MaxGetEvents+7)
	got := ids(get(t, ctx, s.client, "kim"))
	if want := all[len(all)-events.MaxGetEvents:]; !equalStrings(got, want) {
		t.Fatalf("GetEvents: got %d ids from %v; want the newest %d, from %s, ascending",
			len(got), first(got), events.MaxGetEvents, want[0])
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return s[0]
}

// publishN stores n events for user directly in etcd, in the service's
// format, and returns their ids in ascending order.
func publishN(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix, user string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	vals := make([]string, n)
	for i := range n {
		id, err := uuid.NewV7()
		if err != nil {
			t.Fatalf("uuid.NewV7: %v", err)
		}
		ids[i] = id.String()
		b, err := protojson.Marshal(&eventsv1.Event{
			EventId: ids[i], ToUserId: user, EventType: "bulk", CreatedAt: timestamppb.Now(),
			EventData: mustStruct(t, map[string]any{"i": float64(i)}),
		})
		if err != nil {
			t.Fatalf("protojson.Marshal: %v", err)
		}
		vals[i] = string(b)
	}
	const batch = 100 // below etcd's default of 128 operations per txn
	for lo := 0; lo < n; lo += batch {
		var ops []clientv3.Op
		for i := lo; i < min(lo+batch, n); i++ {
			ops = append(ops, clientv3.OpPut(prefix+"events/"+user+"/"+ids[i], vals[i]))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("etcd txn: %v", err)
		}
	}
	return ids
}

func TestUndecodableEventsAreSkipped(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServer(t, e.Client)
	ctx := ctxT(t)

	// Sorts before any UUIDv7 key of the user.
	if _, err := e.Client.Put(ctx, "/apihooks/events/lee/0-garbage", "not json"); err != nil {
		t.Fatalf("etcd put: %v", err)
	}
	good := send(t, ctx, s.client, "lee", "ok")
	if got := ids(get(t, ctx, s.client, "lee")); !equalStrings(got, []string{good}) {
		t.Fatalf("GetEvents: got %v; want [%s]", got, good)
	}

	stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "lee"})
	if err != nil {
		t.Fatalf("StreamEvents: got error %v; want nil", err)
	}
	if got := recv(t, stream); got.GetEventId() != good {
		t.Fatalf("stored event: got %s; want %s", got.GetEventId(), good)
	}
	if _, err := e.Client.Put(ctx, "/apihooks/events/lee/1-garbage", "{"); err != nil {
		t.Fatalf("etcd put: %v", err)
	}
	live := send(t, ctx, s.client, "lee", "live")
	if got := recv(t, stream); got.GetEventId() != live {
		t.Fatalf("live event: got %s; want %s", got.GetEventId(), live)
	}
	if logs := s.logs.String(); strings.Count(logs, "skipping undecodable event") < 3 {
		t.Errorf("logs: got %q; want 3 or more lines about undecodable events", logs)
	}
}

func TestStorageFormat(t *testing.T) {
	e := etcdtest.Start(t)
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	s := startServer(t, e.Client, events.WithPrefix("/custom/"), events.WithClock(func() time.Time { return at }))
	ctx := ctxT(t)

	id := send(t, ctx, s.client, "max", "typed")
	resp, err := e.Client.Get(ctx, "/custom/events/max/"+id)
	if err != nil {
		t.Fatalf("etcd get: %v", err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("keys at /custom/events/max/%s: got %d; want 1", id, len(resp.Kvs))
	}
	want := fmt.Sprintf(`{"eventId":%q,"toUserId":"max","eventType":"typed","createdAt":"2024-05-06T07:08:09Z"}`, id)
	var got bytes.Buffer
	for _, c := range resp.Kvs[0].Value { // protojson may vary spacing
		if c != ' ' {
			got.WriteByte(c)
		}
	}
	if got.String() != want {
		t.Errorf("stored value: got %s; want %s", got.String(), want)
	}
	if resp, err := e.Client.Get(ctx, "/apihooks/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("keys under the default prefix: got %v (err %v); want 0", resp.Count, err)
	}
	evs := get(t, ctx, s.client, "max")
	if len(evs) != 1 || !evs[0].GetCreatedAt().AsTime().Equal(at) {
		t.Errorf("GetEvents: got %v; want one event created at %v", evs, at)
	}
}

func TestEtcdUnavailable(t *testing.T) {
	e := etcdtest.Start(t)
	s := startServerUnchecked(t, e.Client, events.WithRequestTimeout(300*time.Millisecond))
	ctx := ctxT(t)
	send(t, ctx, s.client, "nina", "before")

	e.Stop()
	_, err := s.client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "nina", EventType: "t"})
	wantStatus(t, "SendEvent with etcd down", err, codes.Unavailable, "storing event: event store unavailable")
	_, err = s.client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "nina"})
	wantStatus(t, "GetEvents with etcd down", err, codes.Unavailable, "reading events: event store unavailable")
	stream, err := s.client.StreamEvents(ctx, &eventsv1.StreamEventsRequest{UserId: "nina"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantStatus(t, "StreamEvents with etcd down", err, codes.Unavailable, "reading events: event store unavailable")
	wantStatus(t, "StreamEvents handler with etcd down", s.handlerEnded(t), codes.Unavailable, "")

	// The caller's own deadline wins over the request timeout.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = s.client.SendEvent(short, &eventsv1.SendEventRequest{ToUserId: "nina", EventType: "t"})
	wantStatus(t, "SendEvent with a short deadline", err, codes.DeadlineExceeded, "")

	e.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "nina", EventType: "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SendEvent after etcd restart: got error %v; want nil", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(get(t, ctx, s.client, "nina")); got != 2 {
		t.Errorf("events after etcd restart: got %d; want 2", got)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("test ran out of time")
	}
}
