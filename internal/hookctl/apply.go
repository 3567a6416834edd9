package hookctl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/plan"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// manifestFlags are the flags of the commands that read a manifest.
type manifestFlags struct {
	file   string
	schema schemaFlags
	// takeOwnership lets a plan change hooks of another owner (apply and
	// diff only).
	takeOwnership bool
}

// addOwnership adds --take-ownership to a command that plans.
func (f *manifestFlags) addOwnership(c *cobra.Command) {
	c.Flags().BoolVar(&f.takeOwnership, "take-ownership", false, "let the manifest change hooks that another owner (or no owner) has in etcd, making them the manifest's")
}

func (f *manifestFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.file, "filename", "f", "", "the manifest: a hooks.yaml file, or a directory holding one (required)")
	_ = c.MarkFlagRequired("filename")
	_ = c.MarkFlagFilename("filename", "yaml", "yml")
	f.schema.add(c, "each hook's method")
}

// load loads and checks the manifest.
func (a *app) loadManifest(f *manifestFlags) (*manifest.Manifest, error) {
	src, err := f.schema.load(a.ctx, false)
	if err != nil {
		return nil, failed(err)
	}
	opts := []manifest.Option{manifest.WithMaxTimeout(a.conn.maxHookTimeout)}
	if src != nil {
		opts = append(opts, manifest.WithSchema(src))
	} else {
		// Without a schema, hooks on the built-in example service are
		// still checked against it: a post-hook on a stream never runs.
		opts = append(opts, manifest.WithSchemaOfItsServices(schema.Builtin()))
	}
	m, err := manifest.Load(f.file, opts...)
	if err != nil {
		return nil, failed(err)
	}
	// A document larger than one etcd request can never be written.
	var tooLarge diag.List
	limit := a.limits().MaxDocumentBytes()
	for _, h := range m.Hooks {
		if len(h.Raw) > limit {
			tooLarge.Addf(m.Path, h.Line, h.Name(), "the document is %d bytes (script %s); one etcd request takes at most %d of document (--max-request-bytes %d, less room for the transaction)",
				len(h.Raw), h.Script, limit, a.conn.maxRequestBytes)
		}
	}
	if len(tooLarge) > 0 {
		return nil, failed(tooLarge)
	}
	return m, nil
}

