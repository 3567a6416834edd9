package isolate

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// maxFrame bounds one message on the pipe; a longer length is a protocol
// error, not an allocation.
const maxFrame = 1 << 30

// readFrame reads one length-prefixed message into m. buf is reused for
// the message's bytes and returned, grown if need be.
func readFrame(r *bufio.Reader, buf []byte, m proto.Message) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxFrame {
		return buf, fmt.Errorf("frame of %d bytes is over the limit of %d", n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, proto.Unmarshal(buf, m)
}

// frameWriter writes length-prefixed messages, each with one Write, from
// any number of goroutines.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (f *frameWriter) write(m proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := proto.MarshalOptions{}.MarshalAppend(append(f.buf[:0], 0, 0, 0, 0), m)
	if err != nil {
		return err
	}
	if len(b)-4 > maxFrame {
		return fmt.Errorf("message of %d bytes is over the limit of %d", len(b)-4, maxFrame)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	f.buf = b
	_, err = f.w.Write(b)
	if cap(f.buf) > 1<<20 {
		f.buf = nil // do not keep one huge message's buffer
	}
	return err
}
