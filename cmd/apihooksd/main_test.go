package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"github.com/apihooks/apihooks/internal/logtest"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/apihooks/apihooks/internal/etcdtest"
	"github.com/apihooks/apihooks/server"
)

const secret = "S3cret:with:colons"

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestEtcdCredentials(t *testing.T) {
	tests := []struct {
		name               string
		args               []string
		env                map[string]string
		wantUser, wantPass string
		// wantErr, when set, is in the error, which never holds the
		// password.
		wantErr string
	}{
		{name: "no authentication"},
		{name: "user and password flags",
			args:     []string{"--etcd-user", "root", "--etcd-password", secret},
			wantUser: "root", wantPass: secret},
		{name: "name:password in --etcd-user, as etcdctl's --user",
			args:     []string{"--etcd-user", "root:" + secret},
			wantUser: "root", wantPass: secret},
		{name: "the password in the environment",
			args:     []string{"--etcd-user", "root"},
			env:      map[string]string{PasswordEnv: secret},
			wantUser: "root", wantPass: secret},
		{name: "--etcd-password wins over the environment, as a flag does",
			args:     []string{"--etcd-user", "root", "--etcd-password", secret},
			env:      map[string]string{PasswordEnv: "other"},
			wantUser: "root", wantPass: secret},
		{name: "a password in --etcd-user and in --etcd-password",
			args:    []string{"--etcd-user", "root:" + secret, "--etcd-password", secret},
			wantErr: "--etcd-user root:... holds a password, and --etcd-password gives one too"},
		{name: "a password in --etcd-user and in the environment",
			args:    []string{"--etcd-user", "root:" + secret},
			env:     map[string]string{PasswordEnv: secret},
			wantErr: "--etcd-user root:... holds a password, and " + PasswordEnv + " gives one too"},
		{name: "a user without a password",
			args:    []string{"--etcd-user", "root"},
			wantErr: "--etcd-user root has no password"},
		{name: "an empty password after the colon",
			args:    []string{"--etcd-user", "root:"},
			wantErr: "--etcd-user root has no password"},
		{name: "no name before the colon",
			args:    []string{"--etcd-user", ":" + secret},
			wantErr: "--etcd-user: no user name before the colon"},
		{name: "a password flag without a user",
			args:    []string{"--etcd-password", secret},
			wantErr: "--etcd-password gives an etcd password, but --etcd-user names no user"},
		{name: "a password in the environment without a user",
			env:     map[string]string{PasswordEnv: secret},
			wantErr: PasswordEnv + " gives an etcd password, but --etcd-user names no user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg, err := parseConfig(tt.args, env(tt.env), &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseConfig(%q) = %v; want an error saying %q", tt.args, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(out.String(), secret) {
					t.Fatalf("the error shows the password: %v\n%s", err, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tt.args, err)
			}
			if cfg.EtcdUser != tt.wantUser || cfg.EtcdPassword != tt.wantPass {
				t.Fatalf("user %q, password %q; want %q, %q", cfg.EtcdUser, cfg.EtcdPassword, tt.wantUser, tt.wantPass)
			}
		})
	}
}

func TestHelpTellsOfThePasswordVariable(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v; want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), PasswordEnv+" keeps it out of the process list") {
		t.Fatalf("--help does not name %s:\n%s", PasswordEnv, out.String())
	}
}

// syncBuffer is a log destination tests read while loggers write to it.
type syncBuffer = logtest.Buffer

