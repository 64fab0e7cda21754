package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// consolidationStore writes rounds backups of perRound blobs each (one
// writer, so one index file or more, per round) and returns the blobs.
func consolidationStore(t *testing.T, s *Store, rounds, perRound int, seed int64) map[ID][]byte {
	t.Helper()
	blobs := map[ID][]byte{}
	for r := range rounds {
		lock, w := openWriter(t, s)
		for i := range perRound {
			data := randBytes(seed+int64(r*perRound+i), 20_000+i)
			id := s.Hash(data)
			blobs[id] = data
			if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
	}
	return blobs
}

// lookups is what a store answers for every blob: its pack, and whether
// the content reads back.
func lookups(t *testing.T, what string, s *Store, blobs map[ID][]byte) map[ID]ID {
	t.Helper()
	out := map[ID]ID{}
	for id, want := range blobs {
		pack, err := s.BlobStatus(id)
		if err != nil {
			t.Fatalf("%s: blob %s: %v", what, id.Short(), err)
		}
		if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: blob %s reads back wrong: %v", what, id.Short(), err)
		}
		out[id] = pack
	}
	var absent ID
	absent[0] = 0x5a
	if s.Has(absent) {
		t.Fatalf("%s: an id never stored is reported stored", what)
	}
	return out
}

func indexNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func exclusive(t *testing.T, s *Store) *Lock {
	t.Helper()
	l, err := s.LockExclusive(context.Background(), "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func recentLen(s *Store) int {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	return s.idx.recentLenLocked()
}

// A store of many index files, consolidated: a reader open meanwhile
// keeps answering the same, a reopened store loads the one consolidated
// file plus the index files written after it, and a second consolidation
// supersedes the first.
func TestConsolidateIndex(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			blobs := consolidationStore(t, s, 8, 12, 1)
			v1 := indexNames(t, dir)
			if len(v1) < 8 {
				t.Fatalf("%d index files, want one a backup at least", len(v1))
			}
			want := lookups(t, "before", s, blobs)

			// A reader opened before, checking all the while.
			reader := reopen(t, dir)
			done := make(chan struct{})
			readerErr := make(chan error, 1)
			go func() {
				var err error
				for last := false; !last && err == nil; {
					select {
					case <-done:
						last = true // one more round, after the consolidation
					default:
					}
					if err = reader.Refresh(); err != nil {
						break
					}
					for id := range blobs {
						if p, perr := reader.BlobStatus(id); perr != nil || p != want[id] {
							err = fmt.Errorf("blob %s: pack %s, want %s (%v)", id.Short(), p.Short(), want[id].Short(), perr)
							break
						}
					}
				}
				readerErr <- err
			}()
			l := exclusive(t, s)
			name, err := l.ConsolidateIndex()
			close(done)
			if err != nil {
				t.Fatal(err)
			}
			if name == "" {
				t.Fatal("nothing consolidated")
			}
			if err := <-readerErr; err != nil {
				t.Fatalf("reader during consolidation: %v", err)
			}
			if again, err := l.ConsolidateIndex(); err != nil || again != "" {
				t.Errorf("second consolidation with nothing new: %q, %v; want nothing written", again, err)
			}
			l.Unlock()
			after := indexNames(t, dir)
			for n := range v1 {
				if !after[n] {
					t.Errorf("superseded index file %s removed; garbage collection removes it", n)
				}
			}
			if len(after) != len(v1)+1 || !after[name] {
				t.Fatalf("index files after consolidation: %d, want the %d before and %s", len(after), len(v1), name)
			}
			if !maps2Equal(lookups(t, "live store", s, blobs), want) {
				t.Fatal("the live store's lookups changed")
			}
			if err := reader.Refresh(); err != nil {
				t.Fatal(err)
			}
			if reader.idx.baseName() != name || recentLen(reader) != 0 {
				t.Errorf("reader refreshed onto base %q with %d recent places, want %s and none", reader.idx.baseName(), recentLen(reader), name)
			}

			s2 := reopen(t, dir)
			if s2.idx.baseName() != name || recentLen(s2) != 0 {
				t.Fatalf("reopened: base %q with %d recent places, want %s and none", s2.idx.baseName(), recentLen(s2), name)
			}
			if !maps2Equal(lookups(t, "reopened", s2, blobs), want) {
				t.Fatal("lookups differ after reopening")
			}

			// A backup after: its index file joins the recent part.
			more := consolidationStore(t, s2, 1, 5, 1000)
			s3 := reopen(t, dir)
			if s3.idx.baseName() != name || recentLen(s3) != len(more) {
				t.Fatalf("after a backup: base %q with %d recent places, want %s and %d", s3.idx.baseName(), recentLen(s3), name, len(more))
			}
			for id, b := range more {
				blobs[id] = b
			}
			want = lookups(t, "after a backup", s3, blobs)

			// The next consolidation supersedes the first.
			l = exclusive(t, s3)
			name2, err := l.ConsolidateIndex()
			l.Unlock()
			if err != nil || name2 == "" || name2 == name {
				t.Fatalf("second consolidation: %q, %v", name2, err)
			}
			id1, _ := ParseID(name)
			if !s3.idx.superseded()[id1] {
				t.Error("the second consolidated file does not supersede the first")
			}
			s4 := reopen(t, dir)
			if s4.idx.baseName() != name2 || recentLen(s4) != 0 {
				t.Fatalf("reopened after the second: base %q with %d recent places, want %s and none", s4.idx.baseName(), recentLen(s4), name2)
			}
			if !maps2Equal(lookups(t, "after the second", s4, blobs), want) {
				t.Fatal("lookups differ after the second consolidation")
			}
			if s4.BlobCount() != len(blobs) {
				t.Errorf("%d places, want %d", s4.BlobCount(), len(blobs))
			}
		})
	}
}

