// Package diag holds the errors hookctl reports about files: each names the
// file, the line and, where known, the hook at fault, so a person or a CI log
// can go straight to it.
package diag

import (
	"fmt"
	"strings"
)

// Error is a problem found at one place in a file.
type Error struct {
	// File is the path as the user gave it (or as derived from it).
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Hook names the hook concerned, "svc/Method pre name"; empty when none.
	Hook string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Hook != "" {
		fmt.Fprintf(&b, "hook %s: ", e.Hook)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// List is several problems, reported together.
type List []*Error

// Add appends a problem.
func (l *List) Add(file string, line int, hook string, err error) {
	*l = append(*l, &Error{File: file, Line: line, Hook: hook, Err: err})
}

// Addf appends a problem with a formatted message.
func (l *List) Addf(file string, line int, hook string, format string, a ...any) {
	l.Add(file, line, hook, fmt.Errorf(format, a...))
}

// Err returns the list as an error, or nil when it is empty.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (l List) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
