// Package server wires the apihooks daemon: an etcd (embedded, or an
// existing cluster), the hook registry that follows it, and a gRPC server
// that serves the example EventService behind the hook interceptors, with
// health checking and server reflection.
package server
