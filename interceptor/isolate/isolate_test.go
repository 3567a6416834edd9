package isolate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/apihooks/apihooks/internal/logtest"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	isolatev1 "github.com/apihooks/apihooks/gen/apihooks/isolate/v1"
	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// workerEnv makes this test binary a hook worker.
const workerEnv = "APIHOOKS_ISOLATE_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(parentEnv) == "1" {
		os.Unsetenv(parentEnv)
		os.Setenv(workerEnv, "1")
		serveAsParent()
	}
	if os.Getenv(workerEnv) == "1" {
		if err := isolate.ServeWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Setenv(workerEnv, "1") // for the workers this process starts
	goleak.VerifyTestMain(m)
}

// parentEnv makes this test binary a daemon with one busy worker, for
// TestWorkersDieWithTheDaemon.
const parentEnv = "APIHOOKS_ISOLATE_TEST_PARENT"

// serveAsParent starts a worker, prints its pid, and runs a script in it
// until this process is killed.
func serveAsParent() {
	exe, _ := os.Executable()
	pool := isolate.New(isolate.WithCommand(exe), isolate.WithWorkers(1))
	s, _ := engine.Compile("loop.js", `module.exports = c => { c.log.warn("looping"); while (true) {} }`)
	pool.Run(context.Background(), s, &engine.Call{Method: "/x.Y/Z", Phase: engine.Pre, Timeout: time.Hour})
	os.Exit(1)
}

// TestWorkersDieWithTheDaemon kills a daemon (SIGKILL: no Close) whose
// worker is busy: the worker dies too.
func TestWorkersDieWithTheDaemon(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), parentEnv+"=1", workerEnv+"=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The parent logs the script's line with slog's default handler.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "looping") {
	}
	worker := childrenOf(t, cmd.Process.Pid)
	if len(worker) != 1 {
		t.Fatalf("the daemon has children %v; want one worker", worker)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "the worker to die with its daemon", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", worker[0]))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}

// waitTimeout bounds waiting for a condition; generous for busy machines.
const waitTimeout = 30 * time.Second

// generous is the timeout of hooks in tests that are not about timeouts.
const generous = 20 * time.Second

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// newPool returns a pool of this test binary's workers, closed when t ends.
func newPool(t testing.TB, logs *syncBuffer, opts ...isolate.Option) *isolate.Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := isolate.New(append([]isolate.Option{isolate.WithCommand(exe), isolate.WithLogger(log)}, opts...)...)
	t.Cleanup(p.Close)
	return p
}

func compile(t *testing.T, src string) *engine.Script {
	t.Helper()
	s, err := engine.Compile("test.js", src)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request() *eventsv1.SendEventRequest {
	data, _ := structpb.NewStruct(map[string]any{"level": 3, "tags": []any{"a"}})
	return &eventsv1.SendEventRequest{ToUserId: "alice", EventType: "login", EventData: data}
}

// describe renders an outcome or error for comparison.
func describe(out engine.Outcome, err error) string {
	if err != nil {
		var ee *engine.Error
		if errors.As(err, &ee) {
			return fmt.Sprintf("error %v: %s", ee.Kind, ee.Message)
		}
		return "error: " + err.Error()
	}
	s := fmt.Sprintf("action %d", out.Action)
	if out.Status != nil {
		s += fmt.Sprintf(" status %v %q", out.Status.Code(), out.Status.Message())
	}
	if out.Message != nil {
		s += " message " + strings.Join(strings.Fields(protojson.Format(out.Message)), " ")
	}
	return s
}

// logLines returns the log lines with time and level stripped, sorted as
// written.
func logLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" || strings.Contains(l, "hook worker") {
			continue
		}
		_, rest, _ := strings.Cut(l, " level=")
		out = append(out, rest)
	}
	return out
}

