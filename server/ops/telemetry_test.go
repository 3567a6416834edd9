package ops_test

import (
	"testing"

	"github.com/apihooks/apihooks/server/ops"
)

func TestTracesAreOffUnlessTheEnvironmentAsks(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"no OTEL variables: off", nil, false},
		{"an OTLP endpoint: on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{"an OTLP traces endpoint: on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{"the otlp exporter named: on", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none: off, endpoint or not", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, false},
		{"the SDK disabled: off", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, false},
		{"a service name alone: off", map[string]string{"OTEL_SERVICE_NAME": "api"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ops.TracesEnabled(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Fatalf("TracesEnabled(%v) = %v; want %v", tt.env, got, tt.want)
			}
		})
	}
}
