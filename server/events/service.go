package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/apihooks/apihooks/gen/events/v1"
)

// Limits enforced by the Service.
const (
	// MaxIDBytes is the longest accepted user id or event type, in bytes.
	MaxIDBytes = 256
	// MaxEventBytes is the largest accepted stored event (its protojson
	// encoding), in bytes; it keeps each put well below etcd's default
	// request size limit of 1.5 MiB.
	MaxEventBytes = 1 << 20
	// MaxGetEvents is the most events GetEvents returns: the newest ones.
	MaxGetEvents = 1000
)

// streamPageSize is how many stored events StreamEvents reads per etcd range
// request before it starts watching.
const streamPageSize = 500

var (
	marshalOptions   = protojson.MarshalOptions{} // EmitUnpopulated is false
	unmarshalOptions = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Service implements eventsv1.EventServiceServer on etcd. It is safe for
// concurrent use. The etcd client belongs to the caller: Close does not
// close it.
type Service struct {
	eventsv1.UnimplementedEventServiceServer

	client *clientv3.Client
	opts   options
	root   string // prefix + "events/"

	closed    context.Context // done once Close is called
	closeFunc context.CancelFunc
}

// New returns a Service that stores events through client.
func New(client *clientv3.Client, opts ...Option) *Service {
	o := options{
		prefix:         DefaultPrefix,
		logger:         slog.Default(),
		now:            time.Now,
		requestTimeout: DefaultRequestTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	closed, closeFunc := context.WithCancel(context.Background())
	return &Service{
		client:    client,
		opts:      o,
		root:      o.prefix + "events/",
		closed:    closed,
		closeFunc: closeFunc,
	}
}

// Close ends every live StreamEvents stream with UNAVAILABLE "server is
// shutting down", and later StreamEvents calls fail the same way, so that
// grpc.Server.GracefulStop can drain. A stream blocked sending to a client
// that does not read ends when gRPC flow control lets the send finish or the
// client leaves. SendEvent, GetEvents and PublishEvents are not affected.
// Close may be called more than once.
func (s *Service) Close() { s.closeFunc() }

// errShuttingDown is returned by streams that end because of Close.
var errShuttingDown = status.Error(codes.Unavailable, "server is shutting down")

// userPrefix returns the key prefix of a user's events. The trailing "/"
// keeps "bob" from matching the keys of "bobby".
func (s *Service) userPrefix(userID string) string {
	return s.root + userID + "/"
}

// SendEvent validates and stores one event and returns its id. The event id
// is a UUIDv7 string and created_at is the server's clock.
func (s *Service) SendEvent(ctx context.Context, req *eventsv1.SendEventRequest) (*eventsv1.SendEventResponse, error) {
	id, err := s.store(ctx, req)
	if err != nil {
		var ae *argError
		if errors.As(err, &ae) {
			return nil, status.Error(codes.InvalidArgument, ae.msg)
		}
		return nil, err
	}
	return &eventsv1.SendEventResponse{EventId: id}, nil
}

// GetEvents returns the user's events oldest first. At most MaxGetEvents are
// returned: when the user has more, the newest MaxGetEvents, still in
// ascending order. Stored values that cannot be decoded are logged and left
// out.
func (s *Service) GetEvents(ctx context.Context, req *eventsv1.GetEventsRequest) (*eventsv1.GetEventsResponse, error) {
	if err := validateID("user_id", req.GetUserId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	resp, err := s.client.Get(rctx, s.userPrefix(req.GetUserId()),
		clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
		clientv3.WithLimit(MaxGetEvents))
	if err != nil {
		return nil, s.etcdError(ctx, "reading events", err)
	}
	events := make([]*eventsv1.Event, 0, len(resp.Kvs))
	for i := len(resp.Kvs) - 1; i >= 0; i-- {
		if ev, ok := s.decode(resp.Kvs[i]); ok {
			events = append(events, ev)
		}
	}
	return &eventsv1.GetEventsResponse{Events: events}, nil
}

// StreamEvents sends the user's stored events oldest first, as of one etcd
// revision R, then watches from R+1 and sends every event created for the
// user after that, so that no event is missed or sent twice (a put that
// rewrites an existing key is not sent again). It runs until
// the client leaves or the Service is closed. Values that cannot be decoded
// are logged and skipped. When the watch is compacted or fails the stream
// ends with UNAVAILABLE; the client may reconnect and receive the stored
// events again.
func (s *Service) StreamEvents(req *eventsv1.StreamEventsRequest, stream grpc.ServerStreamingServer[eventsv1.Event]) error {
	if err := validateID("user_id", req.GetUserId()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if s.closed.Err() != nil {
		return errShuttingDown
	}
	parent := stream.Context()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := context.AfterFunc(s.closed, cancel)
	defer stop()

	prefix := s.userPrefix(req.GetUserId())
	rev, err := s.sendStored(ctx, parent, prefix, stream)
	if err != nil {
		return err
	}

	if ctx.Err() != nil {
		// Watching with a context that is already done would only make the
		// etcd client set up a watch stream nobody uses.
		return s.endError(parent)
	}
	wch := s.client.Watch(clientv3.WithRequireLeader(ctx), prefix,
		clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wresp := range wch {
		if err := wresp.Err(); err != nil {
			if s.closed.Err() != nil {
				return errShuttingDown
			}
			if parent.Err() != nil {
				return status.FromContextError(parent.Err()).Err()
			}
			if wresp.CompactRevision != 0 {
				s.opts.logger.Warn("events: watch compacted",
					"prefix", prefix, "compact_revision", wresp.CompactRevision)
				return status.Errorf(codes.Unavailable,
					"event watch compacted at revision %d; reconnect", wresp.CompactRevision)
			}
			s.opts.logger.Warn("events: watch failed", "prefix", prefix, "err", err)
			return status.Error(codes.Unavailable, "event watch failed; reconnect")
		}
		for _, e := range wresp.Events {
			if e.Type != mvccpb.PUT || !e.IsCreate() {
				continue
			}
			ev, ok := s.decode(e.Kv)
			if !ok {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return s.sendError(parent, err)
			}
		}
	}
	// The watch channel closes when ctx ends (client gone or Close) or the
	// etcd client is closed.
	return s.endError(parent)
}

// endError is the status of a stream whose context ended or whose watch
// closed: shutting down after Close, the context error when the client left,
// UNAVAILABLE otherwise.
func (s *Service) endError(parent context.Context) error {
	if s.closed.Err() != nil {
		return errShuttingDown
	}
	if parent.Err() != nil {
		return status.FromContextError(parent.Err()).Err()
	}
	return status.Error(codes.Unavailable, "event watch closed; reconnect")
}

// sendStored sends the events under prefix in key order, reading them page by
// page at the revision of the first page, and returns that revision. Errors
// are gRPC statuses.
func (s *Service) sendStored(ctx, parent context.Context, prefix string, stream grpc.ServerStreamingServer[eventsv1.Event]) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
			clientv3.WithLimit(streamPageSize),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := s.requestContext(ctx)
		resp, err := s.client.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			if s.closed.Err() != nil {
				return 0, errShuttingDown
			}
			return 0, s.etcdError(parent, "reading events", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			ev, ok := s.decode(kv)
			if !ok {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return 0, s.sendError(parent, err)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// sendError turns a failed stream.Send into the status the stream ends with.
func (s *Service) sendError(parent context.Context, err error) error {
	if s.closed.Err() != nil {
		return errShuttingDown
	}
	if parent.Err() != nil {
		return status.FromContextError(parent.Err()).Err()
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Unavailable, "sending event failed")
}

// PublishEvents stores every event the client sends, each as SendEvent
// would, and answers with their count when the client closes its side. An
// invalid message ends the stream with INVALID_ARGUMENT naming its 0-based
// index ("message 3: to_user_id is required"); the events before it stay
// stored.
func (s *Service) PublishEvents(stream grpc.ClientStreamingServer[eventsv1.SendEventRequest, eventsv1.PublishEventsResponse]) error {
	ctx := stream.Context()
	var count int32
	for i := 0; ; i++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if err := stream.SendAndClose(&eventsv1.PublishEventsResponse{Count: count}); err != nil {
				return s.sendError(ctx, err)
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Convert(err).Err()
		}
		if _, err := s.store(ctx, req); err != nil {
			var ae *argError
			if errors.As(err, &ae) {
				return status.Errorf(codes.InvalidArgument, "message %d: %s", i, ae.msg)
			}
			return err
		}
		count++
	}
}

// argError is an invalid request; its message names the field.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

// validateID checks a user id or event type: required, at most MaxIDBytes
// bytes, and, for user ids (which are key segments), free of "/".
func validateID(field, v string) error {
	switch {
	case v == "":
		return &argError{field + " is required"}
	case len(v) > MaxIDBytes:
		return &argError{fmt.Sprintf("%s is longer than %d bytes", field, MaxIDBytes)}
	case field != "event_type" && strings.Contains(v, "/"):
		return &argError{field + ` must not contain "/"`}
	}
	return nil
}

// store validates req, stores it as a new event and returns the event id.
// Invalid requests return *argError; other errors are gRPC statuses.
func (s *Service) store(ctx context.Context, req *eventsv1.SendEventRequest) (string, error) {
	if err := validateID("to_user_id", req.GetToUserId()); err != nil {
		return "", err
	}
	if err := validateID("event_type", req.GetEventType()); err != nil {
		return "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		s.opts.logger.Error("events: generating event id", "err", err)
		return "", status.Error(codes.Internal, "generating event id failed")
	}
	ev := &eventsv1.Event{
		EventId:   id.String(),
		ToUserId:  req.GetToUserId(),
		EventType: req.GetEventType(),
		EventData: req.GetEventData(),
		CreatedAt: timestamppb.New(s.opts.now()),
	}
	data, err := marshalOptions.Marshal(ev)
	if err != nil {
		// protojson rejects values JSON cannot hold, such as NaN numbers.
		return "", &argError{"event_data cannot be encoded as JSON: " + err.Error()}
	}
	if len(data) > MaxEventBytes {
		return "", &argError{fmt.Sprintf("event_data is too large (event encodes to %d bytes; at most %d)", len(data), MaxEventBytes)}
	}
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	if _, err := s.client.Put(rctx, s.userPrefix(ev.ToUserId)+ev.EventId, string(data)); err != nil {
		return "", s.etcdError(ctx, "storing event", err)
	}
	return ev.EventId, nil
}

// decode parses a stored event, logging and rejecting values that are not
// events.
func (s *Service) decode(kv *mvccpb.KeyValue) (*eventsv1.Event, bool) {
	ev := new(eventsv1.Event)
	if err := unmarshalOptions.Unmarshal(kv.Value, ev); err != nil {
		s.opts.logger.Warn("events: skipping undecodable event", "key", string(kv.Key), "err", err)
		return nil, false
	}
	return ev, true
}

// requestContext bounds one etcd request by the configured timeout.
func (s *Service) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opts.requestTimeout > 0 {
		return context.WithTimeout(ctx, s.opts.requestTimeout)
	}
	return context.WithCancel(ctx)
}

// etcdError turns a failed etcd request into a gRPC status: the caller's
// context error when ctx has ended, UNAVAILABLE otherwise (including when
// the request timeout expired).
func (s *Service) etcdError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.opts.logger.Warn("events: etcd request failed", "op", op, "err", err)
	return status.Error(codes.Unavailable, op+": event store unavailable")
}
