package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/internal/holder"
	"github.com/recall-backup/recall/internal/testskip"
)

// recallBin is the binary under test, built once by TestMain.
var recallBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recall-it-")
	if err != nil {
		panic(err)
	}
	recallBin = filepath.Join(dir, "recall")
	// The binaries, and this process's judge of their locks, keep their
	// holder files here, never in the machine's holder directory.
	os.Setenv(holder.DirEnv, filepath.Join(dir, "holders"))
	cmd := exec.Command("go", "build", "-o", recallBin, "../cmd/recall")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build recall:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skip skips a test unless RECALL_TEST_DISALLOW_SKIP=1, where it fails:
// CI must never pass by skipping.
func skip(t *testing.T, format string, args ...any) {
	t.Helper()
	testskip.Skip(t, format, args...)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skip(t, "needs root")
	}
}

// result is one finished run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// env is one recall home for a test.
type env struct {
	t    *testing.T
	home string
	vars []string // extra environment, KEY=VALUE
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, home: filepath.Join(t.TempDir(), "home")}
}

// run runs recall with --home and returns its result, whatever the code.
func (e *env) run(args ...string) result {
	e.t.Helper()
	cmd := e.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run recall %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(recallBin, append([]string{"--home", e.home}, args...)...)
	cmd.Env = append(os.Environ(), e.vars...)
	return cmd
}

// ok runs recall and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("recall %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}
