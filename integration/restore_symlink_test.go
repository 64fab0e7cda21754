package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// With --overwrite, an immutable file in the way is reported with what to
// do about it and left as it is, and the rest of the point is restored:
// exit 3, as for a non-empty directory in the way. Restoring that one
// entry fails (exit 1).
func TestRestoreOverwriteImmutableInTheWay(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	want := restoreSource(t, e)
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "file.bin"), 7, 4000)
	setImmutable(t, filepath.Join(dir, "file.bin"))
	before := fileHash(t, filepath.Join(dir, "file.bin"))

	r := e.run("restore", "latest", "--source", "s", "--target", dir, "--overwrite")
	if r.code != 3 || !strings.Contains(r.stderr, "not restored: file.bin: ") ||
		!strings.Contains(r.stderr, "(immutable or append-only, or in such a directory: 'chattr -i -a' it (and its directory), or restore elsewhere)") {
		t.Fatalf("whole point over an immutable file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	got := dirState(t, dir)
	for p, w := range want {
		if p == "file.bin" || p == "." {
			continue
		}
		g := got[p]
		w.Holes, g.Holes = "", ""
		if g != w {
			t.Errorf("%s: want %+v, got %+v", p, w, g)
		}
	}
	if fileHash(t, filepath.Join(dir, "file.bin")) != before {
		t.Errorf("the immutable file in the way changed")
	}

	r = e.run("restore", "latest", "--source", "s", "--path", "file.bin", "--target", dir, "--overwrite")
	if r.code != 1 || !strings.Contains(r.stderr, "'chattr -i -a' it") {
		t.Fatalf("the one entry over an immutable file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// setImmutable sets chattr +i on path until the test ends; a file system
// without the flag skips the test.
func setImmutable(t *testing.T, path string) {
	t.Helper()
	const immutable = 0x10 // FS_IMMUTABLE_FL
	set := func(on bool) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		flags &^= immutable
		if on {
			flags |= immutable
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
	}
	err := set(true)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		skip(t, "the file system of %s has no immutable flag: %v", path, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set(false); err != nil {
			t.Errorf("chattr -i %s: %v", path, err)
		}
	})
}
