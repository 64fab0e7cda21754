package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/testskip"
)

// leaveTemp starts a file tagged tag (tmp/ itself for "") and leaves it
// as a writer killed before Commit would: synced, neither committed nor
// aborted. It returns the file's path.
func leaveTemp(t *testing.T, b *Backend, tag string, ft backend.FileType) string {
	t.Helper()
	w, err := b.create(context.Background(), ft, tag, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("left by a writer killed before its commit")); err != nil {
		t.Fatal(err)
	}
	fw := w.(*fileWriter)
	if err := fw.Sync(); err != nil {
		t.Fatal(err)
	}
	fw.close() // the descriptors go with the killed process; the file stays
	return fw.f.Name()
}

func write(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not recall's"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustExist(t *testing.T, what string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s %s was removed: %v", what, p, err)
		}
	}
}

func mustBeGone(t *testing.T, what string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s %s stays: %v", what, p, err)
		}
	}
}

// Defect: CleanTemp("") (the store's exclusive lock: repair, forget, a
// change of passphrase) removed every entry of tmp/, whatever it was, so
// a note or a directory an administrator kept there was deleted. Before:
// notes, mydir and mydir/photo gone. After: CleanTemp removes only the
// files Create names (<type>-<digits>), in tmp/ and in the directories of
// tmp/, and a directory only when it held such files and nothing else;
// ListTemp lists exactly those.
func TestCleanTempRemovesOnlyOwnFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	session := "source-0123456789abcdef0123456789abcdef"
	ours := []string{
		leaveTemp(t, b, "", backend.Packs),
		leaveTemp(t, b, "", backend.Index),
		leaveTemp(t, b, session, backend.Packs),
		leaveTemp(t, b, session, backend.Packs),
		leaveTemp(t, b, "gc", backend.Index),
	}
	shared := leaveTemp(t, b, "shared", backend.Packs) // a tag's area that holds a file of another's too
	theirs := []string{
		write(t, filepath.Join(tmp, "notes")),
		write(t, filepath.Join(tmp, "mydir", "photo")),
		write(t, filepath.Join(tmp, "packs-notes")), // our prefix, not our name
		write(t, filepath.Join(tmp, "shared", "keep")),
		write(t, filepath.Join(dir, "index", ".tmp-notes")),
		write(t, filepath.Join(dir, "packs", "ab", ".tmp-notes")),
		write(t, filepath.Join(dir, "packs", "ab", "ab"+strings.Repeat("0", 62))), // a pack
	}
	// A pack Save was killed writing (a copy into this store, a tape
	// restore): its temp file is beside the packs.
	ours = append(ours, write(t, filepath.Join(dir, "packs", "ab", ".tmp-ab"+strings.Repeat("1", 62)+"-2840913")))
	if err := os.Mkdir(filepath.Join(tmp, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "index-42"), 0o700); err != nil { // our name, but a directory
		t.Fatal(err)
	}
	theirs = append(theirs, filepath.Join(tmp, "empty"), filepath.Join(tmp, "index-42"))

	var listed []string
	if err := b.ListTemp(context.Background(), "", backend.Packs, func(tag, name string, _ int64) error {
		listed = append(listed, filepath.Join(tmp, tag, name))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	want := []string{ours[0], ours[2], ours[3], shared}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("ListTemp lists %v, want %v", listed, want)
	}

	if err := b.CleanTemp(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	mustBeGone(t, "temp file", append(ours, shared)...)
	mustBeGone(t, "emptied temp area", filepath.Join(tmp, session), filepath.Join(tmp, "gc"))
	mustExist(t, "file of another's", theirs...)
	mustExist(t, "temp area that holds a file of another's", filepath.Join(tmp, "shared"))
}

// Defect: with tmp/ a symlink to a directory elsewhere (an administrator
// who moved it to another disk), CleanTemp("") followed the link and
// removed everything in that directory. Before: photo.jpg and album/
// gone. After: only what recall wrote there goes, the link stays, and
// files are built and committed through it (it is on the store's file
// system here: a rename cannot cross file systems, see
// TestCommitAcrossFileSystems).
func TestCleanTempThroughSymlinkedTmp(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(root, "bigdisk")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, tmp); err != nil {
		t.Fatal(err)
	}
	theirs := []string{
		write(t, filepath.Join(elsewhere, "photo.jpg")),
		write(t, filepath.Join(elsewhere, "album", "1.jpg")),
	}
	ours := []string{
		leaveTemp(t, b, "", backend.Packs),
		leaveTemp(t, b, "source-0123456789abcdef0123456789abcdef", backend.Packs),
	}
	w, err := b.CreateTagged(context.Background(), backend.Packs, "source-0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a pack"))
	name := strings.Repeat("ab", 32)
	if err := w.Commit(context.Background(), name); err != nil {
		t.Fatalf("commit through a symlinked tmp/ on the store's file system: %v", err)
	}
	if err := b.CleanTemp(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	mustBeGone(t, "temp file", ours...)
	mustExist(t, "file of another's", theirs...)
	if fi, err := os.Lstat(tmp); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the tmp/ symlink: %v, %v", fi, err)
	}
	if _, err := b.Stat(context.Background(), backend.Handle{Type: backend.Packs, Name: name}); err != nil {
		t.Errorf("the committed pack: %v", err)
	}
}

