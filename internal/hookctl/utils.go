package hookctl

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
)

func (a *app) utilsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "utils",
		Short: "List, write, activate and show the history of utils (shared modules hooks import)",
		Long: `Utils are modules of shared code that hooks import as 'utils/NAME' (the active
version) or 'utils/NAME@VERSION' (a pinned one), with import or require. Each
version is kept in etcd under <prefix>utils/NAME/VERSION; <prefix>utils/NAME/active
names the active one. Activating another version recompiles the hooks that
import the util; they use it from their next call.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.utilsListCommand(), a.utilsPutCommand(), a.utilsActivateCommand(), a.utilsHistoryCommand())
	return c
}

// utilView is a util as utils list shows it in JSON and YAML.
type utilView struct {
	Name        string `json:"name"`
	Active      int    `json:"active,omitempty"`
	Latest      int    `json:"latest"`
	Versions    []int  `json:"versions"`
	Description string `json:"description,omitempty"`
	Lang        string `json:"lang,omitempty"`
	Error       string `json:"error,omitempty"`
}

func viewOfUtil(u *store.Util) utilView {
	v := utilView{Name: u.Name, Active: u.Active, Latest: u.Latest(), Versions: []int{}}
	for _, x := range u.Versions {
		v.Versions = append(v.Versions, x.Version)
	}
	switch {
	case u.ActiveErr != nil:
		v.Error = u.ActiveErr.Error()
	case u.Active == 0:
		// Put but not activated yet: not an error of its own, though
		// hooks that import it fail until a version is.
	default:
		x := u.Version(u.Active)
		switch {
		case x == nil:
			v.Error = fmt.Sprintf("active version %d does not exist", u.Active)
		case x.DocErr != nil:
			v.Error = fmt.Sprintf("active version %d: %v", u.Active, x.DocErr)
		default:
			v.Description, v.Lang = x.Doc.Description, string(x.Doc.Lang)
		}
	}
	return v
}

func sortedUtils(utils map[string]*store.Util) []*store.Util {
	out := make([]*store.Util, 0, len(utils))
	for _, u := range utils {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *store.Util) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (a *app) utilsListCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the utils: name, active version, versions and description",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			utils, _, _, err := s.Utils(a.ctx)
			if err != nil {
				return err
			}
			views := []utilView{}
			for _, u := range sortedUtils(utils) {
				views = append(views, viewOfUtil(u))
			}
			if output != "table" {
				return a.printData(output, views)
			}
			t := newTable(a.out, "NAME", "ACTIVE", "VERSIONS", "DESCRIPTION")
			for _, v := range views {
				active := "-"
				if v.Active > 0 {
					active = strconv.Itoa(v.Active)
				}
				desc := v.Description
				switch {
				case v.Error != "":
					desc = "INVALID: " + v.Error
				case v.Active == 0:
					desc = fmt.Sprintf("NOT ACTIVE: hooks that import it fail until a version is activated (utils activate %s VERSION)", v.Name)
				}
				vs := make([]string, len(v.Versions))
				for i, x := range v.Versions {
					vs[i] = strconv.Itoa(x)
				}
				t.row(v.Name, active, strings.Join(vs, ","), desc)
			}
			t.flush()
			return nil
		}),
	}
	outputFlag(c, &output, "table", "json", "yaml")
	return c
}

// utilWriteResult is what utils put and activate report in JSON and YAML.
type utilWriteResult struct {
	Util string `json:"util"`
	// Version is the version written (put) or activated (activate).
	Version int `json:"version"`
	// Active is the active version after the write, and Previous before.
	Active   int   `json:"active,omitempty"`
	Previous int   `json:"previousActive,omitempty"`
	Revision int64 `json:"revision"`
}

func (a *app) utilsPutCommand() *cobra.Command {
	var (
		output, scriptFile, description, lang string
		activate                              bool
	)
	c := &cobra.Command{
		Use:   "put NAME --script FILE",
		Short: "Write a util's next version (and, with --activate, make it active)",
		Long: `Write FILE as the next version of util NAME (1 for a new util), after
