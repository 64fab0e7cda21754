package chunkstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/internal/golden"
)

var ctx = context.Background()

func TestGCPlanGolden(t *testing.T) {
	p := &gcPlan{Version: 1, Index: strings.Repeat("ab", 32), Hidden: []string{strings.Repeat("01", 32), strings.Repeat("02", 32)},
		Marked: []string{strings.Repeat("0c", 32)}, Sessions: []string{"session-00112233445566778899aabb"}, SessionsKnown: true,
		HiddenAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	b := encodePlan(p)
	golden.Check(t, "gc-plan-v1.golden", b)
	back, err := decodePlan(b)
	if err != nil || back.Index != p.Index || len(back.Hidden) != 2 || !back.SessionsKnown {
		t.Fatalf("decode: %+v, %v", back, err)
	}
	if _, err := decodePlan(bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 2`), 1)); err == nil {
		t.Error("a plan of version 2 was accepted")
	}
}

// pointMarker marks what test points list: their manifests are the blob
// ids they refer to, one hex id a line.
func pointMarker(s *Store) Marker {
	return func(ctx context.Context, points []ID, live *BlobSet) error {
		for _, p := range points {
			b, err := s.LoadPoint(p)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			for _, l := range strings.Fields(string(b)) {
				id, err := ParseID(l)
				if err != nil {
					return err
				}
				live.Add(id)
			}
		}
		return nil
	}
}

// gcBlobs saves blobs in one session of source, one pack for all, and
// commits a point listing the ones named in point (none: no point).
func gcBlobs(t *testing.T, s *Store, source string, blobs [][]byte, point ...int) ID {
	t.Helper()
	l, w := sessionWriter(t, s, source)
	defer l.Unlock()
	var ids []string
	for i, b := range blobs {
		id := s.Hash(b)
		if _, err := w.SaveBlob(DataBlob, id, b); err != nil {
			t.Fatal(err)
		}
		for _, p := range point {
			if p == i {
				ids = append(ids, id.String())
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(point) == 0 {
		return ID{}
	}
	id, err := s.SavePoint([]byte(strings.Join(ids, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestGCSteps(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			defer s.Close()
			live, dead, mixed := randBytes(1, 100_000), randBytes(2, 100_000), randBytes(3, 300_000)
			gcBlobs(t, s, "a", [][]byte{live}, 0)
			gcBlobs(t, s, "b", [][]byte{dead})
			gcBlobs(t, s, "c", [][]byte{live[:1000], mixed}, 0) // 99% dead: rewritten
			deadPack, _ := s.PackOf(s.Hash(dead))

			// A session open across the hide keeps the plan pending.
			l, err := s.LockSession(ctx, "d", "test", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Pending || len(rep.WaitingFor) != 1 || rep.WaitingFor[0].Source != "d" || rep.PacksHidden != 2 || rep.PacksRewritten != 1 {
				t.Fatalf("gc beside a session: %+v", rep)
			}
			// Hidden: readable, never deduplicated against.
			s2, err := Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			if s2.Has(s.Hash(dead)) {
				t.Error("a hidden blob is offered for deduplication")
			}
			if b, err := s2.LoadBlob(s.Hash(dead), nil); err != nil || !bytes.Equal(b, dead) {
				t.Errorf("a hidden blob does not read: %v", err)
			}
			if !s2.Has(s.Hash(live[:1000])) {
				t.Error("a live blob of a rewritten pack is not offered")
			}
			s2.Close()
			l.Unlock()

			rep, err = s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Pending || !rep.Resumed || rep.PacksDeleted != 2 {
				t.Fatalf("gc once the session ended: %+v", rep)
			}
			if s.HasPackFile(deadPack) {
				t.Error("the dead pack is still there")
			}
			s3, err := Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			for _, b := range [][]byte{live, live[:1000]} {
				if got, err := s3.LoadBlob(s.Hash(b), nil); err != nil || !bytes.Equal(got, b) {
					t.Errorf("live blob after gc: %v", err)
				}
			}
			for _, pi := range s3.Packs() {
				if pi.Problem != "" {
					t.Errorf("pack %s after gc: %s", pi.ID.Short(), pi.Problem)
				}
			}
			// The same dead data stored again is stored anew, and reads.
			gcBlobs(t, s3, "b", [][]byte{dead}, 0)
			s4, _ := Open(dir, OpenOptions{Password: "pw"})
			defer s4.Close()
			if got, err := s4.LoadBlob(s.Hash(dead), nil); err != nil || !bytes.Equal(got, dead) {
				t.Errorf("blob stored again after its pack was collected: %v", err)
			}
		})
	}
}

// A plan whose index file was never written (killed between the two)
// hid nothing: the next collection drops it and collects afresh.
func TestGCDropsPlanWithoutIndex(t *testing.T) {
	_, s := newStore(t, false)
	defer s.Close()
	gcBlobs(t, s, "a", [][]byte{randBytes(1, 50_000)}, 0)
	pack, _ := s.PackOf(s.Hash(randBytes(1, 50_000)))
	if err := s.savePlan(ctx, &gcPlan{Version: 1, Index: strings.Repeat("ee", 32), Hidden: []string{pack.String()}}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 0 || !s.HasPackFile(pack) {
		t.Fatalf("a plan with no index file deleted a live pack: %+v", rep)
	}
	if p, _ := s.loadPlan(ctx); p != nil {
		t.Error("the plan stays")
	}
}

func TestGCLocks(t *testing.T) {
	cases := []struct {
		name string
		hold func(s *Store) (func(), error)
		want error
	}{
		{"exclusive lock", func(s *Store) (func(), error) {
			l, err := s.LockExclusive(ctx, "repair", 0, nil)
			return func() { l.Unlock() }, err
		}, ErrLocked},
		{"another gc", func(s *Store) (func(), error) {
			u, err := s.be.Lock(ctx, gcLock, backend.Exclusive, []byte(`{"pid":1}`))
			return func() { u.Unlock() }, err
		}, ErrGCRunning},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, s := newStore(t, false)
			defer s.Close()
			release, err := c.hold(s)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.GC(ctx, pointMarker(s), GCOptions{})
			release()
			if !errors.Is(err, c.want) {
				t.Fatalf("gc while held: %v, want %v", err, c.want)
			}
			if _, err := s.GC(ctx, pointMarker(s), GCOptions{}); err != nil {
				t.Fatalf("gc once released: %v", err)
			}
		})
	}
}

// A session's registration lists it while it runs; one whose holder died
// is found dead and removed; an ended session leaves none.
func TestSessionRegistrations(t *testing.T) {
	_, s := newStore(t, false)
	defer s.Close()
	l, err := s.LockSession(ctx, "src", "backup of src", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.liveSessions(ctx)
	if err != nil || len(got) != 1 || got[0].Source != "src" || got[0].Purpose != "backup of src" {
		t.Fatalf("sessions while one runs: %+v, %v", got, err)
	}
	l.Unlock()
	// A registration whose holder died: its lock can be taken.
	name := sessionPrefix + hex.EncodeToString([]byte("dead-holder!"))
	u, err := s.be.Lock(ctx, name, backend.Exclusive, nil)
	if err != nil {
		t.Fatal(err)
	}
	u.Unlock()
	if got, err := s.liveSessions(ctx); err != nil || len(got) != 0 {
		t.Fatalf("sessions after the end and a death: %+v, %v", got, err)
	}
	var left []string
	s.be.List(ctx, backend.Locks, func(n string, _ int64) error {
		if strings.HasPrefix(n, sessionPrefix) {
			left = append(left, n)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("registrations left: %v", left)
	}
}

// A collection killed between committing a rewritten pack and writing
// its index file (here: the index file's save fails) leaves a journal
// entry, and the next collection indexes that pack and counts it, so no
// pack stays that no index file covers and no collection would collect:
// what made a store collected after many kills stay larger than a fresh
// one.
func TestGCAdoptsRewriteLeftUnindexed(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	live, mixed := randBytes(1, 100_000), randBytes(3, 300_000)
	gcBlobs(t, s, "a", [][]byte{live[:1000], mixed}, 0) // 99% dead: rewritten
	f := faultsOf(t, s)
	f.FailAt(faulty.Save, backend.Index, 1, nil)
	if _, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1}); err == nil {
		t.Fatal("gc with its index file failing: no error")
	}
	f.Clear()
	var journal []string
	backend.ListNames(ctx, f, backend.Journal, func(n string) error { journal = append(journal, n); return nil })
	if len(journal) != 1 || !strings.HasPrefix(journal[0], gcTempTag+".") {
		t.Fatalf("journal after the failed rewrite: %q, want one entry of the collection's", journal)
	}
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted == 0 {
		t.Fatalf("the next gc deleted nothing: %+v", rep)
	}
	journal = nil
	backend.ListNames(ctx, f, backend.Journal, func(n string) error { journal = append(journal, n); return nil })
	if len(journal) != 0 {
		t.Errorf("journal after the next gc: %q", journal)
	}
	s2, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	packs := 0
	for _, pi := range s2.Packs() {
		packs++
		if pi.Problem != "" {
			t.Errorf("pack %s: %s", pi.ID.Short(), pi.Problem)
		}
	}
	if packs != 1 {
		t.Errorf("%d packs after the collections; want the one holding the live blob", packs)
	}
	if b, err := s2.LoadBlob(s.Hash(live[:1000]), nil); err != nil || !bytes.Equal(b, live[:1000]) {
		t.Errorf("live blob: %v", err)
	}
}

// A collection on a full store that must rewrite packs to free their dead
// data says how much room the live data it copies needs, and that a repack
// threshold above 100% deletes the wholly dead packs without it; that run
// does, with the store still full: "free space or move the store" alone
// is no answer to a person running gc to free space.
func TestGCFullStoreSaysRoomNeeded(t *testing.T) {
	_, s := newStore(t, false)
	defer s.Close()
	live, mixed, dead := randBytes(1, 40_000), randBytes(2, 300_000), randBytes(3, 200_000)
	gcBlobs(t, s, "a", [][]byte{live, mixed}, 0) // mostly dead: rewritten
	gcBlobs(t, s, "b", [][]byte{dead})           // dead: deleted
	deadPack, _ := s.PackOf(s.Hash(dead))
	f := faultsOf(t, s)
	f.FailAt(faulty.Write, backend.Packs, 0, backend.ErrNoSpace)
	f.FailAt(faulty.Save, backend.Packs, 0, backend.ErrNoSpace)
	_, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1})
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("gc on a full store: %v, want a full store's error", err)
	}
	for _, want := range []string{"needs about 39 KiB free", "--repack-threshold 101", "frees 195 KiB now (1 packs)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("gc on a full store: %v\nwant it to say %q", err, want)
		}
	}
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: -1, RepackThreshold: 1.01})
	if err != nil {
		t.Fatalf("gc that rewrites nothing, on the full store: %v", err)
	}
	if rep.PacksRewritten != 0 || rep.PacksDeleted != 1 || s.HasPackFile(deadPack) {
		t.Errorf("gc that rewrites nothing: %+v", rep)
	}
}

// A reader that loaded the index before a collection rewrote a pack
// (a mount running for days, a long restore or verify, a copy's source:
// none takes a session) reads the pack's live blobs from their new pack.
// Before, it read "pack file is missing" until the process started again:
// the mount gave EIO for a directory whose tree was moved, and verify and
// restore reported damage that was not there.
func TestReaderFollowsRewrittenPack(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		live, dead := randBytes(1, 2000), randBytes(2, 300_000)
		gcBlobs(t, s, "a", [][]byte{live, dead}, 0) // one pack; the point keeps live only
		old, _ := s.PackOf(s.Hash(live))
		r := reopen(t, dir) // the reader, with the index as it is now
		g := reopen(t, dir)
		rep, err := g.GC(ctx, pointMarker(g), GCOptions{IndexGrace: -1, RepackThreshold: 0.5})
		if err != nil || rep.PacksRewritten != 1 || g.HasPackFile(old) {
			t.Fatalf("encrypted=%v: gc: %+v, %v", enc, rep, err)
		}
		b, err := r.LoadBlob(s.Hash(live), nil)
		if err != nil || !bytes.Equal(b, live) {
			t.Fatalf("encrypted=%v: the reader's live blob after the rewrite: %v", enc, err)
		}
		if p, _ := r.PackOf(s.Hash(live)); p == old {
			t.Errorf("encrypted=%v: the reader still places the blob in the deleted pack", enc)
		}
	}
}
