package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/zeebo/blake3"
)

// Readers never list packs: opening a store with index files and
// refreshing it find new blobs from new index files alone. A writer walks
// the packs once per lock, however many writers it makes; a reader walks
// them once, for a blob no index file lists.
func TestRefreshListsNoPacks(t *testing.T) {
	dir, s := newStore(t, false)
	saveBlobs(t, s, randBytes(1, 10_000))
	fb := faulty.New(local.Open(dir))
	r, err := OpenBackend(fb, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	packLists := func() int { return fb.CallsOn(faulty.List, backend.Packs) }

	data := randBytes(2, 10_000)
	id := saveBlobs(t, s, data)[0]
	if r.Has(id) {
		t.Fatal("the reader knows a blob before it refreshed")
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a blob of a new index file after Refresh: %v", err)
	}
	if n := packLists(); n != 0 {
		t.Errorf("open and refresh listed the packs %d times", n)
	}

	// A pack no index file lists (a writer interrupted before its index
	// file): the reader finds it with one walk, when a lookup misses.
	lock, w, odata, oid := saveRandom(t, s, 3, 20_000)
	finishWithoutIndex(t, w)
	lock.Unlock()
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.LoadBlob(oid, nil); err != nil || !bytes.Equal(got, odata) {
		t.Fatalf("a blob of an unindexed pack: %v", err)
	}
	if _, err := r.LoadBlob(testID(9), nil); err == nil {
		t.Fatal("an absent blob loaded")
	}
	if n := packLists(); n != 1 {
		t.Errorf("the reader walked the packs %d times, want once", n)
	}

	l, err := r.LockWriter(bg, "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w, err := l.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		w.Flush()
	}
	l.Unlock()
	if n := packLists(); n != 2 {
		t.Errorf("three writers of one lock: %d pack walks in all, want one more", n)
	}
}

// synthStore builds a plaintext store in dir with n tiny packs of one
// blob each, covered by index files of indexEvery packs, as fast as it
// can (no fsync: it is a fixture).
func synthStore(tb testing.TB, dir string, n int) *keys {
	tb.Helper()
	if _, err := Init(dir, InitOptions{}); err != nil {
		tb.Fatal(err)
	}
	k := &keys{}
	var recs []packRecord
	flush := func() {
		b := encodeIndexFile(recs, k)
		if err := os.WriteFile(filepath.Join(dir, "index", ID(blake3.Sum256(b)).String()), b, 0o600); err != nil {
			tb.Fatal(err)
		}
		recs = recs[:0]
	}
	for i := range n {
		blob := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), uint64(i))
		blob = append(blob, "synthetic"...)
		e := PackEntry{Type: DataBlob, Offset: 0, Length: uint32(len(blob)), RawLength: uint32(len(blob)), ID: blake3.Sum256(blob)}
		hdr := encodePackHeader([]PackEntry{e}, k)
		id := packName(hdr)
		h := id.String()
		if err := os.WriteFile(filepath.Join(dir, "packs", h[:2], h), append(blob, hdr...), 0o600); err != nil {
			tb.Fatal(err)
		}
		recs = append(recs, packRecord{id: id, entries: []PackEntry{e}})
		if len(recs) == indexEvery {
			flush()
		}
	}
	if len(recs) > 0 {
		flush()
	}
	return k
}

// BenchmarkRefreshNewPoint: a store of 10^5 tiny packs (with their index
// files) gets a new pack, index file and point; a reader (a mount) picks
// them up with Refresh and ListPoints. The target is under 1 s; the
// "with-pack-walk" case is what every refresh cost when it walked the
// packs, for comparison.
//
//	go test -run '^$' -bench RefreshNewPoint -benchtime 20x ./chunkstore
func BenchmarkRefreshNewPoint(b *testing.B) {
	const packs = 100_000
	dir := filepath.Join(b.TempDir(), "store")
	start := time.Now()
	synthStore(b, dir, packs)
	b.Logf("built %d packs in %v", packs, time.Since(start))
	s, err := Open(dir, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w, err := Open(dir, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	seq := 0
	// addPoint writes what a small backup writes: a pack, its index file,
	// a point manifest.
	addPoint := func() (ID, ID) {
		seq++
		l, err := w.LockSession(bg, "bench", "bench", 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Unlock()
		wr := w.newWriter("")
		data := []byte(fmt.Sprintf("new blob %d", seq))
		id := w.Hash(data)
		if _, err := wr.SaveBlob(DataBlob, id, data); err != nil {
			b.Fatal(err)
		}
		if err := wr.Flush(); err != nil {
			b.Fatal(err)
		}
		pt, err := w.SavePoint([]byte(fmt.Sprintf("point %d", seq)))
		if err != nil {
			b.Fatal(err)
		}
		return id, pt
	}
	pickUp := func(b *testing.B, walk bool) {
		for b.Loop() {
			b.StopTimer()
			id, pt := addPoint()
			b.StartTimer()
			if err := s.Refresh(); err != nil {
				b.Fatal(err)
			}
			if walk {
				if err := s.walkPacks(); err != nil {
					b.Fatal(err)
				}
			}
			pts, err := s.ListPoints()
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			found := false
			for _, p := range pts {
				found = found || p == pt
			}
			if !found || !s.Has(id) {
				b.Fatalf("refresh did not pick up the new point (%v) or blob (%v)", found, s.Has(id))
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pickup")
	}
	b.Run("refresh", func(b *testing.B) { pickUp(b, false) })
	b.Run("with-pack-walk", func(b *testing.B) { pickUp(b, true) })
}

// coldBackend records what it is asked to warm up.
type coldBackend struct {
	backend.Backend
	warmed []backend.Handle
}

func (c *coldBackend) Warm(_ context.Context, hs []backend.Handle) error {
	c.warmed = append(c.warmed, hs...)
	return nil
}

// A cold backend is asked to warm the packs a reader names; others have
// nothing to do.
func TestWarmPacks(t *testing.T) {
	dir, s := newStore(t, false)
	id := saveBlobs(t, s, randBytes(1, 1000))[0]
	pack, _ := s.PackOf(id)
	if err := s.WarmPacks(bg, []ID{pack}); err != nil {
		t.Fatalf("warm up on a local store: %v", err)
	}
	cold := &coldBackend{Backend: local.Open(dir)}
	c, err := OpenBackend(cold, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WarmPacks(bg, []ID{pack}); err != nil {
		t.Fatal(err)
	}
	if len(cold.warmed) != 1 || cold.warmed[0] != packHandle(pack) {
		t.Errorf("warmed %v, want pack %s", cold.warmed, pack)
	}
}
