package engine

import (
	"sync"
	"time"
)

// What a hook may log, across its runs: LogRate bytes a second on average,
// LogBurst at once. Past that its lines are dropped, and a warning says so
// at most once a second. A hook on a busy method cannot fill the daemon's
// log, though each of its runs stays within MaxRunLog.
const (
	LogRate  = 64 << 10
	LogBurst = 1 << 20
)

// logRateHooks bounds how many hooks logRates follows: past it, it starts
// afresh (each hook gets a full burst again).
const logRateHooks = 4096

// logRates keeps each hook's log to LogRate, by hook ID. It is safe for
// concurrent use; the zero value is ready.
type logRates struct {
	mu    sync.Mutex
	hooks map[string]*logBucket
}

// logBucket is a token bucket of log bytes.
type logBucket struct {
	tokens  float64
	last    time.Time
	dropped int64
	warned  time.Time
}

// take reports whether a line of n bytes of hook id's fits at now. When it
// does not, warn says whether to log that lines are dropped (once a second),
// and dropped how many were since the last warning.
func (l *logRates) take(id string, n int, now time.Time) (ok, warn bool, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.hooks[id]
	if b == nil {
		if l.hooks == nil || len(l.hooks) >= logRateHooks {
			l.hooks = map[string]*logBucket{}
		}
		b = &logBucket{tokens: LogBurst, last: now}
		l.hooks[id] = b
	}
	b.tokens = min(LogBurst, b.tokens+now.Sub(b.last).Seconds()*LogRate)
	b.last = now
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		return true, false, 0
	}
	b.dropped++
	if now.Sub(b.warned) < time.Second {
		return false, false, 0
	}
	b.warned, dropped = now, b.dropped
	b.dropped = 0
	return false, true, dropped
}
