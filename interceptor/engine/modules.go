package engine

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/evanw/esbuild/pkg/api"
)

// UtilsPrefix starts the path of a module of shared code a script imports:
// "utils/Addition" (the util's active version) or "utils/Addition@3" (a
// pinned version).
const UtilsPrefix = "utils/"

// Modules provides the modules of shared code (utils) that scripts import.
type Modules interface {
	// Module returns the source and language of the util imported as
	// path, "utils/Name" or "utils/Name@Version", and the path of the
	// version it is, "utils/Name@Version". The error says why there is
	// none, naming the util.
	Module(path string) (src string, lang Lang, version string, err error)
}

// CompileModules is CompileLang for a script that may import utils from
// mods (with import or require): they are bundled into the script when it
// compiles, so a run costs what it would if their code were in the script.
// A util may import utils; an import cycle is an error naming it. With
// nil mods, an import of a util is an error.
func CompileModules(name, src string, lang Lang, mods Modules) (*Script, error) {
	if lang == "" {
		lang = JS
	}
	if lang == JS && !usesModuleSyntax(src) {
		if !usesRequire(src) {
			return Compile(name, src)
		}
		return compileRequires(name, src, mods)
	} else if lang != JS && lang != TS {
		return CompileLang(name, src, lang) // the error naming the language
	}
	js, utils, err := transpile(name, src, lang, mods)
	if err != nil {
		return nil, err
	}
	s, err := Compile(name, js)
	if err != nil {
		return nil, err
	}
	s.utils = utils
	return s, nil
}

// Utils returns the utils the script bundled, as "utils/Name@Version",
// sorted.
func (s *Script) Utils() []string { return s.utils }

// requireCall matches a call of require with a string literal, the path.
var requireCall = regexp.MustCompile(`(?:^|[^\w$.])require\s*\(\s*(?:'([^'\n]*)'|"([^"\n]*)")\s*\)`)

func usesRequire(src string) bool { return requireCall.MatchString(src) }

// compileRequires compiles a JavaScript script that is not an ES module
// but calls require: the script itself is not bundled (esbuild would drop
// a body script's completion value), but gets a function require,
// declared after its last line, so its lines and columns stay, over a
// bundle of the modules it requires.
func compileRequires(name, src string, mods Modules) (*Script, error) {
	seen := map[string]bool{}
	var entry strings.Builder
	entry.WriteString("module.exports = {\n")
	for _, m := range requireCall.FindAllStringSubmatch(src, -1) {
		p := m[1] + m[2]
		if seen[p] {
			continue
		}
		seen[p] = true
		q := strconv.Quote(p)
		fmt.Fprintf(&entry, "  %s: require(%s),\n", q, q)
	}
	entry.WriteString("};\n")
	b := newBundle(mods)
	r := api.Build(api.BuildOptions{
		Stdin:         &api.StdinOptions{Contents: entry.String(), Sourcefile: name, Loader: api.LoaderJS},
		Bundle:        true,
		Format:        api.FormatCommonJS,
		Target:        api.ES2017,
		Platform:      api.PlatformNeutral,
		LegalComments: api.LegalCommentsNone,
		LogLevel:      api.LogLevelSilent,
		Plugins:       []api.Plugin{b.plugin()},
	})
	if len(r.Errors) > 0 {
		e := transpileError(name, r.Errors)
		if te, ok := e.(*TranspileError); ok && !strings.HasPrefix(te.Msg, "in ") {
			return nil, fmt.Errorf("compile: %s: %s", name, te.Msg) // the entry's position is not the script's
		}
		return nil, e
	}
	if c := b.cycle(); c != "" {
		return nil, fmt.Errorf("compile: %s: utils import each other in a cycle: %s", name, c)
	}
	if len(r.OutputFiles) != 1 {
		return nil, fmt.Errorf("compile: %s: esbuild wrote %d files, want 1", name, len(r.OutputFiles))
	}
	s, err := Compile(name, src+"\n;"+fmt.Sprintf(requireTemplate, r.OutputFiles[0].Contents))
	if err != nil {
		return nil, err
	}
	s.utils = b.utils()
	return s, nil
}

