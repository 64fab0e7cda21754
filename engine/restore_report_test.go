package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A file whose create fails (its directory is immutable) is not reported
// restored: -v and --json list only files in place and whole.
func TestRestoreReportsOnlyFilesInPlace(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"d/f1": "one", "d/f2": "two", "top": "top"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := os.Mkdir(filepath.Join(target, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	chattr(t, filepath.Join(target, "d"), fsImmutable)

	rec := newRecorder()
	_, err = Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true, Progress: &rec.Progress})
	if err == nil {
		t.Fatal("restore into an immutable directory succeeded")
	}
	for _, rel := range rec.sorted() {
		if _, err := os.Lstat(filepath.Join(target, rel)); err != nil {
			t.Errorf("%s reported restored, but it is not there: %v", rel, err)
		}
	}
	if got := rec.sorted(); slices.Contains(got, "d/f1") || slices.Contains(got, "d/f2") {
		t.Errorf("reported restored %q; want neither d/f1 nor d/f2", got)
	}
	if s := rec.Status(); len(s.Current) != 0 {
		t.Errorf("files left in work: %q", s.Current)
	}
}
