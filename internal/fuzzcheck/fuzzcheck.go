// Package fuzzcheck asserts what every decoder of stored bytes owes beyond
// not panicking: that what it allocates is bounded by what it was given.
//
// A count read from the input (entries, nodes, a length prefix) that is
// trusted before it is checked against the bytes that remain turns ten
// corrupt bytes into a make([]T, 1<<40): an out-of-memory kill, which no
// recover and no error path can catch. Fuzz targets wrap each decode in
// Bounded with a limit linear in the input's length, so such a count fails
// the target instead of passing whenever the allocation happens to fit.
package fuzzcheck

import (
	"runtime/metrics"
	"testing"
)

// Slack is the allocation every decode may make whatever its input
// (maps, error strings, decoder state).
const Slack = 1 << 20

const allocMetric = "/gc/heap/allocs:bytes"

func allocated() uint64 {
	s := []metrics.Sample{{Name: allocMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Bounded runs fn and fails t if the heap allocations made meanwhile
// exceed limit bytes. Allocations of other goroutines count too, which is
// why limits should keep a margin (Slack): a fuzz worker runs one input at
// a time, so in practice they are all fn's. Small allocations are counted
// when their span is refilled, so the count may lag by a few KiB; only
// limits of Slack or more are meaningful.
func Bounded(t testing.TB, what string, limit uint64, fn func()) {
	t.Helper()
	before := allocated()
	fn()
	if got := allocated() - before; got > limit {
		t.Fatalf("%s allocated %d bytes, more than the %d its input justifies", what, got, limit)
	}
}

// Linear is a limit of per bytes for each input byte, plus Slack.
func Linear(n int, per uint64) uint64 { return uint64(n)*per + Slack }
