// Package eventstest holds the request that the benchmarks of the
// interceptors, the proxy and worker processes send, so that their figures
// compare.
package eventstest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// Request returns a SendEventRequest of about 250 bytes on the wire, whose
// eventData is a google.protobuf.Struct of six keys.
func Request(tb testing.TB) *eventsv1.SendEventRequest {
	tb.Helper()
	data, err := structpb.NewStruct(map[string]any{
		"title":    "Weekly summary of your account activity",
		"score":    1250,
		"tags":     []any{"summary", "weekly", "account"},
		"level":    7,
		"location": map[string]any{"city": "Lisbon", "country": "PT"},
		"campaign": "autumn-2026-newsletter-retention-segment-b",
	})
	if err != nil {
		tb.Fatal(err)
	}
	req := &eventsv1.SendEventRequest{ToUserId: "user-8c1e2f4a9b7d", EventType: "notification.weekly_summary", EventData: data}
	if n := proto.Size(req); n < 200 || n > 300 {
		tb.Fatalf("request is %d bytes; want about 250", n)
	}
	return req
}
