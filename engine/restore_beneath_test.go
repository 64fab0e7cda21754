package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// srcTree writes files (path: content) into a new directory, and
// returns it (writeTree).
func srcTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	b := map[string][]byte{}
	for rel, content := range files {
		b[rel] = []byte(content)
	}
	writeTree(t, dir, b)
	return dir
}

// swapForSymlink moves the directory path aside (to aside) and puts a
// symlink to to in its place, as a user who can write where the restore
// writes can while it runs.
func swapForSymlink(t *testing.T, path, aside, to string) {
	if err := os.Rename(path, aside); err != nil {
		t.Errorf("move %s aside: %v", path, err)
	}
	if err := os.Symlink(to, path); err != nil {
		t.Errorf("symlink %s: %v", path, err)
	}
}

// eachResolution runs f with openat2 and with the element-by-element walk
// used where the kernel has no openat2.
func eachResolution(t *testing.T, f func(t *testing.T)) {
	for _, walk := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "walk"}[walk], func(t *testing.T) {
			walkOnly = walk
			t.Cleanup(func() { walkOnly = false })
			f(t)
		})
	}
}

func warned(res *RestoreResult, path, what string) bool {
	return slices.ContainsFunc(res.Warnings, func(w PathError) bool {
		return w.Path == path && strings.Contains(w.Error, what)
	})
}

// A directory the restore made and replaced by a symlink before its
// metadata is applied, at the end, is not followed: the file or
// directory outside the target that the symlink names keeps its mode and
// owner, whether the directory itself or one above it was replaced, and
// the restore warns about the symlink's path.
func TestRestoreDirMetaNeverFollowsSymlink(t *testing.T) {
	const uid = 4321 // the restored directories' owner, when root
	root := os.Geteuid() == 0
	for _, tt := range []struct {
		name    string
		dir     string // the directory whose metadata is applied
		swapped string // what is replaced by a symlink
		victim  string // where the symlink leads, relative to outside
		isDir   bool
	}{
		{name: "the directory", dir: "a_shared", swapped: "a_shared", victim: "root-only"},
		{name: "the directory above", dir: "p/c", swapped: "p", victim: ".", isDir: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachResolution(t, func(t *testing.T) {
				ts := newTestStore(t)
				src := srcTree(t, map[string]string{"z/f": "restored after the directories"})
				if err := os.MkdirAll(filepath.Join(src, tt.dir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(src, tt.dir), 0o1777); err != nil {
					t.Fatal(err)
				}
				if root {
					if err := os.Chown(filepath.Join(src, tt.dir), uid, uid); err != nil {
						t.Fatal(err)
					}
				}
				p, err := ts.backup(BackupOptions{Path: src})
				if err != nil {
					t.Fatal(err)
				}
				outside := t.TempDir()
				victim := filepath.Join(outside, tt.victim)
				if tt.isDir {
					// What the symlink leads to holds a directory named as
					// the restored one.
					victim = filepath.Join(outside, filepath.Base(tt.dir))
					if err := os.Mkdir(victim, 0o700); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(victim, []byte("root only"), 0o600); err != nil {
					t.Fatal(err)
				}
				var before unix.Stat_t
				if err := unix.Stat(victim, &before); err != nil {
					t.Fatal(err)
				}

				target := filepath.Join(t.TempDir(), "t")
				var once sync.Once
				beforeCreate = func(path string) {
					if path == filepath.Join(target, "z/f") {
						once.Do(func() {
							swapped := filepath.Join(target, tt.swapped)
							swapForSymlink(t, swapped, swapped+".moved", filepath.Join(outside, tt.victim))
						})
					}
				}
				t.Cleanup(func() { beforeCreate = nil })
				res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
				if err != nil {
					t.Fatalf("restore: %v", err)
				}

				var after unix.Stat_t
				if err := unix.Stat(victim, &after); err != nil {
					t.Fatal(err)
				}
				if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
					t.Errorf("%s outside the target was changed through the symlink: mode %o owner %d:%d, was %o %d:%d",
						victim, after.Mode, after.Uid, after.Gid, before.Mode, before.Uid, before.Gid)
				}
				if w := filepath.Join(target, tt.swapped); !warned(res, w, "replaced by a symlink") {
					t.Errorf("no warning names %s: %+v", w, res.Warnings)
				}
				if b, err := os.ReadFile(filepath.Join(target, "z/f")); err != nil || string(b) != "restored after the directories" {
					t.Errorf("z/f: %q, %v", b, err)
				}
			})
		})
	}
}

