package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// A write stopped by a pack too big for what is left of its cartridge
// and for a whole one describes what it wrote before on tape as a write
// that ends does: the set's catalog file is the last file of its last
// cartridge, so a fresh server reads the set from it with no scan of
// every file, and the set goes on on that cartridge. Before, the job
// ended with no catalog file. (Fix: tapeWriter.tooBig, stopCatalog.)
func TestTapeStoppedWriteLeavesCatalog(t *testing.T) {
	for _, oneJob := range []bool{true, false} {
		t.Run(fmt.Sprintf("one job %v", oneJob), func(t *testing.T) { testTapeStoppedWriteLeavesCatalog(t, oneJob) })
	}
}

// testTapeStoppedWriteLeavesCatalog writes a point, then one whose pack
// fits on no cartridge, in one job or in two (then the second job stops
// having only filled the first cartridge, whose last file was the first
// job's catalog file).
func testTapeStoppedWriteLeavesCatalog(t *testing.T, oneJob bool) {
	smallTapes(t)
	f := newTapeHomeEW(t, 1<<20, 4, 3<<20, 256<<10)
	ctx := context.Background()
	write := f.poolOnDay0(t, "")
	p1 := f.p
	p1data, err := os.ReadFile(filepath.Join(f.src, "data"))
	if err != nil {
		t.Fatal(err)
	}
	points := []*Point{p1}
	if !oneJob {
		if _, err := write(p1); err != nil {
			t.Fatal(err)
		}
		points = nil
	}
	p2, _ := f.backupAgain(t, 6<<20, 2)
	rep, err := write(append(points, p2)...)
	t.Logf("write: %v", err)
	if err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("write of a pack larger than a cartridge: %v, want it stopped", err)
	}
	if want := len(points); len(rep.Points) != want {
		t.Fatalf("points written %v, want %d", rep.Points, want)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	set, ok := st.set(rep.Set)
	if !ok || len(set.Tapes) == 0 {
		t.Fatalf("set %s not recorded: %+v", rep.Set, set)
	}
	last := set.Tapes[len(set.Tapes)-1]
	inDrive(t, f.lib, last, func(d tapefs.Drive) error {
		res, err := tapefs.ScanTape(ctx, d, nil)
		if err != nil {
			return err
		}
		if !res.FromCatalogFile {
			t.Errorf("the set's last cartridge %s does not end with a catalog file (torn %v)", last, res.Torn)
			return nil
		}
		if !slices.ContainsFunc(res.Catalog.Points, func(p tapefs.CatalogPoint) bool { return p.ID == p1.ID.String() }) {
			t.Errorf("the catalog file on %s lists points %+v, not the one written", last, res.Catalog.Points)
		}
		if len(res.Catalog.Tapes) == 0 || !res.Catalog.Tapes[0].Full {
			t.Errorf("the catalog file on %s lists cartridges %+v, want the first full", last, res.Catalog.Tapes)
		}
		return nil
	})
	for _, m := range st.Media {
		if m.State == MediaFull && !slices.Contains(set.Tapes, m.Barcode) {
			t.Errorf("cartridge %s, of no set, left full", m.Barcode)
		}
	}

	// A fresh server reads the set from its cartridges.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := AddTapeLibrary(ctx, other, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(ctx, other, TapeCatalogOptions{Log: t.Logf, Now: func() time.Time { return day0 }}); err != nil {
		t.Fatal(err)
	}
	if got, _ := restoreData(t, other, p1.ID.String()); !bytes.Equal(got, p1data) {
		t.Error("the point written before the stop restores different bytes on a fresh server")
	}

	// The set goes on.
	p3, p3data := f.backupAgain(t, 200<<10, 3)
	rep3, err := write(p3)
	if err != nil {
		t.Fatal(err)
	}
	if rep3.Set != rep.Set {
		t.Errorf("the next write went to set %s, want %s", rep3.Set, rep.Set)
	}
	for id, want := range map[string][]byte{p1.ID.String(): p1data, p3.ID.String(): p3data} {
		if got, _ := restoreData(t, f.home, id); !bytes.Equal(got, want) {
			t.Errorf("point %s restores different bytes", id[:12])
		}
	}
}
