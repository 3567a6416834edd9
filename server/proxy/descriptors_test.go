package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestARefreshOutlivesTheCallerThatStartedIt: the caller whose call
// starts a fetch of the descriptors may give up (its deadline); the fetch
// goes on for everyone else, and its outcome, not the caller's error, is
// what the next calls see.
func TestARefreshOutlivesTheCallerThatStartedIt(t *testing.T) {
	learned, err := newTable([]*descriptorpb.FileDescriptorProto{{Name: proto.String("x.proto"), Package: proto.String("x"),
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("S")}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	d := newDescriptors(func(ctx context.Context) (*table, error) {
		close(started)
		select {
		case <-release:
			return learned, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, time.Hour, time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { _, err := d.refresh(ctx, true); gaveUp <- err }()
	<-started
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up got %v; want its own context's error", err)
	}
	close(release)
	// Waits for the fetch, if it is still in flight.
	if _, err := d.refresh(context.Background(), false); err != nil {
		t.Fatalf("a later caller: %v; want the fetch's outcome, which succeeded", err)
	}
	if err := d.lastErr(); err != nil || d.current() != learned {
		t.Fatalf("after the fetch: last error %v, descriptors learned: %v; want no error and the fetched descriptors", err, d.current() == learned)
	}
}
