package engine

import (
	"fmt"
	"strings"
)

// Limits on what reaches goja's parser. The parser and the compiler recurse
// once per level of nesting, and a stack overflow is a fatal error that no
// recover catches, so a script is measured before it is parsed.
const (
	// MaxScriptSize bounds a script's source, in bytes.
	MaxScriptSize = 1 << 20
	// MaxNesting bounds the nesting of brackets: ( [ { and a template's ${.
	MaxNesting = 1000
	// MaxExprDepth bounds how deep one expression or statement may grow
	// without brackets, counted in tokens: a chain such as 1+1+1+...,
	// a.b.c..., x=x=..., !!!..., x=>x=>... or if(a) if(a) ... builds a
	// syntax tree as deep as it is long, which the parser and the compiler
	// walk recursively (and some of them in quadratic time). The tokens of
	// every enclosing unfinished expression count, brackets included.
	MaxExprDepth = 4000
	// MaxBundlerExprDepth is MaxExprDepth for a source that esbuild
	// parses first (TypeScript, a JavaScript module, a util): esbuild's
	// parser recurses per level too, but with room for far longer chains,
	// and TypeScript's types, which it erases, may be long (a union of
	// thousands of literals). What it makes is then held to MaxExprDepth.
	MaxBundlerExprDepth = 50000
)

// checkSource refuses a source that is too large or nested too deeply for
// goja's parser and compiler to handle safely. It is a lexical scan: it
// knows strings, template literals, comments and regular expression
// literals well enough to skip them; where a slash could start either a
// regular expression or a division, it counts the characters up to the next
// slash as if they were code (every opening bracket as one more level, every
// other character as a token), so that nothing it skips can hide nesting.
//
// It also reports what the source may use that gives a script a way to
// compile code at run time: see sourceUses.
func checkSource(src string) (sourceUses, error) {
	if len(src) > MaxScriptSize {
		return sourceUses{}, fmt.Errorf("source is %s, more than the limit of %s", byteSize(int64(len(src))), byteSize(MaxScriptSize))
	}
	return scanSource(src, MaxExprDepth)
}

// checkBundlerSource is checkSource for a source esbuild parses first,
// with MaxBundlerExprDepth.
func checkBundlerSource(src string) error {
	_, err := scanSource(src, MaxBundlerExprDepth)
	return err
}

func scanSource(src string, maxExpr int) (sourceUses, error) {
	s := scanner{src: src, line: 1, lineStart: 0, maxExpr: maxExpr}
	err := s.scan()
	return s.uses, err
}

// sourceUses says which objects that compile code at run time a source may
// reach without the global object: the RegExp constructor through a
// regular expression literal, AsyncFunction through an async function,
// GeneratorFunction through a generator; and whether it may call eval
// directly (it names eval, or spells a word with an escape). Each errs on
// the side of yes.
type sourceUses struct {
	regexp, async, generator, eval, with bool
}

// frame is an open bracket.
type frame struct {
	open byte // '(', '[', '{' or '$' for a template's ${
	// seg is the enclosing frame's token count when this one opened.
	seg int
	// header is set on a ( that follows if, while, for or with: a slash
	// after its ) starts a regular expression.
	header bool
	// expr is set on a { that surely opens an object literal: a slash
	// after its } is a division.
	expr bool
}

type scanner struct {
	// maxExpr is the MaxExprDepth the scan holds the source to.
	maxExpr   int
	src       string
	pos       int
	line      int
	lineStart int
	stack     []frame
	// seg counts the tokens of the current frame's unfinished expression
	// or statement; depth is the sum of the enclosing frames' counts and
	// levels, so depth+seg bounds how deep the syntax tree can be here.
	seg   int
	depth int
	// slash says what a slash after the last token is.
	slash slashKind
	// prevWord is the last token when it was a word; forAwait is set
	// after for await.
	prevWord string
	forAwait bool
	// operand is set when the last token ends an operand, so that a line
	// break before a token that cannot continue it ends the statement.
	operand bool
	// header is set when the last token was the ) of a header, after
	// which a statement (and its nesting) goes on.
	header bool
	// newline is set when a line break came after the last token.
	newline bool
	// dot is set when the last token was a dot: a word after it is a
	// property name.
	dot  bool
	uses sourceUses
}

// slashKind is what a slash after a token is, as goja's parser sees it.
type slashKind int

const (
	slashRegexp   slashKind = iota // after an operator, a keyword, an opening bracket...
	slashDivision                  // after an operand: identifier, literal, ) ] or an object literal's }
	slashUnknown                   // after a } that may end a block, or a word that may be a keyword
)

func (s *scanner) errorf(format string, a ...any) error {
	return fmt.Errorf(format+" at line %d col %d", append(a, s.line, s.pos-s.lineStart+1)...)
}

