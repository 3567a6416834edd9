// Package interceptor runs JavaScript hooks around the methods of a gRPC
// server.
//
// UnaryServerInterceptor and StreamServerInterceptor take their hooks from a
// Source (a *registry.Registry, which follows etcd, or a *registry.Static)
// and run them with an engine.Engine:
//
//   - pre-hooks run before the handler, on the request; on a stream, on every
//     message the client sends. A pre-hook may change the request, reject the
//     call with a status, or answer in the handler's place;
//   - post-hooks run after a unary handler succeeded, on the response, and
//     may change it or reject the call. They never run on streams, whose data
//     is incomplete at any point; each is logged once as skipped there.
//
// A method with no hooks costs one atomic load and a map lookup. Every error
// that leaves the interceptors is a gRPC status. An Observer (WithObserver)
// is told how each hook run ended; metrics and traces are built on it
// (interceptor/hookmetrics, interceptor/hooktrace).
package interceptor
