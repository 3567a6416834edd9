// Package hookctl is the command line of apihooks for platform teams and CI:
// it lists, shows and edits the hooks in etcd, applies a manifest of hooks
// kept in version control (all or nothing, guarded against concurrent
// changes), shows a hook's history and rolls it back, and runs hooks locally
// against test cases. cmd/hookctl is a thin wrapper around Main.
//
// Nothing invalid reaches etcd: every document hookctl writes is decoded and
// compiled by the registry package first, as the daemon will.
package hookctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/store"
	"github.com/apihooks/apihooks/server/fleet"
)

// Exit codes.
const (
	// ExitOK is success (and, for diff, no changes).
	ExitOK = 0
	// ExitFailed is a validation failure, a failing test case, a request
	// etcd refused (permission denied, too large...), or, for diff,
	// changes found.
	ExitFailed = 1
	// ExitUsage is a usage error: an unknown command or flag, a missing or
	// malformed argument; and, for diff, any error (as kubectl diff, diff
	// exits above 1 for every error, so an invalid manifest never reads as
	// "changes found").
	ExitUsage = 2
	// ExitEtcd is etcd unreachable or without a leader, or a concurrent
	// change that made hookctl write nothing.
	ExitEtcd = 3
	// ExitWait is a --wait that ended before every daemon it saw had
	// loaded the revision written (one whose record went away first
	// counts as not having it), with daemons reporting a written hook
	// broken, refused or ignored, or that could not read the daemons'
	// records. The write itself was done.
	ExitWait = 4
)

// EnvPrefix starts the environment variables that set global flags:
// HOOKCTL_ENDPOINTS, HOOKCTL_USER, HOOKCTL_PASSWORD, HOOKCTL_PREFIX...
const EnvPrefix = "HOOKCTL_"

type settings struct {
	getenv       func(string) string
	beforeCommit func(ctx context.Context) error
	step         func(done, total int) error
	waitRead     func(recs []fleet.Record)
}

// Option configures Main.
type Option func(*settings)

// WithGetenv sets how environment variables are read (os.Getenv by
// default).
func WithGetenv(f func(string) string) Option {
	return func(s *settings) { s.getenv = f }
}

// WithBeforeCommit calls f in apply (and in the guarded writes of put,
// enable, disable, delete and rollback) after everything was read and
// checked and the plan printed, right before the guarded write. An error
// from f stops the command; nothing is written. Wrappers can use it to ask
// for confirmation; tests use it to change etcd between plan and write.
func WithBeforeCommit(f func(ctx context.Context) error) Option {
	return func(s *settings) { s.beforeCommit = f }
}

// WithStep calls f between the transactions of a staged apply (one too
// large for a single etcd transaction), with how many were written of how
// many; an error from f stops the apply there, as a crash would. Tests use
// it.
func WithStep(f func(done, total int) error) Option {
	return func(s *settings) { s.step = f }
}

// WithWaitRead calls f after each read of the daemons' records that --wait
// makes, with the records read, before it weighs them. Tests use it to
// change the fleet between reads.
func WithWaitRead(f func(recs []fleet.Record)) Option {
	return func(s *settings) { s.waitRead = f }
}

// app is one run of the command line.
type app struct {
	ctx      context.Context
	in       io.Reader
	out, err io.Writer
	set      settings

	conn connFlags
	// wait is --wait of the command that writes; st the store it opened.
	wait time.Duration
	st   *store.Store
}

type connFlags struct {
	endpoints                   []string
	cacert, cert, key           string
	user, password              string
	dialTimeout, commandTimeout time.Duration
	prefix                      string
	maxTxnOps, maxRequestBytes  int
	// maxHookTimeout is the daemons' --max-hook-timeout.
	maxHookTimeout time.Duration
}

// exitError carries an exit code. A silent one prints nothing.
type exitError struct {
	code   int
	err    error
	silent bool
	// note is printed after the error.
	note string
	// notUsage marks an exit code of ExitUsage that is not a usage
	// error (diff's invalid manifest): no pointer to --help.
	notUsage bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

func failed(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err // it has its code already
	}
	return &exitError{code: ExitFailed, err: err}
}

// withNote adds a note printed after err; err keeps its exit code.
func withNote(err error, note string) error {
	var ee *exitError
	if errors.As(err, &ee) {
		c := *ee
		c.note = note
		return &c
	}
	return &exitError{code: codeOf(err), err: err, note: note}
}

// silentExit ends the command with code, printing nothing more.
func silentExit(code int) error { return &exitError{code: code, silent: true} }

// Main runs hookctl with args (without the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, opts ...Option) int {
	a := &app{ctx: ctx, in: stdin, out: stdout, err: stderr, set: settings{getenv: os.Getenv}}
	for _, f := range opts {
		f(&a.set)
	}
	if a.in == nil {
		a.in = strings.NewReader("")
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.in)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	return a.report(cmd, err)
}

