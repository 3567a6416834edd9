package proxy_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	rgrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/apihooks/apihooks/server/proxy"
)

// grpcJSReflection answers server reflection as Node's @grpc/reflection
// does: it lists its services, and answers any question about a file or
// a symbol with every file it has.
type grpcJSReflection struct {
	rgrpc.UnimplementedServerReflectionServer
	services []string
	files    [][]byte
}

func (r grpcJSReflection) ServerReflectionInfo(s rgrpc.ServerReflection_ServerReflectionInfoServer) error {
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &rgrpc.ServerReflectionResponse{OriginalRequest: req}
		if _, ok := req.GetMessageRequest().(*rgrpc.ServerReflectionRequest_ListServices); ok {
			list := &rgrpc.ListServiceResponse{}
			for _, name := range r.services {
				list.Service = append(list.Service, &rgrpc.ServiceResponse{Name: name})
			}
			resp.MessageResponse = &rgrpc.ServerReflectionResponse_ListServicesResponse{ListServicesResponse: list}
		} else {
			resp.MessageResponse = &rgrpc.ServerReflectionResponse_FileDescriptorResponse{
				FileDescriptorResponse: &rgrpc.FileDescriptorResponse{FileDescriptorProto: r.files}}
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// TestHooksInFrontOfANodeBackend: a backend whose reflection describes its
// messages as @grpc/reflection does (one file per package, no imports,
// map entries named like their fields) is learned, and hooks run on its
// methods, maps included.
func TestHooksInFrontOfANodeBackend(t *testing.T) {
	var files [][]byte
	for _, text := range proxy.GrpcJSFiles {
		fd := new(descriptorpb.FileDescriptorProto)
		if err := prototext.Unmarshal([]byte(text), fd); err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(fd)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	backend := &rawBackend{}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(backend.handle), grpc.ForceServerCodecV2(rawCodec{}))
	rgrpc.RegisterServerReflectionServer(srv, grpcJSReflection{services: []string{"demo.v1.Demo"}, files: files})
	w := newWorld(t, serve(t, srv), nil)
	w.setHooks(t, map[string]string{"demo.v1.Demo/Unary/pre/label": doc(
		`module.exports = c => { c.request.name = "hooked " + c.request.name; c.request.labels = {team: "a"} }`)})

	sent := echoField(1, "bob")
	var got []byte
	if err := w.conn.Invoke(callCtx(t), "/demo.v1.Demo/Unary", &sent, &got, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("Unary through the proxy: %v\nlogs:\n%s", err, w.logs)
	}
	entry := protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType),
		append(echoField(1, "team"), echoField(2, "a")...))
	if !bytes.Contains(backend.got(), echoField(1, "hooked bob")) || !bytes.Contains(backend.got(), entry) {
		t.Errorf("the backend got %x; want name %q and the map entry team=a", backend.got(), "hooked bob")
	}
}