// TestSameAsInProcess runs each script in the engine and in a worker: the
// outcome, the error and the log lines must be the same.
func TestSameAsInProcess(t *testing.T) {
	var poolLogs, engLogs syncBuffer
	pool := newPool(t, &poolLogs, isolate.WithWorkers(2))
	eng := engine.New(engine.WithLogger(slog.New(slog.NewTextHandler(&engLogs, nil))))
	t.Cleanup(eng.Close)
	tests := []struct {
		name   string
		script string
		phase  engine.Phase
		params any
	}{
		{"nothing goes on unchanged", `undefined`, engine.Pre, nil},
		{"a changed request goes on", `module.exports = c => { c.request.eventType = "changed"; c.request.eventData.tags.push(c.params.tag) }`, engine.Pre, map[string]any{"tag": "b"}},
		{"an override replaces the request", `({messageOverride: {toUserId: "bob"}})`, engine.Pre, nil},
		{"a rejection carries its code and message", `({status: 403, message: "no " + ctx.request.toUserId})`, engine.Pre, nil},
		{"a thrown error with a code rejects", `module.exports = () => { const e = new Error("slow down"); e.code = "RESOURCE_EXHAUSTED"; throw e }`, engine.Pre, nil},
		{"a pre-hook answers in the handler's place", `({response: {eventId: "cached"}})`, engine.Pre, nil},
		{"a post-hook changes the response", `module.exports = c => { c.response.eventId = "evt-" + c.response.eventId }`, engine.Post, nil},
		{"a thrown error fails with its message", `throw new Error("boom")`, engine.Pre, nil},
		{"a bad result names the field", `({colour: 1})`, engine.Pre, nil},
		{"an override that does not fit names the field", `({messageOverride: {noSuchField: 1}})`, engine.Pre, nil},
		{"metadata and params are seen", `module.exports = c => ({status: 400, message: c.metadata["x-tenant"][0] + "/" + c.params.n + "/" + c.hook + "/" + c.method})`, engine.Pre, map[string]any{"n": 1.5}},
		{"logs carry method, hook and value", `module.exports = c => { c.log.info("hello", {a: [1, "x"]}); c.log.warn("plain"); bridge.logError("never") }`, engine.Pre, nil},
		{"body scripts log through bridge", `bridge.logInfoJson("seen", data.message); bridge.logWarning("w")`, engine.Pre, nil},
		{"a timeout names its limit", `while (true) {}`, engine.Pre, nil},
		{"an error hook sees the call's error and replaces it", `module.exports = c => ({status: "UNAVAILABLE", message: [c.phase, c.error.code, c.error.codeNumber, c.error.message].join(" ")})`, engine.ErrorPhase, nil},
		{"an error hook answers", `module.exports = c => ({response: {eventId: "fallback-" + c.request.toUserId}})`, engine.ErrorPhase, nil},
		{"an error hook goes on", `module.exports = c => { c.request.toUserId = "x" }`, engine.ErrorPhase, nil},
		{"console logs its values as JSON", `module.exports = c => { console.warn("seen", c.request, 1) }`, engine.Pre, nil},
		{"a run that logs past its bound gets the daemon's notice, which is not the script's line",
			`module.exports = () => { const s = "y".repeat(10000); for (let i = 0; i < 30; i++) console.log(s) }`, engine.Pre, nil},
		// Names starting "apimaker:" run in the API Maker style.
		{"apimaker: a returned value answers", `module.exports = async g => ({eventId: g.req.headers["x-tenant"][0] + "-" + g.params.n})`, engine.Pre, map[string]any{"n": 2}},
		{"apimaker: g.res.output replaced goes on", `module.exports = g => { g.res.output = {eventId: "over-" + g.res.output.eventId} }`, engine.Post, nil},
		{"apimaker: a thrown status ends the call", `module.exports = g => { throw Object.assign(new Error("gone"), {status: 410}) }`, engine.Pre, nil},
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-tenant", "acme"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.script)
			if strings.HasPrefix(tt.name, "apimaker:") {
				var err error
				if s, err = s.WithStyle(engine.APIMaker); err != nil {
					t.Fatal(err)
				}
			}
			timeout := generous
			if strings.Contains(tt.name, "timeout") {
				timeout = 300 * time.Millisecond
			}
			call := func() *engine.Call {
				c := &engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: tt.phase, Hook: "h", ID: "events.v1.EventService/SendEvent/pre/h",
					Params: tt.params, Request: request(), Timeout: timeout,
					ResponseType: (&eventsv1.SendEventResponse{}).ProtoReflect().Type()}
				if tt.phase == engine.Post {
					c.Response = &eventsv1.SendEventResponse{EventId: "e1"}
					c.ResponseType = nil
				}
				if tt.phase == engine.ErrorPhase {
					c.Status = status.New(codes.NotFound, "no such event")
				}
				return c
			}
			inCall, outCall := call(), call()
			before := proto.Clone(outCall.Request)
			want := describe(eng.Run(ctx, s, inCall))
			got := describe(pool.Run(ctx, s, outCall))
			if got != want {
				t.Errorf("in a worker: %s\nin process: %s", got, want)
			}
			if !proto.Equal(outCall.Request, before) {
				t.Errorf("the worker's run changed the caller's request: %v", outCall.Request)
			}
			if g, w := logLines(poolLogs.String()), logLines(engLogs.String()); strings.Join(g, "\n") != strings.Join(w, "\n") {
				t.Errorf("logs in a worker:\n%s\nin process:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
			poolLogs.Reset()
			engLogs.Reset()
		})
	}
}