// A directory replaced by a symlink to a directory outside the target
// before its files are created gets none of them outside: the files go
// into the directory the restore made, wherever it was moved, or, when
// its descriptor was no longer kept and it had to be found again, they
// are listed as not restored. The rest of the point is restored, and
// the restore does not stop.
func TestRestoreCreatesNothingThroughReplacedDir(t *testing.T) {
	files := map[string]string{"e/g": "elsewhere"}
	var inD []string
	for _, name := range []string{"f1", "f2", "f3", "f4"} {
		files["d/"+name] = "in d: " + name
		inD = append(inD, "d/"+name)
	}
	for _, cache := range []int{dirCacheSize, 1} {
		t.Run(map[bool]string{true: "kept", false: "found again"}[cache > 1], func(t *testing.T) {
			eachResolution(t, func(t *testing.T) {
				old := dirCacheSize
				dirCacheSize = cache
				t.Cleanup(func() { dirCacheSize = old })
				ts := newTestStore(t)
				src := srcTree(t, files)
				p, err := ts.backup(BackupOptions{Path: src})
				if err != nil {
					t.Fatal(err)
				}
				outside := t.TempDir()
				target := filepath.Join(t.TempDir(), "t")
				moved := filepath.Join(target, "moved")
				var once sync.Once
				beforeCreate = func(path string) {
					if filepath.Dir(path) == filepath.Join(target, "d") {
						once.Do(func() { swapForSymlink(t, filepath.Join(target, "d"), moved, outside) })
					}
				}
				t.Cleanup(func() { beforeCreate = nil })
				res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
				if err != nil {
					t.Fatalf("restore: %v", err)
				}
				if ents, _ := os.ReadDir(outside); len(ents) > 0 {
					t.Errorf("the restore created %d entries outside the target, through the symlink", len(ents))
				}
				if b, err := os.ReadFile(filepath.Join(target, "e/g")); err != nil || string(b) != "elsewhere" {
					t.Errorf("e/g: %q, %v", b, err)
				}
				skipped := 0
				for _, rel := range inD {
					if slices.ContainsFunc(res.Skipped, func(s PathError) bool {
						return s.Path == rel && strings.Contains(s.Error, filepath.Join(target, "d")+": replaced by a symlink")
					}) {
						skipped++
						continue
					}
					b, err := os.ReadFile(filepath.Join(moved, filepath.Base(rel)))
					if err != nil || string(b) != files[rel] {
						t.Errorf("%s neither restored in the directory made for it (%q, %v) nor listed as not restored: %+v", rel, b, err, res.Skipped)
					}
				}
				if cache == 1 && skipped != len(inD) {
					t.Errorf("%d of %d files of d, found again through the symlink, listed as not restored", skipped, len(inD))
				}
				if !warned(res, filepath.Join(target, "d"), "replaced by a symlink") {
					t.Errorf("no warning names d: %+v", res.Warnings)
				}
			})
		})
	}
}

// fsFlags are the inode flags of chattr(1).
const (
	fsImmutable = 0x10 // FS_IMMUTABLE_FL, chattr +i
	fsAppend    = 0x20 // FS_APPEND_FL, chattr +a
)

// chattr sets flags on path, and takes them off again when the test
// ends, so that its directory can be removed. A file system without them
// skips the test.
func chattr(t *testing.T, path string, flags int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		testskip.Skip(t, "the file system of %s has no chattr flags: %v", path, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(old)|flags)
	switch {
	case errors.Is(err, unix.EPERM):
		testskip.Skip(t, "chattr needs CAP_LINUX_IMMUTABLE (root): %v", err)
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL):
		testskip.Skip(t, "the file system of %s has no chattr flags: %v", path, err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(old)); err != nil {
			t.Errorf("chattr back %s: %v", path, err)
		}
	})
}

