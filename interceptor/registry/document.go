package registry

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// OnError says what a failed script does to the call.
type OnError string

// The values of a document's onError.
const (
	// Abort ends the call with the failure's status.
	Abort OnError = "abort"
	// Continue logs the failure and goes on as if the hook were absent.
	Continue OnError = "continue"
)

// Document is a hook's value in etcd, a JSON object. Unknown fields are
// rejected.
type Document struct {
	// Script is the script's source (required).
	Script string `json:"script"`
	// Lang is the script's language: "js" (when empty) or "ts".
	Lang engine.Lang `json:"lang,omitempty"`
	// Style is how the script's function is called: the ctx style (when
	// empty), or "apimaker", main(g) (see engine.APIMaker).
	Style engine.Style `json:"style,omitempty"`
	// Params are the hook's own parameters, any JSON ({} when absent).
	Params json.RawMessage `json:"params,omitempty"`
	// Enabled is true when absent; a disabled hook is not run.
	Enabled *bool `json:"enabled,omitempty"`
	// Order sorts the hooks of a call, ascending, ties broken by key.
	Order int `json:"order,omitempty"`
	// Timeout is a Go duration; the server's default when empty.
	Timeout string `json:"timeout,omitempty"`
	// OnError is "abort" (when empty) or "continue".
	OnError OnError `json:"onError,omitempty"`
	// Description says what the hook is for.
	Description string `json:"description,omitempty"`
	// Isolation is where the hook runs: "process", "inprocess", or the
	// server's choice when empty.
	Isolation Isolation `json:"isolation,omitempty"`
	// Owner names the team whose manifest wrote the hook: hookctl apply
	// --prune removes only hooks of the manifest's owner. The daemon
	// ignores it.
	Owner string `json:"owner,omitempty"`
}

// Isolation says where a hook's script runs.
type Isolation string

// The values of a document's isolation; empty leaves it to the server.
const (
	// InProcess runs the script inside the server's process.
	InProcess Isolation = "inprocess"
	// Process runs the script in a separate process, which bounds the
	// memory and time it can take from the server.
	Process Isolation = "process"
)

// DefaultMaxTimeout is the largest timeout a document may set unless the
// server allows more (WithMaxTimeout, apihooksd --max-hook-timeout).
const DefaultMaxTimeout = 5 * time.Second

// DecodeDocument decodes and checks a hook document, with a timeout of at
// most DefaultMaxTimeout. The error names the field at fault.
func DecodeDocument(b []byte) (*Document, error) { return DecodeDocumentWithin(b, DefaultMaxTimeout) }

