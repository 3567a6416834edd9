package hookctl

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/tsdecl"
)

func (a *app) typesCommand() *cobra.Command {
	var (
		dir, file string
		fromEtcd  bool
		sf        schemaFlags
	)
	c := &cobra.Command{
		Use:   "types -o DIR",
		Short: "Write TypeScript declarations of the hookable methods for editors",
		Long: `Write DIR/types.d.ts, the declarations of the module "types" that hooks import
(import * as T from 'types'): the request and response messages of every
hookable method as protojson shows them, and the ctx, result and hook types of
each method and phase (T.events.v1.EventService.SendEventPre,
T.Hook<"events.v1.EventService/SendEvent", "pre">). Also write
DIR/tsconfig.json, which maps 'types' and 'utils/*' into DIR, and DIR/utils/:
with -f MANIFEST or --etcd, DIR/utils/utils.d.ts declares the utils of the
manifest's utils: section or of etcd (as any), so imports of utils/NAME
resolve. Put hooks in DIR, or extend DIR/tsconfig.json, and an editor
completes ctx.request. and checks the fields a hook uses.

Message types come from --server or --descriptor-set; the example
events.v1.EventService is built in.`,
		Example: `  hookctl types -o scripts/types
  hookctl types --server localhost:50051 -o types`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageErrorf("-o DIR is required")
			}
			src, err := sf.load(a.ctx, true)
			if err != nil {
				return err
			}
			var services []protoreflect.ServiceDescriptor
			for _, name := range src.Services() {
				sd, err := src.Service(name)
				if err != nil {
					return failed(err)
				}
				services = append(services, sd)
			}
			files := map[string]string{
				"types.d.ts":       tsdecl.Write(src.Name(), services),
				"tsconfig.json":    tsdecl.Tsconfig,
				"utils/README.txt": tsdecl.UtilsReadme,
			}
			names, err := a.utilNames(file, fromEtcd)
			if err != nil {
				return err
			}
			if len(names) > 0 {
				files["utils/utils.d.ts"] = tsdecl.Utils(names)
			}
			for name, text := range files {
				path := filepath.Join(dir, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return failed(err)
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					return failed(err)
				}
			}
			fmt.Fprintf(a.out, "wrote %s, %s and %s\n", filepath.Join(dir, "types.d.ts"), filepath.Join(dir, "tsconfig.json"), filepath.Join(dir, "utils"))
			return nil
		}),
	}
	c.Flags().StringVarP(&dir, "output", "o", "", "the directory to write to")
	c.Flags().StringVarP(&file, "filename", "f", "", "declare the utils of this manifest (a hooks.yaml, or a directory holding one)")
	c.Flags().BoolVar(&fromEtcd, "etcd", false, "declare the utils in etcd")
	sf.add(c, "the types")
	return c
}

// utilNames returns the names of the utils of the manifest file (if set)
// and of etcd (if fromEtcd), sorted, without repeats.
func (a *app) utilNames(file string, fromEtcd bool) ([]string, error) {
	seen := map[string]bool{}
	if file != "" {
		m, err := manifest.Load(file)
		if err != nil {
			return nil, failed(err)
		}
		for _, u := range m.Utils {
			seen[u.Name] = true
		}
	}
	if fromEtcd {
		s, err := a.open()
		if err != nil {
			return nil, err
		}
		defer s.Close()
		utils, _, _, err := s.Utils(a.ctx)
		if err != nil {
			return nil, err
		}
		for n := range utils {
			seen[n] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
