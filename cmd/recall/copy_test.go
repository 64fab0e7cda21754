package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// A copy stopped by a full destination says what the packs it finished
// there are for; other errors are left as they are. (That the error is
// said once is TestCopyIntoFullStoreErrsOnce's, in ./integration.)
func TestCopyErrorFull(t *testing.T) {
	full := fmt.Errorf("copy to /d/store: store /d/store is full: %w: write /d/store/tmp/p: no space left on device", backend.ErrNoSpace)
	err := copyError(full)
	if msg := err.Error(); !strings.HasPrefix(msg, full.Error()) || !strings.Contains(msg, "the next copy reuses them") {
		t.Errorf("error %q", msg)
	}
	if !errors.Is(err, backend.ErrNoSpace) || exitCode(err) != exitError {
		t.Errorf("error %q lost its kind: exit %d", err, exitCode(err))
	}
	other := errors.New("copy from /s: no point of source \"x\"")
	if err := copyError(other); err != other {
		t.Errorf("another error was changed: %v", err)
	}
}
