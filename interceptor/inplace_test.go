package interceptor_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// outer is a unary interceptor chained outside the hooks: once the hooks
// and the handler have returned, it runs after, if set, on the request it
// passed in, and records that request.
type outer struct {
	mu    sync.Mutex
	after func(req *eventsv1.SendEventRequest)
	seen  []string
}

func (o *outer) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	m, ok := req.(*eventsv1.SendEventRequest)
	if !ok {
		return resp, err
	}
	o.mu.Lock()
	after := o.after
	o.mu.Unlock()
	if after != nil {
		after(m)
	}
	o.mu.Lock()
	o.seen = append(o.seen, oneLine(m))
	o.mu.Unlock()
	return resp, err
}

// take sets what runs after the inner interceptors for the next calls, and
// returns the requests recorded so far, forgetting them.
func (o *outer) take(after func(*eventsv1.SendEventRequest)) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := o.seen
	o.seen, o.after = nil, after
	return seen
}

// TestInPlaceEndToEnd runs pre-hooks over real gRPC, with an interceptor
// chained outside the hooks that sees the request after them: a hook whose
// failure ends the call changes the request itself; a hook whose failure
// is skipped ("onError": "continue") changes a copy, so that a failure
// leaves the request as it was; and a hook abandoned at its timeout no
// longer touches the request once the call has ended.
func TestInPlaceEndToEnd(t *testing.T) {
	const original = `{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3, "tags": [ "a" ] } }`
	// The endless scripts keep changing the request until they are
	// interrupted: one in script code, one in native code that interrupts
	// do not reach.
	const (
		endlessScript = `module.exports = c => { c.request.eventType = "changed"; for (let i = 0; ; i++) c.request.eventType = "v" + i }`
		endlessNative = `module.exports = c => { c.request.eventType = "changed"; const tags = c.request.eventData.tags, chunk = new Array(2000).fill("x"); for (;;) Array.prototype.push.apply(tags, chunk) }`
	)
	tests := []struct {
		name  string
		hooks map[string]string
		// owns: the outer interceptor changes and reads the request once
		// the hooks have returned, while an abandoned script may still run.
		owns bool
		// want: the client's status code and message (codes.OK: success),
		// what the handler received (nil: not called) and, unless owns,
		// what the outer interceptor saw after the hooks.
		wantCode    codes.Code
		wantMsg     string
		wantHandler []string
		wantOuter   string
	}{
		{name: "a hook that ends the call when it fails changes the request itself",
			hooks:       map[string]string{sendEventKey + "pre/set": doc(`module.exports = c => { c.request.eventType = "changed"; c.request.eventData.tags.push("b") }`)},
			wantHandler: []string{`{ "toUserId": "alice", "eventType": "changed", "eventData": { "level": 3, "tags": [ "a", "b" ] } }`},
			wantOuter:   `{ "toUserId": "alice", "eventType": "changed", "eventData": { "level": 3, "tags": [ "a", "b" ] } }`},
		{name: "a hook with onError continue that changes the request, then throws, changes nothing",
			hooks:       map[string]string{sendEventKey + "pre/set": doc(`module.exports = c => { c.request.eventType = "changed"; c.request.eventData.tags.push("b"); throw new Error("after the change") }`, `"onError":"continue"`)},
			wantHandler: []string{original},
			wantOuter:   original},
		{name: "a hook with onError continue that succeeds applies its change",
			hooks:       map[string]string{sendEventKey + "pre/set": doc(`module.exports = c => { c.request.eventType = "changed" }`, `"onError":"continue"`)},
			wantHandler: []string{`{ "toUserId": "alice", "eventType": "changed", "eventData": { "level": 3, "tags": [ "a" ] } }`},
			wantOuter:   original},
		{name: "a skipped hook drops its own change only",
			hooks: map[string]string{
				sendEventKey + "pre/1": doc(`module.exports = c => { c.request.eventType = "first" }`, `"order":1`),
				sendEventKey + "pre/2": doc(`module.exports = c => { c.request.eventType += "+second"; throw new Error("x") }`, `"order":2`, `"onError":"continue"`),
				sendEventKey + "pre/3": doc(`module.exports = c => { c.request.toUserId = c.request.eventType }`, `"order":3`),
			},
			wantHandler: []string{`{ "toUserId": "first", "eventType": "first", "eventData": { "level": 3, "tags": [ "a" ] } }`},
			wantOuter:   `{ "toUserId": "first", "eventType": "first", "eventData": { "level": 3, "tags": [ "a" ] } }`},
		{name: "a hook that times out changing the request in script code leaves it to the caller",
			hooks:    map[string]string{sendEventKey + "pre/slow": doc(endlessScript, `"timeout":"20ms"`)},
			owns:     true,
			wantCode: codes.DeadlineExceeded, wantMsg: "hook events.v1.EventService/SendEvent/pre/slow timed out after 20ms of CPU time"},
		{name: "a hook that times out changing the request in native code leaves it to the caller",
			hooks:    map[string]string{sendEventKey + "pre/slow": doc(endlessNative, `"timeout":"20ms"`)},
			owns:     true,
			wantCode: codes.DeadlineExceeded, wantMsg: "hook events.v1.EventService/SendEvent/pre/slow timed out after 20ms of CPU time"},
		{name: "a skipped hook that times out changing its copy leaves the request alone",
			hooks:       map[string]string{sendEventKey + "pre/slow": doc(endlessNative, `"timeout":"20ms"`, `"onError":"continue"`)},
			owns:        true,
			wantHandler: []string{original}},
	}
	o := &outer{}
	e := newEnv(t, o.intercept)
	eng := e.eng
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			e.svc.received()
			var after func(*eventsv1.SendEventRequest)
			var rounds atomic.Int64
			if tt.owns {
				after = func(req *eventsv1.SendEventRequest) { rounds.Store(int64(own(t, eng, req))) }
			}
			o.take(after)
			data, err := structpb.NewStruct(map[string]any{"level": 3, "tags": []any{"a"}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login", EventData: data})
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("SendEvent status = %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if got, want := strings.Join(e.svc.received(), "\n"), strings.Join(tt.wantHandler, "\n"); got != want {
				t.Errorf("handler received %s; want %s", clip(got), want)
			}
			seen := o.take(nil)
			if len(seen) != 1 {
				t.Fatalf("the outer interceptor saw %d requests; want 1", len(seen))
			}
			if !tt.owns && seen[0] != tt.wantOuter {
				t.Errorf("after the hooks, the outer interceptor saw %s; want %s", clip(seen[0]), tt.wantOuter)
			}
			if n := rounds.Load(); tt.owns && n < 2000 {
				t.Errorf("the outer interceptor changed and read the request %d times; want at least 2000", n)
			}
		})
	}
}

