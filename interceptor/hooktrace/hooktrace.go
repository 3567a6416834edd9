// Package hooktrace records each hook run as an OpenTelemetry span, a child
// of the call's span (otelgrpc's, for one), from the interceptors'
// Observer.
package hooktrace

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/apihooks/apihooks/interceptor"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/apihooks/apihooks/interceptor/hooktrace"

// Observer returns an Observer that records every hook run of a call that
// is traced as a span "hook <phase> <hook ID>", from the run's start to its
// end, with its method (as otelgrpc's call span names it), hook, revision,
// phase and outcome; a failed run's
// span has status Error. Runs of calls with no recording span are not
// recorded. A nil tp means the global provider, otel.GetTracerProvider().
func Observer(tp trace.TracerProvider) interceptor.Observer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(ScopeName)
	return func(ctx context.Context, run interceptor.HookRun) {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return
		}
		_, span := tracer.Start(ctx, "hook "+string(run.Phase)+" "+run.Hook,
			trace.WithTimestamp(run.Start), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(
				// As otelgrpc names the call's:
				// "events.v1.EventService/SendEvent".
				attribute.String("rpc.method", strings.TrimPrefix(run.Method, "/")),
				attribute.String("apihooks.hook", run.Hook),
				attribute.Int64("apihooks.hook.revision", run.Revision),
				attribute.String("apihooks.phase", string(run.Phase)),
				attribute.String("apihooks.outcome", string(run.Outcome)),
				attribute.Bool("apihooks.skipped", run.Skipped),
			))
		if strings.HasPrefix(string(run.Outcome), "error_") || run.Outcome == interceptor.OutcomeInvalid || run.Outcome == interceptor.OutcomeQuarantined {
			span.SetStatus(codes.Error, string(run.Outcome))
		}
		span.End(trace.WithTimestamp(run.Start.Add(run.Duration)))
	}
}
