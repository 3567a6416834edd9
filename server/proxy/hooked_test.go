package proxy_test

import (
	"bytes"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/apihooks/apihooks/server/proxy"
)

// rawBackend answers every call with the bytes it got, and keeps the last
// ones.
type rawBackend struct {
	mu   sync.Mutex
	last []byte
}

func (r *rawBackend) handle(_ any, ss grpc.ServerStream) error {
	var in []byte
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	r.mu.Lock()
	r.last = in
	r.mu.Unlock()
	return ss.SendMsg(&in)
}

func (r *rawBackend) got() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// echoField is field num of an echo message, a string.
func echoField(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

// TestHookedCallsForwardWhatNoHookChanged: through hooks, the fields of a
// message no hook changed go on as the client (or the backend) sent them,
// in the order and number they came; a field a hook changed goes once,
// with its new value.
func TestHookedCallsForwardWhatNoHookChanged(t *testing.T) {
	backend := &rawBackend{}
	addr := serve(t, grpc.NewServer(grpc.UnknownServiceHandler(backend.handle), grpc.ForceServerCodecV2(rawCodec{})))
	w := newWorld(t, addr, nil, proxy.WithDescriptorSet(descriptorSet(echoFile(2))))
	// A message decoded and encoded again would have name once, "b", and
	// extra before it.
	sent := bytes.Join([][]byte{echoField(1, "a"), echoField(2, "x"), echoField(1, "b")}, nil)
	for _, tt := range []struct {
		name  string
		hooks map[string]string
		// toBackend is what the backend gets; the client gets it back.
		toBackend []byte
	}{
		{"hooks that only read", map[string]string{
			sayKey + "pre/look":  doc(`module.exports = c => { void c.request.name }`),
			sayKey + "post/look": doc(`module.exports = c => { void c.response.extra }`),
		}, sent},
		{"a hook that changes a field", map[string]string{
			sayKey + "pre/extra": doc(`module.exports = c => { c.request.extra = "y" }`),
		}, bytes.Join([][]byte{echoField(1, "a"), echoField(1, "b"), echoField(2, "y")}, nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w.setHooks(t, tt.hooks)
			var got []byte
			if err := w.conn.Invoke(callCtx(t), sayMethod, &sent, &got, grpc.ForceCodecV2(rawCodec{})); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(backend.got(), tt.toBackend) {
				t.Errorf("the backend got %x; want %x", backend.got(), tt.toBackend)
			}
			if !bytes.Equal(got, tt.toBackend) {
				t.Errorf("the client got %x; want %x, what the backend answered", got, tt.toBackend)
			}
		})
	}
}
