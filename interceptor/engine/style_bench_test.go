package engine_test

import (
	"context"
	"testing"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// BenchmarkRunStyle compares the same pre-hook, which sets a field of the
// request in place, written in the ctx style and in the API Maker style:
// g costs what ctx costs.
func BenchmarkRunStyle(b *testing.B) {
	e := newEngine(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name, src string
		style     engine.Style
	}{
		{"ctx", `module.exports = function (ctx) { ctx.request.eventType = "checked" }`, engine.CtxStyle},
		{"apimaker", `module.exports = function (g) { g.req.body.eventType = "checked" }`, engine.APIMaker},
		{"ctx-and-g", `module.exports = function (ctx, g) { g.req.body.eventType = "checked" }`, engine.CtxStyle},
	} {
		s, err := compile(b, tc.src).WithStyle(tc.style)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			call := preCall(b)
			call.InPlace = true
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Run(ctx, s, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
