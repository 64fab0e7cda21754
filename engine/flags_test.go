package engine

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// flagsAt reads the kept inode flags of path (a file or directory).
func flagsAt(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v & keptFlags
}

// unflagAll takes the immutable and append-only flags off everything
// under dir when the test ends, so that it can be removed.
func unflagAll(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() && !d.IsDir() {
				return nil
			}
			if f, err := os.Open(p); err == nil {
				if v, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err == nil && v&flagsImmutable != 0 {
					unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(v&^flagsImmutable))
				}
				f.Close()
			}
			return nil
		})
	})
}

// Inode flags (chattr) are kept: on files, hard-linked files and
// directories, immutable and append-only ones too, which the restore sets
// last; an unchanged file keeps its flags in the next point; a tree
// without any flag is still written as version 1.
func TestInodeFlagsKept(t *testing.T) {
	const (
		noDump   = 0x40
		noAtime  = 0x80
		syncDirs = 0x10000
	)
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"frozen": "f", "log": "l", "nodump": "d", "plain": "p",
		"dir/in": "x", "linked": "h", "plaindir/y": "y"})
	unflagAll(t, src)
	if err := os.Link(filepath.Join(src, "linked"), filepath.Join(src, "dir", "link2")); err != nil {
		t.Fatal(err)
	}
	chattr(t, filepath.Join(src, "frozen"), fsImmutable)
	chattr(t, filepath.Join(src, "log"), fsAppend)
	chattr(t, filepath.Join(src, "nodump"), noDump|noAtime)
	chattr(t, filepath.Join(src, "linked"), fsImmutable)
	chattr(t, filepath.Join(src, "dir"), fsImmutable|syncDirs)
	want := map[string]uint32{"frozen": fsImmutable, "log": fsAppend, "nodump": noDump | noAtime, "plain": 0,
		"dir": fsImmutable | syncDirs, "dir/in": 0, "linked": fsImmutable, "dir/link2": fsImmutable, "plaindir": 0}

	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if !p.InodeFlags {
		t.Error("the point does not say it recorded inode flags")
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if n := root.Find("frozen"); n == nil || n.Flags != fsImmutable {
		t.Errorf("frozen in the tree: %+v", n)
	}
	plain, err := ts.r.LoadTree(root.Find("plaindir").Subtree)
	if err != nil {
		t.Fatal(err)
	}
	if b := EncodeTree(plain); b[4] != 1 {
		t.Errorf("a tree without flags is written as version %d, want 1", b[4])
	}

	restoreAndCheck := func(p *Point) {
		t.Helper()
		target := t.TempDir()
		unflagAll(t, target)
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if len(res.Warnings) > 0 {
			t.Errorf("warnings: %+v", res.Warnings)
		}
		for rel, f := range want {
			if got := flagsAt(t, filepath.Join(target, rel)); got != f {
				t.Errorf("%s: flags +%s, want +%s", rel, flagLetters(got), flagLetters(f))
			}
		}
		for rel, content := range map[string]string{"frozen": "f", "log": "l", "dir/in": "x", "dir/link2": "h"} {
			if b, err := os.ReadFile(filepath.Join(target, rel)); err != nil || string(b) != content {
				t.Errorf("%s: %q, %v", rel, b, err)
			}
		}
		var a, b unix.Stat_t
		if unix.Stat(filepath.Join(target, "linked"), &a) != nil || unix.Stat(filepath.Join(target, "dir", "link2"), &b) != nil || a.Ino != b.Ino {
			t.Error("linked and dir/link2 are not one file")
		}
		// Times are set before the flags: an immutable file's cannot be.
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(target, "frozen"), &st); err != nil || st.Mtim.Nano() != root.Find("frozen").MtimeNS {
			t.Errorf("frozen: mtime %d, want %d (%v)", st.Mtim.Nano(), root.Find("frozen").MtimeNS, err)
		}
	}
	restoreAndCheck(p)

	// The next backup finds every file unchanged and keeps their flags.
	p2, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Stats.Unchanged == 0 {
		t.Fatalf("no file unchanged: %+v", p2.Stats)
	}
	restoreAndCheck(p2)
}

