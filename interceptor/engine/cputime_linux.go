package engine

import "golang.org/x/sys/unix"

// threadID returns the id of the calling OS thread.
func threadID() int { return unix.Gettid() }

// threadCPU returns the CPU time the OS thread tid has used, in
// nanoseconds, or -1 when it cannot be read. tid must be a thread of this
// process; the clock is the one pthread_getcpuclockid gives.
func threadCPU(tid int) int64 {
	// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): ~tid << 3 | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED.
	clock := int32(^uint32(tid)<<3) | 4 | 2
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return -1
	}
	return ts.Nano()
}

// ownThreadCPU returns the CPU time the calling OS thread has used, in
// nanoseconds, or -1 when it cannot be read.
func ownThreadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return -1
	}
	return ts.Nano()
}
