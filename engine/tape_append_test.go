package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// day0 is the day the tests of this file write on.
var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// poolOnDay0 creates pool p (a retention of 30 days, allocation alloc; ""
// is continue) on day0, and returns what writes points to it that day.
func (f *tapeHomeFixture) poolOnDay0(t *testing.T, alloc string) func(points ...*Point) (*TapeWriteReport, error) {
	t.Helper()
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d", Allocation: alloc}, day0, t.Logf); err != nil {
		t.Fatal(err)
	}
	return func(points ...*Point) (*TapeWriteReport, error) {
		return f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: points, Now: func() time.Time { return day0 }, Log: t.Logf})
	}
}

// inDrive loads cartridge barcode of the emulated library in dir into its
// drive, hands the drive to fn (a job's writes, as a test fakes them),
// and puts the cartridge back.
func inDrive(t *testing.T, dir, barcode string, fn func(tapefs.Drive) error) {
	t.Helper()
	ctx := context.Background()
	lib, inv := emulatedInventory(t, dir)
	defer lib.Close()
	slot, ok := slotOf(inv, barcode)
	if !ok {
		t.Fatalf("cartridge %s not in the library", barcode)
	}
	if err := lib.Load(ctx, slot, 0); err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	err = fn(d)
	if ferr := d.Flush(ctx); err == nil {
		err = ferr
	}
	d.Close()
	if uerr := lib.Unload(ctx, 0, slot); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A cartridge whose data ends before the last file the catalog records
// on it (a truncated copy, a lost tail) is not appended to: the write
// goes on on a new cartridge and writes again the packs that were on the
// lost files. Before, the new files took numbers the catalog had given
// others, the lost packs counted as on the set, and the job exited 0
// with a point no tape held.
func TestTapeAppendAfterLostTail(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	write := f.poolOnDay0(t, "")
	first, err := write(f.p)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := f.backupAgain(t, 1<<20, 2)
	second, err := write(p2)
	if err != nil || !slices.Equal(second.Tapes, first.Tapes) {
		t.Fatalf("second write: %+v, %v; want it appended to %v", second, err, first.Tapes)
	}
	// The cartridge loses the files of the second write.
	tape := filepath.Join(f.lib, "cartridges", first.Tapes[0], "tape")
	fi, err := os.Stat(tape)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tape, fi.Size()*2/3); err != nil {
		t.Fatal(err)
	}
	p3, want := f.backupAgain(t, 1<<20, 3)
	third, err := write(p3)
	if err != nil {
		t.Fatalf("write after the lost tail: %v", err)
	}
	if third.Set != first.Set || slices.Contains(third.Tapes, first.Tapes[0]) || len(third.Tapes) != 1 {
		t.Errorf("third write went to set %s, cartridges %v; want set %s on a new cartridge", third.Set, third.Tapes, first.Set)
	}
	got, _ := restoreData(t, f.home, p3.ID.String())
	if !bytes.Equal(got, want) {
		t.Error("the point written after the lost tail restores wrong")
	}
}

// A write killed before its filemark leaves a cut file at the end of the
// cartridge's data: the next write ends it with a filemark and writes
// its own files after, so a fresh server that must scan the cartridge
// (its last catalog file unreadable) reads the new point whole.
func TestTapeAppendAfterCutFile(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	ctx := context.Background()
	now := func() time.Time { return day0 }
	write := f.poolOnDay0(t, "")
	first, err := write(f.p)
	if err != nil {
		t.Fatal(err)
	}
	// What a write killed in its packs file leaves: blocks, no filemark.
	inDrive(t, f.lib, first.Tapes[0], func(d tapefs.Drive) error {
		if err := d.SeekEOD(ctx); err != nil {
			return err
		}
		for range 3 {
			if _, err := d.WriteBlock(ctx, bytes.Repeat([]byte{0xa5}, 4096)); err != nil {
				return err
			}
		}
		return nil
	})

	p2, want := f.backupAgain(t, 1<<20, 2)
	if _, err := write(p2); err != nil {
		t.Fatalf("write after the cut file: %v", err)
	}
	got, _ := restoreData(t, f.home, p2.ID.String())
	if !bytes.Equal(got, want) {
		t.Fatal("restore on this server differs")
	}
	// A fresh server whose scan cannot use the last catalog file.
	lib, err := tapefs.OpenEmulatedLibrary(f.lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.TearLastBlock(first.Tapes[0]); err != nil {
		t.Fatal(err)
	}
	lib.Close()
	other := filepath.Join(t.TempDir(), "other")
	if _, err := AddTapeLibrary(ctx, other, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(ctx, other, TapeCatalogOptions{Log: t.Logf, Now: now}); err != nil {
		t.Fatal(err)
	}
	got, _ = restoreData(t, other, p2.ID.String())
	if !bytes.Equal(got, want) {
		t.Error("restore on a fresh server, from a scan, differs")
	}
}

// The staging store a tape restore killed with -9 left in the home is
// removed by the next tape job, which holds the tape lock it was made
// under; a tape restore then works as ever.
func TestTapeStaleStagingRemoved(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	write := f.poolOnDay0(t, "")
	if _, err := write(f.p); err != nil {
		t.Fatal(err)
	}
	stale, err := newStagingDir(f.home)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stale, "packs", "00"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "packs", "00", "x"), make([]byte, 1<<16), 0o600)
	keep := filepath.Join(f.home, "tape-restore-notes.txt") // not a directory: not ours to judge
	os.WriteFile(keep, []byte("x"), 0o600)
	restoreData(t, f.home, f.p.ID.String())
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale staging store is still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file that is no staging store was removed: %v", err)
	}
}

