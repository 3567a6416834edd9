package engine_test

import (
	"context"
	"log/slog"
	"testing"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
	"github.com/apihooks/apihooks/interceptor/engine"
)

// An option given zero, or less, means its default (or, where its doc says
// so, off): a value left unset in a configuration never fails every run.
func TestZeroOptionsMeanTheDefault(t *testing.T) {
	// The script allocates with a built-in the memory budget bounds, calls
	// functions, and logs.
	s := compile(t, `ctx.request.eventType = "y".repeat(3) + [1, 2].map(x => x + 1).join(""); ctx.log.info("ran"); undefined`)
	for _, tt := range []struct {
		name string
		opt  engine.Option
	}{
		{"WithTimeout(0)", engine.WithTimeout(0)},
		{"WithTimeout(-1)", engine.WithTimeout(-1)},
		{"WithMemoryBudget(0)", engine.WithMemoryBudget(0)},
		{"WithMemoryBudget(-1)", engine.WithMemoryBudget(-1)},
		{"WithMaxCallStackSize(0)", engine.WithMaxCallStackSize(0)},
		{"WithMaxCallStackSize(-1)", engine.WithMaxCallStackSize(-1)},
		{"WithMaxRuns(0)", engine.WithMaxRuns(0)},
		{"WithMaxRuns(-1)", engine.WithMaxRuns(-1)},
		{"WithQueueWait(0)", engine.WithQueueWait(0)},
		{"WithQueueWait(-1)", engine.WithQueueWait(-1)},
		{"WithHeapLimit(0)", engine.WithHeapLimit(0)},
		{"WithHeapLimit(-1)", engine.WithHeapLimit(-1)},
		{"WithLogger(nil)", engine.WithLogger(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := engine.New(engine.WithLogger(slog.New(slog.DiscardHandler)), tt.opt)
			defer e.Close()
			call := preCall(t)
			for i := range 6 { // more runs than a quarantine lets fail
				out, err := e.Run(context.Background(), s, call)
				if err != nil {
					t.Fatalf("run %d: %v; want the run to end well", i, err)
				}
				req, _ := out.Message.(*eventsv1.SendEventRequest)
				if out.Action != engine.Continue || req.GetEventType() != "yyy23" {
					t.Fatalf("run %d: %+v; want Continue, eventType yyy23", i, out)
				}
			}
		})
	}
}
