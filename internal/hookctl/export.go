package hookctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/store"
	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

// exportHook is one entry of an exported manifest, in the order people
// write them.
type exportHook struct {
	Method      string     `yaml:"method"`
	Phase       string     `yaml:"phase"`
	Name        string     `yaml:"name"`
	Script      string     `yaml:"script"`
	Params      *yaml.Node `yaml:"params,omitempty"`
	Order       int        `yaml:"order,omitempty"`
	Timeout     string     `yaml:"timeout,omitempty"`
	OnError     string     `yaml:"onError,omitempty"`
	Enabled     *bool      `yaml:"enabled,omitempty"`
	Description string     `yaml:"description,omitempty"`
	Isolation   string     `yaml:"isolation,omitempty"`
	Style       string     `yaml:"style,omitempty"`
}

// exportUtil is one util of an exported manifest: its active version.
type exportUtil struct {
	Name        string `yaml:"name"`
	Script      string `yaml:"script"`
	Description string `yaml:"description,omitempty"`
}

func (a *app) exportCommand() *cobra.Command {
	var dir, owner string
	c := &cobra.Command{
		Use:   "export -f DIR",
		Short: "Write the hooks etcd holds as a manifest (hooks.yaml) and its scripts",
		Long: `Write what etcd holds under the prefix as a manifest: DIR/hooks.yaml and one
script file per hook beside it (TypeScript hooks as .ts), and the active
version of each util under DIR/utils/. Applying the result changes nothing.
Keys or documents that are not valid hooks are left out, with a warning.
--owner exports the hooks of one owner only, and no utils (utils have no
owner, and a manifest with one never removes any); hooks of several owners
need it.`,
		Example: `  hookctl export -f exported/
  hookctl export -f payments/ --owner payments`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageErrorf(`required flag(s) "filename" not set`)
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
			var hooks []exportHook
			scripts := map[string]string{}
			owners := map[string]bool{}
			for _, e := range entries {
				if !e.Valid() {
					fmt.Fprintf(a.err, "hookctl: %s left out: not a valid hook\n", e.Path)
					continue
				}
				if owner != "" && e.Doc.Owner != owner {
					continue
				}
				owners[e.Doc.Owner] = true
				d := e.Doc
				ext := ".js"
				if d.Lang == engine.TS {
					ext = ".ts"
				}
				file := scriptName(hookname.Method(e.Key), string(e.Key.Phase), e.Key.Name) + ext
				scripts[file] = d.Script
				h := exportHook{Method: hookname.Method(e.Key), Phase: string(e.Key.Phase), Name: e.Key.Name, Script: file,
					Order: d.Order, Timeout: d.Timeout, OnError: string(d.OnError), Enabled: d.Enabled,
					Description: d.Description, Isolation: string(d.Isolation), Style: string(d.Style)}
				if len(d.Params) > 0 {
					if h.Params, err = yamljson.FromJSON(d.Params); err != nil {
						return fmt.Errorf("%s: params: %w", e.Path, err)
					}
				}
				hooks = append(hooks, h)
			}
			if len(owners) > 1 {
				var names []string
				for o := range owners {
					names = append(names, fmt.Sprintf("%q", o))
				}
				return failed(fmt.Errorf("the hooks have several owners (%s): export one with --owner", strings.Join(names, ", ")))
			}
			top := struct {
				Owner string       `yaml:"owner,omitempty"`
				Utils []exportUtil `yaml:"utils,omitempty"`
				Hooks []exportHook `yaml:"hooks"`
			}{Hooks: hooks}
			for o := range owners {
				top.Owner = o
			}
			if top.Owner == "" {
				if top.Utils, err = a.exportUtils(s, scripts); err != nil {
					return err
				}
			}
			if top.Hooks == nil {
				top.Hooks = []exportHook{}
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "# Exported by hookctl from etcd revision %d (prefix %s).\n", rev, s.Prefix())
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(top); err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return failed(err)
			}
			path := filepath.Join(dir, manifest.Names[0])
			if _, err := os.Stat(path); err == nil {
				return failed(fmt.Errorf("%s exists: export writes into an empty directory or a new one", path))
			} else if !errors.Is(err, os.ErrNotExist) {
				return failed(err)
			}
			if len(top.Utils) > 0 {
				if err := os.MkdirAll(filepath.Join(dir, "utils"), 0o755); err != nil {
					return failed(err)
				}
			}
			for name, src := range scripts {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
					return failed(err)
				}
			}
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				return failed(err)
			}
			fmt.Fprintf(a.out, "Exported %d hook%s and %d util%s at revision %d to %s.\n",
				len(hooks), plural(len(hooks)), len(top.Utils), plural(len(top.Utils)), rev, path)
			return nil
		}),
	}
	c.Flags().StringVarP(&dir, "filename", "f", "", "the directory to write hooks.yaml and the scripts into (required)")
	_ = c.MarkFlagDirname("filename")
	c.Flags().StringVar(&owner, "owner", "", "export only the hooks of this owner")
	return c
}

// exportUtils returns the manifest entries of the utils in etcd, their
// active versions, and adds their scripts (utils/<name>.js or .ts) to
// scripts. A util without a valid active version is left out, with a
// warning: applying the export with --prune would remove it.
func (a *app) exportUtils(s *store.Store, scripts map[string]string) ([]exportUtil, error) {
	utils, _, _, err := s.Utils(a.ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(utils))
	for n := range utils {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []exportUtil
	for _, n := range names {
		u := utils[n]
		v := u.Version(u.Active)
		if u.ActiveErr != nil || v == nil || v.DocErr != nil {
			fmt.Fprintf(a.err, "hookctl: util %s left out: it has no valid active version (apply --prune of the export would remove it)\n", n)
			continue
		}
		file := "utils/" + n + ".js"
		if v.Doc.Lang == engine.TS {
			file = "utils/" + n + ".ts"
		}
		scripts[file] = v.Doc.Script
		out = append(out, exportUtil{Name: n, Script: file, Description: v.Doc.Description})
	}
	return out, nil
}

// scriptName is a file name for a hook's script: its method, phase and
// name, with characters that do not belong in file names replaced.
func scriptName(method, phase, name string) string {
	r := strings.NewReplacer("/", ".", "*", "_all_", "\\", "_", ":", "_")
	return r.Replace(method + "." + phase + "." + name)
}
