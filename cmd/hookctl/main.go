// Command hookctl manages apihooks' hooks in etcd: list, get, put, enable,
// disable, delete, apply a manifest (all or nothing), diff, validate, test
// hooks locally, history and rollback. See "hookctl --help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/apihooks/apihooks/internal/hookctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := hookctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
