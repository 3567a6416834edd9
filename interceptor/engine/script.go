package engine

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"
	"github.com/dop251/goja/token"
)

// Script is a compiled hook script. It is immutable and safe for concurrent
// use by any number of runs.
type Script struct {
	name string
	// source is the text the script was compiled from.
	source  string
	program *goja.Program
	module  bool
	// bareExports is set when a module may use exports itself rather than
	// only module.exports: its runs then build the exports object ahead.
	bareExports bool
	// direct is set when a module's program evaluates to the function it
	// exports, with no module wrapper: see exportedFunction.
	direct bool
	// uses says which code compilers a run must guard before the script
	// starts; directEval, that it calls eval directly and its runs must
	// define the function its calls check their source with.
	uses       sourceUses
	directEval bool
	// style is how a module's function is called: see WithStyle.
	style Style
	// retval is set on a body script that names retval: its runs take
	// the global retval, when set, as the result. console is set on a
	// script that names console or may compile code at run time: only its
	// runs define the global.
	retval, console bool
	// utils are the versions of the utils bundled into the script.
	utils []string
}

// Compile parses and compiles src. name appears in stack traces and error
// messages (the hook's key is a good name). A script that assigns
// module.exports (or exports.*) at its top level is a module; any other is a
// body, which sees the globals ctx, data and bridge. A body's result is the
// global retval when the script set it to a value (not undefined or null),
// as brainCloud's scripts do, whatever its last statement evaluates to;
// else its completion value.
//
// A module is compiled, as CommonJS does, as the body of a function of
// module and exports: its top-level declarations belong to the run, not to
// the global object, and a run sets no global but console. (Positions on its
// first line are shifted by the length of moduleHead in runtime stack
// traces.) The common module that only exports a function, and whose
// function cannot tell the difference, is compiled to that function alone,
// positions unchanged.
//
// Compile refuses, before parsing, a source larger than MaxScriptSize or
// nested deeper than MaxNesting brackets or MaxExprDepth tokens of one
// expression: goja's parser and compiler recurse once per level, and a
// stack overflow ends the process.
func Compile(name, src string) (s *Script, err error) {
	defer func() {
		// A script must never take its caller down, even through a fault
		// in the parser or compiler.
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("compile: %s: %v", name, p)
		}
	}()
	uses, err := checkSource(src)
	if err != nil {
		return nil, fmt.Errorf("compile: %s: %w", name, err)
	}
	file, err := parser.ParseFile(nil, name, src, 0)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	s = &Script{name: name, source: src, module: isModule(file), uses: uses}
	s.retval = !s.module && namesRetval.MatchString(src)
	s.console = uses.eval || namesConsole.MatchString(src)
	if fn := exportedFunction(file); fn != nil {
		s.direct = true
		file.Body[len(file.Body)-1] = &ast.ExpressionStatement{Expression: fn}
	} else if s.module {
		body := src
		if strings.HasPrefix(body, "#!") {
			// goja skips a hashbang line only at the start of a source;
			// in the wrapper it becomes a comment of the same length.
			body = "//" + body[2:]
		}
		if file, err = parser.ParseFile(nil, name, moduleHead+body+moduleTail, 0); err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		s.bareExports = bareExports.MatchString(strings.ReplaceAll(src, "module.exports", ""))
	}
	if uses.eval && guardDirectEval(file) {
		if uses.with {
			return nil, fmt.Errorf("compile: %s: a script that calls eval directly may not use with", name)
		}
		s.directEval = true
	}
	if s.program, err = goja.CompileAST(file, false); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return s, nil
}

// moduleHead and moduleTail wrap a module's source; the newline ends a
// line comment on its last line.
const (
	moduleHead = "(function (module, exports) {"
	moduleTail = "\n})"
)

// bareExports matches a use of exports (once module.exports is taken out).
var bareExports = regexp.MustCompile(`(^|[^\w$])exports($|[^\w$])`)

// Name returns the name the script was compiled with.
func (s *Script) Name() string { return s.name }

// Source returns the source the script was compiled from.
func (s *Script) Source() string { return s.source }

// IsModule reports whether the script exports a function through
// module.exports rather than producing its result as a completion value.
func (s *Script) IsModule() bool { return s.module }

// isModule reports whether a top-level statement assigns module.exports or
// a property of exports.
func isModule(file *ast.Program) bool {
	for _, st := range file.Body {
		es, ok := st.(*ast.ExpressionStatement)
		if !ok {
			continue
		}
		if assignsExports(es.Expression) {
			return true
		}
	}
	return false
}

func assignsExports(e ast.Expression) bool {
	switch x := e.(type) {
	case *ast.SequenceExpression:
		for _, e := range x.Sequence {
			if assignsExports(e) {
				return true
			}
		}
	case *ast.AssignExpression:
		return isExportsTarget(x.Left) || assignsExports(x.Right)
	}
	return false
}

