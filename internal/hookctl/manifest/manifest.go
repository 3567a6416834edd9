// Package manifest loads hooks.yaml, the file that lists the hooks a team
// keeps in version control, and checks every hook in it as the daemon
// would: the key, the document, the script (compiled by the registry), and,
// given a schema source, the method it targets. Every problem is reported
// with the file and line it comes from, all of them at once.
//
// A manifest looks like this; script paths are relative to the manifest:
//
//	owner: payments                                 # optional: the team; prune removes only its hooks
//	hooks:
//	  - method: events.v1.EventService/SendEvent   # or SERVICE/*, */*
//	    phase: pre                                  # pre, post or error
//	    name: addvalue
//	    script: addvalue.js                         # .js or .ts (TypeScript)
//	    params: {extradata: {source: hook}}         # optional, any YAML
//	    order: 10                                   # optional
//	    timeout: 250ms                              # optional
//	    onError: abort                              # optional: abort or continue
//	    enabled: true                               # optional
//	    description: adds campaign data to events   # optional
//	    isolation: process                          # optional: process or inprocess
//	    lang: ts                                    # optional: js or ts; the default comes from the script file's extension
//	    style: apimaker                             # optional: main(g), API Maker's style; the ctx style when absent
//	utils:                                          # optional: modules hooks import as utils/<name>
//	  - name: Addition
//	    script: utils/addition.ts                   # .js or .ts
//	    description: sums                           # optional
//
// Applying a manifest makes each util's script its active version (written
// as the next version when etcd's active one differs).
package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/schema"
	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

// Names are the file names looked for in a directory, in order.
var Names = []string{"hooks.yaml", "hooks.yml"}

// Manifest is a loaded, checked hooks.yaml.
type Manifest struct {
	// Path is the manifest's path as given (or found in the directory given).
	Path string
	// Dir is the directory script paths are relative to.
	Dir string
	// Owner is the manifest's owner: field, recorded in each document;
	// apply --prune removes only hooks of the same owner.
	Owner string
	Hooks []*Hook
	// Utils are the utils: section's modules.
	Utils []*Util
}

// Hook is one checked entry of a manifest.
type Hook struct {
	Key registry.Key
	// Doc is the document to store; Raw is its JSON, as Encode wrote it.
	Doc *registry.Document
	Raw []byte
	// Compiled is the document as the daemon would run it.
	Compiled *registry.Hook
	// Script is the script's path (the manifest's directory joined with the
	// entry's script).
	Script string
	// Line is the line of the entry in the manifest.
	Line int
}

// Name returns the hook's name as people write it.
func (h *Hook) Name() string { return hookname.Format(h.Key) }

// Lookup returns the manifest's hook at k, or nil.
func (m *Manifest) Lookup(k registry.Key) *Hook {
	for _, h := range m.Hooks {
		if h.Key == k {
			return h
		}
	}
	return nil
}

type options struct {
	schema *schema.Source
	// knownOnly limits the schema's checks to the services it describes.
	knownOnly  bool
	maxTimeout time.Duration
}

// Option configures Load.
type Option func(*options)

// WithSchema checks each hook's method against src: the method exists, its
// service is hookable, and a post-hook does not target a streaming method.
func WithSchema(src *schema.Source) Option {
	return func(o *options) { o.schema, o.knownOnly = src, false }
}

// WithSchemaOfItsServices checks, as WithSchema does, only the hooks on
// the services src describes; hooks on others pass (they may be served
// elsewhere).
func WithSchemaOfItsServices(src *schema.Source) Option {
	return func(o *options) { o.schema, o.knownOnly = src, true }
}

// WithMaxTimeout sets the longest timeout a hook may have, the daemons'
// --max-hook-timeout (default registry.DefaultMaxTimeout).
func WithMaxTimeout(d time.Duration) Option {
	return func(o *options) { o.maxTimeout = d }
}

