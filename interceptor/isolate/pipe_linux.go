package isolate

import (
	"io"
	"os"
	"syscall"
	"time"

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

// answerReader reads the daemon's end of a worker's standard output, a
// pollable file. It first tries for up to spin, giving up its CPU between
// tries (sched_yield) to whatever else is runnable there, such as the
// worker; then it waits in the network poller. Most answers come within a
// few tens of µs, and an answer that finds its caller still running need
// not wake a sleeping thread, which on a busy machine waits its turn on a
// CPU. The poller, unlike a blocking read(2), leaves the caller's P to other
// goroutines. Nothing spins unless a run is waiting for its answer.
type answerReader struct {
	rc   syscall.RawConn
	spin time.Duration
}

func newAnswerReader(f *os.File, spin time.Duration) (io.Reader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &answerReader{rc: rc, spin: spin}, nil
}

func (a *answerReader) Read(b []byte) (int, error) {
	var n int
	var rerr error
	var deadline time.Time
	if err := a.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), b)
			if rerr != unix.EAGAIN {
				return true
			}
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(a.spin)
			}
			if now.After(deadline) {
				return false // wait in the poller
			}
			unix.RawSyscallNoError(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}
