package registry

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// UtilsDir returns the etcd prefix of the utils (modules of shared code)
// under prefix: <prefix>utils/<Name>/<version> holds a UtilDocument,
// <prefix>utils/<Name>/active an ActiveDocument.
func UtilsDir(prefix string) string { return prefix + engine.UtilsPrefix }

// ActiveKey is the last element of the key naming a util's active version.
const ActiveKey = "active"

// utilNamePattern is what a util's name may be: a hook imports it as
// utils/<Name>, so it holds no slash or @.
var utilNamePattern = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$.-]{0,62}$`)

// UtilKey identifies a key under UtilsDir: one version of a util, or its
// active pointer (Version 0).
type UtilKey struct {
	Name    string
	Version int
}

// Active reports whether the key is the util's active pointer.
func (k UtilKey) Active() bool { return k.Version == 0 }

func (k UtilKey) String() string {
	if k.Active() {
		return engine.UtilsPrefix + k.Name + "/" + ActiveKey
	}
	return engine.UtilsPrefix + k.Name + "/" + strconv.Itoa(k.Version)
}

// ParseUtilKey parses an etcd key under UtilsDir(prefix).
func ParseUtilKey(prefix, key string) (UtilKey, error) {
	rest, ok := strings.CutPrefix(key, UtilsDir(prefix))
	if !ok {
		return UtilKey{}, fmt.Errorf("key %q is not under %q", key, UtilsDir(prefix))
	}
	name, last, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(last, "/") {
		return UtilKey{}, fmt.Errorf("key %q: want %s<Name>/<version> or %s<Name>/%s", key, UtilsDir(prefix), UtilsDir(prefix), ActiveKey)
	}
	if err := ValidUtilName(name); err != nil {
		return UtilKey{}, fmt.Errorf("key %q: %w", key, err)
	}
	if last == ActiveKey {
		return UtilKey{Name: name}, nil
	}
	v, err := ParseUtilVersion(last)
	if err != nil {
		return UtilKey{}, fmt.Errorf("key %q: %w", key, err)
	}
	return UtilKey{Name: name, Version: v}, nil
}

// ValidUtilName reports what is wrong with a util's name, if anything.
func ValidUtilName(name string) error {
	if !utilNamePattern.MatchString(name) {
		return fmt.Errorf("util name %q: want a letter, _ or $, then up to 62 letters, digits, _, $, . or -", name)
	}
	return nil
}

// ParseUtilVersion parses a util's version, a positive integer.
func ParseUtilVersion(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 || strconv.Itoa(v) != s {
		return 0, fmt.Errorf("util version %q: want a positive integer", s)
	}
	return v, nil
}

// UtilDocument is one version of a util in etcd, a JSON object. Unknown
// fields are rejected.
type UtilDocument struct {
	// Script is the module's source (required): it exports what hooks
	// import, with export or module.exports.
	Script string `json:"script"`
	// Lang is "js" (when empty) or "ts".
	Lang engine.Lang `json:"lang,omitempty"`
	// Description says what the util is for.
	Description string `json:"description,omitempty"`
}

// ActiveDocument names a util's active version: {"version": 3}.
type ActiveDocument struct {
	Version int `json:"version"`
}

// DecodeUtilDocument decodes and checks one version of a util. The error
// names the field at fault.
func DecodeUtilDocument(b []byte) (*UtilDocument, error) {
	var d UtilDocument
	if err := decodeStrict(b, &d, "util document", "script, lang, description"); err != nil {
		return nil, err
	}
	if strings.TrimSpace(d.Script) == "" {
		return nil, fieldErrorf("util document", "script", "required")
	}
	switch d.Lang {
	case "", engine.JS, engine.TS:
	default:
		return nil, fieldErrorf("util document", "lang", "%q is not %q or %q", d.Lang, engine.JS, engine.TS)
	}
	return &d, nil
}

// DecodeActiveDocument decodes and checks a util's active pointer.
func DecodeActiveDocument(b []byte) (*ActiveDocument, error) {
	var d ActiveDocument
	if err := decodeStrict(b, &d, "util document", "version"); err != nil {
		return nil, err
	}
	if d.Version <= 0 {
		return nil, fieldErrorf("util document", "version", "%d is not a positive integer", d.Version)
	}
	return &d, nil
}

// Utils is a set of utils as hooks see them: every version stored, and
// which is active. It implements engine.Modules. It is immutable.
type Utils struct {
	utils map[string]*util
	// fallback resolves the utils that utils does not hold; nil: none.
	fallback engine.Modules
	// modRevs holds the revision of each key the utils were built from,
	// for those a registry builds; nil otherwise.
	modRevs map[string]int64
}

// StubUtils returns utils that resolve every util a script may import to
// an empty module: they check a script and its imports' syntax where the
// utils themselves are not known (hookctl offline, before they are
// written).
func StubUtils() *Utils { return &Utils{fallback: stubModules{}} }

// WithFallback returns u resolving the utils it does not hold (by name)
// through fallback.
func (u *Utils) WithFallback(fallback engine.Modules) *Utils {
	return &Utils{utils: u.utils, fallback: fallback}
}

type stubModules struct{}

func (stubModules) Module(path string) (string, engine.Lang, string, error) {
	name, _, _ := strings.Cut(strings.TrimPrefix(path, engine.UtilsPrefix), "@")
	if err := ValidUtilName(name); err != nil {
		return "", "", "", err
	}
	return "module.exports = {};", engine.JS, path, nil
}

// Names returns the names of the utils u holds, sorted.
func (u *Utils) Names() []string {
	names := make([]string, 0, len(u.utils))
	for n := range u.utils {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

type util struct {
	versions map[int]*UtilDocument
	// bad holds the errors of versions that do not decode.
	bad map[int]error
	// active is the active version; activeErr says why there is none.
	active    int
	activeErr error
}

// NewUtils builds a set of utils from the raw values of their keys
// (under UtilsDir(prefix)). Keys and values that do not decode make the
// versions they name fail to load, naming the problem.
func NewUtils(prefix string, values map[string][]byte) *Utils {
	u := &Utils{utils: map[string]*util{}}
	get := func(name string) *util {
		x := u.utils[name]
		if x == nil {
			x = &util{versions: map[int]*UtilDocument{}, bad: map[int]error{}}
			u.utils[name] = x
		}
		return x
	}
	for key, v := range values {
		k, err := ParseUtilKey(prefix, key)
		if err != nil {
			continue
		}
		x := get(k.Name)
		if k.Active() {
			d, err := DecodeActiveDocument(v)
			if err != nil {
				x.activeErr = fmt.Errorf("%s: %w", k, err)
				continue
			}
			x.active = d.Version
			continue
		}
		d, err := DecodeUtilDocument(v)
		if err != nil {
			x.bad[k.Version] = err
			continue
		}
		x.versions[k.Version] = d
	}
	return u
}

// Module returns the source of the util imported as path: see
// engine.Modules.
func (u *Utils) Module(path string) (string, engine.Lang, string, error) {
	ref := strings.TrimPrefix(path, engine.UtilsPrefix)
	name, vs, pinned := strings.Cut(ref, "@")
	x := u.utils[name]
	if x == nil && u.fallback != nil {
		return u.fallback.Module(path)
	}
	if x == nil {
		return "", "", "", fmt.Errorf("no util %q: nothing is stored under %s%s/", name, engine.UtilsPrefix, name)
	}
	var v int
	if pinned {
		var err error
		if v, err = ParseUtilVersion(vs); err != nil {
			return "", "", "", fmt.Errorf("util %q: %w", name, err)
		}
	} else {
		switch {
		case x.activeErr != nil:
			return "", "", "", fmt.Errorf("util %q has no active version: %w", name, x.activeErr)
		case x.active == 0:
			return "", "", "", fmt.Errorf("util %q has no active version: %s%s/%s is missing", name, engine.UtilsPrefix, name, ActiveKey)
		}
		v = x.active
	}
	if err := x.bad[v]; err != nil {
		return "", "", "", fmt.Errorf("util %q version %d is invalid: %w", name, v, err)
	}
	d := x.versions[v]
	if d == nil {
		return "", "", "", fmt.Errorf("util %q has no version %d", name, v)
	}
	return d.Script, d.Lang, fmt.Sprintf("%s%s@%d", engine.UtilsPrefix, name, v), nil
}

// Dependents returns, among names, the utils of u that import one of
// names, directly or not, together with names: the utils whose code
// changes when those of names change. It errs on the side of more: a
// util counts when its source mentions utils/<name>.
func (u *Utils) Dependents(names map[string]bool) map[string]bool {
	out := make(map[string]bool, len(names))
	for n := range names {
		out[n] = true
	}
	for grew := true; grew; {
		grew = false
		for name, x := range u.utils {
			if out[name] {
				continue
			}
			for _, d := range x.versions {
				if MentionsUtil([]byte(d.Script), out) {
					out[name], grew = true, true
					break
				}
			}
		}
	}
	return out
}

// MentionsUtil reports whether b (a script, or a document holding one)
// mentions utils/<name> for one of names.
func MentionsUtil(b []byte, names map[string]bool) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(engine.UtilsPrefix))
		if j < 0 {
			return false
		}
		i += j + len(engine.UtilsPrefix)
		end := i
		for end < len(b) && (isNameByte(b[end])) {
			end++
		}
		if names[string(b[i:end])] {
			return true
		}
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c == '$' || c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// utilValue is the value of a key under UtilsDir.
type utilValue struct {
	value  []byte
	modRev int64
}

// followUtils brings the registry's utils up to date with the changes of
// b under UtilsDir (all of them, for a full read), gives b the utils its
// hooks compile against, and adds to b, to compile again, the newest value
// of every hook that imports a util that changed, or whose last version
// (see entry.lastVersion) does (a full read has them all). mu is held.
func (r *Registry) followUtils(b *batch) {
	dir := UtilsDir(r.opts.prefix)
	changed := map[string]bool{}
	note := func(key string) {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, dir), "/")
		changed[name] = true
	}
	var old map[string]utilValue
	if b.full {
		old = r.utilValues
		r.utilValues = make(map[string]utilValue, len(old))
	}
	for i := range b.changes {
		c := &b.changes[i]
		if !strings.HasPrefix(c.key, dir) {
			continue
		}
		c.util = true
		switch {
		case c.del:
			delete(r.utilValues, c.key)
		case b.full && old[c.key].modRev == c.modRev:
			r.utilValues[c.key] = old[c.key]
			delete(old, c.key)
			continue // unchanged since the last read
		default:
			r.utilValues[c.key] = utilValue{value: c.value, modRev: c.modRev}
		}
		delete(old, c.key)
		note(c.key)
	}
	for key := range old {
		note(key) // gone since the last read
	}
	if len(changed) > 0 {
		values := make(map[string][]byte, len(r.utilValues))
		modRevs := make(map[string]int64, len(r.utilValues))
		for k, v := range r.utilValues {
			values[k], modRevs[k] = v.value, v.modRev
		}
		r.utils = NewUtils(r.opts.prefix, values)
		r.utils.modRevs = modRevs
	}
	b.utils = r.utils
	if len(changed) == 0 || b.full {
		return // a full read compiles again each hook compiled against other utils
	}
	names := r.utils.Dependents(changed)
	inBatch := make(map[string]bool, len(b.changes))
	for _, c := range b.changes {
		inBatch[c.key] = true
	}
	hooks := HooksDir(r.opts.prefix)
	for key, v := range r.latest {
		if v.del || inBatch[key] || !strings.HasPrefix(key, hooks) || key == ApplyMarker(r.opts.prefix) {
			continue
		}
		last, lastRev := r.entries[key].lastVersion(v.modRev)
		if !MentionsUtil(v.value, names) && !MentionsUtil(last, names) {
			continue
		}
		b.changes = append(b.changes, change{key: key, value: v.value, modRev: v.modRev, recompile: true,
			changed: names, last: last, lastRev: lastRev})
	}
}
