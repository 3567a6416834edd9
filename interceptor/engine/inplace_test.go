package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// TestInPlace checks which of the caller's messages a run changes: with
// InPlace, the phase's own message (the request of a pre-hook, the
// response of a post-hook) and nothing else; without it, none, the change
// coming back in the outcome.
func TestInPlace(t *testing.T) {
	const (
		request  = `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"login","toUserId":"alice"}`
		response = `{"eventId":"e1"}`
	)
	tests := []struct {
		name    string
		phase   engine.Phase
		inPlace bool
		script  string
		// wantRequest and wantResponse are the caller's messages after the
		// run; wantNext is what the call goes on with: Outcome.Message, or
		// the caller's message of the phase when that is nil.
		wantRequest, wantResponse, wantNext string
	}{
		{name: "pre, in place: the caller's request changes",
			phase: engine.Pre, inPlace: true,
			script:      `module.exports = (ctx) => { ctx.request.eventType = "x" }`,
			wantRequest: `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"x","toUserId":"alice"}`,
			wantNext:    `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"x","toUserId":"alice"}`},
		{name: "pre, copy: the caller's request stays as it was",
			phase:       engine.Pre,
			script:      `module.exports = (ctx) => { ctx.request.eventType = "x" }`,
			wantRequest: request,
			wantNext:    `{"eventData":{"score":10,"tags":["a","b"]},"eventType":"x","toUserId":"alice"}`},
		{name: "pre, in place: nested lists and Structs change too",
			phase: engine.Pre, inPlace: true,
			script:      `ctx.request.eventData.tags.push("c"); delete ctx.request.eventData.score; ctx.request.eventData.o = {k: [1]}; undefined`,
			wantRequest: `{"eventData":{"o":{"k":[1]},"tags":["a","b","c"]},"eventType":"login","toUserId":"alice"}`,
			wantNext:    `{"eventData":{"o":{"k":[1]},"tags":["a","b","c"]},"eventType":"login","toUserId":"alice"}`},
		{name: "pre, copy: nested lists and Structs stay as they were",
			phase:       engine.Pre,
			script:      `ctx.request.eventData.tags.push("c"); delete ctx.request.eventData.score; ctx.request.eventData.o = {k: [1]}; undefined`,
			wantRequest: request,
			wantNext:    `{"eventData":{"o":{"k":[1]},"tags":["a","b","c"]},"eventType":"login","toUserId":"alice"}`},
		{name: "pre, in place: a request the script replaces leaves the caller's alone",
			phase: engine.Pre, inPlace: true,
			script:      `module.exports = (ctx) => { ctx.request = {toUserId: "bob"} }`,
			wantRequest: request,
			wantNext:    `{"toUserId":"bob"}`},
		{name: "pre, in place: a messageOverride leaves the caller's request alone",
			phase: engine.Pre, inPlace: true,
			script:      `({messageOverride: {toUserId: "bob"}})`,
			wantRequest: request,
			wantNext:    `{"toUserId":"bob"}`},
		{name: "post, in place: the caller's response changes, its request does not",
			phase: engine.Post, inPlace: true,
			script:       `module.exports = (ctx) => { ctx.response.eventId = "x"; ctx.request.eventType = "x" }`,
			wantRequest:  request,
			wantResponse: `{"eventId":"x"}`,
			wantNext:     `{"eventId":"x"}`},
		{name: "post, copy: neither of the caller's messages changes",
			phase:        engine.Post,
			script:       `module.exports = (ctx) => { ctx.response.eventId = "x"; ctx.request.eventType = "x" }`,
			wantRequest:  request,
			wantResponse: response,
			wantNext:     `{"eventId":"x"}`},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := preCall(t)
			if tt.phase == engine.Post {
				call = postCall(t)
			}
			call.InPlace = tt.inPlace
			out, err := e.Run(context.Background(), compile(t, tt.script), call)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.Action != engine.Continue {
				t.Fatalf("action = %v; want Continue", out.Action)
			}
			if got := js(t, call.Request); got != tt.wantRequest {
				t.Errorf("the caller's request = %s; want %s", got, tt.wantRequest)
			}
			if tt.phase == engine.Post {
				if got := js(t, call.Response); got != tt.wantResponse {
					t.Errorf("the caller's response = %s; want %s", got, tt.wantResponse)
				}
			}
			next := out.Message
			if next == nil {
				next = call.Request
				if tt.phase == engine.Post {
					next = call.Response
				}
			}
			if got := js(t, next); got != tt.wantNext {
				t.Errorf("the call goes on with %s; want %s", got, tt.wantNext)
			}
		})
	}
}

