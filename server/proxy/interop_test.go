package proxy_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server/proxy"
)

// startInterop serves grpc-go's interop test server on loopback. It has no
// server reflection.
func startInterop(tb testing.TB) string {
	tb.Helper()
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	return serve(tb, srv)
}

// descriptorSet is the descriptor set of file and its imports, as
// `protoc --include_imports -o` would write it.
func descriptorSet(file protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := range f.Imports().Len() {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(file)
	return set
}

// newInteropWorld is a proxy in front of the interop server, which it
// knows from a descriptor set, with hooks allowed on grpc.testing.TestService.
func newInteropWorld(tb testing.TB) *world {
	return newWorld(tb, startInterop(tb),
		[]registry.Option{registry.WithServices("grpc.testing.TestService")},
		proxy.WithDescriptorSet(descriptorSet(testgrpc.File_grpc_testing_test_proto)))
}

// interopCases are grpc-go's interop client test cases over plaintext.
var interopCases = []struct {
	name string
	run  func(ctx context.Context, cc *grpc.ClientConn)
}{
	{"empty_unary", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"large_unary", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"client_streaming", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"server_streaming", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"ping_pong", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"empty_stream", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"timeout_on_sleeping_server", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_begin", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"cancel_after_first_response", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"custom_metadata", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"status_code_and_message", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"special_status_message", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(cc))
	}},
	{"unimplemented_method", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoUnimplementedMethod(ctx, cc)
	}},
	{"unimplemented_service", func(ctx context.Context, cc *grpc.ClientConn) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(cc))
	}},
}

// runInterop runs every interop case against cc, one subtest each.
func runInterop(t *testing.T, cc *grpc.ClientConn) {
	for _, c := range interopCases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					if f, ok := r.(interopFailure); ok {
						t.Fatalf("interop case %s failed: %s", c.name, f)
					}
					panic(r)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			c.run(ctx, cc)
		})
	}
}

// TestInteropSuitePassesThroughTheProxy runs grpc-go's interop client
// cases through the proxy to grpc-go's interop server: once with no hooks
// (every call forwarded as raw bytes), once with hooks that change nothing
// on UnaryCall (pre and post) and FullDuplexCall (pre), so those calls are
// decoded, run through the hooks, and encoded again.
func TestInteropSuitePassesThroughTheProxy(t *testing.T) {
	w := newInteropWorld(t)
	t.Run("no hooks", func(t *testing.T) { runInterop(t, w.conn) })
	w.setHooks(t, map[string]string{
		"grpc.testing.TestService/UnaryCall/pre/look":       doc(`module.exports = c => { void c.request.responseSize }`),
		"grpc.testing.TestService/UnaryCall/post/look":      doc(`module.exports = c => { void c.response.username }`),
		"grpc.testing.TestService/FullDuplexCall/pre/look":  doc(`module.exports = c => { void c.request.responseParameters }`),
		"grpc.testing.TestService/StreamingInputCall/pre/l": doc(`module.exports = c => {}`),
	})
	t.Run("hooks that change nothing", func(t *testing.T) { runInterop(t, w.conn) })
}

