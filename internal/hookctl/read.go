package hookctl

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

// hookView is a hook as list and get show it in JSON and YAML.
type hookView struct {
	Hook        string          `json:"hook"`
	Key         string          `json:"key"`
	Method      string          `json:"method,omitempty"`
	Phase       string          `json:"phase,omitempty"`
	Name        string          `json:"name,omitempty"`
	Order       int             `json:"order"`
	Enabled     bool            `json:"enabled"`
	Timeout     string          `json:"timeout,omitempty"`
	OnError     string          `json:"onError,omitempty"`
	Description string          `json:"description,omitempty"`
	Isolation   string          `json:"isolation,omitempty"`
	Owner       string          `json:"owner,omitempty"`
	Lang        string          `json:"lang,omitempty"`
	Style       string          `json:"style,omitempty"`
	Params      json.RawMessage `json:"params,omitempty"`
	Script      string          `json:"script,omitempty"`
	Revision    int64           `json:"revision"`
	Version     int64           `json:"version"`
	Created     int64           `json:"createRevision"`
	// Error says why the key or its document is invalid.
	Error string `json:"error,omitempty"`
}

func entryName(e *store.Entry, prefix string) string {
	if e.KeyErr == nil {
		return hookname.Format(e.Key)
	}
	return strings.TrimPrefix(e.Path, registry.HooksDir(prefix))
}

func viewOf(e *store.Entry, prefix string, withScript bool) hookView {
	v := hookView{
		Hook: entryName(e, prefix), Key: e.Path,
		Revision: e.ModRevision, Version: e.Version, Created: e.CreateRevision,
	}
	if e.KeyErr != nil {
		v.Error = e.KeyErr.Error()
		return v
	}
	v.Method, v.Phase, v.Name = hookname.Method(e.Key), string(e.Key.Phase), e.Key.Name
	if e.DocErr != nil {
		v.Error = e.DocErr.Error()
		return v
	}
	d := e.Doc
	v.Order, v.Enabled, v.Timeout = d.Order, d.IsEnabled(), d.Timeout
	v.OnError, v.Description = string(hookdoc.OnError(d)), d.Description
	v.Owner = d.Owner
	v.Isolation, v.Lang, v.Style = string(d.Isolation), string(d.Lang), string(d.Style)
	v.Params = json.RawMessage(hookdoc.ShowParams(d.Params))
	if withScript {
		v.Script = d.Script
	}
	return v
}

