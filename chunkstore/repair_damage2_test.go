package chunkstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fix (repair index and foreign files in damaged/): only files named as
// recall names damage records are records. A note an administrator left
// there stays, in a dry run and a real one; a record of recall's name that
// cannot be read is reported (the dry run says it would go) and removed,
// never dropped without a word; a readable record stays.
func TestRepairIndexLeavesForeignDamageFiles(t *testing.T) {
	dir, s := newStore(t, false)
	ids := saveBlobs(t, s, randBytes(1, 30_000))
	pack, ok := s.PackOf(ids[0])
	if !ok {
		t.Fatal("blob not indexed")
	}
	if err := s.saveDamage([]DamagedBlob{{Blob: ids[0], Pack: pack, Reason: "test"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ddir := filepath.Join(dir, "damaged")
	good, _ := os.ReadDir(ddir)
	if len(good) != 1 {
		t.Fatalf("%d damage records, want 1", len(good))
	}
	note := filepath.Join(ddir, "ADMIN-NOTE.txt")
	if err := os.WriteFile(note, []byte("disk 2 replaced on Monday\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rotten := strings.Repeat("ab", 32)
	if err := os.WriteFile(filepath.Join(ddir, rotten), []byte("RCALLDM1 bit rot"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	lock, err := s2.LockWriter(t.Context(), "repair", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	before := dirListing(t, dir)
	rb, err := lock.RebuildIndex(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rb.DamageUnreadable[rotten]; !ok || len(rb.DamageUnreadable) != 1 {
		t.Errorf("dry run: unreadable damage records %v, want %s only", rb.DamageUnreadable, rotten)
	}
	if after := dirListing(t, dir); after != before {
		t.Errorf("dry run changed the store:\n%s\n%s", before, after)
	}
	if rb, err = lock.RebuildIndex(false); err != nil {
		t.Fatal(err)
	}
	if _, ok := rb.DamageUnreadable[rotten]; !ok || len(rb.DamageUnreadable) != 1 || len(rb.DamageReplaced) != 0 {
		t.Errorf("rebuild: unreadable %v, replaced %v; want %s reported, nothing else", rb.DamageUnreadable, rb.DamageReplaced, rotten)
	}
	if _, err := os.Stat(note); err != nil {
		t.Errorf("repair index removed %s, which recall did not write: %v", note, err)
	}
	if _, err := os.Stat(filepath.Join(ddir, rotten)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unreadable record is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ddir, good[0].Name())); err != nil {
		t.Errorf("the readable record went: %v", err)
	}
	if d := reopen(t, dir).DamagedBlobs(); len(d) != 1 || d[0].Blob != ids[0] {
		t.Errorf("recorded damage after the repair: %v", d)
	}
}

// Fix (a pack's header checked against its name): a file holding another
// pack's bytes under its name has, for the index, an unreadable header.
// repair index keeps the index file that lists the pack's own blobs,
// writes nothing from the other pack's header, and names the pack.
func TestRebuildIndexChecksHeaderAgainstName(t *testing.T) {
	dir, s := newStore(t, false)
	a := saveBlobs(t, s, randBytes(1, 30_000))
	b := saveBlobs(t, s, randBytes(2, 40_000))
	packA, _ := s.PackOf(a[0])
	packB, _ := s.PackOf(b[0])
	if packA == packB {
		t.Fatal("want two packs")
	}
	bytesA, err := os.ReadFile(s.packPath(packA))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.packPath(packB), bytesA, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := reopen(t, dir)
	if _, err := s2.ReadPackHeader(packB); !errors.Is(err, ErrCorrupt) {
		t.Errorf("header of pack %s holding pack %s's bytes: %v, want ErrCorrupt", packB.Short(), packA.Short(), err)
	}
	lock, err := s2.LockWriter(t.Context(), "repair", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	rb, err := lock.RebuildIndex(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Removed) != 0 || len(rb.Written) != 0 {
		t.Errorf("rebuild removed %v and wrote %v; want the index files kept as they are", rb.Removed, rb.Written)
	}
	if why := rb.BadHeaders[packB]; !strings.Contains(why, "name") {
		t.Errorf("rebuild: bad headers %v, want pack %s named", rb.BadHeaders, packB.Short())
	}
	if got, ok := reopen(t, dir).PackOf(b[0]); !ok || got != packB {
		t.Errorf("blob of pack %s is placed in %s (%v) after the rebuild", packB.Short(), got.Short(), ok)
	}
}

// Fix (an empty file under a pack's name): recall never writes one, so it
// is neither damage nor a pack that cannot be located: the rebuild lists
// it as foreign and leaves it.
func TestRebuildIndexEmptyPackFileIsForeign(t *testing.T) {
	dir, s := newStore(t, false)
	saveBlobs(t, s, randBytes(1, 30_000))
	s.Close()
	id := ID{0xab}
	p := filepath.Join(dir, "packs", "ab", id.String())
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	lock, err := s2.LockWriter(t.Context(), "repair", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	for _, dry := range []bool{true, false} {
		rb, err := lock.RebuildIndex(dry)
		if err != nil {
			t.Fatal(err)
		}
		if len(rb.Foreign) != 1 || rb.Foreign[0] != id || len(rb.Unlocatable) != 0 {
			t.Errorf("dry run %v: foreign %v, unlocatable %v; want the empty file foreign only", dry, rb.Foreign, rb.Unlocatable)
		}
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the empty file went: %v", err)
	}
}
