package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/mountinfo"
	"golang.org/x/sys/unix"
)

func TestMountTableTypes(t *testing.T) {
	var m mountTable
	for _, tc := range []struct {
		path, typ string
		never     bool
	}{
		{"/proc", "proc", true},
		{"/proc/self/fd", "proc", true},
		{"/sys", "sysfs", true},
		{"/dev/pts", "devpts", true},
		{t.TempDir(), "", false},
	} {
		var st unix.Stat_t
		if err := unix.Stat(tc.path, &st); err != nil {
			t.Fatal(err)
		}
		typ := m.fsType(tc.path, st.Dev)
		if tc.typ != "" && typ != tc.typ {
			t.Errorf("%s: type %q, want %q", tc.path, typ, tc.typ)
		}
		if got := neverRead(typ) != ""; got != tc.never {
			t.Errorf("%s (%s): never read %v, want %v", tc.path, typ, got, tc.never)
		}
	}
	if m.read != 1 {
		t.Errorf("mountinfo read %d times for known devices, want once", m.read)
	}
	// The answer for a device is kept: asked again, even by a path that
	// is gone (no statfs is made), it is the same.
	var st unix.Stat_t
	dir := t.TempDir()
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	first := m.fsType(dir, st.Dev)
	m.byDev, m.read = nil, maxMountReads // what is kept must answer
	if again := m.fsType(dir+"/gone", st.Dev); again != first || first == "" {
		t.Errorf("asked again: %q, first %q", again, first)
	}
	if why := neverRead(mountinfo.RecallFSType); !strings.Contains(why, "recall recovery tree") {
		t.Errorf("recovery tree: %q", why)
	}
}

// A source on a pseudo file system is refused at once: /proc/kmsg, for
// one, blocks a reader forever.
func TestBackupRefusesPseudoRoot(t *testing.T) {
	ts := newTestStore(t)
	for _, path := range []string{"/proc", "/proc/kmsg", "/proc/self", "/sys/kernel", "/dev/pts"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
		_, err := Backup(ctx, s, BackupOptions{Path: path, Source: "p"})
		s.Close()
		cancel()
		if err == nil || !strings.Contains(err.Error(), "pseudo file system") || !strings.Contains(err.Error(), path) {
			t.Errorf("backup %s: %v, want a pseudo file system error", path, err)
		}
	}
}

// /dev holds device nodes (recorded, never read) and, on Linux, devpts
// at /dev/pts: without one_file_system the pseudo mount is a warning and
// an empty directory, with it a mount point and no warning.
func TestBackupPseudoMountInside(t *testing.T) {
	ts := newTestStore(t)
	p, err := ts.backup(BackupOptions{Path: "/dev", Source: "dev", Exclude: Exclude{Patterns: []string{"/shm/"}}})
	if p == nil {
		t.Fatal(err)
	}
	warned := false
	for _, e := range p.Errors {
		if e.Path == "pts" && e.Error == "skipped mount point: devpts is a pseudo file system" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning for /dev/pts in %+v", p.Errors)
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if n := root.Find("pts"); n == nil || n.Type != TypeDir {
		t.Errorf("pts is %+v, want an empty directory", n)
	} else if sub, err := ts.r.LoadTree(n.Subtree); err != nil || len(sub.Nodes) != 0 {
		t.Errorf("pts holds %v (%v), want nothing", sub, err)
	}
	if n := root.Find("null"); n == nil || n.Type != TypeChar || len(n.Extents) != 0 || n.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("null is %+v, want a recorded character device", n)
	}

	p, err = ts.backup(BackupOptions{Path: "/dev", Source: "dev", Exclude: Exclude{Patterns: []string{"/shm/"}, OneFileSystem: true}})
	if p == nil {
		t.Fatal(err)
	}
	for _, e := range p.Errors {
		if strings.Contains(e.Error, "mount point") {
			t.Errorf("one_file_system still warns: %+v", e)
		}
	}
	found := false
	for _, m := range p.MountPoints {
		found = found || m == MountPoint{Path: "pts", FSType: "devpts"}
	}
	if !found {
		t.Errorf("mount points %+v lack pts", p.MountPoints)
	}
}