// TestDynamicMessages runs a hook on dynamicpb messages, whose types the
// worker knows only from the descriptors the pool sends.
func TestDynamicMessages(t *testing.T) {
	pool := newPool(t, &syncBuffer{}, isolate.WithWorkers(1))
	md := (&eventsv1.SendEventRequest{}).ProtoReflect().Descriptor()
	req := dynamicpb.NewMessage(md)
	b, _ := proto.Marshal(request())
	if err := proto.Unmarshal(b, req); err != nil {
		t.Fatal(err)
	}
	s := compile(t, `module.exports = c => { c.request.eventData.level += 1 }`)
	out, err := pool.Run(context.Background(), s, &engine.Call{Method: "/x.Y/Z", Phase: engine.Pre, Request: req, Timeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Message.(*dynamicpb.Message); !ok {
		t.Fatalf("got a %T; want the caller's type, *dynamicpb.Message", out.Message)
	}
	if got, want := strings.Join(strings.Fields(protojson.Format(out.Message)), " "), `{ "toUserId": "alice", "eventType": "login", "eventData": { "level": 4, "tags": [ "a" ] } }`; got != want {
		t.Errorf("got %s; want %s", got, want)
	}
}

// runner runs scripts: an engine in process, or a Pool.
type runner interface {
	Run(context.Context, *engine.Script, *engine.Call) (engine.Outcome, error)
}

// inBothPlaces runs test with an engine in process, then with a pool of
// one worker process.
func inBothPlaces(t *testing.T, test func(t *testing.T, r runner)) {
	pool := newPool(t, &syncBuffer{}, isolate.WithWorkers(1))
	eng := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(eng.Close)
	for _, place := range []struct {
		name string
		r    runner
	}{{"in process", eng}, {"in a worker", pool}} {
		t.Run(place.name, func(t *testing.T) { test(t, place.r) })
	}
}

// TestFieldsNoHookReadsGoBackAsTheyCame runs, in process and in a worker, a
// hook that sets one field of a proxy's message (a lazypb message) whose
// other string field is not UTF-8, as a client in another language may
// send: the hook never reads that field, so in both places the call goes on
// with it as it came, rather than failing on a field nobody asked for.
func TestFieldsNoHookReadsGoBackAsTheyCame(t *testing.T) {
	notUTF8 := "\xff\xfe-alice"
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, notUTF8)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "login")
	typ := lazypb.NewType((&eventsv1.SendEventRequest{}).ProtoReflect().Descriptor())
	s := compile(t, `module.exports = c => { c.request.eventType = "checked" }`)
	inBothPlaces(t, func(t *testing.T, r runner) {
		req := typ.NewMessage()
		if err := proto.Unmarshal(b, req); err != nil {
			t.Fatal(err)
		}
		out, err := r.Run(context.Background(), s, &engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Request: req, Timeout: generous})
		if err != nil {
			t.Fatal(err)
		}
		m := out.Message
		if m == nil {
			m = req
		}
		got, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("the message the call goes on with does not encode: %v", err)
		}
		fields := map[protowire.Number]string{}
		for len(got) > 0 {
			num, typ, n := protowire.ConsumeTag(got)
			if n < 0 || typ != protowire.BytesType {
				t.Fatalf("unexpected wire bytes %x", got)
			}
			v, m := protowire.ConsumeBytes(got[n:])
			if m < 0 {
				t.Fatalf("unexpected wire bytes %x", got)
			}
			fields[num] = string(v)
			got = got[n+m:]
		}
		if fields[1] != notUTF8 || fields[2] != "checked" {
			t.Errorf("the call goes on with to_user_id %q and event_type %q; want %q and \"checked\"", fields[1], fields[2], notUTF8)
		}
	})
}

// TestRequiredFieldsAreLeftToTheBackend runs, in process and in a worker,
// a hook that reads a proxy's proto2 message (a lazypb message) whose
// required field is not set: the hook runs the same in both places, and
// checking the field is left to the backend, as without hooks. (A hook
// that writes the message must leave it whole, in both places.)
func TestRequiredFieldsAreLeftToTheBackend(t *testing.T) {
	typ := lazypb.NewType((&descriptorpb.UninterpretedOption_NamePart{}).ProtoReflect().Descriptor())
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(&descriptorpb.UninterpretedOption_NamePart{NamePart: proto.String("x")}) // is_extension, required, unset
	if err != nil {
		t.Fatal(err)
	}
	s := compile(t, `module.exports = c => ({status: "INVALID_ARGUMENT", message: "no " + c.request.namePart})`)
	inBothPlaces(t, func(t *testing.T, r runner) {
		req := typ.NewMessage()
		if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, req); err != nil {
			t.Fatal(err)
		}
		out, err := r.Run(context.Background(), s, &engine.Call{Method: "/x.Y/Z", Phase: engine.Pre, Request: req, Timeout: generous})
		if got, want := describe(out, err), `action 1 status InvalidArgument "no x"`; got != want {
			t.Errorf("got %s; want %s", got, want)
		}
	})
}

