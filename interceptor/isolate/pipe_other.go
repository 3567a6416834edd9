//go:build !linux

package isolate

import (
	"errors"
	"os"
)

// pollable fails: it is Linux only (see pipe_linux.go), and elsewhere a
// worker reads and writes its pipes as they are.
func pollable(*os.File) (*os.File, error) {
	return nil, errors.New("pollable pipes are Linux only")
}
