package schema

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// FromServer asks a running server for its services and their descriptors
// through gRPC server reflection (grpc.reflection.v1), over plaintext.
// The services it lists are the ones it serves; hookctl treats those but
// grpc.* as hookable, as the daemon does by default.
func FromServer(ctx context.Context, addr string) (*Source, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: reflection: %w", addr, err)
	}
	defer stream.CloseSend()
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.Recv()
			}
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, fmt.Errorf("%s (code %d)", e.GetErrorMessage(), e.GetErrorCode())
		}
		return resp, nil
	}

	resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, fmt.Errorf("server %s: reflection: list services: %w", addr, err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}

	byName := map[string]*descriptorpb.FileDescriptorProto{}
	add := func(resp *rpb.ServerReflectionResponse) error {
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fd); err != nil {
				return err
			}
			byName[fd.GetName()] = fd
		}
		return nil
	}
	for _, svc := range services {
		resp, err := ask(&rpb.ServerReflectionRequest{
			MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc},
		})
		if err != nil {
			return nil, fmt.Errorf("server %s: reflection: service %s: %w", addr, svc, err)
		}
		if err := add(resp); err != nil {
			return nil, fmt.Errorf("server %s: reflection: service %s: %w", addr, svc, err)
		}
	}
	// A server sends each file once per stream; ask for any import still
	// missing.
	for missing := missingImports(byName); len(missing) > 0; missing = missingImports(byName) {
		for _, name := range missing {
			resp, err := ask(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: name},
			})
			if err != nil {
				return nil, fmt.Errorf("server %s: reflection: file %s: %w", addr, name, err)
			}
			before := len(byName)
			if err := add(resp); err != nil {
				return nil, fmt.Errorf("server %s: reflection: file %s: %w", addr, name, err)
			}
			if _, ok := byName[name]; !ok || len(byName) == before {
				return nil, fmt.Errorf("server %s: reflection: file %s was not sent", addr, name)
			}
		}
	}
	fds := make([]*descriptorpb.FileDescriptorProto, 0, len(byName))
	for _, fd := range byName {
		fds = append(fds, fd)
	}
	files, err := buildFiles(fds)
	if err != nil {
		return nil, fmt.Errorf("server %s: reflection: %w", addr, err)
	}
	return newSource("server "+addr, files, services), nil
}

func missingImports(byName map[string]*descriptorpb.FileDescriptorProto) []string {
	var missing []string
	seen := map[string]bool{}
	for _, fd := range byName {
		for _, dep := range fd.GetDependency() {
			if _, ok := byName[dep]; !ok && !seen[dep] {
				seen[dep] = true
				missing = append(missing, dep)
			}
		}
	}
	return missing
}
