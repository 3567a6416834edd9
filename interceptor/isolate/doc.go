// Package isolate runs hook scripts in separate worker processes, for hooks
// that the server does not trust with its own memory and time.
//
// goja has no memory limit, and some native operations ("x".repeat(2**45),
// new Array(5e7).fill(0)) either kill the process with a fatal error that
// recover cannot catch or go on for many seconds after their interrupt.
// A Pool runs each script in a worker process (the daemon's own binary in
// worker mode, ServeWorker), one run at a time per worker; only the call a
// worker was running notices when it dies.
//
// The ceilings:
//
//   - Memory: a worker may grow its private writable memory (VmData: the Go
//     heap, goroutine stacks, the runtime's own bookkeeping) by three times
//     the pool's memory limit beyond what it had mapped when it started (its
//     baseline, not counted: about 40 MB for a small program that links
//     goja, about 110 MB for apihooksd), so that a run may hold about half
//     the limit of live data (see ceilingFactor). The kernel enforces it
//     (RLIMIT_DATA, set by the worker on itself); the Go runtime treats a
//     refused mapping as a fatal error, so the worker ends at once, and its
//     run ends with engine.Exhausted (RESOURCE_EXHAUSTED). The worker's
//     garbage collector aims at 7/8 of the limit, so garbage of earlier
//     runs is collected first; in effect the limit is on what one run holds
//     at once. Only Linux has the hard limit; elsewhere it is the
//     collector's soft target.
//   - CPU and time: a worker runs with GOMAXPROCS=1, so it takes at most
//     about one core, and the pool keeps at most WithWorkers of them. A run
//     still going at its timeout, or when its call's context ends, gets its
//     worker killed (SIGKILL) and replaced: an abandoned script never goes
//     on in the background. A worker whose own engine reports a timeout is
//     killed too, since its script may be stuck in native code.
//
// Workers start when a run needs one and die with the daemon (Linux's
// parent-death signal); Close kills and reaps them all. What a worker writes
// to its standard error goes to the pool's logger.
//
// Pool.Run has the contract of engine.Engine.Run, so the interceptors can
// use either. Messages cross the pipe as protobuf wire bytes (the protocol
// is apihooks.isolate.v1), with the descriptors of their types sent once to
// each worker, so any message type works, including dynamicpb messages. A
// worker decodes a message's fields only as its script uses them
// (internal/lazypb), and sends back the others as the bytes they came in:
// a hook that reads or sets a few fields of a large message pays for
// those. Scripts are sent once per worker and kept compiled there, by a
// hash of their name and source.
package isolate