// Defect: CleanTemp(tag) (a session's lock and unlock, garbage collection
// adopting a stopped session's area) was os.RemoveAll(tmp/<tag>): a file
// of another's in that directory went with it, and a tag directory that
// was a symlink was replaced by nothing. Before: keep and the link gone.
// After: the temp files go; the directory goes only once empty, a link
// never.
func TestCleanTempTagRemovesOnlyOwnFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	own := leaveTemp(t, b, "source-a", backend.Packs)
	mine := leaveTemp(t, b, "source-b", backend.Packs)
	keep := write(t, filepath.Join(tmp, "source-b", "keep"))
	linked := filepath.Join(root, "linked")
	if err := os.Mkdir(linked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(linked, filepath.Join(tmp, "source-c")); err != nil {
		t.Fatal(err)
	}
	viaLink := leaveTemp(t, b, "source-c", backend.Packs)
	for _, tag := range []string{"source-a", "source-b", "source-c", "source-none"} {
		if err := b.CleanTemp(context.Background(), tag); err != nil {
			t.Fatalf("clean %s: %v", tag, err)
		}
	}
	mustBeGone(t, "temp file", own, mine, viaLink)
	mustBeGone(t, "emptied temp area", filepath.Join(tmp, "source-a"))
	mustExist(t, "file of another's", keep, filepath.Join(tmp, "source-c"), linked)
}

// A tmp/ linked to another file system cannot work: a file is built there
// and renamed into place, and rename(2) does not cross file systems. The
// commit fails (as before) but says why and what to do, naming both
// paths, instead of a bare "invalid cross-device link".
func TestCommitAcrossFileSystems(t *testing.T) {
	root := t.TempDir()
	other, err := os.MkdirTemp("/dev/shm", "recall-test-")
	if err != nil {
		testskip.Skip(t, "no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, o syscall.Stat_t
	if syscall.Stat(root, &a) != nil || syscall.Stat(other, &o) != nil || a.Dev == o.Dev {
		testskip.Skip(t, "%s and %s are on the same file system", root, other)
	}
	dir := filepath.Join(root, "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, tmp); err != nil {
		t.Fatal(err)
	}
	w, err := b.CreateTagged(context.Background(), backend.Packs, "source-a")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a pack"))
	err = w.Commit(context.Background(), strings.Repeat("cd", 32))
	if err == nil {
		t.Fatal("a commit across file systems succeeded")
	}
	if !errors.Is(err, syscall.EXDEV) || !strings.Contains(err.Error(), tmp) || !strings.Contains(err.Error(), "different file systems") {
		t.Errorf("commit across file systems: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(other, "*", "*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}