// makePlan loads the manifest, reads etcd and plans.
func (a *app) makePlan(f *manifestFlags, prune bool) (*plan.Plan, *store.Store, error) {
	m, err := a.loadManifest(f)
	if err != nil {
		return nil, nil, err
	}
	s, err := a.open()
	if err != nil {
		return nil, nil, err
	}
	entries, rev, err := s.List(a.ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	utils, inEtcd, _, err := s.Utils(a.ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	// The hooks must compile with the utils as they will be: the
	// manifest's over etcd's.
	var problems diag.List
	after := m.UtilModulesOver(inEtcd)
	for _, h := range m.Hooks {
		if len(h.Compiled.Script.Utils()) == 0 {
			continue
		}
		if _, err := registry.CompileWithUtils(h.Key, h.Doc, after); err != nil {
			problems.Add(m.Path, h.Line, h.Name(), err)
		}
	}
	if len(problems) > 0 {
		s.Close()
		return nil, nil, failed(problems)
	}
	p := plan.Build(m, entries, rev, s.Prefix(), prune)
	if !f.takeOwnership {
		if err := p.CheckOwners(); err != nil {
			s.Close()
			return nil, nil, failed(err)
		}
	}
	p.AddUtils(utils)
	// Nor may the plan break hooks it leaves in etcd (another owner's)
	// that import a util it removes or changes.
	if err := p.CheckImporters(utils); err != nil {
		s.Close()
		return nil, nil, failed(err)
	}
	return p, s, nil
}

func (a *app) applyCommand() *cobra.Command {
	var (
		mf                   manifestFlags
		prune, dryRun, abort bool
		output               string
	)
	c := &cobra.Command{
		Use:   "apply -f DIR|FILE",
		Short: "Make etcd hold the hooks of a manifest, all or nothing as the daemons see it",
		Long: `Apply a manifest (hooks.yaml): check every hook, print the plan (hooks added,
changed with a unified diff of script and fields, removed), then write it,
guarded by the revision the plan was made from: one compare over the whole
hooks directory, plus one per hook changed or removed.

A plan that fits in one etcd transaction (--max-txn-ops, --max-request-bytes)
is written in one. A larger one is staged: the first transaction creates an
apply marker (<prefix>hooks/.apply), and daemons hold back every change while
it exists; the next transactions write the rest, each guarded against any
other change; the last removes the marker, and the daemons put the whole
manifest in force at once. If apply stops part way (killed, etcd lost, a
concurrent change), the marker stays and the daemons keep the hooks in force
before it: apply of the same manifest (same content, owner and --prune)
again resumes it (planning against what is in etcd now), and apply --abort
puts back what was there before it; any other apply is refused (exit 3).

If anything changed in etcd between reading and writing, nothing is written
(or, part way through a staged apply, nothing is put in force) and apply
exits 3: run it again to plan against the new state. If any hook is invalid,
nothing is written and apply exits 1, naming the file and line. Applying the
same manifest twice writes nothing the second time.

--prune also deletes the hooks under the prefix that the manifest does not
list (only the manifest owner's, when it declares owner:). --dry-run prints
the plan only. --wait waits until every live daemon has the result in force,
even when there is nothing to write.`,
		Example: `  hookctl apply -f hooks/
  hookctl apply -f hooks/hooks.yaml --prune --wait=2m
  hookctl apply -f hooks/ --dry-run --server 127.0.0.1:50051
  hookctl apply --abort`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if abort {
				return a.abortApply(output)
			}
			if mf.file == "" {
				return usageErrorf(`required flag(s) "filename" not set (or --abort)`)
			}
			p, s, err := a.makePlan(&mf, prune)
			if err != nil {
				return withNote(err, "nothing was written")
			}
			defer s.Close()
			marker, err := s.Marker(a.ctx)
			if err != nil {
				return withNote(err, "nothing was written")
			}
			w := p.Write()
			w.Origin = origin(p.Manifest, prune)
			// Only the manifest a staged apply writes may complete it:
			// another would put the stopped apply's partial state in force.
			foreign := marker != nil && marker.Manifest != "" && marker.Manifest != w.Origin.Manifest
			if foreign && !dryRun {
				return &exitError{code: ExitEtcd, err: fmt.Errorf("a staged apply of another manifest, or of another version of this one, stopped part way (%s); "+
					"daemons hold back every change until it completes: apply that manifest again to complete it, or run hookctl apply --abort to undo it; nothing was written",
					marker.Describe())}
			}
			view := p.View()
			if output == "text" {
				p.Render(a.out)
			}
			txns, err := s.Transactions(w)
			if err != nil {
				return withNote(failed(err), "nothing was written")
			}
			switch {
			case foreign:
				fmt.Fprintf(a.err, "hookctl: a staged apply of another manifest stopped part way (%s); daemons hold back changes until it completes, and this apply would be refused\n",
					marker.Describe())
			case marker != nil:
				whose := "of this manifest"
				if marker.Manifest == "" {
					whose = "(of a manifest an older hookctl did not record)"
				}
				fmt.Fprintf(a.err, "hookctl: a staged apply %s stopped part way (%s); daemons hold back changes until it completes: this apply completes it\n",
					whose, marker.Describe())
				w.Resume = marker
			}
			if (p.Empty() && marker == nil) || dryRun {
				if output != "text" {
					if err := a.printData(output, view); err != nil {
						return err
					}
				}
				if dryRun && !p.Empty() && output == "text" {
					fmt.Fprintf(a.out, "Dry run: nothing was written. Applying takes %d etcd transaction%s.\n", txns, plural(txns))
				}
				if dryRun || a.wait <= 0 {
					return nil
				}
				// Nothing to write, but what etcd holds may not be in
				// force: a job run again after --wait failed must fail
				// again until the daemons have it.
				st, err := a.fleetStatus(s)
				if err != nil {
					if a.ctx.Err() != nil {
						return a.ctx.Err()
					}
					return &exitError{code: ExitWait, err: fmt.Errorf("nothing to write, but --wait cannot tell whether the daemons have loaded what etcd holds: %v", err)}
				}
				out := a.out
				if output != "text" {
					out = a.err
				}
				return a.waitLive(s, out, a.wait, st.HooksRevision, manifestKeys(p))
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			if txns > 1 {
				fmt.Fprintf(a.err, "hookctl: staging the apply over %d transactions; daemons put it in force when the last one lands\n", txns)
			}
			w.Step = a.set.step
			rev, err := s.Commit(a.ctx, w)
			if err != nil {
				var staged *store.StagedError
				if errors.As(err, &staged) {
					return err
				}
				return withNote(err, "nothing was written")
			}
			view.Applied, view.AppliedRevision = true, rev
			out := a.out
			if output != "text" {
				if err := a.printData(output, view); err != nil {
					return err
				}
				out = a.err
			} else {
				fmt.Fprintf(a.out, "Applied at revision %d: %d added, %d changed, %d removed.\n",
					rev, view.Added, view.Changed, view.Removed)
			}
			return a.waitLive(s, out, a.wait, rev, manifestKeys(p))
		}),
	}
	mf.add(c)
	mf.addOwnership(c)
	// -f is required unless --abort.
	delete(c.Flags().Lookup("filename").Annotations, cobra.BashCompOneRequiredFlag)
	c.Flags().BoolVar(&prune, "prune", false, "also delete the hooks under the prefix that the manifest does not list (of its owner only, when it declares one)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan; write nothing")
	c.Flags().BoolVar(&abort, "abort", false, "undo a staged apply that stopped part way: put back the hooks and utils from before it")
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	return c
}

// origin identifies what apply writes: the manifest's documents and
// utils, its owner, and whether it prunes.
func origin(m *manifest.Manifest, prune bool) store.Origin {
	h := sha256.New()
	fmt.Fprintf(h, "owner %q prune %v\n", m.Owner, prune)
	hooks := slices.Clone(m.Hooks)
	slices.SortFunc(hooks, func(a, b *manifest.Hook) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	for _, hk := range hooks {
		fmt.Fprintf(h, "hook %q %d\n", hk.Key.String(), len(hk.Raw))
		h.Write(hk.Raw)
	}
	utils := slices.Clone(m.Utils)
	slices.SortFunc(utils, func(a, b *manifest.Util) int { return strings.Compare(a.Name, b.Name) })
	for _, u := range utils {
		fmt.Fprintf(h, "util %q %d\n", u.Name, len(u.Raw))
		h.Write(u.Raw)
	}
	return store.Origin{Manifest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Source: m.Path, Owner: m.Owner}
}

// manifestKeys returns the etcd keys of the manifest's hooks: --wait fails
// when a daemon reports one of them broken.
func manifestKeys(p *plan.Plan) []string {
	keys := make([]string, 0, len(p.Manifest.Hooks))
	for _, h := range p.Manifest.Hooks {
		keys = append(keys, h.Key.Path(p.Prefix))
	}
	return keys
}

// abortApply undoes a staged apply that stopped part way.
func (a *app) abortApply(output string) error {
	s, err := a.open()
	if err != nil {
		return err
	}
	defer s.Close()
	m, err := s.Marker(a.ctx)
	if err != nil {
		return err
	}
	if m == nil {
		return a.done(output, writeResult{Action: "unchanged"}, "No staged apply to abort.")
	}
	rev, err := s.Abort(a.ctx)
	if err != nil {
		return err
	}
	return a.done(output, writeResult{Action: "aborted", Revision: rev, Previous: m.ReadRevision},
		"Aborted the staged apply started %s by %s: the hooks and utils of revision %d are back, at revision %d.",
		m.Started.Format(time.RFC3339), m.By, m.ReadRevision, rev)
}

func (a *app) diffCommand() *cobra.Command {
	var (
		mf     manifestFlags
		prune  bool
		output string
	)
	c := &cobra.Command{
		Use:   "diff -f DIR|FILE",
		Short: "Print what apply would change; exit 1 when etcd does not match the manifest",
		Long: `Print the plan apply would carry out, and write nothing. As kubectl diff:
exit 0 when etcd already matches the manifest, 1 when it does not, and above
1 for any error: 2 for an invalid manifest (or a usage error), 3 when etcd
cannot be reached. So a CI step can accept 1 and fail on the rest. With
--prune, hooks the manifest does not list count as changes, as they do for
apply --prune.`,
		Example: `  hookctl diff -f hooks/ --prune`,
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			p, s, err := a.makePlan(&mf, prune)
			if err != nil {
				return diffError(err)
			}
			defer s.Close()
			if output == "text" {
				p.Render(a.out)
			} else if err := a.printData(output, p.View()); err != nil {
				return err
			}
			if !p.Empty() {
				return silentExit(ExitFailed)
			}
			return nil
		}),
	}
	mf.add(c)
	mf.addOwnership(c)
	c.Flags().BoolVar(&prune, "prune", false, "count hooks the manifest does not list as removals")
	outputFlag(c, &output, "text", "json", "yaml")
	return c
}

