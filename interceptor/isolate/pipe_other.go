//go:build !linux

package isolate

import (
	"errors"
	"io"
	"os"
	"time"
)

// pollable fails: it is Linux only (see pipe_linux.go), and elsewhere a
// worker reads and writes its pipes as they are.
func pollable(*os.File) (*os.File, error) {
	return nil, errors.New("pollable pipes are Linux only")
}

// newAnswerReader returns f: elsewhere than on Linux, the daemon reads a
// worker's answers as they come (see pipe_linux.go).
func newAnswerReader(f *os.File, _ time.Duration) (io.Reader, error) { return f, nil }
