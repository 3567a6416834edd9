// Package ops is the daemon's operators' view, on one HTTP listener
// (apihooksd --http-listen): Prometheus metrics at /metrics, and the API
// Hooks page at / with the JSON API it uses under /api/. Telemetry also
// sets up OpenTelemetry traces, configured by the standard OTEL_*
// variables.
//
// The page can change production behaviour, so a Server refuses to serve
// it on an address other than loopback without credentials
// (--http-auth-file), checks a CSRF token on every write, can be read-only,
// and can be left out altogether, serving /metrics alone.
package ops