// A parent point from before flags were recorded says nothing of an
// unchanged file's flags: they are read from the file.
func TestInodeFlagsAfterUpgrade(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"frozen": "f"})
	unflagAll(t, src)
	chattr(t, filepath.Join(src, "frozen"), fsImmutable)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	// The point as an earlier release wrote it: no flags in its tree,
	// none recorded.
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range root.Nodes {
		n.Flags = 0
	}
	s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
	old := *p
	old.InodeFlags = false
	old.Time = p.Time.Add(-1)
	if blob := EncodeTree(root); blob[4] != 1 {
		t.Fatalf("tree version %d", blob[4])
	}
	commitTree(t, s, &old, root)
	if err := s.RemovePoint(p.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()

	p2, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Parent != old.ID.String() || p2.Stats.Unchanged != 1 {
		t.Fatalf("parent %s, unchanged %d: want %s and 1", p2.Parent, p2.Stats.Unchanged, old.ID)
	}
	root2, err := ts.r.LoadTree(p2.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if n := root2.Find("frozen"); n.Flags != fsImmutable {
		t.Errorf("frozen: flags +%s, want +i", flagLetters(n.Flags))
	}
}

// A target that refuses a flag (tmpfs keeps +i, +a, +d and +A, not +D)
// warns about each entry whose flags were not set, naming them and the
// path; everything else is restored, and the restore does not fail.
func TestInodeFlagsWarnWhereNotSet(t *testing.T) {
	const syncDirs = 0x10000
	var sfs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		testskip.Skip(t, "no tmpfs at /dev/shm to restore to")
	}
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"dir/in": "x", "frozen": "f"})
	unflagAll(t, src)
	chattr(t, filepath.Join(src, "dir"), syncDirs)
	chattr(t, filepath.Join(src, "frozen"), fsImmutable)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.MkdirTemp("/dev/shm", "flags")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(target) })
	unflagAll(t, target)
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Path != "dir" || !strings.Contains(res.Warnings[0].Error, "inode flags +D not set") {
		t.Errorf("warnings %+v, want one for dir naming +D, by its path in the target as every warning", res.Warnings)
	}
	if b, err := os.ReadFile(filepath.Join(target, "dir", "in")); err != nil || string(b) != "x" {
		t.Errorf("dir/in: %q, %v", b, err)
	}
	if got := flagsAt(t, filepath.Join(target, "frozen")); got != fsImmutable {
		t.Errorf("frozen on tmpfs: +%s, want +i", flagLetters(got))
	}
	if got := flagLetters(fsImmutable | fsAppend | 0x40); got != "iad" {
		t.Errorf("letters %q, want iad", got)
	}
	if strings.ContainsRune(flagLetters(keptFlags), 'e') {
		t.Error("e (extents), which no one sets, is kept")
	}
}

// Fix (a +a directory merged into with --overwrite): its flags were taken
// off at the end, after its owner, mode and times, which the flag had
// refused: it kept the target's, with three warnings, and lost the flag.
// Flags that are not immutable or append-only now go first, so it gets
// all of the point's metadata.
func TestOverwriteAppendOnlyDirGetsPointsMetadata(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"d/f": "x"})
	if err := os.Chmod(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	unflagAll(t, target)
	d := filepath.Join(target, "d")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 123, 456); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "other"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	chattr(t, d, fsAppend)
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("warning: %+v", w)
	}
	var st unix.Stat_t
	if err := unix.Stat(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o755 || st.Uid != uint32(os.Geteuid()) || flagsAt(t, d) != 0 {
		t.Errorf("d: mode %o, owner %d:%d, flags %#x; want the point's 755, %d, no flags", st.Mode&0o7777, st.Uid, st.Gid, flagsAt(t, d), os.Geteuid())
	}
	if b, err := os.ReadFile(filepath.Join(d, "f")); err != nil || string(b) != "x" {
		t.Errorf("d/f: %q, %v", b, err)
	}
}
