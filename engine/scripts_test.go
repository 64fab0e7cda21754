package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A script that hangs is killed at the timeout with its whole process
// group: the child it started in the background dies too, and what it
// printed before is kept.
func TestScriptTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	cmd := `sleep 300 & echo $! > ` + pidFile + `; echo started; echo oops >&2; wait`
	run, err := runScript(context.Background(), "pre", cmd, time.Second, nil)
	if !errors.Is(err, ErrScript) || !strings.Contains(err.Error(), "timeout of 1s") {
		t.Fatalf("err %v", err)
	}
	if !run.TimedOut || run.ExitCode != -1 || !strings.Contains(run.Output, "started") || !strings.Contains(run.Output, "oops") {
		t.Errorf("run %+v", run)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The child is our grandchild, reaped by init once killed: it must be
	// gone or a zombie about to be reaped, never sleeping.
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		fields := strings.Fields(string(st))
		if len(fields) > 2 && fields[2] != "Z" {
			t.Errorf("background child %d survived the timeout: state %s", pid, fields[2])
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestScriptOutcomes(t *testing.T) {
	for _, c := range []struct {
		cmd    string
		code   int
		failed bool
		out    string
	}{
		{"echo $RECALL_X", 0, false, "y\n"},
		{"echo no; exit 3", 3, true, "no\n"},
	} {
		run, err := runScript(context.Background(), "post", c.cmd, 10*time.Second, []string{"RECALL_X=y"})
		if (err != nil) != c.failed || run.ExitCode != c.code || run.Output != c.out || run.Phase != "post" {
			t.Errorf("%s: %+v %v", c.cmd, run, err)
		}
	}
	// Output beyond the bound keeps its end.
	run, err := runScript(context.Background(), "pre", "head -c 100000 /dev/zero | tr '\\0' a; echo END", 10*time.Second, nil)
	if err != nil || !run.Truncated || len(run.Output) != scriptOutputMax || !strings.HasSuffix(run.Output, "END\n") {
		t.Errorf("long output: %d bytes, truncated %v, %v", len(run.Output), run.Truncated, err)
	}
}
