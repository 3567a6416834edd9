package reflectclient_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/internal/reflectclient"
)

// serve starts a gRPC server on loopback with the EventService, and with
// server reflection when reflect is set, and returns a client of it.
func serve(t *testing.T, reflect bool) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	eventsv1.RegisterEventServiceServer(srv, eventsv1.UnimplementedEventServiceServer{})
	if reflect {
		reflection.Register(srv)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestReadListsServicesWithTheFilesThatDescribeThem(t *testing.T) {
	services, files, err := reflectclient.Read(context.Background(), serve(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(services, "events.v1.EventService") {
		t.Fatalf("services = %v; want events.v1.EventService among them", services)
	}
	names := map[string]bool{}
	for _, f := range files {
		names[f.GetName()] = true
	}
	// The service's file, and the files it imports, which a server sends
	// only once per stream.
	for _, f := range files {
		for _, dep := range f.GetDependency() {
			if !names[dep] {
				t.Errorf("%s imports %s, which Read did not return", f.GetName(), dep)
			}
		}
	}
	if !names[eventsv1.File_events_v1_events_proto.Path()] {
		t.Errorf("files = %v; want %s", names, eventsv1.File_events_v1_events_proto.Path())
	}
}

func TestReadOfAServerWithoutReflection(t *testing.T) {
	_, _, err := reflectclient.Read(context.Background(), serve(t, false))
	if !errors.Is(err, reflectclient.ErrNoReflection) {
		t.Fatalf("Read = %v; want ErrNoReflection", err)
	}
}
