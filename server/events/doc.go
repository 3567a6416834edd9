// Package events implements events.v1.EventService, the example service that
// apihooks protects, on top of etcd so that events survive a restart of the
// daemon.
//
// Each event is stored under its own key,
//
//	<prefix>events/<user_id>/<event_id>
//
// where prefix defaults to "/apihooks/" (see WithPrefix). The value is the
// events.v1.Event encoded as protojson with unpopulated fields omitted, so
// `etcdctl get --prefix /apihooks/events/` shows readable JSON. Event ids are
// UUIDv7 strings: they grow with time, so keys of one user sort oldest first.
// A user id may not contain "/", so the events of "bob" and "bobby" live
// under disjoint key prefixes.
//
// Every error a handler returns is a gRPC status: INVALID_ARGUMENT for bad
// requests, UNAVAILABLE when etcd fails or does not answer in time, and
// CANCELED or DEADLINE_EXCEEDED when the caller's context ends first.
package events
