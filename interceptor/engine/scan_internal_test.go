package engine

import "testing"

// TestSourceUsesErrsOnTheSideOfYes checks what the scan reports a source
// may reach without the global object: a run guards those compilers before
// the script starts, so a miss would leave one unguarded.
func TestSourceUsesErrsOnTheSideOfYes(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want sourceUses
	}{
		{"a * b / c ** d", sourceUses{}},
		{"/* * */ x = 2 *\n3", sourceUses{}},
		{"function* g() {}", sourceUses{generator: true}},
		{"({ *g() {} })", sourceUses{generator: true}},
		{"class A { static *g() {} }", sourceUses{generator: true}},
		{"async () => 1", sourceUses{async: true}},
		{"x = /a+/.test(s)", sourceUses{regexp: true}},
		{"if (a) /a/g.exec(s)", sourceUses{regexp: true}},
		{"eval('1')", sourceUses{eval: true}},
		{"[...eval(s)]", sourceUses{eval: true}},
		{"ev\\u0061l(s)", sourceUses{eval: true}},
		{"x.eval(s); y?.eval(s)", sourceUses{}},
		{"with (o) {}", sourceUses{with: true}},
		{"a.with(0, 1)", sourceUses{}},
	} {
		got, err := checkSource(tc.src)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.src, got, err, tc.want)
		}
	}
}
