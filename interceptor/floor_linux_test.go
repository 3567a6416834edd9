package interceptor_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/apihooks/apihooks/internal/eventstest"
)

// echoArg makes the test binary an echo process (see serveEchoIfAsked).
const echoArg = "echo-floor"

// serveEchoIfAsked makes this program an echo process when its first
// argument is echoArg: it reads frames of the size its second argument
// gives from standard input and writes each back, with blocking read(2)
// and write(2) that the Go scheduler never sees, so nothing but the
// kernel stands between the two ends. It returns at once otherwise.
func serveEchoIfAsked() {
	if len(os.Args) < 3 || os.Args[1] != echoArg {
		return
	}
	size, err := strconv.Atoi(os.Args[2])
	if err != nil || size <= 0 {
		os.Exit(2)
	}
	buf := make([]byte, size)
	for {
		for got := 0; got < size; {
			n, _, errno := syscall.RawSyscall(syscall.SYS_READ, 0, uintptr(unsafe.Pointer(&buf[got])), uintptr(size-got))
			switch {
			case errno == syscall.EINTR:
				continue
			case errno != 0 || n == 0:
				os.Exit(0)
			}
			got += int(n)
		}
		for sent := 0; sent < size; {
			n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, 1, uintptr(unsafe.Pointer(&buf[sent])), uintptr(size-sent))
			switch {
			case errno == syscall.EINTR:
				continue
			case errno != 0:
				os.Exit(0)
			}
			sent += int(n)
		}
	}
}

// echo is the parent's end of an echo process.
type echo struct {
	w  *os.File
	rc syscall.RawConn
}

// processFloor returns an interceptor that sends a request's worth of
// bytes to an echo process and reads them back before it calls the
// handler: the transport of a hook run in another process, with nothing
// encoded and no script run, so the least such a run can cost. It waits for
// the echo as a worker pool's run waits for its answer: trying for 25µs,
// giving up its CPU between tries, then in the network poller. It keeps
// GOMAXPROCS echo processes, one per caller, which end with b.
func processFloor(b *testing.B) grpc.UnaryServerInterceptor {
	size := proto.Size(eventstest.Request(b))
	echoes := make(chan *echo, runtime.GOMAXPROCS(0))
	for range cap(echoes) {
		cmd := exec.Command(os.Args[0], echoArg, strconv.Itoa(size))
		inR, inW, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdin, cmd.Stdout = inR, outW
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		inR.Close()
		outW.Close()
		b.Cleanup(func() { inW.Close(); outR.Close(); cmd.Wait() })
		rc, err := outR.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		echoes <- &echo{w: inW, rc: rc}
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		e := <-echoes
		defer func() { echoes <- e }()
		buf := make([]byte, size)
		if _, err := e.w.Write(buf); err != nil {
			return nil, err
		}
		if err := e.readFull(buf); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (e *echo) readFull(buf []byte) error {
	var got int
	var rerr error
	var deadline time.Time
	for got < len(buf) && rerr == nil {
		err := e.rc.Read(func(fd uintptr) bool {
			for {
				n, err := syscall.Read(int(fd), buf[got:])
				if err != syscall.EAGAIN {
					got += max(n, 0)
					if err == nil && n == 0 {
						err = errors.New("echo process ended")
					}
					rerr = err
					return true
				}
				now := time.Now()
				if deadline.IsZero() {
					deadline = now.Add(25 * time.Microsecond)
				}
				if now.After(deadline) {
					return false // wait in the poller
				}
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			}
		})
		if err != nil {
			return err
		}
	}
	return rerr
}
