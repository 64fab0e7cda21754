package engine

import (
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder is a Progress whose Item calls are kept.
type recorder struct {
	Progress
	mu    sync.Mutex
	items []string
}

func newRecorder() *recorder {
	r := &recorder{}
	r.Item = func(p string) { r.mu.Lock(); r.items = append(r.items, p); r.mu.Unlock() }
	return r
}

func (r *recorder) sorted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.items)
	slices.Sort(out)
	return out
}

// checkDone fails unless a finished run's counts met its totals.
func checkDone(t *testing.T, what string, s Status) {
	t.Helper()
	if !s.TotalsFinal || s.FilesDone != s.FilesTotal || s.BytesDone != s.BytesTotal || len(s.Current) != 0 {
		t.Errorf("%s: finished with %+v; want final totals met and nothing current", what, s)
	}
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProgressScanMatchesBackup: the scan beside the walk makes the same
// choices as the walk (exclusions, markers, hard links, sizes of sparse
// and large files), so a backup ends with done == total, and every file
// read is reported once.
func TestProgressScanMatchesBackup(t *testing.T) {
	src := t.TempDir()
	write := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", []byte("hello"))
	write("empty", nil)
	write("big.bin", randBytes(t, 5<<20))
	write("sub/deep/c.txt", randBytes(t, 70000))
	write("sub/skip.log", []byte("excluded by pattern"))
	write("tmp/x", []byte("excluded directory"))
	write("cache/CACHEDIR.TAG", []byte(cacheDirSignature+"\n"))
	write("cache/data", randBytes(t, 1000))
	write("marked/.nobackup", nil)
	write("marked/data", randBytes(t, 1000))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "sub", "link-to-a")))
	must(os.Symlink("a.txt", filepath.Join(src, "sym")))
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	must(sparse.Truncate(8 << 20))
	_, err = sparse.WriteAt(randBytes(t, 4096), 1<<20)
	must(err)
	must(sparse.Close())
	write("huge/too-big", nil)
	must(os.Truncate(filepath.Join(src, "huge", "too-big"), 16<<20))

	ex := Exclude{Patterns: []string{"*.log", "tmp/"}, Caches: true, IfPresent: []string{".nobackup"}, LargerThan: 9 << 20}
	// Read by the backup: one name of the hard-link pair (the walk reads
	// whichever it meets first), the CACHEDIR.TAG and .nobackup markers.
	want := []string{"a.txt", "big.bin", "cache/CACHEDIR.TAG", "empty", "marked/.nobackup", "sparse", "sub/deep/c.txt"}
	wantBytes := int64(5 + 5<<20 + 70000 + len(cacheDirSignature) + 1 + 8<<20)

	ts := newTestStore(t)
	for _, run := range []string{"first", "unchanged"} {
		t.Run(run, func(t *testing.T) {
			rec := newRecorder()
			p, err := ts.backup(BackupOptions{Path: src, Source: "s", Exclude: ex, Progress: &rec.Progress})
			if err != nil {
				t.Fatal(err)
			}
			s := rec.Status()
			checkDone(t, "backup", s)
			if s.BytesDone != wantBytes || s.BytesDone != p.Stats.Bytes {
				t.Errorf("bytes done %d, point says %d; want %d", s.BytesDone, p.Stats.Bytes, wantBytes)
			}
			var got []string
			for _, it := range rec.sorted() {
				rel, err := filepath.Rel(src, it)
				must(err)
				got = append(got, rel)
			}
			if !slices.Equal(got, want) {
				t.Errorf("files reported %q, want %q", got, want)
			}
		})
	}

	t.Run("restore", func(t *testing.T) {
		pts, err := ts.r.Points()
		must(err)
		rec := newRecorder()
		res, err := Restore(context.Background(), ts.r, pts[len(pts)-1], RestoreOptions{Target: filepath.Join(t.TempDir(), "out"), Progress: &rec.Progress})
		must(err)
		s := rec.Status()
		checkDone(t, "restore", s)
		// Both names of the hard link are restored; its content is written once.
		if s.FilesDone != res.Files || s.FilesDone != int64(len(want)+1) || s.BytesDone != wantBytes {
			t.Errorf("restore counted %+v; restored %d files; want %d files, %d bytes", s, res.Files, len(want)+1, wantBytes)
		}
		if got := rec.sorted(); !slices.Contains(got, "sub/link-to-a") || !slices.Contains(got, "a.txt") {
			t.Errorf("restored files reported %q: want both names of the hard link", got)
		}
	})

	t.Run("verify", func(t *testing.T) {
		var packs, packBytes int64
		must(filepath.WalkDir(filepath.Join(ts.st.Dir(), "packs"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return err
			}
			fi, err := d.Info()
			packs++
			packBytes += fi.Size()
			return err
		}))
		rec := newRecorder()
		if _, err := Verify(context.Background(), ts.r, VerifyOptions{ReadData: true, Progress: &rec.Progress}); err != nil {
			t.Fatal(err)
		}
		s := rec.Status()
		checkDone(t, "verify", s)
		if s.FilesDone != packs || s.BytesDone != packBytes || s.Errors != 0 {
			t.Errorf("verify counted %+v; the store holds %d packs of %d bytes", s, packs, packBytes)
		}
	})
}