// "latest --source S" names the newest point of S the media catalog
// knows, as it does in the store: a fresh server restoring from tape
// alone need not look its id up first.
func TestTapeRestoreLatest(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	ctx := context.Background()
	write := f.poolOnDay0(t, "")
	if _, err := write(f.p); err != nil {
		t.Fatal(err)
	}
	p2, want := f.backupAgain(t, 1<<20, 2)
	if _, err := write(p2); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res, err := RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: "latest", Source: "src", Target: out, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "data")); res.Point.ID != p2.ID || !bytes.Equal(got, want) {
		t.Errorf("latest restored point %s, want %s, its data", res.Point.ID.Short(), p2.ID.Short())
	}
	// Without --source: the one source on tape (TestLatestOnTapeWithoutSource
	// has several).
	res, err = RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: "latest", Target: filepath.Join(t.TempDir(), "one"), Log: t.Logf})
	if err != nil || res.Point.ID != p2.ID {
		t.Errorf("latest without --source, one source on tape: %v, want %s", err, p2.ID.Short())
	}
	_, err = RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: "latest", Source: "other", Target: filepath.Join(t.TempDir(), "x"), Log: t.Logf})
	if !errors.Is(err, ErrTapeNotFound) {
		t.Errorf("latest of source other: %v, want %v", err, ErrTapeNotFound)
	}
}

// A cartridge labelled for a set whose first write was killed before it
// recorded anything: refused while the catalog does not know the set,
// with the advice to read it in; once 'tape catalog' has, the pool (which
// appends) goes on writing that set on it, past the file the killed
// write cut short.
func TestTapeEmptySetReused(t *testing.T) {
	const alloc = AllocContinue
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	ctx := context.Background()
	now := func() time.Time { return day0 }
	write := f.poolOnDay0(t, alloc)
	// What the killed write left: labels of a set of pool p, and part of
	// a packs file.
	const bc = "RC0001L9" // the library's one cartridge
	set := tapefs.NewUUID()
	config := map[string][]byte{}
	for _, name := range []string{"config", "config.copy"} {
		b, err := os.ReadFile(filepath.Join(StoreDir(f.home), name))
		if err != nil {
			t.Fatal(err)
		}
		config[name] = b
	}
	inDrive(t, f.lib, bc, func(d tapefs.Drive) error {
		if err := tapefs.WriteLabels(ctx, d, tapefs.VolumeLabel{FormatVersion: tapefs.FormatVersion, VolumeID: tapefs.NewUUID(), Barcode: bc, BlockSize: tapefs.BlockSize, Created: day0},
			tapefs.SetLabel{Pool: "p", SetID: set, Sequence: 1, Created: day0, Expiry: day0.AddDate(0, 2, 0), StoreID: f.s.Config().ID, StoreConfig: config}); err != nil {
			return err
		}
		_, err := d.WriteBlock(ctx, bytes.Repeat([]byte{1}, 4096))
		return err
	})

	_, err := write(f.p)
	if err == nil || !strings.Contains(err.Error(), "tape catalog --slot") || !strings.Contains(err.Error(), set) {
		t.Fatalf("write while the set is unknown: %v, want it refused with the catalog advice", err)
	}
	if _, err := CatalogTapes(ctx, f.home, TapeCatalogOptions{Log: t.Logf, Now: now}); err != nil {
		t.Fatal(err)
	}
	w, err := write(f.p)
	if err != nil || len(w.Tapes) != 1 || w.Tapes[0] != bc {
		t.Fatalf("write after the catalog read the empty set: %+v, %v; want it on %s", w, err, bc)
	}
	restoreData(t, f.home, f.p.ID.String())
}

