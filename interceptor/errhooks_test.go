package interceptor_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// TestErrorHooks is the error hook contract as a client sees it. The
// handler fails for ToUserId "fail" with FAILED_PRECONDITION "handler says
// no".
func TestErrorHooks(t *testing.T) {
	e := newEnv(t)
	failing := &eventsv1.SendEventRequest{ToUserId: "fail"}
	tests := []struct {
		name  string
		hooks map[string]string
		req   *eventsv1.SendEventRequest
		// want: the client's status code and message (codes.OK: the
		// response), and a line the log must hold.
		wantCode     codes.Code
		wantMsg      string
		wantResponse string
		wantLog      string
	}{
		{name: "an error hook sees the handler's error and the request, and replaces the status",
			hooks: map[string]string{sendEventKey + "error/map": doc(
				`module.exports = c => ({status: "UNAVAILABLE", message: [c.phase, c.error.code, c.error.codeNumber, c.error.message, c.request.toUserId].join(" ")})`)},
			req: failing, wantCode: codes.Unavailable, wantMsg: "error FAILED_PRECONDITION 9 handler says no fail"},
		{name: "an error hook answers instead, and the call succeeds",
			hooks: map[string]string{sendEventKey + "error/fallback": doc(`module.exports = c => ({response: {eventId: "fallback-" + c.request.toUserId}})`)},
			req:   failing, wantResponse: `{ "eventId": "fallback-fail" }`},
		{name: "an error hook that returns nothing keeps the handler's error",
			hooks: map[string]string{sendEventKey + "error/watch": doc(`module.exports = c => { c.log.info("saw " + c.error.code) }`)},
			req:   failing, wantCode: codes.FailedPrecondition, wantMsg: "handler says no", wantLog: "saw FAILED_PRECONDITION"},
		{name: "error hooks run in order, exact, service-wide and global merged, each seeing the status so far",
			hooks: map[string]string{
				sendEventKey + "error/b":                      doc(`module.exports = c => ({status: c.error.code, message: c.error.message + "+b"})`, `"order":2`),
				sendEventKey + "error/a":                      doc(`module.exports = c => ({status: "ABORTED", message: "a"})`, `"order":1`),
				"events.v1.EventService/*/error/svc":          doc(`module.exports = c => ({status: c.error.code, message: c.error.message + "+svc"})`, `"order":3`),
				"*/*/error/global":                            doc(`module.exports = c => ({status: c.error.code, message: c.error.message + "+global"})`, `"order":4`),
				sendEventKey + "error/off":                    doc(`({status: 500})`, `"enabled":false`),
				"events.v1.EventService/GetEvents/error/only": doc(`({status: 500})`),
			},
			req: failing, wantCode: codes.Aborted, wantMsg: "a+b+svc+global"},
		{name: "an error hook that throws keeps the original status, and the failure is logged",
			hooks: map[string]string{sendEventKey + "error/boom": doc(`throw new Error("error hook broke")`)},
			req:   failing, wantCode: codes.FailedPrecondition, wantMsg: "handler says no",
			wantLog: "error hook failed; the call ends with the error status it had"},
		{name: "an error hook that times out keeps the original status",
			hooks: map[string]string{sendEventKey + "error/slow": doc(`for(;;){}`, `"timeout":"20ms"`)},
			req:   failing, wantCode: codes.FailedPrecondition, wantMsg: "handler says no", wantLog: "timed out"},
		{name: "an error hook whose answer does not fit keeps the original status",
			hooks: map[string]string{sendEventKey + "error/bad": doc(`({response: {nope: 1}})`)},
			req:   failing, wantCode: codes.FailedPrecondition, wantMsg: "handler says no", wantLog: "result.response"},
		{name: "an error hook that never had a valid document keeps the original status",
			hooks: map[string]string{sendEventKey + "error/broken": `{"script":"function (", "order": 1}`},
			req:   failing, wantCode: codes.FailedPrecondition, wantMsg: "handler says no", wantLog: "error hook not run: its document is invalid"},
		{name: "a failing error hook ends the chain with the status as it stood before it",
			hooks: map[string]string{
				sendEventKey + "error/1": doc(`({status: "INTERNAL", message: "redacted"})`, `"order":1`),
				sendEventKey + "error/2": doc(`throw new Error("broke")`, `"order":2`),
				sendEventKey + "error/3": doc(`({response: {eventId: "must not run"}})`, `"order":3`),
			},
			req: failing, wantCode: codes.Internal, wantMsg: "redacted"},
		{name: "a failing error hook with onError continue is skipped",
			hooks: map[string]string{
				sendEventKey + "error/1": doc(`throw new Error("broke")`, `"order":1`, `"onError":"continue"`),
				sendEventKey + "error/2": doc(`({status: "NOT_FOUND", message: "second"})`, `"order":2`),
			},
			req: failing, wantCode: codes.NotFound, wantMsg: "second"},
		{name: "a thrown error with a code replaces the status",
			hooks: map[string]string{sendEventKey + "error/t": doc(`throw {code: 503, message: "later"}`)},
			req:   failing, wantCode: codes.Unavailable, wantMsg: "later"},
		{name: "error hooks do not run on success",
			hooks:        map[string]string{sendEventKey + "error/x": doc(`({response: {eventId: "from the error hook"}})`)},
			wantResponse: `{ "eventId": "id-alice" }`},
		{name: "a post-hook's rejection reaches the error hooks",
			hooks: map[string]string{
				sendEventKey + "post/deny": doc(`({status: 409, message: "conflict"})`),
				sendEventKey + "error/x":   doc(`module.exports = c => ({status: "INTERNAL", message: "saw " + c.error.code + " " + c.error.message})`),
			},
			wantCode: codes.Internal, wantMsg: "saw ABORTED conflict"},
		{name: "a post-hook's failure reaches the error hooks",
			hooks: map[string]string{
				sendEventKey + "post/boom": doc(`throw new Error("post broke")`),
				sendEventKey + "error/x":   doc(`module.exports = c => ({response: {eventId: c.error.code + ": " + c.error.message}})`),
			},
			wantResponse: `{ "eventId": "UNKNOWN: post broke" }`},
		{name: "a pre-hook's rejection does not reach the error hooks",
			hooks: map[string]string{
				sendEventKey + "pre/deny": doc(`({status: 403, message: "no"})`),
				sendEventKey + "error/x":  doc(`({response: {eventId: "must not run"}})`),
			},
			wantCode: codes.PermissionDenied, wantMsg: "no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			req := tt.req
			if req == nil {
				req = sendRequest()
			}
			resp, err := e.client.SendEvent(context.Background(), req)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("SendEvent status = %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == codes.OK {
				if got := oneLine(resp); got != tt.wantResponse {
					t.Fatalf("response = %s; want %s", got, tt.wantResponse)
				}
			}
			if tt.wantLog != "" && !strings.Contains(e.logs.String(), tt.wantLog) {
				t.Fatalf("the log does not say %q:\n%s", tt.wantLog, e.logs.String())
			}
		})
	}
}

