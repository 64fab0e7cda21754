package chunkstore

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sessionHelperEnv names the store a helper process opens a write session
// of; the helper is this test binary, run for TestSessionHelperProcess.
const sessionHelperEnv = "RECALL_TEST_SESSION_HELPER"

// TestSessionHelperProcess is not a test: run by killedSession in a child
// process, it opens a write session, says so and waits to be killed.
func TestSessionHelperProcess(t *testing.T) {
	dir := os.Getenv(sessionHelperEnv)
	if dir == "" {
		return
	}
	s, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockSession(ctx, "killed", "test", 0, nil); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	bufio.NewReader(os.Stdin).ReadString('\n') // until killed
}

// killedSession runs a process that opens a write session of the store
// in dir, and kills it with -9 once the session runs.
func killedSession(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSessionHelperProcess$")
	cmd.Env = append(os.Environ(), sessionHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // held open: the helper waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper session: %q, %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// sessionLockFiles lists what of the session registrations is in locks/.
func sessionLockFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "locks"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), sessionPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Sessions killed with -9 leave their registration's lock and holder
// files; garbage collection, which proves them dead by taking their
// locks, removes both, and the store lock's holder files of the dead
// sessions go with the next lock taken, and those of their sources' locks
// with the next session of the source. A session that still runs keeps
// its files.
func TestGCRemovesDeadSessionsLockFiles(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	for range 3 {
		killedSession(t, dir)
	}
	if got := sessionLockFiles(t, dir); len(got) != 6 {
		t.Fatalf("three killed sessions left %v, want a lock and a holder file each", got)
	}
	living, err := s.LockSession(ctx, "living", "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx, pointMarker(s), GCOptions{}); err != nil {
		t.Fatal(err)
	}
	got := sessionLockFiles(t, dir)
	if len(got) != 2 {
		t.Fatalf("after garbage collection locks/ holds %v, want the living session's lock and holder file", got)
	}
	living.Unlock()
	if got := sessionLockFiles(t, dir); len(got) != 0 {
		t.Errorf("after the last session ended locks/ holds %v", got)
	}
	// The source's lock, which no collection takes, is swept by the next
	// session of that source.
	next, err := s.LockSession(ctx, "killed", "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	next.Unlock()
	ents, _ := os.ReadDir(filepath.Join(dir, "locks"))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".") {
			t.Errorf("a holder file is left: %s", e.Name())
		}
	}
}
