package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	rgrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/server/proxy"
)

// The echo backend is a service known only by its descriptors, as a
// backend in another language is: echo.v1.Echo, whose Say answers the
// message it gets and Chat each message of a stream. Version 1 of its Msg
// has a name; version 2 adds extra.
const (
	sayMethod  = "/echo.v1.Echo/Say"
	chatMethod = "/echo.v1.Echo/Chat"
	sayKey     = "echo.v1.Echo/Say/"
)

func echoFile(version int) protoreflect.FileDescriptor {
	field := func(name string, n int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
	}
	msg := &descriptorpb.DescriptorProto{Name: proto.String("Msg"), Field: []*descriptorpb.FieldDescriptorProto{field("name", 1)}}
	if version >= 2 {
		msg.Field = append(msg.Field, field("extra", 2))
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("echo/v1/echo.proto"), Package: proto.String("echo.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{msg},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Echo"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: proto.String("Say"), InputType: proto.String(".echo.v1.Msg"), OutputType: proto.String(".echo.v1.Msg")},
			{Name: proto.String("Chat"), InputType: proto.String(".echo.v1.Msg"), OutputType: proto.String(".echo.v1.Msg"),
				ClientStreaming: proto.Bool(true), ServerStreaming: proto.Bool(true)},
			{Name: proto.String("Flood"), InputType: proto.String(".echo.v1.Msg"), OutputType: proto.String(".echo.v1.Msg"),
				ServerStreaming: proto.Bool(true)},
		}}},
	}, nil)
	if err != nil {
		panic(err)
	}
	return fd
}

func echoMsg(version int) protoreflect.MessageDescriptor {
	return echoFile(version).Messages().ByName("Msg")
}

// newMsg returns an echo message of version 2.
func newMsg(name, extra string) *dynamicpb.Message {
	m := dynamicpb.NewMessage(echoMsg(2))
	m.Set(m.Descriptor().Fields().ByName("name"), protoreflect.ValueOfString(name))
	if extra != "" {
		m.Set(m.Descriptor().Fields().ByName("extra"), protoreflect.ValueOfString(extra))
	}
	return m
}

func nameOf(m proto.Message) string {
	r := m.ProtoReflect()
	return r.Get(r.Descriptor().Fields().ByName("name")).String()
}

// Flood sends floodCount messages of floodSize bytes, counting them in
// flooded as they go out.
const (
	floodCount = 400
	floodSize  = 256 << 10
)

var flooded atomic.Int64

// startEcho serves the echo backend of a version, with server reflection,
// on lis, with the server options opts. Say answers a message named "fail" with FAILED_PRECONDITION and
// a detail; Chat sends headers as it opens.
func startEcho(tb testing.TB, version int, lis net.Listener, opts ...grpc.ServerOption) (addr string, stop func()) {
	tb.Helper()
	file := echoFile(version)
	md := file.Messages().ByName("Msg")
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "echo.v1.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Say", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := dynamicpb.NewMessage(md)
			if err := dec(in); err != nil {
				return nil, err
			}
			if nameOf(in) == "fail" {
				st, _ := status.New(codes.FailedPrecondition, "echo says no").WithDetails(wrapperspb.String("why"))
				return nil, st.Err()
			}
			return in, nil
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Chat", ClientStreams: true, ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			// The chat opens with headers, before any message.
			if err := ss.SendHeader(metadata.Pairs("x-chat", "open")); err != nil {
				return err
			}
			for {
				in := dynamicpb.NewMessage(md)
				if err := ss.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := ss.SendMsg(in); err != nil {
					return err
				}
			}
		}}, {StreamName: "Flood", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			in := dynamicpb.NewMessage(md)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			out := dynamicpb.NewMessage(md)
			out.Set(md.Fields().ByName("name"), protoreflect.ValueOfString(strings.Repeat("x", floodSize)))
			for range floodCount {
				if err := ss.SendMsg(out); err != nil {
					return err
				}
				flooded.Add(1)
			}
			return nil
		}}},
	}, struct{}{})
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(file)}})
	if err != nil {
		tb.Fatal(err)
	}
	rgrpc.RegisterServerReflectionServer(srv, reflection.NewServerV1(reflection.ServerOptions{Services: srv, DescriptorResolver: files}))
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	stop = func() { srv.Stop(); <-done }
	tb.Cleanup(stop)
	return lis.Addr().String(), stop
}

