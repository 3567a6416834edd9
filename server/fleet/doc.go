// Package fleet is how daemons make themselves known: each one keeps a
// record under <prefix>daemons/<id>, attached to an etcd lease, saying what
// it runs (address, version, isolation), which hooks revision it has in
// force, which hooks are broken or quarantined, and since when it runs. The
// record follows the daemon's state as it changes, and disappears with the
// lease when the daemon dies. hookctl status lists the records, and
// hookctl apply --wait reads them to know when a change is live.
package fleet
