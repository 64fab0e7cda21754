package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// Fix (packs under each other's names): two whole packs swapped, by hand
// or by a tool, each hold the pack the other's name says. Repair index
// and repair packs salvaged each as its own name's damaged pack, found
// none of its blobs there and deleted both. Now the first repair sets
// each file aside and puts it in its own place: nothing is lost, and
// every file restores exactly.
func TestRepairPutsSwappedPacksInTheirPlaces(t *testing.T) {
	for _, first := range []string{"index", "packs"} {
		t.Run(first, func(t *testing.T) {
			ds := newDamageStore(t, true)
			pa, pb := ds.twoPacks()
			swap(t, pa, pb)
			f := RepairIndex
			if first == "packs" {
				f = RepairPacks
			}
			var logged []string
			rep, err := ds.runRepair(f, RepairOptions{Log: func(format string, a ...any) { logged = append(logged, format) }})
			if err != nil {
				t.Fatalf("repair %s: %v\nactions: %q", first, err, rep.Actions)
			}
			if err := rep.DamageLeft("repair"); err != nil || len(rep.Lost) > 0 {
				t.Errorf("repair %s of two swapped packs: %v, lost %+v", first, err, rep.Lost)
			}
			set := 0
			for _, a := range rep.Actions {
				if strings.Contains(a, "set aside pack file") && strings.Contains(a, "whole, not its own") {
					set++
				}
			}
			if set != 2 {
				t.Errorf("actions %q: want both files set aside, named", rep.Actions)
			}
			for _, p := range []string{pa, pb} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("pack %s not back in its place: %v", filepath.Base(p), err)
				}
			}
			ds.repair() // the other repairs after it find nothing to lose
			if got := ds.restore(ds.point); len(got) > 0 {
				t.Errorf("not restored after the repair: %v", got)
			}
			if _, _, err := ds.verify(true); err != nil {
				t.Errorf("verify --read-data after the repair: %v", err)
			}
		})
	}
}

// A whole pack moved over another's name (mv A B): A is put back in its
// place, and only B's blobs are lost, reported as such; nothing of A.
func TestRepairPutsPackMovedOverAnotherBack(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, pb := ds.twoPacks()
	inA := map[string]bool{}
	for rel := range ds.files {
		if p, _, _ := ds.packOf(ds.node(rel).Extents[0].ID); p == pa {
			inA[rel] = true
		}
	}
	if err := os.Rename(pa, pb); err != nil {
		t.Fatal(err)
	}
	ds.repair()
	if _, err := os.Stat(pa); err != nil {
		t.Fatalf("pack moved over another is not back in its place: %v", err)
	}
	got := ds.restore(ds.point)
	for rel := range inA {
		if got[rel] {
			t.Errorf("%s, in the pack put back, not restored", rel)
		}
	}
	if len(got) == 0 {
		t.Errorf("nothing reported damaged, though pack %s was lost", filepath.Base(pb))
	}
}

// On a backend that cannot rename pack files (an object store), repair
// packs leaves two swapped packs as they are, names them, and deletes
// neither: once they are under their right names, everything restores.
func TestRepairPacksLeavesSwappedPacksWhereItCannotMoveThem(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, pb := ds.twoPacks()
	swap(t, pa, pb)
	// deniedPacks denies nothing here; it hides the local backend's
	// renaming and placing methods.
	st, err := chunkstore.OpenBackend(deniedPacks{local.Open(ds.dir), nil, 0}, chunkstore.OpenOptions{Password: ds.pw})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(st).Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RepairPacks(context.Background(), s, RepairOptions{})
	s.Close()
	st.Close()
	if rep == nil || len(rep.Lost) > 0 || len(rep.Misplaced) != 2 {
		t.Fatalf("repair packs of swapped packs it cannot move: %v, %+v", err, rep)
	}
	swap(t, pa, pb) // by hand, as the messages say
	if got := ds.restore(ds.point); len(got) > 0 {
		t.Errorf("not restored: %v", got)
	}
}

