package proxy_test

import (
	"context"
	"fmt"
	"github.com/apihooks/apihooks/internal/logtest"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server/proxy"
)

// waitTimeout bounds waiting for a condition: a hook change reaching the
// proxy, a backend coming back.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	isolate.ServeWorkerIfAsked()
	// grpc-go's interop test cases end the process on failure through
	// grpclog's Fatal: make that a panic their subtest reports.
	grpclog.SetLoggerV2(panicOnFatal{grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)})
	goleak.VerifyTestMain(m)
}

type panicOnFatal struct{ grpclog.LoggerV2 }

type interopFailure string

func (panicOnFatal) Fatal(args ...any) { panic(interopFailure(fmt.Sprint(args...))) }
func (panicOnFatal) Fatalf(format string, args ...any) {
	panic(interopFailure(fmt.Sprintf(format, args...)))
}
func (panicOnFatal) Fatalln(args ...any) { panic(interopFailure(fmt.Sprintln(args...))) }

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// world is a proxy in front of a backend, with its hooks in a real etcd,
// and a client connection to the proxy.
type world struct {
	etcd  *etcdtest.Etcd
	reg   *registry.Registry
	proxy *proxy.Proxy
	conn  *grpc.ClientConn
	addr  string
	logs  *syncBuffer
}

// newWorld starts a proxy to backend. Without a descriptor set among opts,
// it learns the backend's descriptors from its reflection before serving.
func newWorld(tb testing.TB, backend string, regOpts []registry.Option, opts ...proxy.Option) *world {
	tb.Helper()
	return startWorld(tb, backend, true, regOpts, opts...)
}

// startWorld starts a proxy to backend, learning its descriptors before
// serving when learn is set.
func startWorld(tb testing.TB, backend string, learn bool, regOpts []registry.Option, opts ...proxy.Option) *world {
	tb.Helper()
	w := &world{etcd: etcdtest.Start(tb), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(w.logs, nil))
	w.reg = registry.New(w.etcd.Client, append([]registry.Option{registry.WithLogger(log),
		registry.WithRetry(10*time.Millisecond, 100*time.Millisecond)}, regOpts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := w.reg.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.reg.Close)
	// Calls wait for room as long as they need: admission is not tested
	// here.
	eng := engine.New(engine.WithLogger(log), engine.WithQueueWait(time.Minute))
	tb.Cleanup(eng.Close)
	cc, err := proxy.Dial(proxy.Backend{Target: backend})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	opts = append([]proxy.Option{proxy.WithLogger(log),
		proxy.WithInterceptorOptions(interceptor.WithEngine(eng), interceptor.WithLogger(log))}, opts...)
	w.proxy, err = proxy.New(cc, w.reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.proxy.Refresh(ctx); learn && err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(w.proxy.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	w.proxy.RegisterReflection(srv)
	w.addr = serve(tb, srv)
	w.conn = dial(tb, w.addr)
	return w
}

// serve serves srv on a loopback port until tb ends, and returns its
// address.
func serve(tb testing.TB, srv *grpc.Server) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveOn(tb, srv, lis)
}

func serveOn(tb testing.TB, srv *grpc.Server, lis net.Listener) string {
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	tb.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

func dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// setHooks replaces every hook with hooks (key without prefix → document)
// and waits until the proxy has them.
func (w *world) setHooks(tb testing.TB, hooks map[string]string) {
	tb.Helper()
	ctx := context.Background()
	dir := registry.HooksDir(registry.DefaultPrefix)
	if _, err := w.etcd.Client.Delete(ctx, dir, clientv3.WithPrefix()); err != nil {
		tb.Fatalf("delete hooks: %v", err)
	}
	var ops []clientv3.Op
	for k, v := range hooks {
		ops = append(ops, clientv3.OpPut(dir+k, v))
	}
	resp, err := w.etcd.Client.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		tb.Fatalf("write hooks: %v", err)
	}
	w.waitRevision(tb, resp.Header.Revision)
	if n := len(w.reg.Snapshot().Hooks()); n != len(hooks) {
		tb.Fatalf("%d hooks in force; want %d. Logs:\n%s", n, len(hooks), w.logs)
	}
}

// doc is a hook document with a generous timeout: these tests are not
// about timeouts.
func doc(script string, extra ...string) string {
	fields := append([]string{fmt.Sprintf(`"script":%q`, script), `"timeout":"5s"`}, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

// waitRevision waits until the proxy's registry has read etcd's revision
// rev.
func (w *world) waitRevision(tb testing.TB, rev int64) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for w.reg.Snapshot().Revision < rev {
		if time.Now().After(deadline) {
			tb.Fatalf("the registry did not reach revision %d", rev)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
