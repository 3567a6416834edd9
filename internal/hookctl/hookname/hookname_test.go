package hookname_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/hookctl/hookname"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		want    string // the key's String(), or the error's text
		wantErr bool
	}{
		{"three words", []string{"events.v1.EventService/SendEvent", "pre", "addvalue"}, "events.v1.EventService/SendEvent/pre/addvalue", false},
		{"the key form", []string{"events.v1.EventService/SendEvent/post/x"}, "events.v1.EventService/SendEvent/post/x", false},
		{"a service-wide hook", []string{"events.v1.EventService/*", "pre", "a"}, "events.v1.EventService/*/pre/a", false},
		{"a global hook", []string{"*/*", "post", "a"}, "*/*/post/a", false},
		{"a leading slash", []string{"/events.v1.EventService/SendEvent", "pre", "a"}, "events.v1.EventService/SendEvent/pre/a", false},
		{"a wildcard service with a method", []string{"*/SendEvent", "pre", "a"}, `service "*" needs method "*"`, true},
		{"a bad phase", []string{"a.B/C", "mid", "a"}, `phase "mid"`, true},
		{"a bad name", []string{"a.B/C", "pre", "A"}, `name "A" does not match`, true},
		{"no method", []string{"a.B", "pre", "a"}, "want SERVICE/METHOD", true},
		{"two words", []string{"a.B/C", "pre"}, "want a hook as SERVICE/METHOD PHASE NAME", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := hookname.Parse(tc.args)
			switch {
			case tc.wantErr && err == nil:
				t.Fatalf("got %v; want an error containing %q", k, tc.want)
			case tc.wantErr:
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got error %q; want it to contain %q", err, tc.want)
				}
			case err != nil:
				t.Fatalf("got error %v; want %s", err, tc.want)
			case k.String() != tc.want:
				t.Errorf("got %s; want %s", k, tc.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	k := func(s string) registry.Key {
		key, err := hookname.Parse([]string{s})
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	cases := []struct {
		key, service, method string
		want                 bool
	}{
		{"a.S/M/pre/x", "a.S", "M", true},
		{"a.S/M/pre/x", "a.S", "N", false},
		{"a.S/M/pre/x", "a.S", "", true},
		{"a.S/*/pre/x", "a.S", "N", true},
		{"a.S/*/pre/x", "b.S", "N", false},
		{"*/*/pre/x", "b.S", "N", true},
	}
	for _, tc := range cases {
		if got := hookname.Covers(k(tc.key), tc.service, tc.method); got != tc.want {
			t.Errorf("Covers(%s, %s, %s): got %v; want %v", tc.key, tc.service, tc.method, got, tc.want)
		}
	}
}

func TestCompareSortsPreBeforePost(t *testing.T) {
	var keys []registry.Key
	for _, s := range []string{"b.S/M/post/a", "b.S/M/pre/z", "a.S/M/post/a", "b.S/M/pre/a"} {
		k, err := hookname.Parse([]string{s})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, hookname.Compare)
	var got []string
	for _, k := range keys {
		got = append(got, k.String())
	}
	want := []string{"a.S/M/post/a", "b.S/M/pre/a", "b.S/M/pre/z", "b.S/M/post/a"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}