// With --overwrite, an immutable or append-only file in the way is not
// restored over and says why, and everything else is restored, as for a
// non-empty directory in the way; restoring that one entry fails.
func TestRestoreOverwriteSkipsImmutable(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"a": "new a", "b": "new b", "c/x": "new x"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		flags int
	}{{"immutable", fsImmutable}, {"append-only", fsAppend}} {
		t.Run(tt.name, func(t *testing.T) {
			target := srcTree(t, map[string]string{"a": "old a", "b": "old b"})
			chattr(t, filepath.Join(target, "a"), tt.flags)

			res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if len(res.Skipped) != 1 || res.Skipped[0].Path != "a" || !strings.Contains(res.Skipped[0].Error, "'chattr -i -a' it (and its directory), or restore elsewhere") ||
				!strings.Contains(res.Skipped[0].Error, filepath.Join(target, "a")) {
				t.Errorf("skipped %+v, want a, with the hint", res.Skipped)
			}
			for rel, want := range map[string]string{"a": "old a", "b": "new b", "c/x": "new x"} {
				if b, err := os.ReadFile(filepath.Join(target, rel)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
				}
			}

			_, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Path: "a", Overwrite: true})
			if !errors.Is(err, errStuck) || !strings.Contains(err.Error(), filepath.Join(target, "a")) {
				t.Errorf("restore of the one entry a: %v, want it refused naming a and the hint", err)
			}
		})
	}
}

// With --overwrite, a directory of the target that cannot be written in
// (immutable here; a non-root restore's directory without write
// permission alike) is left as it is, with its flags and mode, and named
// as not restored; the entries after it are restored. (Fix: its first
// entry stopped the whole restore, and the stopped restore still applied
// the point's mode and flags to it: +i was cleared.)
func TestRestoreOverwriteSkipsUnwritableDir(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"a": "new a", "d/x": "new x", "d/y/z": "new z", "e/f": "new f"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := srcTree(t, map[string]string{"d/x": "old x"})
	if err := os.Chmod(filepath.Join(target, "d"), 0o750); err != nil {
		t.Fatal(err)
	}
	chattr(t, filepath.Join(target, "d"), fsImmutable)

	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Path != "d/" || !strings.Contains(res.Skipped[0].Error, "cannot be written in") ||
		!strings.Contains(res.Skipped[0].Error, filepath.Join(target, "d")) {
		t.Errorf("skipped %+v, want d/ named with why", res.Skipped)
	}
	for rel, want := range map[string]string{"a": "new a", "d/x": "old x", "e/f": "new f"} {
		if b, err := os.ReadFile(filepath.Join(target, rel)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(target, "d/y")); !os.IsNotExist(err) {
		t.Errorf("d/y made in the immutable d: %v", err)
	}
	fi, err := os.Stat(filepath.Join(target, "d"))
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("d's mode %v, %v; want 0750 kept", fi.Mode(), err)
	}
	f, err := os.Open(filepath.Join(target, "d"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fl, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS); err != nil || fl&fsImmutable == 0 {
		t.Errorf("d's flags %#x, %v: +i was cleared", fl, err)
	}
}

// A restore over a tree that holds the store it reads (a rollback of / in
// place, from a point that holds a recall home at the same path) leaves
// the store as it is; a target inside the store or a protected home is
// refused. (Fix: restore --overwrite into the home wrote the point's
// store/config over the live one: the store could no longer be opened.)
func TestRestoreNeverWritesInItsOwnStore(t *testing.T) {
	ts := newTestStore(t)
	home := filepath.Dir(ts.st.Dir())
	src := srcTree(t, map[string]string{filepath.Base(ts.st.Dir()) + "/config": "garbage", "other": "x"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(ts.st.Dir(), "config")
	before, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: home, Overwrite: true})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Path != filepath.Base(ts.st.Dir())+"/" || !strings.Contains(res.Skipped[0].Error, "recall's own home or store") {
		t.Errorf("skipped %+v, want the store named", res.Skipped)
	}
	if after, err := os.ReadFile(config); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the store's config was written over: %q, %v", after, err)
	}
	if b, err := os.ReadFile(filepath.Join(home, "other")); err != nil || string(b) != "x" {
		t.Errorf("other: %q, %v", b, err)
	}
	for _, tt := range []struct {
		target  string
		protect []string
	}{
		{filepath.Join(ts.st.Dir(), "restored"), nil},
		{ts.st.Dir(), nil},
		{home, []string{home}},
		// Nor is a directory in the home, new or recall's own.
		{filepath.Join(home, "out"), []string{home}},
		{filepath.Join(home, "logs"), []string{home}},
	} {
		_, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: tt.target, Protect: tt.protect})
		if err == nil || !strings.Contains(err.Error(), "is inside recall's own home or store") {
			t.Errorf("restore into %s (protecting %v): %v, want it refused", tt.target, tt.protect, err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused restore made its target in the home (%v)", err)
	}
}