// ownAfterRun checks that once Run has returned, req (and resp) are the
// caller's alone while the abandoned script may still be running: it
// changes and reads them, marshalling them whole, until e has closed, which
// waits for the script to end, and then on to at least 2000 rounds. The
// race detector reports any access the script still makes; without it, a
// change the script makes shows as a value the caller did not set.
func ownAfterRun(t *testing.T, e *engine.Engine, req *eventsv1.SendEventRequest, resp *eventsv1.SendEventResponse) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		e.Close()
		close(closed)
	}()
	tags := req.GetEventData().GetFields()["tags"].GetListValue()
	nTags, nFields := len(tags.GetValues()), len(req.GetEventData().GetFields())
	for i := 0; ; i++ {
		ended := false
		select {
		case <-closed:
			ended = true
		default:
		}
		if ended && i >= 2000 {
			return
		}
		want := fmt.Sprint("mine", i)
		req.EventType = want
		if resp != nil {
			resp.EventId = want
		}
		// Marshalling a request the script grew is slow under the race
		// detector; once the script has ended, a sample is enough.
		if !ended || i%100 == 0 {
			if _, err := proto.Marshal(req); err != nil {
				t.Fatal(err)
			}
			if resp != nil {
				if _, err := proto.Marshal(resp); err != nil {
					t.Fatal(err)
				}
			}
		}
		if req.EventType != want {
			t.Fatalf("eventType = %q right after the test set it to %q: the script still writes the request", req.EventType, want)
		}
		if resp != nil && resp.EventId != want {
			t.Fatalf("eventId = %q right after the test set it to %q: the script still writes the response", resp.EventId, want)
		}
		if n := len(tags.GetValues()); n != nTags {
			t.Fatalf("eventData.tags went from %d to %d elements after Run returned", nTags, n)
		}
		if n := len(req.GetEventData().GetFields()); n != nFields {
			t.Fatalf("eventData went from %d to %d fields after Run returned", nFields, n)
		}
	}
}

// TestInPlaceRequestIsTheCallersAfterATimeout runs pre-hooks that change
// the request in place without end: once Run has given up on them, the
// request is the caller's again.
func TestInPlaceRequestIsTheCallersAfterATimeout(t *testing.T) {
	tests := []struct {
		name   string
		script string
		// cancel ends the run by its context rather than its timeout.
		cancel bool
	}{
		{name: "assigning a field in an endless loop",
			script: `module.exports = (ctx) => { for (let i = 0; ; i++) ctx.request.eventType = "v" + i }`},
		{name: "pushing to a list in an endless loop",
			script: `const tags = ctx.request.eventData.tags; for (let i = 0; ; i++) tags.push("t" + i)`},
		{name: "adding to a Struct in an endless loop",
			script: `const d = ctx.request.eventData; for (let i = 0; ; i++) d["k" + i] = {n: i}`},
		{name: "writes in native code, which interrupts do not reach, in an endless loop",
			script: `const tags = ctx.request.eventData.tags, chunk = new Array(2000).fill("x"); for (;;) Array.prototype.push.apply(tags, chunk)`},
		{name: "assigning a field in an endless loop, until the call's context ends",
			script: `for (let i = 0; ; i++) ctx.request.eventType = "v" + i`, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t)
			call := preCall(t)
			call.InPlace = true
			call.Timeout = 20 * time.Millisecond
			wantKind := engine.Timeout
			ctx := context.Background()
			if tt.cancel {
				call.Timeout = time.Minute
				wantKind = engine.Canceled
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
			}
			_, err := e.Run(ctx, compile(t, tt.script), call)
			ee, ok := err.(*engine.Error)
			if !ok || ee.Kind != wantKind {
				t.Fatalf("Run() error = %v; want kind %v", err, wantKind)
			}
			ownAfterRun(t, e, call.Request.(*eventsv1.SendEventRequest), nil)
		})
	}
}

