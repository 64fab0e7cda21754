package fs

import (
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
)

// skip skips tb unless RECALL_TEST_DISALLOW_SKIP=1, where it fails: CI
// must never pass by skipping. The fs tests' only way to skip.
func skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	testskip.Skip(tb, format, args...)
}
