package hookdoc_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookdoc"
)

var key = registry.Key{Service: "a.S", Method: "M", Phase: engine.Pre, Name: "x"}

func doc(t *testing.T, s string) *registry.Document {
	t.Helper()
	d, err := registry.DecodeDocument([]byte(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return d
}

func TestEqualComparesWhatTheDaemonSees(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		want bool
	}{
		{"params in another key order", `{"script":"1","params":{"a":1,"b":[1,2]}}`, `{"params":{"b":[1,2],"a":1},"script":"1"}`, true},
		{"params 1 and 1.0", `{"script":"1","params":{"a":1}}`, `{"script":"1","params":{"a":1.0}}`, true},
		{"params absent, null and {}", `{"script":"1"}`, `{"script":"1","params":null}`, true},
		{"params absent and {}", `{"script":"1"}`, `{"script":"1","params":{}}`, true},
		{"enabled absent and true", `{"script":"1"}`, `{"script":"1","enabled":true}`, true},
		{"onError absent and abort", `{"script":"1"}`, `{"script":"1","onError":"abort"}`, true},
		{"timeouts 1s and 1000ms", `{"script":"1","timeout":"1s"}`, `{"script":"1","timeout":"1000ms"}`, true},
		{"order absent and 0", `{"script":"1"}`, `{"script":"1","order":0}`, true},
		{"another script", `{"script":"1"}`, `{"script":"2"}`, false},
		{"a script with a trailing newline", `{"script":"1"}`, `{"script":"1\n"}`, false},
		{"other params", `{"script":"1","params":{"a":1}}`, `{"script":"1","params":{"a":2}}`, false},
		{"disabled", `{"script":"1"}`, `{"script":"1","enabled":false}`, false},
		{"a timeout and the default", `{"script":"1"}`, `{"script":"1","timeout":"100ms"}`, false},
		{"onError continue", `{"script":"1"}`, `{"script":"1","onError":"continue"}`, false},
		{"another description", `{"script":"1"}`, `{"script":"1","description":"d"}`, false},
		{"isolation absent and process", `{"script":"1"}`, `{"script":"1","isolation":"process"}`, false},
		{"isolation process and inprocess", `{"script":"1","isolation":"process"}`, `{"script":"1","isolation":"inprocess"}`, false},
		{"the same isolation", `{"script":"1","isolation":"process"}`, `{"isolation":"process","script":"1"}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hookdoc.Equal(doc(t, tc.a), doc(t, tc.b)); got != tc.want {
				t.Errorf("Equal(%s, %s): got %v; want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestEncodeWritesWhatTheRegistryAccepts(t *testing.T) {
	f := false
	d := &registry.Document{Script: "a < b && c", Params: json.RawMessage(`{ "k" : "<v>" }`), Enabled: &f, Order: 3, Timeout: "1s", OnError: registry.Continue, Description: "d", Isolation: registry.Process}
	raw, err := hookdoc.Encode(key, d, registry.DefaultMaxTimeout)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"script":"a < b && c","params":{"k":"<v>"},"enabled":false,"order":3,"timeout":"1s","onError":"continue","description":"d","isolation":"process"}`
	if string(raw) != want {
		t.Errorf("got %s; want %s", raw, want)
	}
	if _, err := registry.Build(key, raw); err != nil {
		t.Errorf("the registry refuses it: %v", err)
	}
}

func TestEncodeRefusesWhatTheDaemonWould(t *testing.T) {
	cases := []struct {
		name string
		doc  registry.Document
		want string
	}{
		{"no script", registry.Document{}, "field script: required"},
		{"a script that does not compile", registry.Document{Script: "var = 1"}, "field script"},
		{"a bad timeout", registry.Document{Script: "1", Timeout: "1 day"}, "field timeout"},
		{"a negative timeout", registry.Document{Script: "1", Timeout: "-1s"}, "must be positive"},
		{"a bad onError", registry.Document{Script: "1", OnError: "retry"}, "field onError"},
		{"a timeout over the daemon's default limit", registry.Document{Script: "1", Timeout: "1h"}, `"1h" is more than the limit of 5s (--max-hook-timeout)`},
		{"an unknown isolation", registry.Document{Script: "1", Isolation: "thread"}, `field isolation: "thread" is not "process" or "inprocess"`},
		{"params that are not JSON", registry.Document{Script: "1", Params: json.RawMessage(`{a}`)}, "field params"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hookdoc.Encode(key, &tc.doc, registry.DefaultMaxTimeout)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestScriptPositionFindsTheLine(t *testing.T) {
	cases := []struct {
		name, src  string
		line, col  int
		msgContain string
	}{
		{"a parse error", "// one\n// two\nvar x = ;\n", 3, 9, "SyntaxError: Unexpected token ;"},
		{"an unclosed function", "module.exports = function () {\n", 2, 1, "SyntaxError"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.Compile(key, &registry.Document{Script: tc.src})
			if err == nil {
				t.Fatal("compiled; want an error")
			}
			pos, ok := hookdoc.ScriptPosition(err)
			if !ok {
				t.Fatalf("no position in %v", err)
			}
			if pos.Line != tc.line || pos.Column != tc.col || !strings.Contains(pos.Msg, tc.msgContain) {
				t.Errorf("got %d:%d %q; want %d:%d containing %q", pos.Line, pos.Column, pos.Msg, tc.line, tc.col, tc.msgContain)
			}
		})
	}
}

func TestSummaryAndFieldChanges(t *testing.T) {
	a := doc(t, `{"script":"a\nb\n","params":{"x":1},"order":1}`)
	b := doc(t, `{"script":"a\nc\nd\n","params":{"x":2},"order":1,"enabled":false,"timeout":"2s"}`)
	want := `params: {"x":1} → {"x":2}; enabled: true → false; timeout: default → 2s; script: +2 -1 lines`
	if got := hookdoc.Summary(a, b); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if got := hookdoc.Summary(a, a); got != "no change" {
		t.Errorf("got %q; want no change", got)
	}
	diff := hookdoc.ScriptDiff("old", "new", a.Script, b.Script)
	for _, w := range []string{"--- old", "+++ new", "-b", "+c", "+d"} {
		if !strings.Contains(diff, w) {
			t.Errorf("diff: got\n%s\nwant it to contain %q", diff, w)
		}
	}
}
