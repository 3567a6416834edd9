package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DefaultTimeout bounds a run whose Call names no timeout.
const DefaultTimeout = 100 * time.Millisecond

// RegexpMatchTimeout bounds one backtracking regular expression match once
// BoundRegexpMatches was called. Interrupts do not reach into a match, so
// without it a catastrophic pattern keeps a core busy long after its run was
// abandoned.
const RegexpMatchTimeout = time.Second

var setRegexpTimeout sync.Once

// BoundRegexpMatches sets the process-wide timeout of backtracking regular
// expression matches (regexp2.DefaultMatchTimeout, which scripts' patterns
// with lookaround or backreferences use) to RegexpMatchTimeout, unless the
// program set one already. It is the one process-wide setting hooks need,
// and New does not make it: a program calls it once at start (apihooksd,
// hookctl test and hook worker processes do; so do the interceptors when
// they make their own engine). It is safe to call more than once.
func BoundRegexpMatches() {
	setRegexpTimeout.Do(func() {
		if regexp2.DefaultMatchTimeout == time.Duration(math.MaxInt64) {
			regexp2.DefaultMatchTimeout = RegexpMatchTimeout
		}
	})
}

// Phase says when a hook runs.
type Phase string

// The phases of a call.
const (
	Pre  Phase = "pre"
	Post Phase = "post"
	// ErrorPhase hooks run on a unary call that ended with an error
	// status (Call.Status): see errorphase.go. (Error is the type of a
	// failed run.)
	ErrorPhase Phase = "error"
)

// Call is what one run of a script sees.
type Call struct {
	// Method is the full gRPC method, "/events.v1.EventService/SendEvent".
	Method string
	// Phase is Pre, Post or ErrorPhase.
	Phase Phase
	// Hook is the hook's name, shown to the script as ctx.hook.
	Hook string
	// ID names the hook in log lines (its etcd key, for example); Hook when empty.
	ID string
	// Params are the hook's parameters, as decoded by encoding/json.
	Params any
	// Metadata is the call's incoming metadata, read-only to the script.
	// When nil, the script sees the incoming gRPC metadata of the context
	// given to Run, read only if the script asks for it.
	Metadata map[string][]string
	// Request is the call's request. The engine changes it only when
	// InPlace is set and the phase is Pre.
	Request proto.Message
	// Response is the handler's response, for post-hooks. The engine
	// changes it only when InPlace is set and the phase is Post.
	Response proto.Message
	// InPlace lets the script change the phase's message (Request for Pre,
	// Response for Post) itself rather than a copy, which saves copying it.
	// Set it only when the caller owns the message and drops it whenever
	// the run does not end in Continue: a run that fails, rejects or
	// answers may leave it half changed.
	InPlace bool
	// ResponseType is the method's response type; a pre-hook may answer in
	// the handler's place only when it is set.
	ResponseType protoreflect.MessageType
	// Timeout bounds the run; the engine's default when zero.
	Timeout time.Duration
	// Status is the status the call ends with so far, for error hooks,
	// shown to the script as ctx.error.
	Status *status.Status
	// Caller makes the script's calls to other methods (ctx.call); they
	// fail with UNIMPLEMENTED when it is nil.
	Caller Caller
}

// Action is what the caller does after a hook.
type Action int

const (
	// Continue goes on to the next hook or the handler, with Outcome.Message.
	Continue Action = iota
	// Reject ends the call with Outcome.Status.
	Reject
	// Respond ends the call with Outcome.Message as its response.
	Respond
)

// Outcome is the result of a run that did not fail.
type Outcome struct {
	Action Action
	// Message is, for Continue, the request (pre) or response (post) to go
	// on with, a new message, or nil when the script left it unchanged; for
	// Respond, the response.
	Message proto.Message
	// Status is the rejection, for Reject.
	Status *status.Status
}

// Kind classifies a failed run.
type Kind int

// The kinds of failure.
const (
	// Thrown: the script threw an error that carries no status code.
	Thrown Kind = iota + 1
	// Timeout: the run did not finish in time.
	Timeout
	// Canceled: the call's context ended first.
	Canceled
	// BadResult: the result, an override or a changed message does not fit.
	BadResult
	// Crashed: the engine itself failed (a panic in native code).
	Crashed
	// Overloaded: the run never started, because the engine's runs in
	// flight were at their limit for longer than the queue wait.
	Overloaded
	// Exhausted: the run took more memory than it may: a built-in over the
	// run's memory budget (an uncaught RangeError), the process's heap over
	// the heap limit, or a hook worker process killed at its limit.
	Exhausted
	// Closed: the engine was closed, or was closing, so the run never
	// started; in a worker pool (isolate.Pool), also a run whose worker
	// Close killed.
	Closed
)

