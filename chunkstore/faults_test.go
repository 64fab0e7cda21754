package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/faulty"
)

// checkConsistent opens the store in dir anew, without faults, and checks
// what a crash or a failed backup must leave: every blob of want reads
// back exactly, every pack is whole (header and blobs), no pack has a
// problem, and no temp file is left once a writer took the lock.
func checkConsistent(t *testing.T, dir string, want map[ID][]byte) {
	t.Helper()
	s := reopen(t, dir)
	for id, data := range want {
		if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("blob %s: %v", id.Short(), err)
		}
	}
	err := s.ListPacks(func(id ID, _ int64) error {
		if pc, err := s.CheckPack(id); err != nil || pc.Header != nil || len(pc.Bad) > 0 {
			t.Errorf("pack %s: %v %+v", id, err, pc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range s.Packs() {
		if pi.Problem != "" {
			t.Errorf("pack %s: %s", pi.ID, pi.Problem)
		}
	}
	l, err := s.LockWriter(bg, "check", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("%d temp files left", len(ents))
	}
}

// A disk that fills up in the middle of a backup, at any write: the
// backup fails with an error that says the store is full and what to do,
// what was stored before is intact, nothing half-written is visible, and
// once there is space again the next backup stores everything.
func TestFullDiskMidBackup(t *testing.T) {
	old := PackTargetSize
	PackTargetSize = 100 << 10 // several packs per backup
	t.Cleanup(func() { PackTargetSize = old })
	for _, enc := range []bool{false, true} {
		for _, at := range []int{1, 2, 5, 9, 14} {
			t.Run(fmt.Sprintf("encrypted=%v/write-%d", enc, at), func(t *testing.T) {
				dir, s := newStore(t, enc)
				before := map[ID][]byte{}
				for i, id := range saveBlobs(t, s, randBytes(1, 60_000), randBytes(2, 60_000)) {
					before[id] = randBytes(int64(i+1), 60_000)
				}
				fb := faultsOf(t, s)
				fb.FullAt(at)
				lock, w := openWriter(t, s)
				var ids []ID
				var blobs [][]byte
				var err error
				for i := range 12 {
					data := randBytes(int64(100+i), 40_000)
					id := s.Hash(data)
					ids, blobs = append(ids, id), append(blobs, data)
					if _, err = w.SaveBlob(DataBlob, id, data); err != nil {
						break
					}
				}
				if err == nil {
					err = w.Flush()
				}
				if !errors.Is(err, backend.ErrNoSpace) || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "free space") || !strings.Contains(err.Error(), "recall gc --index-grace 0") {
					t.Fatalf("backup onto a full disk: %v", err)
				}
				// The writer is done for: no later call pretends to succeed.
				if err := w.Flush(); err == nil {
					t.Error("Flush after the disk filled up succeeded")
				}
				w.Abort()
				lock.Unlock()
				checkConsistent(t, dir, before)

				fb.Clear()
				lock, w = openWriter(t, s)
				for i, id := range ids {
					if _, err := w.SaveBlob(DataBlob, id, blobs[i]); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Flush(); err != nil {
					t.Fatalf("backup with space again: %v", err)
				}
				lock.Unlock()
				for i, id := range ids {
					before[id] = blobs[i]
				}
				checkConsistent(t, dir, before)
			})
		}
	}
}

// A backend that returns fewer bytes than asked, without an error, is
// caught: the read fails, no wrong bytes come back, and nothing is
// recorded as damage (the pack itself may be whole).
func TestShortReadsDetected(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, size := range []int{5_000, 600_000} { // buffered and (where direct is off) large
			_, s := newStore(t, enc)
			data := randBytes(7, size)
			ids := saveBlobs(t, s, data)
			fb := faultsOf(t, s)
			fb.DisableDirect()
			fb.ShortReads(backend.Packs, 3)
			got, err := s.LoadBlob(ids[0], nil)
			if err == nil || got != nil {
				t.Errorf("encrypted=%v %d bytes: short read gave %d bytes, %v", enc, size, len(got), err)
			}
			if !errors.Is(err, errShortLoad) || errors.Is(err, ErrCorrupt) {
				t.Errorf("encrypted=%v %d bytes: %v; want a short read, not corruption", enc, size, err)
			}
			if d := s.DamagedBlobs(); len(d) != 0 {
				t.Errorf("a short read was recorded as damage: %v", d)
			}
			pack, _ := s.PackOf(ids[0])
			if _, err := s.ReadPackHeader(pack); err == nil {
				t.Errorf("encrypted=%v: pack header read short: no error", enc)
			}
			fb.Clear()
			if got, err := s.LoadBlob(ids[0], nil); err != nil || !bytes.Equal(got, data) {
				t.Errorf("encrypted=%v: after the fault: %v", enc, err)
			}
		}
	}
}

// An I/O error reading a pack is not damage: the blob is not recorded
// bad and deduplication still counts it as stored.
func TestLoadErrorIsNotDamage(t *testing.T) {
	_, s := newStore(t, true)
	ids := saveBlobs(t, s, randBytes(3, 20_000))
	fb := faultsOf(t, s)
	fb.FailAt(faulty.Load, backend.Packs, 0, syscall.EIO)
	if _, err := s.LoadBlob(ids[0], nil); !errors.Is(err, syscall.EIO) {
		t.Errorf("load: %v, want EIO", err)
	}
	if len(s.DamagedBlobs()) != 0 || !s.Has(ids[0]) {
		t.Errorf("an I/O error counts as damage: %v, Has %v", s.DamagedBlobs(), s.Has(ids[0]))
	}
}

// The index file of a backup cannot be saved: the backup fails before
// any point could refer to its blobs, and the next writer adopts the
// packs that were made durable, so their blobs are not stored again.
func TestIndexSaveFails(t *testing.T) {
	dir, s := newStore(t, false)
	fb := faultsOf(t, s)
	fb.FailAt(faulty.Save, backend.Index, 1, syscall.EIO)
	lock, w := openWriter(t, s)
	data := randBytes(4, 70_000)
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush with the index save failing: %v", err)
	}
	lock.Unlock()
	s2 := reopen(t, dir)
	l2, w2 := openWriter(t, s2)
	defer l2.Unlock()
	if fresh, err := w2.SaveBlob(DataBlob, id, data); err != nil || fresh {
		t.Errorf("blob of the unindexed pack stored again (fresh %v, %v)", fresh, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "index")); len(ents) != 1 {
		t.Errorf("%d index files after adopting the pack, want 1", len(ents))
	}
}