// A fresh server that learns a pool from a set label records the pool's
// retention, not retention plus append window: the label's expiry counts
// the window too (SetExpiry). Before, a 30d pool became 37d there.
func TestTapeCatalogPoolRetention(t *testing.T) {
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	ctx := context.Background()
	now := func() time.Time { return day0 }
	write := f.poolOnDay0(t, "")
	if _, err := write(f.p); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := AddTapeLibrary(ctx, other, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(ctx, other, TapeCatalogOptions{Log: t.Logf, Now: now}); err != nil {
		t.Fatal(err)
	}
	pools, err := ListTapePools(other, t.Logf)
	if err != nil || len(pools) != 1 || pools[0].Retention != "30d" {
		t.Errorf("pools on the fresh server: %+v, %v; want p with 30d", pools, err)
	}
}

// Two cartridges whose barcode labels were swapped: a restore says the
// volume label names the other barcode, not to read the cartridge in
// again, which finds the same and loops.
func TestTapeSwappedBarcodes(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	ctx := context.Background()
	write := f.poolOnDay0(t, AllocAlways)
	a, err := write(f.p)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := f.backupAgain(t, 1<<20, 2)
	b, err := write(p2)
	if err != nil || b.Tapes[0] == a.Tapes[0] {
		t.Fatalf("second write: %+v, %v; want another cartridge than %v", b, err, a.Tapes)
	}
	ta := filepath.Join(f.lib, "cartridges", a.Tapes[0], "tape")
	tb := filepath.Join(f.lib, "cartridges", b.Tapes[0], "tape")
	tmp := ta + ".swap"
	if err := os.Rename(ta, tmp); err != nil {
		t.Fatal(err)
	}
	os.Rename(tb, ta)
	os.Rename(tmp, tb)
	_, err = RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: filepath.Join(t.TempDir(), "out"), Log: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "labelled as "+b.Tapes[0]) || !strings.Contains(err.Error(), "barcode label") {
		t.Errorf("restore with swapped barcode labels: %v, want it to name the label %s", err, b.Tapes[0])
	}
}

// The set's open cartridge turns out to hold another set (swapped in the
// library, relabelled elsewhere): the write goes on on a new cartridge
// and writes again the packs the catalog records on it, so the new point
// does not count on a cartridge known to be wrong. Before, its packs were
// taken as already on the set and the point's restore failed.
func TestTapeAppendToWrongCartridgeWritesPacksAgain(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	ctx := context.Background()
	write := f.poolOnDay0(t, "")
	a, err := write(f.p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateTapePool(f.home, TapePool{Name: "q", Retention: "30d"}, day0, t.Logf); err != nil {
		t.Fatal(err)
	}
	b, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "q", Points: []*Point{f.p}, Now: func() time.Time { return day0 }, Log: t.Logf})
	if err != nil || b.Tapes[0] == a.Tapes[0] {
		t.Fatalf("write to q: %+v, %v", b, err)
	}
	// A now holds q's set.
	raw, err := os.ReadFile(filepath.Join(f.lib, "cartridges", b.Tapes[0], "tape"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.lib, "cartridges", a.Tapes[0], "tape"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// A second point sharing the first one's data.
	if err := os.WriteFile(filepath.Join(f.src, "more"), []byte("more"), 0o644); err != nil {
		t.Fatal(err)
	}
	ss, err := f.s.Session(ctx, SessionOptions{Purpose: "test", Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Backup(ctx, ss, BackupOptions{Path: f.src, Source: "src"})
	ss.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := write(p2)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksSkipped != 0 {
		t.Errorf("%d packs counted as on the set, on a cartridge found to hold another set", rep.PacksSkipped)
	}
	restoreData(t, f.home, p2.ID.String())
}

// The inventory says when a cartridge with room left belongs to a set
// that takes no more points (allocation always): it stays "writing" until
// the set expires, and set_closed says why no write uses it.
func TestTapeInventorySetClosed(t *testing.T) {
	for _, alloc := range []string{AllocAlways, AllocContinue} {
		t.Run(alloc, func(t *testing.T) {
			f := newTapeHome(t, 1<<20, 2, 1<<30)
			write := f.poolOnDay0(t, alloc)
			a, err := write(f.p)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := TapeInventory(context.Background(), f.home, "", day0, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, s := range inv {
				if s.Barcode != a.Tapes[0] {
					if s.SetClosed {
						t.Errorf("%s %d (%s, state %q): set closed", s.Element, s.Number, s.Barcode, s.State)
					}
					continue
				}
				found = true
				if s.State != MediaWriting || s.SetClosed != (alloc == AllocAlways) {
					t.Errorf("allocation %s: cartridge %s state %q, set closed %v", alloc, s.Barcode, s.State, s.SetClosed)
				}
			}
			if !found {
				t.Fatalf("cartridge %s not in the inventory: %+v", a.Tapes[0], inv)
			}
		})
	}
}