func (a *app) listCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list [SERVICE[/METHOD]]",
		Short: "List hooks, or the hooks that apply to a service or method",
		Long: `List the hooks in etcd: method, phase, name, order, enabled, timeout,
onError, revision and description.

Given SERVICE or SERVICE/METHOD, list the hooks that apply to it, including
SERVICE/* and */* hooks, in the order the daemon runs them (by phase, then
ascending order, ties broken by key).`,
		Example: `  hookctl list
  hookctl list events.v1.EventService/SendEvent
  hookctl list -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var service, method string
			if len(args) == 1 {
				if strings.Contains(args[0], "/") {
					var err error
					if service, method, err = hookname.ParseMethod(args[0]); err != nil {
						return usageErrorf("%v", err)
					}
					if method == registry.Wildcard {
						method = ""
					}
				} else {
					service = args[0]
				}
			}
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			entries, rev, err := s.List(a.ctx)
			if err != nil {
				return err
			}
			var shown []*store.Entry
			for i := range entries {
				e := &entries[i]
				if service != "" && (e.KeyErr != nil || !hookname.Covers(e.Key, service, method)) {
					continue
				}
				shown = append(shown, e)
			}
			// In the order a call runs them: by method, pre, post, error, then
			// ascending order, ties broken by key.
			slices.SortStableFunc(shown, func(x, y *store.Entry) int {
				if x.KeyErr != nil || y.KeyErr != nil {
					return cmp.Compare(boolRank(x.KeyErr != nil), boolRank(y.KeyErr != nil))
				}
				if service != "" {
					return cmp.Or(cmp.Compare(phaseRank(x), phaseRank(y)), cmp.Compare(orderOf(x), orderOf(y)),
						hookname.Compare(x.Key, y.Key))
				}
				return cmp.Or(strings.Compare(hookname.Method(x.Key), hookname.Method(y.Key)),
					cmp.Compare(phaseRank(x), phaseRank(y)), cmp.Compare(orderOf(x), orderOf(y)),
					hookname.Compare(x.Key, y.Key))
			})
			if output != "table" {
				views := make([]hookView, 0, len(shown))
				for _, e := range shown {
					views = append(views, viewOf(e, s.Prefix(), false))
				}
				return a.printData(output, struct {
					Revision int64      `json:"revision"`
					Hooks    []hookView `json:"hooks"`
				}{rev, views})
			}
			if len(shown) == 0 {
				fmt.Fprintf(a.out, "No hooks under %s%s.\n", registry.HooksDir(s.Prefix()), filterNote(args))
				return nil
			}
			t := newTable(a.out, "METHOD", "PHASE", "NAME", "ORDER", "ENABLED", "TIMEOUT", "ON-ERROR", "OWNER", "REVISION", "DESCRIPTION")
			for _, e := range shown {
				v := viewOf(e, s.Prefix(), false)
				switch {
				case e.KeyErr != nil:
					t.row(v.Hook, "-", "-", "-", "invalid", "-", "-", "-", fmt.Sprint(v.Revision), "invalid key: "+v.Error)
				case e.DocErr != nil:
					t.row(v.Method, v.Phase, v.Name, "-", "invalid", "-", "-", "-", fmt.Sprint(v.Revision), "invalid: "+v.Error)
				default:
					t.row(v.Method, v.Phase, v.Name, fmt.Sprint(v.Order), fmt.Sprint(v.Enabled), hookdoc.ShowTimeout(v.Timeout),
						v.OnError, cmp.Or(v.Owner, "-"), fmt.Sprint(v.Revision), v.Description)
				}
			}
			t.flush()
			return nil
		}),
	}
	outputFlag(c, &output, "table", "json", "yaml")
	c.ValidArgsFunction = a.completeMethods
	return c
}

func filterNote(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return " that apply to " + args[0]
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// phaseRank puts pre-hooks before post-hooks before error hooks, as a call
// runs them.
func phaseRank(e *store.Entry) int {
	switch e.Key.Phase {
	case engine.Pre:
		return 0
	case engine.Post:
		return 1
	}
	return 2
}

func orderOf(e *store.Entry) int {
	if e.Doc == nil {
		return 0
	}
	return e.Doc.Order
}

// hookArgs reads the hook a command names.
func hookArgs(args []string) (registry.Key, error) {
	if (len(args) != 1 || strings.Count(args[0], "/") != 3) && len(args) != 3 {
		return registry.Key{}, usageErrorf("want a hook as %s (e.g. events.v1.EventService/SendEvent pre addvalue), got %q",
			hookname.Usage, strings.Join(args, " "))
	}
	k, err := hookname.Parse(args)
	if err != nil {
		return k, failed(err)
	}
	return k, nil
}

var hookArgsUsage = hookname.Usage

// openHook connects to etcd and reads the hook args name; the caller
// closes the store.
func (a *app) openHook(args []string) (registry.Key, *store.Store, *store.Entry, error) {
	k, err := hookArgs(args)
	if err != nil {
		return k, nil, nil, err
	}
	s, err := a.open()
	if err != nil {
		return k, nil, nil, err
	}
	e, _, err := s.Get(a.ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		err = notFound(k, s.Prefix())
	}
	if err != nil {
		s.Close()
		return k, nil, nil, err
	}
	return k, s, e, nil
}

func notFound(k registry.Key, prefix string) error {
	return failed(fmt.Errorf("hook %s not found (no key %s)", hookname.Format(k), k.Path(prefix)))
}

func (a *app) getCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "get " + hookArgsUsage,
		Short: "Show a hook: its settings and script",
		Example: `  hookctl get events.v1.EventService/SendEvent pre addvalue
  hookctl get events.v1.EventService/SendEvent pre addvalue -o script > addvalue.js
  hookctl get events.v1.EventService/SendEvent/pre/addvalue -o json`,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, s, e, err := a.openHook(args)
			if err != nil {
				return err
			}
			defer s.Close()
			switch output {
			case "json", "yaml":
				return a.printData(output, viewOf(e, s.Prefix(), true))
			case "script":
				if e.DocErr != nil {
					return failed(fmt.Errorf("hook %s: %v", hookname.Format(k), e.DocErr))
				}
				fmt.Fprint(a.out, e.Doc.Script)
				if !strings.HasSuffix(e.Doc.Script, "\n") {
					fmt.Fprintln(a.out)
				}
				return nil
			}
			v := viewOf(e, s.Prefix(), true)
			t := newTable(a.out, "hook:", v.Hook)
			t.row("key:", v.Key)
			t.row("revision:", fmt.Sprintf("%d (version %d, created at revision %d)", v.Revision, v.Version, v.Created))
			if e.DocErr != nil {
				t.row("error:", v.Error)
				t.flush()
				fmt.Fprintf(a.out, "--- stored value ---\n%s\n", e.Raw)
				return nil
			}
			t.row("enabled:", fmt.Sprint(v.Enabled))
			t.row("order:", fmt.Sprint(v.Order))
			t.row("timeout:", hookdoc.ShowTimeout(v.Timeout))
			t.row("onError:", v.OnError)
			t.row("description:", v.Description)
			t.row("isolation:", hookdoc.ShowIsolation(registry.Isolation(v.Isolation)))
			t.row("lang:", hookdoc.ShowLang(e.Doc.Lang))
			t.row("style:", hookdoc.ShowStyle(e.Doc.Style))
			t.row("params:", string(v.Params))
			t.flush()
			fmt.Fprintf(a.out, "--- script ---\n%s", v.Script)
			if !strings.HasSuffix(v.Script, "\n") {
				fmt.Fprintln(a.out)
			}
			return nil
		}),
	}
	outputFlag(c, &output, "text", "json", "yaml", "script")
	c.ValidArgsFunction = a.completeHook
	return c
}
