package chunkstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// repairIndex does what 'recall repair index' does in a process of its
// own: rebuild, then consolidate, under the exclusive lock.
func repairIndex(t *testing.T, dir string) *IndexRebuild {
	t.Helper()
	s := reopen(t, dir)
	l := exclusive(t, s)
	defer l.Unlock()
	rb, err := l.RebuildIndex(false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.ConsolidateIndex(); err != nil {
		t.Fatal(err)
	}
	return rb
}

// pendingHide leaves a collection pending: a dead pack hidden by the
// plan's index file while a session that started before the hide runs,
// then ends that session. It returns the dead pack and the live blob.
func pendingHide(t *testing.T, s *Store) (dead ID, live []byte) {
	t.Helper()
	live, gone := randBytes(1, 60_000), randBytes(2, 80_000)
	gcBlobs(t, s, "keep", [][]byte{live}, 0)
	gcBlobs(t, s, "u", [][]byte{gone})
	dead, _ = s.PackOf(s.Hash(gone))
	l, err := s.LockSession(ctx, "slow", "backup of slow", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	l.Unlock()
	if err != nil || !rep.Pending || rep.PacksHidden != 1 {
		t.Fatalf("gc beside a session: %+v, %v", rep, err)
	}
	return dead, live
}

// collectedOnce checks that the next collection finishes the plan and
// deletes the dead pack, that the live blob still reads, and that a
// collection after it finds nothing.
func collectedOnce(t *testing.T, dir string, dead ID, live []byte) {
	t.Helper()
	s := reopen(t, dir)
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 1 || s.HasPackFile(dead) {
		t.Fatalf("the dead pack stays after the collection: %+v", rep)
	}
	s2 := reopen(t, dir)
	if b, err := s2.LoadBlob(s2.Hash(live), nil); err != nil || !bytes.Equal(b, live) {
		t.Fatalf("live blob after the collection: %v", err)
	}
	if !s2.Has(s2.Hash(live)) {
		t.Error("the live blob is no longer offered for deduplication")
	}
	rep, err = s2.GC(ctx, pointMarker(s2), GCOptions{IndexGrace: -1})
	if err != nil || rep.PacksDeleted != 0 || rep.Pending {
		t.Fatalf("a second collection: %+v, %v", rep, err)
	}
}

// A repair of the index while a collection waits for a session keeps the
// collection's hiding file: a pack it lists with no places is hidden, not
// in disagreement with its header. The collection then finishes, and a
// second repair finds nothing to change. Were the file removed, the plan
// would be dropped as never written, and the packs, hidden in the
// consolidated file repair writes, deleted by no collection.
func TestRepairIndexKeepsPendingHide(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			defer s.Close()
			dead, live := pendingHide(t, s)
			plan, err := s.loadPlan(ctx)
			if err != nil || plan == nil {
				t.Fatalf("plan: %v, %v", plan, err)
			}
			rb := repairIndex(t, dir)
			if len(rb.Removed) != 0 || len(rb.Written) != 0 {
				t.Fatalf("repair during a pending collection changed the index: removed %v, wrote %v", rb.Removed, rb.Written)
			}
			if _, err := os.Stat(filepath.Join(dir, "index", plan.Index)); err != nil {
				t.Fatalf("the plan's index file: %v", err)
			}
			before := indexNames(t, dir)
			rb = repairIndex(t, dir)
			if len(rb.Removed) != 0 || len(rb.Written) != 0 {
				t.Fatalf("a second repair: removed %v, wrote %v", rb.Removed, rb.Written)
			}
			if after := indexNames(t, dir); len(after) != len(before) {
				t.Fatalf("a second repair changed the index files: %v, then %v", before, after)
			}
			collectedOnce(t, dir, dead, live)
		})
	}
}

// When the hiding file is really damaged, repair removes it and the hide
// goes with it: the packs it hid are indexed again, in memory too, so
// the consolidated file repair writes does not hide them in a file no
// plan names. The next collection drops the plan and collects them anew.
func TestRepairIndexOfDamagedHidingFile(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	dead, live := pendingHide(t, s)
	plan, err := s.loadPlan(ctx)
	if err != nil || plan == nil {
		t.Fatalf("plan: %v, %v", plan, err)
	}
	path := filepath.Join(dir, "index", plan.Index)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[index2HeaderLen+10] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rb := repairIndex(t, dir)
	if _, ok := rb.Removed[plan.Index]; !ok {
		t.Fatalf("repair kept the damaged hiding file; removed %v", rb.Removed)
	}
	collectedOnce(t, dir, dead, live)
}

// A pack some consolidated file hides that no plan names (the store a
// repair that removed a pending plan's index file left) is indexed again
// by the next collection and then collected like any other, or kept when
// a point needs it.
func TestGCIndexesOrphanHideAgain(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	live, gone := randBytes(1, 60_000), randBytes(2, 80_000)
	gcBlobs(t, s, "keep", [][]byte{live}, 0)
	gcBlobs(t, s, "u", [][]byte{gone})
	livePack, _ := s.PackOf(s.Hash(live))
	dead, _ := s.PackOf(s.Hash(gone))
	// Both hidden, with no plan.
	l := exclusive(t, s)
	if _, err := s.idx.consolidateFile(s.be, s.keys, s.loadedIndexIDs(), &leaveOut{hide: map[ID]bool{livePack: true, dead: true}}); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	s2 := reopen(t, dir)
	if s2.Has(s2.Hash(gone)) || s2.Has(s2.Hash(live)) {
		t.Fatal("the packs are not hidden")
	}
	collectedOnce(t, dir, dead, live)
	if !reopen(t, dir).HasPackFile(livePack) {
		t.Error("the live pack was deleted")
	}
}