compiling it with the utils it imports. It becomes active only with --activate
(or hookctl utils activate NAME VERSION); activating refuses when a hook that
imports the util would no longer compile.`,
		Example: `  hookctl utils put Addition --script utils/addition.ts
  hookctl utils put Addition --script utils/addition.ts --activate`,
		Args: cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := registry.ValidUtilName(name); err != nil {
				return usageErrorf("%v", err)
			}
			if scriptFile == "" {
				return usageErrorf("--script FILE is required")
			}
			src, err := a.readScript(scriptFile)
			if err != nil {
				return err
			}
			doc := &registry.UtilDocument{Script: src, Lang: manifest.LangOf(scriptFile), Description: description}
			if lang != "" {
				doc.Lang = engine.Lang(lang)
			}
			raw, err := manifest.EncodeUtil(doc)
			if err != nil {
				return failed(err)
			}
			s, err := a.open()
			if err != nil {
				return err
			}
			defer s.Close()
			utils, _, _, err := s.Utils(a.ctx)
			if err != nil {
				return err
			}
			u := utils[name]
			if u == nil {
				u = &store.Util{Name: name}
			}
			next := u.Latest() + 1
			values := utilValues(s.Prefix(), utils)
			versionPath := store.UtilPath(s.Prefix(), name, next)
			values[versionPath] = raw
			w := &store.Write{Guards: map[string]int64{versionPath: 0}, Puts: map[string][]byte{versionPath: raw}}
			active := u.Active
			if activate {
				activePath := store.UtilPath(s.Prefix(), name, 0)
				values[activePath] = activeValue(next)
				w.Guards[activePath] = u.ActiveRevision
				w.Puts[activePath] = activeValue(next)
				active = next
			}
			set := registry.NewUtils(s.Prefix(), values)
			if err := checkUtil(name, next, set); err != nil {
				return failed(err)
			}
			if activate {
				if err := a.checkDependents(s, name, set); err != nil {
					return err
				}
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			rev, err := s.Commit(a.ctx, w)
			if err != nil {
				return err
			}
			res := utilWriteResult{Util: name, Version: next, Active: active, Previous: u.Active, Revision: rev}
			if output != "text" {
				return a.printData(output, res)
			}
			fmt.Fprintf(a.out, "util %s: version %d written at revision %d; %s\n", name, next, rev, activeNote(name, next, u.Active, activate))
			return nil
		}),
	}
	c.Flags().StringVar(&scriptFile, "script", "", "the util's script (.js or .ts; - for standard input)")
	c.Flags().StringVar(&description, "description", "", "what the util is for")
	c.Flags().StringVar(&lang, "lang", "", "js or ts (default: from the script's extension)")
	c.Flags().BoolVar(&activate, "activate", false, "also make the version written active")
	outputFlag(c, &output, "text", "json", "yaml")
	return c
}

func activeNote(name string, next, previous int, activated bool) string {
	switch {
	case activated && previous > 0:
		return fmt.Sprintf("active: %d (was %d)", next, previous)
	case activated:
		return fmt.Sprintf("active: %d", next)
	case previous > 0:
		return fmt.Sprintf("active is still %d: hookctl utils activate %s %d puts it in force", previous, name, next)
	}
	return fmt.Sprintf("no version is active: hookctl utils activate %s %d puts it in force", name, next)
}

func (a *app) utilsActivateCommand() *cobra.Command {
	var output string
	var force bool
	c := &cobra.Command{
		Use:   "activate NAME VERSION",
		Short: "Make a version of a util active: hooks that import utils/NAME use it from their next call",
		Long: `Make VERSION the active version of util NAME. The daemons recompile the hooks
