package server_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/server"
)

// BenchmarkOverload is the overload of a hook that keeps the CPU busy: 200
// callers send events through a pre-hook that busy-waits 50ms, while one
// caller reads events, a method with no hook. It reports the latency of the
// unhooked calls, and how the hooked ones ended: served, or refused fast
// with RESOURCE_EXHAUSTED. Each iteration is a load of a few seconds: run
// it with -benchtime 1x.
func BenchmarkOverload(b *testing.B) {
	const (
		callers = 200
		period  = 5 * time.Second
	)
	d := startDaemonWith(b, func(c *server.Config) { c.HookQueueWait = 100 * time.Millisecond })
	ctx := context.Background()
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/busy",
		`{"script": "module.exports = () => { const end = Date.now() + 50; while (Date.now() < end) {} }"}`); err != nil {
		b.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	var unhooked []time.Duration
	codesSeen := map[codes.Code]int{}
	var refusedIn []time.Duration
	var mu sync.Mutex
	for range b.N {
		stop := time.Now().Add(period)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for time.Now().Before(stop) {
					start := time.Now()
					_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
					took := time.Since(start)
					mu.Lock()
					codesSeen[status.Code(err)]++
					if status.Code(err) == codes.ResourceExhausted {
						refusedIn = append(refusedIn, took)
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			for time.Now().Before(stop) {
				start := time.Now()
				if _, err := client.GetEvents(ctx, &eventsv1.GetEventsRequest{UserId: "nobody"}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				unhooked = append(unhooked, time.Since(start))
				mu.Unlock()
			}
		})
		wg.Wait()
	}
	secs := period.Seconds() * float64(b.N)
	b.ReportMetric(pct(unhooked, 50), "unhooked-p50-ms")
	b.ReportMetric(pct(unhooked, 99), "unhooked-p99-ms")
	b.ReportMetric(float64(codesSeen[codes.OK])/secs, "hooked-ok/s")
	b.ReportMetric(float64(codesSeen[codes.ResourceExhausted])/secs, "hooked-exhausted/s")
	b.ReportMetric(pct(refusedIn, 99), "exhausted-p99-ms")
	other := 0
	for c, n := range codesSeen {
		if c != codes.OK && c != codes.ResourceExhausted {
			other += n
			b.Logf("%d calls ended %v", n, c)
		}
	}
	b.ReportMetric(float64(other), "hooked-other-errors")
}

// BenchmarkRunawayAllocations sends 20 calls at once through a hook that
// fills an array of 5e7 elements, and reports the process's peak resident
// memory (VmHWM) once they have ended.
func BenchmarkRunawayAllocations(b *testing.B) {
	d := startDaemonWith(b, nil)
	ctx := context.Background()
	if _, err := d.etcd.Put(ctx, "/apihooks/hooks/events.v1.EventService/SendEvent/pre/fill",
		`{"script": "module.exports = () => { new Array(5e7).fill(0) }"}`); err != nil {
		b.Fatal(err)
	}
	client := eventsv1.NewEventServiceClient(d.conn)
	seen := map[codes.Code]int{}
	var mu sync.Mutex
	for range b.N {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, err := client.SendEvent(ctx, &eventsv1.SendEventRequest{ToUserId: "a", EventType: "t"})
				mu.Lock()
				seen[status.Code(err)]++
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	for c, n := range seen {
		b.Logf("%d calls ended %v", n, c)
	}
	b.ReportMetric(peakRSS(b)/(1<<20), "peak-rss-MiB")
}

// pct returns the p-th percentile of ds, in milliseconds.
func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)]) / float64(time.Millisecond)
}

// peakRSS returns the process's peak resident memory in bytes.
func peakRSS(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	b.Skip("no VmHWM")
	return 0
}
