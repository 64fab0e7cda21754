package chunkstore

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// storeTree lists every path under dir but locks/ (a lock taken and
// released leaves its lock file) with its size, or -1 for a directory.
func storeTree(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	tree := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "locks" {
			return filepath.SkipDir
		}
		size := int64(-1)
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size = fi.Size()
		}
		tree[rel] = size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func treeDiff(before, after map[string]int64) []string {
	var d []string
	for p, size := range before {
		if got, ok := after[p]; !ok {
			d = append(d, "removed "+p)
		} else if got != size {
			d = append(d, "changed "+p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			d = append(d, "added "+p)
		}
	}
	slices.Sort(d)
	return d
}

// sessionTempPack moves the pack holding blob into the temp area of a
// session of source, as a session killed between its pack's sync and its
// commit leaves it (the repro: mv packs/ee/ee... tmp/source-.../packs-123456),
// and puts a note and a directory of an administrator's in tmp/.
func sessionTempPack(t *testing.T, dir string, s *Store, source string, blob []byte) (pack ID, temp string, theirs []string) {
	t.Helper()
	pack, ok := s.PackOf(s.Hash(blob))
	if !ok {
		t.Fatal("the blob's pack is not indexed")
	}
	area := filepath.Join(dir, "tmp", sessionTag(source))
	if err := os.MkdirAll(area, 0o700); err != nil {
		t.Fatal(err)
	}
	temp = filepath.Join(area, "packs-123456")
	if err := os.Rename(s.packPath(pack), temp); err != nil {
		t.Fatal(err)
	}
	theirs = []string{filepath.Join(dir, "tmp", "notes"), filepath.Join(dir, "tmp", "mydir", "x")}
	for _, p := range theirs {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pack, temp, theirs
}

// Defect A: the exclusive lock a dry run takes (repair index|packs|points
// --dry-run: LockDryRun) adopted the finished packs interrupted writers
// left in tmp/, wrote their index file, emptied tmp/ and consolidated a
// large index, as the lock of a run that writes does; only a read-only
// file system, where the lock could not be taken, skipped them. Before:
// the pack moved back into packs/, a new index file, tmp/ emptied, a
// consolidated index file and a retire record written, all by a
// "--dry-run". After: the store is as it was, byte for byte but for
// locks/, and the note says what a run that writes would adopt first.
func TestDryRunLockChangesNothing(t *testing.T) {
	for _, large := range []bool{false, true} {
		t.Run(map[bool]string{false: "temp-pack", true: "large-index"}[large], func(t *testing.T) {
			dir, s := newStore(t, false)
			blob := randBytes(7, 20_000)
			gcBlobs(t, s, "s", [][]byte{blob})
			if large {
				syntheticIndexFiles(t, s, consolidateMin+100)
			}
			pack, temp, theirs := sessionTempPack(t, dir, s, "s", blob)
			s.Close()
			s = reopen(t, dir)
			before := storeTree(t, dir)

			l, note, err := s.LockDryRun(ctx, "repair index", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.RebuildIndex(true); err != nil {
				t.Fatal(err)
			}
			l.Unlock()
			if d := treeDiff(before, storeTree(t, dir)); len(d) > 0 {
				t.Errorf("a dry run changed the store: %s", strings.Join(d, ", "))
			}
			if s.idx.baseName() != "" {
				t.Error("a dry run consolidated the index")
			}
			if !strings.Contains(note, "1 finished pack") || !strings.Contains(note, "--dry-run") {
				t.Errorf("the dry run's note: %q, want it to tell of the finished pack a run without --dry-run adopts", note)
			}

			// The lock of a run that writes adopts the pack, and leaves
			// what is not recall's (defect B).
			x, err := s.LockExclusive(ctx, "repair index", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			x.Unlock()
			if _, err := os.Stat(s.packPath(pack)); err != nil {
				t.Errorf("the finished temp pack was not adopted: %v", err)
			}
			for _, p := range []string{temp, filepath.Dir(temp)} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s stays after the exclusive lock", p)
				}
			}
			for _, p := range theirs {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("the exclusive lock removed %s, which recall did not write: %v", p, err)
				}
			}
		})
	}
}

// Defect B, through the store: with tmp/ a symlink to a directory
// elsewhere (an administrator who moved it to another disk), any
// exclusive lock (repair, forget, a change of passphrase) deleted every
// file and directory in that directory. Before: photo and album/ gone.
// After: they stay; what recall left there is adopted or removed.
func TestExclusiveLockLeavesSymlinkedTmp(t *testing.T) {
	dir, s := newStore(t, false)
	blob := randBytes(8, 20_000)
	gcBlobs(t, s, "s", [][]byte{blob})
	s.Close()
	elsewhere := filepath.Join(t.TempDir(), "bigdisk")
	theirs := []string{filepath.Join(elsewhere, "photo"), filepath.Join(elsewhere, "album", "1")}
	for _, p := range theirs {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, tmp); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, dir)
	pack, temp, _ := sessionTempPack(t, dir, s, "s", blob)
	x, err := s.LockExclusive(ctx, "repair index", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	x.Unlock()
	for _, p := range theirs {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the exclusive lock removed %s, in the directory tmp/ links to: %v", p, err)
		}
	}
	if _, err := os.Stat(temp); err == nil {
		t.Errorf("the temp pack %s stays", temp)
	}
	if _, err := os.Stat(s.packPath(pack)); err != nil {
		t.Errorf("the finished temp pack was not adopted through the link: %v", err)
	}
	left := storeTree(t, elsewhere)
	delete(left, ".")
	want := map[string]int64{"photo": 2, "album": -1, "album/1": 2, "notes": 2, "mydir": -1, "mydir/x": 2}
	if !maps.Equal(left, want) {
		t.Errorf("the directory tmp/ links to holds %v, want %v", left, want)
	}
}

// Defect B, through garbage collection: a collection that adopts a
// stopped session's temp area (gc_leftovers.go: CleanTemp(tag), after
// the grace) removed the whole of tmp/<tag>/, and the exclusive lock's
// CleanTemp("") every entry of tmp/. Before: a file of another's in the
// area went with it. After: the collection removes the temp files it
// counts (ListTemp lists exactly what CleanTemp removes) and the area
// stays, holding only that file.
func TestGCLeavesWhatRecallDidNotWriteInTemp(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	temp, _ := killedAtPackCommit(t, dir)
	partial := filepath.Join(filepath.Dir(temp), "packs-4242424242")
	if err := os.WriteFile(partial, randBytes(5, 30_000), 0o600); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(filepath.Dir(temp), "README")
	if err := os.WriteFile(theirs, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, dir)
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksAdopted != 1 || rep.TempRemoved != 30_000 {
		t.Errorf("gc: %+v", rep)
	}
	for _, p := range []string{temp, partial} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("temp file %s stays", p)
		}
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("gc removed %s, which recall did not write: %v", theirs, err)
	}
}

// gc --dry-run leaves the temp files a killed collection left (a real
// collection removes them): before, taking the collection's lock removed
// them for a dry run too.
func TestGCDryRunLeavesItsTemp(t *testing.T) {
	dir, s := newStore(t, false)
	saveBlobs(t, s, randBytes(1, 5000))
	left := filepath.Join(dir, "tmp", gcTempTag, "packs-123456")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, randBytes(2, 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	before := storeTree(t, dir)
	if _, err := s.GC(ctx, pointMarker(s), GCOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if after := storeTree(t, dir); !maps.Equal(before, after) {
		t.Fatalf("gc --dry-run changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := s.GC(ctx, pointMarker(s), GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); err == nil {
		t.Error("a real collection left the dead collection's temp file")
	}
}
