package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	// The proto codec is the one every other message goes through.
	_ "google.golang.org/grpc/encoding/proto"
)

// frame is one message as it travels on the wire, never decoded.
type frame struct {
	b []byte
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
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		// gRPC frees data once Unmarshal returns: keep a copy.
		f.b = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (codec) Name() string { return "proto" }
