package engine

import (
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/apihooks/apihooks/interceptor/engine/protojs"
)

// run is one execution of a script in its own runtime.
type run struct {
	ctx    context.Context
	e      *Engine
	script *Script
	// call is the run's own copy of the caller's Call.
	call Call
	vm   *goja.Runtime
	// done receives the run's result.
	done chan<- result
	// gate guards the call's messages: Run closes it when it stops
	// waiting for the script.
	gate protojs.Gate
	// c backs jsCtx, the script's ctx; mod backs a module's module.
	c     ctxObject
	mod   moduleObject
	jsCtx *goja.Object
	// live is the ctx property this phase may change: propRequest (pre)
	// or propResponse (post).
	live int
	// budget bounds what the run's built-ins allocate.
	budget budget
	// views are the live views of the request and the response (indexed
	// from propRequest), once the script asked for them.
	views [2]messageView
	// jsonStringify is the runtime's JSON.stringify, once something was
	// logged.
	jsonStringify goja.Callable
	// written counts what the script wrote into messages (see fits).
	written protojs.Counter
	// logged counts the bytes the run logged; logFull is set once they
	// passed MaxRunLog.
	logged  int
	logFull bool
	// tid is the OS thread the run executes on, set by the worker once the
	// run has started (-1 when its CPU time cannot be measured); started
	// is when it started, written before tid.
	tid     atomic.Int64
	started time.Time
	// nested is the time spent in calls to other methods (ctx.call);
	// unadmitted, that the run took no slot, being in such a call.
	nested     nestedTime
	unadmitted bool
}

// startCPU records, on the worker's locked thread, which thread the run's
// CPU time is that of, and when the run started.
func (r *run) startCPU() {
	r.started = time.Now()
	if !threadCPUWorks {
		r.tid.Store(-1)
		return
	}
	r.tid.Store(int64(threadID()))
}

// messageView is a script's view of one of the call's messages, or of a
// copy of it.
type messageView struct {
	obj  *goja.Object
	view *protojs.View
	msg  proto.Message
}

// view returns a live view of m, for ctx property i: of m itself when the
// call lets the script change it in place, else of a copy. A message whose
// JSON form is not an object (a Timestamp, a wrapper...) is shown as a
// plain value instead, and read back after the run.
func (r *run) view(i int, m proto.Message) goja.Value {
	if m == nil || !r.gate.Enter() {
		return goja.Undefined()
	}
	defer r.gate.Exit()
	msg := m
	if !r.call.InPlace || i != r.live {
		msg = proto.Clone(m)
	}
	obj, v := protojs.NewView(r.vm, msg.ProtoReflect(), protojs.WithGate(&r.gate), protojs.WithCounter(&r.written))
	if obj == nil {
		return protojs.ToValue(r.vm, msg.ProtoReflect())
	}
	r.views[i-propRequest] = messageView{obj: obj, view: v, msg: msg}
	return obj
}

// newRun builds the runtime and its globals. The ctx object reads the
// caller's messages only when the script first asks for them.
func newRun(ctx context.Context, e *Engine, s *Script, call *Call) *run {
	vm := goja.New()
	vm.SetMaxCallStackSize(e.opts.maxStack)
	r := &run{ctx: ctx, e: e, script: s, call: *call, vm: vm, live: propRequest}
	if call.Phase == Post {
		r.live = propResponse
	}
	r.c.r = r
	if s.style != APIMaker { // an API Maker style script sees g alone
		r.jsCtx = vm.NewDynamicObject(&r.c)
	}
	if s.console {
		vm.Set("console", vm.NewDynamicObject(&consoleObject{r: r}))
	}
	if s.module {
		return r
	}
	vm.Set("ctx", r.jsCtx)
	vm.Set("data", vm.NewDynamicObject(&dataObject{c: &r.c}))
	vm.Set("bridge", vm.NewDynamicObject(&bridgeObject{r: r}))
	return r
}