func (a *app) validateCommand() *cobra.Command {
	var (
		mf     manifestFlags
		output string
	)
	c := &cobra.Command{
		Use:   "validate -f DIR|FILE",
		Short: "Check a manifest as apply does, writing nothing and needing no etcd",
		Long: `Check every hook of a manifest as apply does: the fields and name, the script
compiled by the daemon's engine, params as JSON, the timeout, no hook listed
twice; and, with --server or --descriptor-set, that each method exists, is
hookable, and is not a streaming method given a post-hook. Exit 1 on any
problem, each named with its file and line.`,
		Example: `  hookctl validate -f hooks/
  hookctl validate -f hooks/ --descriptor-set api.binpb`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			m, err := a.loadManifest(&mf)
			var list diag.List
			if output != "text" {
				type problem struct {
					File    string `json:"file"`
					Line    int    `json:"line,omitempty"`
					Hook    string `json:"hook,omitempty"`
					Message string `json:"message"`
				}
				type hookOut struct {
					Hook   string `json:"hook"`
					Script string `json:"script"`
					Line   int    `json:"line"`
				}
				res := struct {
					Manifest string    `json:"manifest"`
					Valid    bool      `json:"valid"`
					Hooks    []hookOut `json:"hooks"`
					Problems []problem `json:"problems,omitempty"`
				}{Manifest: mf.file, Valid: err == nil, Hooks: []hookOut{}}
				if m != nil {
					res.Manifest = m.Path
					for _, h := range m.Hooks {
						res.Hooks = append(res.Hooks, hookOut{h.Name(), h.Script, h.Line})
					}
				}
				if errors.As(err, &list) {
					for _, e := range list {
						res.Problems = append(res.Problems, problem{e.File, e.Line, e.Hook, e.Err.Error()})
					}
				} else if err != nil {
					return err
				}
				if perr := a.printData(output, res); perr != nil {
					return perr
				}
				if err != nil {
					return silentExit(ExitFailed)
				}
				return nil
			}
			if err != nil {
				return err
			}
			t := newTable(a.out, "HOOK", "SCRIPT", "LINE")
			for _, h := range m.Hooks {
				t.row(h.Name(), h.Script, fmt.Sprint(h.Line))
			}
			t.flush()
			fmt.Fprintf(a.out, "%s: %d hook%s valid.\n", m.Path, len(m.Hooks), plural(len(m.Hooks)))
			return nil
		}),
	}
	mf.add(c)
	outputFlag(c, &output, "text", "json", "yaml")
	return c
}

// diffError gives an error of diff an exit code above 1, as kubectl diff
// does: 1 means differences, never an invalid manifest.
func diffError(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.code == ExitFailed {
			c := *ee
			c.code, c.notUsage = ExitUsage, true
			return &c
		}
		return err
	}
	if code := codeOf(err); code != ExitFailed {
		return &exitError{code: code, err: err}
	}
	return &exitError{code: ExitUsage, err: err, notUsage: true}
}