// DecodeDocumentWithin decodes and checks a hook document whose timeout may
// be at most maxTimeout (no limit when maxTimeout is zero).
func DecodeDocumentWithin(b []byte, maxTimeout time.Duration) (*Document, error) {
	var d Document
	if err := decodeStrict(b, &d, "document", "script, lang, style, params, enabled, order, timeout, onError, description, isolation, owner"); err != nil {
		return nil, err
	}
	if err := d.ValidateWithin(maxTimeout); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks the fields' values, with a timeout of at most
// DefaultMaxTimeout.
func (d *Document) Validate() error { return d.ValidateWithin(DefaultMaxTimeout) }

// ValidateWithin checks the fields' values, with a timeout of at most
// maxTimeout (no limit when maxTimeout is zero).
func (d *Document) ValidateWithin(maxTimeout time.Duration) error {
	if strings.TrimSpace(d.Script) == "" {
		return fieldErrorf("document", "script", "required")
	}
	switch d.Lang {
	case "", engine.JS, engine.TS:
	default:
		return fieldErrorf("document", "lang", "%q is not %q or %q", d.Lang, engine.JS, engine.TS)
	}
	switch d.Style {
	case engine.CtxStyle, engine.APIMaker:
	default:
		return fieldErrorf("document", "style", "%q is not %q (or absent, for the ctx style)", d.Style, engine.APIMaker)
	}
	if len(d.Params) > 0 && !json.Valid(d.Params) {
		return fieldErrorf("document", "params", "not valid JSON")
	}
	if d.Timeout != "" {
		t, err := time.ParseDuration(d.Timeout)
		if err != nil {
			return fieldErrorf("document", "timeout", "%q is not a Go duration such as 250ms", d.Timeout)
		}
		if t <= 0 {
			return fieldErrorf("document", "timeout", "%q must be positive", d.Timeout)
		}
		if maxTimeout > 0 && t > maxTimeout {
			return fieldErrorf("document", "timeout", "%q is more than the limit of %v (--max-hook-timeout)", d.Timeout, maxTimeout)
		}
	}
	switch d.OnError {
	case "", Abort, Continue:
	default:
		return fieldErrorf("document", "onError", "%q is not %q or %q", d.OnError, Abort, Continue)
	}
	switch d.Isolation {
	case "", InProcess, Process:
	default:
		return fieldErrorf("document", "isolation", "%q is not %q or %q", d.Isolation, Process, InProcess)
	}
	return nil
}

// IsEnabled reports whether the hook runs.
func (d *Document) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// Hook is a decoded and compiled hook. It is immutable once built.
type Hook struct {
	Key Key
	// ID is the key without its prefix; it names the hook in messages.
	ID string
	// Revision is the etcd revision that last modified the key.
	Revision int64
	// Doc is the document, nil for a broken hook.
	Doc *Document
	// Params are Doc.Params decoded.
	Params any
	// Timeout is Doc.Timeout parsed; zero means the server's default.
	Timeout time.Duration
	OnError OnError
	// Isolation is Doc.Isolation: where the script runs, or the server's
	// choice when empty.
	Isolation Isolation
	Script    *engine.Script
	// Err is set when the key has no valid version: a call it covers fails
	// with INTERNAL naming the key and Err.
	Err error

	// runs counts the runs of the hook started (StartRun): the one thing
	// of a Hook that changes once it is built.
	runs atomic.Int64
}

// StartRun counts a run of h that starts, and returns its number, from 1.
// The interceptors' quarantine weighs a hook's failures against its runs.
func (h *Hook) StartRun() int64 { return h.runs.Add(1) }

// Runs returns how many runs of h started.
func (h *Hook) Runs() int64 { return h.runs.Load() }

// Build decodes the document b stored at k and compiles its script, with a
// timeout of at most DefaultMaxTimeout.
func Build(k Key, b []byte) (*Hook, error) { return BuildWithin(k, b, DefaultMaxTimeout) }

// BuildWithin is Build with a timeout of at most maxTimeout (no limit when
// maxTimeout is zero).
func BuildWithin(k Key, b []byte, maxTimeout time.Duration) (*Hook, error) {
	d, err := DecodeDocumentWithin(b, maxTimeout)
	if err != nil {
		return nil, err
	}
	return Compile(k, d)
}

// BuildWithUtils is BuildWithin for a hook whose script may import the
// utils of utils (nil: none), a *Utils for instance.
func BuildWithUtils(k Key, b []byte, maxTimeout time.Duration, utils engine.Modules) (*Hook, error) {
	d, err := DecodeDocumentWithin(b, maxTimeout)
	if err != nil {
		return nil, err
	}
	return CompileWithUtils(k, d, utils)
}

// Compile compiles the script of a decoded document.
func Compile(k Key, d *Document) (*Hook, error) { return CompileWithUtils(k, d, nil) }

// CompileWithUtils compiles the script of a decoded document, which may
// import the utils of utils (nil: none), a *Utils for instance.
func CompileWithUtils(k Key, d *Document, utils engine.Modules) (*Hook, error) {
	h := &Hook{Key: k, ID: k.String(), Doc: d, OnError: d.OnError, Isolation: d.Isolation}
	if h.OnError == "" {
		h.OnError = Abort
	}
	if d.Timeout != "" {
		h.Timeout, _ = time.ParseDuration(d.Timeout) // validated
	}
	h.Params = map[string]any{}
	if len(d.Params) > 0 && string(d.Params) != "null" {
		if err := json.Unmarshal(d.Params, &h.Params); err != nil {
			return nil, fieldErrorf("document", "params", "%w", err)
		}
	}
	s, err := engine.CompileModules(h.ID, d.Script, d.Lang, utils)
	if err != nil {
		return nil, fieldErrorf("document", "script", "%w", err)
	}
	if s, err = s.WithStyle(d.Style); err != nil {
		return nil, fieldErrorf("document", "style", "%w", err)
	}
	h.Script = s
	return h, nil
}

// Skips reports whether h's onError turns a failure of kind k into a
// logged skip: onError "continue" and a kind that may be skipped
// (engine.Kind.Skippable).
func (h *Hook) Skips(k engine.Kind) bool { return h.OnError == Continue && k.Skippable() }