// The directories of the target are found without following a symlink,
// with openat2 or element by element: a symlink is named, a file in the
// way is not a directory.
func TestTargetDirsResolveBeneath(t *testing.T) {
	eachResolution(t, func(t *testing.T) {
		target := t.TempDir()
		outside := t.TempDir()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.MkdirAll(filepath.Join(target, "a/b/c"), 0o755))
		must(os.MkdirAll(filepath.Join(outside, "b/c"), 0o755))
		must(os.Symlink(outside, filepath.Join(target, "link")))
		must(os.Symlink("a", filepath.Join(target, "rel")))
		must(os.WriteFile(filepath.Join(target, "a/file"), nil, 0o644))

		tgt, err := openTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		defer tgt.close()
		d, name, err := tgt.parentOf(filepath.Join(target, "a/b/c/new"))
		if err != nil || name != "new" {
			t.Fatalf("parentOf a/b/c/new: %q, %v", name, err)
		}
		var st, want unix.Stat_t
		must(unix.Fstat(d.fd, &st))
		must(unix.Stat(filepath.Join(target, "a/b/c"), &want))
		if st.Ino != want.Ino {
			t.Errorf("parentOf a/b/c/new is not a/b/c")
		}
		tgt.put(d)

		for _, tt := range []struct{ path, replaced string }{
			{"link/b/c/new", "link"},
			{"link/new", "link"},
			{"rel/b/new", "rel"},
			{"a/b/c/../../../link/new", ""}, // not one of the restore's paths: Join cleans them
		} {
			d, _, err := tgt.parentOf(filepath.Join(target, tt.path))
			var re *replacedError
			switch {
			case err == nil:
				tgt.put(d)
				if tt.replaced != "" {
					t.Errorf("%s: resolved through the symlink %s", tt.path, tt.replaced)
				}
			case tt.replaced != "" && (!errors.As(err, &re) || re.Path != filepath.Join(target, tt.replaced)):
				t.Errorf("%s: %v, want %s named as replaced by a symlink", tt.path, err, tt.replaced)
			}
		}
		if _, _, err := tgt.parentOf(filepath.Join(target, "a/file/new")); !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("a/file/new: %v, want not a directory", err)
		}
	})
}

