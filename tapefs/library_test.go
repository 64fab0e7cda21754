package tapefs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/tapefs"
)

func newLibrary(t *testing.T, o tapefs.EmulatorOptions) *tapefs.EmulatedLibrary {
	t.Helper()
	lib, err := tapefs.CreateEmulatedLibrary(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	return lib
}

// where lists the barcode of every element: "d0" for drive 0, "s3" for slot 3.
func where(t *testing.T, lib *tapefs.EmulatedLibrary) map[string]string {
	t.Helper()
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range inv.Drives {
		if e.Full {
			m["d"+strconv.Itoa(e.Number)] = e.Barcode
		}
	}
	for _, e := range inv.Slots {
		if e.Full {
			m["s"+strconv.Itoa(e.Number)] = e.Barcode
		}
	}
	return m
}

func TestLibraryCreate(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 3, Drives: 2, BarcodePrefix: "XY"})
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := &tapefs.Inventory{
		Drives: []tapefs.Element{
			{Kind: tapefs.DriveElement, Number: 0},
			{Kind: tapefs.DriveElement, Number: 1},
		},
		Slots: []tapefs.Element{
			{Kind: tapefs.SlotElement, Number: 1, Full: true, Barcode: "XY0001L9"},
			{Kind: tapefs.SlotElement, Number: 2, Full: true, Barcode: "XY0002L9"},
			{Kind: tapefs.SlotElement, Number: 3, Full: true, Barcode: "XY0003L9"},
			{Kind: tapefs.ImportExportElement, Number: 4},
		},
	}
	if !slices.Equal(inv.Drives, want.Drives) || !slices.Equal(inv.Slots, want.Slots) {
		t.Fatalf("inventory of a new library:\n got %+v\nwant %+v", inv, want)
	}
	if lib.NumDrives() != 2 {
		t.Fatalf("NumDrives %d", lib.NumDrives())
	}
	// The directory must be new or empty, and the options sane.
	for name, o := range map[string]tapefs.EmulatorOptions{
		"no slots":     {Drives: 1},
		"no drives":    {Slots: 1},
		"zone too big": {Slots: 1, Drives: 1, Capacity: 100, EarlyWarning: 101},
		"bad prefix":   {Slots: 1, Drives: 1, BarcodePrefix: "a/b"},
	} {
		if _, err := tapefs.CreateEmulatedLibrary(t.TempDir(), o); err == nil {
			t.Errorf("%s: created", name)
		}
	}
	if _, err := tapefs.CreateEmulatedLibrary(lib.Dir(), tapefs.EmulatorOptions{Slots: 1, Drives: 1}); err == nil {
		t.Error("created over an existing library")
	}
	if _, err := tapefs.OpenEmulatedLibrary(t.TempDir()); err == nil {
		t.Error("opened an empty directory as a library")
	}
}

