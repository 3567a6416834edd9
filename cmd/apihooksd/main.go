// Command apihooksd serves the example EventService behind apihooks'
// interceptors, with hooks read from etcd: an embedded one by default, or an
// existing cluster with --etcd-endpoints. With --proxy-to it serves another
// gRPC server's methods instead, as a proxy that runs the same hooks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/server"
	"github.com/apihooks/apihooks/server/ops"
)

func main() {
	// A hook worker of a daemon with process isolation serves, then exits.
	isolate.ServeWorkerIfAsked()
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "apihooksd:", err)
		os.Exit(1)
	}
}

// PasswordEnv is the environment variable of the etcd password: there, it
// is not in the process list, as --etcd-password is.
const PasswordEnv = "APIHOOKSD_ETCD_PASSWORD"

func run(args []string) error {
	cfg, err := parseConfig(args, takeEnv, os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	slog.SetDefault(cfg.Logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg)
}

// takeEnv returns an environment variable's value; it takes the etcd
// password out of the environment, so that the processes the daemon
// starts (hook workers, which run scripts it does not trust) do not
// inherit it.
func takeEnv(key string) string {
	v := os.Getenv(key)
	if key == PasswordEnv {
		os.Unsetenv(key)
	}
	return v
}

// parseConfig makes the daemon's configuration from its arguments and
// environment (getenv), with a logger writing to stderr, where usage and
// flag errors go too. -help returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (server.Config, error) {
	fs := flag.NewFlagSet("apihooksd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	var endpoints, hookServices, logLevel, logFormat string
	var hookMemory, heapLimit int64
	var maxMessage int
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "data directory of the embedded etcd")
	fs.StringVar(&cfg.EmbeddedEtcdListen, "embedded-etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd (etcdctl connects here)")
	fs.StringVar(&cfg.EmbeddedEtcdPeerListen, "embedded-etcd-peer-listen", "127.0.0.1:2380", "peer address of the embedded etcd")
	fs.DurationVar(&cfg.EmbeddedEtcdHistory, "embedded-etcd-history", 24*time.Hour, "how long the embedded etcd keeps old revisions before compacting them (hookctl history and rollback reach that far back; 0: for ever, until etcd's 2 GiB quota)")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated host:port of an existing etcd cluster (instead of the embedded etcd)")
	fs.StringVar(&cfg.EtcdCACert, "etcd-cacert", "", "CA bundle to verify etcd's certificate")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", "", "client certificate for etcd")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", "", "client key for etcd")
	fs.StringVar(&cfg.EtcdUser, "etcd-user", "", "etcd user, as `name` or name:password (as etcdctl's --user); the password may come from --etcd-password or "+PasswordEnv+" instead")
	fs.StringVar(&cfg.EtcdPassword, "etcd-password", "", "etcd password of --etcd-user; the environment variable "+PasswordEnv+" keeps it out of the process list, where every local user can read this flag")
	fs.DurationVar(&cfg.EtcdDialTimeout, "etcd-dial-timeout", 5*time.Second, "timeout of connecting to etcd")
	fs.StringVar(&cfg.Prefix, "prefix", registry.DefaultPrefix, "etcd prefix of everything the daemon reads and writes: hooks/, cache/, utils/, daemons/ and the example service's events")
	fs.DurationVar(&cfg.HookTimeout, "hook-timeout", engine.DefaultTimeout, "timeout of hooks whose document sets none")
	fs.DurationVar(&cfg.MaxHookTimeout, "max-hook-timeout", registry.DefaultMaxTimeout, "largest timeout a hook document may set; a document asking for more is invalid")
	fs.StringVar(&cfg.SnapshotFile, "snapshot-file", "", "local copy of the hooks last loaded, served when etcd cannot be read at start (default <data-dir>/hooks-snapshot.json)")
	fs.StringVar(&hookServices, "hook-services", "", "comma-separated services hooks apply to (default: every service served except grpc.*)")
	fs.IntVar(&cfg.MaxHookRuns, "max-hook-runs", engine.DefaultMaxRuns(), "hook runs in flight at once, counting runs abandoned at their timeout until they end (GOMAXPROCS - 1 by default, at least 1)")
	fs.DurationVar(&cfg.HookQueueWait, "hook-queue-wait", engine.DefaultQueueWait, "how long a hooked call waits for room past --max-hook-runs before it fails with RESOURCE_EXHAUSTED")
	fs.IntVar(&cfg.QuarantineAfter, "quarantine-after", interceptor.DefaultQuarantineAfter, "timeouts or runs out of memory within --quarantine-window that take a hook out of service, when they are also at least half of its runs (0: never)")
	fs.DurationVar(&cfg.QuarantineWindow, "quarantine-window", interceptor.DefaultQuarantineWindow, "the window in which --quarantine-after timeouts count")
	fs.DurationVar(&cfg.QuarantineFor, "quarantine-for", interceptor.DefaultQuarantineFor, "how long a quarantined hook is not run: its calls fail fast with UNAVAILABLE, or skip it with onError continue")
	fs.IntVar(&maxMessage, "max-message-size", 4, "largest message, in MiB, taken from a client; in proxy mode, raise it to the backend's limit")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM may take: draining in-flight calls, then stopping etcd")
	fs.StringVar(&cfg.Isolation, "isolation", "inprocess", "where hooks run: inprocess, or process (each run in a worker process with --hook-memory)")
	fs.Int64Var(&hookMemory, "hook-memory", isolate.DefaultMemoryLimit>>20, "what one hook run may allocate, in MiB: the memory budget of built-ins in process, and a worker process's memory beyond its baseline")
	fs.Int64Var(&heapLimit, "hook-heap-limit", engine.DefaultHeapLimit>>20, "heap size, in MiB, past which in-process hook runs are interrupted, longest-running first (0: never)")
	fs.StringVar(&cfg.Proxy.Target, "proxy-to", "", "proxy mode: serve and forward every method of the gRPC server at this address, with hooks, instead of the example EventService")
	fs.BoolVar(&cfg.Proxy.TLS, "proxy-tls", false, "proxy mode: connect to the backend with TLS")
	fs.StringVar(&cfg.Proxy.CACert, "proxy-cacert", "", "proxy mode: CA bundle to verify the backend's certificate (default: the system's)")
	fs.StringVar(&cfg.Proxy.Cert, "proxy-cert", "", "proxy mode: client certificate for the backend")
	fs.StringVar(&cfg.Proxy.Key, "proxy-key", "", "proxy mode: client key for the backend")
	fs.StringVar(&cfg.Proxy.Authority, "proxy-authority", "", "proxy mode: :authority of calls to the backend, and the name its certificate must have")
	fs.StringVar(&cfg.DescriptorSet, "descriptor-set", "", "proxy mode: FileDescriptorSet of the backend's services (buf build -o, protoc --include_imports -o) instead of its server reflection")
	var httpPage bool
	fs.StringVar(&cfg.HTTP.Listen, "http-listen", "", "address of the operators' HTTP listener: Prometheus /metrics and the API Hooks page at / (off when empty; e.g. 127.0.0.1:9090)")
	fs.StringVar(&cfg.HTTP.AuthFile, "http-auth-file", "", "credentials for the HTTP listener, one a line: \"bearer TOKEN\" or \"basic USER:PASSWORD\"; required for the page on any address but loopback")
	fs.BoolVar(&cfg.HTTP.ReadOnly, "http-read-only", false, "show the hooks page but refuse every change from it")
	fs.BoolVar(&httpPage, "http-page", true, "serve the hooks page on --http-listen; false serves /metrics alone")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	passwordFlag := false
	fs.Visit(func(f *flag.Flag) { passwordFlag = passwordFlag || f.Name == "etcd-password" })
	var err error
	if cfg.EtcdUser, cfg.EtcdPassword, err = etcdLogin(cfg.EtcdUser, cfg.EtcdPassword, passwordFlag, getenv(PasswordEnv)); err != nil {
		return cfg, err
	}
	cfg.HTTP.NoPage = !httpPage
	if cfg.HTTP.Listen == "" && (cfg.HTTP.AuthFile != "" || cfg.HTTP.ReadOnly || !httpPage) {
		return cfg, errors.New("--http-auth-file, --http-read-only and --http-page need --http-listen")
	}
	if cfg.HTTP.Listen != "" && httpPage && cfg.HTTP.AuthFile == "" && !ops.IsLoopback(cfg.HTTP.Listen) {
		return cfg, fmt.Errorf("--http-listen %s is not a loopback address: the hooks page needs --http-auth-file there (or serve /metrics alone with --http-page=false)", cfg.HTTP.Listen)
	}
	cfg.EtcdEndpoints = splitList(endpoints)
	cfg.HookServices = splitList(hookServices)
	if !strings.HasSuffix(cfg.Prefix, "/") {
		return cfg, fmt.Errorf("--prefix %q must end with /", cfg.Prefix)
	}
	if cfg.HookTimeout <= 0 {
		return cfg, fmt.Errorf("--hook-timeout %v must be positive", cfg.HookTimeout)
	}
	if cfg.MaxHookRuns < 1 {
		return cfg, fmt.Errorf("--max-hook-runs %d must be at least 1", cfg.MaxHookRuns)
	}
	if cfg.HookQueueWait < 0 || cfg.QuarantineAfter < 0 || cfg.QuarantineWindow <= 0 || cfg.QuarantineFor <= 0 {
		return cfg, errors.New("--hook-queue-wait, --quarantine-after, --quarantine-window and --quarantine-for must not be negative, and the two durations of quarantine must be positive")
	}
	if cfg.ShutdownTimeout <= 0 {
		return cfg, fmt.Errorf("--shutdown-timeout %v must be positive", cfg.ShutdownTimeout)
	}
	if cfg.MaxHookTimeout <= 0 {
		return cfg, fmt.Errorf("--max-hook-timeout %v must be positive", cfg.MaxHookTimeout)
	}
	if cfg.HookTimeout > cfg.MaxHookTimeout {
		return cfg, fmt.Errorf("--hook-timeout %v is more than --max-hook-timeout %v", cfg.HookTimeout, cfg.MaxHookTimeout)
	}
	if cfg.Isolation != "inprocess" && cfg.Isolation != "process" {
		return cfg, fmt.Errorf("--isolation %q is not inprocess or process", cfg.Isolation)
	}
	if hookMemory <= 0 || hookMemory > 1<<20 {
		return cfg, fmt.Errorf("--hook-memory %d must be between 1 and %d MiB", hookMemory, 1<<20)
	}
	cfg.HookMemory = hookMemory << 20
	// A gRPC message's length is 31 bits in grpc-go.
	if maxMessage <= 0 || maxMessage > 2047 {
		return cfg, fmt.Errorf("--max-message-size %d must be between 1 and 2047 MiB", maxMessage)
	}
	cfg.MaxRecvMsgSize = maxMessage << 20
	if heapLimit < 0 {
		return cfg, fmt.Errorf("--hook-heap-limit %d must not be negative", heapLimit)
	}
	cfg.HookHeapLimit = heapLimit << 20
	if heapLimit == 0 {
		cfg.HookHeapLimit = -1
	}
	if cfg.Proxy.Target == "" && (cfg.Proxy.TLS || cfg.Proxy.CACert != "" || cfg.Proxy.Cert != "" || cfg.Proxy.Key != "" || cfg.Proxy.Authority != "" || cfg.DescriptorSet != "") {
		return cfg, errors.New("--proxy-tls, --proxy-cacert, --proxy-cert, --proxy-key, --proxy-authority and --descriptor-set need --proxy-to")
	}
	if !cfg.Proxy.TLS && (cfg.Proxy.CACert != "" || cfg.Proxy.Cert != "" || cfg.Proxy.Key != "") {
		return cfg, errors.New("--proxy-cacert, --proxy-cert and --proxy-key need --proxy-tls")
	}
	if (cfg.Proxy.Cert == "") != (cfg.Proxy.Key == "") {
		return cfg, errors.New("--proxy-cert and --proxy-key go together")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		// Durations as text ("15s"), as in the text format: slog's JSON
		// writes them as integer nanoseconds.
		hopts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return cfg, fmt.Errorf("--log-format %q is not text or json", logFormat)
	}
	return cfg, nil
}