func maps2Equal(a, b map[ID]ID) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Repair around a consolidated base: one that lists a pack gone, and one
// whose bytes are damaged, is replaced from pack headers, in the live
// store and on disk, and the index consolidates again afterwards.
func TestRepairConsolidatedIndex(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, s *Store, dir, base string, blobs map[ID][]byte) ID // returns a pack lost, or zero
	}{
		{"pack gone", func(t *testing.T, s *Store, dir, base string, blobs map[ID][]byte) ID {
			var lost ID
			for _, p := range s.Packs() {
				lost = p.ID
				break
			}
			if err := os.Remove(s.packPath(lost)); err != nil {
				t.Fatal(err)
			}
			return lost
		}},
		{"file damaged", func(t *testing.T, s *Store, dir, base string, blobs map[ID][]byte) ID {
			path := filepath.Join(dir, "index", base)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[index2HeaderLen+10] ^= 0x40 // a record of the first block
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return ID{}
		}},
		{"summary damaged", func(t *testing.T, s *Store, dir, base string, blobs map[ID][]byte) ID {
			path := filepath.Join(dir, "index", base)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-index2TrailerLen-20] ^= 0x01
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			// Unopenable, the file is skipped: the files it superseded,
			// still there, give every place.
			s2 := reopen(t, dir)
			if s2.idx.baseName() != "" {
				t.Fatal("a damaged summary adopted")
			}
			lookups(t, "damaged summary, before repair", s2, blobs)
			return ID{}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, s := newStore(t, true)
			blobs := consolidationStore(t, s, 4, 10, 7)
			l := exclusive(t, s)
			base, err := l.ConsolidateIndex()
			l.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			packOf := map[ID]ID{}
			for id := range blobs {
				packOf[id], _ = s.BlobStatus(id)
			}
			lost := tc.damage(t, s, dir, base, blobs)
			s2 := reopen(t, dir)
			l = exclusive(t, s2)
			rb, err := l.RebuildIndex(false)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := rb.Removed[base]; !ok {
				t.Fatalf("repair kept the wrong consolidated file; removed %v", rb.Removed)
			}
			if s2.idx.baseName() != "" {
				t.Error("the live index still reads the removed file")
			}
			// What the lost pack held is gone; everything else reads.
			gone := map[ID]bool{}
			if !lost.IsZero() {
				for id := range blobs {
					if packOf[id] == lost {
						gone[id] = true
					}
				}
			}
			if !lost.IsZero() && len(gone) == 0 {
				t.Fatal("the lost pack held no blob")
			}
			kept := map[ID][]byte{}
			for id, b := range blobs {
				if !gone[id] {
					kept[id] = b
				}
			}
			lookups(t, "repaired live store", s2, kept)
			for id := range gone {
				if s2.Has(id) {
					t.Errorf("blob %s of the lost pack reported stored", id.Short())
				}
			}
			name, err := l.ConsolidateIndex()
			l.Unlock()
			if err != nil || name == "" {
				t.Fatalf("consolidation after repair: %q, %v", name, err)
			}
			s3 := reopen(t, dir)
			if s3.idx.baseName() != name {
				t.Errorf("reopened: base %q, want %s", s3.idx.baseName(), name)
			}
			lookups(t, "repaired and reopened", s3, kept)
			if s3.BlobCount() != len(kept) {
				t.Errorf("%d places, want %d", s3.BlobCount(), len(kept))
			}
		})
	}
}

// syntheticIndexFiles writes index files of n places in synthetic packs
// (no pack files): what matters is the number of places, not the packs'
// bytes. It returns how many files it wrote.
func syntheticIndexFiles(t *testing.T, s *Store, n int) int {
	t.Helper()
	var packs []packRecord
	for i := 0; i < n; i += 50 {
		var p packRecord
		binary.LittleEndian.PutUint64(p.id[:], uint64(i)+1)
		for j := range min(50, n-i) {
			var e PackEntry
			binary.LittleEndian.PutUint64(e.ID[:], uint64(i+j)*0x9e3779b97f4a7c15+1)
			e.Type, e.Offset, e.Length, e.RawLength = DataBlob, uint32(j)*100, 100, 100
			p.entries = append(p.entries, e)
		}
		packs = append(packs, p)
	}
	files := 0
	for len(packs) > 0 {
		k := min(len(packs), 200)
		if _, err := s.writeIndexFile(packs[:k]); err != nil {
			t.Fatal(err)
		}
		packs = packs[k:]
		files++
	}
	return files
}

