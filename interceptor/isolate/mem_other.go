//go:build !linux

package isolate

import "runtime/debug"

// limitMemory asks the garbage collector to keep the heap under what it has
// now plus limit. Only Linux has a hard limit (see mem_linux.go).
func limitMemory(limit int64) (int64, error) {
	if limit > 0 {
		debug.SetMemoryLimit(heapNow() + limit)
	}
	return 0, nil
}
