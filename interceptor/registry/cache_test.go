package registry_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/apihooks/apihooks/interceptor/registry"
	"github.com/apihooks/apihooks/internal/etcdtest"
)

func TestDecodeCacheDocument(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
		want    string // "ttl entries bytes metadata"
	}{
		{name: "ttl alone takes the defaults", doc: `{"ttl":"30s"}`, want: "30s 1000 67108864 []"},
		{name: "every field", doc: `{"ttl":"1m","maxEntries":5,"maxBytes":2048,"keyMetadata":["x-tenant","x-user"]}`,
			want: "1m0s 5 2048 [x-tenant x-user]"},
		{name: "ttl is required", doc: `{"maxEntries":5}`, wantErr: "field ttl: required"},
		{name: "ttl must be a duration", doc: `{"ttl":"30"}`, wantErr: `field ttl: "30" is not a Go duration`},
		{name: "ttl must be positive", doc: `{"ttl":"-1s"}`, wantErr: `field ttl: "-1s" must be positive`},
		{name: "ttl is at most a day", doc: `{"ttl":"25h"}`, wantErr: `field ttl: "25h" is more than 24h0m0s`},
		{name: "maxEntries has bounds", doc: `{"ttl":"1s","maxEntries":0}`, wantErr: "field maxEntries: 0 is not between 1 and 100000"},
		{name: "maxEntries must be an integer", doc: `{"ttl":"1s","maxEntries":"5"}`, wantErr: "field maxEntries: want an integer"},
		{name: "maxBytes has bounds", doc: `{"ttl":"1s","maxBytes":-1}`, wantErr: "field maxBytes: -1 is not between"},
		{name: "metadata keys are lower case", doc: `{"ttl":"1s","keyMetadata":["X-Tenant"]}`, wantErr: `field keyMetadata: "X-Tenant" is not a lower-case metadata key`},
		{name: "metadata keys are listed once", doc: `{"ttl":"1s","keyMetadata":["a","a"]}`, wantErr: `field keyMetadata: "a" is listed twice`},
		{name: "unknown field is named", doc: `{"ttl":"1s","colour":1}`, wantErr: `unknown field "colour" (want ttl, maxEntries, maxBytes, keyMetadata)`},
		{name: "not an object", doc: `[]`, wantErr: "document: want an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := registry.BuildCache(registry.CacheKey{Service: "s.S", Method: "M"}, []byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{c.TTL.String(), strconv.Itoa(c.MaxEntries), strconv.Itoa(int(c.MaxBytes)), "[" + strings.Join(c.KeyMetadata, " ") + "]"}, " ")
			if got != tt.want {
				t.Fatalf("got %s; want %s", got, tt.want)
			}
		})
	}
}

func TestParseCacheKey(t *testing.T) {
	tests := []struct{ key, want, wantErr string }{
		{key: "/apihooks/cache/events.v1.EventService/GetEvents", want: "/events.v1.EventService/GetEvents"},
		{key: "/apihooks/cache/events.v1.EventService/*", wantErr: "one method at a time"},
		{key: "/apihooks/cache/events.v1.EventService/GetEvents/x", wantErr: "want /apihooks/cache/<service>/<method>"},
		{key: "/apihooks/cache/events.v1.EventService", wantErr: "want /apihooks/cache/<service>/<method>"},
		{key: "/apihooks/cache/1bad/M", wantErr: "not a fully qualified service name"},
	}
	for _, tt := range tests {
		k, err := registry.ParseCacheKey(registry.DefaultPrefix, tt.key)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCacheKey(%q) = %v; want an error containing %q", tt.key, err, tt.wantErr)
			}
			continue
		}
		if err != nil || k.FullMethod() != tt.want {
			t.Errorf("ParseCacheKey(%q) = %v, %v; want %s", tt.key, k.FullMethod(), err, tt.want)
		}
	}
}

// TestRegistryFollowsCacheConfigurations: a cache document is in force with
// the hooks, a change replaces it, an invalid change keeps the last valid
// one, and a deletion turns caching off.
func TestRegistryFollowsCacheConfigurations(t *testing.T) {
	e := etcdtest.Start(t)
	const getEvents = "/events.v1.EventService/GetEvents"
	putCache := func(doc string) int64 {
		t.Helper()
		resp, err := e.Client.Put(context.Background(), registry.CacheDir(registry.DefaultPrefix)+"events.v1.EventService/GetEvents", doc)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	putCache(`{"ttl":"30s"}`)
	put(t, e.Client, "events.v1.EventService/*/pre/a", `{"script":"1"}`)
	r := start(t, e.Client)
	ttl := func() time.Duration {
		if c := r.Snapshot().Cache(getEvents); c != nil {
			return c.TTL
		}
		return 0
	}
	if ttl() != 30*time.Second {
		t.Fatalf("ttl after start: got %v; want 30s", ttl())
	}
	chain := r.Snapshot().Lookup(getEvents)
	if chain == nil || chain.Cache == nil || len(chain.Pre) != 1 {
		t.Fatalf("Lookup(%s) = %+v; want the service-wide pre-hook and the cache", getEvents, chain)
	}
	if r.Snapshot().Lookup(sendEvent).Cache != nil {
		t.Fatalf("SendEvent is cached; want only GetEvents")
	}

	putCache(`{"ttl":"1m"}`)
	waitFor(t, "the new ttl", func() bool { return ttl() == time.Minute })
	first := r.Snapshot().Cache(getEvents)

	rev := putCache(`{"ttl":"1m","colour":"red"}`)
	waitFor(t, "the invalid document's revision", func() bool { return r.Snapshot().Revision >= rev })
	if r.Snapshot().Cache(getEvents) != first {
		t.Fatalf("an invalid document replaced the valid configuration")
	}

	if _, err := e.Client.Delete(context.Background(), registry.CacheDir(registry.DefaultPrefix), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "caching off", func() bool { return r.Snapshot().Cache(getEvents) == nil })
	if b := r.Status().Broken; len(b) != 0 {
		t.Fatalf("Status().Broken = %q while the valid configuration was in force; want none", b)
	}

	// A method whose configuration never had a valid version is listed as
	// broken, for operators.
	putCache(`{"ttl":"forever"}`)
	want := "cache/events.v1.EventService/GetEvents: "
	waitFor(t, "the invalid configuration among the broken", func() bool {
		b := r.Status().Broken
		return len(b) == 1 && strings.HasPrefix(b[0], want) && strings.Contains(b[0], "ttl")
	})
	putCache(`{"ttl":"1m"}`)
	waitFor(t, "the fixed configuration", func() bool { return len(r.Status().Broken) == 0 })
}
