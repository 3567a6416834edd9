package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	// Clients and backends may compress messages with gzip...
	_ "google.golang.org/grpc/encoding/gzip"
	// The proto codec is the one every other message goes through.
	_ "google.golang.org/grpc/encoding/proto"

	// ... and with deflate, as gRPC's core library does.
	_ "github.com/apihooks/apihooks/internal/deflate"
	"github.com/apihooks/apihooks/internal/lazypb"
)

// frame is one message as it travels on the wire, never decoded: the
// buffers gRPC received it in, which the frame keeps a reference to. gRPC
// frees a frame it sends; one that is not sent is freed with free (or left
// to the garbage collector, which takes the buffers from gRPC's pool).
type frame struct {
	data mem.BufferSlice
}

// bytes returns the message in one slice, a copy only when it came in
// pieces. It is valid until the frame is sent or freed.
func (f *frame) bytes() []byte {
	if len(f.data) == 1 {
		return f.data[0].ReadOnlyData()
	}
	return f.data.Materialize()
}

// free gives the frame's buffers back; it must not be sent afterwards.
func (f *frame) free() {
	f.data.Free()
	f.data = nil
}

// codec passes frames through as they are and hands every other message to
// gRPC's proto codec. Its name is "proto", so the content type on the wire
// stays the one clients and backends expect.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec {
	return codec{proto: encoding.GetCodecV2("proto")}
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *frame:
		// gRPC frees what Marshal returns once it is sent: the frame's
		// reference goes with it.
		data := m.data
		m.data = nil
		return data, nil
	case *lazypb.Message:
		// A message of a backend's: proto3 or not, it is the backend's to
		// check required fields, as it would without the proxy.
		b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		// gRPC frees data once Unmarshal returns: keep a reference.
		data.Ref()
		f.data = data
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (codec) Name() string { return "proto" }
