package hooktest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/diag"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/manifest"
	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

// CaseSuffix ends the names of case files.
const CaseSuffix = ".test.yaml"

// A case file holds cases for hooks of the manifest beside it:
//
//	hook: events.v1.EventService/SendEvent pre deny-guest   # default for the cases
//	cases:
//	  - name: events to the blocked user are refused
//	    request: {toUserId: mallory, eventType: login}
//	    expect:
//	      action: reject                 # continue, reject, respond or error
//	      status: PERMISSION_DENIED
//	      message: events to mallory are not allowed
//
// A case may also set hook (a string as above, or {method, phase, name}),
// method (the method called, for a SERVICE/* or */* hook), params (instead
// of the manifest's), metadata (key: value or key: [values]), request, and
// response (for a post-hook). expect may also set messageContains, request
// or response (compared as protobuf messages, so as protojson would see
// them), and logs (each {level, message}: a line logged at that level whose
// message contains that text).

// Case is one test case.
type Case struct {
	File string
	Line int
	Name string
	Hook registry.Key
	// Service and Method are the method called.
	Service, Method string
	// Params, when set, replace the manifest's params.
	Params   json.RawMessage
	Metadata map[string][]string
	Request  json.RawMessage
	Response json.RawMessage
	// Error is the status the call failed with, for an error hook.
	Error *Status
	// Calls answer the hook's calls to other methods, by method.
	Calls  map[string]CallStub
	Expect Expect
}

// Expect is what a case expects.
type Expect struct {
	Action string `json:"action"`
	// Status is a code name, upper case.
	Status          string          `json:"status,omitempty"`
	Message         *string         `json:"message,omitempty"`
	MessageContains string          `json:"messageContains,omitempty"`
	Request         json.RawMessage `json:"request,omitempty"`
	Response        json.RawMessage `json:"response,omitempty"`
	Logs            []ExpectLog     `json:"logs,omitempty"`
}

// ExpectLog is a line a case expects the script to log.
type ExpectLog struct {
	Level   string `json:"level,omitempty"`
	Message string `json:"message"`
}

// FindCaseFiles lists the case files in dir, sorted.
func FindCaseFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), CaseSuffix) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}

