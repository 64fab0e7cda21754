// Package testskip is the one way a recall test skips: CI sets
// RECALL_TEST_DISALLOW_SKIP=1, and there a skip fails instead, so that a
// run cannot pass by not testing (no root, no /dev/fuse, too little data
// for what the test means to exercise).
//
// Call Skip, never t.Skip, t.Skipf or t.SkipNow directly: make lint
// rejects them.
package testskip

import (
	"fmt"
	"os"
	"testing"
)

// DisallowEnv is the variable that turns skips into failures when "1".
const DisallowEnv = "RECALL_TEST_DISALLOW_SKIP"

// Skip skips tb with the formatted reason, or fails it when skipping is
// disallowed. Like tb.Skip, it does not return.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Disallowed() {
		tb.Fatalf("would skip, but %s=1: %s", DisallowEnv, msg)
	}
	tb.Skip(msg)
}

// Disallowed reports whether skips fail in this run.
func Disallowed() bool {
	return os.Getenv(DisallowEnv) == "1"
}
