package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/apihooks/apihooks/interceptor"
)

// Defaults of a Proxy's options.
const (
	// DefaultRefreshInterval is how often, at most, the proxy asks the
	// backend's reflection again.
	DefaultRefreshInterval = 2 * time.Second
	// DefaultRefreshTimeout bounds one round of questions to the
	// backend's reflection.
	DefaultRefreshTimeout = 10 * time.Second
)

// Flow-control windows of the proxy's connections, to its clients and to
// the backend. Fixed windows turn off grpc-go's bandwidth-delay estimate,
// whose ping goes out on nearly every small call and whose ack the peer
// writes on its own: a write and a wakeup more per call at each end. A
// stream may have 1 MiB in flight each way, a connection 16 MiB: the most
// the estimate would give either.
const (
	streamWindow = 1 << 20
	connWindow   = 16 << 20
)

// Proxy forwards calls to a backend, running hooks on the methods that have
// some. It is safe for concurrent use.
type Proxy struct {
	cc     grpc.ClientConnInterface
	src    interceptor.Source
	desc   *descriptors
	log    *slog.Logger
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
	// ignored holds what WatchHooks last found.
	ignored atomic.Pointer[checked]
	onLearn func(services []string)
	// callable are the grpc.* services ctx.call may reach.
	callable []string
}

type options struct {
	set             *descriptorpb.FileDescriptorSet
	logger          *slog.Logger
	hookOpts        []interceptor.Option
	refreshInterval time.Duration
	refreshTimeout  time.Duration
	onLearn         func(services []string)
	callable        []string
}

// Option configures a Proxy.
type Option func(*options)

// WithDescriptorSet gives the backend's descriptors once for all, instead of
// learning them from its server reflection.
func WithDescriptorSet(set *descriptorpb.FileDescriptorSet) Option {
	return func(o *options) { o.set = set }
}

// WithLogger sets the logger for descriptor refreshes.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithInterceptorOptions sets the options of the interceptors that run the
// hooks (engine, logger, quarantine, isolation). The proxy adds its own
// WithResponseTypes.
func WithInterceptorOptions(opts ...interceptor.Option) Option {
	return func(o *options) { o.hookOpts = append(o.hookOpts, opts...) }
}

// WithRefresh sets how often, at most, the backend's reflection is asked
// again (default DefaultRefreshInterval), and how long one round of
// questions may take (default DefaultRefreshTimeout).
func WithRefresh(interval, timeout time.Duration) Option {
	return func(o *options) { o.refreshInterval, o.refreshTimeout = interval, timeout }
}

// WithOnLearn sets a function called with the backend's services each time
// the proxy learns descriptors that differ from those it had (a daemon
// marks them SERVING in its health service). It must not block.
func WithOnLearn(f func(services []string)) Option {
	return func(o *options) { o.onLearn = f }
}

// WithHookedGRPCServices names the backend's services under grpc. that are
// hooked (a daemon's --hook-services names them): hooks may call their
// methods with ctx.call, as a client may through the proxy. Other grpc.*
// services (the backend's health, reflection, channelz) are not the API
// hooks call, and ctx.call refuses them.
func WithHookedGRPCServices(services ...string) Option {
	return func(o *options) { o.callable = append(o.callable, services...) }
}

// New returns a proxy to the backend behind cc, with the hooks src hands
// out. cc must be made with DialOptions (Dial does). New does no I/O: call
// Refresh to learn the descriptors before serving.
func New(cc grpc.ClientConnInterface, src interceptor.Source, opts ...Option) (*Proxy, error) {
	o := options{logger: slog.Default(), refreshInterval: DefaultRefreshInterval, refreshTimeout: DefaultRefreshTimeout}
	for _, f := range opts {
		f(&o)
	}
	p := &Proxy{cc: backendConn{cc}, src: src, log: o.logger, onLearn: o.onLearn, callable: o.callable}
	if o.set != nil {
		t, err := newTable(o.set.GetFile(), nil)
		if err != nil {
			return nil, fmt.Errorf("descriptor set: %w", err)
		}
		p.desc = newDescriptors(nil, 0, 0)
		p.desc.cur.Store(t)
	} else {
		p.desc = newDescriptors(fromReflection(cc), o.refreshInterval, o.refreshTimeout)
		p.desc.onChange, p.desc.onError = p.learned, p.cannotLearn
	}
	// Hooks call the backend's methods through the proxy's hooks.
	hookOpts := append(append([]interceptor.Option(nil), o.hookOpts...),
		interceptor.WithResponseTypes(p.responseType), interceptor.WithCaller(p.call))
	p.unary = interceptor.UnaryServerInterceptor(src, hookOpts...)
	p.stream = interceptor.StreamServerInterceptor(src, hookOpts...)
	return p, nil
}

