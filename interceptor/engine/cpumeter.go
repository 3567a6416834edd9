package engine

import "time"

// threadCPUWorks reports whether the CPU time of a thread can be read
// here; where it cannot, a run's time limit counts wall-clock time.
var threadCPUWorks = ownThreadCPU() >= 0

// cpuMeter measures, for the goroutine waiting on a run, the CPU time the
// run has used: its worker thread's CPU time since the run started on it,
// plus the time it spent waiting for calls to other methods, which count
// as if they were its own. Time the run spent waiting for a CPU, however
// busy the machine, is not counted.
type cpuMeter struct{ r *run }

// used returns the CPU time the run has used, wall after it was handed to
// a worker.
func (m cpuMeter) used(wall time.Duration) time.Duration {
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
	return time.Duration(now-m.r.cpuBase) + m.r.nested.used()
}