// TestTypesOnlyTheCallerKnows runs a hook on a message type that exists
// only as a descriptor built at run time, unknown to the worker's program.
func TestTypesOnlyTheCallerKnows(t *testing.T) {
	pool := newPool(t, &syncBuffer{}, isolate.WithWorkers(1))
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("made/up.proto"),
		Package: proto.String("made.up"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Thing"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("name"), JsonName: proto.String("name"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
				{Name: proto.String("count"), JsonName: proto.String("count"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := dynamicpb.NewMessage(fd.Messages().Get(0))
	req.Set(fd.Messages().Get(0).Fields().ByName("name"), protoreflect.ValueOfString("a"))
	s := compile(t, `module.exports = c => { c.request.name += "b"; c.request.count = "41" }`)
	out, err := pool.Run(context.Background(), s, &engine.Call{Method: "/made.up.S/M", Phase: engine.Pre, Request: req, Timeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(strings.Fields(protojson.Format(out.Message)), " "), `{ "name": "ab", "count": "41" }`; got != want {
		t.Errorf("got %s; want %s", got, want)
	}
}

// TestAWorkerUsesTheCallersVersionOfAnImportedFile runs, in process and in
// a worker, a hook on a message whose file is the same as one the worker's
// program has compiled in, but which imports another version of a file (as
// a proxy's backend may have): the hook sees the fields of the caller's
// version in both places.
func TestAWorkerUsesTheCallersVersionOfAnImportedFile(t *testing.T) {
	// descriptor.proto with one more field, and worker.proto, which
	// imports it, as compiled in.
	dp := protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto)
	for _, m := range dp.MessageType {
		if m.GetName() == "FileDescriptorProto" {
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{Name: proto.String("extra"), JsonName: proto.String("extra"),
				Number: proto.Int32(999), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()})
		}
	}
	files := new(protoregistry.Files)
	dfd, err := protodesc.NewFile(dp, files)
	if err == nil {
		err = files.RegisterFile(dfd)
	}
	if err != nil {
		t.Fatal(err)
	}
	wfd, err := protodesc.NewFile(protodesc.ToFileDescriptorProto(isolatev1.File_apihooks_isolate_v1_worker_proto), files)
	if err != nil {
		t.Fatal(err)
	}
	runDesc, fileDesc := wfd.Messages().ByName("Run"), dfd.Messages().ByName("FileDescriptorProto")
	file := dynamicpb.NewMessage(fileDesc)
	file.Set(fileDesc.Fields().ByName("extra"), protoreflect.ValueOfString("x"))
	run := dynamicpb.NewMessage(runDesc)
	run.Mutable(runDesc.Fields().ByName("files")).List().Append(protoreflect.ValueOfMessage(file))
	s := compile(t, `module.exports = c => { c.request.method = "extra " + c.request.files[0].extra }`)
	inBothPlaces(t, func(t *testing.T, r runner) {
		req := proto.Clone(run)
		out, err := r.Run(context.Background(), s, &engine.Call{Method: "/x.Y/Z", Phase: engine.Pre, Request: req, Timeout: generous})
		if err != nil {
			t.Fatal(err)
		}
		m := out.Message
		if m == nil {
			m = req
		}
		if got := m.ProtoReflect().Get(runDesc.Fields().ByName("method")).String(); got != "extra x" {
			t.Errorf("the hook set method to %q; want %q", got, "extra x")
		}
	})
}

// TestAWorkerFollowsDescriptorsThatChange runs a hook in one worker on a
// type as its descriptors change between runs (as a proxy's backend
// describes its services anew): the worker sees the new field on the next
// run, whether the file changed in place or the type moved to another file.
func TestAWorkerFollowsDescriptorsThatChange(t *testing.T) {
	thing := func(t *testing.T, file string, fields ...string) protoreflect.MessageDescriptor {
		t.Helper()
		m := &descriptorpb.DescriptorProto{Name: proto.String("Thing")}
		for i, f := range fields {
			m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{Name: proto.String(f), JsonName: proto.String(f),
				Number: proto.Int32(int32(i + 1)), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()})
		}
		fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{Name: proto.String(file), Package: proto.String("made.up"),
			Syntax: proto.String("proto3"), MessageType: []*descriptorpb.DescriptorProto{m}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return fd.Messages().Get(0)
	}
	s := compile(t, `module.exports = c => { c.request.name = c.request.extra === undefined ? "no extra" : "extra " + c.request.extra }`)
	for _, tc := range []struct{ name, before, after string }{
		{"the file changed", "made/up.proto", "made/up.proto"},
		{"the type moved to another file", "made/up.proto", "made/up_v2.proto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, &syncBuffer{}, isolate.WithWorkers(1))
			run := func(md protoreflect.MessageDescriptor) string {
				t.Helper()
				req := dynamicpb.NewMessage(md)
				if f := md.Fields().ByName("extra"); f != nil {
					req.Set(f, protoreflect.ValueOfString("x"))
				}
				out, err := pool.Run(context.Background(), s, &engine.Call{Method: "/made.up.S/M", Phase: engine.Pre, Request: req, Timeout: generous})
				if err != nil {
					t.Fatal(err)
				}
				return out.Message.ProtoReflect().Get(md.Fields().ByName("name")).String()
			}
			if got := run(thing(t, tc.before, "name")); got != "no extra" {
				t.Fatalf("before: name = %q; want %q", got, "no extra")
			}
			after := thing(t, tc.after, "name", "extra")
			for i := range 2 {
				if got := run(after); got != "extra x" {
					t.Fatalf("after, run %d: name = %q; want %q (the hook sees the new field)", i+1, got, "extra x")
				}
			}
		})
	}
}

// children returns the pids of this process's children.
func children(t *testing.T) []int {
	t.Helper()
	return childrenOf(t, os.Getpid())
}

// childrenOf returns the pids of the children of a process.
func childrenOf(t *testing.T, parent int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var out []int
	self := parent
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		_, rest, ok := strings.Cut(string(b), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runErr(t *testing.T, pool *isolate.Pool, ctx context.Context, src string, timeout time.Duration) (engine.Outcome, *engine.Error) {
	t.Helper()
	out, err := pool.Run(ctx, compile(t, src), &engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Hook: "h", Request: request(), Timeout: timeout})
	if err == nil {
		return out, nil
	}
	var ee *engine.Error
	if !errors.As(err, &ee) {
		t.Fatalf("got %T %v; want an *engine.Error", err, err)
	}
	return out, ee
}

// A worker lets a run hold half its memory limit (64 MiB by default) of
// live data, and more for a moment: the kernel's ceiling leaves room for
// the heap the Go runtime freed but keeps mapped, and for an array that
// grows, which holds its old and new storage at once.
func TestARunMayHoldHalfItsMemoryLimitOfLiveData(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector's shadow memory counts against the limit; .ci/run runs this test without it")
	}
	for _, src := range []string{
		`const a = []; for (let i = 0; i < 1e6; i++) a.push(i)`, // 16 MiB of values, grown by doubling
		`new Array(2e6).fill(0)`,                                // 32 MiB at once
		`JSON.stringify(new Array(1e6).fill(1)).length`,
	} {
		t.Run(src, func(t *testing.T) {
			pool := newPool(t, &syncBuffer{})
			if _, ee := runErr(t, pool, context.Background(), "module.exports = () => { "+src+" }", generous); ee != nil {
				t.Fatalf("got %v; want the run to succeed within the default limit of 64 MiB", ee)
			}
		})
	}
}

// TestMemoryHogsKillOnlyTheirWorker runs allocations that no built-in's
// memory budget sees, and that would grow an in-process server without
// bound, each beside runs of a healthy hook.
func TestMemoryHogsKillOnlyTheirWorker(t *testing.T) {
	logs := &syncBuffer{}
	pool := newPool(t, logs, isolate.WithWorkers(2))
	for _, hog := range []string{
		`let s = "x"; for (;;) s += s`,
		"let s = 'x'; for (;;) s = `${s}${s}`",
		`const s = "x".repeat(1 << 20); const a = []; for (;;) a.push(s + a.length)`,
	} {
		t.Run(hog, func(t *testing.T) {
			var wg sync.WaitGroup
			healthy := make(chan error, 20)
			stop := make(chan struct{})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					out, ee := runErr(t, pool, context.Background(), `({messageOverride: {toUserId: "ok"}})`, generous)
					if ee != nil {
						healthy <- ee
						return
					}
					if out.Message == nil {
						healthy <- errors.New("no message")
						return
					}
				}
			})
			_, ee := runErr(t, pool, context.Background(), hog, generous)
			close(stop)
			wg.Wait()
			close(healthy)
			for err := range healthy {
				t.Errorf("a healthy run beside it failed: %v", err)
			}
			if ee == nil || ee.Kind != engine.Exhausted || ee.Message != "worker exceeded its memory limit of 64 MiB; killed" {
				t.Fatalf("got %v; want Exhausted: worker exceeded its memory limit of 64 MiB; killed", ee)
			}
			if got := ee.Status("events.v1.EventService/SendEvent/pre/x").String(); !strings.Contains(got, "ResourceExhausted") ||
				!strings.Contains(got, "hook events.v1.EventService/SendEvent/pre/x: worker exceeded its memory limit of 64 MiB; killed") {
				t.Errorf("status %s; want RESOURCE_EXHAUSTED naming the hook", got)
			}
			if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
				t.Errorf("a run after it: %v", ee)
			}
		})
	}
	// What built-ins would allocate is refused by the worker's engine, as
	// in process, with the pool's memory limit as its budget.
	for _, hog := range []string{`"x".repeat(2**45)`, `new ArrayBuffer(2**45)`, `new Array(5e7).fill(0)`} {
		_, ee := runErr(t, pool, context.Background(), hog, generous)
		if ee == nil || ee.Kind != engine.Exhausted || !strings.HasPrefix(ee.Message, "RangeError: hook memory budget of 64 MiB exceeded") {
			t.Errorf("%s: got %v; want Exhausted: RangeError: hook memory budget of 64 MiB exceeded...", hog, ee)
		}
	}
	if !strings.Contains(logs.String(), "out_of_memory=true") {
		t.Errorf("no worker was logged as out of memory:\n%s", logs.String())
	}
}