func listen(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return lis
}

func say(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp := dynamicpb.NewMessage(echoMsg(2))
	if err := cc.Invoke(ctx, sayMethod, req, resp); err != nil {
		return "", err
	}
	return nameOf(resp), nil
}

func callCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// TestHooksOnABackendKnownByReflection: the proxy learns the backend's
// services from its server reflection, runs hooks on their calls, and
// describes them in its own reflection, so hookctl's --server checks
// work against the proxy.
func TestHooksOnABackendKnownByReflection(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	ctx := callCtx(t)

	if got, err := say(ctx, w.conn, newMsg("bob", "")); err != nil || got != "bob" {
		t.Fatalf("Say with no hooks: %q, %v; want bob", got, err)
	}
	w.setHooks(t, map[string]string{sayKey + "pre/greet": doc(`module.exports = c => { c.request.name = "hello " + c.request.name }`)})
	if got, err := say(ctx, w.conn, newMsg("bob", "")); err != nil || got != "hello bob" {
		t.Fatalf("Say with a pre-hook: %q, %v; want hello bob", got, err)
	}
	// The answer's type comes from the learned descriptors: echo.v1 is
	// linked into no program here.
	w.setHooks(t, map[string]string{sayKey + "pre/answer": doc(`module.exports = c => ({response: {name: "answered " + c.request.name}})`)})
	if got, err := say(ctx, w.conn, newMsg("fail", "")); err != nil || got != "answered fail" {
		t.Fatalf("Say with a pre-hook that answers: %q, %v; want %q (the backend, which fails, not called)", got, err, "answered fail")
	}

	t.Run("the proxy's health answers", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(w.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v, %v; want SERVING", resp.GetStatus(), err)
		}
	})
	t.Run("hookctl reads the backend's services from the proxy", func(t *testing.T) {
		src, err := schema.FromServer(ctx, w.addr)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(src.Services(), "echo.v1.Echo") {
			t.Fatalf("services %v; want echo.v1.Echo among them", src.Services())
		}
		md, err := src.Method("echo.v1.Echo", "Say")
		if err != nil {
			t.Fatal(err)
		}
		if got := md.Input().FullName(); got != "echo.v1.Msg" {
			t.Errorf("Say takes %s; want echo.v1.Msg", got)
		}
	})
}

