package engine_test

import (
	"context"
	"testing"

	"github.com/dop251/goja"
)

// BenchmarkRun measures one pre-hook run that sets a field, from the
// request message to the changed message, in a fresh runtime: changing the
// request in place (a hook whose failures end the call) and changing a
// copy (one whose failures are skipped).
func BenchmarkRun(b *testing.B) {
	e := newEngine(b)
	s := compile(b, `module.exports = function (ctx) { ctx.request.eventType = "checked" }`)
	ctx := context.Background()
	for _, inPlace := range []bool{true, false} {
		name := "in-place"
		if !inPlace {
			name = "copy"
		}
		b.Run(name, func(b *testing.B) {
			call := preCall(b)
			call.InPlace = inPlace
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Run(ctx, s, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunNoop is the fixed cost of a run: a fresh runtime, the
// module, the call, the hand-off to a worker and back.
func BenchmarkRunNoop(b *testing.B) {
	e := newEngine(b)
	s := compile(b, `module.exports = function (ctx) {}`)
	call := preCall(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Run(ctx, s, call); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewRuntime is the floor of a run: a fresh goja runtime.
func BenchmarkNewRuntime(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		goja.New()
	}
}
