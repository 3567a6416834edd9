// Package schema says which gRPC methods a hook may target and what their
// messages look like. A Source comes from a running server (gRPC server
// reflection), from a FileDescriptorSet (buf build -o, protoc
// --descriptor_set_out), or from the descriptors built into hookctl (the
// example EventService). hookctl uses it to refuse hooks on methods that do
// not exist, are not hookable, or are post-hooks on streams, and to build the
// request and response messages of local test runs.
package schema

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// Source is a set of services and their message types.
type Source struct {
	name     string
	files    *protoregistry.Files
	types    resolver
	services []string
	builtin  bool
	// hookable are the services hooks apply to, as the daemons'
	// --hook-services; every one but grpc.* when empty.
	hookable []string
}

// HookServices says which services hooks apply to, as the daemons'
// --hook-services does: only those, grpc.* ones too. Without, hooks apply
// to every service but gRPC's own (grpc.*).
func (s *Source) HookServices(services []string) { s.hookable = services }

// Name says where the source came from, for messages: "server
// 127.0.0.1:50051", "descriptor set api.binpb", "built-in descriptors".
func (s *Source) Name() string { return s.name }

// Services returns the services of the source, sorted.
func (s *Source) Services() []string { return s.services }

// Builtin returns the descriptors linked into hookctl: the example
// events.v1.EventService and the well-known types.
func Builtin() *Source {
	var services []string
	sds := eventsv1.File_events_v1_events_proto.Services()
	for i := range sds.Len() {
		services = append(services, string(sds.Get(i).FullName()))
	}
	return &Source{
		name:     "built-in descriptors",
		files:    protoregistry.GlobalFiles,
		types:    resolver{local: protoregistry.GlobalTypes},
		services: services,
		builtin:  true,
	}
}

// FromDescriptorSet reads a binary FileDescriptorSet. Files it imports but
// does not hold (the well-known types, typically) are taken from the
// descriptors built into hookctl when they are there.
func FromDescriptorSet(path string) (*Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("descriptor set %s: not a binary FileDescriptorSet: %w", path, err)
	}
	files, err := buildFiles(set.File)
	if err != nil {
		return nil, fmt.Errorf("descriptor set %s: %w", path, err)
	}
	var services []string
	for _, fd := range set.File {
		for _, sd := range fd.GetService() {
			name := sd.GetName()
			if pkg := fd.GetPackage(); pkg != "" {
				name = pkg + "." + name
			}
			services = append(services, name)
		}
	}
	return newSource("descriptor set "+path, files, services), nil
}

func newSource(name string, files *protoregistry.Files, services []string) *Source {
	slices.Sort(services)
	return &Source{
		name:     name,
		files:    files,
		types:    resolver{local: dynamicpb.NewTypes(files)},
		services: slices.Compact(services),
	}
}