// Refresh learns the backend's descriptors from its server reflection now.
// With a descriptor set it does nothing.
func (p *Proxy) Refresh(ctx context.Context) error {
	if _, err := p.desc.refresh(ctx, true); err != nil {
		return fmt.Errorf("learn the backend's descriptors: %w", err)
	}
	return nil
}

// cannotLearn logs a fetch of the descriptors that failed.
func (p *Proxy) cannotLearn(err error) {
	p.log.Warn("cannot learn the backend's descriptors", "error", err)
}

// Wait waits for the fetch of the backend's descriptors in flight, if
// any: it takes the refresh timeout at most, and ends at once once the
// backend's connection is closed. Call it after closing the connection.
func (p *Proxy) Wait() { p.desc.wait() }

// learned logs descriptors that changed, and tells onLearn.
func (p *Proxy) learned() {
	p.log.Info("learned the backend's descriptors", "services", len(p.desc.current().services))
	if p.onLearn != nil {
		p.onLearn(p.Services())
	}
}

// Services returns the backend's services the proxy knows descriptors of.
func (p *Proxy) Services() []string { return p.desc.current().services }

// ServerOptions returns the options that make a grpc.Server a proxy: every
// method it does not serve itself goes to the backend. Give that server no
// hook interceptors: the proxy runs them itself.
func (p *Proxy) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.UnknownServiceHandler(p.handle),
		grpc.ForceServerCodecV2(newCodec()),
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
	}
}

// DialOptions are the options a connection to the backend needs, beside
// its credentials.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		// gRPC's default waits up to 2 minutes between attempts to
		// connect again: a backend back from a restart would stay
		// unavailable to clients that long. Every 2 s at most.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}}),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(newCodec()),
			// The client that called enforces its own limit.
			grpc.MaxCallRecvMsgSize(1<<31-1),
		),
	}
}

// MetricsInfo returns what server metrics count a call the proxy forwards
// under: its method and call shape, as the backend's descriptors say, or,
// for a method they do not describe, "unknown.Unknown/Unknown", so that
// clients naming made-up methods cannot make series without end.
func (p *Proxy) MetricsInfo(info *grpc.StreamServerInfo) *grpc.StreamServerInfo {
	m := p.desc.current().methods[info.FullMethod]
	if m == nil {
		return &unknownMethod
	}
	return &m.info
}

var unknownMethod = grpc.StreamServerInfo{FullMethod: "/unknown.Unknown/Unknown", IsClientStream: true, IsServerStream: true}

func (p *Proxy) responseType(fullMethod string) protoreflect.MessageType {
	if m := p.desc.current().methods[fullMethod]; m != nil {
		return m.out
	}
	return nil
}

// handle serves one call of the backend's.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	fullMethod, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "proxy: no method in the call's context")
	}
	if chain := p.src.Snapshot().Lookup(fullMethod); chain != nil {
		return p.hooked(ss, fullMethod, chain)
	}
	if m := p.desc.current().methods[fullMethod]; m != nil && !m.streaming() {
		return forwardUnary(ss, p.cc, fullMethod)
	}
	return forward(ss, p.cc, fullMethod, newFrame)
}

// forwardUnary carries a call of a method known to be unary: one message
// each way, with no goroutine of its own.
func forwardUnary(ss grpc.ServerStream, cc grpc.ClientConnInterface, fullMethod string) error {
	in := new(frame)
	if err := recvRequest(ss, fullMethod, in); err != nil {
		return err
	}
	var header, trailer metadata.MD
	out := new(frame)
	err := cc.Invoke(outgoing(ss.Context()), fullMethod, in, out, grpc.Header(&header), grpc.Trailer(&trailer))
	if len(header) > 0 {
		if err := ss.SetHeader(header); err != nil {
			return err
		}
	}
	ss.SetTrailer(backendTrailer(trailer))
	if err != nil {
		return err
	}
	return ss.SendMsg(out)
}

