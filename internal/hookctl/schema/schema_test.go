package schema_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
)

func writeSet(t *testing.T, files ...*descriptorpb.FileDescriptorProto) string {
	t.Helper()
	b, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "set.binpb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDescriptorSetWithoutImportsUsesTheBuiltInWellKnownTypes(t *testing.T) {
	src, err := schema.FromDescriptorSet(writeSet(t, protodesc.ToFileDescriptorProto(eventsv1.File_events_v1_events_proto)))
	if err != nil {
		t.Fatal(err)
	}
	md, err := src.Method("events.v1.EventService", "SendEvent")
	if err != nil {
		t.Fatal(err)
	}
	mt := src.MessageType(md.Input())
	if _, ok := mt.New().Interface().(*dynamicpb.Message); !ok {
		t.Errorf("message type from a descriptor set: got %T; want a dynamic message", mt.New().Interface())
	}
	if got := strings.Join(src.Services(), ","); got != "events.v1.EventService" {
		t.Errorf("services: got %s; want events.v1.EventService", got)
	}
}

func TestDescriptorSetProblems(t *testing.T) {
	fd := protodesc.ToFileDescriptorProto(eventsv1.File_events_v1_events_proto)
	fd.Dependency = append(fd.Dependency, "missing/dep.proto")
	cases := []struct {
		name, path, want string
	}{
		{"an import the set lacks", writeSet(t, fd), "imports missing/dep.proto, which is not in the set"},
		{"not a descriptor set", func() string {
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, []byte("hello"), 0o644)
			return p
		}(), "not a binary FileDescriptorSet"},
		{"no file", filepath.Join(t.TempDir(), "none"), "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schema.FromDescriptorSet(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckHook(t *testing.T) {
	src := schema.Builtin()
	cases := []struct {
		service, method string
		phase           engine.Phase
		want            string // "" for no error
	}{
		{"events.v1.EventService", "SendEvent", engine.Post, ""},
		{"events.v1.EventService", "StreamEvents", engine.Pre, ""},
		{"events.v1.EventService", "StreamEvents", engine.Post, "post-hooks never run on streams: events.v1.EventService/StreamEvents is server-streaming"},
		{"events.v1.EventService", "PublishEvents", engine.Post, "is client-streaming"},
		{"events.v1.EventService", "*", engine.Post, ""},
		{"*", "*", engine.Post, ""},
		{"grpc.health.v1.Health", "Check", engine.Pre, "not hookable"},
		{"events.v1.EventService", "Nope", engine.Pre, "has no method Nope"},
		{"shop.v1.Shop", "*", engine.Pre, "service shop.v1.Shop is not in built-in descriptors"},
	}
	for _, tc := range cases {
		k := registry.Key{Service: tc.service, Method: tc.method, Phase: tc.phase, Name: "x"}
		err := src.CheckHook(k)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: got %v; want no error", k, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v; want an error containing %q", k, err, tc.want)
		}
	}
}

// TestHookServices: hooks on gRPC's own services pass the check only where
// the daemons' --hook-services names them; a list names every service
// hooks apply to.
func TestHookServices(t *testing.T) {
	src, err := schema.FromDescriptorSet(writeSet(t,
		protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto),
		protodesc.ToFileDescriptorProto(eventsv1.File_events_v1_events_proto),
		protodesc.ToFileDescriptorProto(structpb.File_google_protobuf_struct_proto),
		protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto)))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name         string
		hookServices []string
		service      string
		want         string // "" for no error
	}{
		{"grpc.* by default", nil, "grpc.health.v1.Health", "hooks apply to gRPC's own services (grpc.*) only where the daemons' --hook-services names them"},
		{"another service by default", nil, "events.v1.EventService", ""},
		{"grpc.* named", []string{"grpc.health.v1.Health"}, "grpc.health.v1.Health", ""},
		{"a service the list leaves out", []string{"grpc.health.v1.Health"}, "events.v1.EventService", "service events.v1.EventService is not hookable: --hook-services names only grpc.health.v1.Health"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src.HookServices(tc.hookServices)
			method := "Check"
			if tc.service == "events.v1.EventService" {
				method = "SendEvent"
			}
			err := src.CheckHook(registry.Key{Service: tc.service, Method: method, Phase: engine.Pre, Name: "x"})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
