package hookctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// schemaFlags are --server and --descriptor-set.
type schemaFlags struct {
	server, descriptorSet string
	hookServices          []string
}

func (f *schemaFlags) add(c *cobra.Command, what string) {
	c.Flags().StringVar(&f.server, "server", "", "check "+what+" against the services of the server at ADDR (gRPC server reflection, plaintext)")
	c.Flags().StringVar(&f.descriptorSet, "descriptor-set", "", "check "+what+" against a FileDescriptorSet FILE (buf build -o FILE, protoc --descriptor_set_out)")
	c.Flags().StringSliceVar(&f.hookServices, "hook-services", nil, "with --server or --descriptor-set: the daemons' --hook-services, the services hooks apply to (default: every service but grpc.*)")
	c.MarkFlagsMutuallyExclusive("server", "descriptor-set")
	_ = c.MarkFlagFilename("descriptor-set", "binpb", "pb", "bin", "desc")
}

// load returns the schema source the flags name, or nil (or, with builtin,
// the built-in descriptors) when none is named.
func (f *schemaFlags) load(ctx context.Context, builtin bool) (*schema.Source, error) {
	src, err := f.source(ctx, builtin)
	if src != nil {
		src.HookServices(f.hookServices)
	}
	return src, err
}

func (f *schemaFlags) source(ctx context.Context, builtin bool) (*schema.Source, error) {
	switch {
	case f.server != "":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		src, err := schema.FromServer(ctx, f.server)
		if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			// Not the manifest's fault: run again, as for etcd.
			return nil, &exitError{code: ExitEtcd, err: fmt.Errorf("--server: cannot reach the daemon: %w", err)}
		}
		if err != nil {
			return nil, fmt.Errorf("--server: %w", err)
		}
		return src, nil
	case f.descriptorSet != "":
		src, err := schema.FromDescriptorSet(f.descriptorSet)
		if err != nil {
			return nil, fmt.Errorf("--descriptor-set: %w", err)
		}
		return src, nil
	case builtin:
		return schema.Builtin(), nil
	}
	return nil, nil
}

// scriptFailure names the script file and line of a compile error.
func scriptFailure(file string, k registry.Key, err error) error {
	if pos, ok := hookdoc.ScriptPosition(err); ok {
		return diag.List{{File: file, Line: pos.Line, Column: pos.Column, Hook: hookname.Format(k), Err: errors.New(pos.Msg)}}
	}
	return diag.List{{File: file, Hook: hookname.Format(k), Err: err}}
}

func (a *app) readScript(path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(a.in)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--script: %w", err)
	}
	return string(b), nil
}