// exec runs the script and turns its result into an outcome.
func (r *run) exec() (Outcome, error) {
	r.budget.limit = r.e.opts.memory
	r.written.Limit = r.budget.limit
	attachBudget(r.vm, &r.budget)
	defer detachBudget(r.vm)
	if u := r.script.uses; u.regexp || u.async || u.generator {
		guardCompilers(&r.budget, r.vm, u)
	}
	if r.script.directEval {
		err := r.vm.GlobalObject().DefineDataProperty(evalGuardName, evalSourceChecker(&r.budget, r.vm), goja.FLAG_FALSE, goja.FLAG_FALSE, goja.FLAG_FALSE)
		if err != nil {
			return r.failed(err)
		}
	}
	v, err := r.vm.RunProgram(r.script.program)
	if err != nil {
		return r.failed(err)
	}
	if r.script.direct {
		if v, err = r.callMain(v); err != nil {
			return r.failed(err)
		}
	} else if r.script.module {
		if v, err = r.callModule(v); err != nil {
			return r.failed(err)
		}
	} else if r.script.retval {
		// brainCloud's scripts leave their result in the global retval,
		// whatever their last statement evaluates to.
		var rv goja.Value
		if err := r.try(func() { rv = r.vm.Get("retval") }); err != nil {
			return r.failed(err)
		}
		if present(rv) {
			v = rv
		}
	}
	if p, ok := v.Export().(*goja.Promise); ok {
		switch p.State() {
		case goja.PromiseStateFulfilled:
			v = p.Result()
		case goja.PromiseStateRejected:
			return r.thrown(p.Result(), nil)
		default:
			return Outcome{}, &Error{Kind: BadResult, Message: "the hook's promise never settled"}
		}
	}
	var out Outcome
	if r.script.style == APIMaker {
		out, err = r.decodeReturn(v)
	} else {
		out, err = r.decode(v)
	}
	if err == nil {
		err = r.fits(out.Message)
	}
	return out, err
}

// fits refuses a message the run made that would encode to more than its
// memory budget. A script can make one of any size while allocating next
// to nothing, with one string in many fields (a Struct of a thousand keys,
// each the same megabyte): encoding it, for the handler or the client,
// would then take the daemon gigabytes. The message is measured only when
// the script wrote a quarter of its budget into messages: below, it grew
// by about that at most (a field's tag and length on each value written).
func (r *run) fits(m proto.Message) error {
	if m == nil || r.budget.limit <= 0 || r.written.Bytes() <= r.budget.limit/4 {
		return nil
	}
	if n := int64(proto.Size(m)); n > r.budget.limit {
		return &Error{Kind: Exhausted, Message: fmt.Sprintf("RangeError: hook memory budget of %s exceeded: the %s it gave would encode to %s",
			byteSize(r.budget.limit), m.ProtoReflect().Descriptor().FullName(), byteSize(n))}
	}
	return nil
}

// callModule runs a module, compiled as a function of module and exports,
// and calls the function it exports with ctx.
func (r *run) callModule(body goja.Value) (goja.Value, error) {
	run, ok := goja.AssertFunction(body)
	if !ok {
		return nil, fmt.Errorf("module %s did not compile to a function", r.script.name)
	}
	mod := &r.mod
	mod.vm = r.vm
	exports := goja.Undefined()
	if r.script.bareExports {
		exports = mod.Get("exports")
	}
	module := r.vm.NewDynamicObject(mod)
	if _, err := run(goja.Undefined(), module, exports); err != nil {
		return nil, err
	}
	return r.callMain(module.Get("exports"))
}

