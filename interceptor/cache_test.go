package interceptor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/registry"
)

const getEvents = "events.v1.EventService/GetEvents"

// setCache replaces every cache document with docs (method → document) and
// waits until the server has them.
func (e *env) setCache(t *testing.T, docs map[string]string) {
	t.Helper()
	ctx := context.Background()
	dir := registry.CacheDir(registry.DefaultPrefix)
	resp, err := e.etcd.Client.Delete(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete cache documents: %v", err)
	}
	rev := resp.Header.Revision
	for m, d := range docs {
		resp, err := e.etcd.Client.Put(ctx, dir+m, d)
		if err != nil {
			t.Fatalf("write cache document: %v", err)
		}
		rev = resp.Header.Revision
	}
	e.waitRevision(t, rev)
}

// getEventsCall is one call of GetEvents and whether it must reach the
// handler (a miss) or not (a hit).
type getEventsCall struct {
	user       string
	md         []string
	wantMiss   bool
	wantStatus codes.Code
}

// get calls GetEvents and reports whether the handler ran, and the response
// as one line.
func (e *env) get(t *testing.T, user string, md ...string) (miss bool, resp string, err error) {
	t.Helper()
	e.svc.received()
	ctx := context.Background()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	r, err := e.client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: user})
	if err == nil {
		resp = oneLine(r)
	}
	return len(e.svc.received()) > 0, resp, err
}

// cacheHooks are a pre-hook and a post-hook on GetEvents that leave their
// mark in the log and the response; the pre-hook refuses user "denied".
var cacheHooks = map[string]string{
	getEvents + "/pre/mark":  doc(`module.exports = c => { c.log.info("pre ran"); if (c.request.userId === "denied") return {status: 403, message: "denied"} }`),
	getEvents + "/post/mark": doc(`module.exports = c => { c.log.info("post ran"); c.response.events[0].eventType = "post" }`),
}

// TestResponseCache is the response cache as a client sees it: which calls
// reach the handler.
func TestResponseCache(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, cacheHooks)
	tests := []struct {
		name  string
		cache string // GetEvents' cache document; none when empty
		calls []getEventsCall
	}{
		{name: "a second identical call is answered from the cache",
			cache: `{"ttl":"1h"}`,
			calls: []getEventsCall{{user: "a", wantMiss: true}, {user: "a"}, {user: "a"}}},
		{name: "a different request misses",
			cache: `{"ttl":"1h"}`,
			calls: []getEventsCall{{user: "a", wantMiss: true}, {user: "b", wantMiss: true}, {user: "a"}, {user: "b"}}},
		{name: "a different value of a listed metadata key misses; other metadata does not count",
			cache: `{"ttl":"1h","keyMetadata":["x-tenant"]}`,
			calls: []getEventsCall{
				{user: "a", md: []string{"x-tenant", "t1"}, wantMiss: true},
				{user: "a", md: []string{"x-tenant", "t2"}, wantMiss: true},
				{user: "a", md: []string{"x-tenant", "t1", "x-other", "1"}},
				{user: "a", wantMiss: true},
				{user: "a", md: []string{"x-tenant", "t1", "x-tenant", "t2"}, wantMiss: true},
			}},
		{name: "maxEntries evicts the least recently used",
			cache: `{"ttl":"1h","maxEntries":2}`,
			calls: []getEventsCall{
				{user: "a", wantMiss: true}, {user: "b", wantMiss: true}, {user: "a"},
				{user: "c", wantMiss: true}, {user: "a"}, {user: "b", wantMiss: true},
			}},
		{name: "maxBytes bounds what is stored",
			cache: `{"ttl":"1h","maxBytes":10}`,
			calls: []getEventsCall{{user: "a", wantMiss: true}, {user: "a", wantMiss: true}}},
		{name: "errors are never stored",
			cache: `{"ttl":"1h"}`,
			calls: []getEventsCall{{user: "denied", wantStatus: codes.PermissionDenied}, {user: "denied", wantStatus: codes.PermissionDenied}}},
		{name: "without a cache document nothing is cached",
			calls: []getEventsCall{{user: "a", wantMiss: true}, {user: "a", wantMiss: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := map[string]string{}
			if tt.cache != "" {
				docs[getEvents] = tt.cache
			}
			e.setCache(t, docs)
			// A fresh document: the new configuration starts empty.
			e.setCache(t, docs)
			for i, c := range tt.calls {
				before := strings.Count(e.logs.String(), "pre ran")
				miss, resp, err := e.get(t, c.user, c.md...)
				if st := status.Convert(err); st.Code() != c.wantStatus {
					t.Fatalf("call %d (%s): status %v; want %v", i, c.user, st.Code(), c.wantStatus)
				}
				if miss != c.wantMiss {
					t.Fatalf("call %d (%s %v): reached the handler: %v; want %v", i, c.user, c.md, miss, c.wantMiss)
				}
				hooksRan := strings.Count(e.logs.String(), "pre ran") > before
				if hooksRan != (c.wantMiss || c.wantStatus != codes.OK) {
					t.Fatalf("call %d (%s): hooks ran: %v; want %v", i, c.user, hooksRan, !hooksRan)
				}
				if err == nil {
					if want := `{ "events": [ { "eventId": "e1", "toUserId": "` + c.user + `", "eventType": "post" } ] }`; resp != want {
						t.Fatalf("call %d: response %s; want %s", i, resp, want)
					}
				}
			}
		})
	}
}