// Error is a failed run. Deliberate rejections are not errors: they are an
// Outcome with Action Reject.
type Error struct {
	Kind Kind
	// Message says what went wrong; for Thrown it is the error's own message.
	Message string
	// At is where a Thrown error was thrown, when its stack says: "3:12"
	// (line and column in the hook's script, TypeScript included), or
	// "utils/Addition.ts:3:12" in a util it imports.
	At string
	// Err is the context's error, for Canceled.
	Err error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Engine runs compiled scripts. It is safe for concurrent use.
type Engine struct {
	opts    options
	workers *workers
	// slots counts the runs in flight, abandoned runs included, until
	// they really end.
	slots *slots
	// heap interrupts runs while the heap is over its limit; nil when
	// there is no limit.
	heap *heapWatch
	// logRates keeps each hook's log lines to LogRate.
	logRates logRates
	// nested counts the runs of hooks' calls (ctx.call) in flight, which
	// take no slot, for Shutdown.
	nested atomic.Int64
}

// New returns an engine, which its caller owns and closes. It changes
// nothing beyond the engine: see BoundRegexpMatches.
func New(opts ...Option) *Engine {
	o := evaluateOptions(opts)
	e := &Engine{opts: o, workers: newWorkers(), slots: newSlots(o.maxRuns)}
	if o.heapLimit > 0 {
		e.heap = newHeapWatch(uint64(o.heapLimit))
	}
	return e
}

// DefaultMaxRuns is the default bound on runs in flight: one fewer than
// GOMAXPROCS (at least one), so that hooks busy on every run they may
// start still leave a processor to the calls that have no hooks.
func DefaultMaxRuns() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// InFlight returns the number of runs in flight, abandoned ones included.
func (e *Engine) InFlight() int { return e.slots.inFlight() }

// Close stops the engine's idle worker goroutines and waits for runs still
// going, including runs abandoned at their timeout. From the moment Close
// begins, Run starts nothing: it fails with Kind Closed, which ends a
// hooked call with UNAVAILABLE. Close may be called more than once, and
// at the same time as Run from any goroutine.
//
// Stop the gRPC servers that use the engine first (GracefulStop, or Stop
// with grpc.WaitForHandlers), then close it: their calls still going would
// otherwise fail. An engine that is not closed lets its idle workers exit
// on their own after a few seconds.
func (e *Engine) Close() { _ = e.Shutdown(context.Background()) }

// Shutdown is Close, waiting for runs still going only until ctx ends. A
// run stuck inside a long native operation may outlive ctx: Shutdown then
// returns an error saying how many runs are still going, and the process
// may exit without them. It returns nil when no run is going, ctx ended or
// not, once the idle workers, which exit at once, have.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.workers.stop()
	done := make(chan struct{})
	go func() {
		e.workers.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if n := e.InFlight() + int(e.nested.Load()); n > 0 {
		return fmt.Errorf("engine: %d hook runs still going: %w", n, ctx.Err())
	}
	// No run is going: the workers left are idle ones, told to exit.
	<-done
	return nil
}

// closedError is the failure of a run on a closed engine.
func closedError() *Error {
	return &Error{Kind: Closed, Message: "not run: the hook engine is closed"}
}

type result struct {
	out Outcome
	err error
}

// errTimedOut is the value a timed-out runtime is interrupted with.
var errTimedOut = errors.New("hook timed out")

// Run runs s for call in a fresh runtime. It returns when the script has
// finished, when its time is up or when ctx ends, whichever comes first; a
// script still busy then is interrupted and its runtime is never used again.
//
// A run's time limit (call.Timeout, or the engine's default) counts the CPU
// time the script itself uses, so a busy machine never times out a trivial
// hook; a wall-clock ceiling of ten times the limit (at least a second)
// still bounds every run, and ctx's deadline always wins.
//
// At most WithMaxRuns runs are in flight at once, counting runs abandoned
// at their timeout until they really end: past that, Run waits for one to
// end at most WithQueueWait, then fails with Kind Overloaded.
//
// Once Run has returned, the script no longer reads or changes call's
// messages, even while it goes on after a timeout in native code. The run
// keeps a copy of *call, so the caller may reuse the struct at once; the
// Params and Metadata it refers to are read, never changed, and must not
// change while the script may still read them.
func (e *Engine) Run(ctx context.Context, s *Script, call *Call) (Outcome, error) {
	if e.workers.closed.Load() {
		return Outcome{}, closedError()
	}
	timeout := call.Timeout
	if timeout <= 0 {
		timeout = e.opts.timeout
	}
	if err := ctx.Err(); err != nil {
		return Outcome{}, canceled(err)
	}
	// A run in a call a hook made (ctx.call) uses the slot of the run
	// that waits for it.
	nested := InNestedCall(ctx)
	if !nested {
		if err := e.admit(ctx); err != nil {
			return Outcome{}, err
		}
	} else {
		e.nested.Add(1)
	}
	w := waiters.Get().(*waiter)
	r := newRun(ctx, e, s, call)
	r.unadmitted = nested
	r.done = w.done
	start := time.Now()
	if !e.workers.do(r) {
		// Closed since the check above, with no worker idle.
		r.end()
		waiters.Put(w)
		return Outcome{}, closedError()
	}
	ceiling := WallCeiling(timeout)
	cpu := cpuMeter{r: r, base: -1}
	w.timer.Reset(min(timeout, cpuProbe))
	for {
		select {
		case res := <-w.done:
			w.timer.Stop()
			waiters.Put(w)
			return res.out, res.err
		case <-w.timer.C:
			wall := time.Since(start)
			used := cpu.used(wall)
			if used < timeout && wall < ceiling {
				next := min(timeout-used, ceiling-wall)
				if r.tid.Load() == 0 {
					// Not started on a thread yet: read the meter
					// again soon after it has.
					next = min(next, cpuProbe)
				}
				w.timer.Reset(next)
				continue
			}
			select {
			case res := <-w.done: // it ended just now
				waiters.Put(w)
				return res.out, res.err
			default:
			}
			r.vm.Interrupt(errTimedOut)
			r.gate.Close()
			msg := fmt.Sprintf("timed out after %v of CPU time", timeout)
			if used < timeout {
				msg = fmt.Sprintf("timed out: still running after %v (ten times its time limit of %v), having used %v of CPU time",
					ceiling, timeout, used.Round(time.Millisecond))
			}
			return Outcome{}, &Error{Kind: Timeout, Message: msg}
		case <-ctx.Done():
			w.timer.Stop()
			r.vm.Interrupt(ctx.Err())
			r.gate.Close()
			return Outcome{}, canceled(ctx.Err())
		}
	}
}

// WallCeiling is the wall-clock time a run with this time limit may take:
// ten times the limit, at least a second.
func WallCeiling(timeout time.Duration) time.Duration {
	return max(10*timeout, time.Second)
}

// admit takes a slot for a run, waiting at most the queue wait for one.
func (e *Engine) admit(ctx context.Context) error {
	ok, err := e.slots.take(ctx, e.opts.queueWait)
	switch {
	case err != nil:
		return canceled(err)
	case !ok:
		return &Error{Kind: Overloaded, Message: fmt.Sprintf(
			"not run: the server's limit of %d hook runs in flight was reached and none ended within %v", e.slots.max, e.opts.queueWait)}
	}
	return nil
}

// release gives back a run's slot once the run has really ended.
func (e *Engine) release() { e.slots.give() }

func canceled(err error) *Error {
	return &Error{Kind: Canceled, Message: err.Error(), Err: err}
}

// waiter is what Run waits on: the channel a run's result comes back on
// and the run's timer. A waiter goes back to the pool only once its result
// was received, so an abandoned run never sends on a channel in reuse.
type waiter struct {
	done  chan result
	timer *time.Timer
}

var waiters = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{done: make(chan result, 1), timer: t}
}}