// Cached descriptors are closed only once no one uses them: a directory
// pushed out of the cache while in use stays open until put back.
func TestTargetDirsCache(t *testing.T) {
	old := dirCacheSize
	dirCacheSize = 2
	t.Cleanup(func() { dirCacheSize = old })
	target := t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		if err := os.Mkdir(filepath.Join(target, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tgt, err := openTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.close()
	a, err := tgt.dir("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"b", "c", "b", "c"} {
		d, err := tgt.dir(rel)
		if err != nil {
			t.Fatal(err)
		}
		tgt.put(d)
	}
	if tgt.byRel["a"] != nil || a.elem != nil {
		t.Fatalf("a is still cached with a cache of 2 after b and c")
	}
	var st unix.Stat_t
	if err := unix.Fstat(a.fd, &st); err != nil {
		t.Fatalf("a, pushed out of the cache while in use, was closed: %v", err)
	}
	tgt.put(a)
	if err := unix.Fstat(a.fd, &st); err == nil {
		// The number may have been reused meanwhile, but not here: no
		// descriptor was opened since.
		t.Errorf("a, out of the cache and put back, is still open")
	}
	if b, err := tgt.dir("b"); err != nil || tgt.lru.Len() != 2 {
		t.Errorf("b: %v, %d cached", err, tgt.lru.Len())
	} else {
		tgt.put(b)
	}
}

// A relative target ("." from inside it) restores as an absolute one.
func TestRestoreRelativeTarget(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d", "e"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "e", "f"), []byte("content"), 0o644)
	os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o600)
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	t.Chdir(dst)
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: "."}); err != nil {
		t.Fatalf("restore into .: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "d", "e", "f")); err != nil || string(b) != "content" {
		t.Errorf("d/e/f: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "top")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("top: %v, %v", fi, err)
	}
}

// A directory the restore made, moved away and replaced by another real
// directory before its files are created, gets none of them when it has
// to be found again: they are listed as not restored, never put in the
// other directory (whose owner could read them).
func TestRestoreCreatesNothingInMovedDir(t *testing.T) {
	files := map[string]string{"e/g": "elsewhere"}
	var inD []string
	for _, name := range []string{"f1", "f2", "f3"} {
		files["d/"+name] = "in d: " + name
		inD = append(inD, "d/"+name)
	}
	eachResolution(t, func(t *testing.T) {
		old := dirCacheSize
		dirCacheSize = 1
		t.Cleanup(func() { dirCacheSize = old })
		ts := newTestStore(t)
		src := srcTree(t, files)
		p, err := ts.backup(BackupOptions{Path: src})
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "t")
		d := filepath.Join(target, "d")
		var once sync.Once
		beforeCreate = func(path string) {
			if filepath.Dir(path) == d {
				once.Do(func() {
					if err := os.Rename(d, filepath.Join(target, "moved")); err != nil {
						t.Error(err)
					}
					if err := os.Mkdir(d, 0o777); err != nil {
						t.Error(err)
					}
				})
			}
		}
		t.Cleanup(func() { beforeCreate = nil })
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if ents, _ := os.ReadDir(d); len(ents) > 0 {
			t.Errorf("the restore created %d entries in the directory put in the place of its own", len(ents))
		}
		for _, rel := range inD {
			if !slices.ContainsFunc(res.Skipped, func(s PathError) bool { return s.Path == rel && strings.Contains(s.Error, "moved during the restore") }) {
				if _, err := os.Stat(filepath.Join(target, "moved", filepath.Base(rel))); err != nil {
					t.Errorf("%s neither restored in its own directory nor listed as not restored: %+v", rel, res.Skipped)
				}
			}
		}
	})
}

// Without /proc, a symlink still gets its times (by name in its
// directory, not followed); only what needs /proc is warned about.
func TestRestoreSymlinkTimesWithoutProc(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	link := filepath.Join(src, "sl")
	if err := os.Symlink("nowhere", link); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	tsOld := unix.NsecToTimespec(old.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, link, []unix.Timespec{tsOld, tsOld}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	defer func(f func() bool) { procFDs = f }(procFDs)
	procFDs = func() bool { return false }
	dst := t.TempDir()
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: dst})
	if err != nil && !errors.Is(err, ErrWarnings) {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		if strings.Contains(w.Error, "times") {
			t.Errorf("warning about the symlink's times: %+v", w)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "sl"), &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(old) {
		t.Errorf("symlink mtime %v, want %v", got, old)
	}
}

// A target that held entries keeps its own owner, mode and times: restoring
// a point of a 0750 directory into /tmp with --overwrite must not make /tmp
// 0750. A new or empty target takes the point root's, and directories
// merged into below the target take theirs.
func TestRestoreOverwriteKeepsTargetsOwnMetadata(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"a": "new a", "d/x": "new x"})
	if err := os.Chmod(src, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "d"), 0o705); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(src, old, old); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	mode := func(path string) os.FileMode {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode() & (os.ModePerm | os.ModeSticky)
	}

	held := srcTree(t, map[string]string{"mine": "keep", "d/y": "keep"})
	if err := os.Chmod(held, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(held)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: held, Overwrite: true})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !res.TargetKept {
		t.Error("TargetKept not set for a target that held entries")
	}
	if m := mode(held); m != os.ModeSticky|0o777 {
		t.Errorf("target that held entries: mode %v, want its own %v", m, os.ModeSticky|0o777)
	}
	if after, _ := os.Stat(held); after.ModTime().Equal(old) || !after.ModTime().After(before.ModTime().Add(-time.Second)) {
		t.Errorf("target that held entries: mtime %v, want its own (not the point's %v)", after.ModTime(), old)
	}
	if m := mode(filepath.Join(held, "d")); m != 0o705 {
		t.Errorf("directory merged into below the target: mode %v, want the point's 0705", m)
	}
	if b, err := os.ReadFile(filepath.Join(held, "mine")); err != nil || string(b) != "keep" {
		t.Errorf("mine: %q, %v", b, err)
	}

	// Restored over in place (a rollback of the directory the point was
	// made of), the directory takes the point's metadata back.
	if err := os.Chmod(src, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "new since"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: src + "/", Overwrite: true}); err != nil || res.TargetKept {
		t.Fatalf("restore in place: %v, %+v", err, res)
	}
	if m := mode(src); m != 0o750 {
		t.Errorf("directory restored over in place: mode %v, want the point's 0750", m)
	}

	for _, tt := range []struct {
		name   string
		target string
	}{{"new", filepath.Join(t.TempDir(), "new")}, {"empty", t.TempDir()}} {
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: tt.target, Overwrite: true})
		if err != nil {
			t.Fatalf("%s: restore: %v", tt.name, err)
		}
		if res.TargetKept {
			t.Errorf("%s target: TargetKept set", tt.name)
		}
		if m := mode(tt.target); m != 0o750 {
			t.Errorf("%s target: mode %v, want the point's 0750", tt.name, m)
		}
		if st, _ := os.Stat(tt.target); !st.ModTime().Equal(old) {
			t.Errorf("%s target: mtime %v, want the point's %v", tt.name, st.ModTime(), old)
		}
	}
}

