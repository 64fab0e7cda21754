package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	"github.com/recall-backup/recall/chunkstore"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A file not restored (its directory is immutable: the directory is left
// as it is and reported) is not reported restored: -v and --json list
// only files in place and whole.
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
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Overwrite: true, Progress: &rec.Progress})
	if err != nil || len(res.Skipped) != 1 || res.Skipped[0].Path != "d/" {
		t.Fatalf("restore into a target with an immutable directory: %v, skipped %+v; want d/ skipped", err, res.Skipped)
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

// commitTree stores root as the tree of p in session s and commits p,
// setting its Tree and ID: a point as a writer other than backup could
// have made it.
func commitTree(t *testing.T, s *Session, p *Point, root *Tree) {
	t.Helper()
	blob := EncodeTree(root)
	p.Tree = s.s.st.Hash(blob)
	if _, err := s.SaveBlob(chunkstore.TreeBlob, p.Tree, blob); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	id, err := s.CommitPoint(p)
	if err != nil {
		t.Fatal(err)
	}
	p.ID = id
}

// A resumed restore keeps the files an earlier restore of the point left
// whole (size, modification time and mode as in the point) and writes the
// others again: one cut short (as kill -9 leaves it: full size, other
// bytes, no time set yet), one missing, one whose mode is not set yet,
// and one whose bytes differ in size. What is not the point's is left.
// Before, the rerun could only --overwrite everything.
func TestRestoreResume(t *testing.T) {
	ts := newTestStore(t)
	files := map[string]string{"d/keep1": "one", "d/keep2": "two two", "top": "top file",
		"d/cut": "cut short by the kill", "gone": "never made", "mode": "mode not set", "short": "shorter"}
	src := srcTree(t, files)
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	at := func(rel string) string { return filepath.Join(target, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What a restore killed part way leaves.
	must(os.WriteFile(at("d/cut"), []byte("XXXXXXXXXXXXXXXXXXXXX"), 0o644)) // same size, fresh time
	must(os.Remove(at("gone")))
	st, _ := os.Stat(at("mode"))
	must(os.Chmod(at("mode"), st.Mode().Perm()^0o020))
	must(os.WriteFile(at("short"), []byte("sho"), 0o644))
	must(os.WriteFile(at("mine"), []byte("not the point's"), 0o644))

	// Without --resume (or --overwrite) the target is refused, and the
	// message says how to go on.
	if _, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("restore into the left target: %v", err)
	}
	rec := newRecorder()
	res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target, Resume: true, Progress: &rec.Progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 3 || res.Files != int64(len(files)) {
		t.Errorf("kept %d of %d files, want 3 of %d", res.Kept, res.Files, len(files))
	}
	if got, want := rec.sorted(), []string{"d/cut", "gone", "mode", "short"}; !slices.Equal(got, want) {
		t.Errorf("listed restored %q, want %q (the kept ones are not written)", got, want)
	}
	if s := rec.Status(); s.FilesDone != int64(len(files)) {
		t.Errorf("progress: %d files done, want %d", s.FilesDone, len(files))
	}
	for rel, want := range files {
		b, err := os.ReadFile(at(rel))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
		}
		sst, _ := os.Stat(filepath.Join(src, rel))
		if tst, err := os.Stat(at(rel)); err != nil || tst.Mode() != sst.Mode() || !tst.ModTime().Equal(sst.ModTime()) {
			t.Errorf("%s: mode or time not the point's", rel)
		}
	}
	if b, err := os.ReadFile(at("mine")); err != nil || string(b) != "not the point's" {
		t.Errorf("a file not in the point: %q, %v", b, err)
	}
}

// Entries no target can hold are listed as not restored (Skipped, exit 3)
// and the restore goes on: a symlink with an empty target and a file
// larger than the file system allows stopped the whole restore (exit 1,
// leaving an empty file behind); a device node a non-root restore cannot
// make and an entry with an unsafe name were counted as metadata not
// applied, so a script reading "skipped" missed them.
func TestRestoreSkipsWhatCannotBeMade(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"keep": "kept"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	root.Nodes = append(root.Nodes,
		&Node{Name: "emptylink", Type: TypeSymlink, Mode: 0o777},
		&Node{Name: "huge", Type: TypeFile, Mode: 0o644, Size: 1 << 62, Extents: []Extent{{Hole: true, End: 1 << 62}}},
		&Node{Name: "a/b", Type: TypeFile, Mode: 0o644})
	q := *p
	q.Time = p.Time.Add(1)
	s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
	commitTree(t, s, &q, root)
	s.Close()

	target := t.TempDir()
	res, err := Restore(context.Background(), ts.r, &q, RestoreOptions{Target: target})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	var skipped []string
	for _, e := range res.Skipped {
		skipped = append(skipped, e.Path)
	}
	slices.Sort(skipped)
	if want := []string{".", "emptylink", "huge"}; !slices.Equal(skipped, want) || len(res.Warnings) != 0 {
		t.Errorf("skipped %q, warnings %+v; want %q and none", skipped, res.Warnings, want)
	}
	if b, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || string(b) != "kept" {
		t.Errorf("keep: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(target, "huge")); err == nil {
		t.Error("the file too large for the target was left behind")
	}
}

// verify reports what restore cannot restore as stored: an entry whose
// name no directory can hold, and the second entry of a name held twice.
// Before, verify (even --read-data) said "no errors" for such a tree,
// which only a writer other than backup makes (a tree blob is named by
// its hash, so damage cannot).
func TestVerifyReportsNamesRestoreCannotMake(t *testing.T) {
	ts := newTestStore(t)
	src := srcTree(t, map[string]string{"keep": "kept", "other": "x"})
	p, err := ts.backup(BackupOptions{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), ts.r, VerifyOptions{}); err != nil {
		t.Fatalf("verify of a backup: %v", err)
	}
	root, err := ts.r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	dup := *root.Find("keep")
	root.Nodes = append(root.Nodes, &dup, &Node{Name: "a/b", Type: TypeFile, Mode: 0o644})
	q := *p
	q.Time = p.Time.Add(1)
	s := openSession(t, ts.st, SessionOptions{Purpose: "test"})
	commitTree(t, s, &q, root)
	s.Close()
	rep, err := Verify(context.Background(), ts.r, VerifyOptions{})
	if !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify: %v", err)
	}
	var got []string
	for _, d := range rep.Damage {
		if d.Point != q.ID.String() {
			t.Errorf("damage in another point: %+v", d)
		}
		got = append(got, d.Path)
	}
	slices.Sort(got)
	if want := []string{`"a/b"`, "keep"}; !slices.Equal(got, want) {
		t.Errorf("damage at %q, want %q: %+v", got, want, rep.Damage)
	}

	// Entries out of order (EncodeTree sorts: each is encoded alone and
	// the bodies joined under one header) are damage of the directory.
	s = openSession(t, ts.st, SessionOptions{Purpose: "test"})
	if err := s.RemovePoint(q.ID); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	raw = append(raw, "RTRE\x01"...)
	raw = binary.AppendUvarint(raw, 2)
	for _, name := range []string{"other", "keep"} {
		one := EncodeTree(&Tree{Nodes: []*Node{root.Find(name)}})
		raw = append(raw, one[6:]...) // magic, version, count 1
	}
	u := *p
	u.Time = p.Time.Add(2)
	u.Tree = ts.st.Hash(raw)
	if _, err := s.SaveBlob(chunkstore.TreeBlob, u.Tree, raw); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if u.ID, err = s.CommitPoint(&u); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rep, err = Verify(context.Background(), ts.r, VerifyOptions{})
	if !errors.Is(err, ErrVerifyFailed) || len(rep.Damage) != 1 || rep.Damage[0].Path != "." || rep.Damage[0].Point != u.ID.String() {
		t.Errorf("verify of an unsorted tree: %v, %+v", err, rep.Damage)
	}
	// Still, every entry of it can be restored by name: Find does not
	// bisect a tree decoded out of order ("other" sorts after "keep", so
	// a bisection for "other" missed it).
	for _, name := range []string{"other", "keep"} {
		target := t.TempDir()
		if _, err := Restore(context.Background(), ts.r, &u, RestoreOptions{Target: target, Path: name}); err != nil {
			t.Errorf("restore --path %s of the unsorted tree: %v", name, err)
		} else if _, err := os.Stat(filepath.Join(target, name)); err != nil {
			t.Errorf("restore --path %s of the unsorted tree: %v", name, err)
		}
	}
}

// gcRewriteSetup makes two points of one source, the second without the
// first one's large file, and forgets the first through another handle
// of the store (as another process): a collection by other then rewrites
// the pack the second point's file "keep" shares with the dead file. It
// returns the store, the second point, the other handle and keep's bytes.
func gcRewriteSetup(t *testing.T) (*testStore, *Point, *Store, []byte) {
	t.Helper()
	ts := newTestStore(t)
	src := t.TempDir()
	keep, gone := randomBytes(1, 50_000), randomBytes(2, 600_000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "keep"), keep, 0o644))
	must(os.WriteFile(filepath.Join(src, "gone"), gone, 0o644))
	a, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	must(err)
	must(os.Remove(filepath.Join(src, "gone")))
	b, err := ts.backup(BackupOptions{Path: src, Source: "s"})
	must(err)
	other, err := Open(ts.st.Dir(), chunkstore.OpenOptions{})
	must(err)
	t.Cleanup(func() { other.Close() })
	_, err = other.Forget(context.Background(), a.ID.String(), "", LockOptions{})
	must(err)
	return ts, b, other, keep
}

