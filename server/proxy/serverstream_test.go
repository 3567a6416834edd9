package proxy_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server/proxy"
)

// streamBackend serves StreamEvents with one event naming the user it was
// asked for, and keeps the requests it got and how many calls were opened.
type streamBackend struct {
	eventsv1.UnimplementedEventServiceServer
	opened atomic.Int32
	mu     sync.Mutex
	reqs   []string
}

// count counts the calls opened on the backend, before any message.
func (b *streamBackend) count(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	b.opened.Add(1)
	return handler(srv, ss)
}

func (b *streamBackend) StreamEvents(req *eventsv1.StreamEventsRequest, ss grpc.ServerStreamingServer[eventsv1.Event]) error {
	b.mu.Lock()
	b.reqs = append(b.reqs, req.GetUserId())
	b.mu.Unlock()
	return ss.Send(&eventsv1.Event{EventId: "from-backend", ToUserId: req.GetUserId()})
}

func (b *streamBackend) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.reqs...)
}

// TestAServerStreamsPreHooksRunBeforeTheBackendIsCalled: on a
// server-streaming call, a pre-hook's rejection or answer never reaches
// the backend (which would see the client's metadata, and count or log a
// call that was refused), and a request it changes reaches it changed.
func TestAServerStreamsPreHooksRunBeforeTheBackendIsCalled(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		wantCode    codes.Code
		wantEvents  []string // event id/user of each event the client gets
		wantBackend []string // the requests the backend gets
	}{
		{name: "a rejection",
			script:   `module.exports = ctx => ({status: "PERMISSION_DENIED", message: "no streams for " + ctx.request.userId})`,
			wantCode: codes.PermissionDenied},
		{name: "an answer",
			script:     `module.exports = ctx => ({response: {eventId: "from-hook", toUserId: ctx.request.userId}})`,
			wantEvents: []string{"from-hook/bob"}},
		{name: "a changed request",
			script:      `module.exports = ctx => { ctx.request.userId = "carol" }`,
			wantEvents:  []string{"from-backend/carol"},
			wantBackend: []string{"carol"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := &streamBackend{}
			srv := grpc.NewServer(grpc.StreamInterceptor(backend.count))
			eventsv1.RegisterEventServiceServer(srv, backend)
			w := newWorld(t, serve(t, srv), nil, proxy.WithDescriptorSet(descriptorSet(eventsv1.File_events_v1_events_proto)))
			w.setHooks(t, map[string]string{"events.v1.EventService/StreamEvents/pre/h": doc(tt.script)})

			stream, err := eventsv1.NewEventServiceClient(w.conn).StreamEvents(callCtx(t), &eventsv1.StreamEventsRequest{UserId: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			var events []string
			for {
				ev, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if status.Code(err) != tt.wantCode {
						t.Fatalf("stream ended with %v; want %v", err, tt.wantCode)
					}
					break
				}
				events = append(events, ev.GetEventId()+"/"+ev.GetToUserId())
			}
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("the client got events %q; want %q", events, tt.wantEvents)
			}
			if got := backend.got(); !slices.Equal(got, tt.wantBackend) {
				t.Errorf("the backend got requests %q; want %q", got, tt.wantBackend)
			}
			if n := int(backend.opened.Load()); n != len(tt.wantBackend) {
				t.Errorf("%d calls were opened on the backend; want %d", n, len(tt.wantBackend))
			}
		})
	}
}

// TestAServerStreamWithTwoRequestsIsRefused: a client that sends a second
// request on a server-streaming call with hooks gets INTERNAL, as from a
// gRPC server, and the backend is not called.
func TestAServerStreamWithTwoRequestsIsRefused(t *testing.T) {
	backend := &streamBackend{}
	srv := grpc.NewServer(grpc.StreamInterceptor(backend.count))
	eventsv1.RegisterEventServiceServer(srv, backend)
	w := newWorld(t, serve(t, srv), nil, proxy.WithDescriptorSet(descriptorSet(eventsv1.File_events_v1_events_proto)))
	w.setHooks(t, map[string]string{"events.v1.EventService/StreamEvents/pre/h": doc(`module.exports = () => {}`)})

	cs, err := w.conn.NewStream(callCtx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/events.v1.EventService/StreamEvents")
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"bob", "carol"} {
		if err := cs.SendMsg(&eventsv1.StreamEventsRequest{UserId: user}); err != nil {
			t.Fatal(err)
		}
	}
	cs.CloseSend()
	err = cs.RecvMsg(new(eventsv1.Event))
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "cardinality violation") {
		t.Fatalf("got %v; want INTERNAL cardinality violation", err)
	}
	if n := backend.opened.Load(); n != 0 {
		t.Errorf("%d calls were opened on the backend; want none", n)
	}
}