// isExportsTarget matches module.exports, module.exports.x and exports.x.
func isExportsTarget(e ast.Expression) bool {
	d, ok := e.(*ast.DotExpression)
	if !ok {
		return false
	}
	if id, ok := d.Left.(*ast.Identifier); ok {
		return (id.Name == "module" && d.Identifier.Name == "exports") || id.Name == "exports"
	}
	return isExportsTarget(d.Left)
}

// exportedFunction returns the function a module exports when the module
// is nothing but a directive prologue ("use strict") and one assignment of
// a function expression to module.exports, and the function cannot tell
// whether it was defined inside the module wrapper (see seesWrapper). The
// module's program then evaluates to the function itself, which saves
// building the wrapper and the module object on every run. It returns nil
// for any other module.
func exportedFunction(file *ast.Program) ast.Expression {
	n := len(file.Body)
	if n == 0 {
		return nil
	}
	for _, st := range file.Body[:n-1] {
		es, ok := st.(*ast.ExpressionStatement)
		if !ok {
			return nil
		}
		if _, ok := es.Expression.(*ast.StringLiteral); !ok {
			return nil
		}
	}
	es, ok := file.Body[n-1].(*ast.ExpressionStatement)
	if !ok {
		return nil
	}
	a, ok := es.Expression.(*ast.AssignExpression)
	if !ok || a.Operator != token.ASSIGN || !isModuleExports(a.Left) {
		return nil
	}
	switch fn := a.Right.(type) {
	case *ast.FunctionLiteral:
		if seesWrapper(fn.Source, false) {
			return nil
		}
	case *ast.ArrowFunctionLiteral:
		if seesWrapper(fn.Source, true) {
			return nil
		}
	default:
		return nil
	}
	return a.Right
}

// seesWrapper reports whether a function with this source might see the
// module wrapper around it: whether it names module, exports or eval, or,
// for an arrow function, which takes them from the enclosing function,
// arguments, this or new.target. It errs on the side of yes: it matches
// the words in strings and comments too, and any Unicode escape, since an
// identifier may spell any of them that way.
func seesWrapper(src string, arrow bool) bool {
	return strings.Contains(src, `\u`) || wrapperNames.MatchString(src) ||
		(arrow && arrowNames.MatchString(src))
}

func isModuleExports(e ast.Expression) bool {
	d, ok := e.(*ast.DotExpression)
	if !ok {
		return false
	}
	id, ok := d.Left.(*ast.Identifier)
	return ok && id.Name == "module" && d.Identifier.Name == "exports"
}

// wrapperNames and arrowNames match the words seesWrapper looks for.
var (
	wrapperNames = regexp.MustCompile(`(^|[^\w$])(module|exports|eval)($|[^\w$])`)
	arrowNames   = regexp.MustCompile(`(^|[^\w$])(arguments|this|target)($|[^\w$])`)
)

// evalGuardName names the global function that a direct eval's source
// goes through first (see guardDirectEval); no script can spell it as an
// identifier.
const evalGuardName = "%checkEvalSource%"

// guardDirectEval rewrites every direct call of eval in file, eval(src),
// into eval(%checkEvalSource%(src)), so that the source is measured before
// goja's parser sees it, as Compile measures a script. It reports whether
// there was one. (A with statement could put another function under that
// name: Compile refuses with in a script that calls eval directly.)
func guardDirectEval(file *ast.Program) bool {
	found := false
	w := astWalker{seen: map[astNode]bool{}}
	w.walk(reflect.ValueOf(file), func(call *ast.CallExpression) {
		id, ok := call.Callee.(*ast.Identifier)
		if !ok || id.Name != "eval" || len(call.ArgumentList) == 0 {
			return
		}
		found = true
		call.ArgumentList[0] = &ast.CallExpression{
			Callee:           &ast.Identifier{Name: evalGuardName, Idx: id.Idx},
			LeftParenthesis:  call.LeftParenthesis,
			ArgumentList:     []ast.Expression{call.ArgumentList[0]},
			RightParenthesis: call.RightParenthesis,
		}
	})
	return found
}

// astWalker visits goja's syntax tree (whose depth Compile has bounded),
// every node once: a function's declarations are in its body too.
type astWalker struct{ seen map[astNode]bool }

type astNode struct {
	t reflect.Type
	p uintptr
}

// walk calls visit with every call expression under v.
func (w astWalker) walk(v reflect.Value, visit func(*ast.CallExpression)) {
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem(), visit)
		}
	case reflect.Pointer:
		if v.IsNil() || v.Elem().Kind() != reflect.Struct {
			return
		}
		n := astNode{v.Type(), v.Pointer()}
		if w.seen[n] {
			return
		}
		w.seen[n] = true
		if c, ok := v.Interface().(*ast.CallExpression); ok {
			visit(c)
		}
		w.walk(v.Elem(), visit)
	case reflect.Struct:
		if v.Type().PkgPath() != astPkg {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				w.walk(v.Field(i), visit)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			w.walk(v.Index(i), visit)
		}
	}
}

var astPkg = reflect.TypeFor[ast.Program]().PkgPath()
