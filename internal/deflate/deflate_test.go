package deflate_test

import (
	"bytes"
	"compress/zlib"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"

	"github.com/apihooks/apihooks/internal/deflate"
)

// TestDeflateIsAZlibStream: what gRPC's core library writes as deflate (a
// zlib stream) decompresses, and what the compressor writes is a zlib
// stream, message after message with pooled readers and writers.
func TestDeflateIsAZlibStream(t *testing.T) {
	c := encoding.GetCompressor(deflate.Name)
	if c == nil {
		t.Fatal("deflate is not registered")
	}
	for i, msg := range []string{"", "hello", strings.Repeat("abc", 10000), "again"} {
		var zb bytes.Buffer
		zw := zlib.NewWriter(&zb)
		zw.Write([]byte(msg))
		zw.Close()
		r, err := c.Decompress(&zb)
		if err != nil {
			t.Fatalf("message %d: decompress: %v", i, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != msg {
			t.Fatalf("message %d: decompressed %d bytes, %v; want %d", i, len(got), err, len(msg))
		}
		r.(io.Closer).Close()

		var out bytes.Buffer
		w, err := c.Compress(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		zr, err := zlib.NewReader(&out)
		if err != nil {
			t.Fatalf("message %d: not a zlib stream: %v", i, err)
		}
		if got, err := io.ReadAll(zr); err != nil || string(got) != msg {
			t.Fatalf("message %d: compressed, then read with zlib: %d bytes, %v; want %d", i, len(got), err, len(msg))
		}
	}
}