// A restore reads the chunks of a pack that garbage collection rewrote
// and deleted after the restore planned its reads (a long restore, a
// nightly gc): from the pack they were moved to. Before, they were
// reported damaged (exit 4, advising verify, which found nothing), and
// the zero-filled files were left with the point's time, which "restore
// --resume" then kept.
func TestRestoreBesideGCRewrite(t *testing.T) {
	ts, b, other, keep := gcRewriteSetup(t)
	old := packReader
	t.Cleanup(func() { packReader = old })
	var rep *GCReport
	packReader = func(ctx context.Context, r *Reader, pack chunkstore.ID, ids []chunkstore.ID, fn func(chunkstore.ID, []byte, error)) error {
		if rep == nil { // the first pack read: the plan is made
			var err error
			rep, err = GC(ctx, other, GCOptions{IndexGrace: -1, RepackThreshold: 0.5})
			if err != nil {
				t.Errorf("gc: %v", err)
			}
		}
		return old(ctx, r, pack, ids, fn)
	}
	target := t.TempDir()
	res, err := Restore(context.Background(), ts.r, b, RestoreOptions{Target: target})
	if rep == nil || rep.PacksRewritten == 0 {
		t.Fatalf("gc beside the restore rewrote nothing: %+v", rep)
	}
	if err != nil || len(res.Damaged) != 0 {
		t.Fatalf("restore beside the rewrite: %v, damaged %+v", err, res.Damaged)
	}
	if got, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("keep: %v, differs %v", err, !bytes.Equal(got, keep))
	}
}

// verify --read-data beside a garbage collection that deletes a pack it
// listed: the pack is counted gone, not damaged, and the live blobs moved
// out of it are checked where they went. Before, verify reported damaged
// packs and files in live points, and advised a repair.
func TestVerifyBesideGCRewrite(t *testing.T) {
	ts, _, other, _ := gcRewriteSetup(t)
	var rep *GCReport
	packsListed = func() {
		var err error
		if rep, err = GC(context.Background(), other, GCOptions{IndexGrace: -1, RepackThreshold: 0.5}); err != nil {
			t.Errorf("gc: %v", err)
		}
	}
	t.Cleanup(func() { packsListed = nil })
	vr, err := Verify(context.Background(), ts.r, VerifyOptions{ReadData: true})
	if rep == nil || rep.PacksRewritten+rep.PacksDeleted == 0 {
		t.Fatalf("gc beside verify removed nothing: %+v", rep)
	}
	if err != nil || vr.PacksGone == 0 || len(vr.BadPacks) != 0 || len(vr.Damage) != 0 {
		t.Fatalf("verify beside gc: %v; %d packs gone, bad %v, damage %+v", err, vr.PacksGone, vr.BadPacks, vr.Damage)
	}
}
