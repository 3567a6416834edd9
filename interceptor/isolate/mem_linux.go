package isolate

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// limitMemory lets a run hold about half of limit of live memory: it asks
// the garbage collector to keep the heap under what it is now plus limit,
// and caps the process's private writable memory (RLIMIT_DATA, what
// /proc/self/status shows as VmData) at what it has now plus ceilingFactor
// times limit, and returns what it has now. The runtime treats a mapping
// the kernel refuses as a fatal "out of memory": the process ends at once.
// A limit of zero or less sets nothing.
func limitMemory(limit int64) (int64, error) {
	base, err := vmData()
	if err != nil || limit <= 0 {
		return base, err
	}
	debug.SetMemoryLimit(heapNow() + limit*7/8)
	max := uint64(base + ceilingFactor*limit)
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: max, Max: max}); err != nil {
		return base, fmt.Errorf("set RLIMIT_DATA: %w", err)
	}
	return base, nil
}

// ceilingFactor is how many times its limit a worker may map beyond its
// baseline. The Go runtime maps its heap as private writable memory and
// keeps what it freed mapped; an array growing to its final size F (goja
// grows it by a quarter at a time) holds its old and new storage at once,
// and the earlier copies are freed only when a collection, which runs
// beside the script, gets to them: until then, new storage is mapped
// past them. Growing an array to 32 MiB (half the default limit) mapped
// 84 to 124 MiB, varying with the collector's timing; with no copy ever
// freed in time it would be 5F, 160 MiB. Twice the limit failed such a run
// about once in 60.
const ceilingFactor = 3

// vmData returns the process's VmData, in bytes.
func vmData() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		v, ok := bytes.CutPrefix(line, []byte("VmData:"))
		if !ok {
			continue
		}
		v = bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmData: %w", err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("no VmData in /proc/self/status")
}
