package chunkstore

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/golden"
)

func TestGCLeftoversGolden(t *testing.T) {
	r := &gcLeftovers{Version: 1, Seen: map[string]time.Time{
		journalName(sessionTag("big"), ID{1, 2, 3}): time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		journalName(journalExclusive, ID{4, 5, 6}):  time.Date(2026, 11, 30, 8, 30, 0, 0, time.UTC),
	}}
	golden.Check(t, "gc-leftovers-v1.golden", encodeLeftovers(r))
}

// The packs a write session that stopped left in its journal (a full
// store: no index file, no point) are adopted by a collection once their
// grace has passed, and collected like any unreferenced pack; while the
// grace runs they are reported as kept, not "nothing to collect" for
// good when the source is never backed up again.
func TestGCCollectsStoppedSessionsPacks(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			defer s.Close()
			live := randBytes(1, 50_000)
			gcBlobs(t, s, "keep", [][]byte{live}, 0)
			left := interruptedSession(t, s, "big", randBytes(2, 200_000))
			pack, _ := s.PackOf(left)
			if len(journalNames(t, s)) != 1 {
				t.Fatalf("journal: %q", journalNames(t, s))
			}

			// A dry run says what the collections below do, and changes
			// nothing: no adoption, no record of the entries it saw.
			dry := func(s *Store, grace time.Duration, adopt, keep int) {
				t.Helper()
				rep, err := s.GC(ctx, pointMarker(s), GCOptions{DryRun: true, IndexGrace: grace})
				if err != nil {
					t.Fatal(err)
				}
				if rep.PacksAdopted != adopt || rep.LeftoverPacks != keep || keep > 0 && rep.LeftoverBytes < 200_000 {
					t.Errorf("dry run, grace %v: %+v", grace, rep)
				}
			}
			dry(s, 0, 0, 1)
			dry(s, time.Nanosecond, 0, 1) // seen first now
			if _, err := s.be.Load(ctx, gcHandle(gcLeftoversName), 0, -1, nil); err == nil || len(journalNames(t, s)) != 1 {
				t.Fatalf("a dry run wrote its record (%v) or adopted the journal", err)
			}

			rep, err := s.GC(ctx, pointMarker(s), GCOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.PacksDeleted != 0 || rep.LeftoverPacks != 1 || rep.LeftoverBytes < 200_000 || rep.LeftoverUntil.Before(time.Now().Add(50*time.Minute)) {
				t.Fatalf("gc within the grace: %+v", rep)
			}
			if !s.HasPackFile(pack) || len(journalNames(t, s)) != 1 {
				t.Fatal("the kept pack or its journal entry went")
			}

			// The grace, first counted from the collection above, is
			// over for a collection given a shorter one.
			s2 := reopen(t, dir)
			dry(s2, time.Nanosecond, 1, 0)
			rep, err = s2.GC(ctx, pointMarker(s2), GCOptions{IndexGrace: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			if rep.PacksAdopted != 1 || rep.PacksDeleted != 1 || s2.HasPackFile(pack) {
				t.Fatalf("gc after the grace: %+v", rep)
			}
			if j := journalNames(t, s2); len(j) != 0 {
				t.Errorf("journal after the collection: %q", j)
			}
			if _, err := s2.be.Load(ctx, gcHandle(gcLeftoversName), 0, -1, nil); err == nil {
				t.Error("the record of found entries stays with none left")
			}
			s3 := reopen(t, dir)
			if b, err := s3.LoadBlob(s3.Hash(live), nil); err != nil || !bytes.Equal(b, live) {
				t.Errorf("live blob: %v", err)
			}
			for _, pi := range s3.Packs() {
				if pi.Problem != "" {
					t.Errorf("pack %s: %s", pi.ID.Short(), pi.Problem)
				}
			}
		})
	}
}

