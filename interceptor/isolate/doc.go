// Package isolate runs hook scripts in separate worker processes, for hooks
// that the server does not trust with its own memory and time.
//
// goja has no memory limit, and some native operations ("x".repeat(2**45),
// new Array(5e7).fill(0)) either kill the process with a fatal error that
// recover cannot catch or go on for many seconds after their interrupt.
// A Pool runs each script in a worker process (the daemon's own binary in
// worker mode, ServeWorker) under a hard memory ceiling; a worker that goes
// over it, crashes, or is still busy when its run's time is up is killed
// and replaced, and only the call it was running notices.
//
// Pool.Run has the same contract as engine.Engine.Run, so the interceptors
// can use either. Messages cross the pipe as protobuf wire bytes, with the
// descriptors of their types sent once to each worker, so any message type
// works, including dynamicpb messages.
package isolate
