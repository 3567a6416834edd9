package proxy

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	rgrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rgrpcalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// RegisterReflection registers on srv a server reflection (v1 and v1alpha)
// that describes the backend's services, as the proxy learned them, beside
// the services srv serves itself.
//
// Each reflection stream first learns the backend's descriptors again (at
// most once per refresh interval), so clients such as grpcurl and hookctl
// see what the backend serves now, even when no hooked call asked.
func (p *Proxy) RegisterReflection(srv *grpc.Server) {
	r := &reflected{p: p, own: srv}
	opts := reflection.ServerOptions{Services: r, DescriptorResolver: r, ExtensionResolver: r}
	rgrpc.RegisterServerReflectionServer(srv, relearningV1{reflection.NewServerV1(opts), p})
	rgrpcalpha.RegisterServerReflectionServer(srv, relearningV1alpha{reflection.NewServer(opts), p})
}

type relearningV1 struct {
	rgrpc.ServerReflectionServer
	p *Proxy
}

func (r relearningV1) ServerReflectionInfo(stream rgrpc.ServerReflection_ServerReflectionInfoServer) error {
	r.p.relearn(stream.Context())
	return r.ServerReflectionServer.ServerReflectionInfo(stream)
}

type relearningV1alpha struct {
	rgrpcalpha.ServerReflectionServer
	p *Proxy
}

func (r relearningV1alpha) ServerReflectionInfo(stream rgrpcalpha.ServerReflection_ServerReflectionInfoServer) error {
	r.p.relearn(stream.Context())
	return r.ServerReflectionServer.ServerReflectionInfo(stream)
}

// reflected is what the proxy's reflection describes: the learned
// descriptors first, then the ones linked into the program (health,
// reflection).
type reflected struct {
	p   *Proxy
	own *grpc.Server
}

func (r *reflected) GetServiceInfo() map[string]grpc.ServiceInfo {
	info := r.own.GetServiceInfo()
	for _, s := range r.p.desc.current().services {
		if _, ok := info[s]; !ok {
			info[s] = grpc.ServiceInfo{}
		}
	}
	return info
}

func (r *reflected) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if f, err := r.p.desc.current().files.FindFileByPath(path); err == nil {
		return f, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r *reflected) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.p.desc.current().files.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

func (r *reflected) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if x, err := r.p.desc.current().types.FindExtensionByName(name); err == nil {
		return x, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (r *reflected) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if x, err := r.p.desc.current().types.FindExtensionByNumber(message, field); err == nil {
		return x, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}

func (r *reflected) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	more, n := true, 0
	var each func(xs protoreflect.ExtensionDescriptors, ms protoreflect.MessageDescriptors)
	each = func(xs protoreflect.ExtensionDescriptors, ms protoreflect.MessageDescriptors) {
		for i := 0; more && i < xs.Len(); i++ {
			if x := xs.Get(i); x.ContainingMessage().FullName() == message {
				n++
				more = f(dynamicpb.NewExtensionType(x))
			}
		}
		for i := 0; more && i < ms.Len(); i++ {
			each(ms.Get(i).Extensions(), ms.Get(i).Messages())
		}
	}
	r.p.desc.current().files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		each(fd.Extensions(), fd.Messages())
		return more
	})
	if n == 0 {
		protoregistry.GlobalTypes.RangeExtensionsByMessage(message, f)
	}
}