func (s *scanner) push(open byte, header, expr bool) error {
	if len(s.stack) >= MaxNesting {
		return s.errorf("nesting deeper than %d levels", MaxNesting)
	}
	s.stack = append(s.stack, frame{open: open, seg: s.seg, header: header, expr: expr})
	s.depth += s.seg + 1
	s.seg = 0
	s.slash, s.operand, s.header, s.prevWord = slashRegexp, false, false, ""
	return s.checkDepth()
}

func (s *scanner) checkDepth() error {
	if s.depth+s.seg > s.maxExpr {
		return s.errorf("expression deeper than %d tokens", s.maxExpr)
	}
	return nil
}

// pop closes the innermost frame when it matches; a closer that matches
// nothing is left to the parser to report.
func (s *scanner) pop(open byte) (frame, bool) {
	n := len(s.stack)
	if n == 0 || s.stack[n-1].open != open {
		return frame{}, false
	}
	f := s.stack[n-1]
	s.stack = s.stack[:n-1]
	s.seg = f.seg
	s.depth -= f.seg + 1
	return f, true
}

// token counts one token of the current expression. startsNew says that
// the token cannot continue an expression after a line break (an
// identifier, a literal, a keyword), so that after an operand and a line
// break it starts a new statement, as automatic semicolon insertion has it.
func (s *scanner) token(startsNew bool) error {
	if s.newline && startsNew && s.operand && !s.header {
		s.seg = 0
	}
	s.newline, s.operand, s.header, s.prevWord, s.forAwait, s.dot = false, false, false, "", false, false
	s.seg++
	return s.checkDepth()
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c == '\\' || c >= 0x80 || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// wordKinds says what a slash after each word is: a regular expression
// after a keyword that expects an operand, a division after one that is an
// operand, and unknown after a word that may be either a keyword or an
// identifier. Any other word is an identifier.
var wordKinds = map[string]slashKind{
	"this": slashDivision, "super": slashDivision, "null": slashDivision, "true": slashDivision, "false": slashDivision,

	"yield": slashUnknown, "await": slashUnknown, "of": slashUnknown, "let": slashUnknown,
	"async": slashUnknown, "static": slashUnknown, "get": slashUnknown, "set": slashUnknown,
}

// keywords are the reserved words: none of them is an operand.
var keywords = map[string]bool{
	"break": true, "case": true, "catch": true, "class": true, "const": true, "continue": true,
	"debugger": true, "default": true, "delete": true, "do": true, "else": true, "enum": true,
	"export": true, "extends": true, "finally": true, "for": true, "function": true, "if": true,
	"import": true, "in": true, "instanceof": true, "new": true, "return": true, "switch": true,
	"throw": true, "try": true, "typeof": true, "var": true, "void": true, "while": true, "with": true,
}

// continuations are the keywords that continue an expression or a
// statement after a line break.
var continuations = map[string]bool{"in": true, "of": true, "instanceof": true, "else": true, "catch": true, "finally": true}

// headerWords are the keywords whose parenthesised header ends in a ) that
// an operand may follow.
var headerWords = map[string]bool{"if": true, "while": true, "for": true, "with": true}

// exprKeywords are the keywords after which a { opens an object literal.
var exprKeywords = map[string]bool{
	"return": true, "typeof": true, "case": true, "in": true, "delete": true, "void": true,
	"throw": true, "instanceof": true, "new": true,
}

func (s *scanner) scan() error {
	src := s.src
	if strings.HasPrefix(src, "#!") {
		s.skipLine()
	}
	for s.pos < len(src) {
		c := src[s.pos]
		var err error
		switch {
		case c == '\n':
			s.pos++
			s.line++
			s.lineStart = s.pos
			s.newline = true
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			s.pos++
		case c == '/' && s.pos+1 < len(src) && src[s.pos+1] == '/':
			s.skipLine()
		case c == '/' && s.pos+1 < len(src) && src[s.pos+1] == '*':
			end := strings.Index(src[s.pos+2:], "*/")
			if end < 0 {
				end = len(src) - s.pos - 2
			}
			s.advance(s.pos + 2 + end + 2)
		case c == '\'' || c == '"':
			err = s.token(true)
			s.skipString(c)
			s.slash, s.operand = slashDivision, true
		case c == '`':
			// A template after a line break is a tagged template: it
			// continues the expression.
			if err = s.token(false); err == nil {
				s.pos++
				err = s.template()
			}
		case c >= '0' && c <= '9' || (c == '.' && s.pos+1 < len(src) && src[s.pos+1] >= '0' && src[s.pos+1] <= '9'):
			err = s.token(true)
			start := s.pos
			s.pos++
			for s.pos < len(src) && (isIdentPart(src[s.pos]) || src[s.pos] == '.' ||
				((src[s.pos] == '+' || src[s.pos] == '-') && (src[s.pos-1]|0x20 == 'e'))) {
				s.pos++
			}
			if err == nil && src[s.pos-1] == 'n' {
				// A BigInt's operators (2n ** 2n ** 40n, 1n << 2n ** 40n)
				// allocate without bound in one native step.
				s.pos = start
				return s.errorf("BigInt literals are not available to hooks: BigInt arithmetic allocates without bound")
			}
			s.slash, s.operand = slashDivision, true
		case isIdentStart(c):
			start := s.pos
			for s.pos < len(src) && isIdentPart(src[s.pos]) {
				if src[s.pos] == '\\' {
					s.pos++
				}
				s.pos++
			}
			s.pos = min(s.pos, len(src))
			w := src[start:s.pos]
			switch {
			case strings.Contains(w, "\\"):
				s.uses.eval = true
			case w == "eval" && !s.dot:
				s.uses.eval = true
			case w == "async":
				s.uses.async = true
			case w == "with" && !s.dot:
				s.uses.with = true
			}
			forAwait := w == "await" && s.prevWord == "for"
			err = s.token(!continuations[w])
			s.forAwait = forAwait
			switch kind, ok := wordKinds[w]; {
			case ok:
				s.slash, s.operand = kind, kind != slashRegexp
			case keywords[w]:
				s.slash = slashRegexp
			default:
				s.slash, s.operand = slashDivision, true
			}
			s.prevWord = w
		case c == '(' || c == '[' || c == '{':
			header := c == '(' && (headerWords[s.prevWord] || s.forAwait)
			expr := c == '{' && s.objectLiteralNext()
			if err = s.token(c == '{'); err == nil {
				s.pos++
				err = s.push(c, header, expr)
			}
		case c == ')' || c == ']' || c == '}':
			if c == '}' && len(s.stack) > 0 && s.stack[len(s.stack)-1].open == '$' {
				// The end of a template substitution: back to the template.
				s.pop('$')
				s.pos++
				err = s.template()
				break
			}
			f, _ := s.pop(map[byte]byte{')': '(', ']': '[', '}': '{'}[c])
			s.pos++
			s.newline, s.operand, s.header, s.prevWord = false, true, f.header, ""
			switch {
			case f.header:
				s.slash = slashRegexp
			case c == '}' && !f.expr:
				s.slash = slashUnknown
			default:
				s.slash = slashDivision
			}
		case c == ';' || c == ',':
			s.pos++
			s.seg = 0
			s.newline, s.operand, s.header, s.prevWord = false, false, false, ""
			s.slash = slashRegexp
		case c == '/':
			switch s.slash {
			case slashDivision:
				err = s.token(false)
				s.pos++
				s.slash = slashRegexp
			case slashRegexp:
				s.uses.regexp = true
				if err = s.token(true); err == nil {
					err = s.regexp()
				}
				s.slash, s.operand = slashDivision, true
			default:
				s.uses.regexp = true
				err = s.unknownSlash()
			}
		default:
			// A punctuator: one token per character over-counts, which
			// is on the safe side.
			postfix := (c == '+' || c == '-') && s.pos+1 < len(src) && src[s.pos+1] == c && s.operand && !s.newline
			if c == '*' && src[max(s.pos-1, 0)] != '*' &&
				(!s.operand || s.prevWord == "static" || s.prevWord == "async") {
				// Not a multiplication: function*, a generator method, yield*.
				s.uses.generator = true
			}
			if err = s.token(false); err != nil {
				break
			}
			s.dot = c == '.' && src[max(s.pos-1, 0)] != '.' && (s.pos+1 >= len(src) || src[s.pos+1] != '.')
			if s.dot {
				s.pos++
				s.slash = slashRegexp
				break
			}
			if postfix {
				// A postfix ++ or -- ends an operand.
				s.pos += 2
				s.slash, s.operand = slashDivision, true
				break
			}
			s.pos++
			s.slash = slashRegexp
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// objectLiteralNext reports whether a { here surely opens an object literal:
// it follows an operator, an opening ( or [, or a keyword that expects an
// operand.
func (s *scanner) objectLiteralNext() bool {
	if s.prevWord != "" {
		return exprKeywords[s.prevWord]
	}
	if s.operand || s.header {
		return false
	}
	// After an opening bracket, a comma or a semicolon, token and push
	// leave slash at slashRegexp too: only ( and [ are sure.
	for i := s.pos - 1; i >= 0; i-- {
		switch c := s.src[i]; c {
		case ' ', '\t', '\r', '\n', '\v', '\f':
			continue
		case ';', '{', '}', ')', ':', ',':
			return false
		case '>':
			// After =>, a { opens an arrow function's body.
			return i == 0 || s.src[i-1] != '=' && s.slash == slashRegexp
		default:
			return s.slash == slashRegexp
		}
	}
	return false
}

// unknownSlash handles a slash that goja's parser may read either as a
// division or as the start of a regular expression (after a } that may
// close a block, or after a word such as of or yield). The two readings
// can differ only on the rest of the line, and only in tokens as long as
// that holds no quote, bracket or comment: it is refused otherwise, and
// counted as that many tokens if not.
func (s *scanner) unknownSlash() error {
	end := strings.IndexByte(s.src[s.pos:], '\n')
	if end < 0 {
		end = len(s.src) - s.pos
	}
	rest := s.src[s.pos+1 : s.pos+end]
	if strings.ContainsAny(rest, "'\"`()[]{}") || strings.Contains(rest, "/*") || strings.Contains(rest, "//") {
		return s.errorf("cannot tell whether / starts a regular expression or divides; add parentheses or a semicolon")
	}
	s.seg += len(rest) + 1
	s.pos += end
	s.newline, s.header, s.prevWord = false, false, ""
	s.operand, s.slash = true, slashUnknown
	return s.checkDepth()
}

// regexp skips a regular expression literal. Every opening bracket in it
// counts as a level of nesting, and every character as a token: goja
// compiles it with parsers of its own.
func (s *scanner) regexp() error {
	src := s.src
	s.pos++
	inClass := false
	opens := 0
	for s.pos < len(src) {
		c := src[s.pos]
		if c == '\n' || c == '\r' {
			break // unterminated: the parser will say so
		}
		s.pos++
		s.seg++
		switch {
		case c == '\\':
			if s.pos < len(src) && src[s.pos] != '\n' {
				s.pos++
			}
		case c == '[':
			opens++
			inClass = true
		case c == ']':
			inClass = false
		case c == '/' && !inClass:
			for s.pos < len(src) && isIdentPart(src[s.pos]) {
				s.pos++
			}
			s.pos = min(s.pos, len(src))
			if len(s.stack)+opens > MaxNesting {
				return s.errorf("nesting deeper than %d levels", MaxNesting)
			}
			return s.checkDepth()
		case c == '(' || c == '{':
			opens++
		}
	}
	if len(s.stack)+opens > MaxNesting {
		return s.errorf("nesting deeper than %d levels", MaxNesting)
	}
	return s.checkDepth()
}

// skipString skips a string literal quoted with q. A line break ends it
// (JavaScript refuses it there, unless escaped).
func (s *scanner) skipString(q byte) {
	src := s.src
	s.pos++
	for s.pos < len(src) {
		c := src[s.pos]
		switch c {
		case '\\':
			s.pos++
			if s.pos < len(src) && src[s.pos] == '\n' {
				s.line++
				s.lineStart = s.pos + 1
			}
		case q:
			s.pos++
			return
		case '\n':
			return
		}
		s.pos++
	}
}

// template skips the text of a template literal, from just after its
// opening ` or the } of a substitution, up to its closing ` or the next ${,
// which it opens.
func (s *scanner) template() error {
	src := s.src
	for s.pos < len(src) {
		c := src[s.pos]
		switch {
		case c == '\\':
			s.pos++
			if s.pos < len(src) && src[s.pos] == '\n' {
				s.line++
				s.lineStart = s.pos + 1
			}
		case c == '\n':
			s.line++
			s.lineStart = s.pos + 1
		case c == '`':
			s.pos++
			s.newline, s.header, s.prevWord = false, false, ""
			s.slash, s.operand = slashDivision, true
			return nil
		case c == '$' && s.pos+1 < len(src) && src[s.pos+1] == '{':
			s.pos += 2
			return s.push('$', false, false)
		}
		s.pos++
	}
	return nil
}

func (s *scanner) skipLine() {
	for s.pos < len(s.src) && s.src[s.pos] != '\n' {
		s.pos++
	}
}

// advance moves to end, counting the line breaks passed.
func (s *scanner) advance(end int) {
	end = min(end, len(s.src))
	for i := s.pos; i < end; i++ {
		if s.src[i] == '\n' {
			s.line++
			s.lineStart = i + 1
			s.newline = true
		}
	}
	s.pos = end
}

// byteSize renders n bytes for messages: 64 MiB, 1.5 GiB, 32 TiB, 300 B.
func byteSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := 0
	for f >= 1024-0.05 && i < len(units)-1 { // what would round to 1024
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := fmt.Sprintf("%.1f", f)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[i]
}
