package isolate

import (
	"bytes"
	"io"
	"os"
	"syscall"
	"testing"
)

// TestPollablePipe: through pollable files on a blocking pipe, as a worker
// is given, what goes in one end comes out of the other, more than the pipe
// holds at once, and the reader sees io.EOF when the writer closes.
func TestPollablePipe(t *testing.T) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	defer r.Close()
	qr, err := pollable(r)
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	qw, err := pollable(w)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: the writer waits for room
	go func() {
		if n, err := qw.Write(want); n != len(want) || err != nil {
			t.Errorf("wrote %d bytes (%v); want %d", n, err, len(want))
		}
		qw.Close()
	}()
	got, err := io.ReadAll(qr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not what was written (%d bytes)", len(got), len(want))
	}
}