// TestResponseCacheFollowsItsDocument: a changed document drops the cache,
// a deleted one turns caching off, an invalid one is logged with its key
// and field and changes nothing.
func TestResponseCacheFollowsItsDocument(t *testing.T) {
	e := newEnv(t)
	key := registry.CacheDir(registry.DefaultPrefix) + getEvents
	put := func(v string) {
		t.Helper()
		resp, err := e.etcd.Client.Put(context.Background(), key, v)
		if err != nil {
			t.Fatal(err)
		}
		e.waitRevision(t, resp.Header.Revision)
	}
	expect := func(what string, want ...bool) {
		t.Helper()
		for i, w := range want {
			miss, _, err := e.get(t, "a")
			if err != nil {
				t.Fatal(err)
			}
			if miss != w {
				t.Fatalf("%s, call %d: reached the handler: %v; want %v", what, i, miss, w)
			}
		}
	}
	put(`{"ttl":"30s","colour":"red"}`)
	if logs := e.logs.String(); !strings.Contains(logs, key) || !strings.Contains(logs, `unknown field \"colour\"`) {
		t.Fatalf("the log does not name the key and the field:\n%s", logs)
	}
	expect("an invalid first document", true, true)
	put(`{"ttl":"1h"}`)
	expect("a valid document", true, false)
	put(`{"ttl":"1h","maxEntries":0}`)
	expect("an invalid change keeps the last valid version and its responses", false)
	put(`{"ttl":"2h"}`)
	expect("a changed document starts an empty cache", true, false)
	resp, err := e.etcd.Client.Delete(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	e.waitRevision(t, resp.Header.Revision)
	expect("a deleted document", true, true)
}

// TestAChangeOfHooksEmptiesTheCache: a response stored before a change of
// the method's hooks never answers a call after it, so a hook added to
// deny a caller is in force on the next call, cached or not.
func TestAChangeOfHooksEmptiesTheCache(t *testing.T) {
	const deny = getEvents + "/pre/deny"
	denyA := doc(`module.exports = c => { if (c.request.userId === "a") return {status: 403, message: "no more"} }`)
	tests := []struct {
		name   string
		before map[string]string // hooks when the response is stored
		after  map[string]string // hooks of the next call
		want   getEventsCall
	}{
		{name: "a pre-hook added",
			before: map[string]string{},
			after:  map[string]string{deny: denyA},
			want:   getEventsCall{user: "a", wantStatus: codes.PermissionDenied}},
		{name: "a pre-hook changed",
			before: map[string]string{deny: doc(`null`)},
			after:  map[string]string{deny: denyA},
			want:   getEventsCall{user: "a", wantStatus: codes.PermissionDenied}},
		{name: "a pre-hook enabled",
			before: map[string]string{deny: doc(`module.exports = c => { if (c.request.userId === "a") return {status: 403, message: "no more"} }`, `"enabled":false`)},
			after:  map[string]string{deny: denyA},
			want:   getEventsCall{user: "a", wantStatus: codes.PermissionDenied}},
		{name: "a post-hook deleted",
			before: map[string]string{getEvents + "/post/mark": cacheHooks[getEvents+"/post/mark"]},
			after:  map[string]string{},
			want:   getEventsCall{user: "a", wantMiss: true}},
		{name: "a hook on another method changes nothing",
			before: map[string]string{},
			after:  map[string]string{sendEventKey + "pre/other": doc(`null`)},
			want:   getEventsCall{user: "a"}},
	}
	e := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setHooks(t, tt.before)
			e.setCache(t, map[string]string{getEvents: `{"ttl":"1h"}`})
			for i, wantMiss := range []bool{true, false} {
				if miss, _, err := e.get(t, "a"); err != nil || miss != wantMiss {
					t.Fatalf("call %d before the change: reached the handler %v, %v; want %v, OK", i, miss, err, wantMiss)
				}
			}
			e.setHooks(t, tt.after)
			miss, _, err := e.get(t, "a")
			if status.Code(err) != tt.want.wantStatus || miss != tt.want.wantMiss {
				t.Fatalf("the call after the change: reached the handler %v, status %v; want %v, %v", miss, err, tt.want.wantMiss, tt.want.wantStatus)
			}
		})
	}
}

