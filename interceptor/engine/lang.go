package engine

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/dop251/goja/parser"
	"github.com/evanw/esbuild/pkg/api"
)

// Lang is the language a hook's script is written in.
type Lang string

// The languages CompileLang accepts; empty means JS.
const (
	// JS is JavaScript as goja runs it, plus ES module syntax (import,
	// export), which is turned into CommonJS first.
	JS Lang = "js"
	// TS is TypeScript, transpiled to JavaScript when the script compiles.
	TS Lang = "ts"
)

// TypesModule is the module a script may import for its type declarations
// (hookctl types writes them). It is erased at compile time, or, when a
// script uses it as a value, is an empty object.
const TypesModule = "types"

// TranspileError is a script that esbuild refused: a TypeScript or module
// syntax error, or an import of a module that does not exist. Line and
// Column (both from 1) point into the script as written.
type TranspileError struct {
	Name         string
	Line, Column int
	Msg          string
	// More counts the errors after the first.
	More int
}

func (e *TranspileError) Error() string {
	s := fmt.Sprintf("%s:%d:%d: %s", e.Name, e.Line, e.Column, e.Msg)
	if e.More > 0 {
		s += fmt.Sprintf(" (and %d more errors)", e.More)
	}
	return s
}

// CompileLang compiles src written in lang. A JavaScript script without
// import or export statements is compiled by Compile itself, unchanged.
// TypeScript, and JavaScript that uses ES module syntax, is first turned into
// CommonJS by esbuild (target ES2017, so syntax goja lacks is lowered): type
// annotations are erased, imports of the types module vanish, an import of
// any other module is an error naming it, and a module whose export is
// `export default f` or `export function main` exports f or main as if it
// had assigned module.exports. The Script's Source is then the JavaScript,
// with an inline source map, so stack traces point into src.
func CompileLang(name, src string, lang Lang) (*Script, error) {
	switch lang {
	case "", JS:
		s, err := Compile(name, src)
		if err == nil || !usesModuleSyntax(src) {
			return s, err
		}
	case TS:
	default:
		return nil, fmt.Errorf("compile: %s: language %q is not %q or %q", name, lang, JS, TS)
	}
	js, _, err := transpile(name, src, lang, nil)
	if err != nil {
		return nil, err
	}
	return Compile(name, js)
}

// moduleSyntax matches a statement that starts with import or export; a
// script that has none cannot need esbuild to compile.
var moduleSyntax = regexp.MustCompile(`(?m)^[ \t]*(import|export)[\s{*]`)

func usesModuleSyntax(src string) bool { return moduleSyntax.MatchString(src) }

// Transpile turns src, written in lang, into the CommonJS JavaScript that
// CompileLang compiles: see there.
func Transpile(name, src string, lang Lang) (string, error) {
	js, _, err := transpile(name, src, lang, nil)
	return js, err
}

// transpile is Transpile with the utils of mods, and returns the versions
// of the utils it bundled.
func transpile(name, src string, lang Lang, mods Modules) (string, []string, error) {
	// esbuild's parser recurses once per level too: the source is
	// measured as Compile measures JavaScript before esbuild sees it, and
	// each util before it is bundled (bundle.load).
	if err := checkBundlerSource(src); err != nil {
		return "", nil, fmt.Errorf("compile: %s: %w", name, err)
	}
	loader := api.LoaderJS
	if lang == TS {
		loader = api.LoaderTS
	}
	b := newBundle(mods)
	r := api.Build(api.BuildOptions{
		// goja resolves the source map's sources against name's
		// directory: the base name makes them name again.
		Stdin:  &api.StdinOptions{Contents: src, Sourcefile: path.Base(name), Loader: loader},
		Bundle: true,
		// Bundling turns on tree shaking, which drops top-level code
		// without side effects: a body script's `var retval = {status:
		// 403}`, or its last expression, the result.
		TreeShaking:   api.TreeShakingFalse,
		Format:        api.FormatCommonJS,
		Target:        api.ES2017,
		Platform:      api.PlatformNeutral,
		Sourcemap:     api.SourceMapInline,
		LegalComments: api.LegalCommentsNone,
		LogLevel:      api.LogLevelSilent,
		Plugins:       []api.Plugin{b.plugin()},
	})
	if len(r.Errors) > 0 {
		return "", nil, transpileError(name, r.Errors)
	}
	if c := b.cycle(); c != "" {
		return "", nil, fmt.Errorf("compile: %s: utils import each other in a cycle: %s", name, c)
	}
	if len(r.OutputFiles) != 1 {
		return "", nil, fmt.Errorf("compile: %s: esbuild wrote %d files, want 1", name, len(r.OutputFiles))
	}
	js, err := exportMain(name, string(r.OutputFiles[0].Contents))
	return js, b.utils(), err
}

