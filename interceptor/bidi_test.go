package interceptor_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testingv1 "github.com/apihooks/apihooks/gen/apihooks/testing/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// chatService answers each message from a sender goroutine of its own, as
// bidirectional handlers do, while its handler goroutine receives; between
// answers the sender keeps sending ticks, so its sends overlap whatever the
// interceptor sends.
type chatService struct {
	testingv1.UnimplementedChatServiceServer
}

func (chatService) Chat(ss grpc.BidiStreamingServer[testingv1.Nested, testingv1.Nested]) error {
	out := make(chan *testingv1.Nested)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ss.Send(&testingv1.Nested{Name: "hello"})
		for {
			m := &testingv1.Nested{Name: "tick"}
			select {
			case a, ok := <-out:
				if !ok {
					return
				}
				m = a
			case <-time.After(50 * time.Microsecond):
			}
			if ss.Send(m) != nil {
				return
			}
		}
	}()
	defer func() {
		close(out)
		wg.Wait()
	}()
	for {
		m, err := ss.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		out <- &testingv1.Nested{Name: "echo:" + m.Name}
	}
}

func TestBidiStream(t *testing.T) {
	e := newEnv(t)
	eng := engine.New(engine.WithQueueWait(time.Minute))
	t.Cleanup(eng.Close)
	srv := grpc.NewServer(grpc.StreamInterceptor(interceptor.StreamServerInterceptor(e.reg, interceptor.WithEngine(eng))))
	testingv1.RegisterChatServiceServer(srv, chatService{})
	client := testingv1.NewChatServiceClient(serve(t, srv))

	e.setHooks(t, map[string]string{"apihooks.testing.v1.ChatService/Chat/pre/h": doc(`module.exports = c => {
		if (c.request.name === "deny") return {status: 403, message: "no " + c.request.name};
		if (c.request.name === "answer") return {response: {name: "from-hook"}};
		c.request.name = "hooked-" + c.request.name }`)})

	tests := []struct {
		name     string
		send     []string
		want     []string // what the client receives, in order
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "pre-hooks run on every message of a bidi stream",
			send: []string{"a", "b"}, want: []string{"hello", "echo:hooked-a", "echo:hooked-b"}},
		{name: "a rejection ends the stream",
			send: []string{"a", "deny", "c"}, want: []string{"hello", "echo:hooked-a"},
			wantCode: codes.PermissionDenied, wantMsg: "no deny"},
		{name: "an answer is the stream's last message, and it ends with OK",
			send: []string{"a", "answer", "c"}, want: []string{"hello", "echo:hooked-a", "from-hook"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.Chat(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			recv := func() error { // the next message that is not a tick
				for {
					m, err := stream.Recv()
					if err != nil {
						return err
					}
					if m.Name != "tick" {
						got = append(got, m.Name)
						return nil
					}
				}
			}
			if err := recv(); err != nil { // hello
				t.Fatal(err)
			}
			var end error
			for _, s := range tt.send {
				if err := stream.Send(&testingv1.Nested{Name: s}); err != nil {
					break
				}
				if end = recv(); end != nil {
					break
				}
			}
			if end == nil {
				stream.CloseSend()
				for end = recv(); end == nil; end = recv() {
				}
			}
			if end == io.EOF {
				end = nil
			}
			if st := status.Convert(end); st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Fatalf("stream ended with %v %q; want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("received %v; want %v", got, tt.want)
			}
		})
	}
}

// pushChat is a push-style bidirectional handler: a goroutine of its own
// receives the client's messages while the handler sends updates until its
// context ends or a send fails. It then tries one more send, tells ended
// how its context ended and what its sends returned, and returns an error
// of its own, which a hook's end of the call must not replace.
type pushChat struct {
	testingv1.UnimplementedChatServiceServer
	ended chan<- pushEnd
}

// pushEnd is how a pushChat call ended for its handler.
type pushEnd struct {
	cause    error // the context's cause
	sendErr  error // what the send that ended the loop returned, if one did
	lastSend error // what the send tried once the context ended returned
}