// TestStatusDetailsPassThrough: the backend's status, with its details,
// reaches the client, whether the method has hooks or not; an error hook
// that replaces the status, or answers, decides alone what the client
// sees: the backend's details never leak past it.
func TestStatusDetailsPassThrough(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	ctx := callCtx(t)
	for _, tt := range []struct {
		name    string
		hooks   map[string]string
		code    codes.Code
		message string
		details []string
		answer  string
	}{
		{name: "without hooks", code: codes.FailedPrecondition, message: "echo says no", details: []string{"why"}},
		{name: "with a pre-hook",
			hooks: map[string]string{sayKey + "pre/look": doc(`module.exports = c => {}`)},
			code:  codes.FailedPrecondition, message: "echo says no", details: []string{"why"}},
		{name: "with an error hook that keeps the status",
			hooks: map[string]string{sayKey + "error/look": doc(`module.exports = c => {}`)},
			code:  codes.FailedPrecondition, message: "echo says no", details: []string{"why"}},
		{name: "with an error hook that hides the message",
			hooks: map[string]string{sayKey + "error/redact": doc(`module.exports = c => ({status: "INTERNAL", message: "internal error"})`)},
			code:  codes.Internal, message: "internal error"},
		{name: "with an error hook that changes the code only",
			hooks: map[string]string{sayKey + "error/retry": doc(`module.exports = c => ({status: "UNAVAILABLE"})`)},
			code:  codes.Unavailable, message: "echo says no", details: []string{"why"}},
		{name: "with an error hook that keeps the code and the message",
			hooks: map[string]string{sayKey + "error/same": doc(`module.exports = c => ({status: c.error.code, message: c.error.message})`)},
			code:  codes.FailedPrecondition, message: "echo says no", details: []string{"why"}},
		{name: "with an error hook that answers",
			hooks:  map[string]string{sayKey + "error/answer": doc(`module.exports = c => ({response: {name: "fallback"}})`)},
			code:   codes.OK,
			answer: "fallback"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w.setHooks(t, tt.hooks)
			got, err := say(ctx, w.conn, newMsg("fail", ""))
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.message || got != tt.answer {
				t.Fatalf("got %q, status %v %q; want %q, %v %q", got, st.Code(), st.Message(), tt.answer, tt.code, tt.message)
			}
			var details []string
			for _, d := range st.Details() {
				details = append(details, d.(*wrapperspb.StringValue).GetValue())
			}
			if !slices.Equal(details, tt.details) {
				t.Fatalf("details %q; want %q", details, tt.details)
			}
		})
	}
}

// TestABackendThatGoesAwayAndChanges: while the backend is away, calls fail
// with UNAVAILABLE; when it comes back, the proxy reconnects; when it
// comes back with a new field, hooks see the field without a restart,
// whether they run in the proxy's process or in a worker process.
func TestABackendThatGoesAwayAndChanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) []proxy.Option
	}{
		{"in process", func(*testing.T) []proxy.Option { return nil }},
		{"in a worker process", func(t *testing.T) []proxy.Option {
			return []proxy.Option{proxy.WithInterceptorOptions(
				interceptor.WithIsolation(interceptor.Process), interceptor.WithProcessRunner(testPool(t)))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts(t)
			addr, stop := startEcho(t, 1, listen(t, "127.0.0.1:0"))
			w := newWorld(t, addr, nil, append(opts, proxy.WithRefresh(10*time.Millisecond, 5*time.Second))...)
			w.setHooks(t, map[string]string{sayKey + "pre/extra": doc(
				`module.exports = c => { c.request.name += "+" + (c.request.extra === undefined ? "no extra" : c.request.extra) }`)})
			ctx := callCtx(t)
			if got, err := say(ctx, w.conn, newMsg("a", "x")); err != nil || got != "a+no extra" {
				t.Fatalf("Say to version 1: %q, %v; want %q", got, err, "a+no extra")
			}

			stop()
			_, err := say(ctx, w.conn, newMsg("a", "x"))
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Say, a hooked method, with the backend away: %v; want Unavailable", err)
			}
			// The client is not told where the backend is.
			if host, _, _ := strings.Cut(addr, ":"); strings.Contains(status.Convert(err).Message(), addr) || strings.Contains(status.Convert(err).Message(), "dial tcp "+host) {
				t.Errorf("Say with the backend away: %q; want a message without the backend's address", status.Convert(err).Message())
			}
			chat, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, chatMethod)
			if err == nil {
				err = chat.RecvMsg(dynamicpb.NewMessage(echoMsg(2)))
			}
			if status.Code(err) != codes.Unavailable || strings.Contains(status.Convert(err).Message(), addr) {
				t.Fatalf("Chat, a method without hooks, with the backend away: %v; want Unavailable, without the backend's address", err)
			}

			startEcho(t, 2, listen(t, addr))
			deadline := time.Now().Add(waitTimeout)
			for {
				got, err := say(ctx, w.conn, newMsg("a", "x"))
				if err == nil && got == "a+x" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Say to version 2: %q, %v; want a+x (the hook sees the new field). Logs:\n%s", got, err, w.logs)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// rawCodec sends bytes as they are: a client that sends what it likes.
// Other messages (a server's reflection beside raw handlers) go through
// the proto codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return encoding.GetCodecV2("proto").Marshal(v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestAMessageThatDoesNotDecode: a hooked method answers a message that
// does not decode against its descriptor with INTERNAL naming the method;
// a method without hooks forwards it untouched, and the backend answers.
func TestAMessageThatDoesNotDecode(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	ctx := callCtx(t)
	// Field 1, length-delimited, 100 bytes long: but 1 byte follows.
	bad := []byte{0x0a, 100, 'x'}
	call := func() error {
		var out []byte
		return w.conn.Invoke(ctx, sayMethod, &bad, &out, grpc.ForceCodecV2(rawCodec{}))
	}

	err := call()
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), sayMethod) {
		t.Fatalf("without hooks: %v; want the backend's INTERNAL, which does not name the method", err)
	}
	w.setHooks(t, map[string]string{sayKey + "pre/look": doc(`module.exports = c => {}`)})
	err = call()
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), sayMethod+": the request does not decode") {
		t.Fatalf("with a hook: %v; want INTERNAL naming %s", err, sayMethod)
	}
}

