package interceptor_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// A service of your own, with hooks from etcd: README's snippet. It is
// compiled, not run, since it needs an etcd.
func Example() {
	ctx := context.Background()
	etcdClient, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer etcdClient.Close()

	reg := registry.New(etcdClient, registry.WithServices("events.v1.EventService"))
	if err := reg.Start(ctx); err != nil {
		log.Fatal(err) // etcd unreachable
	}
	defer reg.Close()
	engine.BoundRegexpMatches() // once per process
	eng := engine.New(engine.WithTimeout(100 * time.Millisecond))
	defer eng.Close()
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(reg, interceptor.WithEngine(eng))),
		grpc.ChainStreamInterceptor(interceptor.StreamServerInterceptor(reg, interceptor.WithEngine(eng))),
	)
	eventsv1.RegisterEventServiceServer(srv, &recorder{})
	// ... srv.Serve(listener)
}

// Hooks given in code rather than read from etcd, with an Observer that is
// told how each hook run ended.
func ExampleUnaryServerInterceptor_static() {
	hook, err := registry.Build(
		registry.Key{Service: "events.v1.EventService", Method: "SendEvent", Phase: engine.Pre, Name: "deny-guest"},
		[]byte(`{"script": "module.exports = (ctx) => { if (ctx.request.toUserId === 'guest') return {status: 403, message: 'no guests'} }"}`))
	if err != nil {
		log.Fatal(err)
	}
	eng := engine.New()
	defer eng.Close()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptor.UnaryServerInterceptor(registry.NewStatic(hook),
		interceptor.WithEngine(eng),
		interceptor.WithObserver(func(_ context.Context, run interceptor.HookRun) {
			fmt.Println("observed:", run.Hook, run.Phase, run.Outcome)
		}))))
	eventsv1.RegisterEventServiceServer(srv, &recorder{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := eventsv1.NewEventServiceClient(conn)

	for _, user := range []string{"ana", "guest"} {
		_, err := client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: user, EventType: "hello"})
		fmt.Printf("%s: %v\n", user, status.Code(err))
	}
	// Output:
	// observed: events.v1.EventService/SendEvent/pre/deny-guest pre continue
	// ana: OK
	// observed: events.v1.EventService/SendEvent/pre/deny-guest pre reject
	// guest: PermissionDenied
}