// TestResponseCacheExpires: a stored response is served until its ttl, then
// the call reaches the handler again.
func TestResponseCacheExpires(t *testing.T) {
	e := newEnv(t)
	const ttl = time.Second
	e.setCache(t, map[string]string{getEvents: `{"ttl":"1s"}`})
	// The response is stored during the first call, so after this: it
	// expires no sooner than a ttl from now, however late the call returns.
	before := time.Now()
	if miss, _, _ := e.get(t, "a"); !miss {
		t.Fatal("the first call did not reach the handler")
	}
	miss, _, _ := e.get(t, "a")
	if time.Since(before) < ttl && miss {
		t.Fatal("a call within the ttl reached the handler")
	}
	deadline := time.Now().Add(waitTimeout)
	for !miss {
		if time.Now().After(deadline) {
			t.Fatalf("calls were still answered from the cache %v after the response was stored, with a ttl of %v", waitTimeout, ttl)
		}
		time.Sleep(20 * time.Millisecond)
		miss, _, _ = e.get(t, "a")
	}
	if time.Since(before) < ttl {
		t.Fatalf("the response expired before its ttl")
	}
}

// TestCachedResponsesAreCopies: an interceptor outside the hooks that
// changes the response it is given never changes what the cache serves.
func TestCachedResponsesAreCopies(t *testing.T) {
	outer := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if r, ok := resp.(*eventsv1.GetEventsResponse); ok {
			r.Events[0].EventId += "+outer"
		}
		return resp, err
	}
	e := newEnv(t, outer)
	e.setCache(t, map[string]string{getEvents: `{"ttl":"1h"}`})
	for i := range 3 {
		miss, resp, err := e.get(t, "a")
		if err != nil {
			t.Fatal(err)
		}
		if miss != (i == 0) {
			t.Fatalf("call %d reached the handler: %v", i, miss)
		}
		if want := `{ "events": [ { "eventId": "e1+outer", "toUserId": "a" } ] }`; resp != want {
			t.Fatalf("call %d: response %s; want %s", i, resp, want)
		}
	}
}

// TestStreamsAreNeverCached: a cache document on a streaming method
// changes nothing.
func TestStreamsAreNeverCached(t *testing.T) {
	e := newEnv(t)
	e.setCache(t, map[string]string{"events.v1.EventService/StreamEvents": `{"ttl":"1h"}`})
	for i := range 2 {
		stream, err := e.client.StreamEvents(context.Background(), &eventsv1.StreamEventsRequest{UserId: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for ; ; n++ {
			if _, err := stream.Recv(); err != nil {
				break
			}
		}
		if got := e.svc.received(); len(got) != 1 || n != 2 {
			t.Fatalf("stream %d: handler received %q and sent %d events; want one request and two events", i, got, n)
		}
	}
}

// TestErrorHookAnswersAreNotCached: a response an error hook gave in place
// of the handler's error is never stored.
func TestErrorHookAnswersAreNotCached(t *testing.T) {
	e := newEnv(t)
	e.setHooks(t, map[string]string{sendEventKey + "error/fallback": doc(`({response: {eventId: "fallback"}})`)})
	e.setCache(t, map[string]string{"events.v1.EventService/SendEvent": `{"ttl":"1h"}`})
	for i := range 2 {
		resp, err := e.client.SendEvent(context.Background(), &eventsv1.SendEventRequest{ToUserId: "fail"})
		if err != nil || resp.EventId != "fallback" {
			t.Fatalf("call %d: got %v, %v; want the error hook's answer", i, resp, err)
		}
		if got := e.svc.received(); len(got) != 1 {
			t.Fatalf("call %d: the handler received %q; want the call to reach it", i, got)
		}
	}
}

// TestACacheHitCarriesTheHandlersHeadersAndTrailers: a response answered
// from the cache comes with the headers and trailers the handler set when
// it gave it.
func TestACacheHitCarriesTheHandlersHeadersAndTrailers(t *testing.T) {
	e := newEnv(t)
	e.setCache(t, map[string]string{getEvents: `{"ttl":"1h"}`})
	for i, wantMiss := range []bool{true, false} {
		e.svc.received()
		var header, trailer metadata.MD
		if _, err := e.client.GetEvents(context.Background(), &eventsv1.GetEventsRequest{UserId: "a"}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatal(err)
		}
		if miss := len(e.svc.received()) > 0; miss != wantMiss {
			t.Fatalf("call %d: reached the handler: %v; want %v", i, miss, wantMiss)
		}
		if h := header.Get("x-handler"); len(h) != 1 || h[0] != "GetEvents" {
			t.Errorf("call %d: header x-handler %q; want [GetEvents], as the handler set it", i, h)
		}
		if tr := trailer.Get("x-user"); len(tr) != 1 || tr[0] != "a" {
			t.Errorf("call %d: trailer x-user %q; want [a], as the handler set it", i, tr)
		}
	}
}
