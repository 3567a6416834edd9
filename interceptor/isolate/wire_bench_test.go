package isolate

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/internal/eventstest"
)

// setField is the benchmarks' pre-hook: it sets one field.
const setField = `module.exports = function (ctx) { ctx.request.eventType = 'checked' }`

// benchCall is a pre-hook's call as a server makes it, to run src: SendEvent
// with a request of about 250 bytes, the incoming metadata of a gRPC call,
// and the hook's (empty) parameters.
func benchCall(b *testing.B, src string) (context.Context, *engine.Script, *engine.Call) {
	s, err := engine.Compile("hook.js", src)
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		":authority", "127.0.0.1:39119", "content-type", "application/grpc",
		"grpc-accept-encoding", "gzip", "user-agent", "grpc-go/1.85.0"))
	call := &engine.Call{
		Method:       "/events.v1.EventService/SendEvent",
		Phase:        engine.Pre,
		Hook:         "set",
		Params:       map[string]any{},
		Request:      eventstest.Request(b),
		ResponseType: (&eventsv1.SendEventResponse{}).ProtoReflect().Type(),
		Timeout:      engine.DefaultTimeout,
	}
	return ctx, s, call
}

// BenchmarkDaemonSide measures the daemon's share of a run, without the
// pipe: encoding the run and its frame, and decoding the worker's answer.
// With BenchmarkWorkerSide, it tells how much of a run's cost is the
// work of the two processes and how much the round trip between them.
func BenchmarkDaemonSide(b *testing.B) {
	ctx, s, call := benchCall(b, setField)
	p := New()
	changed := proto.Clone(call.Request).(*eventsv1.SendEventRequest)
	changed.EventType = "checked"
	msg, err := proto.Marshal(changed)
	if err != nil {
		b.Fatal(err)
	}
	answer, err := proto.Marshal(&isolatev1.Output{Kind: &isolatev1.Output_Result{Result: &isolatev1.Result{
		Id: 1, Action: isolatev1.Action_ACTION_CONTINUE, Message: msg}}})
	if err != nil {
		b.Fatal(err)
	}
	fw := frameWriter{w: io.Discard}
	b.ReportAllocs()
	for b.Loop() {
		in, err := p.encodeRun(ctx, s, call)
		if err != nil {
			b.Fatal(err)
		}
		if err := fw.write(&isolatev1.Input{Kind: &isolatev1.Input_Run{Run: in}}); err != nil {
			b.Fatal(err)
		}
		var out isolatev1.Output
		if err := proto.Unmarshal(answer, &out); err != nil {
			b.Fatal(err)
		}
		if _, err := decodeResult(out.GetResult(), call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWorkerSide measures a worker's share of a run, without the
// pipe: decoding the run, running the script, and encoding the answer; for
// a hook that sets one field, and for one that reads the whole request
// (JSON.stringify) and sets a field, where every field is decoded.
func BenchmarkWorkerSide(b *testing.B) {
	for _, h := range []struct{ name, src string }{
		{"sets-a-field", setField},
		{"reads-everything", `module.exports = function (ctx) { ctx.request.eventType = 'seen ' + JSON.stringify(ctx.request).length }`},
	} {
		b.Run(h.name, func(b *testing.B) { benchWorkerSide(b, h.src) })
	}
}

func benchWorkerSide(b *testing.B, src string) {
	ctx, s, call := benchCall(b, src)
	p := New()
	in, err := p.encodeRun(ctx, s, call)
	if err != nil {
		b.Fatal(err)
	}
	in.Id = 1
	for _, md := range descriptors(call) {
		for _, f := range p.files.get(md) {
			in.Files = append(in.Files, f.proto)
		}
	}
	in.ScriptSource, in.HasSource = s.Source(), true
	first, err := proto.Marshal(&isolatev1.Input{Kind: &isolatev1.Input_Run{Run: in}})
	if err != nil {
		b.Fatal(err)
	}
	in.Files, in.ScriptSource, in.HasSource = nil, "", false
	frame, err := proto.Marshal(&isolatev1.Input{Kind: &isolatev1.Input_Run{Run: in}})
	if err != nil {
		b.Fatal(err)
	}
	srv := newServer(nil, io.Discard)
	srv.eng = engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)), engine.WithHeapLimit(0))
	b.Cleanup(srv.eng.Close)
	serve := func(frame []byte) {
		var in isolatev1.Input
		if err := proto.Unmarshal(frame, &in); err != nil {
			b.Fatal(err)
		}
		out := srv.run(in.GetRun())
		if r := out.GetResult(); r == nil || r.ErrorKind != 0 {
			b.Fatalf("got %v", out)
		}
		if err := srv.out.write(out); err != nil {
			b.Fatal(err)
		}
	}
	serve(first)
	b.ReportAllocs()
	for b.Loop() {
		serve(frame)
	}
}
