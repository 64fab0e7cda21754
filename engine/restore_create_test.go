package engine

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// createSource writes small files of one chunk and larger ones of several
// chunks under dir, each with its own mode, and returns them by path.
func createSource(t *testing.T, dir string, small, large int) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewSource(11))
	files := map[string][]byte{}
	for i := range small {
		files[fmt.Sprintf("s%d/f%03d", i%3, i)] = []byte(fmt.Sprintf("small file %d, %x", i, rng.Int63()))
	}
	for i := range large {
		b := make([]byte, 3<<20+rng.Intn(1<<20))
		rng.Read(b)
		files[fmt.Sprintf("large%d", i)] = b
	}
	// Modes the umask keeps or not, read-only, set-id.
	modes := []uint32{0o644, 0o600, 0o664, 0o755, 0o444, 0o640, 0o4755, 0o2750, 0o606}
	i := 0
	for rel, b := range files {
		path := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(path, modes[i%len(modes)]); err != nil {
			t.Fatal(err)
		}
		i++
	}
	return files
}

// checkRestored compares the files restored under target with src's.
func checkRestored(t *testing.T, src, target string, files map[string][]byte) {
	t.Helper()
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(target, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not restored exactly (%v)", rel, err)
			continue
		}
		a, _ := os.Stat(filepath.Join(src, rel))
		b, _ := os.Stat(filepath.Join(target, rel))
		if a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("%s: mode %v time %v, want %v %v", rel, b.Mode(), b.ModTime(), a.Mode(), a.ModTime())
		}
	}
}

// The creators create the files of the packs queued for the readers
// before the readers get to them: with every read held back, each file
// is created by a creator, once, and the readers then write them through
// the descriptors the creators hold open.
func TestRestoreCreatesFilesAheadOfReaders(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	files := createSource(t, src, 40, 2)
	p, err := ts.backup(BackupOptions{Path: src, Source: "ahead"})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "t")
	var mu sync.Mutex
	ahead := map[string]int{}
	all := make(chan struct{})
	createdAhead = func(path string) {
		mu.Lock()
		defer mu.Unlock()
		rel, _ := filepath.Rel(target, path)
		if ahead[rel]++; len(ahead) == len(files) {
			close(all)
		}
	}
	t.Cleanup(func() { createdAhead = nil })
	old := packReader
	packReader = func(ctx context.Context, r *Reader, pack chunkstore.ID, ids []chunkstore.ID, fn func(chunkstore.ID, []byte, error)) error {
		select {
		case <-all:
		case <-time.After(30 * time.Second):
			mu.Lock()
			t.Errorf("readers held for 30 s, and the creators created only %d of %d files", len(ahead), len(files))
			mu.Unlock()
		}
		return old(ctx, r, pack, ids, fn)
	}
	t.Cleanup(func() { packReader = old })

	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Files != int64(len(files)) {
		t.Errorf("restored %d files, want %d", res.Files, len(files))
	}
	for rel, n := range ahead {
		if n != 1 {
			t.Errorf("%s created %d times", rel, n)
		}
	}
	checkRestored(t, src, target, files)
}

