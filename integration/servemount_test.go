package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/mountinfo"
)

var serverPidRE = regexp.MustCompile(`server_pid"?[=:](\d+)`) // text or JSON log

// mountPid returns the mount server's pid from a "recovery tree mounted"
// line.
func mountPid(t *testing.T, line string) int {
	t.Helper()
	m := serverPidRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no server_pid in %q", line)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// TestServeKeepsMount: recall serve mounts the tree of a [[mount]]
// (creating its directory); the mount server killed with -9, the tree is
// back within seconds; SIGTERM to recall serve unmounts it.
func TestServeKeepsMount(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "data")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("kept mounted\n"), 0o644))
	e.ok("init")
	e.ok("backup", "--source", "data", src)
	mnt := filepath.Join(t.TempDir(), "srv", "recall")
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	cfg := filepath.Join(t.TempDir(), "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\n\n[[mount]]\npath = %q\nallow_other = true\n",
		e.home, filepath.Join(t.TempDir(), "recall.sock"), mnt)), 0o644))
	file := filepath.Join(mnt, "data", "latest", "f")

	s := e.serve("--config", cfg, "--log-format", "json")
	pid := mountPid(t, s.await("recovery tree mounted", mnt))
	if b, err := os.ReadFile(file); err != nil || string(b) != "kept mounted\n" {
		t.Fatalf("read %s through the server's mount: %q, %v", file, b, err)
	}
	if line, ok := mountedAt(t, mnt); !ok || !strings.Contains(line, mountinfo.RecallFSType) {
		t.Fatalf("mounted at %s: %q, want a %s mount", mnt, line, mountinfo.RecallFSType)
	}

	must(t, syscall.Kill(pid, syscall.SIGKILL))
	killed := time.Now()
	s.await("mount server gone: remounting", mnt)
	again := mountPid(t, s.await("recovery tree mounted", mnt))
	if again == pid {
		t.Fatalf("remounted by the killed server's pid %d", pid)
	}
	if d := time.Since(killed); d > 15*time.Second {
		t.Errorf("the tree took %v to come back after the kill", d)
	} else {
		t.Logf("the tree was back %v after the kill", d)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "kept mounted\n" {
		t.Fatalf("read %s after the remount: %q, %v", file, b, err)
	}
	if out := e.ok("alerts", "--json"); out != "[]\n" {
		t.Errorf("alerts after a remount that worked: %s", out)
	}

	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Fatalf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
	// --log-format json: every line is JSON, the mount servers' own
	// output too (it went to stderr as text, and jq stopped at it).
	for _, l := range strings.Split(strings.TrimSpace(s.log.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("log line not JSON: %q", l)
		}
	}
	// "stopped" is the server's last word: said once the mounts are
	// down and the last notification is out, not before.
	if ls := strings.Split(strings.TrimSpace(s.log.String()), "\n"); !strings.Contains(ls[len(ls)-1], `"msg":"stopped"`) {
		t.Errorf("last log line %q, want msg stopped; log:\n%s", ls[len(ls)-1], s.log)
	}
	if !strings.Contains(s.log.String(), `"msg":"mount server output"`) {
		t.Errorf("the mount servers' output is not in the log:\n%s", s.log)
	}
	// The server unmounted it, not the kernel after its death.
	if !strings.Contains(s.log.String(), "recovery tree unmounted") {
		t.Errorf("recall serve did not log unmounting %s; log:\n%s", mnt, s.log)
	}
	if line, ok := mountedAt(t, mnt); ok {
		t.Errorf("after recall serve stopped, %s is still mounted (%s); log:\n%s", mnt, line, s.log)
	}
	if alive(again) {
		t.Errorf("mount server %d still runs after recall serve stopped", again)
	}
}

// TestServeMountAfterKeyPasswd: the passphrase changed with 'recall key
// passwd' while recall serve runs, a mount server that dies cannot be
// started again with the passphrase the server started with; the alert
// says so and names the password file, not FUSE. Once the new passphrase
// is written into that file, the server reads it again and the tree is
// back, without a restart.
func TestServeMountAfterKeyPasswd(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	dir := t.TempDir()
	pwFile, newFile := filepath.Join(dir, "passphrase"), filepath.Join(dir, "new")
	must(t, os.WriteFile(pwFile, []byte("old passphrase\n"), 0o600))
	must(t, os.WriteFile(newFile, []byte("new passphrase\n"), 0o600))
	e.vars = append(e.vars, "RECALL_PASSWORD_FILE="+pwFile)
	src := filepath.Join(dir, "data")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("still readable\n"), 0o644))
	e.ok("init", "--encrypt")
	e.ok("backup", "--source", "data", src)
	mnt := filepath.Join(dir, "srv", "recall")
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	cfg := filepath.Join(dir, "recall.toml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("home = %q\nsocket = %q\n\n[[mount]]\npath = %q\n",
		e.home, filepath.Join(dir, "recall.sock"), mnt)), 0o644))
	file := filepath.Join(mnt, "data", "latest", "f")

	s := e.serve("--config", cfg, "--log-format", "json")
	pid := mountPid(t, s.await("recovery tree mounted", mnt))
	e.ok("key", "passwd", "--new-password-file", newFile)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	s.await("alert opened", mnt)
	var al []struct {
		Job, Source, Error, Action string
	}
	must(t, json.Unmarshal([]byte(e.ok("alerts", "--json")), &al))
	if len(al) != 1 || al[0].Job != "mount" || al[0].Source != mnt {
		t.Fatalf("alerts after the remount failed: %+v, want the mount's", al)
	}
	if !strings.Contains(al[0].Error, "wrong passphrase") || !strings.Contains(al[0].Error, pwFile) {
		t.Errorf("alert error %q: want a wrong passphrase, naming %s", al[0].Error, pwFile)
	}
	if a := al[0].Action; !strings.Contains(a, "passphrase changed") || strings.Contains(a, "/dev/fuse") {
		t.Errorf("alert action %q: want the passphrase, not FUSE", a)
	}

	must(t, os.WriteFile(pwFile, []byte("new passphrase\n"), 0o600))
	again := mountPid(t, s.await("recovery tree mounted", mnt))
	if again == pid {
		t.Fatalf("remounted by the killed server's pid %d", pid)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "still readable\n" {
		t.Fatalf("read %s after the remount: %q, %v", file, b, err)
	}
	// Cleared before the mount is logged.
	if out := e.ok("alerts", "--json"); out != "[]\n" {
		t.Errorf("alerts once mounted again: %s", out)
	}
	must(t, s.cmd.Process.Signal(syscall.SIGTERM))
	if code := s.wait(); code != 0 {
		t.Fatalf("recall serve stopped by SIGTERM: exit %d; log:\n%s", code, s.log)
	}
}