// TestADyingWorkerIsLoggedInOneLine: a worker that dies of a hog writes
// the Go runtime's fatal error and its goroutines' stacks, hundreds of
// lines, to its standard error: they are logged as the one line that says
// the worker exited, naming the method and hook of the run, with the first
// line and a bounded excerpt.
func TestADyingWorkerIsLoggedInOneLine(t *testing.T) {
	logs := &syncBuffer{}
	pool := newPool(t, logs, isolate.WithWorkers(1))
	const id = "events.v1.EventService/SendEvent/pre/hog"
	_, err := pool.Run(context.Background(), compile(t, `const s = "x".repeat(1 << 20); const a = []; for (;;) a.push(s + a.length)`),
		&engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Hook: "hog", ID: id, Request: request(), Timeout: generous})
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Kind != engine.Exhausted {
		t.Fatalf("got %v; want Exhausted", err)
	}
	var worker []string
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(l, `msg="hook worker started"`) {
			worker = append(worker, l)
		}
	}
	if len(worker) != 1 {
		t.Fatalf("logged %d lines; want one:\n%s", len(worker), strings.Join(worker, "\n"))
	}
	line := worker[0]
	for _, want := range []string{`level=WARN msg="hook worker exited"`, "out_of_memory=true",
		"method=/events.v1.EventService/SendEvent", "hook=" + id, "stderr=", "stderr_lines_dropped="} {
		if !strings.Contains(line, want) {
			t.Errorf("the line does not hold %s:\n%s", want, line)
		}
	}
	// The race detector's runtime says it in one line; Go's, in hundreds,
	// whose first is the fatal error of whichever allocation was refused
	// ("runtime: out of memory", "out of memory allocating heap arena
	// metadata", ...).
	if !raceDetector && (!strings.Contains(line, `stderr="fatal error: `) || !strings.Contains(line, "stderr_excerpt=")) {
		t.Errorf("the line does not start with the runtime's fatal error, and an excerpt of its stacks:\n%s", line)
	}
	// 2 KiB of excerpt, quoted, and the rest.
	if len(line) > 4<<10 {
		t.Errorf("the line is %d bytes long; want the excerpt bounded:\n%s", len(line), line)
	}
}

