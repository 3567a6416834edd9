package registry

import (
	"strings"
	"testing"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
)

func TestDecodeDocument(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
		check   func(t *testing.T, h *Hook)
	}{
		{name: "script only takes the defaults", doc: `{"script":"1"}`, check: func(t *testing.T, h *Hook) {
			if !h.Doc.IsEnabled() || h.Doc.Order != 0 || h.Timeout != 0 || h.OnError != Abort {
				t.Fatalf("defaults = enabled %v order %d timeout %v onError %q; want true 0 0 abort",
					h.Doc.IsEnabled(), h.Doc.Order, h.Timeout, h.OnError)
			}
			if m, ok := h.Params.(map[string]any); !ok || len(m) != 0 {
				t.Fatalf("params = %#v; want {}", h.Params)
			}
		}},
		{name: "every field", doc: `{"script":"1","params":{"a":[1]},"enabled":false,"order":-3,"timeout":"250ms","onError":"continue","description":"d"}`,
			check: func(t *testing.T, h *Hook) {
				if h.Doc.IsEnabled() || h.Doc.Order != -3 || h.Timeout != 250*time.Millisecond || h.OnError != Continue || h.Doc.Description != "d" {
					t.Fatalf("got %+v; want every field set", h.Doc)
				}
				if h.Params.(map[string]any)["a"].([]any)[0] != 1.0 {
					t.Fatalf("params = %#v", h.Params)
				}
			}},
		{name: "lang ts compiles TypeScript", doc: `{"script":"export default (ctx: any): void => {}","lang":"ts"}`, check: func(t *testing.T, h *Hook) {
			if h.Doc.Lang != "ts" || !h.Script.IsModule() {
				t.Fatalf("lang %q module %v; want ts and a module", h.Doc.Lang, h.Script.IsModule())
			}
		}},
		{name: "TypeScript without lang ts is a JavaScript syntax error", doc: `{"script":"let x: number = 1"}`, wantErr: "field script: compile"},
		{name: "a TypeScript syntax error names the key and the TypeScript line and column", doc: `{"script":"let a = 1;\nlet x: number = ;","lang":"ts"}`,
			wantErr: `document: field script: a.B/M/pre/x:2:17: Unexpected ";"`},
		{name: "lang must be js or ts", doc: `{"script":"1","lang":"python"}`, wantErr: `field lang: "python" is not "js" or "ts"`},
		{name: "lang must be a string", doc: `{"script":"1","lang":1}`, wantErr: `field lang: want a string`},
		{name: "style apimaker calls the module's function with g", doc: `{"script":"module.exports = g => {}","style":"apimaker"}`, check: func(t *testing.T, h *Hook) {
			if h.Doc.Style != engine.APIMaker || h.Script.Style() != engine.APIMaker {
				t.Fatalf("style %q, script's %q; want apimaker", h.Doc.Style, h.Script.Style())
			}
		}},
		{name: "style apimaker in TypeScript", doc: `{"script":"import * as T from 'types';\nasync function main(g: T.IAMGlobal) {}\nmodule.exports = main;","lang":"ts","style":"apimaker"}`, check: func(t *testing.T, h *Hook) {
			if h.Script.Style() != engine.APIMaker {
				t.Fatalf("script's style %q; want apimaker", h.Script.Style())
			}
		}},
		{name: "style apimaker needs a module", doc: `{"script":"g.res.output = 1","style":"apimaker"}`, wantErr: `field style: compile: `},
		{name: "style must be apimaker or absent", doc: `{"script":"1","style":"express"}`, wantErr: `field style: "express" is not "apimaker" (or absent, for the ctx style)`},
		{name: "style must be a string", doc: `{"script":"1","style":true}`, wantErr: `field style: want a string`},
		{name: "params may be any JSON", doc: `{"script":"1","params":[1,"x"]}`},
		{name: "null params mean {}", doc: `{"script":"1","params":null}`},
		{name: "unknown field is named", doc: `{"script":"1","enable":true}`, wantErr: `unknown field "enable"`},
		{name: "script is required", doc: `{"params":{}}`, wantErr: "field script: required"},
		{name: "script must compile", doc: `{"script":"function ("}`, wantErr: "field script: compile"},
		{name: "order must be an integer", doc: `{"script":"1","order":1.5}`, wantErr: "field order: want an integer"},
		{name: "enabled must be a boolean", doc: `{"script":"1","enabled":"yes"}`, wantErr: "field enabled: want true or false"},
		{name: "timeout must be a duration", doc: `{"script":"1","timeout":"100"}`, wantErr: `field timeout: "100" is not a Go duration`},
		{name: "timeout must be positive", doc: `{"script":"1","timeout":"-1s"}`, wantErr: "must be positive"},
		{name: "timeout at the limit is accepted", doc: `{"script":"1","timeout":"5s"}`},
		{name: "timeout over the limit names the limit and the flag", doc: `{"script":"1","timeout":"1h"}`,
			wantErr: `document: field timeout: "1h" is more than the limit of 5s (--max-hook-timeout)`},
		{name: "isolation process", doc: `{"script":"1","isolation":"process"}`, check: func(t *testing.T, h *Hook) {
			if h.Isolation != Process {
				t.Fatalf("isolation = %q; want process", h.Isolation)
			}
		}},
		{name: "isolation inprocess", doc: `{"script":"1","isolation":"inprocess"}`, check: func(t *testing.T, h *Hook) {
			if h.Isolation != InProcess {
				t.Fatalf("isolation = %q; want inprocess", h.Isolation)
			}
		}},
		{name: "isolation absent leaves the choice to the server", doc: `{"script":"1"}`, check: func(t *testing.T, h *Hook) {
			if h.Isolation != "" {
				t.Fatalf("isolation = %q; want empty", h.Isolation)
			}
		}},
		{name: "isolation must be known", doc: `{"script":"1","isolation":"thread"}`,
			wantErr: `document: field isolation: "thread" is not "process" or "inprocess"`},
		{name: "isolation must be a string", doc: `{"script":"1","isolation":1}`, wantErr: "field isolation: want a string"},
		{name: "unknown field lists isolation among the known ones", doc: `{"script":"1","x":1}`, wantErr: "description, isolation, owner)"},
		{name: "onError must be known", doc: `{"script":"1","onError":"ignore"}`, wantErr: `field onError: "ignore"`},
		{name: "not JSON", doc: `script: x`, wantErr: "invalid JSON"},
		{name: "not an object", doc: `"x"`, wantErr: "want an object"},
		{name: "trailing data", doc: `{"script":"1"} {}`, wantErr: "unexpected data after"},
		{name: "empty", doc: ``, wantErr: "empty"},
	}
	k := Key{Service: "a.B", Method: "M", Phase: "pre", Name: "x"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Build(k, []byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Build(%s) error = %v; want it to contain %q", tt.doc, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build(%s) error = %v", tt.doc, err)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
		})
	}
}

