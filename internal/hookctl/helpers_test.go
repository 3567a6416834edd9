package hookctl_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/internal/hookctl"
	"github.com/apihooks/apihooks/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scriptsDir is the repository's example manifest, with its scripts and
// case files.
const scriptsDir = "../../scripts"

const prefix = "/apihooks/"

// result is what one run of hookctl did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is a hookctl command line connected to a test etcd.
type env struct {
	t    *testing.T
	etcd *clientv3.Client
	args []string
	opts []hookctl.Option
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := etcdtest.Start(t)
	return &env{t: t, etcd: e.Client, args: []string{"--endpoints", strings.Join(e.Endpoints(), ","), "--dial-timeout", "5s"}}
}

// run runs hookctl with args and the env's connection flags.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return runHookctl(e.t, append(append([]string{}, e.args...), args...), e.opts...)
}

func runHookctl(t *testing.T, args []string, opts ...hookctl.Option) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts = append([]hookctl.Option{hookctl.WithGetenv(func(string) string { return "" })}, opts...)
	code := hookctl.Main(ctx, args, strings.NewReader(""), &out, &errb, opts...)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// want checks the exit code and returns the result.
func (e *env) want(code int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("hookctl %s: got exit %d; want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// revision returns etcd's current revision.
func (e *env) revision() int64 {
	e.t.Helper()
	resp, err := e.etcd.Get(context.Background(), "x-revision-probe")
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

// hooks returns every key and value under the hooks directory.
func (e *env) hooks() map[string]string {
	e.t.Helper()
	resp, err := e.etcd.Get(context.Background(), registry.HooksDir(prefix), clientv3.WithPrefix())
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range resp.Kvs {
		m[strings.TrimPrefix(string(kv.Key), registry.HooksDir(prefix))] = string(kv.Value)
	}
	return m
}

func (e *env) put(key, value string) int64 {
	e.t.Helper()
	resp, err := e.etcd.Put(context.Background(), registry.HooksDir(prefix)+key, value)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

// copyDir copies the regular files of dir into a new temporary directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, en.Name()), string(b))
	}
	return dst
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: got\n%s\nwant it to contain %q", what, got, w)
		}
	}
}

func mustNotContain(t *testing.T, what, got string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			t.Errorf("%s: got\n%s\nwant it not to contain %q", what, got, w)
		}
	}
}

// daemon is a real apihooksd on its embedded etcd, on free loopback ports.
type daemon struct {
	addr     string
	etcdAddr string
	cancel   context.CancelFunc
	done     chan error
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	d := &daemon{etcdAddr: etcdtest.FreeAddr(t), done: make(chan error, 1)}
	ready := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() {
		d.done <- server.Run(ctx, server.Config{
			Listen:                 "127.0.0.1:0",
			DataDir:                t.TempDir(),
			EmbeddedEtcdListen:     d.etcdAddr,
			EmbeddedEtcdPeerListen: etcdtest.FreeAddr(t),
			EtcdDialTimeout:        5 * time.Second,
			Prefix:                 prefix,
			HookTimeout:            time.Second,
			ShutdownTimeout:        5 * time.Second,
			Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:                  func(a net.Addr) { ready <- a },
		})
	}()
	select {
	case a := <-ready:
		d.addr = a.String()
	case err := <-d.done:
		cancel()
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("daemon did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return d
}