// A file whose access ACL the target cannot hold (ramfs has no ACLs)
// keeps the owning group's permissions of the ACL, not the mask that its
// mode's group bits showed, and the warning says so. (Fix: a file of
// group::r-- with a named user's rwx came back group-writable, 0674.)
func TestRestoreACLRefusedNarrowsGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "mounting ramfs needs root")
	}
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"acl": "x"})
	le := binary.LittleEndian
	acl := le.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, ^uint32(0)}, {0x02, 7, 1234}, {0x04, 4, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 4, ^uint32(0)}} {
		acl = le.AppendUint32(le.AppendUint16(le.AppendUint16(acl, e.tag), e.perm), e.id)
	}
	if err := unix.Setxattr(filepath.Join(src, "acl"), "system.posix_acl_access", acl, 0); err != nil {
		testskip.Skip(t, "no ACLs here: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(src, "acl")); fi.Mode().Perm() != 0o674 {
		t.Fatalf("source mode %v, want 0674 (the mask in the group bits)", fi.Mode())
	}
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if err := unix.Mount("ramfs", mnt, "ramfs", 0, ""); err != nil {
		testskip.Skip(t, "mount ramfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: filepath.Join(mnt, "r")})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(mnt, "r", "acl"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("restored mode %v, %v; want 0644 (group r-- as its ACL gave it)", fi.Mode(), err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0].Error, "set to the ACL's group entry instead (mode 0644, not 0674)") {
		t.Errorf("warnings %+v", res.Warnings)
	}
}

// With --overwrite, a mount point in the way (a bind-mounted file, as a
// container's /etc/hosts; a file system mounted on a directory where the
// point has a file) is not restored over and says why, and everything
// else is restored; restoring that one entry fails. (Fix: the first one
// stopped the whole restore, exit 1, with the entries after it not
// restored.)
func TestRestoreOverwriteSkipsMountPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root (mount)")
	}
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"a": "new a", "b": "new b", "hosts": "new hosts", "z/x": "new x"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := srcTree(t, map[string]string{"a": "old a", "hosts": "old hosts", "b/inside": "mounted"})
	other := srcTree(t, map[string]string{"hosts": "the host's hosts"})
	mount := func(src, dst, fstype string, flags uintptr) {
		if err := unix.Mount(src, dst, fstype, flags, ""); err != nil {
			testskip.Skip(t, "cannot mount here: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	}
	mount(filepath.Join(other, "hosts"), filepath.Join(target, "hosts"), "", unix.MS_BIND)
	mount("tmpfs", filepath.Join(target, "b"), "tmpfs", 0)

	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	var skipped []string
	for _, s := range res.Skipped {
		skipped = append(skipped, s.Path)
		if !strings.Contains(s.Error, "a mount point: unmount it, or restore elsewhere") || !strings.Contains(s.Error, target) {
			t.Errorf("skipped %s: %q, want it named with the hint", s.Path, s.Error)
		}
	}
	if !slices.Equal(skipped, []string{"b", "hosts"}) {
		t.Errorf("skipped %q, want b and hosts", skipped)
	}
	for rel, want := range map[string]string{"a": "new a", "hosts": "the host's hosts", "z/x": "new x"} {
		if b, err := os.ReadFile(filepath.Join(target, rel)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
		}
	}
	_, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Path: "hosts", Overwrite: true})
	if !errors.Is(err, errBusy) || !strings.Contains(err.Error(), filepath.Join(target, "hosts")) {
		t.Errorf("restore of the one entry hosts: %v, want it refused naming it and the hint", err)
	}
}

