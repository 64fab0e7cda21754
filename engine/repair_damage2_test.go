package engine

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// Fix (an empty file under a pack's name): it is not damage. Verify, with
// and without reading data, names it by path and says to remove it by
// hand, without ErrVerifyFailed (no repair applies); repair packs and
// repair index leave it, name it, and report no damage left, so they do
// not send anyone to a new backup and repair points.
func TestEmptyPackFileIsForeign(t *testing.T) {
	ds := newDamageStore(t, false)
	id := strings.Repeat("ab", 32)
	p := filepath.Join(ds.dir, "packs", "ab", id)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, readData := range []bool{false, true} {
		_, rep, err := ds.verify(readData)
		if err == nil || errors.Is(err, ErrVerifyFailed) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "remove it by hand") {
			t.Errorf("verify (read data %v) with an empty file under a pack's name: %v; want it named, to be removed by hand, not damage", readData, err)
		}
		if len(rep.BadPacks) != 0 || !slices.Equal(rep.Foreign, []string{p}) {
			t.Errorf("verify (read data %v): bad packs %v, foreign %v", readData, rep.BadPacks, rep.Foreign)
		}
	}
	var logged []string
	o := RepairOptions{Log: func(f string, a ...any) { logged = append(logged, f) }}
	for _, f := range []func() (*RepairReport, error){
		func() (*RepairReport, error) { return ds.runRepair(RepairPacks, o) },
		func() (*RepairReport, error) { return ds.runRepair(RepairIndex, o) },
	} {
		rep, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.DamageLeft("repair"); err != nil || len(rep.Unlocatable) != 0 || !slices.Equal(rep.Foreign, []string{p}) {
			t.Errorf("repair: damage left %v, unlocatable %v, foreign %v", err, rep.Unlocatable, rep.Foreign)
		}
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("repair removed a file recall did not write: %v", err)
	}
}

// Fix (verify and a damaged manifest): no repair makes such a point
// restorable, so verify's error names the step that removes it.
func TestVerifyDamagedPointSaysForget(t *testing.T) {
	ds := newDamageStore(t, false)
	m := filepath.Join(ds.dir, "points", ds.point.String())
	flip(t, m, 20)
	_, _, err := ds.verify(false)
	if !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify with a damaged manifest: %v", err)
	}
	for _, want := range []string{"recall forget " + ds.point.String()[:12], "repair points --forget-damaged"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("verify with a damaged manifest: %v\nwant it to say %q", err, want)
		}
	}
}

// Fix (a pack's header checked against its name): repair index keeps the
// index file that locates a pack whose file holds another pack's bytes,
// names the pack, and leaves it to repair packs: damage left (exit 4),
// whose next step is repair packs, not a new backup.
func TestRepairIndexNamesPackNotWhatItsNameSays(t *testing.T) {
	ds := newDamageStore(t, false)
	pa, pb := ds.twoPacks()
	b, err := os.ReadFile(pa)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pb, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := ds.runRepair(RepairIndex, RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.BadHeaders[filepath.Base(pb)]; !ok {
		t.Errorf("repair index: bad headers %v, want %s", rep.BadHeaders, filepath.Base(pb))
	}
	for _, a := range rep.Actions {
		if strings.HasPrefix(a, "removed index file") {
			t.Errorf("repair index: %s", a)
		}
	}
	err = rep.DamageLeft("repair index")
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "repair packs") || strings.Contains(err.Error(), "repair points") {
		t.Errorf("repair index: damage left %v", err)
	}
}

// An index file written again whole under its old name is said to be
// replaced, not removed: it is there.
func TestIndexActionsRewrittenFile(t *testing.T) {
	rep := &RepairReport{}
	indexActions(rep, &chunkstore.IndexRebuild{
		Written: []chunkstore.IndexFileInfo{{Name: "abc", Packs: 2}},
		Removed: map[string]string{"abc": "replaced by a whole copy: corrupt data", "def": "corrupt data"},
	}, RepairOptions{})
	want := []string{
		"wrote index file abc covering 2 packs",
		"index file abc (corrupt data) was replaced by the whole copy of that name written above",
		"removed index file def: corrupt data",
	}
	if !slices.Equal(rep.Actions, want) {
		t.Errorf("actions %q, want %q", rep.Actions, want)
	}
}

// twoPacks returns the pack file holding d0/f0's first chunk and another
// data pack's.
func (ds *damageStore) twoPacks() (pa, pb string) {
	ds.t.Helper()
	pa, _, _ = ds.packOf(ds.node("d0/f0").Extents[0].ID)
	for rel := range ds.files {
		if p, _, _ := ds.packOf(ds.node(rel).Extents[0].ID); p != pa {
			return pa, p
		}
	}
	ds.t.Fatal("want two data packs")
	return "", ""
}
