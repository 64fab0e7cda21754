package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestServeKilledWhileFollowed: recall serve killed with -9 while
// 'recall backup --group' follows the backup it asked for. The command
// says the server went away and where to look, not only what the
// connection saw; the restarted server makes the backup asked for, as it
// makes a scheduled run cut short.
func TestServeKilledWhileFollowed(t *testing.T) {
	e, s, src, client, sc, stderr := followedBackup(t, 6)
	must(t, s.cmd.Process.Signal(syscall.SIGKILL))
	s.wait()
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
	}
	code := 0
	if err := client.Wait(); err != nil {
		code = client.ProcessState.ExitCode()
	}
	msg := stderr.String()
	t.Logf("the command said:\n%s", msg)
	if code != 1 {
		t.Errorf("backup --group g followed while the server was killed: exit %d, want 1; stderr:\n%s", code, msg)
	}
	for _, want := range []string{"recall serve went away", "backup of group g", "the job was cut short", "'recall jobs' shows it as interrupted", "makes the backup again at its next start", "server's log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("backup --group g stderr lacks %q:\n%s", want, msg)
		}
	}

	s = e.serve("--log-format", "json")
	s.await(`"msg":"backup asked for before the server stopped was not made: making it now"`, `"group":"g"`)
	s.await(`"msg":"member backed up"`, src)
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Errorf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
	var backups []jobOut
	for _, j := range e.jobs() {
		if j.Kind == "backup" {
			backups = append(backups, j)
		}
	}
	if len(backups) != 3 || backups[0].Status != "ok" || backups[1].Status != "interrupted" || backups[2].Status != "ok" {
		t.Errorf("backups: %+v, want the first run, the one asked for interrupted, then made again", backups)
	}
	e.ok("verify", "--read-data")
}

// TestFollowerInterrupted: Ctrl-C on 'recall backup --group' that follows
// the server's backup stops the following, not the backup: the command
// says so (exit 130) and the server makes the point. It said "no recovery
// point was made", and an administrator who believed it started another.
func TestFollowerInterrupted(t *testing.T) {
	e, s, src, client, sc, stderr := followedBackup(t, 4)
	must(t, client.Process.Signal(syscall.SIGINT))
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
	}
	code := 0
	if err := client.Wait(); err != nil {
		code = client.ProcessState.ExitCode()
	}
	msg := stderr.String()
	if code != 130 || !strings.Contains(msg, "stopped following server job") || !strings.Contains(msg, "goes on in recall serve") || strings.Contains(msg, "no recovery point was made") {
		t.Errorf("backup --group g interrupted while following: exit %d, stderr:\n%s\nwant exit 130, saying the job goes on", code, msg)
	}
	s.await(`"msg":"member backed up"`, src) // the second time: the backup asked for
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	s.wait()
	var backups []jobOut
	for _, j := range e.jobs() {
		if j.Kind == "backup" {
			backups = append(backups, j)
		}
	}
	if len(backups) != 2 || backups[1].Status != "ok" {
		t.Errorf("backups: %+v, want the first run, then the one asked for, ok", backups)
	}
}

// followedBackup starts recall serve on a new home with group g of one
// member, waits for the group's first backup, adds big files of 12 MiB
// each, and starts 'recall backup --group g', which asks the server for
// a backup and follows it; it returns once the command says the server
// runs the member, with the command's stderr so far and the scanner of
// the rest.
func followedBackup(t *testing.T, big int) (e *env, s *served, src string, client *exec.Cmd, sc *bufio.Scanner, stderr *strings.Builder) {
	t.Helper()
	requireRoot(t) // asking the server for a backup is root's
	e = newEnv(t)
	dir := t.TempDir()
	src = filepath.Join(dir, "data")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "small"), []byte("first run\n"), 0o644))
	e.ok("init")
	e.ok("group", "create", "g", "--member", src, "--sync", "1h")
	cfg := filepath.Join(dir, "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\nconcurrency = 1\n", e.home, filepath.Join(dir, "recall.sock"))), 0o644))
	e.vars = append(e.vars, "RECALL_CONFIG="+cfg)

	// A new group is backed up at once; the backup asked for comes
	// after, with data enough to be stopped in the middle of.
	s = e.serve("--log-format", "json")
	s.await(`"msg":"member backed up"`, src)
	for i := 0; i < big; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("big%d", i)), int64(i), 12<<20)
	}
	client = e.command("backup", "--group", "g", "--progress-interval", "100ms")
	pipe, err := client.StderrPipe()
	must(t, err)
	must(t, client.Start())
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	sc = bufio.NewScanner(pipe)
	stderr = &strings.Builder{}
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "running, member "+src) {
			break
		}
	}
	return e, s, src, client, sc, stderr
}
