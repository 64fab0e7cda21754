package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
	"github.com/recall-backup/recall/internal/cephtest"
	"github.com/recall-backup/recall/internal/testskip"
)

// TestStartStop drives the built program: start leaves a usable gateway
// behind it and refuses a second start in the same directory; stop ends
// every daemon; and a cluster whose watched process ends stops by itself.
func TestStartStop(t *testing.T) {
	if m := cephtest.Missing(); m != "" {
		testskip.Skip(t, "ceph programs missing: %s: run make deps", m)
	}
	bin := filepath.Join(t.TempDir(), "cephup")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	t.Cleanup(func() { exec.Command(bin, "stop", dir).Run() })

	watched := exec.Command("sleep", "600")
	if err := watched.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watched.Process.Kill(); watched.Wait() })

	for _, how := range []string{"stop", "watch"} {
		t.Run(how, func(t *testing.T) {
			out, err := exec.Command(bin, "start", "-size", strconv.Itoa(4<<30), "-watch", strconv.Itoa(watched.Process.Pid), dir).Output()
			if err != nil {
				t.Fatalf("start: %v: %s", err, stderr(err))
			}
			vars := assignments(t, out)
			for _, k := range []string{"S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CEPH_CONF", "CEPH_START_SECONDS"} {
				if vars[k] == "" {
					t.Errorf("start printed no %s:\n%s", k, out)
				}
			}
			if _, err := os.Stat(vars["CEPH_CONF"]); err != nil {
				t.Errorf("CEPH_CONF: %v", err)
			}
			roundTrip(t, vars)
			if out, err := exec.Command(bin, "start", dir).CombinedOutput(); err == nil || !bytes.Contains(out, []byte("already runs")) {
				t.Errorf("a second start in the same directory: %v: %s", err, out)
			}
			pid := holderPid(t, dir)

			if how == "stop" {
				if out, err := exec.Command(bin, "stop", dir).CombinedOutput(); err != nil {
					t.Fatalf("stop: %v: %s", err, out)
				}
				if alive(pid) {
					t.Errorf("holder %d still runs after stop", pid)
				}
				if out, err := exec.Command(bin, "stop", dir).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("no cluster runs")) {
					t.Errorf("stop with nothing running: %v: %s", err, out)
				}
			} else {
				watched.Process.Kill()
				watched.Wait()
				if err := waitExit(pid, 2*time.Minute); err != nil {
					t.Fatalf("holder %d after the watched process ended: %v", pid, err)
				}
			}
			if d := daemons(dir); len(d) > 0 {
				t.Errorf("daemons of %s still run: %v", dir, d)
			}
			if _, err := os.Stat(filepath.Join(dir, "cluster")); !os.IsNotExist(err) {
				t.Errorf("the cluster's directory is left: %v", err)
			}
		})
	}
}

// roundTrip saves and loads an object through the gateway with the
// printed credentials.
func roundTrip(t *testing.T, vars map[string]string) {
	t.Helper()
	ctx := context.Background()
	be, err := s3.Create(ctx, s3.Config{Endpoint: vars["S3_ENDPOINT"], Bucket: "cephup", Prefix: "t",
		AccessKey: vars["AWS_ACCESS_KEY_ID"], SecretKey: vars["AWS_SECRET_ACCESS_KEY"]})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	h := backend.Handle{Type: backend.Packs, Name: strings.Repeat("ab", 32)}
	if err := be.Save(ctx, h, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := be.Load(ctx, h, 0, 5, nil)
	if err != nil || string(got) != "hello" {
		t.Fatalf("load: %q, %v", got, err)
	}
}

// assignments reads start's NAME='value' lines, as sh would.
func assignments(t *testing.T, out []byte) map[string]string {
	t.Helper()
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("not an assignment: %q", sc.Text())
		}
		sh, err := exec.Command("sh", "-c", "printf %s "+v).Output()
		if err != nil {
			t.Fatalf("sh cannot read %q: %v", v, err)
		}
		vars[k] = string(sh)
	}
	return vars
}

func holderPid(t *testing.T, dir string) int {
	t.Helper()
	pid, ok := holder(dir)
	if !ok {
		t.Fatalf("no holder runs in %s", dir)
	}
	return pid
}

// alive reports whether pid runs, a zombie being dead.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// daemons lists the living processes whose command line names dir.
func daemons(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmd, []byte(dir)) && alive(pid) {
			out = append(out, strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
