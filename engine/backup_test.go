package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

type testStore struct {
	t  *testing.T
	st *chunkstore.Store
	r  *Reader
}

func newTestStore(t *testing.T) *testStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testStore{t: t, st: st, r: NewReader(st)}
}

func (ts *testStore) backup(opts BackupOptions) (*Point, error) {
	ts.t.Helper()
	s := openSession(ts.t, ts.st, SessionOptions{Purpose: "test"})
	defer s.Close()
	return Backup(context.Background(), s, opts)
}

func (ts *testStore) content(p *Point, name string) []byte {
	ts.t.Helper()
	tree, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		ts.t.Fatal(err)
	}
	n := tree.Find(name)
	if n == nil {
		return nil
	}
	var out []byte
	for i, e := range n.Extents {
		if e.Hole {
			out = append(out, make([]byte, e.End-n.ExtentStart(i))...)
			continue
		}
		b, err := ts.r.ReadChunk(e.ID, nil)
		if err != nil {
			ts.t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestVanishedDuringWalk(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "stays"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "goes"), []byte("y"), 0o644)
	os.Mkdir(filepath.Join(src, "gone-dir"), 0o755)
	p, err := ts.backup(BackupOptions{Path: src, hooks: &backupHooks{afterReadDir: func(dir string) {
		if dir == src {
			os.Remove(filepath.Join(src, "goes"))
			os.Remove(filepath.Join(src, "gone-dir"))
		}
	}}})
	if !errors.Is(err, ErrWarnings) || p == nil {
		t.Fatalf("backup: %v", err)
	}
	if len(p.Errors) != 2 || !strings.Contains(p.Errors[0].Error+p.Errors[1].Error, "no such file") {
		t.Errorf("errors: %+v", p.Errors)
	}
	if ts.content(p, "stays") == nil || ts.content(p, "goes") != nil {
		t.Error("point content wrong")
	}
}

func TestChangedWhileRead(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "log")
	os.WriteFile(f, bytes.Repeat([]byte("a"), 2<<20), 0o644)
	// Changed once: read again, no warning, the new content is saved.
	p, err := ts.backup(BackupOptions{Path: src, Source: "once", hooks: &backupHooks{afterRead: func(path string, try int) {
		if try == 1 {
			os.WriteFile(f, bytes.Repeat([]byte("b"), 3<<20), 0o644)
		}
	}}})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if got := ts.content(p, "log"); !bytes.Equal(got, bytes.Repeat([]byte("b"), 3<<20)) {
		t.Errorf("re-read content: %d bytes", len(got))
	}
	// Changing all the time: flagged, and the next backup reads it again.
	n := 0
	p, err = ts.backup(BackupOptions{Path: src, Source: "always", hooks: &backupHooks{afterRead: func(path string, try int) {
		n++
		os.WriteFile(f, bytes.Repeat([]byte{byte('c' + n)}, 1<<20+n), 0o644)
	}}})
	if !errors.Is(err, ErrWarnings) || len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Error, "changed while being read") {
		t.Fatalf("backup: %v %+v", err, p)
	}
	tree, _ := ts.r.LoadTree(p.Tree)
	if tree.Find("log").CtimeNS != 0 {
		t.Error("a flagged file must not be trusted as unchanged next time")
	}
}

// A large file (read with parallel cuts) that is cut short after its
// stat is read again at its new size, as a file changed any other way:
// before, the backup spun at full CPU for good, or skipped the file with
// "read: EOF".
func TestShrankWhileReadInParallel(t *testing.T) {
	old := parSegment
	parSegment = 2 << 20
	defer func() { parSegment = old }()
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "big")
	data := randomBytes(9, 16<<20)
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const cut = 5<<20 + 777
	once := false
	p, err := backupWithin(t, ts, BackupOptions{Path: f, hooks: &backupHooks{afterRegions: func(string) {
		if !once {
			once = true
			os.Truncate(f, cut)
		}
	}}}, "backup of a file cut short while read")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if got := ts.content(p, "big"); !bytes.Equal(got, data[:cut]) {
		t.Errorf("point holds %d bytes, want the %d the file was cut to", len(got), cut)
	}
}