// TestLateReadAfterATimeout runs a post-hook that first stays in native
// code, which interrupts do not reach, for longer than its timeout, and only
// then reads ctx.request and ctx.response: that read finds nothing, and
// does not reach the caller's messages, which the caller changes meanwhile.
func TestLateReadAfterATimeout(t *testing.T) {
	// JSON.stringify expands the shared halves of heavy into 2^18 leaves
	// before it reaches ctx.
	const script = `
		let heavy = [1];
		for (let i = 0; i < 18; i++) heavy = [heavy, heavy];
		const s = JSON.stringify([heavy, ctx]);
		if (s.includes("alice") || s.includes("e1")) throw new Error("read the call's messages after the timeout");`
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprint("inPlace=", inPlace), func(t *testing.T) {
			e := newEngine(t)
			call := postCall(t)
			call.InPlace = inPlace
			call.Timeout = 20 * time.Millisecond
			_, err := e.Run(context.Background(), compile(t, script), call)
			if ee, ok := err.(*engine.Error); !ok || ee.Kind != engine.Timeout {
				t.Fatalf("Run() error = %v; want a timeout", err)
			}
			ownAfterRun(t, e, call.Request.(*eventsv1.SendEventRequest), call.Response.(*eventsv1.SendEventResponse))
		})
	}
}

// TestRunReturnsAtItsTimeoutDuringALongViewOperation runs pre-hooks that
// are, when their timeout comes, inside one operation on the message that
// stays in native code, which interrupts do not reach. Run must still
// return at the timeout rather than when the operation ends. Each script
// is first run to its end, with a long timeout and growing work, to learn
// how long its operation takes here.
func TestRunReturnsAtItsTimeoutDuringALongViewOperation(t *testing.T) {
	tests := []struct {
		name string
		// script is the hook for a work size; size+1 about doubles the work.
		script func(size int) string
	}{
		{name: "growing a list by assigning its length",
			script: func(size int) string {
				return fmt.Sprintf(`ctx.request.eventData.tags.length = %d`, 10000<<size)
			}},
		{name: "storing an assigned object whose getter stays in native code",
			script: func(size int) string {
				return fmt.Sprintf(`module.exports = (ctx) => {
					let heavy = [1];
					for (let i = 0; i < %d; i++) heavy = [heavy, heavy];
					ctx.request.eventData = {get x() { return JSON.stringify(heavy).length }};
				}`, 14+size)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t)
			var script *engine.Script
			var full time.Duration
			for size := 0; ; size++ {
				script = compile(t, tt.script(size))
				call := preCall(t)
				call.InPlace = true
				call.Timeout = time.Minute
				start := time.Now()
				e.Run(context.Background(), script, call)
				full = time.Since(start)
				if full >= 300*time.Millisecond {
					break
				}
				if size == 8 {
					t.Skipf("the operation takes only %v: too fast to tell", full)
				}
			}
			call := preCall(t)
			call.InPlace = true
			call.Timeout = 20 * time.Millisecond
			start := time.Now()
			_, err := e.Run(context.Background(), script, call)
			took := time.Since(start)
			if ee, ok := err.(*engine.Error); !ok || ee.Kind != engine.Timeout {
				t.Fatalf("Run() error = %v; want a timeout", err)
			}
			if took > full/2 {
				t.Errorf("Run with a 20ms timeout returned after %v, the operation taking %v to its end: it waited for the operation", took, full)
			}
			ownAfterRun(t, e, call.Request.(*eventsv1.SendEventRequest), nil)
		})
	}
}
