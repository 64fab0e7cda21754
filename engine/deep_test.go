package engine

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// deepTree makes under dir a chain of depth directories with names of
// 200 bytes, each holding a file and a symlink, through descriptors: its
// paths pass PATH_MAX (4,096 bytes) a third of the way down.
func deepTree(t *testing.T, dir string, depth int) {
	t.Helper()
	name := strings.Repeat("d", 200)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range depth {
		f, err := unix.Openat(fd, fmt.Sprintf("file%d", i), unix.O_WRONLY|unix.O_CREAT, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		unix.Write(f, []byte(strings.Repeat("x", i)))
		unix.Close(f)
		if err := unix.Symlinkat(fmt.Sprintf("../file%d", i), fd, fmt.Sprintf("link%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkdirat(fd, name, 0o750); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// listDeep lists the chain under dir as deepTree made it: for each
// level, each entry's type, mode, size, mtime and content or target.
func listDeep(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for level := 0; ; level++ {
		f := os.NewFile(uintptr(fd), "level")
		names, err := f.Readdirnames(-1)
		if err != nil {
			t.Fatal(err)
		}
		next := -1
		for _, n := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Fatal(err)
			}
			what := ""
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				g, err := unix.Openat(fd, n, unix.O_RDONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 1000)
				k, _ := unix.Read(g, b)
				unix.Close(g)
				what = string(b[:k])
			case unix.S_IFLNK:
				b := make([]byte, 100)
				k, _ := unix.Readlinkat(fd, n, b)
				what = string(b[:k])
			case unix.S_IFDIR:
				if next, err = unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, fmt.Sprintf("%d %s %o %d %d %q", level, n, st.Mode, st.Size, st.Mtim.Nano(), what))
		}
		f.Close()
		if next < 0 {
			return out
		}
		fd = next
	}
}

// A tree deeper than PATH_MAX is backed up whole, without a warning, and
// restored whole: its deep directories are reached through descriptors.
func TestBackupDeepTree(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	const depth = 40 // 8,000 bytes of path and more
	deepTree(t, src, depth)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatalf("backup: %v (%+v)", err, p)
	}
	if p.Stats.Files != depth || p.Stats.Dirs != depth || p.Stats.Others != depth {
		t.Errorf("stats %+v, want %d files, dirs and others", p.Stats, depth)
	}
	// Once more, against the first as parent: every file unchanged.
	p2, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Stats.Unchanged != depth {
		t.Errorf("unchanged %d, want %d", p2.Stats.Unchanged, depth)
	}
	// With one directory descriptor kept, the deep directories' metadata
	// is applied through descriptors opened again by their path, past
	// PATH_MAX: before, each failed with "file name too long" and kept
	// the restore's mode and time.
	old := dirCacheSize
	defer func() { dirCacheSize = old }()
	for _, cache := range []int{old, 1} {
		dirCacheSize = cache
		target := t.TempDir()
		res, err := Restore(context.Background(), ts.r, p2, RestoreOptions{Target: target})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if len(res.Warnings)+len(res.Skipped) > 0 {
			t.Errorf("cache %d: warnings %+v, skipped %+v", cache, res.Warnings, res.Skipped)
		}
		want, got := listDeep(t, src), listDeep(t, target)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("cache %d: restored tree differs:\n got %q\nwant %q", cache, got, want)
		}
	}
}