// Find returns the manifest at path: path itself when it is a file, or the
// hooks.yaml (or hooks.yml) in it when it is a directory.
func Find(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return path, nil
	}
	for _, n := range Names {
		p := filepath.Join(path, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: no %s in this directory", path, strings.Join(Names, " or "))
}

// Load reads and checks the manifest at path (a file, or a directory holding
// hooks.yaml). On problems it returns a diag.List naming each one's file and
// line, and no manifest.
func Load(path string, opts ...Option) (*Manifest, error) {
	o := options{maxTimeout: registry.DefaultMaxTimeout}
	for _, f := range opts {
		f(&o)
	}
	file, err := Find(path)
	if err != nil {
		return nil, diag.List{{File: path, Err: err}}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, diag.List{{File: file, Err: err}}
	}
	m := &Manifest{Path: file, Dir: filepath.Dir(file)}
	var errs diag.List
	fail := func(err error) (*Manifest, error) {
		var ye *yamljson.Error
		line := 0
		if errors.As(err, &ye) {
			line = ye.Line
		}
		return nil, diag.List{{File: file, Line: line, Err: err}}
	}
	root, err := yamljson.Parse(b)
	if err != nil {
		return fail(err)
	}
	if root == nil {
		return fail(errors.New("empty manifest: want a mapping with a hooks list"))
	}
	top, err := yamljson.Mapping(root, "manifest", "hooks", "owner", "utils")
	if err != nil {
		return fail(err)
	}
	if f, ok := top["owner"]; ok {
		if m.Owner, err = yamljson.String(f.Value, "owner"); err != nil {
			return fail(err)
		}
	}
	if f, ok := top["utils"]; ok {
		errs = append(errs, loadUtils(m, f.Value)...)
	}
	hooksField, ok := top["hooks"]
	if !ok {
		if len(m.Utils) > 0 || len(errs) > 0 {
			// A manifest of utils only.
			if len(errs) > 0 {
				return nil, errs
			}
			return m, nil
		}
		return fail(yamljson.Errorf(root, "manifest: no hooks list"))
	}
	items, err := yamljson.Sequence(hooksField.Value, "hooks")
	if err != nil {
		return fail(err)
	}
	seen := map[registry.Key]int{}
	for _, item := range items {
		h, err := loadHook(m, item, &o)
		if err != nil {
			var list diag.List
			var one *diag.Error
			switch {
			case errors.As(err, &list):
				errs = append(errs, list...)
			case errors.As(err, &one):
				errs = append(errs, one) // it names its own place
			default:
				errs.Add(file, item.Line, "", err)
			}
			continue
		}
		if first, dup := seen[h.Key]; dup {
			errs.Addf(file, h.Line, h.Name(), "listed twice (first at line %d)", first)
			continue
		}
		seen[h.Key] = h.Line
		m.Hooks = append(m.Hooks, h)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

var hookFields = []string{"method", "phase", "name", "script", "params", "order", "timeout", "onError", "enabled", "description", "isolation", "lang", "style"}

func loadHook(m *Manifest, item *yaml.Node, o *options) (*Hook, error) {
	file := m.Path
	// Unknown fields are reported with the rest, not instead of it.
	fields, err := yamljson.Mapping(item, "hook")
	if err != nil {
		return nil, lineError(file, "", err)
	}
	var unknown diag.List
	for name, f := range fields {
		if !slices.Contains(hookFields, name) {
			unknown.Addf(file, f.Key.Line, "", "hook: unknown field %q (want %s)", name, strings.Join(hookFields, ", "))
		}
	}
	slices.SortFunc(unknown, func(a, b *diag.Error) int { return a.Line - b.Line })
	str := func(name string, required bool) (string, error) {
		f, ok := fields[name]
		if !ok {
			if required {
				return "", yamljson.Errorf(item, "hook: %s is required", name)
			}
			return "", nil
		}
		return yamljson.String(f.Value, name)
	}
	method, err := str("method", true)
	if err != nil {
		return nil, lineError(file, "", err)
	}
	phase, err := str("phase", true)
	if err != nil {
		return nil, lineError(file, "", err)
	}
	name, err := str("name", true)
	if err != nil {
		return nil, lineError(file, "", err)
	}
	k, err := hookname.New(method, phase, name)
	if err != nil {
		return nil, append(unknown, &diag.Error{File: file, Line: item.Line, Err: err})
	}
	h := &Hook{Key: k, Line: item.Line}
	hook := h.Name()
	errs := unknown
	at := func(field string) int {
		if f, ok := fields[field]; ok {
			return f.Key.Line
		}
		return item.Line
	}

	doc := &registry.Document{Owner: m.Owner}
	scriptRel, err := str("script", true)
	if err != nil {
		errs.Add(file, lineOf(err, item.Line), hook, err)
	} else {
		switch {
		case filepath.IsAbs(scriptRel):
			errs.Addf(file, at("script"), hook, "script: %q: want a path relative to the manifest", scriptRel)
		case filepath.Ext(scriptRel) != ".js" && filepath.Ext(scriptRel) != ".ts":
			errs.Addf(file, at("script"), hook, "script: %q: want a .js or .ts file", scriptRel)
		default:
			h.Script = filepath.Join(m.Dir, filepath.FromSlash(scriptRel))
			src, err := os.ReadFile(h.Script)
			if err != nil {
				errs.Addf(file, at("script"), hook, "script: %v", err)
			} else {
				doc.Script, doc.Lang = string(src), LangOf(scriptRel)
			}
		}
	}
	if f, ok := fields["params"]; ok {
		p, err := yamljson.ToJSON(f.Value)
		if err != nil {
			errs.Add(file, lineOf(err, f.Key.Line), hook, fmt.Errorf("params: %w", err))
		}
		doc.Params = p
	}
	if f, ok := fields["order"]; ok {
		if doc.Order, err = yamljson.Int(f.Value, "order"); err != nil {
			errs.Add(file, lineOf(err, f.Key.Line), hook, err)
		}
	}
	if doc.Timeout, err = str("timeout", false); err != nil {
		errs.Add(file, lineOf(err, at("timeout")), hook, err)
	}
	var onError string
	if onError, err = str("onError", false); err != nil {
		errs.Add(file, lineOf(err, at("onError")), hook, err)
	}
	doc.OnError = registry.OnError(onError)
	if f, ok := fields["enabled"]; ok {
		v, err := yamljson.Bool(f.Value, "enabled")
		if err != nil {
			errs.Add(file, lineOf(err, f.Key.Line), hook, err)
		}
		doc.Enabled = &v
	}
	if doc.Description, err = str("description", false); err != nil {
		errs.Add(file, lineOf(err, at("description")), hook, err)
	}
	var isolation string
	if isolation, err = str("isolation", false); err != nil {
		errs.Add(file, lineOf(err, at("isolation")), hook, err)
	}
	doc.Isolation = registry.Isolation(isolation)
	if lang, err := str("lang", false); err != nil {
		errs.Add(file, lineOf(err, at("lang")), hook, err)
	} else if lang != "" {
		doc.Lang = engine.Lang(lang)
	}
	if style, err := str("style", false); err != nil {
		errs.Add(file, lineOf(err, at("style")), hook, err)
	} else {
		doc.Style = engine.Style(style)
	}
	var raw []byte
	if len(errs) > 0 {
		// The document's own fields are still checked, with a stand-in
		// script, so that every problem is reported at once.
		for _, err := range documentFieldErrors(doc, o.maxTimeout) {
			errs.Add(file, fieldLine(err, at), hook, err)
		}
	} else {
		raw, err = hookdoc.Encode(k, doc, o.maxTimeout)
		if pos, ok := hookdoc.ScriptPosition(err); ok {
			errs = append(errs, &diag.Error{File: h.Script, Line: pos.Line, Column: pos.Column, Hook: hook, Err: errors.New(pos.Msg)})
		} else if err != nil {
			errs.Add(file, fieldLine(err, at), hook, err)
		}
	}
	if o.schema != nil && (!o.knownOnly || slices.Contains(o.schema.Services(), k.Service)) {
		if err := o.schema.CheckHook(k); err != nil {
			errs.Add(file, at("method"), hook, err)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	compiled, err := registry.BuildWithUtils(k, raw, o.maxTimeout, m.UtilModules(false))
	if err != nil {
		if pos, ok := hookdoc.ScriptPosition(err); ok {
			return nil, diag.List{{File: h.Script, Line: pos.Line, Column: pos.Column, Hook: hook, Err: errors.New(pos.Msg)}}
		}
		return nil, diag.List{{File: file, Line: item.Line, Hook: hook, Err: err}}
	}
	h.Doc, h.Raw, h.Compiled = compiled.Doc, raw, compiled
	return h, nil
}

// LangOf is the language of a script file, by its extension: TypeScript
// for .ts, else empty (JavaScript, the default, which a document leaves out).
func LangOf(path string) engine.Lang {
	if strings.EqualFold(filepath.Ext(path), ".ts") {
		return engine.TS
	}
	return ""
}

// fieldLine returns the line of the field a registry error names (a
// *registry.FieldError), or of the entry.
func fieldLine(err error, at func(field string) int) int {
	var fe *registry.FieldError
	if errors.As(err, &fe) {
		return at(fe.Field)
	}
	return at("")
}

func lineOf(err error, fallback int) int {
	var ye *yamljson.Error
	if errors.As(err, &ye) && ye.Line > 0 {
		return ye.Line
	}
	return fallback
}

func lineError(file, hook string, err error) error {
	return &diag.Error{File: file, Line: lineOf(err, 0), Hook: hook, Err: err}
}

// documentFieldErrors checks each field of doc that the registry validates
// on its own, with a stand-in script, and returns every error.
func documentFieldErrors(doc *registry.Document, maxTimeout time.Duration) []error {
	const script = "undefined"
	checks := []registry.Document{
		{Script: script, Timeout: doc.Timeout},
		{Script: script, OnError: doc.OnError},
		{Script: script, Isolation: doc.Isolation},
		{Script: script, Lang: doc.Lang},
	}
	var errs []error
	for _, d := range checks {
		if err := d.ValidateWithin(maxTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
