package engine

import (
	"errors"
	"fmt"
	"testing"
)

type stopSignal struct{}

func (stopSignal) Error() string     { return "backup interrupted by SIGINT" }
func (stopSignal) Interrupted() bool { return true }

// A job stopped by a signal (the command line's cause says so) is
// recorded "interrupted", as one whose process died or whose server
// stopped it; it was "failed".
func TestJobInterruptedBySignal(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("save: %w", stopSignal{}), "interrupted"},
		{errors.New("disk full"), "failed"},
		{nil, "ok"},
	} {
		j := &Job{}
		j.end(c.err)
		if j.Status != c.want {
			t.Errorf("job ended by %v: %q, want %q", c.err, j.Status, c.want)
		}
	}
}