// report prints err and returns its exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	var ee *exitError
	if !errors.As(err, &ee) {
		// Errors that do not come from a command's own run are cobra's:
		// unknown commands, flags and argument counts.
		ee = &exitError{code: ExitUsage, err: err}
	}
	if ee.silent {
		return ee.code
	}
	var list diag.List
	var unreachable *store.UnreachableError
	var noAnswer *store.NoAnswerError
	var conflict *store.ConflictError
	var staged *store.StagedError
	switch {
	case errors.As(ee.err, &staged):
		fmt.Fprintf(a.err, "hookctl: %v\n", staged)
	case errors.As(ee.err, &list):
		for _, e := range list {
			fmt.Fprintln(a.err, e.Error())
		}
		n := len(list)
		fmt.Fprintf(a.err, "hookctl: %d problem%s found\n", n, plural(n))
	case errors.As(ee.err, &unreachable) && errors.As(unreachable.Err, &noAnswer):
		fmt.Fprintf(a.err, "hookctl: %v\n", unreachable)
	case errors.As(ee.err, &unreachable):
		fmt.Fprintf(a.err, "hookctl: cannot reach etcd at %s: %v\n", strings.Join(unreachable.Endpoints, ","), unreachable.Err)
	case errors.As(ee.err, &conflict):
		fmt.Fprintf(a.err, "hookctl: conflict: %v\n", conflict)
	default:
		fmt.Fprintf(a.err, "hookctl: %v\n", ee.err)
	}
	if ee.note != "" {
		fmt.Fprintf(a.err, "hookctl: %s\n", ee.note)
	}
	if ee.code == ExitUsage && !ee.notUsage && cmd != nil {
		fmt.Fprintf(a.err, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ee.code
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// run wraps a command's function so that every error it returns carries an
// exit code: etcd failures and conflicts 3, anything else 1 unless it says
// otherwise.
func run(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		if errors.Is(err, context.Canceled) {
			return &exitError{code: ExitFailed, err: errors.New("interrupted")}
		}
		return &exitError{code: codeOf(err), err: err}
	}
}

// codeOf returns the exit code of an error that carries none: etcd failures
// and conflicts 3, anything else 1.
func codeOf(err error) int {
	var unreachable *store.UnreachableError
	var conflict *store.ConflictError
	var refused *store.RefusedError
	switch {
	case errors.As(err, &refused):
		return ExitFailed
	case errors.As(err, &unreachable) || errors.As(err, &conflict):
		return ExitEtcd
	}
	return ExitFailed
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hookctl",
		Short: "Manage apihooks hooks in etcd: apply manifests, diff, validate, test, history and rollback",
		Long: `hookctl manages the JavaScript hooks that apihooks attaches to gRPC methods.

Hooks live in etcd under <prefix>hooks/SERVICE/METHOD/PHASE/NAME. A hook is
named on the command line as SERVICE/METHOD PHASE NAME, for example
  events.v1.EventService/SendEvent pre addvalue
(SERVICE/* covers every method of a service, */* every hookable method).

Nothing invalid reaches etcd: documents are decoded and scripts compiled as the
daemon does before anything is written, and apply puts a whole manifest in
force or nothing: in one transaction, or, when it is too large for one, staged
so that daemons put it in force at once when the last transaction lands.

Every global flag can also be set in the environment as HOOKCTL_<FLAG>, with
dashes as underscores: HOOKCTL_ENDPOINTS, HOOKCTL_USER, HOOKCTL_PASSWORD...

Exit codes: 0 success; 1 validation failure, failing tests, a request etcd
refused (its reason is printed), or (diff) changes found; 2 usage error, and
any error of diff (as kubectl diff: 0 no differences, 1 differences, above 1
an error); 3 etcd unreachable or without a leader (quorum lost), the --server
daemon unreachable, or a concurrent change (nothing was written, or, part way
through a staged apply, nothing put in force); 4 --wait ended before every
daemon it saw loaded the write (one whose record went away first has not), a
daemon reports a hook of it broken or ignored, or the daemons' records could
not be read (it was written).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.applyEnv(cmd.Root().PersistentFlags()); err != nil {
				return err
			}
			a.normalizePrefix()
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	pf := root.PersistentFlags()
	pf.StringSliceVar(&a.conn.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "etcd endpoints, comma-separated host:port")
	pf.StringVar(&a.conn.cacert, "cacert", "", "verify etcd's certificate with this CA bundle")
	pf.StringVar(&a.conn.cert, "cert", "", "client certificate for etcd (TLS)")
	pf.StringVar(&a.conn.key, "key", "", "client key for etcd (TLS)")
	pf.StringVar(&a.conn.user, "user", "", "etcd user, as username or username:password")
	pf.StringVar(&a.conn.password, "password", "", "etcd password (HOOKCTL_PASSWORD keeps it out of the process list)")
	pf.DurationVar(&a.conn.dialTimeout, "dial-timeout", 2*time.Second, "how long to wait for etcd to answer at first")
	pf.DurationVar(&a.conn.commandTimeout, "command-timeout", 5*time.Second, "how long each etcd request may take")
	pf.StringVar(&a.conn.prefix, "prefix", registry.DefaultPrefix, "etcd prefix of hooks (<prefix>hooks/...), as the daemon's --prefix; a / is added if it does not end with one")
	pf.IntVar(&a.conn.maxTxnOps, "max-txn-ops", store.DefaultMaxTxnOps, "etcd's --max-txn-ops: larger applies are staged over several transactions")
	pf.IntVar(&a.conn.maxRequestBytes, "max-request-bytes", store.DefaultMaxRequestBytes, "etcd's --max-request-bytes: no document may be larger, and larger applies are staged")
	pf.DurationVar(&a.conn.maxHookTimeout, "max-hook-timeout", registry.DefaultMaxTimeout, "the daemons' --max-hook-timeout: no hook's timeout may be longer")

	root.AddGroup(
		&cobra.Group{ID: "hooks", Title: "Hooks in etcd:"},
		&cobra.Group{ID: "manifest", Title: "Manifests (hooks.yaml) and CI:"},
	)
	for _, c := range []*cobra.Command{
		a.listCommand(), a.getCommand(), a.putCommand(), a.enableCommand(true), a.enableCommand(false),
		a.deleteCommand(), a.historyCommand(), a.rollbackCommand(), a.statusCommand(), a.utilsCommand(), a.cacheCommand(),
	} {
		c.GroupID = "hooks"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.applyCommand(), a.diffCommand(), a.validateCommand(), a.testCommand(), a.typesCommand(), a.exportCommand()} {
		c.GroupID = "manifest"
		root.AddCommand(c)
	}
	return root
}

// applyEnv sets global flags not given on the command line from
// HOOKCTL_<FLAG>.
func (a *app) applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := a.set.getenv(name)
		if v == "" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if e := sv.Replace(strings.Split(v, ",")); e != nil {
				err = usageErrorf("%s: %v", name, e)
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = usageErrorf("%s: %v", name, e)
		}
	})
	return err
}

// open connects to etcd.
func (a *app) open() (*store.Store, error) {
	user, password := a.conn.user, a.conn.password
	if u, p, ok := strings.Cut(user, ":"); ok && password == "" {
		user, password = u, p
	}
	// etcd's client logs in only with both: with one, an etcd with
	// authentication on refuses every request for want of a user.
	switch {
	case user != "" && password == "":
		return nil, usageErrorf("--user %s has no password: give it in HOOKCTL_PASSWORD (which keeps it out of the process list), with --password, or as --user %s:PASSWORD", user, user)
	case user == "" && password != "":
		return nil, usageErrorf("--password gives an etcd password, but --user names no user")
	}
	var endpoints []string
	for _, e := range a.conn.endpoints {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	if len(endpoints) == 0 {
		return nil, usageErrorf("--endpoints: no etcd endpoint given")
	}
	s, err := store.Open(a.ctx, store.Config{
		Endpoints: endpoints, CACert: a.conn.cacert, Cert: a.conn.cert, Key: a.conn.key,
		User: user, Password: password,
		DialTimeout: a.conn.dialTimeout, CommandTimeout: a.conn.commandTimeout,
		Prefix: a.conn.prefix,
		Limits: a.limits(), MaxHookTimeout: a.conn.maxHookTimeout,
	})
	if err != nil {
		var unreachable *store.UnreachableError
		if errors.As(err, &unreachable) {
			return nil, &exitError{code: ExitEtcd, err: err}
		}
		return nil, err
	}
	a.st = s
	return s, nil
}

// beforeCommit runs the WithBeforeCommit hook, if any.
func (a *app) beforeCommit() error {
	if a.set.beforeCommit == nil {
		return nil
	}
	return a.set.beforeCommit(a.ctx)
}

// limits returns etcd's limits as the flags say.
func (a *app) limits() store.Limits {
	return store.Limits{MaxTxnOps: a.conn.maxTxnOps, MaxRequestBytes: a.conn.maxRequestBytes}
}

// normalizePrefix makes --prefix end with "/", as the daemon's keys do,
// saying so: "/staging" would otherwise name "/staginghooks/...".
func (a *app) normalizePrefix() {
	if p := a.conn.prefix; p != "" && !strings.HasSuffix(p, "/") {
		a.conn.prefix = p + "/"
		fmt.Fprintf(a.err, "hookctl: --prefix %q does not end with /: using %q\n", p, a.conn.prefix)
	}
}
