package isolate

import (
	"os"

	"golang.org/x/sys/unix"
)

// pollable returns a File on a duplicate of f's descriptor, in
// non-blocking mode, so that reading and writing it wait in the network
// poller; the mode belongs to the open pipe, so f is in it too. A worker
// serves its pipes through such files. A worker blocked in read(2) between
// runs has its only P taken by the runtime's monitor thread (sysmon) at the
// monitor's next tick, 20µs on, and handed to another thread that it wakes:
// a few thread wakeups per run on top of the one a run needs. Waiting in
// the poller, the thread sleeps with its P idle, and nothing takes it.
//
// The reads stay system calls the scheduler sees, and the first of a run
// wakes the monitor if it sleeps: with one P, only the monitor preempts a
// script that runs on, so that the engine's timer can end it at its time
// limit.
func pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	// NewFile makes a File that uses the poller of a descriptor in
	// non-blocking mode.
	return os.NewFile(uintptr(fd), f.Name()), nil
}
