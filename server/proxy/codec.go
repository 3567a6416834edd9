package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	// Clients and backends may compress messages with gzip.
	_ "google.golang.org/grpc/encoding/gzip"
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
	switch m := v.(type) {
	case *frame:
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	case *dynamicpb.Message:
		// A dynamic message of a backend's: proto3 or not, it is the
		// backend's to check required fields, as it would without the
		// proxy. Skipping the check saves a walk through the message.
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
		// gRPC frees data once Unmarshal returns: keep a copy.
		f.b = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (codec) Name() string { return "proto" }
