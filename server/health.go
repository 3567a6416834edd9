package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthService is grpc-go's health server, with Watch streams that end
// when the daemon shuts down. grpc-go's keeps a Watch stream open until its
// client cancels it, even once Shutdown has made every service NOT_SERVING:
// a client that checks health with Watch (gRPC's client-side health
// checking does) would hold up the graceful stop for the whole shutdown
// timeout.
type healthService struct {
	*health.Server
	// stopping ends when Shutdown has told every watcher NOT_SERVING.
	stopping context.Context
	stop     context.CancelFunc
}

func newHealthService() *healthService {
	ctx, cancel := context.WithCancel(context.Background())
	return &healthService{Server: health.NewServer(), stopping: ctx, stop: cancel}
}

// Shutdown makes every service NOT_SERVING, for good, then ends the Watch
// streams: each watcher is sent NOT_SERVING (when its service is known),
// then its stream ends with UNAVAILABLE, which tells a client to go
// elsewhere.
func (h *healthService) Shutdown() {
	h.Server.Shutdown()
	h.stop()
}

// Watch is health.Server's Watch, until Shutdown.
func (h *healthService) Watch(in *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stopping, cancel)()
	w := &watchStream{ServerStreamingServer: stream, ctx: ctx, last: -1}
	err := h.Server.Watch(in, w)
	if h.stopping.Err() == nil || stream.Context().Err() != nil {
		return err // the client went away, or the stream broke
	}
	// The health server may have seen the end of the stream's context
	// before the NOT_SERVING that Shutdown sent it: send it here.
	if resp, cerr := h.Server.Check(stream.Context(), in); cerr == nil && resp.Status != w.last {
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "the server is shutting down")
}

// watchStream is a Watch stream whose context ends at shutdown, and which
// remembers the last status sent on it.
type watchStream struct {
	grpc.ServerStreamingServer[healthpb.HealthCheckResponse]
	ctx  context.Context
	last healthpb.HealthCheckResponse_ServingStatus
}

func (s *watchStream) Context() context.Context { return s.ctx }

func (s *watchStream) Send(resp *healthpb.HealthCheckResponse) error {
	if err := s.ServerStreamingServer.Send(resp); err != nil {
		return err
	}
	s.last = resp.Status
	return nil
}
