package chunkstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// The name of a journal entry is its whole format (journal.go).
func TestJournalEntryName(t *testing.T) {
	var pack ID
	for i := range pack {
		pack[i] = byte(i)
	}
	tag := "source-00112233445566778899aabbccddeeff"
	const want = "source-00112233445566778899aabbccddeeff.000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	if got := journalName(tag, pack); got != want {
		t.Fatalf("journal entry name %q, want %q", got, want)
	}
	if gt, gp, ok := parseJournalName(want); !ok || gt != tag || gp != pack {
		t.Errorf("parse %q: %q %v %v", want, gt, gp, ok)
	}
	for _, bad := range []string{"", "x", "." + pack.String(), "tag." + pack.String()[1:], "tag.", pack.String()} {
		if _, _, ok := parseJournalName(bad); ok {
			t.Errorf("%q parsed as a journal entry", bad)
		}
	}
}

// journalNames lists the entries of the store's journal.
func journalNames(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	if err := backend.ListNames(bg, s.be, backend.Journal, func(n string) error { out = append(out, n); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// sessionWriter takes a write session of source in s and returns its lock,
// which the caller unlocks, and its first writer: by then it has adopted
// what an interrupted session of the source left.
func sessionWriter(t *testing.T, s *Store, source string) (*Lock, *Writer) {
	t.Helper()
	l, err := s.LockSession(bg, source, "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.NewWriter()
	if err != nil {
		l.Unlock()
		t.Fatal(err)
	}
	return l, w
}

func indexFileCount(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// interruptedSession saves one blob in a session of source whose pack
// becomes visible but gets no index file, as a backup killed between the
// two leaves it.
func interruptedSession(t *testing.T, s *Store, source string, data []byte) ID {
	t.Helper()
	l, w := sessionWriter(t, s, source)
	defer l.Unlock()
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	finishWithoutIndex(t, w)
	return id
}

// openFaulty opens the store in dir over a fault wrapper, to count calls.
func openFaulty(t *testing.T, dir string) (*Store, *faulty.Backend) {
	t.Helper()
	fb := faulty.New(local.Open(dir))
	s, err := OpenBackend(fb, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fb
}

// A session's first writer indexes what an interrupted session of its own
// source left, from the journal, without listing the packs; another
// source's leftovers are not touched (that session may be running); the
// exclusive lock adopts those and clears every journal.
func TestSessionAdoptsItsJournalOnly(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		saveBlobs(t, s, randBytes(1, 5000))
		a := interruptedSession(t, s, "a", randBytes(2, 5000))
		b := interruptedSession(t, s, "b", randBytes(3, 5000))
		if n := len(journalNames(t, s)); n != 2 {
			t.Fatalf("encrypted=%v: %d journal entries after two interrupted sessions, want 2", enc, n)
		}

		r, fb := openFaulty(t, dir)
		if r.Has(a) || r.Has(b) {
			t.Fatal("a reader that did not walk knows unindexed packs")
		}
		files := indexFileCount(t, dir)
		l, _ := sessionWriter(t, r, "a")
		// Until the session commits a point, the adopted pack's entry
		// stays (a session that stops too leaves it to the next run).
		if names := journalNames(t, r); len(names) != 2 {
			t.Errorf("encrypted=%v: journal before session a's point: %v, want both entries", enc, names)
		}
		if _, err := l.SavePoint([]byte("point of a")); err != nil {
			t.Fatal(err)
		}
		l.Unlock()
		if n := fb.CallsOn(faulty.List, backend.Packs); n != 0 {
			t.Errorf("encrypted=%v: a session listed the packs %d times", enc, n)
		}
		if !r.Has(a) || r.Has(b) {
			t.Errorf("encrypted=%v: after session a: Has(a) %v, Has(b) %v; want true, false", enc, r.Has(a), r.Has(b))
		}
		if got := indexFileCount(t, dir); got != files+1 {
			t.Errorf("encrypted=%v: %d index files, want %d (one for the adopted pack)", enc, got, files+1)
		}
		if names := journalNames(t, r); len(names) != 1 || !strings.HasPrefix(names[0], sessionTag("b")+".") {
			t.Errorf("encrypted=%v: journal after session a: %v, want b's entry alone", enc, names)
		}
		if r2 := reopen(t, dir); !r2.Has(a) {
			t.Errorf("encrypted=%v: the adopted pack's index file is not durable", enc)
		}

		x, err := r.LockExclusive(bg, "test", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.NewWriter(); err != nil {
			t.Fatal(err)
		}
		x.Unlock()
		if names := journalNames(t, r); len(names) != 0 {
			t.Errorf("encrypted=%v: journal after the exclusive lock: %v", enc, names)
		}
		if r3 := reopen(t, dir); !r3.Has(b) {
			t.Errorf("encrypted=%v: the exclusive lock did not index b's leftover", enc)
		}
	}
}

// In a long-lived process (a server), a pack an earlier session finished
// without its index file is known to the index in memory; the next
// session of the source still writes its index file.
func TestSessionAdoptsInProcessLeftover(t *testing.T) {
	dir, s := newStore(t, false)
	id := interruptedSession(t, s, "a", randBytes(1, 5000))
	files := indexFileCount(t, dir)
	l, _ := sessionWriter(t, s, "a")
	if _, err := l.SavePoint([]byte("point")); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if got := indexFileCount(t, dir); got != files+1 {
		t.Errorf("%d index files, want %d", got, files+1)
	}
	if names := journalNames(t, s); len(names) != 0 {
		t.Errorf("journal: %v", names)
	}
	if !reopen(t, dir).Has(id) {
		t.Error("the leftover is not indexed durably")
	}
}

// An entry whose pack an index file covers (the removal failed, or a
// power cut undid it) is dropped without another index file; an entry
// whose pack never became visible (the commit failed) is dropped too.
func TestJournalEntryOfIndexedPackDropped(t *testing.T) {
	dir, s := newStore(t, false)
	fb := faultsOf(t, s)
	fb.FailAt(faulty.Remove, backend.Journal, 0, nil)
	l, w := sessionWriter(t, s, "a")
	data := randBytes(1, 5000)
	if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("flush with journal removals failing: %v", err)
	}
	fb.Clear()
	fb.FailAt(faulty.Commit, backend.Packs, 1, nil)
	w, err := l.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	data2 := randBytes(2, 5000)
	w.SaveBlob(DataBlob, s.Hash(data2), data2)
	if err := w.Flush(); err == nil {
		t.Fatal("flush with the pack's commit failing succeeded")
	}
	l.Unlock()
	fb.Clear()
	if n := len(journalNames(t, s)); n != 2 {
		t.Fatalf("%d journal entries, want 2 (an indexed pack's, an uncommitted pack's)", n)
	}

	r, _ := openFaulty(t, dir)
	files := indexFileCount(t, dir)
	l, _ = sessionWriter(t, r, "a")
	// The uncommitted pack's entry is dropped at once; the indexed
	// pack's stays until the session commits a point.
	if names := journalNames(t, r); len(names) != 1 {
		t.Errorf("journal in the next session: %v, want the indexed pack's entry", names)
	}
	if _, err := l.SavePoint([]byte("point")); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if names := journalNames(t, r); len(names) != 0 {
		t.Errorf("journal after the next session: %v", names)
	}
	if got := indexFileCount(t, dir); got != files {
		t.Errorf("%d index files, want %d: nothing needed indexing", got, files)
	}
	if !r.Has(s.Hash(data)) || r.Has(s.Hash(data2)) {
		t.Errorf("Has = %v, %v; want true, false", r.Has(s.Hash(data)), r.Has(s.Hash(data2)))
	}
}

// A writer writes an index file every indexEvery finished packs, so a
// session's journal holds about that many entries at most; Flush leaves
// none.
func TestJournalBoundedBySession(t *testing.T) {
	old := PackTargetSize
	PackTargetSize = 1 // a pack per blob
	t.Cleanup(func() { PackTargetSize = old })
	dir, s := newStore(t, false)
	l, w := sessionWriter(t, s, "a")
	defer l.Unlock()
	const blobs = indexEvery + 40
	for i := range blobs {
		data := randBytes(int64(i), 100)
		if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
			t.Fatal(err)
		}
	}
	w.finishing.Wait()
	if n := len(journalNames(t, s)); n != blobs-indexEvery {
		t.Errorf("%d journal entries after %d packs, want %d", n, blobs, blobs-indexEvery)
	}
	if n := indexFileCount(t, dir); n != 1 {
		t.Errorf("%d index files before Flush, want 1", n)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(journalNames(t, s)); n != 0 {
		t.Errorf("%d journal entries after Flush", n)
	}
}

// Without a pack walk, a session still does not deduplicate against a
// blob whose pack is missing or cut short: Has stats each pack the first
// time it would answer from it, once per pack and session.
func TestSessionDedupChecksPackOnce(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		data := [][]byte{randBytes(1, 70_000), randBytes(2, 70_000), randBytes(3, 70_000)}
		ids := saveBlobs(t, s, data...)
		other := saveBlobs(t, s, randBytes(4, 1000))[0]
		p, e := blobPlace(t, s, ids[1])
		if err := os.Truncate(p, int64(e.Offset)+int64(e.Length)-1); err != nil {
			t.Fatal(err)
		}

		r, fb := openFaulty(t, dir)
		l, w := sessionWriter(t, r, "src")
		stats := func() int { return fb.CallsOn(faulty.Stat, backend.Packs) }
		for i, want := range []bool{false, true, true} {
			if fresh, err := w.SaveBlob(DataBlob, ids[i], data[i]); err != nil || fresh != want {
				t.Errorf("encrypted=%v: blob %d of the truncated pack: stored anew %v, %v; want %v", enc, i, fresh, err, want)
			}
		}
		for range 3 {
			if !r.Has(other) {
				t.Error("a blob of a healthy pack does not count")
			}
		}
		if n := stats(); n != 2 {
			t.Errorf("encrypted=%v: %d stats of packs, want 2 (each pack deduplicated against, once)", enc, n)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		l.Unlock()
		if n := fb.CallsOn(faulty.List, backend.Packs); n != 0 {
			t.Errorf("encrypted=%v: the session listed the packs %d times", enc, n)
		}

		// The next session of this process learns afresh: a pack removed
		// since is not deduplicated against.
		op, _ := blobPlace(t, r, other)
		if err := os.Remove(op); err != nil {
			t.Fatal(err)
		}
		l, _ = sessionWriter(t, r, "src")
		if r.Has(other) {
			t.Errorf("encrypted=%v: a blob whose pack was removed counts as stored in the next session", enc)
		}
		l.Unlock()
	}
}

// A reader that never walked the packs reads a blob whose first place is
// in a pack that was removed from its other place: the read finds the
// pack missing, records it, and tries the next place.
func TestReadFallsBackFromMissingPack(t *testing.T) {
	for seed := int64(1); ; seed++ {
		if seed > 20 {
			t.Fatal("no seed put the lost place first; the test cannot tell")
		}
		dir, s := newStore(t, false)
		a := randBytes(seed, 5000)
		id := saveBlobs(t, s, a)[0]
		p1, _ := blobPlace(t, s, id)
		flipAt(t, p1, 100)
		if _, err := s.LoadBlob(id, nil); err == nil {
			t.Fatal("a flipped blob loaded")
		}
		saveBlobs(t, s, a, randBytes(seed+100, 5000)) // stored again, beside another blob
		// The pack is gone and its damage record with it: only a read
		// can tell that the first place is lost.
		if err := os.Remove(p1); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "damaged")); err != nil {
			t.Fatal(err)
		}
		r, fb := openFaulty(t, dir)
		if pack, _ := r.PackOf(id); r.packPath(pack) != p1 {
			continue // the good place comes first: nothing to fall back from
		}
		// Readers beside each other that all find the pack missing all
		// fall back, not only the one that learns it first. Fresh
		// readers each round: the first read of each learns.
		for round := range 20 {
			rr, _ := openFaulty(t, dir)
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, 8)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					got, err := rr.LoadBlob(id, nil)
					if err == nil && string(got) != string(a) {
						err = fmt.Errorf("wrong content")
					}
					errs[i] = err
				}()
			}
			close(start)
			wg.Wait()
			rr.Close()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("seed %d, round %d: reader %d of 8 at once: %v", seed, round, i, err)
				}
			}
		}
		if got, err := r.LoadBlob(id, nil); err != nil || string(got) != string(a) {
			t.Fatalf("seed %d: blob with its first place in a removed pack: %v", seed, err)
		}
		if pack, _ := r.PackOf(id); r.packPath(pack) == p1 {
			t.Error("the removed pack is still taken for the blob's place")
		}
		if n := fb.CallsOn(faulty.List, backend.Packs); n != 0 {
			t.Errorf("the reader listed the packs %d times", n)
		}
		return
	}
}