// A restore --overwrite that stops (here on a full target) has unlinked
// only what was in the way of the files it was writing: every other file
// of the target is as it was. (Fix: the walk, far ahead of the creates,
// had unlinked every file it had passed, restored or not, and a stopped
// restore lost them.)
func TestRestoreOverwriteStoppedKeepsWhatItDidNotReach(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root (mount)")
	}
	ts := newTestStore(t)
	files, old := map[string]string{}, map[string]string{}
	rng := rand.New(rand.NewSource(5))
	for i := range 300 {
		name := fmt.Sprintf("d%d/f%03d", i%3, i)
		b := make([]byte, 16<<10)
		rng.Read(b)
		files[name] = string(b)
		old[name] = fmt.Sprintf("old %d", i)
	}
	p, err := ts.backup(BackupOptions{Path: srcTree(t, files)})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=2m"); err != nil {
		testskip.Skip(t, "cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	for name, c := range old {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(target, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true})
	var full *TargetFullError
	if !errors.As(err, &full) {
		t.Fatalf("restore of 4.8 MB into 2 MB: %v, want the target full", err)
	}
	var gone, kept, restored []string
	for name := range files {
		b, err := os.ReadFile(filepath.Join(target, name))
		switch {
		case err != nil:
			gone = append(gone, name)
		case string(b) == old[name]:
			kept = append(kept, name)
		case string(b) == files[name]:
			restored = append(restored, name)
		default:
			t.Errorf("%s: %d bytes, want the old file or the new one", name, len(b))
		}
	}
	// What was in the way of the files being written when the target
	// filled is back in place, and nothing is left under a hidden name.
	if len(gone) > 0 || len(kept) == 0 {
		t.Errorf("stopped on a full target with %d files restored: %d gone (%q...), %d kept as they were; want none gone", len(restored), len(gone), gone[:min(len(gone), 3)], len(kept))
	}
	asides := func() []string {
		var names []string
		filepath.WalkDir(target, func(p string, e os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(e.Name(), asidePrefix) {
				names = append(names, p)
			}
			return nil
		})
		return names
	}
	if a := asides(); len(a) > 0 {
		t.Errorf("left behind: %q", a)
	}
	// Room made: the restore again replaces every file, and leaves none.
	if err := unix.Unmount(target, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	for name, c := range old {
		os.MkdirAll(filepath.Dir(filepath.Join(target, name)), 0o755)
		os.WriteFile(filepath.Join(target, name), []byte(c), 0o644)
	}
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	for name, c := range files {
		if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != c {
			t.Fatalf("%s not restored: %v", name, err)
		}
	}
	if a := asides(); len(a) > 0 {
		t.Errorf("left behind by a restore that ended well: %q", a)
	}
}

// A resume keeps a file with inode flags that has them already: a
// restore sets them last, so it is whole. (Fix: it was written again,
// which an immutable file refuses: a resume after a kill while flags
// were set reported whole files as not restored, exit 3.)
func TestResumeKeepsFileWithItsFlags(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"imm": "immutable", "app": "append-only", "plain": "plain"})
	chattr(t, filepath.Join(src, "imm"), fsImmutable)
	chattr(t, filepath.Join(src, "app"), fsAppend)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	t.Cleanup(func() {
		for _, name := range []string{"imm", "app"} {
			if f, err := os.Open(filepath.Join(target, name)); err == nil {
				unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0)
				f.Close()
			}
		}
	})
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true})
	if err != nil {
		t.Fatalf("resume over a whole restore: %v", err)
	}
	if len(res.Skipped) != 0 || res.Kept != 3 {
		t.Errorf("resume over a whole restore: kept %d, skipped %+v; want all 3 kept", res.Kept, res.Skipped)
	}
}