// callMain calls the function a module exports: with g in the API Maker
// style; else with ctx, and g too when the function declares a second
// parameter.
func (r *run) callMain(exported goja.Value) (goja.Value, error) {
	fn := exported
	main, ok := goja.AssertFunction(fn)
	if !ok {
		// exports.main = function ... (or exports.default).
		if obj, isObj := exported.(*goja.Object); isObj {
			for _, name := range []string{"default", "main"} {
				fn = obj.Get(name)
				if main, ok = goja.AssertFunction(fn); ok {
					break
				}
			}
		}
	}
	if !ok {
		return nil, &Error{Kind: BadResult, Message: "module.exports is not a function, nor an object with a function main or default"}
	}
	if r.script.style == APIMaker {
		return main(goja.Undefined(), r.c.Get(propNames[propG]))
	}
	var withG bool
	if err := r.try(func() { withG = fn.(*goja.Object).Get("length").ToInteger() >= 2 }); err != nil {
		return nil, err
	}
	if withG {
		return main(goja.Undefined(), r.jsCtx, r.c.Get(propNames[propG]))
	}
	return main(goja.Undefined(), r.jsCtx)
}

// try runs f, which may run the script's code (a getter), outside any
// call into the script, and returns what it threw, an interrupt included.
func (r *run) try(f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			e, ok := p.(error)
			if !ok {
				panic(p)
			}
			err = e
		}
	}()
	if ex := r.vm.Try(f); ex != nil {
		return ex
	}
	return nil
}

// failed classifies an error from running JavaScript.
func (r *run) failed(err error) (Outcome, error) {
	if e, ok := err.(*Error); ok {
		return Outcome{}, e
	}
	var ex *goja.Exception
	var interrupted *goja.InterruptedError
	var overflow *goja.StackOverflowError
	switch {
	case errors.As(err, &interrupted):
		if interrupted.Value() == errHeapLimit {
			return Outcome{}, heapLimitError(r.e.heap.limit)
		}
		if _, ok := interrupted.Value().(error); ok && r.ctx.Err() != nil {
			return Outcome{}, canceled(r.ctx.Err())
		}
		return Outcome{}, &Error{Kind: Timeout, Message: "timed out"}
	case errors.As(err, &overflow):
		return Outcome{}, &Error{Kind: Thrown, Message: "RangeError: maximum call stack size exceeded"}
	case errors.As(err, &ex):
		return r.thrown(ex.Value(), ex)
	}
	return Outcome{}, &Error{Kind: Crashed, Message: err.Error()}
}

// thrown turns a thrown value into a rejection when it carries a status
// code (its property code, or else status: a gRPC code name or number, or
// an HTTP status), and into a Thrown failure otherwise. ex is the
// exception that threw it, nil for a rejected promise.
func (r *run) thrown(v goja.Value, ex *goja.Exception) (Outcome, error) {
	msg := v.String()
	if obj, ok := v.(*goja.Object); ok {
		if m := obj.Get("message"); m != nil && !goja.IsUndefined(m) {
			msg = m.String()
		}
		if obj == r.budget.err {
			// The budget's own RangeError, uncaught: the run asked for
			// more memory than it may have.
			return Outcome{}, &Error{Kind: Exhausted, Message: "RangeError: " + msg}
		}
		// An error with a code (or else a status) is a deliberate
		// rejection; one whose code is none (a typo, OK) is the hook's
		// mistake, not an error to skip with onError "continue": the
		// rejection it meant would fail open.
		for _, name := range []string{"code", "status"} {
			if cv := obj.Get(name); present(cv) {
				c, ok := ParseCode(cv)
				switch {
				case !ok:
					return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
						"thrown error's %s: %s is not a gRPC code name, a gRPC code (1 to 16) or an HTTP error status", name, describe(cv))}
				case c == codes.OK:
					return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
						"thrown error's %s: %s is OK; a thrown error's is an error code (return nothing to go on)", name, describe(cv))}
				}
				return Outcome{Action: Reject, Status: statusf(c, "%s", msg)}, nil
			}
		}
	}
	return Outcome{}, &Error{Kind: Thrown, Message: msg, At: r.thrownAt(v, ex)}
}