func transpileError(name string, msgs []api.Message) error {
	m := msgs[0]
	e := &TranspileError{Name: name, Msg: m.Text, More: len(msgs) - 1}
	if m.Location != nil {
		e.Line, e.Column = m.Location.Line, m.Location.Column+1
		if f, ok := strings.CutPrefix(m.Location.File, moduleNamespace+":"); ok {
			// The error is in a util the script imports.
			e.Msg = fmt.Sprintf("in %s at %d:%d: %s", f, e.Line, e.Column, e.Msg)
		}
	}
	return e
}

// exportMain makes a module's exports what the engine calls, the
// function it exports as default, or else as main. An ES module's exports
// become a plain assignment of that function to module.exports at the end
// of the script, in place of esbuild's getters, which would cost every run
// tens of microseconds; a CommonJS module that sets exports.default or
// exports.main gets code that picks the function out of exports. The code
// goes before the source map comment, which must stay last, and keeps the
// line count of what it replaces, so the map stays right.
func exportMain(name, js string) (string, error) {
	body, sourceMap := js, ""
	if i := strings.LastIndex(js, "\n//# sourceMappingURL="); i >= 0 {
		body, sourceMap = js[:i+1], js[i+1:]
	}
	tail := ""
	if m := esmExports.FindStringSubmatchIndex(body); m != nil {
		names := map[string]string{}
		for _, e := range esmExport.FindAllStringSubmatch(body[m[2]:m[3]], -1) {
			names[strings.Trim(e[1], `"`)] = e[2]
		}
		local, ok := names["default"]
		if !ok {
			local, ok = names["main"]
		}
		if ok {
			block := body[m[0]:m[1]]
			body = body[:m[0]] + strings.Repeat("\n", strings.Count(block, "\n")) + body[m[1]:]
			tail = "module.exports = " + local + ";\n"
		}
	} else if exportsMain.MatchString(body) {
		file, err := parser.ParseFile(nil, name, body, 0, parser.WithDisableSourceMaps)
		if err != nil {
			return "", fmt.Errorf("compile: %w", err)
		}
		if isModule(file) {
			tail = exportMainCode
		}
	}
	return body + tail + sourceMap, nil
}

var (
	// esmExports matches the exports esbuild's CommonJS output gives an ES
	// module (the entry's exports object is named after the script).
	esmExports = regexp.MustCompile(`(?m)^__export\([\w$]+, \{\n((?:  .*\n)*)\}\);\nmodule\.exports = __toCommonJS\([\w$]+\);\n`)
	// esmExport matches one export in esmExports.
	esmExport = regexp.MustCompile(`(?m)^  ([\w$]+|"[^"]*"): \(\) => ([\w$.]+),?$`)
	// exportsMain matches a CommonJS module's export of default or main.
	exportsMain = regexp.MustCompile(`(^|[^\w$])exports\.(default|main)($|[^\w$])`)
)

// exportMainCode picks the function a CommonJS module exports as default or
// main; it does not touch a module.exports that is a function.
const exportMainCode = `;(function (m) {
  var e = m.exports;
  if (e !== null && typeof e === "object") {
    if (typeof e.default === "function") m.exports = e.default;
    else if (typeof e.main === "function") m.exports = e.main;
  }
})(module);
`

// moduleNamespace is esbuild's namespace for the modules a bundle
// provides.
const moduleNamespace = "apihooks"

// errNoModule is the error of an import of a module that does not exist.
var errNoModule = errors.New(`only "` + TypesModule + `" and utils (` + UtilsPrefix + `Name) are available`)