// backupWithin is ts.backup(opts), failing the test if it has not ended
// within a minute (what names it).
func backupWithin(t *testing.T, ts *testStore, opts BackupOptions, what string) (*Point, error) {
	t.Helper()
	done := make(chan struct{})
	var p *Point
	var err error
	go func() {
		defer close(done)
		p, err = ts.backup(opts)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not end", what)
	}
	return p, err
}

// A file given as the backup's path that changes on every read is kept
// and flagged, as it is inside a tree: before, the backup failed with no
// point, so a busy log or a running VM's image given alone was never
// protected at all.
func TestSingleFileChangingAllAlong(t *testing.T) {
	ts := newTestStore(t)
	f := filepath.Join(t.TempDir(), "busy.log")
	if err := os.WriteFile(f, bytes.Repeat([]byte("a"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	p, err := ts.backup(BackupOptions{Path: f, hooks: &backupHooks{afterRead: func(path string, try int) {
		n++
		os.WriteFile(f, bytes.Repeat([]byte{byte('b' + n)}, 1<<20+n), 0o644)
	}}})
	if !errors.Is(err, ErrWarnings) || p == nil || len(p.Errors) != 1 || p.Errors[0].Path != "busy.log" || !strings.Contains(p.Errors[0].Error, "changed while being read") {
		t.Fatalf("backup: %v, %+v", err, p)
	}
	if got := ts.content(p, "busy.log"); len(got) != 1<<20+maxRereads-1 {
		t.Errorf("point holds %d bytes, want the last copy read (%d)", len(got), 1<<20+maxRereads-1)
	}
	tree, _ := ts.r.LoadTree(p.Tree)
	if tree.Find("busy.log").CtimeNS != 0 {
		t.Error("a flagged file must not be trusted as unchanged next time")
	}
}

// A file that goes between the walk's lstat and its open is warned
// about and not counted: before, a point holding one file said 2 files.
func TestVanishedBeforeOpenNotCounted(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "stays"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "goes"), []byte("y"), 0o644)
	p, err := ts.backup(BackupOptions{Path: src, hooks: &backupHooks{beforeOpen: func(path string) {
		if filepath.Base(path) == "goes" {
			os.Remove(path)
		}
	}}})
	if !errors.Is(err, ErrWarnings) || p == nil || len(p.Errors) != 1 {
		t.Fatalf("backup: %v, %+v", err, p)
	}
	if p.Stats.Files != 1 || ts.content(p, "goes") != nil {
		t.Errorf("stats %+v: want the one file the point holds", p.Stats)
	}
}

// An entry swapped for another between the walk's lstat and the open of
// its content: a FIFO or a symlink is skipped with a warning (the open
// neither blocks nor follows), a small file swapped for a large one is
// read as it now is (it needs the os.File a small one goes without), and
// no descriptor is left open whichever way the read went.
func TestSwappedBeforeOpen(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	large := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB: more than one chunk
	for _, n := range []string{"fifo", "link", "grew", "small"} {
		if err := os.WriteFile(filepath.Join(src, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(path string) {
		var err error
		switch filepath.Base(path) {
		case "fifo":
			if err = os.Remove(path); err == nil {
				err = unix.Mkfifo(path, 0o644)
			}
		case "link":
			if err = os.Remove(path); err == nil {
				err = os.Symlink("/etc/hostname", path)
			}
		case "grew":
			err = os.WriteFile(path, large, 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
	p, err := backupWithin(t, ts, BackupOptions{Path: src, hooks: &backupHooks{beforeOpen: swap}}, "backup opening an entry swapped for a FIFO")
	if !errors.Is(err, ErrWarnings) || p == nil || len(p.Errors) != 2 {
		t.Fatalf("backup: %v, %+v", err, p)
	}
	for _, e := range p.Errors {
		if b := filepath.Base(e.Path); b != "fifo" && b != "link" || !strings.Contains(e.Error, "skipped") {
			t.Errorf("warning %+v: want the FIFO and the symlink skipped, only", e)
		}
	}
	if got := ts.content(p, "grew"); !bytes.Equal(got, large) {
		t.Errorf("grew: %d bytes, want the %d it had at its open", len(got), len(large))
	}
	if got := ts.content(p, "small"); string(got) != "small" {
		t.Errorf("small: %q", got)
	}
	if p.Stats.Files != 2 {
		t.Errorf("stats %+v: want the two files the point holds", p.Stats)
	}
	if open := openUnder(t, src); len(open) > 0 {
		t.Errorf("descriptors left open on the source: %v", open)
	}
}

// openUnder lists the files under dir the process has open.
func openUnder(t *testing.T, dir string) []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			open = append(open, p)
		}
	}
	return open
}

func TestSymlinkLoopsNotFollowed(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.Symlink(".", filepath.Join(src, "self"))
	os.Symlink("b", filepath.Join(src, "a"))
	os.Symlink("a", filepath.Join(src, "b"))
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := ts.r.LoadTree(p.Tree)
	if len(tree.Nodes) != 3 || tree.Find("self").Type != TypeSymlink || tree.Find("self").Target != "." {
		t.Errorf("tree: %+v", tree.Nodes)
	}
}

// A backup reads directories without touching their access time, as it
// reads files: with relatime, an access time older than the change time
// would otherwise be moved to the backup's.
func TestBackupKeepsDirAtime(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	dir := filepath.Join(src, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(dir, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.backup(BackupOptions{Path: src, Source: "s"}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Atim.Unix()); !got.Equal(old) {
		t.Errorf("directory access time %v after the backup, want %v", got, old)
	}
}

// A directory replaced by a symlink between its lstat and its listing is
// not followed: the point never holds files from outside the source.
func TestDirReplacedBySymlinkNotFollowed(t *testing.T) {
	ts := newTestStore(t)
	src, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "SECRET"), []byte("not part of the source"), 0o600)
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "mine"), []byte("mine"), 0o644)
	d := filepath.Join(src, "d")
	p, err := ts.backup(BackupOptions{Path: src, hooks: &backupHooks{beforeReadDir: func(dir string) {
		if dir == d {
			os.Rename(d, d+".moved")
			os.Symlink(outside, d)
		}
	}}})
	if !errors.Is(err, ErrWarnings) || p == nil {
		t.Fatalf("backup: %v", err)
	}
	if len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Error, "replaced") {
		t.Errorf("errors: %+v", p.Errors)
	}
	if ts.content(p, "d/SECRET") != nil {
		t.Error("the point holds a file from outside the source")
	}
}

// A time past 2262 (ext4 keeps them up to 2446) does not fit the tree's
// int64 nanoseconds: it is saved as the latest time that does, with a
// warning, not wrapped around to 1901.
func TestBackupClampsFarTimes(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	far := filepath.Join(src, "y2400")
	if err := os.WriteFile(far, []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "now"), []byte("d"), 0o644); err != nil {
		t.Fatal(err)
	}
	y2400 := unix.Timespec{Sec: 13574260800, Nsec: 987654321} // 2400-02-28
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, far, []unix.Timespec{y2400, y2400}, 0); err != nil {
		testskip.Skip(t, "file system keeps no time past 2262: %v", err)
	}
	var st unix.Stat_t
	if unix.Stat(far, &st) != nil || st.Mtim.Sec != y2400.Sec {
		testskip.Skip(t, "file system keeps no time past 2262")
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if !errors.Is(err, ErrWarnings) || p == nil || len(p.Errors) != 1 || p.Errors[0].Path != "y2400" {
		t.Fatalf("backup: %v, %+v", err, p)
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	n := root.Find("y2400")
	if got := time.Unix(0, n.MtimeNS); got.Year() != 2262 {
		t.Errorf("a time of 2400 saved as %v, want the end of 2262-04-11", got)
	}
	if got := time.Unix(0, root.Find("now").MtimeNS); time.Since(got) > time.Hour {
		t.Errorf("a present time saved as %v", got)
	}
}

// Hard links between symlinks, FIFOs and device nodes are kept: a restore
// links the names again instead of making separate entries.
func TestHardLinkedOthers(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("target", filepath.Join(src, "sl")))
	must(os.Link(filepath.Join(src, "sl"), filepath.Join(src, "sl2")))
	must(unix.Mkfifo(filepath.Join(src, "ff"), 0o640))
	must(os.Mkdir(filepath.Join(src, "d"), 0o755))
	must(os.Link(filepath.Join(src, "ff"), filepath.Join(src, "d", "ff2")))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	must(os.Link(filepath.Join(src, "null"), filepath.Join(src, "null2")))
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: dst}); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"sl", "sl2"}, {"ff", "d/ff2"}, {"null", "null2"}} {
		var a, b unix.Stat_t
		must(unix.Lstat(filepath.Join(dst, pair[0]), &a))
		must(unix.Lstat(filepath.Join(dst, pair[1]), &b))
		if a.Ino != b.Ino || a.Nlink != 2 {
			t.Errorf("%s and %s: inodes %d and %d, %d links; want one inode of 2 links", pair[0], pair[1], a.Ino, b.Ino, a.Nlink)
		}
	}
	var st unix.Stat_t
	must(unix.Lstat(filepath.Join(dst, "ff"), &st))
	if st.Mode&0o7777 != 0o640 || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if target, err := os.Readlink(filepath.Join(dst, "sl2")); err != nil || target != "target" {
		t.Errorf("link of a symlink: %q, %v", target, err)
	}
}

