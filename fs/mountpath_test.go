package fs

import (
	"os"
	"path/filepath"
	"testing"
)

// A mount point given as a symlink is its target, as the kernel mounts
// it: 'recall umount LINK' found nothing at the link's own path after
// 'recall mount LINK'. A parent that is a link resolves as before, and a
// path that is not there is taken as it is (a dead mount's lstat fails).
func TestMountPathResolvesLink(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		filepath.Join(dir, "link"):            real,
		filepath.Join(dir, "link") + "/":      real,
		filepath.Join(dir, "up", "real"):      real,
		filepath.Join(dir, "up", "link"):      real,
		filepath.Join(dir, "gone"):            filepath.Join(dir, "gone"),
		filepath.Join(dir, "up", "gone", "x"): "",
	} {
		got, err := MountPath(in)
		if want == "" {
			if err == nil {
				t.Errorf("MountPath(%s) = %s, want an error (its parent is not there)", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("MountPath(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}
