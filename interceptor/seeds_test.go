package interceptor_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestSeedStylesThroughTheServer runs the seeds' script models through a
// server whose hooks come from etcd, as a client sees them: brainCloud's
// body scripts, API Maker's g, and what both log.
func TestSeedStylesThroughTheServer(t *testing.T) {
	e := newEnv(t)
	const apimaker = `"style":"apimaker"`
	tests := []struct {
		name  string
		hooks map[string]string
		// want: the client's status code and message (codes.OK: the
		// response), what the handler received (nil: not called), and
		// what the server's log must contain.
		wantCode     codes.Code
		wantMsg      string
		wantResponse string
		wantHandler  []string
		wantLogs     []string
	}{
		{name: "the brainCloud seed's script, verbatim, merges its params and logs them as JSON",
			hooks:        map[string]string{sendEventKey + "pre/addvalue": doc(mustRead(t, "../scripts/addvalue.js"), `"params":{"extradata":{"source":"hook"}}`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3, "source": "hook" } }`},
			wantLogs: []string{
				`msg="running from prehook_sendevent_addvalue hookparms: " method=/events.v1.EventService/SendEvent hook=events.v1.EventService/SendEvent/pre/addvalue origin=script value="{\"extradata\":{\"source\":\"hook\"}}"`,
				`msg="running from prehook_sendevent_adevalue message: " method=/events.v1.EventService/SendEvent hook=events.v1.EventService/SendEvent/pre/addvalue origin=script value="{\"toUserId\":\"alice\",\"eventType\":\"login\",\"eventData\":{\"level\":3,\"source\":\"hook\"}}"`,
			}},
		{name: "a brainCloud retval with a non-200 status ends the call",
			hooks:    map[string]string{sendEventKey + "pre/deny": doc(`var retval = {status: 403, message: "not " + data.message.toUserId}; bridge.logWarning("denied", retval);`)},
			wantCode: codes.PermissionDenied, wantMsg: "not alice",
			wantLogs: []string{`level=WARN msg=denied method=/events.v1.EventService/SendEvent hook=events.v1.EventService/SendEvent/pre/deny origin=script value="{\"status\":403,\"message\":\"not alice\"}"`}},
		{name: "apimaker: a pre-hook's returned value answers and the handler never runs",
			hooks:        map[string]string{sendEventKey + "pre/g": doc(`module.exports = async function main(g) { return {eventId: "g-" + g.req.body.toUserId + "-" + g.req.headers["x-tenant"][0]} }`, apimaker)},
			wantResponse: `{ "eventId": "g-alice-acme" }`},
		{name: "apimaker: a pre-hook that returns nothing goes on with its changes",
			hooks: map[string]string{
				sendEventKey + "pre/g":   doc(`module.exports = g => { g.req.body.eventType = "g" }`, apimaker, `"order":1`),
				sendEventKey + "pre/ctx": doc(`module.exports = c => { c.request.eventType += "+ctx" }`, `"order":2`),
			},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "g+ctx", "eventData": { "level": 3 } }`}},
		{name: "apimaker: g.res.output replaced goes on to the next post-hook",
			hooks: map[string]string{
				sendEventKey + "post/g":   doc(`module.exports = g => { g.res.output = {eventId: "g-" + g.res.output.eventId} }`, apimaker, `"order":1`),
				sendEventKey + "post/ctx": doc(`module.exports = c => { c.response.eventId += "+ctx" }`, `"order":2`),
			},
			wantResponse: `{ "eventId": "g-id-alice+ctx" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "apimaker: a post-hook's returned value ends the chain",
			hooks: map[string]string{
				sendEventKey + "post/g":    doc(`module.exports = g => ({eventId: "final"})`, apimaker, `"order":1`),
				sendEventKey + "post/next": doc(`throw new Error("must not run")`, `"order":2`),
			},
			wantResponse: `{ "eventId": "final" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`}},
		{name: "apimaker: a returned value that does not fit the response is INTERNAL naming the hook",
			hooks:    map[string]string{sendEventKey + "pre/g": doc(`module.exports = g => ({toUserId: "bob"})`, apimaker)},
			wantCode: codes.Internal, wantMsg: `hook events.v1.EventService/SendEvent/pre/g: return value: `},
		{name: "apimaker: a thrown error with a status ends the call with it",
			hooks:    map[string]string{sendEventKey + "pre/g": doc(`module.exports = g => { throw Object.assign(new Error("no such user"), {status: 404}) }`, apimaker)},
			wantCode: codes.NotFound, wantMsg: "no such user"},
		{name: "apimaker: the seed's TypeScript form",
			hooks: map[string]string{sendEventKey + "pre/ts": doc("import * as T from 'types';\nasync function main(g: T.IAMGlobal) {\n    return await Promise.resolve({eventId: `ts-${g.req.body.toUserId}`});\n}\nmodule.exports = main;\n",
				apimaker, `"lang":"ts"`)},
			wantResponse: `{ "eventId": "ts-alice" }`},
		{name: "a ctx-style hook reads g as its second argument",
			hooks:        map[string]string{sendEventKey + "pre/both": doc(`module.exports = (ctx, g) => { ctx.request.eventType = g.req.headers["x-tenant"][0] }`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "acme", "eventData": { "level": 3 } }`}},
		{name: "console writes to the server's log with the method and hook",
			hooks:        map[string]string{sendEventKey + "pre/console": doc(`module.exports = c => { console.log("to", c.request.toUserId, c.request.eventData) }`)},
			wantResponse: `{ "eventId": "id-alice" }`,
			wantHandler:  []string{`{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 3 } }`},
			wantLogs:     []string{`level=INFO msg="to alice {\"level\":3}" method=/events.v1.EventService/SendEvent hook=events.v1.EventService/SendEvent/pre/console origin=script`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.hooks)
			e.svc.received()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tenant", "acme")
			resp, err := e.client.SendEvent(ctx, sendRequest())
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
			logs := e.logs.String()
			for _, want := range tt.wantLogs {
				if !strings.Contains(logs, want) {
					t.Fatalf("server log:\n%s\nwant a line containing %s", logs, want)
				}
			}
			if strings.Contains(logs, "0xc0") {
				t.Fatalf("server log:\n%s\nwant no Go pointers", logs)
			}
		})
	}
}