// A point made while the clock was ahead stays the source's "latest"
// until its time comes: the next backup says so, naming the point and
// how to forget it. Before, nothing did, and 'restore latest' gave the
// stale point.
func TestBackupWarnsOfPointFromTheFuture(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("v1"), 0o644)
	ahead := time.Now().AddDate(1, 0, 0)
	p1, err := ts.backup(BackupOptions{Path: src, Source: "s", Now: func() time.Time { return ahead }})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "f"), []byte("v2"), 0o644)
	var logged []string
	logTo := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	if _, err := ts.backup(BackupOptions{Path: src, Source: "s", Log: logTo}); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "clock was ahead") || !strings.Contains(logged[0], p1.ID.Short()) {
		t.Fatalf("backup after a point from the future logged %q", logged)
	}
	// Nothing when the newest point is not ahead.
	logged = nil
	for range 2 {
		if _, err := ts.backup(BackupOptions{Path: src, Source: "t", Log: logTo}); err != nil {
			t.Fatal(err)
		}
	}
	if len(logged) != 0 {
		t.Errorf("backups of t logged %q", logged)
	}
}

// A directory whose name is not UTF-8 is backed up again under the name
// derived from it: its last point's path, stored as JSON gives it back
// (U+FFFD for each such byte), is its own path, not a clash.
func TestBackupAgainNonUTF8Path(t *testing.T) {
	ts := newTestStore(t)
	dir := filepath.Join(t.TempDir(), "Gr\xfc\xdfe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := ts.backup(BackupOptions{Path: dir}); err != nil {
			t.Fatalf("backup %d: %v", i+1, err)
		}
	}
	// Another directory named the same but for those bytes is another
	// source, whose name says the bytes.
	other := filepath.Join(filepath.Dir(dir), "Gr\xfc\xe0e")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: other})
	if err != nil || p.Source == SourceName(dir) {
		t.Fatalf("backup of %q: %v, source %q", other, err, p.Source)
	}
}