// execute runs r on a worker and sends its result on r.done. The worker
// keeps its OS thread for the run, so that the thread's CPU time is the
// run's.
func (r *run) execute() {
	var res result
	runtime.LockOSThread()
	r.startCPU()
	r.e.heap.add(r)
	defer func() {
		if p := recover(); p != nil {
			res = result{err: &Error{Kind: Crashed, Message: fmt.Sprintf("script engine failed: %v", p)}}
		}
		r.e.heap.remove(r)
		runtime.UnlockOSThread()
		r.end()
		r.done <- res
	}()
	res.out, res.err = r.exec()
}

// end gives back what the run holds in the engine's count of runs in
// flight: its slot, or, for a run of a hook's call, its place among them.
func (r *run) end() {
	if r.unadmitted {
		r.e.nested.Add(-1)
		return
	}
	r.e.release()
}

// Code returns the gRPC code a failure of this kind ends a call with.
func (k Kind) Code() codes.Code {
	switch k {
	case Thrown:
		return codes.Unknown
	case Timeout:
		return codes.DeadlineExceeded
	case Canceled:
		return codes.Canceled
	case Overloaded, Exhausted:
		return codes.ResourceExhausted
	case Closed:
		return codes.Unavailable
	}
	return codes.Internal
}

// String names the kind: thrown, timeout, canceled, badResult, crashed,
// overloaded, exhausted, closed.
func (k Kind) String() string {
	switch k {
	case Thrown:
		return "thrown"
	case Timeout:
		return "timeout"
	case Canceled:
		return "canceled"
	case BadResult:
		return "badResult"
	case Crashed:
		return "crashed"
	case Overloaded:
		return "overloaded"
	case Exhausted:
		return "exhausted"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("kind%d", int(k))
}

// Status is the status a call ends with when the hook identified by hookID
// failed with e: a thrown error is UNKNOWN with its own message, a timeout
// DEADLINE_EXCEEDED naming the hook, a cancelled call the context's status,
// anything else the code of its Kind (Kind.Code) naming the hook.
func (e *Error) Status(hookID string) *status.Status {
	switch e.Kind {
	case Thrown:
		return newStatus(codes.Unknown, e.Message)
	case Canceled:
		if e.Err != nil {
			return status.FromContextError(e.Err)
		}
		return newStatus(codes.Canceled, e.Message)
	case Timeout:
		return statusf(codes.DeadlineExceeded, "hook %s %s", hookID, e.Message)
	}
	return statusf(e.Kind.Code(), "hook %s: %s", hookID, e.Message)
}

// RanAway reports whether the run took time or memory until something
// stopped it: a timeout, the heap limit, a worker process killed at its
// memory limit. A built-in refused by the run's memory budget (a
// RangeError) allocated nothing and cost nothing: it did not run away.
func (e *Error) RanAway() bool {
	switch e.Kind {
	case Timeout:
		return true
	case Exhausted:
		return !strings.HasPrefix(e.Message, "RangeError: ")
	}
	return false
}

// Skippable reports whether a hook's onError "continue" may turn a failure
// of this kind into a logged skip: a timeout, an uncaught error, an engine
// failure, a run the server had no room for, a run killed at its memory
// limit. A result that does not fit, a cancelled call, or a run on a closed
// engine (the server is going down: the client may try another) is never
// skipped.
func (k Kind) Skippable() bool {
	return k == Thrown || k == Timeout || k == Crashed || k == Overloaded || k == Exhausted
}

// log writes a line a script logged (fromScript), or the engine's own line
// about what a script logged, with the method and hook attached.
func (e *Engine) log(ctx context.Context, call *Call, level slog.Level, msg string, value any, hasValue, fromScript bool) {
	l := e.opts.logger
	if !l.Enabled(ctx, level) {
		return
	}
	id := call.ID
	if id == "" {
		id = call.Hook
	}
	attrs := []slog.Attr{slog.String("method", call.Method), slog.String("hook", id)}
	if fromScript {
		// origin tells a script's lines from the daemon's own, whose
		// wording a script may use.
		attrs = append(attrs, scriptOrigin)
	}
	if hasValue {
		attrs = append(attrs, slog.Any("value", value))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// scriptOrigin is the attribute of the lines a script logs; no line of
// the daemon's own carries it.
var scriptOrigin = slog.String("origin", "script")

// ScriptOrigin reports whether a is the attribute of a line a script
// logged: a worker process passes that on to its pool.
func ScriptOrigin(a slog.Attr) bool { return a.Equal(scriptOrigin) }

// badResult wraps a conversion error with where the value came from.
func badResult(where string, err error) error {
	return &Error{Kind: BadResult, Message: fmt.Sprintf("%s: %v", where, err)}
}

// MaxStatusMessage is the longest status message a hook's run makes (a
// rejection's message, a thrown error's): a longer one is cut there. The
// message travels in a header, percent-encoded (up to three times its
// size), and headers larger than the client takes (8 KiB of metadata in
// grpc-java) end the call, or, in grpc-go, the client's whole connection.
const MaxStatusMessage = 1 << 10

// statusf is status.New(c, fmt.Sprintf(...)), its message cut to
// MaxStatusMessage.
func statusf(c codes.Code, format string, a ...any) *status.Status {
	return newStatus(c, fmt.Sprintf(format, a...))
}

// newStatus is status.New, its message cut to MaxStatusMessage bytes.
func newStatus(c codes.Code, msg string) *status.Status {
	return status.New(c, cut(msg, MaxStatusMessage))
}

// cut returns s, or, when it is longer than limit bytes, its start (cut at
// a character's boundary) and how long it was, in limit bytes at most.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	n := limit - 64 // room for the note
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s… (cut: %d bytes in all)", s[:n], len(s))
}

// logEnabled reports whether a line a script logs at level is written.
func (e *Engine) logEnabled(ctx context.Context, level slog.Level) bool {
	return e.opts.logger.Enabled(ctx, level)
}
