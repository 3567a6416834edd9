package interceptor

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/registry"
)

// BenchmarkResponseCacheHeap fills a response cache and reports what it
// holds on the heap for each byte its maxBytes bound counts
// ("heap-per-counted-byte"), and the time per stored response.
func BenchmarkResponseCacheHeap(b *testing.B) {
	resp := &eventsv1.GetEventsResponse{}
	for i := range 20 {
		resp.Events = append(resp.Events, &eventsv1.Event{EventId: fmt.Sprint("0190d7a2-6c1e-7b4c-9d1e-", i), ToUserId: "alice", EventType: "login"})
	}
	const entries = 2000
	var ratio float64
	for b.Loop() {
		chain := &registry.Chain{Cache: &registry.CacheConfig{TTL: time.Hour, MaxEntries: entries, MaxBytes: 1 << 30}}
		c := newResponseCache(chain.Cache, chain)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		now := time.Now()
		for i := range entries {
			c.put([]byte(fmt.Sprint("key-", i)), chain, resp, nil, nil, now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		ratio = float64(after.HeapAlloc-before.HeapAlloc) / float64(c.bytes)
		runtime.KeepAlive(c)
	}
	b.ReportMetric(ratio, "heap-per-counted-byte")
}