// A restore's bytes are its files' sizes, holes included, fresh or
// resumed: a sparse file's restore said only its data bytes, and a
// resume of it its whole size.
func TestRestoreBytesCountHoles(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if _, err := f.WriteAt([]byte("data"), 5<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "out")
	for _, resume := range []bool{false, true} {
		prog := &Progress{}
		res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: resume, Progress: prog})
		if err != nil {
			t.Fatal(err)
		}
		if res.Bytes != size {
			t.Errorf("restore (resume %v): %d bytes, want %d", resume, res.Bytes, size)
		}
		if st := prog.Status(); st.BytesDone != st.BytesTotal || st.BytesTotal != size {
			t.Errorf("restore (resume %v) progress: %d of %d bytes at the end, want %d of %d", resume, st.BytesDone, st.BytesTotal, size, size)
		}
	}
}

// The directories a restore makes above what it restores end with the
// mode 'mkdir -p' gives, not the 0700 they are made with; a target that
// takes the point's directory's mode keeps that.
func TestRestoreCreatedDirsMode(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	if err := os.Chmod(src, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	umask, ok := processUmask()
	if !ok {
		t.Fatal("no umask in /proc/self/status")
	}
	want := os.FileMode(0o777 &^ umask)
	dir := t.TempDir()
	for _, tc := range []struct {
		sub, target string
		targetMode  os.FileMode
	}{
		{"", filepath.Join(dir, "a", "b", "tree"), 0o750},
		{"f", filepath.Join(dir, "c", "d", "file"), want},
	} {
		if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: tc.target, Path: tc.sub}); err != nil {
			t.Fatal(err)
		}
		for d, m := range map[string]os.FileMode{filepath.Dir(filepath.Dir(tc.target)): want, filepath.Dir(tc.target): want, tc.target: tc.targetMode} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != m {
				t.Errorf("restore %q into %s: %s has mode %v (%v), want %v", tc.sub, tc.target, d, fi.Mode().Perm(), err, m)
			}
		}
	}
}