// backendTrailer returns the backend's trailer as the proxy passes it on:
// without grpc-status-details-bin, the backend's status as its library
// encoded it. The proxy returns that status (details included) as the
// call's error, and gRPC encodes it again; left in the trailer, it would
// go out beside a status a hook chose instead (a redacted message, another
// code, an answer) and leak the backend's, or make clients refuse the
// mismatch.
func backendTrailer(md metadata.MD) metadata.MD {
	delete(md, "grpc-status-details-bin")
	return md
}

// recvRequest receives the one request of a unary call.
func recvRequest(ss grpc.ServerStream, fullMethod string, m any) error {
	err := ss.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		return status.Errorf(codes.Internal, "%s: the client sent no request", fullMethod)
	}
	return err
}

func newFrame() any { return new(frame) }

var streamDesc = grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forward carries one call to the backend and back, message by message:
// the client's messages come from ss.RecvMsg into newIn(), the backend's go
// back as frames. It returns the backend's status, or the error that ended
// the client's side.
func forward(ss grpc.ServerStream, cc grpc.ClientConnInterface, fullMethod string, newIn func() any) error {
	ctx, cancel := context.WithCancel(outgoing(ss.Context()))
	defer cancel()
	cs, err := cc.NewStream(ctx, &streamDesc, fullMethod)
	if err != nil {
		return err
	}
	// up carries the client's messages; it ends on the client's half
	// close, or ends the call on a client error (or a hook's answer).
	upErr := make(chan error, 1)
	go func() {
		err := up(ss, cs, newIn)
		upErr <- err
		if err != nil {
			cancel()
		}
	}()
	err = down(cs, ss)
	if err != nil {
		select {
		case uerr := <-upErr:
			if uerr != nil {
				return uerr
			}
		default:
		}
	}
	return err
}

// forwardServerStream carries a call of a server-streaming method: its one
// request is received, and so its pre-hooks run, before the backend is
// called, so that a call they reject or answer never reaches the backend.
func forwardServerStream(ss grpc.ServerStream, cc grpc.ClientConnInterface, fullMethod string, in, more any) error {
	if err := recvRequest(ss, fullMethod, in); err != nil {
		return err
	}
	if err := decodeErr(fullMethod, in); err != nil {
		return err
	}
	// The client half-closes with its request; another message is a
	// violation the backend would refuse, as gRPC's servers do.
	switch err := ss.RecvMsg(more); {
	case err == nil:
		return status.Errorf(codes.Internal, "%s: cardinality violation: expected <EOF> for non client-streaming RPCs, but received another message", fullMethod)
	case !errors.Is(err, io.EOF):
		return err
	}
	ctx, cancel := context.WithCancel(outgoing(ss.Context()))
	defer cancel()
	cs, err := cc.NewStream(ctx, &serverStreamDesc, fullMethod)
	if err != nil {
		return err
	}
	// io.EOF: the backend ended the call; down reports how.
	if err := cs.SendMsg(in); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return down(cs, ss)
}

var serverStreamDesc = grpc.StreamDesc{ServerStreams: true}

// up sends the client's messages to the backend until the client half
// closes.
func up(ss grpc.ServerStream, cs grpc.ClientStream, newIn func() any) error {
	method, _ := grpc.MethodFromServerStream(ss)
	for {
		m := newIn()
		if err := ss.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		if err := decodeErr(method, m); err != nil {
			return err
		}
		if err := cs.SendMsg(m); err != nil {
			// io.EOF: the backend ended the call; down reports how.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// down sends the backend's headers, as soon as they come, and its messages
// to the client until the backend ends the call, and returns its status.
func down(cs grpc.ClientStream, ss grpc.ServerStream) error {
	// An error here (no headers: the backend failed the call at once)
	// comes again from RecvMsg, with the status.
	if md, err := cs.Header(); err == nil && len(md) > 0 {
		if err := ss.SendHeader(md); err != nil {
			return err
		}
	}
	for {
		f := new(frame)
		err := cs.RecvMsg(f)
		if err != nil {
			ss.SetTrailer(backendTrailer(cs.Trailer().Copy()))
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// outgoing makes the client's metadata the metadata of the call to the
// backend. The compressions the client accepts are not passed on: the
// backend is told those the proxy can read, as the proxy decompresses what
// it forwards. (The proxy's calls to the backend are not compressed: it
// cannot know which compressions the backend reads.)
func outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx) // a copy
	delete(md, ":authority")
	delete(md, "grpc-accept-encoding")
	return metadata.NewOutgoingContext(ctx, md)
}
