package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor/engine"
)

func errorCall(t testing.TB) *engine.Call {
	c := preCall(t)
	c.Phase = engine.ErrorPhase
	c.Status = status.New(codes.NotFound, "no such event")
	c.Timeout = time.Minute
	return c
}

// TestErrorHookContract is what an error hook sees and what its result does.
func TestErrorHookContract(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		wantAction engine.Action
		wantCode   codes.Code
		wantMsg    string
		wantJSON   string
		wantKind   engine.Kind
		wantErr    string
	}{
		{name: "ctx.error holds the code name, its number and the message",
			script:     `module.exports = function (ctx) { return {status: "INTERNAL", message: [ctx.phase, ctx.error.code, ctx.error.codeNumber, ctx.error.message].join(" ")} }`,
			wantAction: engine.Reject, wantCode: codes.Internal, wantMsg: "error NOT_FOUND 5 no such event"},
		{name: "ctx.request is the request, and ctx lists error",
			script:     `module.exports = function (ctx) { return {status: 400, message: ctx.request.toUserId + " " + Object.keys(ctx).join()} }`,
			wantAction: engine.Reject, wantCode: codes.InvalidArgument, wantMsg: "alice method,phase,hook,params,metadata,request,response,log,error,call"},
		{name: "nothing keeps the status",
			script:     `module.exports = function (ctx) { ctx.request.toUserId = "changed" }`,
			wantAction: engine.Continue},
		{name: "a status without a message keeps the message",
			script:     `module.exports = function () { return {status: "UNAVAILABLE"} }`,
			wantAction: engine.Reject, wantCode: codes.Unavailable, wantMsg: "no such event"},
		{name: "status OK goes on",
			script:     `module.exports = function () { return {status: 200} }`,
			wantAction: engine.Continue},
		{name: "a response answers",
			script:     `module.exports = function () { return {response: {eventId: "fallback"}} }`,
			wantAction: engine.Respond, wantJSON: `{"eventId":"fallback"}`},
		{name: "a thrown error with a code replaces the status",
			script:     `module.exports = function () { throw {code: "ABORTED", message: "try again"} }`,
			wantAction: engine.Reject, wantCode: codes.Aborted, wantMsg: "try again"},
		{name: "messageOverride is refused",
			script:   `module.exports = function () { return {messageOverride: {}} }`,
			wantKind: engine.BadResult, wantErr: "an error hook has no message to override"},
		{name: "an unknown field is refused",
			script:   `module.exports = function () { return {colour: 1} }`,
			wantKind: engine.BadResult, wantErr: `unknown field "colour" (want status, message, response)`},
		{name: "a response that does not fit is refused",
			script:   `module.exports = function () { return {response: {nope: 1}} }`,
			wantKind: engine.BadResult, wantErr: "result.response"},
		{name: "so is one beside a status, though the status wins",
			script:   `module.exports = function () { return {status: 403, response: {bogus: 1}} }`,
			wantKind: engine.BadResult, wantErr: "result.response"},
		{name: "a message that is not a string is refused",
			script:   `module.exports = function () { return {status: 403, message: 7} }`,
			wantKind: engine.BadResult, wantErr: "result.message: want a string"},
	}
	e := newEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := errorCall(t)
			out, err := e.Run(context.Background(), compile(t, tt.script), call)
			if tt.wantKind != 0 {
				var ee *engine.Error
				if err == nil || !errors.As(err, &ee) || ee.Kind != tt.wantKind || !strings.Contains(ee.Message, tt.wantErr) {
					t.Fatalf("got %v, %v; want a %v error containing %q", out, err, tt.wantKind, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.Action != tt.wantAction {
				t.Fatalf("action: got %v; want %v", out.Action, tt.wantAction)
			}
			if tt.wantAction == engine.Reject && (out.Status.Code() != tt.wantCode || out.Status.Message() != tt.wantMsg) {
				t.Errorf("status: got %v %q; want %v %q", out.Status.Code(), out.Status.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantAction == engine.Continue && out.Message != nil {
				t.Errorf("an error hook went on with a message: %v", out.Message)
			}
			if tt.wantJSON != "" && js(t, out.Message) != tt.wantJSON {
				t.Errorf("response: got %s; want %s", js(t, out.Message), tt.wantJSON)
			}
			if got := call.Request.(interface{ GetToUserId() string }).GetToUserId(); got != "alice" {
				t.Errorf("the error hook changed the call's request: toUserId %q", got)
			}
		})
	}
}
