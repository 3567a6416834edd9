package engine

import (
	"math"
	"strings"

	"github.com/dop251/goja"
	"google.golang.org/grpc/codes"
)

// codeByName maps upper-case gRPC code names to codes.
var codeByName = func() map[string]codes.Code {
	m := make(map[string]codes.Code, 17)
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[CodeName(c)] = c
	}
	return m
}()

// CodeByName returns the code a canonical name names, in any case and
// with surrounding space ignored: "PERMISSION_DENIED", "permission_denied".
// ok is false for anything else.
func CodeByName(name string) (c codes.Code, ok bool) {
	c, ok = codeByName[strings.ToUpper(strings.TrimSpace(name))]
	return c, ok
}

// CodeName returns a code's canonical name, as in google.rpc.Code:
// "PERMISSION_DENIED".
func CodeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.Unknown:
		return "UNKNOWN"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return c.String()
}

// httpCodes maps the HTTP statuses google.rpc.Code documents to their codes.
var httpCodes = map[int]codes.Code{
	400: codes.InvalidArgument,
	401: codes.Unauthenticated,
	403: codes.PermissionDenied,
	404: codes.NotFound,
	409: codes.Aborted,
	429: codes.ResourceExhausted,
	499: codes.Canceled,
	500: codes.Internal,
	501: codes.Unimplemented,
	503: codes.Unavailable,
	504: codes.DeadlineExceeded,
}

// CodeFromHTTP maps an HTTP status to a gRPC code as google.rpc.Code
// documents it; statuses it does not name map by class: 2xx OK, other 4xx
// INVALID_ARGUMENT, other 5xx INTERNAL, anything else UNKNOWN.
func CodeFromHTTP(s int) codes.Code {
	if c, ok := httpCodes[s]; ok {
		return c
	}
	switch {
	case s >= 200 && s < 300:
		return codes.OK
	case s >= 400 && s < 500:
		return codes.InvalidArgument
	case s >= 500 && s < 600:
		return codes.Internal
	}
	return codes.Unknown
}

// ParseCode reads a status as a script gives it: a code name in any case
// ("PERMISSION_DENIED", "permission_denied"), a gRPC code number (0 to
// 16) or an HTTP status (100 to 599; 1xx and 3xx are UNKNOWN). ok is
// false for anything else.
func ParseCode(v goja.Value) (c codes.Code, ok bool) {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return 0, false
	}
	switch x := v.Export().(type) {
	case string:
		return CodeByName(x)
	case int64:
		return codeFromNumber(float64(x))
	case float64:
		return codeFromNumber(x)
	}
	return 0, false
}

func codeFromNumber(f float64) (codes.Code, bool) {
	if f != math.Trunc(f) || f < 0 || f >= 600 {
		return 0, false
	}
	n := int(f)
	switch {
	case n <= int(codes.Unauthenticated):
		return codes.Code(n), true
	case n < 100:
		return 0, false
	}
	return CodeFromHTTP(n), true
}
