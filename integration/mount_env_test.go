package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountServerEnvHasNoPassphrase: the background server `recall
// mount` starts gets the passphrase on a pipe, never in its environment:
// neither RECALL_PASSWORD nor the command that prints it (nor the file
// variable) is in /proc/PID/environ of the server, and the mount reads
// the encrypted store's files all the same.
func TestMountServerEnvHasNoPassphrase(t *testing.T) {
	requireFUSE(t)
	const secret = "correct horse battery staple"
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=" + secret}
	e.ok("init", "--encrypt")
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f.txt"), []byte("through the mount"), 0o644)
	e.ok("-q", "backup", "--source", "data", src)
	file := filepath.Join(t.TempDir(), "passphrase")
	check(t, os.WriteFile(file, []byte(secret+"\n"), 0o600))
	for name, vars := range map[string][]string{
		"RECALL_PASSWORD":         {"RECALL_PASSWORD=" + secret},
		"RECALL_PASSWORD_COMMAND": {"RECALL_PASSWORD_COMMAND=echo '" + secret + "'"},
		"RECALL_PASSWORD_FILE":    {"RECALL_PASSWORD_FILE=" + file},
	} {
		t.Run(name, func(t *testing.T) {
			e := &env{t: t, home: e.home, vars: vars}
			mnt := t.TempDir()
			m := e.mount(mnt)
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", m.pid))
			check(t, err)
			for _, bad := range []string{"RECALL_PASSWORD=", "RECALL_PASSWORD_COMMAND=", "RECALL_PASSWORD_FILE=", secret} {
				if bytes.Contains(environ, []byte(bad)) {
					t.Errorf("the environment of mount server %d holds %q", m.pid, bad)
				}
			}
			got, err := os.ReadFile(filepath.Join(mnt, "data", "latest", "f.txt"))
			if err != nil || string(got) != "through the mount" {
				t.Fatalf("reading through the mount: %q, %v", got, err)
			}
		})
	}
}

// TestMountNonEmpty: recall mount refuses a directory that holds files,
// which the tree would hide, and mounts over them with --nonempty; with
// -q it prints nothing, and the files are there again once unmounted.
func TestMountNonEmpty(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t)
	e.ok("init")
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f.txt"), []byte("from the point"), 0o644)
	e.ok("-q", "backup", "--source", "data", src)
	mnt := t.TempDir()
	mustWrite(t, filepath.Join(mnt, "hidden.txt"), []byte("under the mount"), 0o644)
	r := e.run("mount", mnt)
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "mount point "+mnt+" is not empty (1 entry: hidden.txt)") {
		t.Fatalf("mount on a non-empty directory: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, ok := mountedAt(t, mnt); ok {
		t.Fatalf("%s is mounted after the refusal", mnt)
	}
	r = e.run("-q", "mount", "--nonempty", mnt)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("mount -q --nonempty: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Cleanup(func() { e.run("umount", "--lazy", mnt) })
	if b, err := os.ReadFile(filepath.Join(mnt, "data", "latest", "f.txt")); err != nil || string(b) != "from the point" {
		t.Fatalf("through the mount: %q, %v", b, err)
	}
	e.ok("umount", mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "hidden.txt")); err != nil || string(b) != "under the mount" {
		t.Fatalf("after umount: %q, %v", b, err)
	}
}