// TestALiveWorkersStandardErrorIsBounded: what a worker writes to its
// standard error while it lives is logged a line a second at most, each
// with a bounded excerpt.
func TestALiveWorkersStandardErrorIsBounded(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	pool := isolate.New(isolate.WithLogger(log), isolate.WithWorkers(1), isolate.WithCommand("/bin/sh", "-c",
		`i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "noise $i: some text to make the line longer than a few bytes" >&2; done; exec "$1"`, "sh", exe))
	t.Cleanup(pool.Close)
	if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
		t.Fatal(ee)
	}
	waitFor(t, "the lines to be logged", func() bool { return strings.Contains(logs.String(), "hook worker wrote to its standard error") })
	// Closing the pool ends the worker, and logs what it wrote since, if
	// anything: nothing, as the one line held it all.
	pool.Close()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("logged %d lines; want one:\n%s", len(lines), logs)
	}
	for _, want := range []string{`level=WARN msg="hook worker wrote to its standard error"`, `stderr="noise 1: some text`, "stderr_lines_dropped="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line does not hold %s:\n%s", want, lines[0])
		}
	}
	if len(lines[0]) > 4<<10 || strings.Contains(lines[0], "noise 300") {
		t.Errorf("the line is %d bytes long; want the excerpt bounded:\n%s", len(lines[0]), lines[0])
	}
}

// TestKilledWorkerIsReplaced kills a busy worker with SIGKILL: its run
// fails naming the crash, and the next run gets a new worker.
func TestKilledWorkerIsReplaced(t *testing.T) {
	logs := &syncBuffer{}
	pool := newPool(t, logs, isolate.WithWorkers(1))
	if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
		t.Fatal(ee)
	}
	kids := children(t)
	if len(kids) != 1 {
		t.Fatalf("%d workers; want 1", len(kids))
	}
	done := make(chan *engine.Error, 1)
	go func() {
		_, ee := runErr(t, pool, context.Background(), `module.exports = c => { c.log.info("looping"); while (true) {} }`, generous)
		done <- ee
	}()
	waitFor(t, "the run to start", func() bool { return strings.Contains(logs.String(), "looping") })
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ee := <-done
	if ee == nil || ee.Kind != engine.Crashed || ee.Message != "worker crashed (signal: killed)" {
		t.Fatalf("got %v; want Crashed: worker crashed (signal: killed)", ee)
	}
	if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
		t.Fatalf("the run after the crash: %v", ee)
	}
	if now := children(t); len(now) != 1 || now[0] == kids[0] {
		t.Errorf("workers %v after the crash; want one new one (the old was %d)", now, kids[0])
	}
}

