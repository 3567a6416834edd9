package isolate

import "runtime/metrics"

// heapNow returns the memory the Go runtime has mapped and in use now.
func heapNow() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