// A garbage collection that finds nothing to collect consolidates the
// index once its recent part is large, as an exclusive lock does: a store
// only backups, prune and gc touch never takes the exclusive lock, and
// every command opening it read all its version 1 files into memory
// (2.8-3.7 s and 230 MB for 'recall points' after four backups of a
// million files). The files it supersedes go after the grace; a dry run
// and a small index leave the index as it is.
func TestGCConsolidatesIndex(t *testing.T) {
	dir, s := newStore(t, false)
	syntheticIndexFiles(t, s, consolidateMin/2)
	rep, err := reopen(t, dir).GC(ctx, pointMarker(s), GCOptions{})
	if err != nil || rep.IndexConsolidated {
		t.Fatalf("gc of a small index: %+v, %v", rep, err)
	}
	syntheticIndexFiles(t, s, consolidateMin+100)
	files := indexFileCount(t, dir)
	n := reopen(t, dir).BlobCount()
	g := reopen(t, dir)
	rep, err = g.GC(ctx, pointMarker(g), GCOptions{DryRun: true})
	if err != nil || rep.IndexConsolidated || g.idx.baseName() != "" {
		t.Fatalf("dry run: %+v, %v, base %q", rep, err, g.idx.baseName())
	}
	rep, err = g.GC(ctx, pointMarker(g), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := g.idx.baseName()
	if !rep.IndexConsolidated || name == "" || recentLen(g) != 0 || rep.PacksDeleted != 0 {
		t.Fatalf("gc: %+v, base %q with %d recent places", rep, name, recentLen(g))
	}
	r := reopen(t, dir)
	if r.idx.baseName() != name || r.BlobCount() != n || recentLen(r) != 0 {
		t.Fatalf("reopened: base %q with %d places (%d recent), want %s with %d", r.idx.baseName(), r.BlobCount(), recentLen(r), name, n)
	}
	// The next collection, its grace over, removes the superseded files;
	// with nothing new it writes no other base.
	rep, err = r.GC(ctx, pointMarker(r), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.IndexConsolidated || rep.IndexFilesRemoved != files || indexFileCount(t, dir) != 1 {
		t.Fatalf("gc after the grace: %+v, %d index files; want %d removed, 1 left", rep, indexFileCount(t, dir), files)
	}
	if r2 := reopen(t, dir); r2.idx.baseName() != name || r2.BlobCount() != n {
		t.Fatalf("after the superseded files went: base %q with %d places", r2.idx.baseName(), r2.BlobCount())
	}
}

// An exclusive lock consolidates by itself once the recent part is large.
func TestConsolidateOnExclusiveLock(t *testing.T) {
	dir, s := newStore(t, false)
	// Index files of synthetic packs: what matters is the number of
	// places, not the packs' bytes.
	n := consolidateMin + 100
	syntheticIndexFiles(t, s, n)
	s2 := reopen(t, dir)
	// A write session's lock leaves the index as it is: sessions could
	// not agree on one base.
	sl, err := s2.LockSession(context.Background(), "src", "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sl.NewWriter(); err != nil {
		t.Fatal(err)
	}
	sl.Unlock()
	if s2.idx.baseName() != "" {
		t.Fatal("a write session consolidated the index")
	}
	l := exclusive(t, s2)
	l.Unlock()
	name := s2.idx.baseName()
	if name == "" || recentLen(s2) != 0 {
		t.Fatalf("after an exclusive lock: base %q with %d recent places, want a base and none", name, recentLen(s2))
	}
	s3 := reopen(t, dir)
	if s3.idx.baseName() != name || s3.BlobCount() != n {
		t.Errorf("reopened: base %q with %d places, want %s with %d", s3.idx.baseName(), s3.BlobCount(), name, n)
	}
	// The files it supersedes go with the next collection after the
	// grace; before, nothing recorded them and they stayed for good.
	files := indexFileCount(t, dir)
	rep, err := s3.GC(ctx, pointMarker(s3), GCOptions{IndexGrace: -1})
	if err != nil || rep.IndexFilesRemoved != files-1 || indexFileCount(t, dir) != 1 {
		t.Errorf("gc after the grace: %d of %d index files removed, %d left, %v; want all but the base", rep.IndexFilesRemoved, files, indexFileCount(t, dir), err)
	}
	if s4 := reopen(t, dir); s4.idx.baseName() != name || s4.BlobCount() != n {
		t.Errorf("after the superseded files went: base %q with %d places", s4.idx.baseName(), s4.BlobCount())
	}
}
