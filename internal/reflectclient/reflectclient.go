// Package reflectclient reads what a gRPC server serves through its server
// reflection: the services it lists, and the descriptors of the files that
// describe them.
package reflectclient

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// methods are the reflection methods Read tries, newest first; v1alpha
// shares v1's messages on the wire.
var methods = []string{
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}

// ErrNoReflection is returned, wrapped, by Read for a server that serves
// no server reflection.
var ErrNoReflection = errors.New("the server serves no server reflection")

// Read asks the server on cc for the services it lists and the files that
// describe them, imports included. A service the server lists but cannot
// describe (often its reflection itself) is listed with no file; an import
// it does not send is taken from this program's own registry when there.
func Read(ctx context.Context, cc grpc.ClientConnInterface) (services []string, files []*descriptorpb.FileDescriptorProto, err error) {
	for _, m := range methods {
		services, files, err = read(ctx, cc, m)
		if status.Code(err) != codes.Unimplemented {
			return services, files, err
		}
	}
	return nil, nil, fmt.Errorf("%w: %w", ErrNoReflection, err)
}

// read asks the reflection served at method.
func read(ctx context.Context, cc grpc.ClientConnInterface, method string) ([]string, []*descriptorpb.FileDescriptorProto, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return nil, nil, err
	}
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if err := stream.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		resp := new(rpb.ServerReflectionResponse)
		if err := stream.RecvMsg(resp); err != nil {
			return nil, err
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, refused{fmt.Errorf("%s (code %d)", e.GetErrorMessage(), e.GetErrorCode())}
		}
		return resp, nil
	}
	resp, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, nil, fmt.Errorf("reflection: list services: %w", err)
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
				return fmt.Errorf("a file descriptor: %w", err)
			}
			byName[fd.GetName()] = fd
		}
		return nil
	}
	for _, svc := range services {
		resp, err := ask(&rpb.ServerReflectionRequest{
			MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc},
		})
		var r refused
		if errors.As(err, &r) {
			continue // listed, not described
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reflection: service %s: %w", svc, err)
		}
		if err := add(resp); err != nil {
			return nil, nil, fmt.Errorf("reflection: service %s: %w", svc, err)
		}
	}
	// A server sends each file once per stream: ask for imports still
	// missing, and take the ones it does not have from the program.
	for missing := missingImports(byName); len(missing) > 0; missing = missingImports(byName) {
		for _, name := range missing {
			resp, err := ask(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: name},
			})
			if err == nil {
				err = add(resp)
			}
			if _, ok := byName[name]; ok {
				continue
			}
			if f, gerr := protoregistry.GlobalFiles.FindFileByPath(name); gerr == nil {
				byName[name] = protodesc.ToFileDescriptorProto(f)
				continue
			}
			if err == nil {
				err = errors.New("not sent")
			}
			return nil, nil, fmt.Errorf("reflection: file %s: %w", name, err)
		}
	}
	files := make([]*descriptorpb.FileDescriptorProto, 0, len(byName))
	for _, fd := range byName {
		files = append(files, fd)
	}
	return services, files, nil
}

// refused is an error the server's reflection answered with.
type refused struct{ error }

func (r refused) Unwrap() error { return r.error }

// missingImports returns the files that the files of byName import and
// byName lacks.
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
