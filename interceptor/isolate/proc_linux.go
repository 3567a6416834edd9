package isolate

import (
	"os"
	"os/exec"
	"syscall"
)

// childAttr makes a worker die with the daemon: the kernel sends it SIGKILL
// when the thread that started it ends. Go's threads live as long as the
// process unless a goroutine ends while locked to its thread, and workers
// are started from the goroutines of calls, which do not lock theirs.
func childAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// blockingPipe returns a pipe in blocking mode: reads and writes on it are
// plain system calls that wake their thread as soon as they can go on,
// rather than waiting for the network poller.
func blockingPipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}
