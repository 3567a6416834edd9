package engine

import (
	"errors"
	"fmt"
	"github.com/dop251/goja/parser"
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
// but calls require. The script itself is not bundled (esbuild would drop
// a body script's completion value): it gets a function require, declared
// after its last line so that its lines and columns stay, over a table of
// the modules it requires, directly or through other utils, each compiled
// into the script as a function of module and exports (a util written as
// an ES module or in TypeScript is first turned into CommonJS), and run on
// its first require in a run.
func compileRequires(name, src string, mods Modules) (*Script, error) {
	b := newBundle(mods)
	// index maps a module's version to its place in the table; alias maps
	// each path required to the version.
	index := map[string]int{}
	alias := map[string]string{}
	var bodies []string
	var visit func(code, importer string) error
	visit = func(code, importer string) error {
		for _, m := range requireCall.FindAllStringSubmatch(code, -1) {
			p := m[1] + m[2]
			version, err := b.resolve(p, importer, importer != "")
			if err != nil {
				return err
			}
			alias[p] = version
			if _, done := index[version]; done {
				continue
			}
			index[version] = len(bodies)
			bodies = append(bodies, "")
			body, err := b.commonJS(version)
			if err != nil {
				return err
			}
			if err := checkModule(version, body); err != nil {
				return err
			}
			bodies[index[version]] = body
			if err := visit(body, version); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(src, ""); err != nil {
		return nil, fmt.Errorf("compile: %s: %w", name, err)
	}
	if c := b.cycle(); c != "" {
		return nil, fmt.Errorf("compile: %s: utils import each other in a cycle: %s", name, c)
	}
	var t strings.Builder
	t.WriteString("\n;function require(path) {\n  var i;\n  switch (path) {\n")
	paths := make([]string, 0, len(alias))
	for p := range alias {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintf(&t, "  case %s: i = %d; break;\n", strconv.Quote(p), index[alias[p]])
	}
	t.WriteString("  default: throw new Error(\"cannot find module \" + JSON.stringify(path));\n  }\n")
	t.WriteString("  if (" + requiredName + " === undefined) " + requiredName + " = [];\n")
	t.WriteString("  var module = " + requiredName + "[i];\n  if (module !== undefined) return module.exports;\n")
	t.WriteString("  module = " + requiredName + "[i] = { exports: {} };\n  switch (i) {\n")
	for i, body := range bodies {
		fmt.Fprintf(&t, "  case %d: (function (module, exports) {\n%s\n})(module, module.exports); break;\n", i, body)
	}
	t.WriteString("  }\n  return module.exports;\n}\nvar " + requiredName + ";\n")
	s, err := Compile(name, src+t.String())
	if err != nil {
		return nil, err
	}
	s.utils = b.utils()
	return s, nil
}

// checkModule parses a required util's CommonJS body on its own, so that
// a syntax error in it names the util, at its own line and column, not at
// a line of the script it is bundled into. The body is wrapped as it is
// there, on its first line.
func checkModule(version, body string) (err error) {
	defer func() {
		// A fault in the parser must not take the caller down.
		if p := recover(); p != nil {
			err = fmt.Errorf("in %s: %v", version, p)
		}
	}()
	if _, err := checkSource(body); err != nil {
		return fmt.Errorf("in %s: %w", version, err)
	}
	const wrap = "(function (module, exports) {"
	_, err = parser.ParseFile(nil, version, wrap+body+"\n})", 0, parser.WithDisableSourceMaps)
	var list parser.ErrorList
	if errors.As(err, &list) && len(list) > 0 {
		e := list[0]
		if e.Position.Line == 1 {
			e.Position.Column -= len(wrap)
		}
		return fmt.Errorf("in %s at %d:%d: %s", version, e.Position.Line, e.Position.Column, e.Message)
	}
	if err != nil {
		return fmt.Errorf("in %s: %v", version, err)
	}
	return nil
}

// requiredName names the table of the modules a run has required; no
// script is expected to use it.
const requiredName = "__apihooks_required__"

// commonJS returns the source of a resolved module as CommonJS: as it is
// for JavaScript without import or export statements, else turned into
// CommonJS by esbuild.
func (b *bundle) commonJS(path string) (string, error) {
	src, loader, err := b.load(path)
	if err != nil {
		return "", err
	}
	if loader == api.LoaderJS && !usesModuleSyntax(src) {
		return src, nil
	}
	r := api.Transform(src, api.TransformOptions{
		Loader: loader, Format: api.FormatCommonJS, Target: api.ES2017, Platform: api.PlatformNeutral,
		Sourcefile: path, LegalComments: api.LegalCommentsNone, LogLevel: api.LogLevelSilent,
	})
	if len(r.Errors) > 0 {
		m := r.Errors[0]
		if m.Location != nil {
			return "", fmt.Errorf("in %s at %d:%d: %s", path, m.Location.Line, m.Location.Column+1, m.Text)
		}
		return "", fmt.Errorf("in %s: %s", path, m.Text)
	}
	return string(r.Code), nil
}

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
	src, lang, version, err := b.mods.Module(path)
	if err != nil {
		return "", api.LoaderNone, err
	}
	if err := checkBundlerSource(src); err != nil {
		return "", api.LoaderNone, fmt.Errorf("%s: %w", version, err)
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