// TestAbandonedRunsKillTheirWorker: a run that times out or whose context
// ends returns at once, and its worker is killed and reaped.
func TestAbandonedRunsKillTheirWorker(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cancel   bool
		timeout  time.Duration
		wantKind engine.Kind
		wantMsg  string
	}{
		{name: "timeout", timeout: 300 * time.Millisecond, wantKind: engine.Timeout, wantMsg: "timed out after 300ms of CPU time"},
		{name: "cancelled call", cancel: true, timeout: generous, wantKind: engine.Canceled, wantMsg: "context canceled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			pool := newPool(t, logs, isolate.WithWorkers(1))
			if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
				t.Fatal(ee)
			}
			old := children(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					waitFor(t, "the run to start", func() bool { return strings.Contains(logs.String(), "looping") })
					cancel()
				}()
			}
			_, ee := runErr(t, pool, ctx, `module.exports = c => { c.log.info("looping"); new Array(2e6).fill(0); while (true) {} }`, tt.timeout)
			if ee == nil || ee.Kind != tt.wantKind || ee.Message != tt.wantMsg {
				t.Fatalf("got %v; want %v: %s", ee, tt.wantKind, tt.wantMsg)
			}
			waitFor(t, "the worker to be reaped", func() bool {
				_, err := os.Stat(fmt.Sprintf("/proc/%d", old[0]))
				return err != nil
			})
			if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
				t.Fatalf("the run after: %v", ee)
			}
		})
	}
}

// TestWaitingForAWorkerHonoursContext: with every worker busy, a run
// waits, and gives up when its context ends, or at the queue wait.
func TestWaitingForAWorkerHonoursContext(t *testing.T) {
	logs := &syncBuffer{}
	pool := newPool(t, logs, isolate.WithWorkers(1), isolate.WithQueueWait(time.Minute))
	busy := make(chan *engine.Error, 1)
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	go func() {
		_, ee := runErr(t, pool, bctx, `module.exports = c => { c.log.info("looping"); while (true) {} }`, generous)
		busy <- ee
	}()
	waitFor(t, "the run to start", func() bool { return strings.Contains(logs.String(), "looping") })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, ee := runErr(t, pool, ctx, `undefined`, generous); ee == nil || ee.Kind != engine.Canceled || !errors.Is(ee, context.DeadlineExceeded) {
		t.Errorf("got %v; want Canceled by the context's deadline", ee)
	}
	short := newPool(t, logs, isolate.WithWorkers(1), isolate.WithQueueWait(0))
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	second := make(chan struct{})
	go func() {
		defer close(second)
		runErr(t, short, sctx, `module.exports = c => { c.log.info("looping too"); while (true) {} }`, generous)
	}()
	waitFor(t, "the second pool's run to start", func() bool { return strings.Contains(logs.String(), "looping too") })
	if _, ee := runErr(t, short, context.Background(), `undefined`, generous); ee == nil || ee.Kind != engine.Overloaded ||
		ee.Message != "not run: all 1 hook worker processes were busy for 0s" {
		t.Errorf("got %v; want Overloaded at once", ee)
	}
	scancel()
	<-second
	bcancel()
	if ee := <-busy; ee == nil || ee.Kind != engine.Canceled {
		t.Errorf("the busy run: %v; want Canceled", ee)
	}
}

