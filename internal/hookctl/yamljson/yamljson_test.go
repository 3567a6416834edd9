package yamljson_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/internal/hookctl/yamljson"
)

func TestToJSON(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"keeps the order of keys", "b: 1\na: 2\nc: 3", `{"b":1,"a":2,"c":3}`},
		{"nests maps and lists", "a: [1, {b: x}]", `{"a":[1,{"b":"x"}]}`},
		{"reads scalars as YAML types them", "i: 0x1F\nf: 1.5\nt: true\nn: null\ns: '12'", `{"i":31,"f":1.5,"t":true,"n":null,"s":"12"}`},
		{"keeps timestamps as text", "d: 2001-12-14", `{"d":"2001-12-14"}`},
		{"follows aliases", "a: &x {k: 1}\nb: *x", `{"a":{"k":1},"b":{"k":1}}`},
		{"merges merge keys, explicit keys winning", "base: &b {k: 1, j: 2}\nm: {<<: *b, k: 3}", `{"base":{"k":1,"j":2},"m":{"k":3,"j":2}}`},
		{"escapes strings", `s: "a\"b<"`, `{"s":"a\"b\u003c"}`},
		{"reads big integers", "n: 18446744073709551615", `{"n":18446744073709551615}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := yamljson.Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got, err := yamljson.ToJSON(n)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %s; want %s", got, tc.want)
			}
		})
	}
}

func TestToJSONRefusesWhatJSONCannotHold(t *testing.T) {
	for _, y := range []string{"a: .nan", "a: .inf", "a: -.inf"} {
		n, err := yamljson.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := yamljson.ToJSON(n); err == nil {
			t.Errorf("%s: got no error; want one", y)
		}
	}
}

func TestErrorsCarryLines(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"a syntax error", "a: 1\nb: x\n c: 2\n", 3, "invalid YAML: mapping values are not allowed"},
		{"an unknown field", "a: 1\n\nzz: 2\n", 3, `unknown field "zz" (want a, b)`},
		{"a field given twice", "a: 1\nb: 2\na: 3\n", 3, `field "a" given twice (first at line 1)`},
		{"two documents", "a: 1\n---\nb: 2\n", 2, "only one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := yamljson.Parse([]byte(tc.yaml))
			if err == nil {
				_, err = yamljson.Mapping(n, "top", "a", "b")
			}
			var ye *yamljson.Error
			if !errors.As(err, &ye) {
				t.Fatalf("got %v; want a *yamljson.Error", err)
			}
			if ye.Line != tc.line || !strings.Contains(ye.Msg, tc.want) {
				t.Errorf("got line %d %q; want line %d containing %q", ye.Line, ye.Msg, tc.line, tc.want)
			}
		})
	}
}

func TestFromJSONKeepsOrderAndTypes(t *testing.T) {
	n, err := yamljson.FromJSON([]byte(`{"z":1,"a":[true,null,"x\ny",2.5]}`))
	if err != nil {
		t.Fatal(err)
	}
	back, err := yamljson.ToJSON(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":1,"a":[true,null,"x\ny",2.5]}`; string(back) != want {
		t.Errorf("got %s; want %s", back, want)
	}
}
