//go:build !linux

package engine

// Elsewhere than Linux a run's CPU time is not measured: its time limit
// counts wall-clock time.

func threadID() int { return 0 }

func threadCPU(int) int64 { return -1 }

func ownThreadCPU() int64 { return -1 }
