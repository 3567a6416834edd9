package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

// Util is one checked entry of a manifest's utils: section: a module of
// shared code that hooks import as utils/<Name>. Applying the manifest
// makes it the util's active version, writing it as the next version when
// etcd's active one differs.
type Util struct {
	Name string
	// Doc is the version to store; Raw is its JSON.
	Doc *registry.UtilDocument
	Raw []byte
	// Script is the script's path.
	Script string
	// Line is the line of the entry in the manifest.
	Line int
}

// LookupUtil returns the manifest's util named name, or nil.
func (m *Manifest) LookupUtil(name string) *Util {
	for _, u := range m.Utils {
		if u.Name == name {
			return u
		}
	}
	return nil
}

var utilFields = []string{"name", "script", "description", "lang"}

// loadUtils reads the utils: section.
func loadUtils(m *Manifest, n *yaml.Node) diag.List {
	file := m.Path
	items, err := yamljson.Sequence(n, "utils")
	if err != nil {
		return diag.List{{File: file, Line: lineOf(err, n.Line), Err: err}}
	}
	var errs diag.List
	seen := map[string]int{}
	for _, item := range items {
		fields, err := yamljson.Mapping(item, "util", utilFields...)
		if err != nil {
			errs.Add(file, lineOf(err, item.Line), "", err)
			continue
		}
		str := func(name string) (string, error) {
			f, ok := fields[name]
			if !ok {
				return "", nil
			}
			return yamljson.String(f.Value, name)
		}
		name, err := str("name")
		if err == nil && name == "" {
			err = errors.New("util: name is required")
		}
		if err == nil {
			err = registry.ValidUtilName(name)
		}
		if err != nil {
			errs.Add(file, lineOf(err, item.Line), "", err)
			continue
		}
		what := "util " + name
		if first, dup := seen[name]; dup {
			errs.Addf(file, item.Line, what, "listed twice (first at line %d)", first)
			continue
		}
		seen[name] = item.Line
		u := &Util{Name: name, Line: item.Line, Doc: &registry.UtilDocument{}}
		scriptRel, err := str("script")
		switch {
		case err != nil:
			errs.Add(file, item.Line, what, err)
			continue
		case scriptRel == "":
			errs.Addf(file, item.Line, what, "util: script is required")
			continue
		case filepath.IsAbs(scriptRel):
			errs.Addf(file, item.Line, what, "script: %q: want a path relative to the manifest", scriptRel)
			continue
		case filepath.Ext(scriptRel) != ".js" && filepath.Ext(scriptRel) != ".ts":
			errs.Addf(file, item.Line, what, "script: %q: want a .js or .ts file", scriptRel)
			continue
		}
		u.Script = filepath.Join(m.Dir, filepath.FromSlash(scriptRel))
		src, err := os.ReadFile(u.Script)
		if err != nil {
			errs.Addf(file, item.Line, what, "script: %v", err)
			continue
		}
		u.Doc.Script, u.Doc.Lang = string(src), LangOf(scriptRel)
		if lang, err := str("lang"); err != nil {
			errs.Add(file, item.Line, what, err)
		} else if lang != "" {
			u.Doc.Lang = engine.Lang(lang)
		}
		if u.Doc.Description, err = str("description"); err != nil {
			errs.Add(file, item.Line, what, err)
		}
		if u.Raw, err = EncodeUtil(u.Doc); err != nil {
			errs.Add(file, item.Line, what, err)
			continue
		}
		m.Utils = append(m.Utils, u)
	}
	if len(errs) > 0 {
		return errs
	}
	// Each util must compile with the others (and no cycle among them).
	for _, u := range m.Utils {
		entry := fmt.Sprintf("module.exports = require(%q);", engine.UtilsPrefix+u.Name)
		if _, err := engine.CompileModules("util "+u.Name, entry, engine.JS, m.UtilModules(false)); err != nil {
			errs.Add(u.Script, 0, "util "+u.Name, err)
		}
	}
	return errs
}

// EncodeUtil returns the JSON document stored for a version of a util,
// checked by the registry's own decoder.
func EncodeUtil(d *registry.UtilDocument) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	raw := bytes.TrimRight(b.Bytes(), "\n")
	if _, err := registry.DecodeUtilDocument(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// UtilModules returns the manifest's utils as scripts import them. A util
// the manifest does not hold, and a pinned version (utils/Name@N), which
// only etcd knows, are, unless strict, empty modules, so that hooks that
// import utils kept elsewhere still check; strict makes them errors
// (hookctl test runs hooks with the manifest's utils only).
func (m *Manifest) UtilModules(strict bool) engine.Modules {
	return manifestUtils{m: m, strict: strict}
}

// UtilModulesOver returns the manifest's utils as scripts import them once
// the manifest is applied over base, the utils in etcd: the manifest's for
// the active versions of the utils it holds, base's for the rest.
func (m *Manifest) UtilModulesOver(base engine.Modules) engine.Modules {
	return manifestUtils{m: m, strict: true, base: base}
}

type manifestUtils struct {
	m      *Manifest
	strict bool
	base   engine.Modules
}

func (u manifestUtils) Module(path string) (string, engine.Lang, string, error) {
	name, _, pinned := strings.Cut(strings.TrimPrefix(path, engine.UtilsPrefix), "@")
	if x := u.m.LookupUtil(name); x != nil && !pinned {
		return x.Doc.Script, x.Doc.Lang, engine.UtilsPrefix + name, nil
	}
	if u.base != nil {
		return u.base.Module(path)
	}
	if !u.strict {
		return registry.StubUtils().Module(path)
	}
	if pinned {
		return "", "", "", fmt.Errorf("util %q: a pinned version is not known offline: %s holds the version to activate, imported as %s%s", name, u.m.Path, engine.UtilsPrefix, name)
	}
	names := make([]string, 0, len(u.m.Utils))
	for _, x := range u.m.Utils {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	return "", "", "", fmt.Errorf("no util %q in the utils: section of %s (it has: %s)", name, u.m.Path, strings.Join(names, ", "))
}
