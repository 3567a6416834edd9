package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
	learned := oneService(t)
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

// TestAFetchTellsOfItsOutcomeOnceBeforeItsWaitersGoOn: however many calls
// wait for one fetch, its change is told (the daemon marks the backend's
// services SERVING) before any of them goes on, and its failure is told
// (logged) once.
func TestAFetchTellsOfItsOutcomeOnceBeforeItsWaitersGoOn(t *testing.T) {
	for _, fails := range []bool{false, true} {
		learned := oneService(t)
		started, release := make(chan struct{}), make(chan struct{})
		d := newDescriptors(func(ctx context.Context) (*table, error) {
			close(started)
			<-release
			if fails {
				return nil, errors.New("no reflection")
			}
			return learned, nil
		}, time.Hour, time.Minute)
		var told, errorsTold atomic.Int32
		d.onChange = func() { told.Add(1) }
		d.onError = func(error) { errorsTold.Add(1) }

		const waiters = 20
		seen := make(chan int32, waiters)
		go func() { d.refresh(context.Background(), true) }()
		<-started
		var wg sync.WaitGroup
		for range waiters {
			wg.Go(func() {
				changed, _ := d.refresh(context.Background(), false)
				if changed {
					seen <- told.Load()
				}
			})
		}
		close(release)
		wg.Wait()
		d.wait()
		close(seen)
		for n := range seen {
			if n != 1 {
				t.Errorf("a waiter went on with the change told %d times; want once, before it", n)
			}
		}
		if fails && errorsTold.Load() != 1 {
			t.Errorf("a failed fetch was told %d times; want once", errorsTold.Load())
		}
	}
}

// oneService is a table of one service, x.S, unlike the empty one
// descriptors start with.
func oneService(t *testing.T) *table {
	t.Helper()
	tb, err := newTable([]*descriptorpb.FileDescriptorProto{{Name: proto.String("x.proto"), Package: proto.String("x"),
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("S")}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}