// etcdLogin returns the etcd user name and password of --etcd-user, which
// may be name:password as etcdctl's --user, --etcd-password (given when
// passwordFlag is set) and the environment variable's value envPassword.
// --etcd-password wins over the environment variable, as a flag does; a
// password in --etcd-user and another one either way is an error. A user
// needs a password and a password a user: etcd's client would log in with
// neither, and the daemon would wait for ever for an etcd that refuses it.
// No error holds the password.
func etcdLogin(user, password string, passwordFlag bool, envPassword string) (string, string, error) {
	from := "--etcd-password"
	if !passwordFlag {
		password, from = envPassword, PasswordEnv
	}
	if name, inline, ok := strings.Cut(user, ":"); ok {
		if name == "" {
			return "", "", errors.New("--etcd-user: no user name before the colon (give name:password)")
		}
		if password != "" {
			return "", "", fmt.Errorf("--etcd-user %s:... holds a password, and %s gives one too: give it one way", name, from)
		}
		user, password, from = name, inline, "--etcd-user"
	}
	switch {
	case user != "" && password == "":
		return "", "", fmt.Errorf("--etcd-user %s has no password: give it in %s (which keeps it out of the process list), as --etcd-user %s:PASSWORD, or with --etcd-password", user, PasswordEnv, user)
	case user == "" && password != "":
		return "", "", fmt.Errorf("%s gives an etcd password, but --etcd-user names no user", from)
	}
	return user, password, nil
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
