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

// A post-script runs to its end when the job was cancelled before it
// started or while it runs (recall serve stopping), up to
// PostScriptStopGrace after the cancellation: it thaws what the
// pre-script froze. Before, it was killed at once.
func TestPostScriptOutlivesCancel(t *testing.T) {
	saved := PostScriptStopGrace
	defer func() { PostScriptStopGrace = saved }()
	PostScriptStopGrace = 2 * time.Second
	dir := t.TempDir()
	for _, early := range []bool{true, false} {
		ctx, cancel := context.WithCancelCause(context.Background())
		if early {
			cancel(errors.New("stopping"))
		} else {
			time.AfterFunc(50*time.Millisecond, func() { cancel(errors.New("stopping")) })
		}
		mark := filepath.Join(dir, strconv.FormatBool(early))
		pctx, stop := postScriptContext(ctx)
		run, err := runScript(pctx, "post", "sleep 0.3; touch "+mark, 10*time.Second, nil)
		stop()
		if _, serr := os.Stat(mark); err != nil || serr != nil || run.ExitCode != 0 {
			t.Errorf("post-script after a cancel (before it started: %v): %v, %v, exit %d", early, err, serr, run.ExitCode)
		}
		cancel(nil)
	}
	// One that would run on is killed the grace after the cancellation.
	PostScriptStopGrace = 200 * time.Millisecond
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("stopping"))
	pctx, stop := postScriptContext(ctx)
	start := time.Now()
	_, err := runScript(pctx, "post", "sleep 30", 10*time.Second, nil)
	stop()
	if err == nil || !strings.Contains(err.Error(), "stopping") || time.Since(start) > 5*time.Second {
		t.Errorf("post-script past the grace: %v after %v", err, time.Since(start))
	}
}

// A script its job's cancellation ends says so and wraps the cause, so
// that a stop of the server is not taken for a failing member.
func TestScriptInterruptedWrapsCause(t *testing.T) {
	stop := errors.New("server stopping")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(stop) })
	_, err := runScript(ctx, "pre", "sleep 30", 10*time.Second, nil)
	if !errors.Is(err, stop) || !errors.Is(err, ErrScript) || !strings.Contains(err.Error(), "interrupted (server stopping)") {
		t.Errorf("interrupted script: %v", err)
	}
	// A timeout is the script's own failure: no cause to wrap.
	_, err = runScript(context.Background(), "pre", "sleep 30", 100*time.Millisecond, nil)
	if errors.Is(err, stop) || !errors.Is(err, ErrScript) {
		t.Errorf("timed-out script: %v", err)
	}
}
