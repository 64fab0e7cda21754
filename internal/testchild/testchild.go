// Package testchild runs a test binary again as a helper process of a
// test: a holder of a lock or of a file that a test kills, and whose
// death the code under test must see.
package testchild

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// Start runs the test named run of this test binary in a process of its
// own, with env added to its environment, and returns the process and
// the first line it prints (trimmed) once it has printed it: the helper
// prints it when it is ready. The helper reads its stdin until it is
// closed; when the test ends its stdin is closed and it is killed and
// waited for, whatever the test did to it meanwhile.
func Start(t testing.TB, run string, env ...string) (*exec.Cmd, []byte) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("helper process %s did not get ready: %v", run, err)
	}
	return cmd, bytes.TrimSpace(line)
}
