package registry

import (
	"fmt"
	"slices"
	"testing"
)

func hook(t *testing.T, key string, doc string) *Hook {
	t.Helper()
	k, err := ParseKey(DefaultPrefix, DefaultPrefix+"hooks/"+key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Build(k, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ids(hs []*Hook) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.ID
	}
	return out
}

func TestSnapshotLookup(t *testing.T) {
	doc := func(order int) string { return fmt.Sprintf(`{"script":"1","order":%d}`, order) }
	hooks := []*Hook{
		hook(t, "events.v1.EventService/SendEvent/pre/b", doc(0)),
		hook(t, "events.v1.EventService/SendEvent/pre/a", doc(0)),
		hook(t, "events.v1.EventService/SendEvent/pre/late", doc(10)),
		hook(t, "events.v1.EventService/SendEvent/post/p", doc(0)),
		hook(t, "events.v1.EventService/SendEvent/pre/off", `{"script":"1","enabled":false}`),
		hook(t, "events.v1.EventService/*/pre/svc", doc(5)),
		hook(t, "*/*/pre/global", doc(-1)),
		hook(t, "other.v1.Other/Call/pre/x", doc(0)),
	}
	hookable := func(s string) bool { return s != "grpc.health.v1.Health" }
	s := newSnapshot(7, hooks, nil, hookable)

	tests := []struct {
		name     string
		method   string
		wantPre  []string
		wantPost []string
	}{
		{name: "exact, service-wide and global hooks merge by order then key",
			method: "/events.v1.EventService/SendEvent",
			wantPre: []string{"*/*/pre/global", "events.v1.EventService/SendEvent/pre/a", "events.v1.EventService/SendEvent/pre/b",
				"events.v1.EventService/*/pre/svc", "events.v1.EventService/SendEvent/pre/late"},
			wantPost: []string{"events.v1.EventService/SendEvent/post/p"}},
		{name: "a method without hooks of its own gets the service's and global ones",
			method:  "/events.v1.EventService/GetEvents",
			wantPre: []string{"*/*/pre/global", "events.v1.EventService/*/pre/svc"}},
		{name: "another hookable service gets global hooks",
			method:  "/shop.v1.Shop/Buy",
			wantPre: []string{"*/*/pre/global"}},
		{name: "a service that is not hookable gets nothing", method: "/grpc.health.v1.Health/Check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.Lookup(tt.method)
			if tt.wantPre == nil && tt.wantPost == nil {
				if c != nil {
					t.Fatalf("Lookup(%s) = pre %v post %v; want nil", tt.method, ids(c.Pre), ids(c.Post))
				}
				return
			}
			if c == nil {
				t.Fatalf("Lookup(%s) = nil; want hooks", tt.method)
			}
			if got := ids(c.Pre); !slices.Equal(got, tt.wantPre) {
				t.Errorf("pre = %v; want %v", got, tt.wantPre)
			}
			if got := ids(c.Post); !slices.Equal(got, tt.wantPost) {
				t.Errorf("post = %v; want %v", got, tt.wantPost)
			}
		})
	}
}

func TestSnapshotLookupWithoutHooksDoesNotAllocate(t *testing.T) {
	s := newSnapshot(1, []*Hook{hook(t, "events.v1.EventService/SendEvent/pre/a", `{"script":"1"}`)}, nil, DefaultHookable)
	allocs := testing.AllocsPerRun(100, func() {
		if s.Lookup("/events.v1.EventService/GetEvents") != nil {
			t.Fatal("unexpected hooks")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %v times; want 0", allocs)
	}
}
