package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runRepair runs one repair in its own exclusive session, as the
// command does.
func (ds *damageStore) runRepair(f func(context.Context, *Session, RepairOptions) (*RepairReport, error), o RepairOptions) (*RepairReport, error) {
	ds.t.Helper()
	s, err := ds.store().Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true})
	if err != nil {
		ds.t.Fatal(err)
	}
	defer s.Close()
	return f(context.Background(), s, o)
}

// TestRepairPacksLostBlobsAreDamage: a repair that leaves blobs no pack
// holds a good copy of says so with ErrDamaged (exit 4) and names each
// lost blob and its pack; run again, with nothing left to salvage, it
// reports no damage.
func TestRepairPacksLostBlobsAreDamage(t *testing.T) {
	for _, dry := range []bool{true, false} {
		ds := newDamageStore(t, true)
		id := ds.node("d1/f2").Extents[0].ID
		p, off, n := ds.packOf(id)
		flip(t, p, off+n/2)
		if _, _, err := ds.verify(true); !errors.Is(err, ErrVerifyFailed) {
			t.Fatalf("verify --read-data: %v, want the flipped blob found", err)
		}
		rep, err := ds.runRepair(RepairPacks, RepairOptions{DryRun: dry})
		if !errors.Is(err, ErrDamaged) {
			t.Errorf("dry=%v: repair packs losing a blob returns %v, want ErrDamaged", dry, err)
		}
		want := DamagedBlob{Blob: id.String(), Pack: filepath.Base(p)}
		if rep == nil || !slices.ContainsFunc(rep.Lost, func(l DamagedBlob) bool { return l.Blob == want.Blob && l.Pack == want.Pack }) {
			t.Fatalf("dry=%v: lost blobs %+v, want %s of pack %s", dry, rep, want.Blob, want.Pack)
		}
		if dry {
			continue
		}
		if rep, err := ds.runRepair(RepairPacks, RepairOptions{}); err != nil || len(rep.Lost) > 0 {
			t.Errorf("second repair packs: %v, lost %+v; want nothing left to do", err, rep.Lost)
		}
	}
}

// TestRepairUnlocatablePackIsDamage: a pack whose header is unreadable
// and that no index file lists cannot be located. Repair index lists it
// and, for a person, DamageLeft makes that exit 4; repair packs leaves it
// in place (nothing says what it holds), lists it, and returns
// ErrDamaged.
func TestRepairUnlocatablePackIsDamage(t *testing.T) {
	ds := newDamageStore(t, false)
	p, _, _ := ds.packOf(ds.node("d1/f2").Extents[0].ID)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	flip(t, p, st.Size()-12-headerLen(t, p)/2)
	ents, _ := os.ReadDir(filepath.Join(ds.dir, "index"))
	for _, e := range ents {
		flip(t, filepath.Join(ds.dir, "index", e.Name()), 20)
	}
	pack := filepath.Base(p)

	rep, err := ds.runRepair(RepairIndex, RepairOptions{DryRun: true})
	if err != nil {
		t.Fatalf("repair index: %v (an unlocatable pack is in the report, not an error: tape restore indexes packs this way)", err)
	}
	if !slices.Contains(rep.Unlocatable, pack) {
		t.Fatalf("repair index: unlocatable %v, want %s", rep.Unlocatable, pack)
	}
	if err := rep.DamageLeft("repair index"); !errors.Is(err, ErrDamaged) {
		t.Errorf("repair index leaving an unlocatable pack: DamageLeft %v, want ErrDamaged", err)
	}

	rep, err = ds.runRepair(RepairPacks, RepairOptions{})
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("repair packs leaving an unlocatable pack: %v, want ErrDamaged", err)
	}
	if !slices.Contains(rep.Unlocatable, pack) {
		t.Errorf("repair packs: unlocatable %v, want %s", rep.Unlocatable, pack)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("repair packs removed a pack nothing says the contents of: %v", err)
	}
}

// Fix (a pack file deleted): repair index and repair packs removed the
// index files that listed it and exited 0, saying nothing of the blobs
// that went with it. Each now names every blob no other pack holds, with
// its pack, and DamageLeft makes that exit 4, once: the next repair has
// nothing left to report. A dry run says the same and changes nothing.
func TestRepairMissingPackReportsItsBlobsLost(t *testing.T) {
	for _, f := range []string{"index", "packs"} {
		t.Run(f, func(t *testing.T) {
			ds := newDamageStore(t, false)
			id := ds.node("d1/f2").Extents[0].ID
			p, _, _ := ds.packOf(id)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			run := RepairIndex
			if f == "packs" {
				run = RepairPacks
			}
			for _, dry := range []bool{true, false} {
				rep, err := ds.runRepair(run, RepairOptions{DryRun: dry})
				if rep == nil {
					t.Fatal(err)
				}
				if err == nil {
					err = rep.DamageLeft("repair")
				}
				if !errors.Is(err, ErrDamaged) || !slices.ContainsFunc(rep.Lost, func(l DamagedBlob) bool {
					return l.Blob == id.String() && l.Pack == filepath.Base(p) && strings.Contains(l.Error, "missing")
				}) {
					t.Errorf("dry=%v: repair %s with a pack file deleted: %v, lost %+v; want blob %s of it named", dry, f, err, rep.Lost, id.Short())
				}
			}
			rep, err := ds.runRepair(run, RepairOptions{})
			if err == nil {
				err = rep.DamageLeft("repair")
			}
			if err != nil || len(rep.Lost) > 0 {
				t.Errorf("second repair %s: %v, lost %+v; want nothing left to report", f, err, rep.Lost)
			}
		})
	}
}
