package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A restore onto a file system that cannot hold some entries (a vfat USB
// stick: no symlinks or FIFOs, no ':' in names) restores every file it
// can, lists the others as not restored, and exits 3; before, it stopped
// at the first symlink, with most files never tried.
func TestRestoreOntoVfat(t *testing.T) {
	requireRoot(t)
	for _, c := range []string{"mkfs.vfat", "fusefat", "fusermount3"} {
		if _, err := exec.LookPath(c); err != nil {
			skip(t, "%s missing (make deps installs it)", c)
		}
	}
	e := newEnv(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "a.txt"), []byte("first"), 0o644)
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "abs")))
	must(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	mustWrite(t, filepath.Join(src, "Name:With:Colon"), []byte("colon"), 0o644)
	mustWrite(t, filepath.Join(src, "dir:x", "inside"), []byte("inside"), 0o644)
	mustWrite(t, filepath.Join(src, "sub", "z.txt"), []byte("last"), 0o644)
	e.ok("init")
	e.ok("backup", "--source", "s", src)

	img, mnt := filepath.Join(t.TempDir(), "vfat.img"), t.TempDir()
	must(t, os.WriteFile(img, nil, 0o600))
	must(t, os.Truncate(img, 16<<20))
	if out, err := exec.Command("mkfs.vfat", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat: %v %s", err, out)
	}
	if out, err := exec.Command("fusefat", "-o", "rw+", img, mnt).CombinedOutput(); err != nil {
		skip(t, "fusefat: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("fusermount3", "-u", "-z", mnt).Run() })

	dst := filepath.Join(mnt, "r")
	r := e.run("restore", "latest", "--source", "s", "--target", dst)
	if r.code != 3 {
		t.Fatalf("restore onto vfat: exit %d, want 3\n%s%s", r.code, r.stdout, r.stderr)
	}
	for rel, want := range map[string]string{"a.txt": "first", "sub/z.txt": "last"} {
		if got, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", rel, got, err)
		}
	}
	for _, name := range []string{"abs", "fifo", "Name:With:Colon", "dir:x/"} {
		if !strings.Contains(r.stderr, "not restored: "+name) {
			t.Errorf("%s not listed as not restored:\n%s", name, r.stderr)
		}
	}
}