// stackFrame matches a frame of goja's stack property: "at main
// (name:3:12(8))" or "at name:3:12(8)".
var stackFrame = regexp.MustCompile(`(?m)^\s*at (?:[^\n(]* \()?([^\s()]+):(\d+):(\d+)`)

// maxStackRead is how much of an error's stack property thrownAt reads.
const maxStackRead = 4 << 10

// thrownAt returns where v was thrown: in the script ("3:12"), or in a
// util ("utils/Addition.ts:3:12"); "" when nothing says. An exception's own
// stack says, which no script can change; for a rejected promise, the
// stack property of the Error rejected with, when it is a string (a getter
// the script put there runs under the run's budgets, and its failure only
// leaves the place unsaid).
func (r *run) thrownAt(v goja.Value, ex *goja.Exception) string {
	if ex != nil {
		for _, f := range ex.Stack() {
			if p := f.Position(); p.Line > 0 {
				return r.where(p.Filename, strconv.Itoa(p.Line)+":"+strconv.Itoa(p.Column))
			}
		}
		return ""
	}
	obj, ok := v.(*goja.Object)
	if !ok {
		return ""
	}
	var st goja.Value
	if r.try(func() { st = obj.Get("stack") }) != nil {
		return ""
	}
	s, ok := st.(goja.String)
	if !ok {
		return ""
	}
	text := s.String()
	m := stackFrame.FindStringSubmatch(text[:min(len(text), maxStackRead)])
	if m == nil {
		return ""
	}
	return r.where(m[1], m[2]+":"+m[3])
}

// where names a place of file: "3:12" in the script itself, or
// "utils/Addition@1:3:12" in a util it bundled; "" for any other file (a
// stack a script wrote).
func (r *run) where(file, at string) string {
	name := r.script.name
	if file == name {
		return at
	}
	// Source map sources are resolved against the script's directory,
	// and a util's is in the bundler's namespace ("apihooks:utils/...").
	if dir := path.Dir(name); dir != "." {
		file = strings.TrimPrefix(file, dir+"/")
	}
	if _, f, ok := strings.Cut(file, ":"); ok {
		file = f
	}
	if !slices.Contains(r.script.utils, file) {
		return ""
	}
	return file + ":" + at
}

// resultKeys are the properties a result object may have.
var resultKeys = []string{"status", "message", "messageOverride", "response"}

// decode reads a script's result.
func (r *run) decode(v goja.Value) (Outcome, error) {
	if r.call.Phase == ErrorPhase {
		return r.decodeError(v)
	}
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return r.goOnLive()
	}
	res, ok := resultObject(v)
	if !ok {
		return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
			"result: want an object with %s, or nothing; got %s", strings.Join(resultKeys, ", "), describe(v))}
	}
	for _, k := range res.Keys() {
		if !slices.Contains(resultKeys, k) {
			return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
				"result: unknown field %q (want %s)", k, strings.Join(resultKeys, ", "))}
		}
	}
	if sv := res.Get("status"); present(sv) {
		c, ok := ParseCode(sv)
		if !ok {
			return Outcome{}, &Error{Kind: BadResult, Message: fmt.Sprintf(
				"result.status: %s is not a gRPC code name, a gRPC code (0 to 16) or an HTTP status (100 to 599)", describe(sv))}
		}
		if c != codes.OK {
			msg, err := r.message(res, fmt.Sprintf("rejected by hook %s", r.call.Hook))
			if err != nil {
				return Outcome{}, err
			}
			// A rejection applies nothing else of the result, but an
			// override or a response that does not fit is the hook's
			// mistake all the same, and is reported as on any result.
			if _, err := r.decodeMessages(res); err != nil {
				return Outcome{}, err
			}
			return Outcome{Action: Reject, Status: statusf(c, "%s", msg)}, nil
		}
	}
	if out, err := r.decodeMessages(res); err != nil || out.Action != Continue || out.Message != nil {
		return out, err
	}
	return r.goOnLive()
}

