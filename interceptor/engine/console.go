package engine

import (
	"log/slog"
	"regexp"
	"strings"

	"github.com/dop251/goja"
)

// consoleNames are console's functions, each logging at its level.
var consoleNames = []string{"log", "info", "warn", "error", "debug"}

var consoleLevel = map[string]slog.Level{
	"log": levelInfo, "info": levelInfo, "warn": levelWarn, "error": levelError, "debug": levelDebug,
}

// consoleObject is the global console: console.log(...values) writes one
// line to the daemon's log, its values joined by spaces as Node joins them
// (a string as it is, any other value as its JSON form), with the method
// and the hook attached. Its functions are built when first read.
type consoleObject struct {
	r    *run
	vals map[string]goja.Value
}

func (c *consoleObject) Get(key string) goja.Value {
	if v, ok := c.vals[key]; ok {
		return v
	}
	level, ok := consoleLevel[key]
	if !ok {
		return nil
	}
	v := named(c.r.vm, key, c.r.consoleFunc(level))
	c.Set(key, v)
	return v
}

func (c *consoleObject) Set(key string, v goja.Value) bool {
	if c.vals == nil {
		c.vals = map[string]goja.Value{}
	}
	c.vals[key] = v
	return true
}

func (c *consoleObject) Has(key string) bool {
	_, ok := c.vals[key]
	_, named := consoleLevel[key]
	return ok || named
}

func (c *consoleObject) Delete(key string) bool { delete(c.vals, key); return true }

func (c *consoleObject) Keys() []string { return consoleNames }

// consoleFunc returns console's function at level.
func (r *run) consoleFunc(level slog.Level) func(goja.FunctionCall) goja.Value {
	return func(fc goja.FunctionCall) goja.Value {
		if !r.e.logEnabled(r.ctx, level) {
			return goja.Undefined()
		}
		var b strings.Builder
		for i, v := range fc.Arguments {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(r.text(v))
		}
		r.log(level, b.String(), nil, false)
		return goja.Undefined()
	}
}

// logObject builds ctx.log (and g.log): debug, info, warn and error, each
// f(msg, value?) (see logFunc).
func (r *run) logObject() *goja.Object {
	log := r.vm.NewObject()
	log.Set("debug", named(r.vm, "debug", r.logFunc(levelDebug)))
	log.Set("info", named(r.vm, "info", r.logFunc(levelInfo)))
	log.Set("warn", named(r.vm, "warn", r.logFunc(levelWarn)))
	log.Set("error", named(r.vm, "error", r.logFunc(levelError)))
	return log
}

// namesConsole matches a script that names console. Only such a script, or
// one that compiles code at run time, gets the global: it costs the runs of
// the others nothing.
var namesConsole = regexp.MustCompile(`(^|[^\w$])console($|[^\w$])`)

// namesRetval matches a body script that names retval: only its runs look
// for the global (see Compile).
var namesRetval = regexp.MustCompile(`(^|[^\w$])retval($|[^\w$])`)