// A journal whose session runs (its source's lock is held) is its own:
// no collection adopts it, whatever the grace, and its packs stay.
func TestGCLeavesRunningSessionsJournal(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	l, w := sessionWriter(t, s, "busy")
	data := randBytes(3, 100_000)
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	finishWithoutIndex(t, w)
	pack, _ := s.PackOf(id)
	s2 := reopen(t, dir)
	rep, err := s2.GC(ctx, pointMarker(s2), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksAdopted != 0 || rep.LeftoverPacks != 0 || rep.PacksDeleted != 0 || !s2.HasPackFile(pack) {
		t.Fatalf("gc beside the running session: %+v", rep)
	}
	if j := journalNames(t, s2); len(j) != 1 || !strings.HasPrefix(j[0], sessionTag("busy")+".") {
		t.Fatalf("journal of the running session: %q", j)
	}
	// The session ends without indexing the pack (killed): now it goes.
	l.Unlock()
	rep, err = s2.GC(ctx, pointMarker(s2), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksAdopted != 1 || rep.PacksDeleted != 1 || s2.HasPackFile(pack) {
		t.Fatalf("gc once the session ended: %+v", rep)
	}
}

// A session killed while its pack was whole in its temp area and another
// was being built: once the grace is over, a collection adopts the whole
// one as the source's next run would (and collects it: no point uses
// it), removes the temp area with the one cut short, and counts it;
// before, the temp area stayed until that source ran again, for good if
// it never did. A dry run says so and changes nothing.
func TestGCRemovesStoppedSessionsTemp(t *testing.T) {
	dir, s := newStore(t, false)
	s.Close()
	temp, pack := killedAtPackCommit(t, dir)
	// Named as the backend names what it builds (packs-<digits>): only
	// such files are recall's to remove from tmp/.
	partial := filepath.Join(filepath.Dir(temp), "packs-4242424242")
	if err := os.WriteFile(partial, randBytes(5, 30_000), 0o600); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, dir)
	rep, err := s.GC(ctx, pointMarker(s), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TempRemoved != 0 || rep.LeftoverBytes < 30_000 {
		t.Errorf("within the grace: %+v", rep)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("within the grace the temp area went: %v", err)
	}
	rep, err = s.GC(ctx, pointMarker(s), GCOptions{DryRun: true, IndexGrace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TempRemoved < 30_000 {
		t.Errorf("dry run: %+v", rep)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("the dry run removed the temp area: %v", err)
	}
	rep, err = s.GC(ctx, pointMarker(s), GCOptions{IndexGrace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksAdopted != 1 || rep.PacksDeleted != 1 || rep.TempRemoved != 30_000 || rep.Freed < 30_000+50_000 {
		t.Errorf("after the grace: %+v", rep)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "tmp", "*")); len(left) != 0 {
		t.Errorf("temp area left: %v", left)
	}
	if s.HasPackFile(pack) {
		t.Error("the adopted pack, which no point uses, was not collected")
	}
	if j := journalNames(t, s); len(j) != 0 {
		t.Errorf("journal: %q", j)
	}
}

// The packs a stopped session left, adopted by the source's next run
// which then stops too (two backups killed in a row), are kept for the
// run after, like the second one's own: before, the adopting session
// dropped their journal entries, so they were indexed, unreferenced, and
// deleted by the next collection at once; the third run sent them again
// (568 MiB after two killed backups, in a try). A collection beside the
// adopting session keeps them too, whatever the grace; the session's
// point ends the keeping, and what the point does not use goes.
func TestGCKeepsPacksAdoptedBySessionThatStopped(t *testing.T) {
	dir, s := newStore(t, false)
	defer s.Close()
	first := randBytes(1, 200_000)
	interruptedSession(t, s, "big", first)
	packA, _ := s.PackOf(s.Hash(first))

	// The second run adopts the first one's pack, writes its own and
	// stops before a point; a collection meanwhile keeps both, even with
	// no grace: that session is running.
	l, w := sessionWriter(t, s, "big")
	if !s.Has(s.Hash(first)) {
		t.Fatal("the second run did not adopt the first one's pack")
	}
	second := randBytes(2, 200_000)
	if _, err := w.SaveBlob(DataBlob, s.Hash(second), second); err != nil {
		t.Fatal(err)
	}
	finishWithoutIndex(t, w)
	packB, _ := s.PackOf(s.Hash(second))
	g := reopen(t, dir)
	rep, err := g.GC(ctx, pointMarker(g), GCOptions{IndexGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 0 || !g.HasPackFile(packA) || !g.HasPackFile(packB) {
		t.Fatalf("gc beside the adopting session deleted its packs: %+v", rep)
	}
	l.Unlock()

	// Both stopped now: a collection within the grace keeps both packs
	// for the next run, the adopted one included.
	g = reopen(t, dir)
	rep, err = g.GC(ctx, pointMarker(g), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 0 || rep.LeftoverPacks != 2 || !g.HasPackFile(packA) || !g.HasPackFile(packB) {
		t.Fatalf("gc within the grace after two stopped runs: %+v", rep)
	}

	// The third run reuses both and commits a point that uses the first
	// run's blob only: after it, a collection keeps that pack (live)
	// and deletes the other at once, its grace being over.
	r := reopen(t, dir)
	l, _ = sessionWriter(t, r, "big")
	if !r.Has(s.Hash(first)) || !r.Has(s.Hash(second)) {
		t.Fatal("the third run does not find the packs the stopped ones left")
	}
	if _, err := l.SavePoint([]byte(s.Hash(first).String())); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if j := journalNames(t, r); len(j) != 0 {
		t.Fatalf("journal after the third run's point: %q", j)
	}
	g = reopen(t, dir)
	rep, err = g.GC(ctx, pointMarker(g), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 1 || !g.HasPackFile(packA) || g.HasPackFile(packB) {
		t.Fatalf("gc after the point: %+v", rep)
	}
}
