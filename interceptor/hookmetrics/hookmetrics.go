// Package hookmetrics counts and times hook runs for Prometheus, from the
// interceptors' Observer: hook runs by method, hook, phase and outcome, and
// their durations.
//
// Hook IDs come from etcd, so the number of label values is bounded: past
// WithMaxSeries distinct (method, hook) pairs, further runs are counted
// under the hook "_other" (and the method "_other").
package hookmetrics

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apihooks/apihooks/interceptor"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// DefaultMaxSeries is the default bound on distinct (method, hook) pairs.
const DefaultMaxSeries = 1000

// Other is the label value of the runs past the bound on series.
const Other = "_other"

// DefaultBuckets are the duration histogram's buckets, in seconds: from
// 50 us, about what the lightest hook takes, to 5 s, the default largest
// timeout.
var DefaultBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics is a prometheus.Collector of hook runs. Register it, and give its
// Observer to the interceptors.
type Metrics struct {
	runs      *prometheus.CounterVec
	durations *prometheus.HistogramVec
	maxSeries int

	// series caches each label set's counter and histogram, so a run
	// costs one map lookup.
	series sync.Map // seriesKey → *seriesValue
	pairs  sync.Map // pairKey → struct{}
	npairs atomic.Int64
	// cached counts the entries of series, which holds those of runs past
	// the bound too, up to a limit.
	cached int
	mu     sync.Mutex
}

type pairKey struct{ method, hook string }

type seriesKey struct {
	method, hook string
	phase        engine.Phase
	outcome      interceptor.Outcome
}

type seriesValue struct {
	runs     prometheus.Counter
	duration prometheus.Observer
}

// Option configures Metrics.
type Option func(*Metrics)

// WithMaxSeries bounds the distinct (method, hook) pairs (DefaultMaxSeries
// by default; zero or less means the default); runs past it are counted
// under Other.
func WithMaxSeries(n int) Option {
	return func(m *Metrics) {
		if n <= 0 {
			n = DefaultMaxSeries
		}
		m.maxSeries = n
	}
}

// New returns the metrics of hook runs: apihooks_hook_runs_total and
// apihooks_hook_run_duration_seconds.
func New(opts ...Option) *Metrics {
	m := &Metrics{
		maxSeries: DefaultMaxSeries,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apihooks_hook_runs_total",
			Help: "Hook runs, by full method, hook ID, phase and outcome (continue, reject, respond, quarantined, invalid, error_<kind>).",
		}, []string{"method", "hook", "phase", "outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apihooks_hook_run_duration_seconds",
			Help:    "How long the interceptor waited for each hook run that started, by full method, hook ID and phase.",
			Buckets: DefaultBuckets,
		}, []string{"method", "hook", "phase"}),
	}
	for _, f := range opts {
		f(m)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.runs.Describe(ch)
	m.durations.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.runs.Collect(ch)
	m.durations.Collect(ch)
}

// Observer returns the Observer that feeds the metrics.
func (m *Metrics) Observer() interceptor.Observer { return m.observe }

func (m *Metrics) observe(_ context.Context, run interceptor.HookRun) {
	k := seriesKey{method: run.Method, hook: run.Hook, phase: run.Phase, outcome: run.Outcome}
	v, ok := m.series.Load(k)
	if !ok {
		v = m.add(k)
	}
	s := v.(*seriesValue)
	s.runs.Inc()
	if run.Duration > 0 {
		s.duration.Observe(run.Duration.Seconds())
	}
}

// add makes the series of k, or of Other when k's pair is past the bound.
func (m *Metrics) add(k seriesKey) *seriesValue {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.series.Load(k); ok {
		return v.(*seriesValue)
	}
	labels := k
	p := pairKey{k.method, k.hook}
	if _, ok := m.pairs.Load(p); !ok {
		if int(m.npairs.Load()) >= m.maxSeries {
			labels.method, labels.hook = Other, Other
		} else {
			m.pairs.Store(p, struct{}{})
			m.npairs.Add(1)
		}
	}
	v := &seriesValue{
		runs:     m.runs.WithLabelValues(labels.method, labels.hook, string(labels.phase), string(labels.outcome)),
		duration: m.durations.WithLabelValues(labels.method, labels.hook, string(labels.phase)),
	}
	if labels == k || m.cached < 16*m.maxSeries {
		m.series.Store(k, v)
		m.cached++
	}
	return v
}