// Files are restored exactly however many of them can be held open: with
// none (no creators; every reader that writes to a file of several chunks
// opens it again, and checks it is the file created), with a few, and
// with the default. Packs of about one chunk spread a file's chunks over
// several readers.
func TestRestoreHoldingFewFiles(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 600 << 10
	t.Cleanup(func() { chunkstore.PackTargetSize = old })
	ts := newTestStore(t)
	src := t.TempDir()
	files := createSource(t, src, 30, 4)
	p, err := ts.backup(BackupOptions{Path: src, Source: "few"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { beforeCreate = nil })
	defaultLimit := holdLimit
	t.Cleanup(func() { holdLimit = defaultLimit })
	for _, limit := range []int64{0, 1, 4, defaultLimit()} {
		t.Run(fmt.Sprintf("hold=%d", limit), func(t *testing.T) {
			holdLimit = func() int64 { return limit }
			var mu sync.Mutex
			var created []string
			beforeCreate = func(path string) { mu.Lock(); created = append(created, path); mu.Unlock() }
			target := filepath.Join(t.TempDir(), "t")
			res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if res.Files != int64(len(files)) {
				t.Errorf("restored %d files, want %d", res.Files, len(files))
			}
			slices.Sort(created)
			if n := len(slices.Compact(created)); n != len(created) || n != len(files) {
				t.Errorf("%d creates of %d distinct paths for %d files", len(created), n, len(files))
			}
			checkRestored(t, src, target, files)
		})
	}
}

// A file is created with its final mode only when nothing that follows
// would have to come before the mode: a chown (another owner, as root),
// the umask, a default ACL (cleanXattrs), set-id bits (a chown clears
// them); and only if its owner can write it, since a file of several
// chunks may be opened again to be written.
func TestCreateMode(t *testing.T) {
	mine, other := &Node{Mode: 0o644, UID: 0, GID: 0}, &Node{Mode: 0o644, UID: 1000, GID: 1000}
	for _, c := range []struct {
		name  string
		rs    *restorer
		n     *Node
		perm  uint32
		final bool
	}{
		{"root, own file", &restorer{isRoot: true, umask: 0o022, umaskOK: true}, mine, 0o644, true},
		{"root, another's file", &restorer{isRoot: true, umask: 0o022, umaskOK: true}, other, 0o600, false},
		{"user, another's file", &restorer{euid: 1000, egid: 1000, umask: 0o022, umaskOK: true}, &Node{Mode: 0o640, UID: 7, GID: 7}, 0o640, true},
		{"umask strips a bit", &restorer{isRoot: true, umask: 0o022, umaskOK: true}, &Node{Mode: 0o664}, 0o600, false},
		{"umask unknown", &restorer{isRoot: true}, mine, 0o600, false},
		{"default ACL", &restorer{isRoot: true, umaskOK: true, cleanXattrs: true}, mine, 0o600, false},
		{"set-uid", &restorer{isRoot: true, umaskOK: true}, &Node{Mode: 0o4755}, 0o600, false},
		{"read-only", &restorer{isRoot: true, umaskOK: true}, &Node{Mode: 0o444}, 0o600, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if perm, final := c.rs.createMode(c.n); perm != c.perm || final != c.final {
				t.Errorf("createMode(%o) = %o, %v; want %o, %v", c.n.Mode, perm, final, c.perm, c.final)
			}
		})
	}
}

func TestProcessUmask(t *testing.T) {
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	if m, ok := processUmask(); !ok || m != 0o027 {
		t.Errorf("processUmask() = %o, %v; want 27, true", m, ok)
	}
}

// checkTarget, which Restore and a tape restore both ask, changes nothing
// and names the path that is not a directory: the target, or the parent
// the restore would create it in. (Fix: prepareTarget read a file target
// as "readdirent: not a directory".)
func TestCheckTargetChangesNothing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		target       string
		overwrite    bool
		exists, held bool
		want         string // in the error; "" for none
	}{
		{"", false, false, false, "no restore target"},
		{dir, false, true, true, "restore target is not empty (2 entries)"},
		{dir, true, true, true, ""},
		{empty, false, true, false, ""},
		{filepath.Join(dir, "new", "deeper"), false, false, false, ""},
		{file, true, false, false, file + " is not a directory"},
		{filepath.Join(file, "below", "it"), false, false, false, file + " is not a directory"},
	} {
		exists, held, err := checkTarget(tt.target, tt.overwrite)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkTarget(%q, %v): %v, want %q", tt.target, tt.overwrite, err, tt.want)
		}
		if exists != tt.exists || held != tt.held {
			t.Errorf("checkTarget(%q, %v) = exists %v held %v, want %v %v", tt.target, tt.overwrite, exists, held, tt.exists, tt.held)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("checkTarget created the target's parent: %v", err)
	}
	if _, _, err := prepareTarget(file, true); err == nil || !strings.Contains(err.Error(), "is not a directory: choose") {
		t.Errorf("prepareTarget(a file): %v", err)
	}
}

// restore --path takes the path inside the point. A path as the files had
// it (restic's habit) gets a hint with the path to give, and '..' is
// refused, not cleaned away into the whole point. (Fix: "/etc/hostname"
// said only "not found", and "a/../.." restored everything.)
func TestRestorePathAbsoluteHintAndDotDot(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"hostname": "h", "a/b": "b"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: t.TempDir() + "/x", Path: filepath.Join(src, "hostname")})
	if err == nil || !strings.Contains(err.Error(), "--path hostname") || !strings.Contains(err.Error(), src) {
		t.Errorf("restore --path %s/hostname: %v, want a hint naming --path hostname", src, err)
	}
	// A trailing slash names a directory, as for a shell.
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: t.TempDir() + "/z", Path: "hostname/"}); err == nil || !strings.Contains(err.Error(), "hostname is not a directory") {
		t.Errorf("restore --path hostname/: %v, want not a directory", err)
	}
	// A dangling symlink as the target is named as such (it said
	// "mkdir: file exists").
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink("/nonexistent/dir", link); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: link}); err == nil || !strings.Contains(err.Error(), "is a symlink to /nonexistent/dir, which does not exist") {
		t.Errorf("restore into a dangling symlink: %v", err)
	}
	for _, path := range []string{"a/../..", "../", ".."} {
		target := t.TempDir() + "/y"
		_, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Path: path})
		if err == nil || !strings.Contains(err.Error(), "'..' is not allowed") {
			t.Errorf("restore --path %s: %v, want it refused", path, err)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("restore --path %s made its target", path)
		}
	}
}

