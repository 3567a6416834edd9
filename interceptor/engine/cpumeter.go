package engine

import "time"

// cpuProbe is when Run first reads a run's CPU time: a run that ends
// sooner, as nearly all do, never pays for reading the clock (a system
// call of about half a microsecond).
const cpuProbe = time.Millisecond

// threadCPUWorks reports whether the CPU time of a thread can be read
// here; where it cannot, a run's time limit counts wall-clock time.
var threadCPUWorks = ownThreadCPU() >= 0

// cpuMeter measures, for the goroutine waiting on a run, the CPU time the
// run has used: its worker thread's CPU time since the first reading, plus
// what it used before that reading, plus the time it spent waiting for
// calls to other methods, which count as if they were its own.
//
// Before the first reading the meter knows only the wall-clock time since
// the run started on its thread, an upper bound of its CPU time then. It
// counts that time, but at most cpuProbe: the first reading comes at about
// cpuProbe, unless the machine is so busy that the waiting goroutine did
// not get a processor in time, and then the wall-clock time is mostly
// time the run, too, spent waiting for one. Counting it would time out
// trivial hooks on a busy machine; not counting it lets a run use more CPU
// time than its limit by at most that delay, and the wall-clock ceiling
// still bounds it.
type cpuMeter struct {
	r *run
	// base is the thread's CPU time at the first reading, and before the
	// CPU time counted until then; base is -1 before that reading.
	base   int64
	before time.Duration
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
		m.base, m.before = now, min(time.Since(m.r.started), cpuProbe)
	}
	return m.before + time.Duration(now-m.base) + m.r.nested.used()
}