// TestAFieldThatDoesNotDecode: a request whose field a hook reads does not
// go on when that field does not decode (a string that is not UTF-8): the
// hook saw the request without it, and the call ends with INTERNAL naming
// the method, on a unary call and on a stream.
func TestAFieldThatDoesNotDecode(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	ctx := callCtx(t)
	// Field 1 (name), a string: "mallory" and a byte that is not UTF-8.
	bad := append([]byte{0x0a, 8}, "mallory\xff"...)
	deny := doc(`module.exports = c => { if (c.request.name === "mallory") return {status: 403, message: "not mallory"} }`)
	w.setHooks(t, map[string]string{sayKey + "pre/deny": deny, "echo.v1.Echo/Chat/pre/deny": deny})
	for _, tt := range []struct {
		method string
		call   func() error
	}{
		{sayMethod, func() error {
			var out []byte
			return w.conn.Invoke(ctx, sayMethod, &bad, &out, grpc.ForceCodecV2(rawCodec{}))
		}},
		{chatMethod, func() error {
			chat, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, chatMethod, grpc.ForceCodecV2(rawCodec{}))
			if err != nil {
				return err
			}
			if err := chat.SendMsg(&bad); err != nil {
				return err
			}
			var out []byte
			return chat.RecvMsg(&out)
		}},
	} {
		err := tt.call()
		if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), tt.method+": the request does not decode") ||
			!strings.Contains(st.Message(), "UTF-8") {
			t.Errorf("%s: %v; want INTERNAL naming the method and the field that does not decode", tt.method, err)
		}
	}
}

// TestStreamsOfABackendKnownByReflection: a pre-hook runs on each message
// of a bidirectional stream of a backend known by reflection.
func TestStreamsOfABackendKnownByReflection(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	w.setHooks(t, map[string]string{"echo.v1.Echo/Chat/pre/up": doc(`module.exports = c => { c.request.name = c.request.name.toUpperCase() }`)})
	ctx := callCtx(t)
	chat, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, name := range []string{"a", "b"} {
		if err := chat.SendMsg(newMsg(name, "")); err != nil {
			t.Fatal(err)
		}
		resp := dynamicpb.NewMessage(echoMsg(2))
		if err := chat.RecvMsg(resp); err != nil {
			t.Fatal(err)
		}
		got = append(got, nameOf(resp))
	}
	chat.CloseSend()
	if err := chat.RecvMsg(dynamicpb.NewMessage(echoMsg(2))); !errors.Is(err, io.EOF) {
		t.Fatalf("end of the stream: %v; want OK", err)
	}
	if !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("answers %v; want [A B]", got)
	}
}