func (a *app) putCommand() *cobra.Command {
	var (
		scriptFile, params, timeout, onError, description string
		isolation, output, lang, style                    string
		order                                             int
		disabled                                          bool
		sf                                                schemaFlags
	)
	c := &cobra.Command{
		Use:   "put " + hookArgsUsage + " --script FILE",
		Short: "Create or replace a hook, after checking it",
		Long: `Create or replace a hook. The whole document is replaced: flags left out take
their defaults. The document is checked as the daemon checks it (the name, the
fields, the script compiled) before anything is written, and, with --server or
--descriptor-set, the method must exist and be hookable. The write is guarded
by the revision read: if the hook changed meanwhile, nothing is written (exit 3).`,
		Example: `  hookctl put events.v1.EventService/SendEvent pre addvalue --script scripts/addvalue.js \
    --params '{"extradata":{"source":"hook"}}' --order 10 --timeout 250ms
  hookctl put events.v1.EventService/SendEvent pre deny --script scripts/deny-guest.js --params @deny.json`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, err := hookArgs(args)
			if err != nil {
				return err
			}
			if scriptFile == "" {
				return usageErrorf("--script FILE is required")
			}
			src, err := a.readScript(scriptFile)
			if err != nil {
				return err
			}
			doc := &registry.Document{Script: src, Order: order, Timeout: timeout,
				OnError: registry.OnError(onError), Description: description, Isolation: registry.Isolation(isolation),
				Lang: manifest.LangOf(scriptFile)}
			if lang != "" {
				doc.Lang = engine.Lang(lang)
			}
			doc.Style = engine.Style(style)
			if params != "" {
				if doc.Params, err = a.readJSONArg("params", params); err != nil {
					return failed(err)
				}
			}
			if disabled {
				f := false
				doc.Enabled = &f
			}
			raw, err := hookdoc.Encode(k, doc, a.conn.maxHookTimeout)
			if err != nil {
				if _, ok := hookdoc.ScriptPosition(err); ok {
					return failed(scriptFailure(scriptFile, k, err))
				}
				return failed(fmt.Errorf("hook %s: %w", hookname.Format(k), err))
			}
			schemaSrc, err := sf.load(a.ctx, false)
			if err != nil {
				return err
			}
			// Without a schema, a hook on the built-in example service is
			// still checked against it, as apply and validate do.
			if builtin := schema.Builtin(); schemaSrc == nil && slices.Contains(builtin.Services(), k.Service) {
				schemaSrc = builtin
			}
			if schemaSrc != nil {
				if err := schemaSrc.CheckHook(k); err != nil {
					return failed(fmt.Errorf("hook %s: %w", hookname.Format(k), err))
				}
			}
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			cur, _, err := s.Get(a.ctx, k)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			newDoc, _ := registry.DecodeDocumentWithin(raw, a.conn.maxHookTimeout)
			if err := a.checkUtils(s, k, newDoc); err != nil {
				return err
			}
			if cur != nil && cur.DocErr == nil && hookdoc.Equal(cur.Doc, newDoc) {
				return a.done(output, writeResult{Hook: hookname.Format(k), Key: s.Path(k), Action: "unchanged", Revision: cur.ModRevision},
					"%s unchanged (revision %d)", hookname.Format(k), cur.ModRevision)
			}
			guard := int64(0)
			if cur != nil {
				guard = cur.ModRevision
			}
			rev, err := a.commit(s, guard, k, raw)
			if err != nil {
				return err
			}
			res := writeResult{Hook: hookname.Format(k), Key: s.Path(k), Revision: rev}
			switch {
			case cur == nil:
				res.Action = "created"
				return a.done(output, res, "created %s at revision %d", res.Hook, rev)
			case cur.DocErr != nil:
				res.Action, res.Previous, res.Change = "replaced", cur.ModRevision, "replaced an invalid document"
				return a.done(output, res, "replaced invalid %s at revision %d (was revision %d)", res.Hook, rev, cur.ModRevision)
			}
			res.Action, res.Previous, res.Change = "updated", cur.ModRevision, hookdoc.Summary(cur.Doc, newDoc)
			return a.done(output, res, "updated %s at revision %d (was revision %d): %s", res.Hook, rev, cur.ModRevision, res.Change)
		}),
	}
	f := c.Flags()
	f.StringVar(&scriptFile, "script", "", "the hook's script, JavaScript or TypeScript (.ts) (- for standard input)")
	f.StringVar(&params, "params", "", "the hook's params: JSON, or @FILE holding JSON")
	f.IntVar(&order, "order", 0, "position among the hooks of a call (ascending)")
	f.StringVar(&timeout, "timeout", "", "the hook's time limit, a Go duration such as 250ms (default: the daemon's --hook-timeout)")
	f.StringVar(&onError, "on-error", "", "what a failure of the hook does: abort (default) or continue")
	f.BoolVar(&disabled, "disabled", false, "store the hook disabled")
	f.StringVar(&description, "description", "", "what the hook is for")
	f.StringVar(&lang, "lang", "", "the script's language: js or ts (default: ts for a .ts file, else js)")
	_ = c.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions([]string{"js", "ts"}, cobra.ShellCompDirectiveNoFileComp))
	f.StringVar(&style, "style", "", "how the script's function is called: apimaker, main(g) (default: the ctx style, main(ctx))")
	_ = c.RegisterFlagCompletionFunc("style", cobra.FixedCompletions([]string{"apimaker"}, cobra.ShellCompDirectiveNoFileComp))
	f.StringVar(&isolation, "isolation", "", "where the hook runs: process or inprocess (default: the daemon's choice)")
	_ = c.MarkFlagFilename("script", "js")
	_ = c.RegisterFlagCompletionFunc("isolation", cobra.FixedCompletions([]string{"process", "inprocess"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("on-error", cobra.FixedCompletions([]string{"abort", "continue"}, cobra.ShellCompDirectiveNoFileComp))
	sf.add(c, "the method")
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	c.ValidArgsFunction = a.completeHook
	return c
}

// writeResult is what a write command did, for -o json and -o yaml.
type writeResult struct {
	Hook string `json:"hook"`
	Key  string `json:"key"`
	// Action is created, updated, replaced (an invalid document), unchanged,
	// enabled, disabled, deleted or rolledBack.
	Action string `json:"action"`
	// Revision is the revision written, or the current one when nothing was.
	Revision int64 `json:"revision"`
	// Previous is the hook's revision before the write.
	Previous int64 `json:"previousRevision,omitempty"`
	// Change says what changed.
	Change string `json:"change,omitempty"`
	// RolledBackTo is the revision whose version rollback put back.
	RolledBackTo int64 `json:"rolledBackTo,omitempty"`
}

// done reports a write: text for people, or res as JSON or YAML.
// With --wait, it then waits for the daemons to load the revision.
func (a *app) done(output string, res writeResult, format string, args ...any) error {
	return a.finish(output, res, res.Revision, []string{res.Key}, format, args...)
}

// finish prints what a write did, as text (format and args) or as res in
// output's format, and waits, with --wait, until the daemons have revision
// rev in force (none may report one of keys broken).
func (a *app) finish(output string, res any, rev int64, keys []string, format string, args ...any) error {
	w := a.out
	if output != "text" {
		if err := a.printData(output, res); err != nil {
			return err
		}
		w = a.err
	} else {
		fmt.Fprintf(a.out, format+"\n", args...)
	}
	if a.st == nil {
		return nil
	}
	return a.waitLive(a.st, w, a.wait, rev, keys)
}

// commit writes one hook guarded by the mod revision it was read at (0: it
// must still be absent).
func (a *app) commit(s *store.Store, guard int64, k registry.Key, raw []byte) (int64, error) {
	if err := a.beforeCommit(); err != nil {
		return 0, err
	}
	path := s.Path(k)
	return s.Commit(a.ctx, &store.Write{Guards: map[string]int64{path: guard}, Puts: map[string][]byte{path: raw}})
}

func (a *app) enableCommand(enable bool) *cobra.Command {
	var output string
	verb, short := "enable", "Enable a hook (its document's enabled field only)"
	if !enable {
		verb, short = "disable", "Disable a hook (its document's enabled field only); the daemon stops running it"
	}
	c := &cobra.Command{
		Use:     verb + " " + hookArgsUsage,
		Short:   short,
		Example: fmt.Sprintf(`  hookctl %s events.v1.EventService/SendEvent pre deny`, verb),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, cur, err := a.openHook(args)
			if err != nil {
				return err
			}
			defer s.Close()
			if cur.DocErr != nil {
				return failed(fmt.Errorf("hook %s has an invalid document, fix it with put first: %v", hookname.Format(k), cur.DocErr))
			}
			if cur.Doc.IsEnabled() == enable {
				return a.done(output, writeResult{Hook: hookname.Format(k), Key: cur.Path, Action: "unchanged", Revision: cur.ModRevision},
					"%s already %sd (revision %d)", hookname.Format(k), verb, cur.ModRevision)
			}
			doc := *cur.Doc
			doc.Enabled = &enable
			raw, err := hookdoc.Encode(k, &doc, a.conn.maxHookTimeout)
			if err != nil {
				return failed(fmt.Errorf("hook %s: %w", hookname.Format(k), err))
			}
			rev, err := a.commit(s, cur.ModRevision, k, raw)
			if err != nil {
				return err
			}
			return a.done(output, writeResult{Hook: hookname.Format(k), Key: cur.Path, Action: verb + "d", Revision: rev,
				Previous: cur.ModRevision, Change: fmt.Sprintf("enabled: %v → %v", !enable, enable)},
				"%sd %s at revision %d", verb, hookname.Format(k), rev)
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	c.ValidArgsFunction = a.completeHook
	return c
}

func (a *app) deleteCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "delete " + hookArgsUsage,
		Aliases: []string{"del", "rm"},
		Short:   "Delete a hook",
		Long: `Delete a hook. The delete is guarded by the revision read: if the hook changed
meanwhile, nothing is deleted (exit 3). etcd keeps the deleted versions until
it compacts them: history lists them, and rollback puts the last one back.`,
		Example: `  hookctl delete events.v1.EventService/SendEvent pre deny`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, cur, err := a.openHook(args)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := a.beforeCommit(); err != nil {
				return err
			}
			rev, err := s.Commit(a.ctx, &store.Write{Guards: map[string]int64{cur.Path: cur.ModRevision}, Deletes: []string{cur.Path}})
			if err != nil {
				return err
			}
			return a.done(output, writeResult{Hook: hookname.Format(k), Key: cur.Path, Action: "deleted", Revision: rev, Previous: cur.ModRevision},
				"deleted %s at revision %d (was revision %d)", hookname.Format(k), rev, cur.ModRevision)
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml")
	waitFlag(c, &a.wait)
	c.ValidArgsFunction = a.completeHook
	return c
}

// checkUtils compiles a hook that imports utils with the utils in etcd, so
// that one importing a util nobody has is refused before it is written.
func (a *app) checkUtils(s *store.Store, k registry.Key, doc *registry.Document) error {
	if !strings.Contains(doc.Script, engine.UtilsPrefix) {
		return nil
	}
	_, utils, _, err := s.Utils(a.ctx)
	if err != nil {
		return err
	}
	if _, err := registry.CompileWithUtils(k, doc, utils); err != nil {
		return failed(fmt.Errorf("hook %s: %w", hookname.Format(k), err))
	}
	return nil
}
