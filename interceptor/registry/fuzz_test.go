package registry

import (
	"strings"
	"testing"
)

// FuzzBuild checks that no document, however malformed, makes Build panic,
// and that what Build accepts decodes again to the same document.
func FuzzBuild(f *testing.F) {
	for _, seed := range []string{
		`{"script":"1"}`,
		`{"script":"module.exports = c => ({status: 403})","params":{"a":[1,{"b":null}]},"enabled":false,"order":-3,"timeout":"250ms","onError":"continue","description":"d"}`,
		`{"script":"function (","order":1.5}`,
		`{"script":"1","timeout":"-1s"}`,
		`{"script":"1"} trailing`,
		`[]`, `null`, ``, `{"script":"while(true){}"}`,
	} {
		f.Add([]byte(seed))
	}
	k := Key{Service: "a.B", Method: "M", Phase: "pre", Name: "x"}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Build(k, b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "document: ") {
				t.Fatalf("Build error %q does not say it is about the document", err)
			}
			return
		}
		if h.Script == nil || h.Doc == nil {
			t.Fatalf("Build(%q) accepted a document without a compiled script", b)
		}
	})
}

// FuzzParseKey checks that no key makes ParseKey panic, and that every key
// it accepts formats back to itself.
func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{
		"/apihooks/hooks/events.v1.EventService/SendEvent/pre/addvalue",
		"/apihooks/hooks/*/*/post/x", "/apihooks/hooks/a/b/c", "/apihooks/hooks/*/M/pre/x", "/other/x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k, err := ParseKey(DefaultPrefix, key)
		if err != nil {
			return
		}
		if got := k.Path(DefaultPrefix); got != key {
			t.Fatalf("ParseKey(%q).Path() = %q; want the key back", key, got)
		}
	})
}
