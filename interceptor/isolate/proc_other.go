//go:build !linux

package isolate

import (
	"os/exec"
)

// childAttr sets nothing: only Linux has a parent-death signal.
func childAttr(*exec.Cmd) {}
