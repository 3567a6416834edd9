package hookmetrics

import "github.com/prometheus/client_golang/prometheus"

// RunsCounter returns the runs counter of method "/svc/M" (or Other), hook
// and outcome, phase pre.
func (m *Metrics) RunsCounter(hook, outcome string) (prometheus.Counter, error) {
	method := "/svc/M"
	if hook == Other {
		method = Other
	}
	return m.runs.GetMetricWithLabelValues(method, hook, "pre", outcome)
}
