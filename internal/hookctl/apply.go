package hookctl

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/plan"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// manifestFlags are the flags of the commands that read a manifest.
type manifestFlags struct {
	file   string
	schema schemaFlags
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
	var opts []manifest.Option
	if src != nil {
		opts = append(opts, manifest.WithSchema(src))
	}
	m, err := manifest.Load(f.file, opts...)
	if err != nil {
		return nil, failed(err)
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
	return plan.Build(m, entries, rev, s.Prefix(), prune), s, nil
}

func (a *app) applyCommand() *cobra.Command {
	var (
		mf            manifestFlags
		prune, dryRun bool
		output        string
	)
	c := &cobra.Command{
		Use:   "apply -f DIR|FILE",
		Short: "Make etcd hold the hooks of a manifest, in one guarded transaction",
		Long: `Apply a manifest (hooks.yaml): check every hook, print the plan (hooks added,
changed with a unified diff of script and fields, removed), then write all of
it in one etcd transaction guarded by the revisions the plan was made from.

If anything changed in etcd between reading and writing, nothing is written
and apply exits 3: run it again to plan against the new state. If any hook is
invalid, nothing is written and apply exits 1, naming the file and line.
Applying the same manifest twice writes nothing the second time.

--prune also deletes the hooks under the prefix that the manifest does not
list. --dry-run prints the plan only.`,
		Example: `  hookctl apply -f hooks/
  hookctl apply -f hooks/hooks.yaml --prune
  hookctl apply -f hooks/ --dry-run --server 127.0.0.1:50051`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			p, s, err := a.makePlan(&mf, prune)
			if err != nil {
				return withNote(err, "nothing was written")
			}
			defer s.Close()
			view := p.View()
			if output == "text" {
				p.Render(a.out)
			}
			if p.Empty() || dryRun {
				if output != "text" {
					return a.printData(output, view)
				}
				if dryRun && !p.Empty() {
					fmt.Fprintln(a.out, "Dry run: nothing was written.")
				}
				return nil
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			rev, err := s.Commit(a.ctx, p.Write())
			if err != nil {
				return withNote(err, "nothing was written")
			}
			view.Applied, view.AppliedRevision = true, rev
			if output != "text" {
				return a.printData(output, view)
			}
			fmt.Fprintf(a.out, "Applied at revision %d: %d added, %d changed, %d removed.\n",
				rev, view.Added, view.Changed, view.Removed)
			return nil
		}),
	}
	mf.add(c)
	c.Flags().BoolVar(&prune, "prune", false, "also delete the hooks under the prefix that the manifest does not list")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan; write nothing")
	outputFlag(c, &output, "text", "json", "yaml")
	return c
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
		Long: `Print the plan apply would carry out, and write nothing. Exit 0 when etcd
already matches the manifest, 1 when it does not (or a hook is invalid), 3
when etcd cannot be reached. With --prune, hooks the manifest does not list
count as changes, as they do for apply --prune.`,
		Example: `  hookctl diff -f hooks/ --prune`,
		Args:    cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			p, s, err := a.makePlan(&mf, prune)
			if err != nil {
				return err
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