// TestHooksOnInteropCalls puts hooks in front of the interop server, which
// nobody here wrote, and checks what a real client gets.
func TestHooksOnInteropCalls(t *testing.T) {
	w := newInteropWorld(t)
	client := testgrpc.NewTestServiceClient(w.conn)
	const (
		unaryKey  = "grpc.testing.TestService/UnaryCall/"
		duplexKey = "grpc.testing.TestService/FullDuplexCall/"
	)
	// internalError makes the interop server fail the call.
	internalError := &testgrpc.EchoStatus{Code: int32(codes.Internal), Message: "backend says no"}

	unaryTests := []struct {
		name  string
		hooks map[string]string
		req   *testgrpc.SimpleRequest
		// wantCode and wantMsg: the client's status; on OK, wantBody is
		// the length of the payload and wantUser the username answered.
		wantCode codes.Code
		wantMsg  string
		wantBody int
		wantUser string
	}{
		{name: "a pre-hook changes the request the backend gets",
			hooks:    map[string]string{unaryKey + "pre/size": doc(`module.exports = c => { c.request.responseSize = 5 }`)},
			req:      &testgrpc.SimpleRequest{ResponseSize: 100},
			wantBody: 5},
		{name: "a pre-hook rejects: the backend is not called",
			hooks:    map[string]string{unaryKey + "pre/deny": doc(`module.exports = c => ({status: "PERMISSION_DENIED", message: "not you"})`)},
			req:      &testgrpc.SimpleRequest{ResponseSize: 1},
			wantCode: codes.PermissionDenied, wantMsg: "not you"},
		{name: "a pre-hook answers: the backend, which would fail, is not called",
			hooks:    map[string]string{unaryKey + "pre/answer": doc(`module.exports = c => ({response: {username: "from-hook"}})`)},
			req:      &testgrpc.SimpleRequest{ResponseStatus: internalError},
			wantUser: "from-hook"},
		{name: "a post-hook changes the backend's response",
			hooks:    map[string]string{unaryKey + "post/user": doc(`module.exports = c => { c.response.username = "post:" + c.request.responseSize }`)},
			req:      &testgrpc.SimpleRequest{ResponseSize: 7, FillUsername: false},
			wantBody: 7, wantUser: "post:7"},
		{name: "an error hook answers in place of the backend's error",
			hooks:    map[string]string{unaryKey + "error/rescue": doc(`module.exports = c => ({response: {username: "rescued from " + c.error.code}})`)},
			req:      &testgrpc.SimpleRequest{ResponseStatus: internalError},
			wantUser: "rescued from INTERNAL"},
		{name: "the backend's error passes through a method with hooks",
			hooks:    map[string]string{unaryKey + "pre/look": doc(`module.exports = c => {}`)},
			req:      &testgrpc.SimpleRequest{ResponseStatus: internalError},
			wantCode: codes.Internal, wantMsg: "backend says no"},
	}
	for _, tt := range unaryTests {
		t.Run("UnaryCall: "+tt.name, func(t *testing.T) {
			w.setHooks(t, tt.hooks)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			resp, err := client.UnaryCall(ctx, tt.req)
			if st := status.Convert(err); st.Code() != tt.wantCode || st.Message() != tt.wantMsg && tt.wantCode != codes.OK {
				t.Fatalf("status %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if got := len(resp.GetPayload().GetBody()); got != tt.wantBody {
				t.Errorf("payload of %d bytes; want %d", got, tt.wantBody)
			}
			if got := resp.GetUsername(); got != tt.wantUser {
				t.Errorf("username %q; want %q", got, tt.wantUser)
			}
		})
	}

	duplexTests := []struct {
		name  string
		hooks map[string]string
		// sizes are the response sizes the client asks for, one message
		// each; want are the payload lengths it gets back, then wantCode
		// and wantMsg its status.
		sizes    []int32
		want     []int
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "a pre-hook changes each message the backend gets",
			hooks: map[string]string{duplexKey + "pre/double": doc(`module.exports = c => { c.request.responseParameters[0].size *= 2 }`)},
			sizes: []int32{1, 2, 3}, want: []int{2, 4, 6}},
		{name: "a pre-hook rejects the third message: the stream ends with its status",
			hooks: map[string]string{duplexKey + "pre/limit": doc(`module.exports = c => { if (c.request.responseParameters[0].size > 2) return {status: "OUT_OF_RANGE", message: "too big"} }`)},
			sizes: []int32{1, 2, 3}, want: []int{1, 2}, wantCode: codes.OutOfRange, wantMsg: "too big"},
		{name: "a pre-hook answers the first message: the stream ends OK",
			hooks: map[string]string{duplexKey + "pre/answer": doc(`module.exports = c => ({response: {}})`)},
			sizes: []int32{5}, want: []int{0}},
	}
	for _, tt := range duplexTests {
		t.Run("FullDuplexCall: "+tt.name, func(t *testing.T) {
			w.setHooks(t, tt.hooks)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			stream, err := client.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			var end error
			for _, size := range tt.sizes {
				req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}
				if err := stream.Send(req); err != nil {
					break // the status comes from Recv
				}
				resp, err := stream.Recv()
				if err != nil {
					end = err
					break
				}
				got = append(got, len(resp.GetPayload().GetBody()))
			}
			if end == nil {
				stream.CloseSend()
				_, end = stream.Recv()
			}
			if !equalInts(got, tt.want) {
				t.Errorf("payloads of %v bytes; want %v", got, tt.want)
			}
			if errors.Is(end, io.EOF) {
				end = nil
			}
			if st := status.Convert(end); st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("status %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCompressedCallsPassThrough: calls compressed with gzip go through,
// with hooks on the method or not.
func TestCompressedCallsPassThrough(t *testing.T) {
	w := newInteropWorld(t)
	check := func(t *testing.T) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("large_unary with gzip: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(w.conn), grpc.UseCompressor(gzip.Name))
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(w.conn), grpc.UseCompressor(gzip.Name))
	}
	t.Run("without hooks", check)
	w.setHooks(t, map[string]string{
		"grpc.testing.TestService/UnaryCall/pre/look":      doc(`module.exports = c => {}`),
		"grpc.testing.TestService/FullDuplexCall/pre/look": doc(`module.exports = c => {}`),
	})
	t.Run("with pre-hooks", check)
}
