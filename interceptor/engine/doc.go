// Package engine compiles hook scripts and runs them.
//
// A script is JavaScript run by goja. It is either a module,
//
//	module.exports = function main(ctx) { ... }
//
// (the function may be async; the module's top level runs as the body of a
// function, as in CommonJS), or a plain script body whose result is its
// global retval when it set one, else its completion value; body scripts
// also see the globals ctx, data and bridge. Script.WithStyle(APIMaker)
// calls a module's function as main(g) instead, and reads what it returns
// as the call's response. Every script may log through console, and every
// value it logs is written as JSON.
// Scripts are compiled once (Compile) and run many times (Engine.Run); every
// run gets a fresh runtime, so no global set by one call is visible to
// another, and every run is bounded by a timeout that the caller keeps even
// when the script is stuck inside a long native operation.
//
// The engine closes the known ways a script could end the process. Compile
// refuses, before goja parses it, a source over MaxScriptSize (1 MiB),
// nested deeper than MaxNesting (1000) levels of brackets, or with an
// expression deeper than MaxExprDepth (4000) tokens: goja's parser and
// compiler recurse per level, and a stack overflow is fatal. At run time,
// the built-ins that allocate in proportion to an argument ("x".repeat(n),
// new ArrayBuffer(n), JSON.stringify, Array.prototype.fill...) check what
// they would allocate against the run's memory budget (WithMemoryBudget,
// 64 MiB by default) and throw a RangeError instead; JSON.parse,
// JSON.stringify, join and flat refuse nesting deeper than 1000 levels; and
// eval, the Function constructors and RegExp measure what they compile at
// run time as Compile does. The budget cannot see the + operator (s += s
// doubles a string between two interrupts) or spreading a sparse array of
// huge length: those are bounded only by the run's timeout.
//
// The engine knows nothing of etcd or of gRPC transport: it takes a request
// (and a response, for post-hooks) as protobuf messages, shows them to the
// script exactly as protojson would, and returns an Outcome: go on (with the
// possibly changed message), reject with a gRPC code, or respond now.
package engine
