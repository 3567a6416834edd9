package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

func TestEachInvalidFieldGivesAFieldErrorNamingIt(t *testing.T) {
	k := Key{Service: "a.B", Method: "M", Phase: "pre", Name: "x"}
	hook := func(b []byte) error { _, err := Build(k, b); return err }
	params := func(b []byte) error {
		d := Document{Script: "1", Params: b}
		return d.Validate()
	}
	cache := func(b []byte) error { _, err := DecodeCacheDocument(b); return err }
	util := func(b []byte) error { _, err := DecodeUtilDocument(b); return err }
	active := func(b []byte) error { _, err := DecodeActiveDocument(b); return err }
	tests := []struct {
		name   string
		decode func([]byte) error
		doc    string
		// wantErr starts the error's text, which names the field.
		wantErr   string
		wantField string
	}{
		{"hook script missing", hook, `{"order":1}`, "document: field script: required", "script"},
		{"hook script blank", hook, `{"script":"  "}`, "document: field script: required", "script"},
		{"hook script not a string", hook, `{"script":1}`, "document: field script: want a string", "script"},
		{"hook script that does not compile", hook, `{"script":"function ("}`, "document: field script: ", "script"},
		{"hook lang unknown", hook, `{"script":"1","lang":"python"}`, `document: field lang: "python" is not`, "lang"},
		{"hook lang not a string", hook, `{"script":"1","lang":1}`, "document: field lang: want a string", "lang"},
		{"hook style unknown", hook, `{"script":"1","style":"express"}`, `document: field style: "express" is not`, "style"},
		{"hook style apimaker without a module", hook, `{"script":"g.res.output = 1","style":"apimaker"}`, "document: field style: compile: ", "style"},
		{"hook params not JSON", params, `{"a":`, "document: field params: not valid JSON", "params"},
		{"hook enabled not a boolean", hook, `{"script":"1","enabled":"yes"}`, "document: field enabled: want true or false", "enabled"},
		{"hook order not an integer", hook, `{"script":"1","order":1.5}`, "document: field order: want an integer", "order"},
		{"hook timeout not a duration", hook, `{"script":"1","timeout":"100"}`, `document: field timeout: "100" is not a Go duration`, "timeout"},
		{"hook timeout not positive", hook, `{"script":"1","timeout":"-1s"}`, `document: field timeout: "-1s" must be positive`, "timeout"},
		{"hook timeout over the limit", hook, `{"script":"1","timeout":"1h"}`, `document: field timeout: "1h" is more than`, "timeout"},
		{"hook onError unknown", hook, `{"script":"1","onError":"ignore"}`, `document: field onError: "ignore" is not`, "onError"},
		{"hook description not a string", hook, `{"script":"1","description":[]}`, "document: field description: want a string", "description"},
		{"hook isolation unknown", hook, `{"script":"1","isolation":"thread"}`, `document: field isolation: "thread" is not`, "isolation"},
		{"hook owner not a string", hook, `{"script":"1","owner":{}}`, "document: field owner: want a string", "owner"},
		{"cache ttl missing", cache, `{}`, "document: field ttl: required", "ttl"},
		{"cache ttl not a duration", cache, `{"ttl":"5"}`, `document: field ttl: "5" is not a Go duration`, "ttl"},
		{"cache ttl not positive", cache, `{"ttl":"0s"}`, `document: field ttl: "0s" must be positive`, "ttl"},
		{"cache ttl too long", cache, `{"ttl":"10000h"}`, `document: field ttl: "10000h" is more than`, "ttl"},
		{"cache maxEntries out of range", cache, `{"ttl":"1s","maxEntries":0}`, "document: field maxEntries: 0 is not between", "maxEntries"},
		{"cache maxBytes out of range", cache, `{"ttl":"1s","maxBytes":-1}`, "document: field maxBytes: -1 is not between", "maxBytes"},
		{"cache keyMetadata not lower-case", cache, `{"ttl":"1s","keyMetadata":["X-Id"]}`, `document: field keyMetadata: "X-Id" is not a lower-case`, "keyMetadata"},
		{"cache keyMetadata listed twice", cache, `{"ttl":"1s","keyMetadata":["a","a"]}`, `document: field keyMetadata: "a" is listed twice`, "keyMetadata"},
		{"util script missing", util, `{"lang":"js"}`, "util document: field script: required", "script"},
		{"util lang unknown", util, `{"script":"1","lang":"go"}`, `util document: field lang: "go" is not`, "lang"},
		{"util version not positive", active, `{"version":0}`, "util document: field version: 0 is not a positive integer", "version"},
		{"util version not an integer", active, `{"version":"1"}`, "util document: field version: want an integer", "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode([]byte(tt.doc))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("decode(%s) error = %v; want it to start with %q", tt.doc, err, tt.wantErr)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("decode(%s) error = %#v; want a *FieldError", tt.doc, err)
			}
			if fe.Field != tt.wantField {
				t.Fatalf("decode(%s) FieldError.Field = %q; want %q", tt.doc, fe.Field, tt.wantField)
			}
		})
	}
}

func TestErrorsAboutNoOneFieldAreNoFieldError(t *testing.T) {
	for _, doc := range []string{``, `"x"`, `{"script":`, `{"script":"1","enable":true}`, `{"script":"1"} {}`} {
		_, err := DecodeDocument([]byte(doc))
		var fe *FieldError
		if err == nil || errors.As(err, &fe) {
			t.Errorf("DecodeDocument(%s) error = %v (FieldError %v); want an error that is no FieldError", doc, err, fe)
		}
	}
}

func TestAScriptErrorStaysReachableThroughItsFieldError(t *testing.T) {
	_, err := Build(Key{Service: "a.B", Method: "M", Phase: "pre", Name: "x"}, []byte(`{"script":"let a = 1;\nlet x: number = ;","lang":"ts"}`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "script" {
		t.Fatalf("Build error = %v; want a FieldError for script", err)
	}
	var ts *engine.TranspileError
	if !errors.As(err, &ts) || ts.Line != 2 {
		t.Fatalf("Build error = %#v; want it to wrap the TypeScript error at line 2", err)
	}
}
