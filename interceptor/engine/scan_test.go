package engine_test

import (
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// TestCompileRefusesSourcesTooDeepForTheParser feeds Compile the documents
// that crash goja's parser or compiler (a stack overflow is fatal) or keep
// it busy for minutes: each is refused, quickly, with a message that says
// where.
func TestCompileRefusesSourcesTooDeepForTheParser(t *testing.T) {
	const n = 100000
	nest := func(open, mid, close string, k int) string {
		return strings.Repeat(open, k) + mid + strings.Repeat(close, k)
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"300k nested parentheses", nest("(", "1", ")", 300000), "nesting deeper than 1000 levels at line 1 col 1002"},
		{"150k nested object literals", "x = " + nest("{a:", "1", "}", 150000), "expression deeper than 4000 tokens at line 1 col 3004"},
		{"nested arrays in a module", "module.exports = () => " + nest("[", "", "]", n), "nesting deeper than 1000 levels at line 1 col 1025"},
		{"nested template substitutions", nest("`${", "1", "}`", n), "nesting deeper than 1000 levels"},
		{"nested groups in a regular expression", "/" + nest("(", "", ")", n) + "/", "nesting deeper than 1000 levels"},
		{"a chain of 300k additions", strings.Repeat("1+", 300000) + "1", "expression deeper than 4000 tokens at line 1 col 4001"},
		{"a chain of additions over lines", strings.Repeat("a\n+", n) + "1", "expression deeper than 4000 tokens at line 2001 col 3"},
		{"a chain of property accesses", "a" + strings.Repeat(".b", n), "expression deeper than 4000 tokens"},
		{"a chain of property accesses over lines", "a" + strings.Repeat("\n.b", n), "expression deeper than 4000 tokens"},
		{"a chain of calls", "f" + strings.Repeat("()", n), "expression deeper than 4000 tokens"},
		{"a chain of indexes over lines", "a" + strings.Repeat("\n[0]", n), "expression deeper than 4000 tokens"},
		{"a chain of assignments", strings.Repeat("x=", n) + "1", "expression deeper than 4000 tokens"},
		{"a chain of negations", strings.Repeat("!", n) + "1", "expression deeper than 4000 tokens"},
		{"a chain of minus signs", strings.Repeat("- ", n) + "1", "expression deeper than 4000 tokens"},
		{"nested minus signs in parentheses", nest("-(", "1", ")", n), "nesting deeper than 1000 levels"},
		{"a chain of conditionals", strings.Repeat("a?b:", n) + "c", "expression deeper than 4000 tokens"},
		{"a chain of arrow functions", strings.Repeat("x=>\n", n) + "1", "expression deeper than 4000 tokens"},
		{"a chain of news", strings.Repeat("new ", n) + "X", "expression deeper than 4000 tokens"},
		{"nested ifs over lines", strings.Repeat("if(a)\n", n) + ";", "expression deeper than 4000 tokens"},
		{"nested else ifs", strings.Repeat("if(a){}else\n", 60000) + ";", "expression deeper than 4000 tokens"},
		{"nested labels", strings.Repeat("l:\n", n) + ";", "expression deeper than 4000 tokens"},
		{"nesting hidden after a slash that may divide",
			"function f(){} / \"/\" + " + nest("(", "1", ")", n), "cannot tell whether / starts a regular expression or divides; add parentheses or a semicolon at line 1 col 16"},
		{"a direct eval beside a with statement", "with ({}) { eval('1') }", "a script that calls eval directly may not use with"},
		{"a source over 1 MiB", "//" + strings.Repeat("x", 1<<20), "source is 1 MiB, more than the limit of 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.Compile("hooks/deep", tc.src)
			if err == nil {
				t.Fatal("Compile accepted it")
			}
			if want := "compile: hooks/deep: " + tc.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q; want it to start with %q", err, want)
			}
		})
	}
}

// TestCompileAcceptsOrdinaryScripts checks that the depth scan is not
// fooled by strings, comments, templates and regular expressions, and
// that ordinary code, however long, compiles.
func TestCompileAcceptsOrdinaryScripts(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"brackets in strings", `"((((((" + '[[[[' + "\"(("; 1`},
		{"brackets in comments", "// ((((\n/* [[[[ {{{{ */ 1"},
		{"brackets in a template", "`((((${1 + 2}[[[[${`{{{{`}`"},
		{"brackets in a regular expression", `/[(\[{]+/.test("(")`},
		{"a regular expression after a header", `if (true) /x\(/.test("x(")`},
		{"a division after a call", `Math.max(4, 2) / 2 / 1`},
		{"a division after an object literal", `({a: 1}).a / 2`},
		{"a regular expression after return", "module.exports = function () { return /[}]/.test('}') }"},
		{"a long statement list without semicolons", strings.Repeat("x = a + b * c - d\n", 20000) + "1"},
		{"a long statement list", strings.Repeat("x = a.b.c(d, e) + f;", 20000)},
		{"a large data literal", "[" + strings.Repeat("{a: [1, 2, {b: 'c'}]},", 20000) + "]"},
		{"500 else ifs", "var a = 1;" + strings.Repeat("if (a) {} else ", 500) + "{}"},
		{"nesting 900 deep", strings.Repeat("[", 900) + strings.Repeat("]", 900)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := engine.Compile("test", tc.src); err != nil {
				t.Fatal(err)
			}
		})
	}
}