// The default early-warning zone: 2% of the capacity but at least 256
// MiB, and never more than a quarter of it. Read from the cartridges'
// documented cartridge.json: filling 18 TB to see it is not an option.
func TestLibraryDefaultEarlyWarning(t *testing.T) {
	for _, c := range []struct{ capacity, wantCapacity, zone int64 }{
		{0, 18e12, 18e12 / 50},
		{100 << 30, 100 << 30, 2 << 30},
		{4 << 30, 4 << 30, 256 << 20},
		{400 << 20, 400 << 20, 100 << 20},
	} {
		lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: c.capacity})
		b, err := os.ReadFile(filepath.Join(lib.Dir(), "cartridges", "RC0001L9", "cartridge.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Capacity     int64 `json:"capacity"`
			EarlyWarning int64 `json:"early_warning"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Capacity != c.wantCapacity || m.EarlyWarning != c.zone {
			t.Errorf("capacity %d: cartridge of %d with a zone of %d, want %d and %d", c.capacity, m.Capacity, m.EarlyWarning, c.wantCapacity, c.zone)
		}
	}
}

// The changer refuses what a real one cannot do, saying which library,
// slot and drive.
func TestLibraryChangerErrors(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 3, Drives: 2})
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		call  func() error
		is    error
		words []string
	}{
		{"load an empty slot", func() error { return lib.Load(ctx, 1, 1) }, tapefs.ErrNoCartridge, []string{"slot 1", "drive 1", "empty"}},
		{"load into a full drive", func() error { return lib.Load(ctx, 2, 0) }, tapefs.ErrElementFull, []string{"slot 2", "drive 0", "RC0001L9"}},
		{"load a slot that is not there", func() error { return lib.Load(ctx, 9, 1) }, tapefs.ErrNoElement, []string{"slot 9"}},
		{"load into a drive that is not there", func() error { return lib.Load(ctx, 2, 5) }, tapefs.ErrNoElement, []string{"drive 5"}},
		{"unload an empty drive", func() error { return lib.Unload(ctx, 1, 1) }, tapefs.ErrNoCartridge, []string{"drive 1", "empty"}},
		{"unload into a full slot", func() error { return lib.Unload(ctx, 0, 2) }, tapefs.ErrElementFull, []string{"slot 2", "RC0002L9"}},
		{"transfer from an empty slot", func() error { return lib.Transfer(ctx, 4, 1) }, tapefs.ErrNoCartridge, []string{"slot 4"}},
		{"transfer into a full slot", func() error { return lib.Transfer(ctx, 2, 3) }, tapefs.ErrElementFull, []string{"slot 3"}},
		{"transfer to slot 0", func() error { return lib.Transfer(ctx, 2, 0) }, tapefs.ErrNoElement, []string{"slot 0"}},
		{"drive that is not there", func() error { _, err := lib.Drive(2); return err }, tapefs.ErrNoElement, []string{"drive 2"}},
	}
	before := where(t, lib)
	for _, c := range cases {
		err := c.call()
		if !errors.Is(err, c.is) {
			t.Errorf("%s: want %v, got %v", c.name, c.is, err)
			continue
		}
		msg := err.Error()
		for _, w := range append(c.words, lib.Dir()) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", c.name, msg, w)
			}
		}
	}
	if after := where(t, lib); !mapsEqual(before, after) {
		t.Fatalf("failed moves moved cartridges: %v, then %v", before, after)
	}
	// A refused move leaves the drive as it was, position and all.
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	writeObjs(t, d, blk(1, 10), blk(2, 10))
	if lib.Load(ctx, 2, 0) == nil || lib.Unload(ctx, 0, 2) == nil {
		t.Fatal("a move into a full element succeeded")
	}
	if p, err := d.Position(ctx); err != nil || p != 2 {
		t.Fatalf("after refused moves: position %d, %v; want 2", p, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestLibraryMoves(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 3, Drives: 2})
	steps := []struct {
		name string
		do   func() error
		want map[string]string
	}{
		{"load 2 into 1", func() error { return lib.Load(ctx, 2, 1) },
			map[string]string{"s1": "RC0001L9", "d1": "RC0002L9", "s3": "RC0003L9"}},
		{"to the mail slot", func() error { return lib.Transfer(ctx, 3, 4) },
			map[string]string{"s1": "RC0001L9", "d1": "RC0002L9", "s4": "RC0003L9"}},
		{"unload into another slot", func() error { return lib.Unload(ctx, 1, 3) },
			map[string]string{"s1": "RC0001L9", "s3": "RC0002L9", "s4": "RC0003L9"}},
		{"load from the mail slot", func() error { return lib.Load(ctx, 4, 0) },
			map[string]string{"s1": "RC0001L9", "s3": "RC0002L9", "d0": "RC0003L9"}},
		{"unload home", func() error { return lib.Unload(ctx, 0, 0) },
			map[string]string{"s1": "RC0001L9", "s3": "RC0002L9", "s4": "RC0003L9"}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := where(t, lib); !mapsEqual(got, s.want) {
			t.Fatalf("after %s: %v, want %v", s.name, got, s.want)
		}
	}
	// A drive shows the slot its cartridge came from.
	if err := lib.Load(ctx, 3, 1); err != nil {
		t.Fatal(err)
	}
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Drives[1].From != 3 {
		t.Fatalf("drive 1 from slot %d, want 3", inv.Drives[1].From)
	}
	// Cleaning cartridges are told apart.
	if _, err := lib.AddBlank("CLN001L1"); err != nil {
		t.Fatal(err)
	}
	inv, _ = lib.Inventory(ctx)
	if !inv.Slots[1].Cleaning || inv.Slots[1].Barcode != "CLN001L1" {
		t.Fatalf("slot 2: %+v", inv.Slots[1])
	}
}

// A cartridge swapped by the changer under an open drive: the drive
// reads the new one.
func TestLibrarySwapUnderDrive(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 2, Drives: 1})
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	for slot := 1; slot <= 2; slot++ {
		if err := lib.Load(ctx, slot, 0); err != nil {
			t.Fatal(err)
		}
		writeObjs(t, d, blk(slot, 100))
		if err := lib.Unload(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for slot := 1; slot <= 2; slot++ {
		if err := lib.Load(ctx, slot, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Load(ctx); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, blk(slot, 100), eod)
		if err := lib.Unload(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLibraryEjectInsert(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 2, Drives: 1})
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	writeObjs(t, d, blk(1, 100), mark)
	if err := lib.Eject("RC0001L9"); err == nil || !strings.Contains(err.Error(), "drive 0") {
		t.Fatalf("eject from a drive: %v", err)
	}
	if err := lib.Unload(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := lib.Eject("RC0001L9"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(lib.Dir(), "outside", "RC0001L9", "tape")); err != nil {
		t.Fatalf("the ejected cartridge is not outside: %v", err)
	}
	if err := lib.Eject("RC0001L9"); !errors.Is(err, tapefs.ErrNoCartridge) {
		t.Fatalf("eject twice: %v", err)
	}
	if got := where(t, lib); !mapsEqual(got, map[string]string{"s2": "RC0002L9"}) {
		t.Fatalf("after eject: %v", got)
	}
	// Faults can be set on a cartridge in hand.
	if err := lib.SetWriteProtected("RC0001L9", true); err != nil {
		t.Fatal(err)
	}
	// A blank takes the free slot; barcodes stay unique.
	if slot, err := lib.AddBlank(""); err != nil || slot != 1 {
		t.Fatalf("add a blank: slot %d, %v", slot, err)
	}
	if got := where(t, lib)["s1"]; got != "RC0003L9" {
		t.Fatalf("the new blank is %q", got)
	}
	if _, err := lib.Insert("RC0001L9"); err == nil {
		t.Fatal("inserted into a full library")
	}
	if _, err := lib.AddBlank("RC0001L9"); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("a second RC0001L9: %v", err)
	}
	if _, err := lib.AddBlank(""); err == nil || !strings.Contains(err.Error(), "add blank cartridge: every storage slot") {
		t.Fatalf("a blank into a full library: %v, want the operation named without a stray space", err)
	}
	if err := lib.Transfer(ctx, 1, 3); err != nil {
		t.Fatal(err)
	}
	if err := lib.Eject("RC0003L9"); err != nil { // from the mail slot
		t.Fatal(err)
	}
	slot, err := lib.Insert("RC0001L9")
	if err != nil || slot != 1 {
		t.Fatalf("insert: slot %d, %v", slot, err)
	}
	if _, err := lib.Insert("RC0001L9"); err == nil {
		t.Fatal("inserted twice")
	}
	if _, err := lib.Insert("NOSUCH"); !errors.Is(err, tapefs.ErrNoCartridge) {
		t.Fatalf("insert an unknown cartridge: %v", err)
	}
	// What was written came back with it, tab and all.
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	readObjs(t, d, blk(1, 100), mark, eod)
	if _, err := d.WriteBlock(ctx, pattern(2, 10)); !errors.Is(err, tapefs.ErrWriteProtected) {
		t.Fatalf("write after the tab was slid outside: %v", err)
	}
}

// Two processes (here two opens: flocks are per open file) on one
// library: a drive is driven by one at a time, a cartridge open in one
// cannot be moved by the other, and moves from both are never lost.
func TestLibraryTwoOpens(t *testing.T) {
	lib1 := newLibrary(t, tapefs.EmulatorOptions{Slots: 6, Drives: 2})
	lib2, err := tapefs.OpenEmulatedLibrary(lib1.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer lib2.Close()
	if err := lib1.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	d1, err := lib1.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lib2.Drive(0); !errors.Is(err, tapefs.ErrDriveBusy) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("a drive the other open drives: %v", err)
	}
	writeObjs(t, d1, blk(1, 10))
	if err := lib2.Unload(ctx, 0, 0); !errors.Is(err, tapefs.ErrDriveBusy) {
		t.Fatalf("unload a cartridge the other open has: %v", err)
	}
	if err := lib2.SetWriteProtected("RC0001L9", true); err == nil {
		t.Fatal("a fault set on a cartridge the other open has")
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := lib2.Drive(0)
	if err != nil {
		t.Fatalf("the drive once the other closed it: %v", err)
	}
	readObjs(t, d2, blk(1, 10), eod)
	if err := lib1.Unload(ctx, 0, 0); !errors.Is(err, tapefs.ErrDriveBusy) {
		t.Fatalf("unload the cartridge the second open has: %v", err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lib1.Unload(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}

	// Both shuffle cartridges at once: each move is whole, none lost.
	// lib1 moves its cartridge between slots 1 and 2, lib2 between 4
	// and 5, so every move is legal whatever the interleaving; a lost
	// update of the state file would duplicate or drop a barcode.
	for _, bc := range []string{"RC0002L9", "RC0005L9"} {
		if err := lib1.Eject(bc); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, lib := range []*tapefs.EmulatedLibrary{lib1, lib2} {
		wg.Go(func() {
			a, b := 1+3*i, 2+3*i
			for range 50 {
				if err := lib.Transfer(ctx, a, b); err != nil {
					errs <- err
					return
				}
				if err := lib.Transfer(ctx, b, a); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := where(t, lib2)
	want := map[string]string{"s1": "RC0001L9", "s3": "RC0003L9", "s4": "RC0004L9", "s6": "RC0006L9"}
	if !mapsEqual(got, want) {
		t.Fatalf("after concurrent moves: %v, want %v", got, want)
	}
}

// state.json and cartridge.json are formats: pinned.
func TestLibraryStateFormat(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 2, Drives: 2, Capacity: 5e9, Rate: 400e6})
	if err := lib.Load(ctx, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := lib.InjectBadBlock("RC0001L9", 0); err == nil {
		t.Fatal("a bad block on a blank cartridge")
	}
	if err := lib.SetWriteProtected("RC0001L9", true); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, golden string }{
		{"state.json", "emulator/state.json"},
		{"cartridges/RC0001L9/cartridge.json", "emulator/cartridge.json"},
	} {
		b, err := os.ReadFile(filepath.Join(lib.Dir(), f.path))
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, f.golden, b)
	}
}

// One library in one process: two drives written from two goroutines
// while a third moves cartridges between slots and reads the inventory.
// Each drive's data is its own; run with -race to see the locking.
func TestLibraryGoroutines(t *testing.T) {
	lib := newLibrary(t, tapefs.EmulatorOptions{Slots: 4, Drives: 2})
	for dr := range 2 {
		if err := lib.Load(ctx, dr+1, dr); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for dr := range 2 {
		d, err := lib.Drive(dr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range 200 {
				if _, err := d.WriteBlock(ctx, pattern(dr*1000+i, 100+i)); err != nil {
					errs <- err
					return
				}
			}
			if err := d.Rewind(ctx); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, 1000)
			for i := range 200 {
				n, err := d.ReadBlock(ctx, buf)
				if err != nil || !bytes.Equal(buf[:n], pattern(dr*1000+i, 100+i)) {
					errs <- fmt.Errorf("drive %d block %d: %d bytes, %v", dr, i, n, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if err := lib.Transfer(ctx, 3, 5); err != nil {
				errs <- err
				return
			}
			if err := lib.Transfer(ctx, 5, 3); err != nil {
				errs <- err
				return
			}
			if _, err := lib.Inventory(ctx); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
