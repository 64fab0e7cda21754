package engine

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// TestReadShareRotation: any ceil(100/share) runs in a row read every
// pack exactly once, and each run reads about its share.
func TestReadShareRotation(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	ids := make([]chunkstore.ID, 20000)
	for i := range ids {
		rng.Read(ids[i][:])
	}
	for _, c := range []struct {
		percent, runs int
	}{{1, 100}, {7, 15}, {10, 10}, {30, 4}, {33, 4}, {50, 2}, {99, 2}, {100, 1}, {0, 1}} {
		s := ReadShare{Percent: c.percent}
		if s.Buckets() != c.runs {
			t.Errorf("%d%%: %d runs to read every pack, want %d", c.percent, s.Buckets(), c.runs)
			continue
		}
		for _, first := range []uint64{0, 3, 1<<40 + 7} {
			reads := make([]int, len(ids))
			for k := range uint64(c.runs) {
				s.Run = first + k
				n := 0
				for i, id := range ids {
					if s.Reads(id) {
						reads[i]++
						n++
					}
				}
				// Even buckets: 1/runs of the packs, within five standard
				// deviations of a binomial draw.
				want := float64(len(ids)) / float64(c.runs)
				if dev := math.Abs(float64(n) - want); dev > 5*math.Sqrt(want)+1 {
					t.Errorf("%d%% run %d: read %d packs, want about %.0f", c.percent, s.Run, n, want)
				}
			}
			for i, n := range reads {
				if n != 1 {
					t.Fatalf("%d%% runs %d..%d: pack %d read %d times, want once", c.percent, first, first+uint64(c.runs)-1, i, n)
				}
			}
		}
	}
}

// TestVerifyReadShareFindsFlippedByte: a byte flipped inside a data blob
// is found by the run whose share holds its pack, by no other run (their
// structure check cannot see it), and by a full --read-data.
func TestVerifyReadShareFindsFlippedByte(t *testing.T) {
	ds := newDamageStore(t, false)
	path, off, length := ds.packOf(ds.node("d1/f2").Extents[0].ID)
	pack, err := chunkstore.ParseID(filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	flip(t, path, off+length/2)
	packs := 0
	if err := ds.open().st.ListPacks(func(chunkstore.ID, int64) error { packs++; return nil }); err != nil {
		t.Fatal(err)
	}
	// Start the rotation just after the pack's run, so that it is the
	// last of the runs that together read every pack.
	share := ReadShare{Percent: 25}
	first := packBucket(pack, uint64(share.Buckets())) + 1
	read, found := 0, 0
	for k := range uint64(share.Buckets()) {
		share.Run = first + k
		rep, err := Verify(context.Background(), ds.open(), VerifyOptions{ReadData: true, Share: share})
		if rep == nil {
			t.Fatal(err)
		}
		read += rep.Packs
		_, bad := rep.BadPacks[pack.String()]
		if bad != share.Reads(pack) || bad != errors.Is(err, ErrVerifyFailed) {
			t.Errorf("run %d (reads the pack: %v): bad packs %v, err %v", share.Run, share.Reads(pack), rep.BadPacks, err)
		}
		if bad {
			found++
			if len(rep.Damage) != 1 || rep.Damage[0].Path != "d1/f2" {
				t.Errorf("run %d: damage %+v, want d1/f2", share.Run, rep.Damage)
			}
		}
	}
	if found != 1 || read != packs {
		t.Errorf("%d runs found the flipped byte (want 1) and read %d packs in all (want each of %d once)", found, read, packs)
	}
	// Found once, the damage is recorded: a run that does not read the
	// pack still reports it, until repair.
	share.Run++
	if _, err := Verify(context.Background(), ds.open(), VerifyOptions{ReadData: true, Share: share}); !errors.Is(err, ErrVerifyFailed) {
		t.Errorf("the run after: %v, want the recorded damage reported", err)
	}
}

// Fix (two verify --read-data-share runs at once): both read the run
// number after the last one made, read the same share, and the next run
// skipped none. A run now claims its number: one after the last made and
// after those running; a claim of a process that is gone is dropped, and
// the first run, when it did not end well, is read again.
func TestShareRunClaims(t *testing.T) {
	home := t.TempDir()
	a, err := ClaimShareRun(home)
	if err != nil || a != 0 {
		t.Fatalf("first claim: %d, %v", a, err)
	}
	if err := ShareRunDone(home, a, false); err != nil {
		t.Fatal(err)
	}
	if a, err = ClaimShareRun(home); err != nil || a != 0 {
		t.Fatalf("claim after the first run failed: %d, %v; want 0 again", a, err)
	}
	b, err := ClaimShareRun(home)
	if err != nil || b != 1 {
		t.Fatalf("claim beside a running one: %d, %v; want 1", b, err)
	}
	if err := ShareRunDone(home, b, true); err != nil {
		t.Fatal(err)
	}
	if err := ShareRunDone(home, a, false); err != nil { // a failed: read again
		t.Fatal(err)
	}
	if c, _ := ClaimShareRun(home); c != 2 {
		t.Errorf("claim after runs 0 (failed) and 1: %d, want 2", c)
	}
	// A claim of a process that is gone holds nothing.
	if err := withShareRuns(home, func(r *shareRunRecord) {
		r.Running = []shareRunning{{Run: 9, Pid: 1 << 30}}
	}); err != nil {
		t.Fatal(err)
	}
	if c, _ := ClaimShareRun(home); c != 2 {
		t.Errorf("claim beside a dead process's run 9: %d, want 2", c)
	}
	if NextShareRun(home) != 2 {
		t.Errorf("next share run %d, want 2", NextShareRun(home))
	}
}
