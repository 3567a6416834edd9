package protojs

// A Counter counts the bytes a script writes into messages through views
// and FromValueCounting: strings and byte strings as they are converted,
// messages as they are copied. A message a script changed encodes to at
// most what it encoded to before plus about as much as was counted (and a
// new one, to about what was counted), however often one value was written
// into it: its owner need only measure the message when the count is large.
// The zero Counter is empty; a nil one counts nothing.
type Counter struct {
	n int64
	// Limit, when positive, is what a single value (an Any's message,
	// which is encoded as it is converted) may encode to.
	Limit int64
}

// Bytes returns the bytes counted.
func (c *Counter) Bytes() int64 {
	if c == nil {
		return 0
	}
	return c.n
}

// over reports whether n bytes are past the counter's limit.
func (c *Counter) over(n int64) bool { return c != nil && c.Limit > 0 && n > c.Limit }

func (c *Counter) add(n int) {
	if c != nil {
		c.n += int64(n)
	}
}

// WithCounter counts what the script writes through the view in c.
func WithCounter(c *Counter) ViewOption {
	return func(v *View) { v.counter = c }
}