func (p pushChat) Chat(ss grpc.BidiStreamingServer[testingv1.Nested, testingv1.Nested]) error {
	go func() {
		for {
			if _, err := ss.Recv(); err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var end pushEnd
loop:
	for {
		select {
		case <-ss.Context().Done():
			break loop
		case <-tick.C:
			if err := ss.Send(&testingv1.Nested{Name: "update"}); err != nil {
				end.sendErr = err
				break loop
			}
		}
	}
	<-ss.Context().Done()
	end.cause = context.Cause(ss.Context())
	end.lastSend = ss.Send(&testingv1.Nested{Name: "after-end"})
	p.ended <- end
	return status.Error(codes.Unknown, "the handler's own end")
}

// TestPushStreamEndsWithTheHook is a push-style bidi handler under a
// pre-hook that rejects or answers a message: the client gets the hook's
// end of the call (the rejection, or the answer as last message and OK),
// the handler's context is cancelled, and its sends fail from then on.
func TestPushStreamEndsWithTheHook(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{"apihooks.testing.v1.ChatService/Chat/pre/h": doc(`module.exports = c => {
		if (c.request.name === "deny") return {status: 403, message: "no deny"};
		if (c.request.name === "answer") return {response: {name: "from-hook"}} }`)})
	answered := status.New(codes.Aborted, "the call was answered by a hook")
	tests := []struct {
		name        string
		send        []string
		want        *status.Status // the client's end of the call
		wantLast    string         // the client's last message, if it must be one
		wantHandler *status.Status // the handler's context's cause, and what its sends return, once the hook ended the call
	}{
		{name: "a rejection of the first message",
			send: []string{"deny"}, want: status.New(codes.PermissionDenied, "no deny"),
			wantHandler: status.New(codes.PermissionDenied, "no deny")},
		{name: "a rejection of a later message",
			send: []string{"a", "b", "deny"}, want: status.New(codes.PermissionDenied, "no deny"),
			wantHandler: status.New(codes.PermissionDenied, "no deny")},
		{name: "an answer to the first message",
			send: []string{"answer"}, want: status.New(codes.OK, ""), wantLast: "from-hook", wantHandler: answered},
		{name: "an answer to a later message",
			send: []string{"a", "b", "answer"}, want: status.New(codes.OK, ""), wantLast: "from-hook", wantHandler: answered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ended := make(chan pushEnd, 1)
			srv := grpc.NewServer(grpc.StreamInterceptor(interceptor.StreamServerInterceptor(e.reg, interceptor.WithEngine(e.eng))))
			testingv1.RegisterChatServiceServer(srv, pushChat{ended: ended})
			client := testingv1.NewChatServiceClient(serve(t, srv))
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			stream, err := client.Chat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.send {
				if err := stream.Send(&testingv1.Nested{Name: s}); err != nil {
					break // the server ended the call; Recv tells how
				}
			}
			var last string
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					if st := status.Convert(err); st.Code() != tt.want.Code() || st.Message() != tt.want.Message() {
						t.Fatalf("stream ended with %v %q after %q; want %v %q", st.Code(), st.Message(), last, tt.want.Code(), tt.want.Message())
					}
					break
				}
				last = m.Name
			}
			if tt.want.Code() == codes.OK && last != tt.wantLast {
				t.Fatalf("the stream ended with OK after %q; want it to end after %q", last, tt.wantLast)
			}
			if last == "after-end" {
				t.Fatalf("the client received a message the handler sent after the hook ended the call")
			}
			var end pushEnd
			select {
			case end = <-ended:
			case <-time.After(waitTimeout):
				t.Fatal("the handler did not end")
			}
			type check struct {
				what string
				err  error
			}
			checks := []check{{"context's cause", end.cause}, {"send once its context ended", end.lastSend}}
			if end.sendErr != nil { // nil: the handler saw its context end first
				checks = append(checks, check{"send that failed", end.sendErr})
			}
			for _, c := range checks {
				if st := status.Convert(c.err); st.Code() != tt.wantHandler.Code() || st.Message() != tt.wantHandler.Message() {
					t.Errorf("the handler's %s: %v %q; want %v %q", c.what, st.Code(), st.Message(), tt.wantHandler.Code(), tt.wantHandler.Message())
				}
			}
		})
	}
}
