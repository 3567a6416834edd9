package proxy_test

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/apihooks/apihooks/interceptor/registry"
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

// TestACacheHitCarriesTheBackendsHeadersAndTrailers: a response the
// proxy's response cache answers with comes with the headers and trailers
// the backend sent with it.
func TestACacheHitCarriesTheBackendsHeadersAndTrailers(t *testing.T) {
	var calls atomic.Int32
	addr := serve(t, grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var in []byte
		if err := ss.RecvMsg(&in); err != nil {
			return err
		}
		n := calls.Add(1)
		ss.SetHeader(metadata.Pairs("x-backend", "b1", "x-call", strconv.Itoa(int(n))))
		ss.SetTrailer(metadata.Pairs("x-served-by", "backend"))
		return ss.SendMsg(&in)
	})))
	w := newWorld(t, addr, nil, proxy.WithDescriptorSet(descriptorSet(echoFile(2))))
	resp, err := w.etcd.Client.Put(context.Background(), registry.CacheDir(registry.DefaultPrefix)+"echo.v1.Echo/Say", `{"ttl":"1h"}`)
	if err != nil {
		t.Fatal(err)
	}
	w.waitRevision(t, resp.Header.Revision)

	sent := echoField(1, "a")
	for i := range 3 {
		var header, trailer metadata.MD
		var got []byte
		if err := w.conn.Invoke(callCtx(t), sayMethod, &sent, &got, grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, sent) {
			t.Errorf("call %d: response %x; want %x", i, got, sent)
		}
		if h := header.Get("x-backend"); len(h) != 1 || h[0] != "b1" || header.Get("x-call")[0] != "1" {
			t.Errorf("call %d: headers %v; want the backend's of its one call: x-backend=b1, x-call=1", i, header)
		}
		if tr := trailer.Get("x-served-by"); len(tr) != 1 || tr[0] != "backend" {
			t.Errorf("call %d: trailers %v; want x-served-by=backend", i, trailer)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the backend got %d calls; want 1, the others answered from the cache", n)
	}
}