// buildFiles builds descriptors from file descriptor protos in any order,
// each after its dependencies; a dependency the set lacks is looked up in
// the descriptors linked into the program.
func buildFiles(fds []*descriptorpb.FileDescriptorProto) (*protoregistry.Files, error) {
	byName := make(map[string]*descriptorpb.FileDescriptorProto, len(fds))
	for _, fd := range fds {
		byName[fd.GetName()] = fd
	}
	files := new(protoregistry.Files)
	r := fileResolver{local: files}
	state := map[string]int{} // 1 building, 2 done
	var build func(name string, chain []string) error
	build = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("import cycle: %s", strings.Join(append(chain, name), " → "))
		case 2:
			return nil
		}
		fd, ok := byName[name]
		if !ok {
			if _, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("%s imports %s, which is not in the set (build it with its imports)", chain[len(chain)-1], name)
		}
		state[name] = 1
		for _, dep := range fd.GetDependency() {
			if err := build(dep, append(chain, name)); err != nil {
				return err
			}
		}
		f, err := protodesc.NewFile(fd, r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := files.RegisterFile(f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		state[name] = 2
		return nil
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := build(n, nil); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// fileResolver finds files and descriptors in local first, then in the
// descriptors linked into the program.
type fileResolver struct{ local *protoregistry.Files }

func (r fileResolver) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	if f, err := r.local.FindFileByPath(p); err == nil {
		return f, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(p)
}

func (r fileResolver) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.local.FindDescriptorByName(n); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(n)
}

// resolver finds message and extension types in local first, then among the
// types linked into the program (the well-known types, for Any).
type resolver struct {
	local interface {
		protoregistry.MessageTypeResolver
		protoregistry.ExtensionTypeResolver
	}
}

func (r resolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := r.local.FindMessageByName(n); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(n)
}

func (r resolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := r.local.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

func (r resolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := r.local.FindExtensionByName(n); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (r resolver) FindExtensionByNumber(m protoreflect.FullName, f protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := r.local.FindExtensionByNumber(m, f); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, f)
}

// Resolver resolves the source's message types, for protojson's Any.
func (s *Source) Resolver() interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
} {
	return s.types
}

// MessageType returns the type of messages described by md: the generated
// Go type for built-in descriptors, a dynamic one otherwise.
func (s *Source) MessageType(md protoreflect.MessageDescriptor) protoreflect.MessageType {
	if mt, err := s.types.FindMessageByName(md.FullName()); err == nil && mt.Descriptor() == md {
		return mt
	}
	return dynamicpb.NewMessageType(md)
}

// Service returns a service of the source.
func (s *Source) Service(name string) (protoreflect.ServiceDescriptor, error) {
	if !slices.Contains(s.services, name) {
		return nil, fmt.Errorf("service %s is not in %s (%s)", name, s.name, s.listServices())
	}
	d, err := s.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("service %s: no descriptor in %s: %w", name, s.name, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service in %s", name, s.name)
	}
	return sd, nil
}

func (s *Source) listServices() string {
	if len(s.services) == 0 {
		return "it has no services"
	}
	return "it has " + strings.Join(s.services, ", ")
}

// Method returns a method of a service of the source.
func (s *Source) Method(service, method string) (protoreflect.MethodDescriptor, error) {
	sd, err := s.Service(service)
	if err != nil {
		return nil, err
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("service %s has no method %s (it has %s)", service, method, strings.Join(methodNames(sd), ", "))
	}
	return md, nil
}

func methodNames(sd protoreflect.ServiceDescriptor) []string {
	names := make([]string, sd.Methods().Len())
	for i := range names {
		names[i] = string(sd.Methods().Get(i).Name())
	}
	return names
}

// Streaming names how a method streams: "server-streaming",
// "client-streaming", "bidirectional-streaming", or "" for a unary method.
func Streaming(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidirectional-streaming"
	case md.IsStreamingServer():
		return "server-streaming"
	case md.IsStreamingClient():
		return "client-streaming"
	}
	return ""
}

// PhaseHooks names the hooks of a phase: "pre-hooks", "post-hooks", "error
// hooks".
func PhaseHooks(p engine.Phase) string {
	if p == engine.ErrorPhase {
		return "error hooks"
	}
	return string(p) + "-hooks"
}

// CheckHook reports what is wrong with a hook at k for this source: a
// service or method it does not have, a service hooks do not apply to
// (grpc.*, or one HookServices does not name), or a post-hook or error
// hook on a streaming method, where it would never run.
func (s *Source) CheckHook(k registry.Key) error {
	if k.Service == registry.Wildcard {
		return nil
	}
	switch {
	case len(s.hookable) > 0 && !slices.Contains(s.hookable, k.Service):
		return fmt.Errorf("service %s is not hookable: --hook-services names only %s", k.Service, strings.Join(s.hookable, ","))
	case len(s.hookable) == 0 && !registry.DefaultHookable(k.Service):
		return fmt.Errorf("service %s is not hookable: hooks apply to gRPC's own services (grpc.*) only where the daemons' --hook-services names them (give hookctl the same --hook-services)", k.Service)
	}
	if k.Method == registry.Wildcard {
		sd, err := s.Service(k.Service)
		if err != nil {
			return err
		}
		if k.Phase == engine.Post || k.Phase == engine.ErrorPhase {
			unary := false
			for i := range sd.Methods().Len() {
				if Streaming(sd.Methods().Get(i)) == "" {
					unary = true
				}
			}
			if !unary {
				return fmt.Errorf("%s never run on streams, and every method of %s streams: this hook would never run", PhaseHooks(k.Phase), k.Service)
			}
		}
		return nil
	}
	md, err := s.Method(k.Service, k.Method)
	if err != nil {
		return err
	}
	if st := Streaming(md); st != "" && k.Phase == engine.Post {
		return fmt.Errorf("post-hooks never run on streams: %s/%s is %s, so the daemon would skip this hook on every call; "+
			"use a pre-hook, which runs on a server stream's request and on each message a client streams", k.Service, k.Method, st)
	}
	if st := Streaming(md); st != "" && k.Phase == engine.ErrorPhase {
		return fmt.Errorf("error hooks never run on streams: %s/%s is %s, so the daemon would skip this hook on every call",
			k.Service, k.Method, st)
	}
	return nil
}
