//go:build !linux

package isolate

import (
	"os"
	"os/exec"
)

// childAttr sets nothing: only Linux has a parent-death signal.
func childAttr(*exec.Cmd) {}

// blockingPipe returns a pipe.
func blockingPipe() (r, w *os.File, err error) { return os.Pipe() }
