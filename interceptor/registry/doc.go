// Package registry keeps the hooks stored in etcd, compiled and ready.
//
// Hooks live under <prefix>hooks/<service>/<method>/<phase>/<name>, each a
// JSON document (see Document). A Registry reads them all at one revision,
// then follows a watch from the next one; on every change it builds a new
// immutable Snapshot and swaps it in atomically, so looking up the hooks of
// a call takes no lock. Documents compile on a small pool of goroutines off
// the watch, so a slow one never delays changes to other keys; the changes
// of one etcd transaction take effect together. A document that does not
// decode or compile never replaces a good version of its key, which the
// registry finds in etcd's history (or its snapshot file), so a registry
// that starts runs what one running all along runs; a key that never had
// one makes the methods it covers fail until it is fixed.
//
// When etcd is unreachable the registry keeps what it has and catches up
// as soon as etcd answers (with DialOptions on the client, within about a
// second), reading everything again when the revision it watched was
// compacted. With WithSnapshotFile it keeps the documents in force in a
// local file, so a server can start from them (StartFromSnapshot) while
// etcd is down.
package registry
