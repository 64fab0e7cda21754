package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A protection group's pre- and post-scripts run with sh -c, in a process
// group of their own, with the environment of recall plus:
//
//	RECALL_GROUP           the group's name
//	RECALL_MEMBER          the member's path
//	RECALL_SOURCE          the member's data source name
//	RECALL_PHASE           "pre" or "post"
//	RECALL_POLICY_VERSION  the group's policy version
//
// and, for the post-script only, how the backup went:
//
//	RECALL_OUTCOME  "ok", "warnings" (a point was made; some entries were
//	                skipped) or "failed" (no point: the pre-script or the
//	                backup failed)
//	RECALL_POINT    the new point's id ("" when failed)
//	RECALL_ERROR    the error message ("" when ok)
//
// A script that exits non-zero, or is still running at the group's script
// timeout, fails the member's job. At the timeout the whole process group
// gets SIGKILL, so a script that started children (a database dump piped
// into gzip) leaves nothing behind. The output (stdout and stderr
// interleaved, the last scriptOutputMax bytes) is kept in the job record.

// ScriptRun is one run of a group script, as the job record keeps it.
type ScriptRun struct {
	Phase    string    `json:"phase"` // pre or post
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Duration int64     `json:"duration_ns"`
	ExitCode int       `json:"exit_code"` // -1 when killed
	TimedOut bool      `json:"timed_out,omitempty"`
	Output   string    `json:"output"`
	// Truncated says the output was longer than what is kept (its end
	// is kept).
	Truncated bool `json:"truncated,omitempty"`
}

// ErrScript marks a failed or timed-out group script.
var ErrScript = errors.New("script failed")

// scriptOutputMax bounds the output kept per script: a job record is read
// whole by every 'recall jobs'.
const scriptOutputMax = 64 << 10

// tailBuffer keeps the last max bytes written to it; the script's stdout
// and stderr write to it from two goroutines.
type tailBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return len(p), nil
}

func (t *tailBuffer) result() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Clone(t.buf)), t.truncated
}

// scriptSecrets are the variables a group's scripts run without: the
// store's passphrase and what yields it, and the Samba user's. A script
// is an administrator's, but what it runs (a database dump, a snapshot
// tool) and what it logs or leaves in /proc need none of them.
var scriptSecrets = []string{"RECALL_PASSWORD", "RECALL_PASSWORD_COMMAND", "RECALL_PASSWORD_FILE", "RECALL_SMB_PASSWORD"}

// scriptEnv is env less scriptSecrets.
func scriptEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(scriptSecrets, name)
	})
}

// runScript runs command with sh -c and the extra environment env, killing
// its process group at timeout or when ctx ends. The error wraps ErrScript
// and says how it ended; run holds the output either way.
func runScript(ctx context.Context, phase, command string, timeout time.Duration, env []string) (ScriptRun, error) {
	run := ScriptRun{Phase: phase, Command: command, Started: time.Now().UTC(), ExitCode: -1}
	out := &tailBuffer{max: scriptOutputMax}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(scriptEnv(os.Environ()), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("%s-script %q: %w: %v", phase, command, ErrScript, err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	var why string
	var cause error // the cancellation's, when it ended the script
	select {
	case err = <-done:
	case <-timer.C:
		why = fmt.Sprintf("still running after the script timeout of %s; killed it and its process group", timeout)
		run.TimedOut = true
	case <-ctx.Done():
		cause = context.Cause(ctx)
		why = fmt.Sprintf("interrupted (%v); killed it and its process group", cause)
	}
	if why != "" {
		// Kill the group, not just sh: a child holding the output pipe
		// would keep Wait from returning.
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	run.Duration = int64(time.Since(run.Started))
	run.Output, run.Truncated = out.result()
	if why == "" && cmd.ProcessState != nil {
		run.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case cause != nil:
		// Wraps the cause: a script the server's stop interrupted is no
		// failure of the member (no alert counts it, none is replaced
		// by it), as a backup the stop interrupted is not.
		return run, &scriptStopped{fmt.Errorf("%s-script %q: %w: %s", phase, command, ErrScript, why), cause}
	case why != "":
		return run, fmt.Errorf("%s-script %q: %w: %s", phase, command, ErrScript, why)
	case err != nil:
		return run, fmt.Errorf("%s-script %q: %w: %v (its output is in the job record: recall jobs --json)", phase, command, ErrScript, err)
	}
	return run, nil
}

// scriptStopped is the error of a script its job's cancellation ended:
// it is ErrScript, and the cancellation's cause too.
type scriptStopped struct {
	err   error
	cause error
}

func (e *scriptStopped) Error() string   { return e.err.Error() }
func (e *scriptStopped) Unwrap() []error { return []error{e.err, e.cause} }