// requireTemplate declares the require of compileRequires around the
// bundle of the modules required: the bundle runs on the first call.
const requireTemplate = `function require(path) {
  var m = require[" modules"];
  if (m === undefined) {
    m = require[" modules"] = (function () {
      var module = { exports: {} }, exports = module.exports;
%s
      return module.exports;
    })();
  }
  if (!Object.prototype.hasOwnProperty.call(m, path)) throw new Error("cannot find module " + JSON.stringify(path));
  return m[path];
}
`

// errNoUtils is the error of an import of a util where there are none.
var errNoUtils = errors.New("no utils are available here")

// bundle resolves, for one build, the modules a script imports: the types
// module and the utils of mods, each version once, and records the
// imports between utils to find cycles.
type bundle struct {
	mods Modules
	mu   sync.Mutex
	// edges maps a util's version to the versions it imports.
	edges map[string][]string
	used  map[string]bool
}

func newBundle(mods Modules) *bundle {
	return &bundle{mods: mods, edges: map[string][]string{}, used: map[string]bool{}}
}

// resolve returns the namespace path of the module imported as path.
func (b *bundle) resolve(path, importer string, fromModule bool) (string, error) {
	if path == TypesModule {
		return path, nil
	}
	if !strings.HasPrefix(path, UtilsPrefix) {
		return "", fmt.Errorf("cannot find module %q: %w", path, errNoModule)
	}
	if b.mods == nil {
		return "", fmt.Errorf("cannot find module %q: %w", path, errNoUtils)
	}
	_, _, version, err := b.mods.Module(path)
	if err != nil {
		return "", fmt.Errorf("cannot find module %q: %w", path, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[version] = true
	if fromModule && !slices.Contains(b.edges[importer], version) {
		b.edges[importer] = append(b.edges[importer], version)
	}
	return version, nil
}

// load returns the source of a resolved module.
func (b *bundle) load(path string) (string, api.Loader, error) {
	if path == TypesModule {
		return "module.exports = {};", api.LoaderJS, nil
	}
	src, lang, _, err := b.mods.Module(path)
	if err != nil {
		return "", api.LoaderNone, err
	}
	if lang == TS {
		return src, api.LoaderTS, nil
	}
	return src, api.LoaderJS, nil
}

// cycle returns an import cycle between utils, "utils/A@1 → utils/B@2 →
// utils/A@1", or "" when there is none.
func (b *bundle) cycle() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var stack []string
	var found string
	var visit func(n string) bool
	visit = func(n string) bool {
		state[n] = visiting
		stack = append(stack, n)
		for _, m := range b.edges[n] {
			switch state[m] {
			case visiting:
				i := slices.Index(stack, m)
				found = strings.Join(append(slices.Clone(stack[i:]), m), " → ")
				return true
			case 0:
				if visit(m) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return false
	}
	keys := make([]string, 0, len(b.edges))
	for k := range b.edges {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if state[k] == 0 && visit(k) {
			return found
		}
	}
	return ""
}

// utils lists the versions the build used, sorted.
func (b *bundle) utils() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for v := range b.used {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// plugin is the esbuild plugin that resolves imports through b.
func (b *bundle) plugin() api.Plugin {
	return api.Plugin{Name: "apihooks-modules", Setup: func(pb api.PluginBuild) {
		pb.OnResolve(api.OnResolveOptions{Filter: ".*"}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			if a.Kind == api.ResolveEntryPoint {
				return api.OnResolveResult{}, nil
			}
			p, err := b.resolve(a.Path, a.Importer, a.Namespace == moduleNamespace)
			if err != nil {
				return api.OnResolveResult{}, err
			}
			r := api.OnResolveResult{Path: p, Namespace: moduleNamespace}
			if p == TypesModule {
				r.SideEffects = api.SideEffectsFalse
			}
			return r, nil
		})
		pb.OnLoad(api.OnLoadOptions{Filter: ".*", Namespace: moduleNamespace}, func(a api.OnLoadArgs) (api.OnLoadResult, error) {
			src, loader, err := b.load(a.Path)
			if err != nil {
				return api.OnLoadResult{}, err
			}
			return api.OnLoadResult{Contents: &src, Loader: loader}, nil
		})
	}}
}
