// Package registry keeps the hooks stored in etcd, compiled and ready.
//
// Hooks live under <prefix>hooks/<service>/<method>/<phase>/<name>, each a
// JSON document (see Document). A Registry reads them all at one revision,
// then follows a watch from the next one; on every change it builds a new
// immutable Snapshot and swaps it in atomically, so looking up the hooks of
// a call takes no lock. A document that does not decode or compile never
// replaces a good version of its key; a key that never had one makes the
// methods it covers fail until it is fixed. When etcd is unreachable the
// registry keeps what it has and catches up when etcd returns, reading
// everything again when the revision it watched was compacted.
package registry
