//go:build race

package isolate_test

// raceDetector is set when the tests run under the race detector, whose
// shadow memory counts against a worker's memory limit.
const raceDetector = true
