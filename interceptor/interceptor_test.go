package interceptor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/logtest"
)

// waitTimeout bounds waiting for a hook change to reach the server.
const waitTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	isolate.ServeWorkerIfAsked() // the workers of process isolation's tests
	serveEchoIfAsked()           // processFloor's echo processes
	goleak.VerifyTestMain(m)
}

// recorder is the protected service of these tests: it records what its
// handlers received and answers predictably, without storage.
type recorder struct {
	eventsv1.UnimplementedEventServiceServer
	mu   sync.Mutex
	seen []proto.Message
}

func (r *recorder) record(m proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, proto.Clone(m))
}

// received returns what the handlers received, as protojson, and forgets it.
func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.seen))
	for i, m := range r.seen {
		out[i] = protojson.Format(m)
		out[i] = strings.Join(strings.Fields(out[i]), " ")
	}
	r.seen = nil
	return out
}

func (r *recorder) SendEvent(_ context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	r.record(req)
	if req.ToUserId == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "handler says no")
	}
	return &eventsv1.SendEventResponse{EventId: "id-" + req.ToUserId}, nil
}

func (r *recorder) GetEvents(ctx context.Context, req *eventsv1.GetEventsRequest) (*eventsv1.GetEventsResponse, error) {
	r.record(req)
	grpc.SetHeader(ctx, metadata.Pairs("x-handler", "GetEvents"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-user", req.UserId))
	return &eventsv1.GetEventsResponse{Events: []*eventsv1.Event{{EventId: "e1", ToUserId: req.UserId}}}, nil
}

func (r *recorder) StreamEvents(req *eventsv1.StreamEventsRequest, ss grpc.ServerStreamingServer[eventsv1.Event]) error {
	r.record(req)
	for i := range 2 {
		if err := ss.Send(&eventsv1.Event{EventId: fmt.Sprint("e", i), ToUserId: req.UserId}); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) PublishEvents(ss grpc.ClientStreamingServer[eventsv1.SendEventRequest, eventsv1.PublishEventsResponse]) error {
	var n int32
	for {
		req, err := ss.Recv()
		if err == io.EOF {
			return ss.SendAndClose(&eventsv1.PublishEventsResponse{Count: n})
		}
		if err != nil {
			return err
		}
		r.record(req)
		n++
	}
}

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// env is a protected server with its etcd and a client.
type env struct {
	etcd   *etcdtest.Etcd
	reg    *registry.Registry
	svc    *recorder
	client eventsv1.EventServiceClient
	logs   *syncBuffer
	eng    *engine.Engine
}

// newEnv starts a protected server; outer interceptors, if any, run
// outside the hook interceptor.
func newEnv(t *testing.T, outer ...grpc.UnaryServerInterceptor) *env {
	t.Helper()
	e := &env{etcd: etcdtest.Start(t), svc: &recorder{}, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	e.reg = registry.New(e.etcd.Client, registry.WithLogger(log), registry.WithRetry(10*time.Millisecond, 100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := e.reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.reg.Close)
	// Calls in these tests wait for room as long as they need: admission
	// has tests of its own.
	eng := engine.New(engine.WithLogger(log), engine.WithQueueWait(time.Minute))
	t.Cleanup(eng.Close)
	e.eng = eng
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(append(outer, interceptor.UnaryServerInterceptor(e.reg, interceptor.WithEngine(eng), interceptor.WithLogger(log)))...),
		grpc.ChainStreamInterceptor(interceptor.StreamServerInterceptor(e.reg, interceptor.WithEngine(eng), interceptor.WithLogger(log))),
	)
	eventsv1.RegisterEventServiceServer(srv, e.svc)
	e.client = eventsv1.NewEventServiceClient(serve(t, srv))
	return e
}

// serve serves srv on a loopback port until tb ends, and returns a client
// connection to it.
func serve(tb testing.TB, srv *grpc.Server) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(lis)
	tb.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// setHooks replaces every hook with hooks (key without prefix → document)
// and waits until the server has them.
func (e *env) setHooks(t *testing.T, hooks map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.etcd.Client.Delete(ctx, registry.HooksDir(registry.DefaultPrefix), clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete hooks: %v", err)
	}
	var ops []clientv3.Op
	for k, v := range hooks {
		ops = append(ops, clientv3.OpPut(registry.HooksDir(registry.DefaultPrefix)+k, v))
	}
	resp, err := e.etcd.Client.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		t.Fatalf("write hooks: %v", err)
	}
	e.waitRevision(t, resp.Header.Revision)
}

func (e *env) waitRevision(t *testing.T, rev int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for e.reg.Snapshot().Revision < rev {
		if time.Now().After(deadline) {
			t.Fatalf("the registry did not reach revision %d", rev)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func sendRequest() *eventsv1.SendEventRequest {
	data, _ := structpb.NewStruct(map[string]any{"level": 3})
	return &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login", EventData: data}
}

func oneLine(m proto.Message) string {
	return strings.Join(strings.Fields(protojson.Format(m)), " ")
}

func doc(script string, extra ...string) string {
	fields := append([]string{fmt.Sprintf(`"script":%q`, script)}, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

const (
	sendEventKey = "events.v1.EventService/SendEvent/"
)

// TestUnaryCalls is the unary contract as a client sees it: the status,
// the response, and what the handler received.
func TestUnaryCalls(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		hooks map[string]string
		md    []string
		req   *eventsv1.SendEventRequest
		// want: the client's status code and message (codes.OK: the
		// response), and what the handler received (nil: not called).
		wantCode     codes.Code
		wantMsg      string
		wantResponse string
		wantHandler  []string
	}{
		{name: "no hooks: the handler answers",
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "the seed's example script adds its params to eventData",
			hooks:        map[string]string{sendEventKey + "pre/addvalue": doc(mustRead(t, "../scripts/addvalue.js"), `"params":{"extradata":{"source":"hook","n":1}}`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3, "n": 1, "source": "hook" } }`}},
		{name: "a 403 rejection reaches the client and the handler never runs",
			hooks:    map[string]string{sendEventKey + "pre/deny": doc(mustRead(t, "../scripts/deny-guest.js"), `"params":{"blocked":"alice"}`)},
			wantCode: codes.PermissionDenied, wantMsg: "events to alice are not allowed"},
		{name: "a pre-hook answers in the handler's place",
			hooks:        map[string]string{sendEventKey + "pre/cache": doc(`({response: {eventId: "cached"}})`)},
			wantResponse: `{ "eventId": "cached" }`},
		{name: "hooks run in order, exact, service-wide and global merged",
			hooks: map[string]string{
				sendEventKey + "pre/b":                      doc(`module.exports = c => { c.request.eventType += "+b" }`, `"order":2`),
				sendEventKey + "pre/a":                      doc(`module.exports = c => { c.request.eventType += "+a" }`, `"order":2`),
				"events.v1.EventService/*/pre/svc":          doc(`module.exports = c => { c.request.eventType += "+svc" }`, `"order":1`),
				"*/*/pre/global":                            doc(`module.exports = c => { c.request.eventType += "+global" }`, `"order":3`),
				sendEventKey + "pre/off":                    doc(`({status: 500})`, `"enabled":false`),
				"events.v1.EventService/GetEvents/pre/only": doc(`({status: 500})`),
			},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login+svc+a+b+global", "eventData": { "level": 3 } }`}},
		{name: "a rejection stops the chain",
			hooks: map[string]string{
				sendEventKey + "pre/1": doc(`({status: "UNAUTHENTICATED", message: "who are you"})`, `"order":1`),
				sendEventKey + "pre/2": doc(`throw new Error("must not run")`, `"order":2`),
			},
			wantCode: codes.Unauthenticated, wantMsg: "who are you"},
		{name: "hooks see the incoming metadata",
			hooks: map[string]string{sendEventKey + "pre/md": doc(`module.exports = c => { c.request.eventType = c.metadata["x-tenant"][0] }`)},
			md:    []string{"x-tenant", "acme"}, wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler: []string{`{ "toUserId": "alice", "eventType": "acme", "eventData": { "level": 3 } }`}},
		{name: "a post-hook changes the response",
			hooks:        map[string]string{sendEventKey + "post/stamp": doc(mustRead(t, "../scripts/stamp-response.js"), `"params":{"prefix":"evt_"}`)},
			wantResponse: `{ "eventId": "evt_id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "a post-hook rejects after the handler ran",
			hooks:    map[string]string{sendEventKey + "post/deny": doc(`({status: 409, message: "conflict"})`)},
			wantCode: codes.Aborted, wantMsg: "conflict",
			wantHandler: []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "a handler error passes through and post-hooks do not run",
			hooks:    map[string]string{sendEventKey + "post/boom": doc(`throw new Error("post ran")`)},
			req:      &eventsv1.SendEventRequest{ToUserId: "fail"},
			wantCode: codes.FailedPrecondition, wantMsg: "handler says no",
			wantHandler: []string{`{ "toUserId": "fail" }`}},
		{name: "a thrown error is UNKNOWN with its message",
			hooks:    map[string]string{sendEventKey + "pre/t": doc(`module.exports = () => { null.x }`)},
			wantCode: codes.Unknown, wantMsg: "Cannot read property 'x' of"},
		{name: "a thrown error with onError continue is skipped",
			hooks:        map[string]string{sendEventKey + "pre/t": doc(`throw new Error("x")`, `"onError":"continue"`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "a timeout is DEADLINE_EXCEEDED naming the hook",
			hooks:    map[string]string{sendEventKey + "pre/slow": doc(`for(;;){}`, `"timeout":"20ms"`)},
			wantCode: codes.DeadlineExceeded, wantMsg: "hook events.v1.EventService/SendEvent/pre/slow timed out after 20ms of CPU time"},
		{name: "a timeout with onError continue is skipped",
			hooks:        map[string]string{sendEventKey + "pre/slow": doc(`for(;;){}`, `"timeout":"20ms"`, `"onError":"continue"`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "a thrown code is a deliberate rejection, even with onError continue",
			hooks:    map[string]string{sendEventKey + "pre/t": doc(`throw {code: "RESOURCE_EXHAUSTED", message: "slow down"}`, `"onError":"continue"`)},
			wantCode: codes.ResourceExhausted, wantMsg: "slow down"},
		{name: "an override that does not fit is INTERNAL naming the hook and field, and nothing is applied",
			hooks: map[string]string{
				sendEventKey + "pre/1": doc(`module.exports = c => { c.request.eventType = "changed" }`, `"order":1`),
				sendEventKey + "pre/2": doc(`({messageOverride: {toUserId: "bob", eventData: 7}})`, `"order":2`),
			},
			wantCode: codes.Internal, wantMsg: `hook events.v1.EventService/SendEvent/pre/2: result.messageOverride: field "eventData"`},
		{name: "a document that never was valid fails the calls it covers",
			hooks:    map[string]string{sendEventKey + "pre/bad": `{"script":"module.exports = function (", "order": 1}`},
			wantCode: codes.Internal, wantMsg: "hook events.v1.EventService/SendEvent/pre/bad: document: field script: compile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			e.svc.received()
			req := tt.req
			if req == nil {
				req = sendRequest()
			}
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			resp, err := e.client.SendEvent(ctx, req)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("SendEvent status = %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == codes.OK {
				if got := oneLine(resp); got != tt.wantResponse {
					t.Fatalf("response = %s; want %s", got, tt.wantResponse)
				}
			}
			if got := e.svc.received(); strings.Join(got, "\n") != strings.Join(tt.wantHandler, "\n") {
				t.Fatalf("handler received %q; want %q", got, tt.wantHandler)
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestChangesApplyToTheNextCall(t *testing.T) {
	e := newEnv(t)
	call := func() string {
		t.Helper()
		_, err := e.client.SendEvent(context.Background(), sendRequest())
		return status.Convert(err).Message()
	}
	key := registry.HooksDir(registry.DefaultPrefix) + sendEventKey + "pre/gate"
	put := func(v string) {
		t.Helper()
		resp, err := e.etcd.Client.Put(context.Background(), key, v)
		if err != nil {
			t.Fatal(err)
		}
		e.waitRevision(t, resp.Header.Revision)
	}
	if got := call(); got != "" {
		t.Fatalf("before any hook: %q; want success", got)
	}
	put(doc(`({status: 403, message: "v1"})`))
	if got := call(); got != "v1" {
		t.Fatalf("after put: %q; want v1", got)
	}
	put(doc(`({status: 403, message: "v2"})`))
	if got := call(); got != "v2" {
		t.Fatalf("after update: %q; want v2", got)
	}
	put(`{"script": "({status: 403, message: 'v3'})", "bogus": true}`)
	if got := call(); got != "v2" {
		t.Fatalf("after an invalid update: %q; want the last good version (v2)", got)
	}
	put(doc(`({status: 403, message: "v2"})`, `"enabled":false`))
	if got := call(); got != "" {
		t.Fatalf("after disabling: %q; want success", got)
	}
	put(doc(`({status: 403, message: "v4"})`))
	resp, err := e.etcd.Client.Delete(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	e.waitRevision(t, resp.Header.Revision)
	if got := call(); got != "" {
		t.Fatalf("after delete: %q; want success", got)
	}
}

// TestEveryFailureIsToldInTheLog: a hook failing on a busy method is
// logged at most once a second, and the failures left out are counted in
// the log, also when the hook stops failing before the next line is due.
func TestEveryFailureIsToldInTheLog(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{sendEventKey + "pre/boom": doc(`throw new Error("boom")`)})
	const calls = 5
	for range calls {
		if _, err := e.client.SendEvent(context.Background(), sendRequest()); status.Code(err) != codes.Unknown {
			t.Fatalf("call: %v; want UNKNOWN boom", err)
		}
	}
	// told counts the failures the log tells of: each line, and the ones
	// it says were not logged.
	notLogged := regexp.MustCompile(`failures_not_logged=(\d+)`)
	told := func() (n int, lines string) {
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if !strings.Contains(l, "hook=events.v1.EventService/SendEvent/pre/boom") {
				continue
			}
			lines += l + "\n"
			if strings.Contains(l, "hook failed; call aborted") {
				n++
			}
			if m := notLogged.FindStringSubmatch(l); m != nil {
				k, _ := strconv.Atoi(m[1])
				n += k
			}
		}
		return n, lines
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		n, lines := told()
		if n == calls {
			break
		}
		if n > calls || time.Now().After(deadline) {
			t.Fatalf("the log tells of %d failures; want %d:\n%s", n, calls, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServerStream(t *testing.T) {
	e := newEnv(t)
	key := "events.v1.EventService/StreamEvents/"
	tests := []struct {
		name        string
		hooks       map[string]string
		wantCode    codes.Code
		wantMsg     string
		wantEvents  string
		wantHandler []string
	}{
		{name: "a pre-hook changes the request before the handler starts",
			hooks:       map[string]string{key + "pre/u": doc(`module.exports = c => { c.request.userId = "u-" + c.request.userId }`)},
			wantEvents:  "e0:u-bob e1:u-bob",
			wantHandler: []string{`{ "userId": "u-bob" }`}},
		{name: "a rejection ends the stream before the handler",
			hooks:    map[string]string{key + "pre/deny": doc(`({status: 403, message: "no streams"})`)},
			wantCode: codes.PermissionDenied, wantMsg: "no streams"},
		{name: "a response answers with that one message",
			hooks:      map[string]string{key + "pre/r": doc(`module.exports = c => ({response: {eventId: "only", toUserId: c.request.userId}})`)},
			wantEvents: "only:bob"},
		{name: "post-hooks never run on streams",
			hooks:       map[string]string{key + "post/p": doc(`({status: 500, message: "post ran"})`)},
			wantEvents:  "e0:bob e1:bob",
			wantHandler: []string{`{ "userId": "bob" }`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			e.svc.received()
			stream, err := e.client.StreamEvents(context.Background(), &eventsv1.StreamEventsRequest{UserId: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				ev, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					st := status.Convert(err)
					if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
						t.Fatalf("stream status = %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
					}
					break
				}
				got = append(got, ev.EventId+":"+ev.ToUserId)
			}
			if tt.wantCode == codes.OK && strings.Join(got, " ") != tt.wantEvents {
				t.Fatalf("events = %v; want %s", got, tt.wantEvents)
			}
			if h := e.svc.received(); strings.Join(h, "\n") != strings.Join(tt.wantHandler, "\n") {
				t.Fatalf("handler received %q; want %q", h, tt.wantHandler)
			}
		})
	}
	for range 2 {
		stream, _ := e.client.StreamEvents(context.Background(), &eventsv1.StreamEventsRequest{UserId: "bob"})
		for _, err := stream.Recv(); err == nil; _, err = stream.Recv() {
		}
	}
	if n := strings.Count(e.logs.String(), "post-hook skipped"); n != 1 {
		t.Fatalf("logged the skipped post-hook %d times; want once:\n%s", n, e.logs.String())
	}
}

func TestClientStream(t *testing.T) {
	e := newEnv(t)
	key := "events.v1.EventService/PublishEvents/"
	tests := []struct {
		name        string
		hooks       map[string]string
		wantCode    codes.Code
		wantMsg     string
		wantCount   int32
		wantHandler []string
	}{
		{name: "pre-hooks run on every message",
			hooks:     map[string]string{key + "pre/n": doc(`module.exports = c => { c.request.eventType = "seen-" + c.request.toUserId }`)},
			wantCount: 3,
			wantHandler: []string{`{ "toUserId": "u0", "eventType": "seen-u0" }`, `{ "toUserId": "u1", "eventType": "seen-u1" }`,
				`{ "toUserId": "u2", "eventType": "seen-u2" }`}},
		{name: "a rejection of one message ends the stream",
			hooks:    map[string]string{key + "pre/n": doc(`module.exports = c => { if (c.request.toUserId === "u1") return {status: 400, message: "bad u1"} }`)},
			wantCode: codes.InvalidArgument, wantMsg: "bad u1",
			wantHandler: []string{`{ "toUserId": "u0", "eventType": "t" }`}},
		{name: "a response answers the whole stream",
			hooks:       map[string]string{key + "pre/n": doc(`module.exports = c => { if (c.request.toUserId === "u1") return {response: {count: 99}} }`)},
			wantCount:   99,
			wantHandler: []string{`{ "toUserId": "u0", "eventType": "t" }`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			e.svc.received()
			stream, err := e.client.PublishEvents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := stream.Send(&eventsv1.SendEventRequest{ToUserId: fmt.Sprint("u", i), EventType: "t"}); err != nil {
					break // the server ended the stream
				}
			}
			resp, err := stream.CloseAndRecv()
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Fatalf("status = %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if err == nil && resp.Count != tt.wantCount {
				t.Fatalf("count = %d; want %d", resp.Count, tt.wantCount)
			}
			if h := e.svc.received(); strings.Join(h, "\n") != strings.Join(tt.wantHandler, "\n") {
				t.Fatalf("handler received %q; want %q", h, tt.wantHandler)
			}
		})
	}
}

// TestEtcdOutageUnderTraffic stops etcd under load and starts it again: no
// call fails, every call runs the hook, and a change made after the
// restart reaches the server.
func TestEtcdOutageUnderTraffic(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{sendEventKey + "pre/tag": doc(`module.exports = c => { c.request.eventType = "v1" }`)})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var calls int
	var failures []string
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := e.client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "x"})
				mu.Lock()
				calls++
				if err != nil {
					failures = append(failures, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	// callsAfter waits until n more calls were made than at its call.
	callsAfter := func(n int) {
		mu.Lock()
		want := calls + n
		mu.Unlock()
		deadline := time.Now().Add(waitTimeout)
		for {
			mu.Lock()
			got := calls
			mu.Unlock()
			if got >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d calls made; want %d", got, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	callsAfter(20)
	e.etcd.Stop()
	callsAfter(20)
	time.Sleep(500 * time.Millisecond) // the outage lasts at least this long
	e.etcd.Start()
	callsAfter(20)
	stop()
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d calls failed during the outage; first: %s", len(failures), calls, failures[0])
	}
	for _, r := range e.svc.received() {
		if !strings.Contains(r, `"eventType": "v1"`) {
			t.Fatalf("the handler received %s; want every call to have run the hook", r)
		}
	}
	e.setHooks(t, map[string]string{sendEventKey + "pre/tag": doc(`({status: 403, message: "after restart"})`)})
	_, err := e.client.SendEvent(context.Background(), sendRequest())
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "after restart" {
		t.Fatalf("after the restart: %v; want the new hook to apply", err)
	}
}

func TestConcurrentCallsAreIsolated(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{sendEventKey + "pre/iso": doc(`
		if (typeof owner !== "undefined") throw new Error("global of another call: " + owner);
		owner = data.message.toUserId;
		data.message.eventType = "for-" + owner;
		undefined`)})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: fmt.Sprint("u", i)})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("SendEvent: %v", err)
	}
	for _, r := range e.svc.received() {
		var m eventsv1.SendEventRequest
		if err := protojson.Unmarshal([]byte(r), &m); err != nil {
			t.Fatal(err)
		}
		if m.EventType != "for-"+m.ToUserId {
			t.Errorf("handler received %s; want eventType for-%s", r, m.ToUserId)
		}
	}
}