// The daemon logs in to an etcd with authentication on, with the password
// given each way; with a wrong one, and no snapshot to serve, it does not
// serve, and says what to check.
func TestDaemonLogsInToEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { _, err := e.Client.UserAdd(ctx, "root", secret); return err },
		func() error { _, err := e.Client.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := e.Client.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	endpoints := strings.Join(e.Endpoints(), ",")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// wantRefused: the daemon waits without serving, and logs
		// wantRefused.
		wantRefused string
	}{
		{name: "name:password in --etcd-user", args: []string{"--etcd-user", "root:" + secret}},
		{name: "the password in " + PasswordEnv, args: []string{"--etcd-user", "root"}, env: map[string]string{PasswordEnv: secret}},
		{name: "--etcd-password", args: []string{"--etcd-user", "root", "--etcd-password", secret}},
		{name: "a wrong password", args: []string{"--etcd-user", "root:wrong" + secret}, wantRefused: "not serving: etcd refuses to let the daemon read the hooks, and there is no local snapshot; check --etcd-user, its password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--etcd-endpoints", endpoints, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
				"--log-level", "debug"}, tt.args...)
			logs := &syncBuffer{}
			cfg, err := parseConfig(args, env(tt.env), logs)
			if err != nil {
				t.Fatal(err)
			}
			ready := make(chan net.Addr, 1)
			cfg.Ready = func(a net.Addr) { ready <- a }
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- server.Run(runCtx, cfg) }()
			defer func() {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("the log shows the password:\n%s", logs)
				}
			}()
			if tt.wantRefused != "" {
				for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), tt.wantRefused); time.Sleep(20 * time.Millisecond) {
					select {
					case err := <-done:
						t.Fatalf("daemon stopped with %v; want it to wait, saying %q\n%s", err, tt.wantRefused, logs)
					case <-ready:
						t.Fatal("the daemon served with a wrong password")
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("the daemon did not say %q\n%s", tt.wantRefused, logs)
					}
				}
				cancel()
				if err := <-done; err == nil || !errors.Is(err, context.Canceled) {
					t.Fatalf("daemon stopped with %v once told to; want it to say it was cancelled while loading the hooks", err)
				}
				return
			}
			var addr net.Addr
			select {
			case addr = <-ready:
			case err := <-done:
				t.Fatalf("daemon stopped: %v\n%s", err, logs)
			case <-time.After(30 * time.Second):
				t.Fatalf("the daemon did not serve\n%s", logs)
			}
			conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: server.EtcdHealthService})
			if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health of %s: %v, %v; want SERVING: the hooks read from etcd", server.EtcdHealthService, h, err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("daemon: %v", err)
			}
		})
	}
}

// TestLogFormats: both formats write durations as text, "15s", not the
// JSON handler's integer nanoseconds.
func TestLogFormats(t *testing.T) {
	for _, tt := range []struct{ format, want string }{
		{"text", "timeout=15s"},
		{"json", `"timeout":"15s"`},
	} {
		t.Run(tt.format, func(t *testing.T) {
			var out bytes.Buffer
			cfg, err := parseConfig([]string{"--log-format", tt.format}, env(nil), &out)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Logger.Info("shutting down", "timeout", 15*time.Second)
			if !strings.Contains(out.String(), tt.want) {
				t.Fatalf("logged %s; want %s", out.String(), tt.want)
			}
		})
	}
}

// TestThePasswordLeavesTheEnvironment: the etcd password is read once and
// taken out of the environment, which the daemon's hook workers (running
// scripts it does not trust) inherit.
func TestThePasswordLeavesTheEnvironment(t *testing.T) {
	t.Setenv(PasswordEnv, secret)
	t.Setenv("APIHOOKSD_OTHER", "stays")
	cfg, err := parseConfig([]string{"--etcd-user", "root"}, takeEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EtcdPassword != secret {
		t.Fatalf("password %q; want the environment's", cfg.EtcdPassword)
	}
	if v, ok := os.LookupEnv(PasswordEnv); ok {
		t.Fatalf("%s is still in the environment (%d bytes)", PasswordEnv, len(v))
	}
	if takeEnv("APIHOOKSD_OTHER") != "stays" || os.Getenv("APIHOOKSD_OTHER") != "stays" {
		t.Fatal("another variable was taken out of the environment")
	}
}