// TestErrorHooksNeverRunOnStreams: an error hook on a streaming method is
// skipped, logged once.
func TestErrorHooksNeverRunOnStreams(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{
		"events.v1.EventService/StreamEvents/pre/deny":      doc(`({status: 403, message: "no streams"})`),
		"events.v1.EventService/StreamEvents/error/rescue":  doc(`({response: {eventId: "rescued"}})`),
		"events.v1.EventService/PublishEvents/error/rescue": doc(`({response: {count: 99}})`),
	})
	for range 2 {
		stream, err := e.client.StreamEvents(context.Background(), &eventsv1.StreamEventsRequest{UserId: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "no streams" {
			t.Fatalf("StreamEvents: got %v %q; want PERMISSION_DENIED from the pre-hook", st.Code(), st.Message())
		}
		ps, err := e.client.PublishEvents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ps.CloseAndRecv()
		if err != nil || resp.Count != 0 {
			t.Fatalf("PublishEvents: got %v, %v; want count 0 from the handler", resp, err)
		}
	}
	logs := e.logs.String()
	for _, id := range []string{"StreamEvents/error/rescue", "PublishEvents/error/rescue"} {
		if n := strings.Count(logs, "error hook skipped: error hooks never run on streams"+`" method=/events.v1.EventService/`+strings.Split(id, "/")[0]); n != 1 {
			t.Errorf("%s: logged as skipped %d times; want once:\n%s", id, n, logs)
		}
	}
}
