package interceptor_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

// TestTypeScriptAndModuleHooks puts TypeScript and ES module hooks in etcd
// and calls the protected server: in process and in worker processes, a
// client sees what the hooks do, or the document error at the TypeScript
// line and column.
func TestTypeScriptAndModuleHooks(t *testing.T) {
	e := etcdtest.Start(t)
	inproc := newServer(t, e, &syncBuffer{})
	pool := testPool(t, slog.New(slog.DiscardHandler), isolate.WithWorkers(1))
	isolated := newServer(t, e, &syncBuffer{}, interceptor.WithIsolation(interceptor.Process), interceptor.WithProcessRunner(pool))
	long := `"timeout":"5s"`
	tests := []struct {
		name  string
		hooks map[string]string
		// want: the client's status code and message, and for OK what the
		// handler received.
		wantCode    codes.Code
		wantMsg     string
		wantHandler string
	}{
		{name: "a TypeScript hook in the seed's shape changes the request",
			hooks: map[string]string{sendEventKey + "pre/ts": doc(`import * as T from 'types';
interface Params { suffix: string }
async function main(ctx: T.Ctx): Promise<void> {
    const p = ctx.params as Params;
    ctx.request.eventType = ctx.request.eventType + p.suffix;
}
module.exports = main;`, `"lang":"ts"`, `"params":{"suffix":"+ts"}`, long)},
			wantHandler: `{ "toUserId": "alice", "eventType": "login+ts", "eventData": { "level": 3 } }`},
		{name: "a JavaScript hook that exports default changes the request",
			hooks:       map[string]string{sendEventKey + "pre/esm": doc(`export default function (ctx) { ctx.request.toUserId = "bob" }`, long)},
			wantHandler: `{ "toUserId": "bob", "eventType": "login", "eventData": { "level": 3 } }`},
		{name: "a TypeScript hook that exports main can reject",
			hooks: map[string]string{sendEventKey + "pre/deny": doc(`export function main(ctx: {request: {toUserId?: string}}) {
  return {status: 403, message: "no " + ctx.request.toUserId};
}`, `"lang":"ts"`, long)},
			wantCode: codes.PermissionDenied, wantMsg: "no alice"},
		{name: "a TypeScript syntax error fails the calls it covers, naming the key and the line and column",
			hooks:    map[string]string{sendEventKey + "pre/broken": doc("import * as T from 'types';\nasync function main(ctx: T.Ctx) {\n  ctx.request.eventType = 'x' 'y';\n}\nmodule.exports = main;", `"lang":"ts"`)},
			wantCode: codes.Internal,
			wantMsg:  `hook events.v1.EventService/SendEvent/pre/broken: document: field script: events.v1.EventService/SendEvent/pre/broken:3:31: Expected ";" but found "'y'"`},
		{name: "an import of a module that does not exist fails the calls it covers, naming it",
			hooks:    map[string]string{sendEventKey + "pre/imports": doc("import * as A from 'utils/Addition';\nexport default (ctx: any) => A;", `"lang":"ts"`)},
			wantCode: codes.Internal,
			wantMsg:  `pre/imports:1:20: cannot find module "utils/Addition": no util "Addition": nothing is stored under utils/Addition/`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inproc.setHooks(t, tt.hooks)
			isolated.waitRevision(t, inproc.reg.Snapshot().Revision)
			for _, srv := range []struct {
				name string
				env  *env
			}{{"in process", inproc}, {"in a worker process", isolated}} {
				srv.env.svc.received()
				_, err := srv.env.client.SendEvent(context.Background(), sendRequest())
				st := status.Convert(err)
				if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
					t.Fatalf("%s: SendEvent status = %v %q; want %v %q", srv.name, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
				if tt.wantCode != codes.OK {
					continue
				}
				if got := strings.Join(srv.env.svc.received(), "\n"); got != tt.wantHandler {
					t.Fatalf("%s: handler received %q; want %q", srv.name, got, tt.wantHandler)
				}
			}
		})
	}
}
