package engine

import (
	"fmt"

	"github.com/dop251/goja"
	"github.com/dop251/goja/ast"
	"github.com/dop251/goja/parser"
)

// Script is a compiled hook script. It is immutable and safe for concurrent
// use by any number of runs.
type Script struct {
	name    string
	program *goja.Program
	module  bool
}

// Compile parses and compiles src. name appears in stack traces and error
// messages (the hook's key is a good name). A script that assigns
// module.exports (or exports.*) at its top level is a module; any other is a
// body whose completion value is the result.
func Compile(name, src string) (s *Script, err error) {
	defer func() {
		// A script must never take its caller down, even through a fault
		// in the parser or compiler.
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("compile: %s: %v", name, p)
		}
	}()
	file, err := parser.ParseFile(nil, name, src, 0)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	program, err := goja.CompileAST(file, false)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return &Script{name: name, program: program, module: isModule(file)}, nil
}

// Name returns the name the script was compiled with.
func (s *Script) Name() string { return s.name }

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
