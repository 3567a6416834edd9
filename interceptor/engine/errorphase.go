package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dop251/goja"
	"google.golang.org/grpc/codes"
)

// An error hook (Phase ErrorPhase) runs on a unary call that ended with an error
// status, Call.Status. The script sees it as ctx.error,
//
//	{code: "NOT_FOUND", codeNumber: 5, message: "no such event"}
//
// and the request as ctx.request, a copy whose changes go nowhere. Its
// result keeps the status (nothing), replaces it ({status, message}, a
// status that is not OK; without a message the status keeps its message),
// or answers in its place ({response}: the call succeeds). A thrown error
// with a code replaces the status too; any other failure is the caller's to
// handle.

// errorResultKeys are the properties an error hook's result may have.
var errorResultKeys = []string{"status", "message", "response"}

// errorValue builds ctx.error from the call's status: undefined outside
// error hooks.
func (r *run) errorValue() goja.Value {
	st := r.call.Status
	if st == nil {
		return goja.Undefined()
	}
	o := r.vm.NewObject()
	o.Set("code", CodeName(st.Code()))
	o.Set("codeNumber", int64(st.Code()))
	o.Set("message", st.Message())
	return o
}

// decodeError reads an error hook's result.
func (r *run) decodeError(v goja.Value) (Outcome, error) {
	if !present(v) {
		return Outcome{Action: Continue}, nil
	}
	res, ok := resultObject(v)
	if !ok {
		return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
			"result: want an object with %s, or nothing; got %s", strings.Join(errorResultKeys, ", "), describe(v))}
	}
	for _, k := range res.Keys() {
		if k == "messageOverride" {
			return Outcome{}, &Error{Kind: BadResult, Message: "result: an error hook has no message to override " +
				"(replace the status with {status, message}, or answer with {response})"}
		}
		if !slices.Contains(errorResultKeys, k) {
			return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
				"result: unknown field %q (want %s)", k, strings.Join(errorResultKeys, ", "))}
		}
	}
	if sv := res.Get("status"); present(sv) {
		c, ok := ParseCode(sv)
		if !ok {
			return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
				"result.status: %s is not a gRPC code name, a gRPC code (0 to 16) or an HTTP status (100 to 599)", describe(sv))}
		}
		if c != codes.OK {
			def := ""
			if r.call.Status != nil {
				def = r.call.Status.Message()
			}
			msg, err := r.message(res, def)
			if err != nil {
				return Outcome{}, err
			}
			// As in other phases, a response beside a status is checked
			// though the status wins.
			if _, err := r.errorResponse(res); err != nil {
				return Outcome{}, err
			}
			return Outcome{Action: Reject, Status: statusf(c, "%s", msg)}, nil
		}
	}
	return r.errorResponse(res)
}

// errorResponse reads an error hook's response (Respond), or returns
// Continue when the result has none.
func (r *run) errorResponse(res *goja.Object) (Outcome, error) {
	response := res.Get("response")
	if !present(response) {
		return Outcome{Action: Continue}, nil
	}
	if r.call.ResponseType == nil {
		return Outcome{}, &Error{Kind: BadResult, Message: "result.response: this call cannot be answered by a hook"}
	}
	m, err := r.fill(r.call.ResponseType, response, "result.response")
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Action: Respond, Message: m}, nil
}
