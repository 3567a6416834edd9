package proxy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"

	"github.com/apihooks/apihooks/server/proxy"
)

// TestHooksOnMethodsTheBackendDoesNotServeAreReported: a hook written for
// a method or a service the backend does not serve never runs; the proxy
// says so, naming the target and the hooks, and says so again only once
// the target changes.
func TestHooksOnMethodsTheBackendDoesNotServeAreReported(t *testing.T) {
	backend := &rawBackend{}
	addr := serve(t, grpc.NewServer(grpc.UnknownServiceHandler(backend.handle), grpc.ForceServerCodecV2(rawCodec{})))
	w := newWorld(t, addr, nil, proxy.WithDescriptorSet(descriptorSet(echoFile(2))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.proxy.WatchHooks(ctx, 5*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const (
		shout = `target=echo.v1.Echo/Shout hooks=echo.v1.Echo/Shout/pre/a,echo.v1.Echo/Shout/pre/b`
		other = `target=other.v1.Other/* hooks=other.v1.Other/*/pre/a`
	)
	hook := doc(`module.exports = () => {}`)
	w.setHooks(t, map[string]string{
		sayKey + "pre/a":           hook,
		"echo.v1.Echo/*/pre/a":     hook,
		"*/*/pre/a":                hook,
		"echo.v1.Echo/Shout/pre/a": hook,
		"echo.v1.Echo/Shout/pre/b": hook,
		"other.v1.Other/*/pre/a":   hook,
	})
	waitForLog(t, w, shout)
	waitForLog(t, w, other)
	// The daemon's fleet record lists them as ignored.
	want := []string{
		"echo.v1.Echo/Shout/pre/a: the backend does not serve echo.v1.Echo/Shout, as its descriptors say",
		"echo.v1.Echo/Shout/pre/b: the backend does not serve echo.v1.Echo/Shout, as its descriptors say",
		"other.v1.Other/*/pre/a: the backend does not serve other.v1.Other/*, as its descriptors say",
	}
	// ... once it has checked the hooks of the registry's revision.
	rev := w.reg.Snapshot().Revision
	deadline := time.Now().Add(waitTimeout)
	for {
		got, checked := w.proxy.Unserved()
		if checked >= rev {
			if !slices.Equal(got, want) {
				t.Errorf("Unserved() = %q at revision %d; want %q", got, checked, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Unserved() stays at revision %d; want %d", checked, rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, served := range []string{"target=echo.v1.Echo/Say", "target=echo.v1.Echo/*", "target=*"} {
		if strings.Contains(w.logs.String(), served) {
			t.Errorf("the logs report %s, which the backend serves:\n%s", served, w.logs)
		}
	}

	// Only the hooks on Shout go: other.v1.Other/* is not reported again.
	dir := registry.HooksDir(registry.DefaultPrefix)
	if _, err := w.etcd.Client.Delete(context.Background(), dir+"echo.v1.Echo/Shout/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, w, `no longer target it" target=echo.v1.Echo/Shout`)
	if n := strings.Count(w.logs.String(), other); n != 1 {
		t.Errorf("other.v1.Other/* reported %d times; want once, while its hooks are unchanged:\n%s", n, w.logs)
	}
}

// waitForLog waits until the proxy's logs hold want.
func waitForLog(t *testing.T, w *world, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(w.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the logs never said %q:\n%s", want, w.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHookedCallsOfMethodsWithoutDescriptors: a hooked call of a method
// the proxy has no descriptor of is not forwarded (its hooks cannot run);
// its status says why, as a client can act on it.
func TestHookedCallsOfMethodsWithoutDescriptors(t *testing.T) {
	t.Run("methods and services the backend does not have", func(t *testing.T) {
		backend := &rawBackend{}
		addr := serve(t, grpc.NewServer(grpc.UnknownServiceHandler(backend.handle), grpc.ForceServerCodecV2(rawCodec{})))
		w := newWorld(t, addr, nil, proxy.WithDescriptorSet(descriptorSet(echoFile(2))))
		w.setHooks(t, map[string]string{"*/*/pre/look": doc(`module.exports = () => {}`)})
		for method, want := range map[string]string{
			"/echo.v1.Echo/Bogus":   "code = Unimplemented desc = unknown method Bogus for service echo.v1.Echo",
			"/other.v1.Other/Bogus": "code = Unimplemented desc = unknown service other.v1.Other",
		} {
			sent := echoField(1, "a")
			var got []byte
			err := w.conn.Invoke(callCtx(t), method, &sent, &got, grpc.ForceCodecV2(rawCodec{}))
			if err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("%s: %v; want %s", method, err, want)
			}
		}
		if got := backend.got(); got != nil {
			t.Errorf("the backend got %x; want no call", got)
		}
	})
	t.Run("a backend that is not up yet", func(t *testing.T) {
		addr := etcdtest.FreeAddr(t)
		w := startWorld(t, addr, false, nil)
		w.setHooks(t, map[string]string{sayKey + "pre/greet": doc(`module.exports = c => { c.request.name = "hello " + c.request.name }`)})
		_, err := say(callCtx(t), w.conn, newMsg("bob", ""))
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "the backend is unavailable") {
			t.Fatalf("Say before the backend is up: %v; want UNAVAILABLE, which clients retry", err)
		}
		startEcho(t, 2, listen(t, addr))
		deadline := time.Now().Add(waitTimeout)
		for {
			got, err := say(callCtx(t), w.conn, newMsg("bob", ""))
			if err == nil {
				if got != "hello bob" {
					t.Fatalf("Say once the backend is up: %q; want hello bob", got)
				}
				break
			}
			if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
				t.Fatalf("Say once the backend is up: %v; want hello bob, after UNAVAILABLE at most", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