// A file that changes under its read is read again, and what the
// abandoned read stored first is not counted new in the point's stats
// (the point does not use it; gc collects it). What the kept read uses
// of it (the part that did not change) still is.
func TestChangedWhileReadStats(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "db")
	rnd := rand.NewChaCha8([32]byte{9})
	first, second := make([]byte, 8<<20), make([]byte, 8<<20)
	rnd.Read(first)
	rnd.Read(second)
	copy(second[:4<<20], first[:4<<20]) // the first half stays
	if err := os.WriteFile(f, first, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s", hooks: &backupHooks{afterRead: func(path string, try int) {
		if try == 1 {
			if err := os.WriteFile(f, second, 0o644); err != nil {
				t.Error(err)
			}
		}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.content(p, "db"); !bytes.Equal(got, second) {
		t.Fatal("the point does not hold the file as read again")
	}
	// The data is random: new bytes are the file's 8 MiB (its first
	// half's chunks, stored by the abandoned read, are used) and its tree;
	// the abandoned read's second half, about 4 MiB more, is not counted.
	if n := p.Stats.NewBytes; n < 8<<20 || n > 8<<20+1<<20 {
		t.Errorf("new bytes %d, want the file's %d and its tree", n, 8<<20)
	}
	if p.Stats.StoredBytes > 8<<20+1<<20 {
		t.Errorf("stored bytes %d, want no more than the file's %d and its tree", p.Stats.StoredBytes, 8<<20)
	}
}

// Fix (stats of a file read three times): the chunks the first read
// stored and the second, abandoned too, found stored were counted as
// used: a file changed twice under its reads counted half a read more
// than it stored for the point. Only a kept read takes chunks back.
func TestChangedTwiceWhileReadStats(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "db")
	rnd := rand.NewChaCha8([32]byte{10})
	v1, v2, v3 := make([]byte, 8<<20), make([]byte, 8<<20), make([]byte, 8<<20)
	rnd.Read(v1)
	rnd.Read(v2)
	rnd.Read(v3)
	copy(v2[:4<<20], v1[:4<<20]) // the second read finds the first half stored
	if err := os.WriteFile(f, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ts.backup(BackupOptions{Path: src, Source: "s", hooks: &backupHooks{afterRead: func(path string, try int) {
		next := map[int][]byte{1: v2, 2: v3}[try]
		if next != nil {
			if err := os.WriteFile(f, next, 0o644); err != nil {
				t.Error(err)
			}
		}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.content(p, "db"); !bytes.Equal(got, v3) {
		t.Fatal("the point does not hold the file as read the third time")
	}
	if n := p.Stats.NewBytes; n < 8<<20 || n > 8<<20+1<<20 {
		t.Errorf("new bytes %d, want the file's %d and its tree", n, 8<<20)
	}
}

// Fix (a path with a newline in a message): the refusal of a derived
// source name another path has printed that path as it is, and its
// newline split the message into lines that read as recall's own. Such a
// path is quoted now, as one with bytes that are not UTF-8 (the point
// keeps U+FFFD for them, which a terminal shows alike).
func TestSourcePathClashQuotesOddPath(t *testing.T) {
	ts := newTestStore(t)
	dir := t.TempDir()
	odd, plain := filepath.Join(dir, "src\xe9\nx"), filepath.Join(dir, "src_xe9_x")
	for _, d := range []string{odd, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.backup(BackupOptions{Path: odd}); err != nil {
		t.Fatal(err)
	}
	_, err := ts.backup(BackupOptions{Path: plain})
	if !errors.Is(err, ErrSourcePathClash) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), fmt.Sprintf("%q", filepath.Join(dir, "src\uFFFD\nx"))) {
		t.Errorf("clash with a path holding a newline: %v", err)
	}
}
