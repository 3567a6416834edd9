package protojs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FieldError is the error FromValue returns for a value that does not fit
// the message. Path names the offending field with JSON field names (as
// written in the input), list indexes and map or Struct keys, for example
// "eventData.items[2]" or `mString["a b"]`; it is empty when the top-level
// value itself is at fault.
type FieldError struct {
	Path string
	Err  error
}

// Error returns `field "PATH": ERR`, or just ERR when Path is empty.
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return `field "` + e.Path + `": ` + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// segKind tells how a path segment is rendered.
type segKind uint8

const (
	segField segKind = iota // .name
	segIndex                // [i]
	segKey                  // .key or ["key"]
)

type pathSeg struct {
	kind  segKind
	name  string
	index int
}

// pathError carries an error up the value tree while the path to it is
// collected, innermost segment first. Paths are only built on failure.
type pathError struct {
	segs []pathSeg
	err  error
}

func (e *pathError) Error() string { return e.fieldError().Error() }

func (e *pathError) fieldError() *FieldError {
	// Very deep paths (a cyclic value runs into the depth limit) keep
	// their outermost and innermost segments only.
	const keepOuter, keepInner = 32, 8
	var b strings.Builder
	for i := len(e.segs) - 1; i >= 0; i-- {
		if n := len(e.segs); n > keepOuter+keepInner && i == n-1-keepOuter {
			b.WriteString("..")
			i = keepInner - 1
		}
		s := e.segs[i]
		switch s.kind {
		case segField:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		case segIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case segKey:
			if isIdentifier(s.name) {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(s.name)
			} else {
				b.WriteByte('[')
				b.WriteString(strconv.Quote(s.name))
				b.WriteByte(']')
			}
		}
	}
	return &FieldError{Path: b.String(), Err: e.err}
}

func withSeg(err error, s pathSeg) error {
	var pe *pathError
	if p, ok := err.(*pathError); ok {
		pe = p
	} else {
		pe = &pathError{err: err}
	}
	pe.segs = append(pe.segs, s)
	return pe
}

func inField(err error, name string) error { return withSeg(err, pathSeg{kind: segField, name: name}) }
func atIndex(err error, i int) error       { return withSeg(err, pathSeg{kind: segIndex, index: i}) }
func atKey(err error, key string) error    { return withSeg(err, pathSeg{kind: segKey, name: key}) }

// toFieldError turns an internal error into the *FieldError FromValue
// returns.
func toFieldError(err error) error {
	var pe *pathError
	if errors.As(err, &pe) {
		return pe.fieldError()
	}
	return &FieldError{Err: err}
}

// isIdentifier reports whether s can follow a dot in a JavaScript member
// expression.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// wantError reports a value of the wrong JavaScript type.
func wantError(want string, k kind) error {
	return fmt.Errorf("want %s, got %s", want, k)
}
