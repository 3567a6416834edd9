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