that import utils/NAME (directly or through another util) and use the new
version from their next call. It refuses, writing nothing, when the version
does not compile, or when a hook that imports the util would no longer compile
with it (such a hook would fail its calls closed), unless --force.`,
		Example: `  hookctl utils activate Addition 3`,
		Args:    cobra.ExactArgs(2),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := registry.ValidUtilName(name); err != nil {
				return usageErrorf("%v", err)
			}
			v, err := registry.ParseUtilVersion(args[1])
			if err != nil {
				return usageErrorf("%v", err)
			}
			s, utils, u, err := a.openUtil(name)
			if err != nil {
				return err
			}
			defer s.Close()
			x := u.Version(v)
			switch {
			case x == nil:
				return failed(fmt.Errorf("util %s has no version %d (versions: %v)", name, v, viewOfUtil(u).Versions))
			case x.DocErr != nil:
				return failed(fmt.Errorf("util %s version %d is invalid: %w", name, v, x.DocErr))
			}
			if u.Active == v && u.ActiveErr == nil {
				res := utilWriteResult{Util: name, Version: v, Active: v, Previous: v}
				if output != "text" {
					return a.printData(output, res)
				}
				fmt.Fprintf(a.out, "util %s: version %d is already active\n", name, v)
				return nil
			}
			activePath := store.UtilPath(s.Prefix(), name, 0)
			values := utilValues(s.Prefix(), utils)
			values[activePath] = activeValue(v)
			set := registry.NewUtils(s.Prefix(), values)
			if err := checkUtil(name, v, set); err != nil {
				return failed(err)
			}
			if !force {
				if err := a.checkDependents(s, name, set); err != nil {
					return err
				}
			}
			if err := a.beforeCommit(); err != nil {
				return err
			}
			rev, err := s.Commit(a.ctx, &store.Write{
				Guards: map[string]int64{activePath: u.ActiveRevision, x.Path: x.ModRevision},
				Puts:   map[string][]byte{activePath: activeValue(v)},
			})
			if err != nil {
				return err
			}
			res := utilWriteResult{Util: name, Version: v, Active: v, Previous: u.Active, Revision: rev}
			if output != "text" {
				return a.printData(output, res)
			}
			if u.Active > 0 {
				fmt.Fprintf(a.out, "util %s: active version %d → %d at revision %d\n", name, u.Active, v, rev)
			} else {
				fmt.Fprintf(a.out, "util %s: active version %d at revision %d\n", name, v, rev)
			}
			return nil
		}),
	}
	c.Flags().BoolVar(&force, "force", false, "activate even when hooks that import the util would no longer compile")
	outputFlag(c, &output, "text", "json", "yaml")
	return c
}

// utilHistoryView is what utils history shows in JSON and YAML.
type utilHistoryView struct {
	Util        string             `json:"util"`
	Active      int                `json:"active,omitempty"`
	Versions    []utilVersionView  `json:"versions"`
	Activations []store.Activation `json:"activations"`
}

type utilVersionView struct {
	Version     int    `json:"version"`
	Revision    int64  `json:"revision"`
	Lang        string `json:"lang,omitempty"`
	Description string `json:"description,omitempty"`
	Lines       int    `json:"lines"`
	Error       string `json:"error,omitempty"`
}

// openUtil opens the store and reads the utils in etcd, among which the one
// named name must be; the caller closes the store.
func (a *app) openUtil(name string) (*store.Store, map[string]*store.Util, *store.Util, error) {
	s, err := a.open()
	if err != nil {
		return nil, nil, nil, err
	}
	utils, _, _, err := s.Utils(a.ctx)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	u := utils[name]
	if u == nil {
		s.Close()
		return nil, nil, nil, failed(fmt.Errorf("no util %q in etcd", name))
	}
	return s, utils, u, nil
}

func (a *app) utilsHistoryCommand() *cobra.Command {
	var output string
	var limit int
	c := &cobra.Command{
		Use:   "history NAME",
		Short: "Show a util's versions and which were active when",
		Args:  cobra.ExactArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := registry.ValidUtilName(name); err != nil {
				return usageErrorf("%v", err)
			}
			s, _, u, err := a.openUtil(name)
			if err != nil {
				return err
			}
			defer s.Close()
			acts, err := s.ActivationHistory(a.ctx, name, limit)
			if err != nil {
				return err
			}
			h := utilHistoryView{Util: name, Active: u.Active, Versions: []utilVersionView{}, Activations: acts}
			for _, x := range u.Versions {
				vv := utilVersionView{Version: x.Version, Revision: x.CreateRevision}
				if x.DocErr != nil {
					vv.Error = x.DocErr.Error()
				} else {
					vv.Lang, vv.Description = string(x.Doc.Lang), x.Doc.Description
					vv.Lines = strings.Count(strings.TrimRight(x.Doc.Script, "\n"), "\n") + 1
				}
				h.Versions = append(h.Versions, vv)
			}
			if output != "table" {
				return a.printData(output, h)
			}
			t := newTable(a.out, "VERSION", "REVISION", "ACTIVE", "LINES", "DESCRIPTION")
			for _, vv := range slices.Backward(h.Versions) {
				mark := ""
				if vv.Version == u.Active {
					mark = "*"
				}
				desc := vv.Description
				if vv.Error != "" {
					desc = "INVALID: " + vv.Error
				}
				t.row(strconv.Itoa(vv.Version), strconv.FormatInt(vv.Revision, 10), mark, strconv.Itoa(vv.Lines), desc)
			}
			t.flush()
			if len(acts) > 0 {
				fmt.Fprintf(a.out, "\nActivations, newest first:\n")
				for _, act := range acts {
					fmt.Fprintf(a.out, "  revision %d: version %d\n", act.Revision, act.Version)
				}
			}
			return nil
		}),
	}
	c.Flags().IntVar(&limit, "limit", 20, "how many activations to show at most")
	outputFlag(c, &output, "table", "json", "yaml")
	return c
}

// utilValues returns the raw values of every key of utils.
func utilValues(prefix string, utils map[string]*store.Util) map[string][]byte {
	values := map[string][]byte{}
	for _, u := range utils {
		for _, x := range u.Versions {
			values[x.Path] = x.Raw
		}
		if u.ActiveRevision != 0 && u.ActiveErr == nil {
			values[store.UtilPath(prefix, u.Name, 0)] = activeValue(u.Active)
		}
	}
	return values
}

func activeValue(v int) []byte { return []byte(fmt.Sprintf(`{"version":%d}`, v)) }

// checkUtil compiles version v of util name as a hook importing it would,
// with the utils it imports from set.
func checkUtil(name string, v int, set *registry.Utils) error {
	path := fmt.Sprintf("%s%s@%d", engine.UtilsPrefix, name, v)
	_, err := engine.CompileModules("util "+path, fmt.Sprintf("module.exports = require(%q);", path), engine.JS, set)
	return err
}

// checkDependents compiles, against set, every hook in etcd that imports
// util name (directly or through other utils), and refuses when one no
// longer compiles.
func (a *app) checkDependents(s *store.Store, name string, set *registry.Utils) error {
	entries, _, err := s.List(a.ctx)
	if err != nil {
		return err
	}
	names := set.Dependents(map[string]bool{name: true})
	var broken []string
	for _, e := range entries {
		if !e.Valid() || !registry.MentionsUtil([]byte(e.Doc.Script), names) {
			continue
		}
		if _, err := registry.CompileWithUtils(e.Key, e.Doc, set); err != nil {
			broken = append(broken, fmt.Sprintf("%s: %v", hookname.Format(e.Key), err))
		}
	}
	if len(broken) > 0 {
		return failed(errors.New("hooks that import util " + name + " would no longer compile (their calls would fail); nothing written (--force writes anyway):\n  " +
			strings.Join(broken, "\n  ")))
	}
	return nil
}
