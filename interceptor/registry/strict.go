package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// FieldError is a document error about one known field: it is required and
// missing, of the wrong type, or holds a value the registry refuses. The
// decoders return it wrapped in the document's kind, as in "document: field
// timeout: ...", so that a caller can find the field with errors.As.
type FieldError struct {
	// Field is the field's name as the JSON document spells it.
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// fieldErrorf returns the error "what: field FIELD: MESSAGE" about a field
// of a document of kind what ("document"); a %w in format wraps as usual.
func fieldErrorf(what, field, format string, args ...any) error {
	return fmt.Errorf("%s: %w", what, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
}

// decodeStrict decodes b, one JSON object, into v. An unknown field, a
// value of the wrong type, bad JSON and data after the object are errors
// that name the field (a *FieldError for a value of the wrong type),
// prefixed with what ("document"); fields lists the known fields for an
// unknown one.
func decodeStrict(b []byte, v any, what, fields string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return fmt.Errorf("%s: want an object, got %s", what, typeErr.Value)
		case errors.As(err, &typeErr):
			return fieldErrorf(what, typeErr.Field, "want %s, got %s", wantOf(typeErr.Type), typeErr.Value)
		case errors.As(err, &syntaxErr):
			return fmt.Errorf("%s: invalid JSON at byte %d: %v", what, syntaxErr.Offset, err)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s: empty", what)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("%s: unknown field %s (want %s)", what, f, fields)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s: unexpected data after the JSON object", what)
	}
	return nil
}

// wantOf says what JSON a field of type t takes.
func wantOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}