// decodeMessages reads a result's messageOverride (Continue with the
// message) or response (Respond); with neither it returns Continue with
// no message.
func (r *run) decodeMessages(res *goja.Object) (Outcome, error) {
	override, response := res.Get("messageOverride"), res.Get("response")
	switch {
	case present(override) && present(response):
		return Outcome{}, &Error{Kind: BadResult, Message: "result: messageOverride and response are exclusive"}
	case present(response):
		var mt protoreflect.MessageType
		if r.call.Phase == Post {
			mt = r.call.Response.ProtoReflect().Type()
		} else {
			mt = r.call.ResponseType
		}
		if mt == nil {
			return Outcome{}, &Error{Kind: BadResult, Message: "result.response: this call cannot be answered by a hook"}
		}
		m, err := r.fill(mt, response, "result.response")
		if err != nil {
			return Outcome{}, err
		}
		return Outcome{Action: Respond, Message: m}, nil
	case present(override):
		return r.goOn(override, "result.messageOverride")
	}
	return Outcome{Action: Continue}, nil
}

// message returns a result's message, or def when it has none. A message
// that is not a string is the hook's mistake: "[object Object]" would
// reach the client.
func (r *run) message(res *goja.Object, def string) (string, error) {
	mv := res.Get("message")
	if !present(mv) {
		return def, nil
	}
	s, ok := mv.(goja.String)
	if !ok {
		return "", &Error{Kind: BadResult, Message: fmt.Sprintf("result.message: want a string, got %s", describe(mv))}
	}
	return s.String(), nil
}

// goOnLive goes on with ctx.request (pre) or ctx.response (post). When the
// script never touched it, the message is unchanged. When it is still the
// live view, the view's copy is the message, with every change applied as
// it was made; a change that did not fit ends the call. When the script
// assigned something else, that is read into a new message.
func (r *run) goOnLive() (Outcome, error) {
	if !r.c.touched(r.live) {
		return Outcome{Action: Continue}, nil
	}
	where := "ctx." + propNames[r.live]
	if r.script.style == APIMaker {
		// The names the script knows them by.
		where = "g.req.body"
		if r.live == propResponse {
			where = "g.res.output"
		}
	}
	cur := r.c.Get(propNames[r.live])
	if mv := r.views[r.live-propRequest]; mv.obj != nil && cur == goja.Value(mv.obj) {
		// Err also stores the objects the script assigned into the view.
		if err := mv.view.Err(); err != nil {
			return Outcome{}, badResult(where, err)
		}
		if !mv.view.Touched() {
			return Outcome{Action: Continue}, nil
		}
		return Outcome{Action: Continue, Message: mv.msg}, nil
	}
	return r.goOn(cur, where)
}

// goOn reads the message the call goes on with from v.
func (r *run) goOn(v goja.Value, where string) (Outcome, error) {
	cur := r.call.Request
	if r.call.Phase == Post {
		cur = r.call.Response
	}
	if cur == nil {
		return Outcome{Action: Continue}, nil
	}
	m, err := r.fill(cur.ProtoReflect().Type(), v, where)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Action: Continue, Message: m}, nil
}

// fill builds a new message of type mt from v.
func (r *run) fill(mt protoreflect.MessageType, v goja.Value, where string) (proto.Message, error) {
	m := mt.New()
	if !present(v) {
		return nil, badResult(where, fmt.Errorf("want a %s object, got %s", mt.Descriptor().FullName(), describe(v)))
	}
	if err := protojs.FromValueCounting(r.vm, v, m, &r.written); err != nil {
		return nil, badResult(where, err)
	}
	return m.Interface(), nil
}

func present(v goja.Value) bool {
	return v != nil && !goja.IsUndefined(v) && !goja.IsNull(v)
}

// plainObjectType is what a plain object (or a class's instance) exports
// as; a Map, a Set, a typed array or a Proxy exports as another type.
var plainObjectType = reflect.TypeOf(map[string]any(nil))