func TestBuildWithinAServerLimit(t *testing.T) {
	k := Key{Service: "a.B", Method: "M", Phase: "pre", Name: "x"}
	tests := []struct {
		name    string
		max     time.Duration
		timeout string
		wantErr string
	}{
		{name: "a higher limit admits a longer timeout", max: time.Minute, timeout: "30s"},
		{name: "a lower limit refuses the default limit", max: time.Second, timeout: "2s", wantErr: `"2s" is more than the limit of 1s`},
		{name: "zero means no limit", max: 0, timeout: "1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildWithin(k, []byte(`{"script":"1","timeout":"`+tt.timeout+`"}`), tt.max)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("BuildWithin(timeout %s, max %v) error = %v; want %q", tt.timeout, tt.max, err, tt.wantErr)
			}
		})
	}
}

func TestSkipsOnlyWithOnErrorContinueAndASkippableKind(t *testing.T) {
	abort := hook(t, "a.B/M/pre/x", `{"script":"1"}`)
	cont := hook(t, "a.B/M/pre/y", `{"script":"1","onError":"continue"}`)
	for _, k := range []engine.Kind{engine.Thrown, engine.Timeout, engine.Crashed, engine.Overloaded, engine.Exhausted, engine.BadResult, engine.Canceled} {
		if abort.Skips(k) {
			t.Errorf("onError abort: Skips(%v) = true; want false", k)
		}
		if got := cont.Skips(k); got != k.Skippable() {
			t.Errorf("onError continue: Skips(%v) = %v; want %v", k, got, k.Skippable())
		}
	}
}
