package isolate_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
	"github.com/apihooks/apihooks/interceptor/isolate"
)

// BenchmarkRun measures one run of a small pre-hook that sets a field, in
// process and in a worker process, from GOMAXPROCS callers.
func BenchmarkRun(b *testing.B) {
	script, err := engine.Compile("bench.js", `module.exports = function (ctx) { ctx.request.eventType = 'checked' }`)
	if err != nil {
		b.Fatal(err)
	}
	eng := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)))
	b.Cleanup(eng.Close)
	pool := newPool(b, &syncBuffer{}, isolate.WithWorkers(2))
	for _, r := range []struct {
		name   string
		runner runner
	}{{"in-process", eng}, {"process", pool}} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call := &engine.Call{Method: "/events.v1.EventService/SendEvent", Phase: engine.Pre, Hook: "set", Request: request(), Timeout: generous}
					if _, err := r.runner.Run(context.Background(), script, call); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
