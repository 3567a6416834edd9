package hookmetrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/hookmetrics"
)

func run(hook string, outcome interceptor.Outcome) interceptor.HookRun {
	return interceptor.HookRun{Method: "/svc/M", Hook: hook, Phase: engine.Pre, Outcome: outcome, Start: time.Now(), Duration: time.Millisecond}
}

func TestRunsPastTheBoundAreCountedAsOther(t *testing.T) {
	m := hookmetrics.New(hookmetrics.WithMaxSeries(2))
	obs := m.Observer()
	for i := range 5 {
		obs(context.Background(), run(fmt.Sprintf("svc/M/pre/h%d", i), interceptor.OutcomeContinue))
	}
	obs(context.Background(), run("svc/M/pre/h0", interceptor.OutcomeReject))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	for _, tt := range []struct {
		name  string
		hook  string
		out   string
		count float64
	}{
		{"the first hooks have series of their own", "svc/M/pre/h0", "continue", 1},
		{"a known hook gets a new outcome's series past the bound", "svc/M/pre/h0", "reject", 1},
		{"the hooks past the bound share one series", hookmetrics.Other, "continue", 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := m.RunsCounter(tt.hook, tt.out)
			if err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(c); got != tt.count {
				t.Fatalf("runs of %s %s = %v; want %v", tt.hook, tt.out, got, tt.count)
			}
		})
	}
	if n := testutil.CollectAndCount(m, "apihooks_hook_runs_total"); n != 4 {
		t.Errorf("%d series of apihooks_hook_runs_total; want 4 (2 hooks, 1 with 2 outcomes, and %s)", n, hookmetrics.Other)
	}
}

// BenchmarkObserve measures what the metrics add to one hook run.
func BenchmarkObserve(b *testing.B) {
	obs := hookmetrics.New().Observer()
	r := run("svc/M/pre/h", interceptor.OutcomeContinue)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			obs(ctx, r)
		}
	})
}
