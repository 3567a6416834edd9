// Package yamljson reads YAML documents node by node, so that every value
// keeps its line for error messages, and turns YAML values into JSON
// (object keys in their YAML order). hookctl's manifest and test case files
// are YAML; hook params, requests and responses are JSON in the end.
package yamljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem at a line of a YAML document.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an Error at n's line.
func Errorf(n *yaml.Node, format string, a ...any) *Error {
	return &Error{Line: n.Line, Msg: fmt.Sprintf(format, a...)}
}

// Parse parses one YAML document and returns its root value (not the
// document node). An empty document gives a nil node.
func Parse(b []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errorf(&extra, "only one YAML document is allowed")
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return resolve(doc.Content[0]), nil
	}
	return nil, nil
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into an Error.
func syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		_, rest, _ := strings.Cut(msg, ":")
		return &Error{Line: line, Msg: "invalid YAML: " + strings.TrimSpace(rest)}
	}
	return &Error{Msg: "invalid YAML: " + msg}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// Field is one entry of a mapping.
type Field struct {
	Key   *yaml.Node
	Value *yaml.Node
}

// Mapping returns the entries of a mapping node by key, refusing keys not in
// known and keys given twice. what names the mapping in messages.
func Mapping(n *yaml.Node, what string, known ...string) (map[string]Field, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, Errorf(orEmpty(n), "%s: want a mapping, got %s", what, Describe(n))
	}
	fields := map[string]Field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, Errorf(k, "%s: keys must be plain strings", what)
		}
		if len(known) > 0 && !slices.Contains(known, k.Value) {
			return nil, Errorf(k, "%s: unknown field %q (want %s)", what, k.Value, strings.Join(known, ", "))
		}
		if prev, dup := fields[k.Value]; dup {
			return nil, Errorf(k, "%s: field %q given twice (first at line %d)", what, k.Value, prev.Key.Line)
		}
		fields[k.Value] = Field{Key: k, Value: v}
	}
	return fields, nil
}

func orEmpty(n *yaml.Node) *yaml.Node {
	if n == nil {
		return &yaml.Node{}
	}
	return n
}

// Describe names the kind of a node for messages.
func Describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "an unsupported value"
}

// String returns a scalar node's text.
func String(n *yaml.Node, what string) (string, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.ShortTag() == "!!map" {
		return "", Errorf(orEmpty(n), "%s: want a string, got %s", what, Describe(n))
	}
	return n.Value, nil
}

// Int returns an integer scalar.
func Int(n *yaml.Node, what string) (int, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, Errorf(orEmpty(n), "%s: want an integer, got %s", what, Describe(n))
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, Errorf(n, "%s: %v", what, err)
	}
	return v, nil
}

// Bool returns a boolean scalar.
func Bool(n *yaml.Node, what string) (bool, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, Errorf(orEmpty(n), "%s: want true or false, got %s", what, Describe(n))
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		return false, Errorf(n, "%s: %v", what, err)
	}
	return v, nil
}

// Sequence returns the items of a list node.
func Sequence(n *yaml.Node, what string) ([]*yaml.Node, error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil, Errorf(orEmpty(n), "%s: want a list, got %s", what, Describe(n))
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items, nil
}

// ToJSON converts a YAML value to compact JSON. Mapping keys keep their
// order; timestamps and binary values become strings; merge keys (<<) are
// followed. NaN and infinities, which JSON cannot hold, are refused.
func ToJSON(n *yaml.Node) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, n, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

const maxDepth = 100

func writeJSON(b *bytes.Buffer, n *yaml.Node, depth int) error {
	n = resolve(n)
	if n == nil {
		b.WriteString("null")
		return nil
	}
	if depth > maxDepth {
		return Errorf(n, "value nested too deeply")
	}
	switch n.Kind {
	case yaml.MappingNode:
		fields, err := mergedFields(n, depth)
		if err != nil {
			return err
		}
		b.WriteByte('{')
		for i, f := range fields {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(f.Key.Value)
			b.Write(k)
			b.WriteByte(':')
			if err := writeJSON(b, f.Value, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, c, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		return writeScalar(b, n)
	default:
		return Errorf(n, "unsupported YAML value")
	}
	return nil
}

// mergedFields lists a mapping's entries, expanding merge keys; a key given
// explicitly wins over a merged one, and a later key over an earlier one.
func mergedFields(n *yaml.Node, depth int) ([]Field, error) {
	var out []Field
	index := map[string]int{}
	set := func(f Field, explicit bool) {
		if i, ok := index[f.Key.Value]; ok {
			if explicit {
				out[i] = f
			}
			return
		}
		index[f.Key.Value] = len(out)
		out = append(out, f)
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, Errorf(k, "mapping keys must be plain strings")
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, resolve(v))
			continue
		}
		set(Field{Key: k, Value: v}, true)
	}
	for _, m := range merges {
		var sources []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			for _, c := range m.Content {
				sources = append(sources, resolve(c))
			}
		default:
			return nil, Errorf(m, "a merge key (<<) needs a mapping or a list of mappings")
		}
		for _, s := range sources {
			if s.Kind != yaml.MappingNode || depth > maxDepth {
				return nil, Errorf(s, "a merge key (<<) needs a mapping or a list of mappings")
			}
			fs, err := mergedFields(s, depth+1)
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				set(f, false)
			}
		}
	}
	return out, nil
}

func writeScalar(b *bytes.Buffer, n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!null":
		b.WriteString("null")
		return nil
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return Errorf(n, "%v", err)
		}
		fmt.Fprint(b, v)
		return nil
	case "!!int":
		var v any
		if err := n.Decode(&v); err != nil {
			return Errorf(n, "%v", err)
		}
		switch v.(type) {
		case int, int64, uint64, uint:
			fmt.Fprint(b, v)
			return nil
		}
		return Errorf(n, "integer %s is out of range", n.Value)
	case "!!float":
		var v float64
		if err := n.Decode(&v); err != nil {
			return Errorf(n, "%v", err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Errorf(n, "%s has no JSON form", n.Value)
		}
		out, err := json.Marshal(v)
		if err != nil {
			return Errorf(n, "%v", err)
		}
		b.Write(out)
		return nil
	}
	out, err := json.Marshal(n.Value)
	if err != nil {
		return Errorf(n, "%v", err)
	}
	b.Write(out)
	return nil
}

// FromJSON turns JSON into a YAML node tree, keeping object key order, for
// YAML output of JSON-shaped data.
func FromJSON(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := nodeFromJSON(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return n, nil
}

func nodeFromJSON(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := nodeFromJSON(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
			}
			_, err := dec.Token() // }
			return n, err
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := nodeFromJSON(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			_, err := dec.Token() // ]
			return n, err
		}
	case string:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}
		if strings.Contains(t, "\n") {
			n.Style = yaml.LiteralStyle
		}
		return n, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(t.String(), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String()}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