// resultObject returns v as a result object: a plain object, or a class's
// instance. A Map, a Set, a typed array or a Proxy, whose entries are not
// its properties, is not one: a Map of {status: 403} would otherwise pass
// for an empty result and let the call go on.
//
// Nor is a generator object (what a generator function, function*,
// returns): its return value, a rejection say, is not its property, and
// it would pass for an empty result.
func resultObject(v goja.Value) (*goja.Object, bool) {
	o, ok := v.(*goja.Object)
	if !ok || o.ClassName() != "Object" || o.ExportType() != plainObjectType || generator(o) {
		return nil, false
	}
	return o, true
}

// generator reports whether o is a generator object, sync or async, as its
// Symbol.toStringTag says.
func generator(o *goja.Object) bool {
	tag := o.GetSymbol(goja.SymToStringTag)
	return tag != nil && (tag.String() == "Generator" || tag.String() == "AsyncGenerator")
}

// describe names a value and its type for error messages, in a script's
// terms: `the string "403"`, "the number 17", "an array", "a Map".
func describe(v goja.Value) string {
	switch {
	case v == nil || goja.IsUndefined(v):
		return "undefined"
	case goja.IsNull(v):
		return "null"
	}
	o, ok := v.(*goja.Object)
	if !ok {
		if _, ok := v.(*goja.Symbol); ok {
			return "a symbol"
		}
		switch x := v.Export().(type) {
		case string:
			if len(x) > 64 {
				x = x[:64] + "..."
			}
			return "the string " + strconv.Quote(x)
		case int64, float64:
			return "the number " + v.String()
		case bool:
			return v.String()
		}
		return "the bigint " + v.String() + "n"
	}
	if _, ok := goja.AssertFunction(o); ok {
		return "a function"
	}
	if generator(o) {
		return "a generator object (the script's function is a generator, function*: make it a plain function)"
	}
	if c := o.ClassName(); c == "Array" {
		return "an array"
	} else if c != "Object" {
		return article(c) + " " + c // Date, Error, RegExp, String
	}
	switch t := o.ExportType(); {
	case t == reflect.TypeOf([][2]any(nil)):
		return "a Map"
	case t == reflect.TypeOf([]any(nil)):
		return "a Set"
	case t.Kind() == reflect.Slice:
		return "a typed array"
	case t == reflect.TypeOf(goja.ArrayBuffer{}):
		return "an ArrayBuffer"
	case t == reflect.TypeOf(goja.Proxy{}):
		return "a Proxy"
	case t == plainObjectType:
		return "a plain object"
	}
	return "a message (such as ctx.request) or another object that is not plain"
}

// article is the indefinite article of a class name.
func article(name string) string {
	if strings.ContainsRune("AEIOU", rune(name[0])) {
		return "an"
	}
	return "a"
}

// moduleObject is the module a module script sees: its exports are an
// empty object, built when first read, unless the script assigns another
// value.
type moduleObject struct {
	vm      *goja.Runtime
	exports goja.Value
	extra   map[string]goja.Value
}

func (m *moduleObject) Get(key string) goja.Value {
	if key != "exports" {
		return m.extra[key]
	}
	if m.exports == nil {
		m.exports = m.vm.NewObject()
	}
	return m.exports
}

func (m *moduleObject) Set(key string, v goja.Value) bool {
	if key == "exports" {
		m.exports = v
		return true
	}
	if m.extra == nil {
		m.extra = map[string]goja.Value{}
	}
	m.extra[key] = v
	return true
}

func (m *moduleObject) Has(key string) bool {
	_, ok := m.extra[key]
	return ok || key == "exports"
}

func (m *moduleObject) Delete(key string) bool {
	if key == "exports" {
		m.exports = goja.Undefined()
	}
	delete(m.extra, key)
	return true
}

func (m *moduleObject) Keys() []string {
	keys := []string{"exports"}
	for k := range m.extra {
		keys = append(keys, k)
	}
	return keys
}
