// Package protojs converts protobuf messages to native goja (JavaScript)
// values and back, giving scripts exactly the view of a message that
// google.golang.org/protobuf/encoding/protojson gives with its default
// options, without producing or parsing JSON text.
//
// ToValue builds plain JavaScript objects, arrays, strings, numbers and
// booleans shaped like protojson.Marshal's output: lowerCamelCase field
// names, unpopulated fields omitted, 64-bit integers as decimal strings,
// enums by name, bytes as base64, and the well-known types in their JSON
// forms. FromValue reads such values back into a message and accepts
// exactly what protojson.Unmarshal accepts for the JSON text that
// JSON.stringify would produce from the same value, reporting a value that
// does not fit as a *FieldError naming the field path. FromGo turns values
// decoded by encoding/json into native JavaScript values.
//
// All functions must be called on the goroutine that owns the goja.Runtime,
// like any other use of that runtime.
package protojs
