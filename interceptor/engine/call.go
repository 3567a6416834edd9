package engine

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apihooks/apihooks/interceptor/engine/protojs"
)

// MaxCallDepth bounds how deep calls between methods (ctx.call) may nest:
// a hook may call a method whose hook calls another, and so on, eight
// calls deep at most.
const MaxCallDepth = 8

// Caller makes a script's ctx.call: it calls method, a unary method of
// the same server named "pkg.Service/Method" (a leading slash is allowed),
// with request in protojson form, through the method's hooks, and returns
// the response in protojson form, or an error whose gRPC status the script
// sees. ctx carries the calling run's metadata, its deadline (at most what
// is left of the run's time limit) and the chain of hooks the call came
// from: the Caller must pass it on to the hooks of the call it makes.
type Caller func(ctx context.Context, method string, request []byte) (response []byte, err error)

// callChain is the chain of hooks a nested call came from, innermost last,
// carried in the nested call's context.
type callChain struct {
	parent *callChain
	// hop names a hook that made a call: method/phase/hook.
	hop   string
	depth int
}

type chainKey struct{}

func chainFrom(ctx context.Context) *callChain {
	c, _ := ctx.Value(chainKey{}).(*callChain)
	return c
}

// has reports whether hop is on the chain.
func (c *callChain) has(hop string) bool {
	for ; c != nil; c = c.parent {
		if c.hop == hop {
			return true
		}
	}
	return false
}

// String lists the chain outermost first, then extra when set:
// "a/pre/x → b/pre/y".
func (c *callChain) String(extra string) string {
	var hops []string
	if extra != "" {
		hops = append(hops, extra)
	}
	for ; c != nil; c = c.parent {
		hops = append(hops, c.hop)
	}
	for i, j := 0, len(hops)-1; i < j; i, j = i+1, j-1 {
		hops[i], hops[j] = hops[j], hops[i]
	}
	return strings.Join(hops, " → ")
}

// InNestedCall reports whether ctx is the context of a call a hook made
// with ctx.call: hook runs in it take no slot of their own among the
// engine's runs in flight, since their caller's run holds one and waits.
func InNestedCall(ctx context.Context) bool { return chainFrom(ctx) != nil }

// hopOf names the hook of call on a chain.
func hopOf(call *Call) string {
	return strings.TrimPrefix(call.Method, "/") + "/" + string(call.Phase) + "/" + call.Hook
}

// ErrNoCaller is the error of a ctx.call in a run whose Call has no
// Caller.
var ErrNoCaller = status.Error(codes.Unimplemented, "ctx.call: calls between methods are not available to this hook (a server built without interceptor.WithCalls)")

// NestCall returns the context of a call of method that the run of call,
// in ctx, makes with ctx.call: it carries the chain of hooks the call comes
// from, which the Caller passes on. It fails with FAILED_PRECONDITION when
// the call would lead back to call's hook, or nest deeper than
// MaxCallDepth. A Caller that makes calls on behalf of runs in another
// process (a worker's) calls it with the context and Call of its own Run.
func NestCall(ctx context.Context, call *Call, method string) (context.Context, error) {
	parent := chainFrom(ctx)
	hop := hopOf(call)
	if parent.has(hop) {
		// This hook made a call that led back to it, and calls again.
		return nil, status.Errorf(codes.FailedPrecondition, "cycle detected: %s", parent.String(hop))
	}
	chain := &callChain{parent: parent, hop: hop, depth: 1}
	if parent != nil {
		chain.depth = parent.depth + 1
	}
	if chain.depth > MaxCallDepth {
		return nil, status.Errorf(codes.FailedPrecondition, "ctx.call %s: calls nest deeper than %d: %s",
			method, MaxCallDepth, chain.String(""))
	}
	return context.WithValue(ctx, chainKey{}, chain), nil
}

// nestedTime is the wall-clock time a run spent waiting for its calls,
// which counts against its time limit as if it were CPU time.
type nestedTime struct {
	total atomic.Int64
	// since is when the call in progress began (UnixNano), 0 when none.
	since atomic.Int64
}

func (n *nestedTime) used() time.Duration {
	d := n.total.Load()
	if s := n.since.Load(); s != 0 {
		d += time.Now().UnixNano() - s
	}
	return time.Duration(d)
}

// callFunction is ctx.call (and g.call): call(method, request) calls
// another unary method of the server and returns a promise, already
// settled when call returns, of its response as JSON (protojson's form,
// like ctx.request), or of an Error with the status: err.code is the
// code's name ("NOT_FOUND"), err.message its message.
func (r *run) callFunction() goja.Value {
	return named(r.vm, "call", func(fc goja.FunctionCall) goja.Value {
		p, resolve, reject := r.vm.NewPromise()
		v, err := r.callMethod(fc.Argument(0), fc.Argument(1))
		if err != nil {
			st := status.Convert(err)
			// goja's own Error, never the script's global (which it may
			// have replaced), nor a GoError: that one holds err as a Go
			// value, whose methods and fields a script could reach.
			e, cerr := r.vm.New(gojaError(r.vm), r.vm.ToValue(st.Message()))
			if cerr != nil {
				e = r.vm.NewObject()
			}
			_ = e.Set("code", CodeName(st.Code()))
			_ = e.Set("message", st.Message())
			reject(e)
		} else {
			resolve(v)
		}
		return r.vm.ToValue(p)
	})
}

// callMethod makes one call for callFunction.
func (r *run) callMethod(methodArg, reqArg goja.Value) (goja.Value, error) {
	if r.call.Caller == nil {
		return nil, ErrNoCaller
	}
	if goja.IsUndefined(methodArg) || goja.IsNull(methodArg) {
		return nil, status.Error(codes.InvalidArgument, `ctx.call: the first argument must name a method, "pkg.Service/Method"`)
	}
	method := methodArg.String()
	nested, err := NestCall(r.ctx, &r.call, method)
	if err != nil {
		return nil, err
	}
	req := []byte("{}")
	if !goja.IsUndefined(reqArg) && !goja.IsNull(reqArg) {
		s, ok := r.stringify(reqArg)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "ctx.call %s: request: not a JSON value", method)
		}
		req = []byte(s)
	}
	timeout := r.call.Timeout
	if timeout <= 0 {
		timeout = r.e.opts.timeout
	}
	// Wall-clock time since the run started bounds its CPU time and its
	// earlier calls from above.
	left := timeout - time.Since(r.started)
	if left <= 0 {
		return nil, status.Errorf(codes.DeadlineExceeded, "ctx.call %s: the hook's time limit of %v is used up", method, timeout)
	}
	ctx, cancel := context.WithTimeout(nested, left)
	defer cancel()
	r.nested.since.Store(time.Now().UnixNano())
	resp, err := r.call.Caller(ctx, method, req)
	r.nested.total.Add(time.Now().UnixNano() - r.nested.since.Swap(0))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded && r.ctx.Err() == nil {
			// The call used up what was left of this hook's time: the
			// hook has timed out, whoever notices first.
			r.vm.Interrupt(errTimedOut)
		}
		return nil, err
	}
	var v any
	d := json.NewDecoder(strings.NewReader(string(resp)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, status.Errorf(codes.Internal, "ctx.call %s: response: %v", method, err)
	}
	return protojs.FromGo(r.vm, v), nil
}
