package registry

import (
	"strings"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

func TestParseKey(t *testing.T) {
	const p = DefaultPrefix
	tests := []struct {
		name    string
		key     string
		want    Key
		wantErr string
		// wantTarget: on error, the key still names the methods it covers.
		wantTarget bool
	}{
		{name: "exact method pre-hook", key: p + "hooks/events.v1.EventService/SendEvent/pre/addvalue",
			want: Key{"events.v1.EventService", "SendEvent", engine.Pre, "addvalue"}},
		{name: "service-wide post-hook", key: p + "hooks/events.v1.EventService/*/post/audit.v2",
			want: Key{"events.v1.EventService", "*", engine.Post, "audit.v2"}},
		{name: "error hook", key: p + "hooks/events.v1.EventService/GetEvents/error/fallback",
			want: Key{"events.v1.EventService", "GetEvents", engine.ErrorPhase, "fallback"}},
		{name: "global hook", key: p + "hooks/*/*/pre/0-first_hook",
			want: Key{"*", "*", engine.Pre, "0-first_hook"}},
		{name: "name of 63 characters", key: p + "hooks/a.B/M/pre/" + strings.Repeat("a", 63),
			want: Key{"a.B", "M", engine.Pre, strings.Repeat("a", 63)}},
		{name: "name of 64 characters is too long", key: p + "hooks/a.B/M/pre/" + strings.Repeat("a", 64),
			wantErr: "does not match", wantTarget: true},
		{name: "upper-case name", key: p + "hooks/a.B/M/pre/AddValue", wantErr: `name "AddValue"`, wantTarget: true},
		{name: "name starting with a dot", key: p + "hooks/a.B/M/pre/.x", wantErr: `name ".x"`, wantTarget: true},
		{name: "unknown phase", key: p + "hooks/a.B/M/before/x", wantErr: `phase "before" is not "pre", "post" or "error"`, wantTarget: true},
		{name: "global service with a method", key: p + "hooks/*/SendEvent/pre/x", wantErr: `service "*" needs method "*"`},
		{name: "too few segments", key: p + "hooks/a.B/M/pre", wantErr: "want /apihooks/hooks/<service>/<method>/<phase>/<name>"},
		{name: "too many segments", key: p + "hooks/a.B/M/pre/x/y", wantErr: "want"},
		{name: "bad service", key: p + "hooks/a..B/M/pre/x", wantErr: `service "a..B"`},
		{name: "other prefix", key: "/other/hooks/a.B/M/pre/x", wantErr: "is not under"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(p, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey(%q) error = %v; want it to contain %q", tt.key, err, tt.wantErr)
				}
				if hasTarget := got.Service != ""; hasTarget != tt.wantTarget {
					t.Fatalf("ParseKey(%q) target = %+v; want target %v", tt.key, got, tt.wantTarget)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey(%q) error = %v", tt.key, err)
			}
			if got != tt.want {
				t.Fatalf("ParseKey(%q) = %+v; want %+v", tt.key, got, tt.want)
			}
			if path := got.Path(p); path != tt.key {
				t.Fatalf("Path() = %q; want %q", path, tt.key)
			}
		})
	}
}
