package interceptor

import (
	"context"
	"time"

	"github.com/apihooks/apihooks/interceptor/engine"
)

// Outcome is how one hook run ended, as an Observer sees it. The set of
// values is fixed, so it can serve as a metric label.
type Outcome string

// The outcomes of a hook run.
const (
	// OutcomeContinue: the hook let the call go on.
	OutcomeContinue Outcome = "continue"
	// OutcomeReject: the hook ended the call with a status of its choice.
	OutcomeReject Outcome = "reject"
	// OutcomeRespond: the hook answered in the handler's place.
	OutcomeRespond Outcome = "respond"
	// OutcomeQuarantined: the hook was not run, being in quarantine.
	OutcomeQuarantined Outcome = "quarantined"
	// OutcomeInvalid: the hook was not run, its document having no valid
	// version.
	OutcomeInvalid Outcome = "invalid"
	// The run failed; HookRun.Kind says how. HookRun.Skipped says whether
	// the call went on without the hook (onError: continue).
	OutcomeThrown     Outcome = "error_thrown"
	OutcomeTimeout    Outcome = "error_timeout"
	OutcomeCanceled   Outcome = "error_canceled"
	OutcomeBadResult  Outcome = "error_bad_result"
	OutcomeCrashed    Outcome = "error_crashed"
	OutcomeOverloaded Outcome = "error_overloaded"
	OutcomeExhausted  Outcome = "error_exhausted"
	OutcomeClosed     Outcome = "error_closed"
	OutcomeError      Outcome = "error_other"
)

// Outcomes lists every Outcome.
var Outcomes = []Outcome{
	OutcomeContinue, OutcomeReject, OutcomeRespond, OutcomeQuarantined, OutcomeInvalid,
	OutcomeThrown, OutcomeTimeout, OutcomeCanceled, OutcomeBadResult, OutcomeCrashed,
	OutcomeOverloaded, OutcomeExhausted, OutcomeClosed, OutcomeError,
}

// errorOutcome returns the Outcome of a run that failed with kind k.
func errorOutcome(k engine.Kind) Outcome {
	switch k {
	case engine.Thrown:
		return OutcomeThrown
	case engine.Timeout:
		return OutcomeTimeout
	case engine.Canceled:
		return OutcomeCanceled
	case engine.BadResult:
		return OutcomeBadResult
	case engine.Crashed:
		return OutcomeCrashed
	case engine.Overloaded:
		return OutcomeOverloaded
	case engine.Exhausted:
		return OutcomeExhausted
	case engine.Closed:
		return OutcomeClosed
	}
	return OutcomeError
}

// HookRun is one run of a hook, as reported to an Observer.
type HookRun struct {
	// Method is the full gRPC method, "/events.v1.EventService/SendEvent".
	Method string
	// Hook is the hook's ID (its etcd key without the prefix), and
	// Revision the revision of the version that ran.
	Hook     string
	Revision int64
	Phase    engine.Phase
	Outcome  Outcome
	// Kind is the kind of failure, for the error_* outcomes; zero
	// otherwise.
	Kind engine.Kind
	// Skipped is set when the run failed and the call went on without the
	// hook (onError: continue), quarantined hooks included.
	Skipped bool
	// Start is when the run began and Duration how long the interceptor
	// waited for it (zero for a hook that was not run: invalid,
	// quarantined, refused for want of room, error_overloaded, or by a
	// closed engine, error_closed).
	Start    time.Time
	Duration time.Duration
}

// Observer is told of every hook run, after it ended, on the goroutine of
// the call, with the call's context (which carries its trace span, for
// one). It must be quick and safe for concurrent use: metrics and traces
// are built on it (see interceptor/hookmetrics and interceptor/hooktrace).
type Observer func(ctx context.Context, run HookRun)

// WithObserver adds an Observer of hook runs. Given more than once, each
// observer is told in turn. Without one, hook runs cost no observing.
func WithObserver(obs Observer) Option {
	return func(o *options) {
		if obs == nil {
			return
		}
		if prev := o.observer; prev != nil {
			o.observer = func(ctx context.Context, run HookRun) {
				prev(ctx, run)
				obs(ctx, run)
			}
			return
		}
		o.observer = obs
	}
}