// TestProgressSingleFile: a file given as the source is its own total.
func TestProgressSingleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, randBytes(t, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := newTestStore(t)
	var prog Progress
	if _, err := ts.backup(BackupOptions{Path: path, Progress: &prog}); err != nil {
		t.Fatal(err)
	}
	s := prog.Status()
	checkDone(t, "backup", s)
	if s.FilesTotal != 1 || s.BytesTotal != 3<<20 {
		t.Errorf("totals %+v, want 1 file of %d bytes", s, 3<<20)
	}
}

// More done than the scan counted (a file grew after it, or was read
// again) raises the totals in the snapshot: never more done than in all.
func TestProgressTotalsAtLeastDone(t *testing.T) {
	var p Progress
	p.addTotal(1, 88<<20)
	p.addBytes(209 << 20)
	p.filesDone.Add(2)
	s := p.Status()
	if s.BytesTotal != 209<<20 || s.FilesTotal != 2 {
		t.Fatalf("status %+v: want totals raised to what is done", s)
	}
	p.addTotal(1, 300<<20)
	if s := p.Status(); s.BytesTotal != 388<<20 || s.FilesTotal != 2 {
		t.Fatalf("status %+v: want the scan's totals once they pass what is done", s)
	}
}

// TestHardLinkNamesListed: every name of a file with hard links is listed
// (-v) and counted unchanged as a file of its own; the second name was
// neither, so a backup with nothing changed said "3 files (2 unchanged)".
func TestHardLinkNamesListed(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"a": []byte("a"), "b": []byte("b")})
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "a2")); err != nil {
		t.Fatal(err)
	}
	var prev *Point
	for i, want := range []string{"new", "unchanged"} {
		var mu sync.Mutex
		saved := map[string]string{}
		prog := &Progress{Saved: func(p, how string) { mu.Lock(); saved[filepath.Base(p)] = how; mu.Unlock() }}
		p, err := ts.backup(BackupOptions{Path: src, Source: "s", Progress: prog})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"a", "a2", "b"} {
			if saved[name] != want {
				t.Errorf("backup %d: %s listed as %q, want %q (all: %v)", i+1, name, saved[name], want, saved)
			}
		}
		if prev != nil && (p.Stats.Files != 3 || p.Stats.Unchanged != 3) {
			t.Errorf("backup %d: %d files, %d unchanged; want 3 and 3", i+1, p.Stats.Files, p.Stats.Unchanged)
		}
		if got := prog.filesDone.Load(); got != 2 {
			t.Errorf("backup %d: progress counted %d files done, want 2 (the scan counts a file with hard links once)", i+1, got)
		}
		prev = p
	}
}
