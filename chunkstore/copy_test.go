package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// twinStore makes an empty store with the config files of the store in
// dir, byte for byte: the same keys.
func twinStore(t *testing.T, dir string) *Store {
	t.Helper()
	twin := filepath.Join(t.TempDir(), "twin")
	be, err := local.Create(twin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{configCopyName, "config"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Save(context.Background(), backend.Handle{Type: backend.Config, Name: name}, b); err != nil {
			t.Fatal(err)
		}
	}
	be.Close()
	s, err := Open(twin, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// copyPack copies the blobs ids of one pack of src into dst with
// LoadStoredBlobs and SaveStored, and returns the errors by blob and how
// many blobs were new in dst.
func copyPack(t *testing.T, src, dst *Store, pack ID, ids []ID) (map[ID]error, int) {
	t.Helper()
	lock, w := openWriter(t, dst)
	defer lock.Unlock()
	errs := map[ID]error{}
	added := 0
	err := src.LoadStoredBlobs(context.Background(), pack, DataBlob, ids, func(b StoredBlob, err error) {
		if err != nil {
			errs[b.ID] = err
			return
		}
		isNew, err := w.SaveStored(b)
		if err != nil {
			t.Fatal(err)
		}
		if isNew {
			added++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return errs, added
}

// Blobs copied with their stored bytes read back the same from the copy,
// and the copy's packs hold the very bytes the source's do: nothing was
// decoded into another encoding or sealed again (a new seal has a new
// random nonce). A second copy adds nothing.
func TestCopyStored(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, src := newStore(t, enc)
		blobs := [][]byte{
			randBytes(1, 300_000),
			bytes.Repeat([]byte("compressible "), 20_000),
			randBytes(2, 5_000),
			randBytes(3, 1),
		}
		ids := saveBlobs(t, src, blobs...)
		pack, _ := src.PackOf(ids[0])
		dst := twinStore(t, dir)
		if !src.SameKeys(dst) || !dst.SameKeys(src) {
			t.Fatalf("encrypted=%v: a store with the same config files has other keys", enc)
		}
		errs, added := copyPack(t, src, dst, pack, append(ids, ids[1]))
		if len(errs) != 0 || added != len(ids) {
			t.Fatalf("encrypted=%v: copy: %d of %d blobs new, errors %v", enc, added, len(ids), errs)
		}
		for i, id := range ids {
			got, err := dst.LoadBlob(id, nil)
			if err != nil || !bytes.Equal(got, blobs[i]) {
				t.Errorf("encrypted=%v: blob %d in the copy: %d bytes, %v", enc, i, len(got), err)
			}
			sp, se := blobPlace(t, src, id)
			dp, de := blobPlace(t, dst, id)
			if se.Comp != de.Comp || se.RawLength != de.RawLength || se.Length != de.Length {
				t.Errorf("encrypted=%v: blob %d: entry %+v in the copy, %+v in the source", enc, i, de, se)
			}
			sb, _ := os.ReadFile(sp)
			db, _ := os.ReadFile(dp)
			if !bytes.Equal(sb[se.Offset:se.Offset+se.Length], db[de.Offset:de.Offset+de.Length]) {
				t.Errorf("encrypted=%v: blob %d: stored bytes differ in the copy", enc, i)
			}
		}
		if _, added := copyPack(t, src, dst, pack, ids); added != 0 {
			t.Errorf("encrypted=%v: a second copy added %d blobs", enc, added)
		}
	}
}

// Stores made apart have other keys, encrypted or not.
func TestSameKeysOther(t *testing.T) {
	for _, enc := range [][2]bool{{false, false}, {true, true}, {false, true}} {
		_, a := newStore(t, enc[0])
		_, b := newStore(t, enc[1])
		if a.SameKeys(b) || b.SameKeys(a) {
			t.Errorf("encrypted=%v: two stores made apart have the same keys", enc)
		}
	}
}

// A damaged blob is not copied: its error is LoadBlob's and it is
// recorded; the blobs around it are copied.
func TestCopyStoredDamage(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, src := newStore(t, enc)
		blobs := [][]byte{randBytes(1, 400_000), bytes.Repeat([]byte("zz"), 50_000), randBytes(3, 70_000)}
		ids := saveBlobs(t, src, blobs...)
		pack, _ := src.PackOf(ids[0])
		p, e := blobPlace(t, src, ids[1])
		flipAt(t, p, int64(e.Offset)+int64(e.Length/2))
		dst := twinStore(t, dir)
		errs, added := copyPack(t, src, dst, pack, ids)
		if added != 2 || len(errs) != 1 || !errors.Is(errs[ids[1]], ErrCorrupt) {
			t.Fatalf("encrypted=%v: %d blobs copied, errors %v; want 2 and blob 1 corrupt", enc, added, errs)
		}
		if dst.Has(ids[1]) || !dst.Has(ids[0]) || !dst.Has(ids[2]) {
			t.Errorf("encrypted=%v: the copy has the wrong blobs", enc)
		}
		if d := src.DamagedBlobs(); len(d) != 1 || d[0].Blob != ids[1] {
			t.Errorf("encrypted=%v: source damage record %+v, want blob 1", enc, d)
		}
	}
}

// A point manifest copied as stored keeps its id; bytes that do not hash
// to the id are refused.
func TestPointStored(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, src := newStore(t, enc)
		id, err := src.SavePoint([]byte(`{"version":2}`))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := src.LoadPointStored(id)
		if err != nil {
			t.Fatal(err)
		}
		dst := twinStore(t, dir)
		if err := dst.SavePointStored(id, stored); err != nil {
			t.Fatal(err)
		}
		if got, err := dst.LoadPoint(id); err != nil || string(got) != `{"version":2}` {
			t.Errorf("encrypted=%v: copied point reads %q, %v", enc, got, err)
		}
		stored[0] ^= 1
		if err := dst.SavePointStored(testID(1), stored); !errors.Is(err, ErrCorrupt) {
			t.Errorf("encrypted=%v: bytes of another id saved: %v", enc, err)
		}
	}
}

// Without the key a pack is checked against its name (its header's hash),
// an index file or a manifest against its bytes' hash.
func TestCheckNames(t *testing.T) {
	_, s := newStore(t, true)
	ids := saveBlobs(t, s, randBytes(1, 50_000))
	pack, _ := s.PackOf(ids[0])
	b, err := os.ReadFile(s.packPath(pack))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPackName(pack, b); err != nil {
		t.Errorf("a whole pack: %v", err)
	}
	hdr := bytes.Clone(b)
	hdr[len(hdr)-packTrailerLen-5] ^= 1
	if err := CheckPackName(pack, hdr); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a pack with a changed header: %v", err)
	}
	if err := CheckPackName(pack, b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a cut pack: %v", err)
	}
	if err := CheckFileName(pack.String(), b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bytes under another name: %v", err)
	}
}

// A session held without opening the store (a copy without the key)
// excludes the exclusive lock and registers for garbage collection.
func TestHoldSession(t *testing.T) {
	dir, s := newStore(t, true)
	h, err := HoldSession(context.Background(), local.Open(dir), "recall copy", "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LockExclusive(context.Background(), "test", 0, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("exclusive lock beside a held session: %v", err)
	}
	n := 0
	localOf(s).List(context.Background(), backend.Locks, func(name string, _ int64) error {
		if len(name) > len(sessionPrefix) && name[:len(sessionPrefix)] == sessionPrefix {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d session registrations, want 1", n)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
	l, err := s.LockExclusive(context.Background(), "test", 0, nil)
	if err != nil {
		t.Fatalf("exclusive lock after the session: %v", err)
	}
	l.Unlock()
}