// swap swaps the files at a and b.
func swap(t *testing.T, a, b string) {
	t.Helper()
	for _, mv := range [][2]string{{a, a + ".swap"}, {b, a}, {a + ".swap", b}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// Fix (damage recorded while packs were swapped): verify --read-data of
// a store with two packs swapped records their blobs damaged (read under
// the wrong names). Repair index put the packs back but kept the
// records, so verify still failed on a whole store. What was recorded
// in a pack the repair put in its place is dropped once it is whole.
func TestRepairDropsDamageRecordedWhileSwapped(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, pb := ds.twoPacks()
	swap(t, pa, pb)
	if _, _, err := ds.verify(true); !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify --read-data of swapped packs: %v", err)
	}
	rep, err := ds.runRepair(RepairIndex, RepairOptions{})
	if err == nil {
		err = rep.DamageLeft("repair index")
	}
	if err != nil {
		t.Fatalf("repair index: %v", err)
	}
	if _, _, err := ds.verify(true); err != nil {
		t.Errorf("verify --read-data after the packs were put back: %v", err)
	}
}

// A directory in the place of a pack (the file moved out, a directory
// made there) is a pack the repair could not read: named among the
// unreadable packs, with what to do, so the repair does not end as if
// the store were whole (exit 0).
func TestRepairNamesDirectoryInPlaceOfPack(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, _ := ds.twoPacks()
	if err := os.Rename(pa, filepath.Join(t.TempDir(), "away")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(pa, 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := ds.runRepair(RepairIndex, RepairOptions{})
	if err == nil {
		err = rep.DamageLeft("repair index")
	}
	why := rep.Unreadable[filepath.Base(pa)]
	if err == nil || !strings.Contains(why, "directory") || !strings.Contains(why, "run the repair again") {
		t.Errorf("repair index with a directory in a pack's place: %v; unreadable %q", err, why)
	}
}

// A dry run of the repair of two swapped packs says it would put them in
// their place, and reports none of what the real run then mends (their
// headers under the wrong names): no damage left, as the real run.
func TestRepairDryRunOfSwappedPacks(t *testing.T) {
	for _, f := range []func(context.Context, *Session, RepairOptions) (*RepairReport, error){RepairIndex, RepairPacks} {
		ds := newDamageStore(t, false)
		pa, pb := ds.twoPacks()
		swap(t, pa, pb)
		rep, err := ds.runRepair(f, RepairOptions{DryRun: true})
		if err == nil {
			err = rep.DamageLeft("repair")
		}
		if err != nil || len(rep.Misplaced) > 0 {
			t.Errorf("dry run of the repair of swapped packs: %v, left %v", err, rep.Misplaced)
		}
		if _, err := os.Stat(pa + ".swap"); err == nil {
			t.Fatal("swap left a file")
		}
		if len(rep.Actions) < 2 || !strings.Contains(rep.Actions[0], "set aside pack file") {
			t.Errorf("dry run actions %q", rep.Actions)
		}
	}
}

// TestRepairPointsWaitsForSwappedPacks: with two packs swapped, their
// points' files read as lost, and repair points --forget-damaged removed
// whole points (exit 0) that repair index puts back whole. Now it
// refuses, changing nothing, and says to run repair index first; after
// it, nothing is lost.
func TestRepairPointsWaitsForSwappedPacks(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, pb := ds.twoPacks()
	swap(t, pa, pb)
	repairPoints := func(dry bool) (*RepairReport, error) {
		s, err := ds.store().Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return RepairPoints(context.Background(), s, RepairPointsOptions{ForgetDamaged: true, RepairOptions: RepairOptions{DryRun: dry}})
	}
	for _, dry := range []bool{true, false} {
		if _, err := repairPoints(dry); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "repair index") {
			t.Fatalf("repair points (dry run %v) with swapped packs: %v; want it refused, naming repair index", dry, err)
		}
	}
	pts, err := ds.open().Points()
	if err != nil || len(pts) != 1 {
		t.Fatalf("points after the refused repair: %d, %v; want the one", len(pts), err)
	}
	if _, err := ds.runRepair(RepairIndex, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := repairPoints(false)
	if err != nil || len(rep.Lost) > 0 {
		t.Fatalf("repair points after repair index: %v, lost %+v", err, rep.Lost)
	}
	if got := ds.restore(ds.point); len(got) > 0 {
		t.Errorf("not restored: %v", got)
	}
}
