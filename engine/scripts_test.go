package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	// Killing sh alone would leave the child holding the output pipe, and
	// the run would last until it ends.
	if d := time.Duration(run.Duration); d > 30*time.Second {
		t.Errorf("the run lasted %s after a 1s timeout", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The child is not ours to wait for: a pidfd becomes readable when it
	// exits (SIGKILL is delivered asynchronously, so it may still be on
	// its way out right now).
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // already gone and reaped
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10_000)
	if err != nil || n != 1 {
		t.Errorf("background child %d survived the timeout (poll %d, %v)", pid, n, err)
		unix.Kill(pid, unix.SIGKILL)
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

// A group's scripts run without the store's passphrase, what yields it,
// and the Samba user's: a pre script of "env > file" wrote
// RECALL_PASSWORD=... into the file. Other variables, and the ones the
// job gives, are there.
func TestScriptEnvWithoutSecrets(t *testing.T) {
	for _, k := range scriptSecrets {
		t.Setenv(k, "secret-"+k)
	}
	t.Setenv("RECALL_HOME_KEEP", "kept")
	run, err := runScript(context.Background(), "pre", "env", 10*time.Second, []string{"RECALL_GROUP=g"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(run.Output, "secret-") {
		t.Errorf("the script saw a secret:\n%s", run.Output)
	}
	if !strings.Contains(run.Output, "RECALL_HOME_KEEP=kept") || !strings.Contains(run.Output, "RECALL_GROUP=g") {
		t.Errorf("the script lost other variables:\n%s", run.Output)
	}
}
