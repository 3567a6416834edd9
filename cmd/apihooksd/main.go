// Command apihooksd serves the example EventService behind apihooks'
// interceptors, with hooks read from etcd: an embedded one by default, or an
// existing cluster with --etcd-endpoints.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == isolate.WorkerArg {
		// A hook worker of a daemon with process isolation.
		if err := isolate.ServeWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "apihooksd:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "apihooksd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("apihooksd", flag.ContinueOnError)
	var cfg server.Config
	var endpoints, hookServices, logLevel, logFormat string
	var hookMemory int64
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "data directory of the embedded etcd")
	fs.StringVar(&cfg.EmbeddedEtcdListen, "embedded-etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd (etcdctl connects here)")
	fs.StringVar(&cfg.EmbeddedEtcdPeerListen, "embedded-etcd-peer-listen", "127.0.0.1:2380", "peer address of the embedded etcd")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated host:port of an existing etcd cluster (instead of the embedded etcd)")
	fs.StringVar(&cfg.EtcdCACert, "etcd-cacert", "", "CA bundle to verify etcd's certificate")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", "", "client certificate for etcd")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", "", "client key for etcd")
	fs.StringVar(&cfg.EtcdUser, "etcd-user", "", "etcd user name")
	fs.StringVar(&cfg.EtcdPassword, "etcd-password", "", "etcd password")
	fs.DurationVar(&cfg.EtcdDialTimeout, "etcd-dial-timeout", 5*time.Second, "timeout of connecting to etcd")
	fs.StringVar(&cfg.Prefix, "prefix", registry.DefaultPrefix, "etcd prefix of hooks (<prefix>hooks/...) and events")
	fs.DurationVar(&cfg.HookTimeout, "hook-timeout", engine.DefaultTimeout, "timeout of hooks whose document sets none")
	fs.StringVar(&hookServices, "hook-services", "", "comma-separated services hooks apply to (default: every service served except grpc.*)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM waits for in-flight calls")
	fs.StringVar(&cfg.Isolation, "isolation", "inprocess", "where hooks run: inprocess, or process (each run in a worker process with --hook-memory)")
	fs.Int64Var(&hookMemory, "hook-memory", isolate.DefaultMemoryLimit>>20, "memory limit of a hook worker process, in MiB beyond its baseline")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.EtcdEndpoints = splitList(endpoints)
	cfg.HookServices = splitList(hookServices)
	if !strings.HasSuffix(cfg.Prefix, "/") {
		return fmt.Errorf("--prefix %q must end with /", cfg.Prefix)
	}
	if cfg.HookTimeout <= 0 {
		return fmt.Errorf("--hook-timeout %v must be positive", cfg.HookTimeout)
	}
	if cfg.Isolation != "inprocess" && cfg.Isolation != "process" {
		return fmt.Errorf("--isolation %q is not inprocess or process", cfg.Isolation)
	}
	if hookMemory <= 0 || hookMemory > 1<<20 {
		return fmt.Errorf("--hook-memory %d must be between 1 and %d MiB", hookMemory, 1<<20)
	}
	cfg.HookMemory = hookMemory << 20
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	default:
		return fmt.Errorf("--log-format %q is not text or json", logFormat)
	}
	slog.SetDefault(cfg.Logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