// clip shortens s for a failure message.
func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// own changes and reads req, marshalling it whole, as an interceptor that
// owns it again may, until eng has no run in flight (InFlight counts
// abandoned runs until they end) and at least 2000 times, and returns
// how many times it did. The race detector reports any access an
// abandoned script still makes; without it, a change the script makes
// shows as a value the interceptor did not set.
func own(t *testing.T, eng *engine.Engine, req *eventsv1.SendEventRequest) int {
	closed := make(chan struct{})
	go func() {
		for eng.InFlight() > 0 {
			time.Sleep(time.Millisecond)
		}
		close(closed)
	}()
	tags := req.GetEventData().GetFields()["tags"].GetListValue()
	nTags := len(tags.GetValues())
	for i := 0; ; i++ {
		ended := false
		select {
		case <-closed:
			ended = true
		default:
		}
		if ended && i >= 2000 {
			return i
		}
		want := fmt.Sprint("mine", i)
		req.EventType = want
		// Marshalling a request the hook grew is slow under the race
		// detector; once every run has ended, a sample is enough.
		if !ended || i%100 == 0 {
			if _, err := proto.Marshal(req); err != nil {
				t.Errorf("Marshal: %v", err)
				return i
			}
		}
		if req.EventType != want {
			t.Errorf("eventType = %q right after the interceptor set it to %q: the hook still writes the request", req.EventType, want)
			return i
		}
		if n := len(tags.GetValues()); n != nTags {
			t.Errorf("eventData.tags went from %d to %d elements after the hooks returned", nTags, n)
			return i
		}
	}
}
