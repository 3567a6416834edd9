package engine

import "time"

// cpuProbe is when Run first reads a run's CPU time: a run that ends
// sooner, as nearly all do, never pays for reading the clock.
const cpuProbe = time.Millisecond

// threadCPUWorks reports whether the CPU time of a thread can be read
// here; where it cannot, a run's time limit counts wall-clock time.
var threadCPUWorks = ownThreadCPU() >= 0

// cpuMeter measures, for the goroutine waiting on a run, the CPU time the
// run has used: its worker thread's CPU time since the first reading, plus
// the wall-clock time before that reading (an upper bound of the CPU time
// then, and at most about cpuProbe), plus the time it spent waiting for
// calls to other methods, which count as if they were its own.
type cpuMeter struct {
	r *run
	// base is the thread's CPU time at the first reading, at baseWall
	// after the run was handed to a worker; -1 before.
	base     int64
	baseWall time.Duration
}

// used returns the CPU time the run has used, wall after it was handed to
// a worker.
func (m *cpuMeter) used(wall time.Duration) time.Duration {
	tid := m.r.tid.Load()
	switch {
	case tid == 0:
		return 0 // not started yet
	case tid < 0:
		return wall
	}
	now := threadCPU(int(tid))
	if now < 0 {
		return wall
	}
	if m.base < 0 {
		m.base, m.baseWall = now, wall
	}
	return m.baseWall + time.Duration(now-m.base) + m.r.nested.used()
}
