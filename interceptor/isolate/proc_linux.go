package isolate

import (
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
