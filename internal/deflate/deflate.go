// Package deflate registers gRPC's "deflate" message compression with
// grpc-go, which has only gzip built in. gRPC's core library (C++, Python,
// Ruby, PHP, C#) writes deflate as a zlib stream (RFC 1950), and so does
// this package. Import it for its side effect.
package deflate

import (
	"compress/zlib"
	"io"
	"sync"

	"google.golang.org/grpc/encoding"
)

// Name is the compression's name in grpc-encoding headers.
const Name = "deflate"

func init() {
	encoding.RegisterCompressor(&compressor{})
}

type compressor struct {
	writers, readers sync.Pool
}

func (c *compressor) Name() string { return Name }

func (c *compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	z, ok := c.writers.Get().(*writer)
	if !ok {
		return &writer{Writer: zlib.NewWriter(w), pool: &c.writers}, nil
	}
	z.Reset(w)
	return z, nil
}

type writer struct {
	*zlib.Writer
	pool *sync.Pool
}

func (w *writer) Close() error {
	defer w.pool.Put(w)
	return w.Writer.Close()
}

func (c *compressor) Decompress(r io.Reader) (io.Reader, error) {
	z, ok := c.readers.Get().(*reader)
	if !ok {
		zr, err := zlib.NewReader(r)
		if err != nil {
			return nil, err
		}
		return &reader{ReadCloser: zr, pool: &c.readers}, nil
	}
	if err := z.ReadCloser.(zlib.Resetter).Reset(r, nil); err != nil {
		c.readers.Put(z)
		return nil, err
	}
	return z, nil
}

// reader goes back to the pool when gRPC closes it, once it has read the
// message.
type reader struct {
	io.ReadCloser
	pool *sync.Pool
}

func (r *reader) Close() error {
	defer r.pool.Put(r)
	return r.ReadCloser.Close()
}