// TestCloseReapsEveryWorker closes a pool with busy and idle workers: each
// is gone, no zombie is left, and the busy runs return.
func TestCloseReapsEveryWorker(t *testing.T) {
	logs := &syncBuffer{}
	exe, _ := os.Executable()
	pool := isolate.New(isolate.WithCommand(exe), isolate.WithWorkers(3), isolate.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	var wg sync.WaitGroup
	errs := make(chan *engine.Error, 2)
	for range 2 {
		wg.Go(func() {
			_, ee := runErr(t, pool, context.Background(), `module.exports = c => { c.log.info("looping"); while (true) {} }`, generous)
			errs <- ee
		})
	}
	waitFor(t, "both runs to start", func() bool { return strings.Count(logs.String(), "looping") == 2 })
	if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee != nil {
		t.Fatal(ee)
	}
	if n := len(children(t)); n != 3 {
		t.Fatalf("%d workers; want 3", n)
	}
	pool.Close()
	wg.Wait()
	close(errs)
	for ee := range errs {
		if ee == nil || ee.Kind != engine.Closed || ee.Message != "hook worker pool is closed" {
			t.Errorf("a busy run: %v; want: hook worker pool is closed, kind closed", ee)
		}
	}
	if kids := children(t); len(kids) != 0 {
		t.Errorf("children %v after Close; want none (not even zombies)", kids)
	}
	if _, ee := runErr(t, pool, context.Background(), `undefined`, generous); ee == nil || ee.Kind != engine.Closed || ee.Message != "hook worker pool is closed" {
		t.Errorf("a run after Close: %v; want: hook worker pool is closed, kind closed", ee)
	}
}

// TestCallsFromAWorker: a script in a worker calls other methods through
// the Caller of its run, which the daemon runs on its behalf with the
// chain of hooks the call comes from; the call's status comes back whole.
func TestCallsFromAWorker(t *testing.T) {
	pool := newPool(t, &syncBuffer{})
	src := `module.exports = async ctx => {
		const r = await ctx.call("events.v1.EventService/GetEvents", {userId: ctx.request.toUserId});
		let caught = "";
		try { await ctx.call("events.v1.EventService/Missing", {}); } catch (e) { caught = e.code + " " + e.message; }
		return {status: 409, message: r.events[0].eventId + " | " + caught};
	}`
	var requests []string
	caller := func(ctx context.Context, method string, req []byte) ([]byte, error) {
		if !engine.InNestedCall(ctx) {
			t.Errorf("the call of %s does not carry the chain of hooks it comes from", method)
		}
		requests = append(requests, method+" "+string(req))
		if method == "events.v1.EventService/Missing" {
			return nil, status.Error(codes.NotFound, "no such method here")
		}
		return []byte(`{"events":[{"eventId":"e1"}]}`), nil
	}
	for _, tt := range []struct {
		name   string
		caller engine.Caller
		want   string
	}{
		{"with a caller", caller, `status Aborted "e1 | NOT_FOUND no such method here"`},
		{"without one", nil, `status Unimplemented "ctx.call: calls between methods are not available`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := pool.Run(context.Background(), compile(t, src), &engine.Call{Method: "/events.v1.EventService/SendEvent",
				Phase: engine.Pre, Hook: "h", Request: request(), Timeout: generous, Caller: tt.caller})
			if got := describe(out, err); !strings.Contains(got, tt.want) {
				t.Fatalf("got %s; want %s", got, tt.want)
			}
		})
	}
	if want := `events.v1.EventService/GetEvents {"userId":"alice"}`; len(requests) != 2 || requests[0] != want {
		t.Fatalf("calls made: %q; want %q first", requests, want)
	}
}

// TestAProgramThatIsNotAWorkerStartsNone: a pool with the default command
// in a program whose main never called ServeWorkerIfAsked (this test
// binary's TestMain does not) starts no worker, which would run the whole
// program, and says what to do.
func TestAProgramThatIsNotAWorkerStartsNone(t *testing.T) {
	pool := isolate.New(isolate.WithWorkers(1))
	defer pool.Close()
	s, err := engine.Compile("x.js", `module.exports = () => {}`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Run(context.Background(), s, &engine.Call{Method: "/x.Y/Z", Phase: engine.Pre, Timeout: generous})
	if err == nil || !strings.Contains(err.Error(), isolate.ErrNoWorkerEntry.Error()) {
		t.Fatalf("Run with the default command: %v; want an error saying main must call isolate.ServeWorkerIfAsked first", err)
	}
	if kids := childrenOf(t, os.Getpid()); len(kids) != 0 {
		t.Fatalf("this process has children %v; want none started", kids)
	}
}

// TestBinaryMetadataReachesAWorker: metadata values that are bytes, not
// text (a -bin key's, as a binary trace context), reach a hook in a
// worker as they reach one in process: in base64.
func TestBinaryMetadataReachesAWorker(t *testing.T) {
	pool := newPool(t, &syncBuffer{})
	call := &engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Hook: "h", Request: request(), Timeout: generous,
		Metadata: map[string][]string{"grpc-trace-bin": {"\x00\xde\xad\xbe\xef\xff"}, "x-user": {"é"}}}
	out, err := pool.Run(context.Background(), compile(t, `module.exports = c => { c.request.eventType = c.metadata["grpc-trace-bin"][0] + " " + c.metadata["x-user"][0] }`), call)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Message.(*eventsv1.SendEventRequest).GetEventType(); got != "AN6tvu//"+" é" {
		t.Errorf("the hook saw %q; want %q", got, "AN6tvu// é")
	}
}

// A pool option given zero, or less, means its default: a worker starts
// and the run ends well.
func TestZeroPoolOptionsMeanTheDefault(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  isolate.Option
	}{
		{"WithStartTimeout(0)", isolate.WithStartTimeout(0)},
		{"WithStartTimeout(-1)", isolate.WithStartTimeout(-1)},
		{"WithTimeout(0)", isolate.WithTimeout(0)},
		{"WithWorkers(0)", isolate.WithWorkers(0)},
		{"WithLogger(nil)", isolate.WithLogger(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(t, &syncBuffer{}, tt.opt)
			if _, ee := runErr(t, pool, context.Background(), `undefined`, 0); ee != nil {
				t.Fatalf("run: %v; want it to end well", ee)
			}
		})
	}
}