// TestHeadersGoOutAsTheyCome: a backend's headers reach the client before
// any message does, with hooks on the method or not.
func TestHeadersGoOutAsTheyCome(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	check := func(t *testing.T) {
		ctx := callCtx(t)
		chat, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, chatMethod)
		if err != nil {
			t.Fatal(err)
		}
		md, err := chat.Header()
		if err != nil || !slices.Equal(md.Get("x-chat"), []string{"open"}) {
			t.Fatalf("headers before any message: %v, %v; want x-chat: open", md, err)
		}
		chat.CloseSend()
		if err := chat.RecvMsg(dynamicpb.NewMessage(echoMsg(2))); !errors.Is(err, io.EOF) {
			t.Fatalf("end of the stream: %v; want OK", err)
		}
	}
	t.Run("without hooks", check)
	w.setHooks(t, map[string]string{"echo.v1.Echo/Chat/pre/look": doc(`module.exports = c => {}`)})
	t.Run("with a pre-hook", check)
}

// TestFlowControlHoldsThroughTheProxy: a client that does not read holds
// up the backend that writes to it (the proxy forwards message by message
// and buffers no stream); once the client reads, every message arrives.
func TestFlowControlHoldsThroughTheProxy(t *testing.T) {
	addr, _ := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil)
	flooded.Store(0)
	ctx := callCtx(t)
	flood, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/echo.v1.Echo/Flood")
	if err != nil {
		t.Fatal(err)
	}
	if err := flood.SendMsg(newMsg("go", "")); err != nil {
		t.Fatal(err)
	}
	flood.CloseSend()
	// Wait until the backend stops making progress: it is held up by
	// flow control, or done.
	deadline := time.Now().Add(waitTimeout)
	for last, since := int64(-1), time.Now(); ; time.Sleep(50 * time.Millisecond) {
		n := flooded.Load()
		if n == floodCount {
			t.Fatalf("the backend sent all %d messages of %d KiB to a client that read none: the proxy buffered them", n, floodSize>>10)
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend kept sending for %v to a client that read nothing", waitTimeout)
		}
	}
	got := 0
	for {
		err := flood.RecvMsg(dynamicpb.NewMessage(echoMsg(2)))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		got++
	}
	if got != floodCount {
		t.Fatalf("the client got %d messages; want %d", got, floodCount)
	}
}

// TestTheProxysReflectionFollowsTheBackend: a backend redeployed with a new
// field is described so by the proxy's reflection (to grpcurl, to hookctl's
// --server), though no hooked call has asked the backend again.
func TestTheProxysReflectionFollowsTheBackend(t *testing.T) {
	addr, stop := startEcho(t, 1, listen(t, "127.0.0.1:0"))
	w := newWorld(t, addr, nil, proxy.WithRefresh(10*time.Millisecond, 5*time.Second))
	ctx := callCtx(t)
	fields := func() (string, error) {
		src, err := schema.FromServer(ctx, w.addr)
		if err != nil {
			return "", err
		}
		md, err := src.Method("echo.v1.Echo", "Say")
		if err != nil {
			return "", err
		}
		var names []string
		for i := range md.Input().Fields().Len() {
			names = append(names, string(md.Input().Fields().Get(i).Name()))
		}
		return strings.Join(names, ","), nil
	}
	if got, err := fields(); err != nil || got != "name" {
		t.Fatalf("echo.v1.Msg of version 1 through the proxy: fields %q, %v; want name", got, err)
	}
	stop()
	startEcho(t, 2, listen(t, addr))
	deadline := time.Now().Add(waitTimeout)
	for {
		got, err := fields()
		if err == nil && got == "name,extra" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo.v1.Msg after the backend's redeploy, through the proxy: fields %q, %v; want name,extra. Logs:\n%s", got, err, w.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