// A point of one file restored into a new directory does not give it the
// mode and owner of the directory the file was in: that is /tmp's 1777
// for a file from /tmp. (Fix: the new target was world-writable.)
func TestRestoreFilePointTargetNotItsDirectorysMode(t *testing.T) {
	ts := newTestStore(t)
	dir := t.TempDir()
	if err := unix.Chmod(dir, 0o1777); err != nil { // os.Chmod takes ModeSticky, not 0o1000
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: filepath.Join(dir, "file")})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "out")
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode()&(os.ModeSticky|0o002) != 0 {
		t.Errorf("target %v, %v: took the file's directory's mode", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "file")); err != nil || string(b) != "x" {
		t.Errorf("file: %q, %v", b, err)
	}
}

// A root restore into a set-group-ID directory gives every file the
// group the point recorded, not the directory's, which the kernel gives
// a file created in it: a root:root 0640 file came back readable by that
// group, exit 0. Files created by the walk (a hard link's first name)
// and by the readers (any other file), small and of several chunks, in
// the target and in a directory the restore made, with and without
// --overwrite over what is there.
func TestRestoreIntoSetgidDirKeepsGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root (chown)")
	}
	ts := newTestStore(t)
	src := t.TempDir()
	mustNoErr(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	mustNoErr(t, os.WriteFile(filepath.Join(src, "sub", "secret"), []byte("secret"), 0o640))
	mustNoErr(t, os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o600))
	big := make([]byte, 6<<20)
	rand.New(rand.NewSource(3)).Read(big)
	mustNoErr(t, os.WriteFile(filepath.Join(src, "sub", "big"), big, 0o640))
	mustNoErr(t, os.WriteFile(filepath.Join(src, "linked"), []byte("linked"), 0o640))
	mustNoErr(t, os.Link(filepath.Join(src, "linked"), filepath.Join(src, "sub", "link")))
	for _, p := range []string{src, filepath.Join(src, "sub")} {
		mustNoErr(t, os.Chown(p, 0, 0))
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	mustNoErr(t, err)
	const group = 4242
	for _, overwrite := range []bool{false, true} {
		target := filepath.Join(t.TempDir(), "t")
		mustNoErr(t, os.Mkdir(target, 0o770))
		mustNoErr(t, os.Chown(target, 0, group))
		mustNoErr(t, unix.Chmod(target, 0o2770)) // os.Chmod takes ModeSetgid, not 0o2000
		if overwrite {
			mustNoErr(t, os.WriteFile(filepath.Join(target, "top"), []byte("old"), 0o644))
		}
		if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: overwrite}); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"top", "linked", "sub", "sub/secret", "sub/big", "sub/link"} {
			var st unix.Stat_t
			mustNoErr(t, unix.Lstat(filepath.Join(target, rel), &st))
			if st.Uid != 0 || st.Gid != 0 {
				t.Errorf("overwrite=%v: %s restored as %d:%d, want 0:0 as backed up", overwrite, rel, st.Uid, st.Gid)
			}
		}
	}
}

// A full target's message suggests --path for a whole point only: a
// restore given --path was told to use it.
func TestTargetFullErrorSuggestsPathForWholePoint(t *testing.T) {
	whole := (&TargetFullError{Target: "/t", Path: "/t/a", Needs: 1 << 30, Err: unix.ENOSPC}).Error()
	part := (&TargetFullError{Target: "/t", Path: "/t/a", Err: unix.ENOSPC}).Error()
	if !strings.Contains(whole, "restore part of the point (--path)") {
		t.Errorf("whole point: %q, want --path suggested", whole)
	}
	if strings.Contains(part, "--path") || !strings.Contains(part, "a smaller part of the point") {
		t.Errorf("part of a point: %q, want a smaller part suggested, not --path", part)
	}
}

// mustNoErr fails the test at once on err.
func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
