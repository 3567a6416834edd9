package proxy

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// backendConn is the proxy's connection to the backend, whose errors about
// the connection itself reach clients without the backend's address (see
// backendError).
type backendConn struct{ grpc.ClientConnInterface }

func (c backendConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return backendError(c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...))
}

func (c backendConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, backendError(err)
	}
	return backendStream{cs}, nil
}

type backendStream struct{ grpc.ClientStream }

func (s backendStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, backendError(err)
}

func (s backendStream) RecvMsg(m any) error { return backendError(s.ClientStream.RecvMsg(m)) }

// backendError hides from a client what grpc-go says when it cannot reach
// the backend at all: its address, as dialled ("connection error: desc =
// ... dial tcp 10.0.0.7:50051: connect: connection refused") or resolved.
// The client learns the backend is unavailable, as from any proxy; the
// backend's own statuses, and a call cut short ("error reading from
// server"), pass as they are.
func backendError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	switch msg := st.Message(); {
	case strings.HasPrefix(msg, "connection error:"):
		return status.Error(codes.Unavailable, "the backend is unavailable: the proxy cannot connect to it")
	case strings.Contains(msg, "name resolver error") || strings.Contains(msg, "produced zero addresses"):
		return status.Error(codes.Unavailable, "the backend is unavailable: its address does not resolve")
	}
	return err
}
