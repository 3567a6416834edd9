package interceptor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/apihooks/apihooks/interceptor/registry"
)

// failureLogInterval is the least time between two log lines about one
// hook's failures.
const failureLogInterval = time.Second

// hookLogs keeps down the log lines about the hooks this process runs. A
// hook (one version of an etcd key) is shared by every interceptor its
// registry serves, the unary and the stream one alike, and so is what has
// been logged about it.
var hookLogs logThrottle

// logThrottle keeps down the log lines about hooks: a hook's failures are
// logged at most once a second, and a hook skipped on streams once. What it
// knows of a hook is dropped with the hook, once no snapshot holds it (its
// key changed or was deleted), so it holds only hooks in use. The zero
// value is ready for use; it is safe for concurrent use.
type logThrottle struct {
	// hooks holds a *hookLog by weak pointer to its hook: see of.
	hooks sync.Map
}

// hookLog is what a logThrottle knows of one hook.
type hookLog struct {
	// streamSkipLogged is set once the hook was logged as skipped on a
	// stream.
	streamSkipLogged atomic.Bool
	// lastFailure is when a failure of the hook was last logged (unix
	// nanoseconds); suppressed counts the failures not logged since.
	lastFailure atomic.Int64
	suppressed  atomic.Int64
	// catchUp is set while a line about failures not logged is due.
	catchUp atomic.Bool
}

// of returns h's entry, made on first use and deleted once h is garbage.
func (t *logThrottle) of(h *registry.Hook) *hookLog {
	wp := weak.Make(h)
	if l, ok := t.hooks.Load(wp); ok {
		return l.(*hookLog)
	}
	l, loaded := t.hooks.LoadOrStore(wp, &hookLog{})
	if !loaded {
		runtime.AddCleanup(h, func(wp weak.Pointer[registry.Hook]) { t.hooks.Delete(wp) }, wp)
	}
	return l.(*hookLog)
}

// failure reports whether a failure of h at now should be logged: the
// first one, then at most one a second, so a broken hook on a busy method
// cannot flood the log. suppressed is how many failures went unlogged since
// the last line. Failures not logged are not left untold when the hook
// stops failing: a second after the last line, if no failure was logged
// meanwhile, notLogged is called (in a goroutine of its own) with their
// number.
func (t *logThrottle) failure(h *registry.Hook, now time.Time, notLogged func(n int64)) (log bool, suppressed int64) {
	l := t.of(h)
	if n, ok := l.take(now); ok {
		return true, n
	}
	l.suppressed.Add(1)
	if notLogged != nil && l.catchUp.CompareAndSwap(false, true) {
		l.catchUpAt(now, notLogged)
	}
	return false, 0
}

// catchUpAt arranges for the failures not logged to be told once the
// hook's next turn to log comes, after now. A failure logged meanwhile
// tells them itself; one suppressed meanwhile, once that turn has been
// taken, arranges its own. catchUp is held until then.
func (l *hookLog) catchUpAt(now time.Time, notLogged func(n int64)) {
	wait := time.Duration(l.lastFailure.Load() + int64(failureLogInterval) - now.UnixNano())
	time.AfterFunc(max(wait, 0), func() {
		l.catchUp.Store(false)
		if l.suppressed.Load() == 0 {
			return
		}
		now := time.Now()
		if n, ok := l.take(now); ok {
			if n > 0 {
				notLogged(n)
			}
			return
		}
		// A failure took the turn just before: its line told the
		// failures until then, not those after it.
		if l.catchUp.CompareAndSwap(false, true) {
			l.catchUpAt(now, notLogged)
		}
	})
}

// take takes the hook's turn to log at now, if it has one: the first
// time, then once a second. n is how many failures went unlogged since its
// last line.
func (l *hookLog) take(now time.Time) (n int64, ok bool) {
	last := l.lastFailure.Load()
	if (last == 0 || now.UnixNano()-last >= int64(failureLogInterval)) &&
		l.lastFailure.CompareAndSwap(last, now.UnixNano()) {
		return l.suppressed.Swap(0), true
	}
	return 0, false
}

// firstStreamSkip reports true the first time it is called for h: a
// post-hook or an error hook is logged once as skipped on streams.
func (t *logThrottle) firstStreamSkip(h *registry.Hook) bool {
	return t.of(h).streamSkipLogged.CompareAndSwap(false, true)
}
