// Package proxy is a transparent gRPC reverse proxy that runs apihooks'
// hooks in front of a backend written in any language.
//
// A Proxy serves every method of its backend through
// grpc.UnknownServiceHandler. A method with no hooks is forwarded as raw
// bytes, message by message, never decoded: headers, trailers, status
// details, deadlines and cancellation go both ways. A method with hooks is
// decoded with descriptors learned from the backend's server reflection (or
// given as a FileDescriptorSet) into messages of package lazypb, which
// decode a field only when a hook uses it and go on as they came when no
// hook changed them, and runs through the same interceptors as a Go
// service built with package interceptor.
package proxy