// LoadCases reads the case files beside the manifest m and checks that each
// case names a hook of m. Problems come back as a diag.List.
func LoadCases(m *manifest.Manifest) ([]*Case, error) {
	files, err := FindCaseFiles(m.Dir)
	if err != nil {
		return nil, diag.List{{File: m.Dir, Err: err}}
	}
	var cases []*Case
	var errs diag.List
	for _, f := range files {
		cs, err := LoadCaseFile(f, m)
		if err != nil {
			var list diag.List
			if errors.As(err, &list) {
				errs = append(errs, list...)
			} else {
				errs.Add(f, 0, "", err)
			}
			continue
		}
		cases = append(cases, cs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cases, nil
}

var (
	fileFields   = []string{"hook", "method", "cases"}
	caseFields   = []string{"name", "hook", "method", "params", "metadata", "request", "response", "error", "calls", "expect"}
	expectFields = []string{"action", "status", "message", "messageContains", "request", "response", "logs"}
	actions      = []string{ActionContinue, ActionReject, ActionRespond, ActionError}
)

// LoadCaseFile reads one case file.
func LoadCaseFile(file string, m *manifest.Manifest) ([]*Case, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, diag.List{{File: file, Err: err}}
	}
	var errs diag.List
	add := func(err error, hook string) {
		var ye *yamljson.Error
		line := 0
		if errors.As(err, &ye) {
			line = ye.Line
		}
		errs.Add(file, line, hook, err)
	}
	root, err := yamljson.Parse(b)
	if err != nil {
		add(err, "")
		return nil, errs
	}
	if root == nil {
		return nil, diag.List{{File: file, Err: errors.New("empty case file: want hook and cases")}}
	}
	top, err := yamljson.Mapping(root, "case file", fileFields...)
	if err != nil {
		add(err, "")
		return nil, errs
	}
	var defHook *registry.Key
	if f, ok := top["hook"]; ok {
		k, err := parseHookRef(f.Value)
		if err != nil {
			add(err, "")
			return nil, errs
		}
		defHook = &k
	}
	defMethod := ""
	if f, ok := top["method"]; ok {
		if defMethod, err = yamljson.String(f.Value, "method"); err != nil {
			add(err, "")
			return nil, errs
		}
	}
	cf, ok := top["cases"]
	if !ok {
		return nil, diag.List{{File: file, Line: root.Line, Err: errors.New("case file: no cases list")}}
	}
	items, err := yamljson.Sequence(cf.Value, "cases")
	if err != nil {
		add(err, "")
		return nil, errs
	}
	var cases []*Case
	for i, item := range items {
		c, err := loadCase(file, item, i, defHook, defMethod, m)
		if err != nil {
			add(err, "")
			continue
		}
		cases = append(cases, c)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cases, nil
}

func parseHookRef(n *yaml.Node) (registry.Key, error) {
	if n.Kind == yaml.ScalarNode {
		k, err := hookname.Parse(strings.Fields(n.Value))
		if err != nil {
			return k, yamljson.Errorf(n, "hook: %v", err)
		}
		return k, nil
	}
	fields, err := yamljson.Mapping(n, "hook", "method", "phase", "name")
	if err != nil {
		return registry.Key{}, err
	}
	var parts [3]string
	for i, name := range []string{"method", "phase", "name"} {
		f, ok := fields[name]
		if !ok {
			return registry.Key{}, yamljson.Errorf(n, "hook: %s is required", name)
		}
		if parts[i], err = yamljson.String(f.Value, "hook."+name); err != nil {
			return registry.Key{}, err
		}
	}
	k, err := hookname.New(parts[0], parts[1], parts[2])
	if err != nil {
		return k, yamljson.Errorf(n, "hook: %v", err)
	}
	return k, nil
}

func loadCase(file string, item *yaml.Node, i int, defHook *registry.Key, defMethod string, m *manifest.Manifest) (*Case, error) {
	fields, err := yamljson.Mapping(item, "case", caseFields...)
	if err != nil {
		return nil, err
	}
	c := &Case{File: file, Line: item.Line, Name: fmt.Sprintf("case %d", i+1)}
	if f, ok := fields["name"]; ok {
		if c.Name, err = yamljson.String(f.Value, "name"); err != nil {
			return nil, err
		}
	}
	switch f, ok := fields["hook"]; {
	case ok:
		if c.Hook, err = parseHookRef(f.Value); err != nil {
			return nil, err
		}
	case defHook != nil:
		c.Hook = *defHook
	default:
		return nil, yamljson.Errorf(item, "case %q: no hook (set hook in the case or at the top of the file)", c.Name)
	}
	if m.Lookup(c.Hook) == nil {
		return nil, yamljson.Errorf(item, "case %q: hook %s is not in %s", c.Name, hookname.Format(c.Hook), m.Path)
	}
	method := defMethod
	if f, ok := fields["method"]; ok {
		if method, err = yamljson.String(f.Value, "method"); err != nil {
			return nil, err
		}
	}
	if method == "" {
		if c.Hook.Method == registry.Wildcard {
			return nil, yamljson.Errorf(item, "case %q: hook %s covers several methods: set method to the one called", c.Name, hookname.Format(c.Hook))
		}
		c.Service, c.Method = c.Hook.Service, c.Hook.Method
	} else {
		if c.Service, c.Method, err = hookname.ParseMethod(method); err != nil {
			return nil, yamljson.Errorf(item, "case %q: %v", c.Name, err)
		}
		if c.Method == registry.Wildcard {
			return nil, yamljson.Errorf(item, "case %q: method must name one method, not %s", c.Name, method)
		}
		if !hookname.Covers(c.Hook, c.Service, c.Method) {
			return nil, yamljson.Errorf(item, "case %q: hook %s does not apply to %s", c.Name, hookname.Format(c.Hook), method)
		}
	}
	jsonField := func(name string) (json.RawMessage, error) {
		f, ok := fields[name]
		if !ok {
			return nil, nil
		}
		b, err := yamljson.ToJSON(f.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	}
	if c.Params, err = jsonField("params"); err != nil {
		return nil, err
	}
	if c.Request, err = jsonField("request"); err != nil {
		return nil, err
	}
	if c.Response, err = jsonField("response"); err != nil {
		return nil, err
	}
	if f, ok := fields["metadata"]; ok {
		if c.Metadata, err = loadMetadata(f.Value); err != nil {
			return nil, err
		}
	}
	if f, ok := fields["error"]; ok {
		b, err := yamljson.ToJSON(f.Value)
		if err != nil {
			return nil, fmt.Errorf("error: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Error); err != nil || c.Error == nil || c.Error.Code == "" {
			return nil, yamljson.Errorf(f.Value, "case %q: error: want {code: CODE, message: ...}", c.Name)
		}
	}
	if f, ok := fields["calls"]; ok {
		b, err := yamljson.ToJSON(f.Value)
		if err != nil {
			return nil, fmt.Errorf("calls: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Calls); err != nil {
			return nil, yamljson.Errorf(f.Value, "case %q: calls: want METHOD: {response: ...} or {error: {code, message}}: %v", c.Name, err)
		}
	}
	f, ok := fields["expect"]
	if !ok {
		return nil, yamljson.Errorf(item, "case %q: expect is required", c.Name)
	}
	if c.Expect, err = loadExpect(f.Value, c.Name); err != nil {
		return nil, err
	}
	return c, nil
}

// MetadataValue returns the value of metadata key as a case or a command
// line gives it: as the hook sees it, so that a binary key's (-bin) is
// base64, padded or not, which the engine encodes again.
func MetadataValue(key, s string) (string, error) {
	if !strings.HasSuffix(key, "-bin") {
		return s, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return "", fmt.Errorf("a binary key's values are written in base64, as hooks see them: %v", err)
		}
	}
	return string(b), nil
}

func loadMetadata(n *yaml.Node) (map[string][]string, error) {
	fields, err := yamljson.Mapping(n, "metadata")
	if err != nil {
		return nil, err
	}
	md := map[string][]string{}
	for k, f := range fields {
		key := strings.ToLower(k)
		values := []*yaml.Node{f.Value}
		if f.Value.Kind == yaml.SequenceNode {
			values, _ = yamljson.Sequence(f.Value, "metadata."+k)
		}
		for _, it := range values {
			s, err := yamljson.String(it, "metadata."+k)
			if err != nil {
				return nil, err
			}
			if s, err = MetadataValue(key, s); err != nil {
				return nil, yamljson.Errorf(it, "metadata.%s: %v", k, err)
			}
			md[key] = append(md[key], s)
		}
	}
	return md, nil
}

func loadExpect(n *yaml.Node, name string) (Expect, error) {
	var e Expect
	fields, err := yamljson.Mapping(n, "expect", expectFields...)
	if err != nil {
		return e, err
	}
	f, ok := fields["action"]
	if !ok {
		return e, yamljson.Errorf(n, "case %q: expect.action is required (%s)", name, strings.Join(actions, ", "))
	}
	if e.Action, err = yamljson.String(f.Value, "expect.action"); err != nil {
		return e, err
	}
	if !slices.Contains(actions, e.Action) {
		return e, yamljson.Errorf(f.Value, "expect.action: %q is not %s", e.Action, strings.Join(actions, ", "))
	}
	if f, ok := fields["status"]; ok {
		s, err := yamljson.String(f.Value, "expect.status")
		if err != nil {
			return e, err
		}
		c, ok := ParseCode(s)
		if !ok {
			return e, yamljson.Errorf(f.Value, "expect.status: %q is not a gRPC code name", s)
		}
		e.Status = CodeName(c)
	}
	if f, ok := fields["message"]; ok {
		s, err := yamljson.String(f.Value, "expect.message")
		if err != nil {
			return e, err
		}
		e.Message = &s
	}
	if f, ok := fields["messageContains"]; ok {
		if e.MessageContains, err = yamljson.String(f.Value, "expect.messageContains"); err != nil {
			return e, err
		}
	}
	for _, name := range []string{"request", "response"} {
		f, ok := fields[name]
		if !ok {
			continue
		}
		b, err := yamljson.ToJSON(f.Value)
		if err != nil {
			return e, fmt.Errorf("expect.%s: %w", name, err)
		}
		if name == "request" {
			e.Request = b
		} else {
			e.Response = b
		}
	}
	if f, ok := fields["logs"]; ok {
		items, err := yamljson.Sequence(f.Value, "expect.logs")
		if err != nil {
			return e, err
		}
		for _, it := range items {
			lf, err := yamljson.Mapping(it, "expect.logs item", "level", "message")
			if err != nil {
				return e, err
			}
			var l ExpectLog
			if v, ok := lf["level"]; ok {
				if l.Level, err = yamljson.String(v.Value, "level"); err != nil {
					return e, err
				}
				l.Level = strings.ToLower(l.Level)
			}
			if v, ok := lf["message"]; ok {
				if l.Message, err = yamljson.String(v.Value, "message"); err != nil {
					return e, err
				}
			}
			e.Logs = append(e.Logs, l)
		}
	}
	return e, nil
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Case *Case `json:"-"`
	// Pass is true when the actual result matches the expectation.
	Pass bool `json:"pass"`
	// Problems say how the result differs from the expectation.
	Problems []string `json:"problems,omitempty"`
	Expected Expect   `json:"expected"`
	Actual   *Result  `json:"actual,omitempty"`
}

// RunCase runs a case against its hook in m.
func (r *Runner) RunCase(ctx context.Context, m *manifest.Manifest, c *Case) *CaseResult {
	cr := &CaseResult{Case: c, Expected: c.Expect}
	fail := func(format string, a ...any) *CaseResult {
		cr.Problems = append(cr.Problems, fmt.Sprintf(format, a...))
		return cr
	}
	mh := m.Lookup(c.Hook)
	if mh == nil {
		return fail("hook %s is not in %s", hookname.Format(c.Hook), m.Path)
	}
	hook := mh.Compiled
	if c.Params != nil || len(hook.Script.Utils()) > 0 {
		// Utils run as the manifest's utils: section has them, never as
		// the stand-ins that let a manifest check without them.
		doc := *mh.Doc
		if c.Params != nil {
			doc.Params = c.Params
		}
		h, err := registry.CompileWithUtils(c.Hook, &doc, m.UtilModules(true))
		if err != nil {
			return fail("%v", err)
		}
		hook = h
	}
	res, err := r.Run(ctx, &Input{
		Hook: hook, Service: c.Service, Method: c.Method,
		Metadata: c.Metadata, Request: c.Request, Response: c.Response, Error: c.Error, Calls: c.Calls,
	})
	if err != nil {
		return fail("%v", err)
	}
	cr.Actual = res
	cr.check(r, c)
	cr.Pass = len(cr.Problems) == 0
	return cr
}

func (cr *CaseResult) check(r *Runner, c *Case) {
	e, res := c.Expect, cr.Actual
	problem := func(format string, a ...any) { cr.Problems = append(cr.Problems, fmt.Sprintf(format, a...)) }
	if res.Action != e.Action {
		problem("action: got %s; want %s", describe(res), e.Action)
		return
	}
	if e.Status != "" || e.Message != nil || e.MessageContains != "" {
		if res.Status == nil {
			problem("status: got none; want %s", e.Status)
		} else {
			if e.Status != "" && res.Status.Code != e.Status {
				problem("status: got %s; want %s", res.Status.Code, e.Status)
			}
			if e.Message != nil && res.Status.Message != *e.Message {
				problem("message: got %q; want %q", res.Status.Message, *e.Message)
			}
			if e.MessageContains != "" && !strings.Contains(res.Status.Message, e.MessageContains) {
				problem("message: got %q; want it to contain %q", res.Status.Message, e.MessageContains)
			}
		}
	}
	t, err := r.Types(c.Service, c.Method)
	if err != nil {
		problem("%v", err)
		return
	}
	compare := func(what string, want json.RawMessage, got json.RawMessage, mtIsResponse bool) {
		if want == nil {
			return
		}
		mt := t.Request
		if mtIsResponse {
			mt = t.Response
		}
		wantMsg, err := r.Parse(mt, want)
		if err != nil {
			problem("expect.%s: %v", what, err)
			return
		}
		if got == nil || res.message == nil {
			problem("%s: got none; want %s", what, r.JSON(wantMsg))
			return
		}
		if !proto.Equal(res.message, wantMsg) {
			problem("%s: got %s; want %s", what, got, r.JSON(wantMsg))
		}
	}
	compare("request", e.Request, res.Request, false)
	compare("response", e.Response, res.Response, true)
	for _, want := range e.Logs {
		found := slices.ContainsFunc(res.Logs, func(l Log) bool {
			return (want.Level == "" || l.Level == want.Level) && strings.Contains(l.Message, want.Message)
		})
		if !found {
			problem("logs: got %s; want a line %s", showLogs(res.Logs), showWantLog(want))
		}
	}
}

func describe(res *Result) string {
	switch {
	case res.Status != nil:
		return fmt.Sprintf("%s %s %q%s", res.Action, res.Status.Code, res.Status.Message, res.Error.where())
	case res.Skipped != nil:
		return fmt.Sprintf("%s (after skipping a %s failure: %s)", res.Action, res.Skipped.Kind, res.Skipped.Message)
	}
	return res.Action
}

func showLogs(logs []Log) string {
	if len(logs) == 0 {
		return "no lines"
	}
	parts := make([]string, len(logs))
	for i, l := range logs {
		parts[i] = fmt.Sprintf("%s %q", l.Level, l.Message)
	}
	return strings.Join(parts, ", ")
}

func showWantLog(l ExpectLog) string {
	if l.Level == "" {
		return fmt.Sprintf("containing %q", l.Message)
	}
	return fmt.Sprintf("at %s containing %q", l.Level, l.Message)
}
