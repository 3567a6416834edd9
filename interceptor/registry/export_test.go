package registry

import "time"

// WithBuild replaces how the registry decodes and compiles a document, so
// tests can hold a compile back.
func WithBuild(f func(k Key, b []byte, maxTimeout time.Duration, utils *Utils) (*Hook, error)) Option {
	return func(o *options) { o.build = f }
}
