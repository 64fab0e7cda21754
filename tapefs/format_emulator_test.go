package tapefs

import (
	"context"
	"errors"
	"testing"
)

// emulated returns an emulated library of one slot and its drive with the
// cartridge loaded, and the cartridge's barcode.
func emulated(t *testing.T) (*EmulatedLibrary, Drive, string) {
	t.Helper()
	ctx := context.Background()
	lib, err := CreateEmulatedLibrary(t.TempDir(), EmulatorOptions{Slots: 1, Drives: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return lib, d, inv.Slots[0].Barcode
}

// TestFormatOnEmulator writes a set over the emulated drive, as the
// engine does, and reads it back with and without its catalog file.
func TestFormatOnEmulator(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		set  SetLabel
		key  []byte
	}{
		{"plain", func() SetLabel { s := testSet; s.KeyFingerprint, s.Compressed = "", false; return s }(), nil},
		{"encrypted and compressed", testSet, testKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, d, barcode := emulated(t)
			want := writeTestSet(t, d, tc.set, tc.key, 2, 1)
			res, err := ScanTape(ctx, d, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if !res.FromCatalogFile || res.Torn || len(res.Catalog.Points) != 4 || len(res.Catalog.Files) != len(want.Files) {
				t.Fatalf("scan: from catalog %v torn %v, %d points, %d files", res.FromCatalogFile, res.Torn, len(res.Catalog.Points), len(res.Catalog.Files))
			}
			// Read a pack by its catalog position, as a restore does.
			f := res.Catalog.Files[3]
			o := FileOptions{}
			if tc.key != nil {
				o.Key = SetKey(tc.key, tc.set.SetID)
			}
			if err := d.Locate(ctx, f.StartPos); err != nil {
				t.Fatal(err)
			}
			r, got, err := readAll(t, d, o)
			if err != nil || r.FileNo() != f.FileNo || len(got) != len(f.Entries) {
				t.Fatalf("file %d at %d: %v, %d entries", f.FileNo, f.StartPos, err, len(got))
			}

			// A power cut in the last block of the last catalog file: the
			// scan reads every file before it.
			if err := lib.TearLastBlock(barcode); err != nil {
				t.Fatal(err)
			}
			res, err = ScanTape(ctx, d, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if res.FromCatalogFile || !res.Torn || len(res.Catalog.Points) != 4 || len(res.Damaged) != 1 || !errors.Is(res.Damaged[0].Err, ErrTorn) {
				t.Fatalf("torn: from catalog %v torn %v, %d points, damaged %v", res.FromCatalogFile, res.Torn, len(res.Catalog.Points), res.Damaged)
			}

			// A bad block in the middle of the first packs file: its first
			// pack survives, the rest of the file is skipped and named.
			if err := lib.InjectBadBlock(barcode, want.Files[1].StartPos+1); err != nil {
				t.Fatal(err)
			}
			res, err = ScanTape(ctx, d, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Damaged) != 2 || !errors.Is(res.Damaged[0].Err, ErrBadBlock) || res.Damaged[0].FileNo != want.Files[1].FileNo || res.Damaged[0].Entry != want.Files[1].Entries[1].Name {
				t.Fatalf("bad block: damaged %+v", res.Damaged)
			}
			if e := res.Catalog.Files[1].Entries; len(e) != 1 || e[0] != want.Files[1].Entries[0] {
				t.Fatalf("the damaged file lists %+v", e)
			}
			if len(res.Catalog.Points) != 4 {
				t.Fatalf("%d points", len(res.Catalog.Points))
			}
		})
	}
}

// TestWriterEndOfMedium drives the writer into the emulated cartridge's
// early-warning zone and past its end.
func TestWriterEndOfMedium(t *testing.T) {
	ctx := context.Background()
	const mib = 1 << 20
	t.Run("early warning from the first block", func(t *testing.T) {
		lib, d, barcode := emulated(t)
		if err := lib.SetCapacity(barcode, 64*mib, 64*mib); err != nil {
			t.Fatal(err)
		}
		w, err := NewFileWriter(ctx, d, KindPacks, 2, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 2*mib)
		early, err := w.Add(ctx, "pack", data)
		if err != nil || !early {
			t.Fatalf("add: early warning %v, %v", early, err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		d.Rewind(ctx)
		_, got, err := readAll(t, d, FileOptions{})
		if err != nil || len(got) != 1 {
			t.Fatalf("read back: %v, %d entries", err, len(got))
		}
	})
	t.Run("end of medium mid-entry", func(t *testing.T) {
		lib, d, barcode := emulated(t)
		if err := lib.SetCapacity(barcode, 5*mib, mib); err != nil {
			t.Fatal(err)
		}
		w, err := NewFileWriter(ctx, d, KindPacks, 2, FileOptions{Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		first := makeEntries(9, mib)[0]
		if early, err := w.Add(ctx, first.name, first.data); err != nil || early {
			t.Fatalf("first entry: early warning %v, %v", early, err)
		}
		early, err := w.Add(ctx, "too big", make([]byte, 8*mib))
		if !errors.Is(err, ErrEndOfMedium) || !early {
			t.Fatalf("entry past the end: early warning %v, %v", early, err)
		}
		if e := w.Entries(); len(e) != 1 || e[0].Name != first.name {
			t.Fatalf("entries whole on tape: %+v", e)
		}
		if err := w.Close(ctx); !errors.Is(err, ErrEndOfMedium) {
			t.Fatalf("close of an unfinished file: %v", err)
		}
		// The cartridge as it is left: the entry cut short is no entry.
		d.Rewind(ctx)
		_, got, err := readAll(t, d, FileOptions{Key: testKey})
		if !errors.Is(err, ErrTorn) {
			t.Fatalf("read back: %v, want ErrTorn", err)
		}
		sameEntries(t, got, []testEntry{first})
		// The same with a filemark after the cut (a drive lets one past
		// the end): still torn, and the drive is at the next file.
		d.SeekEOD(ctx)
		if err := d.WriteFilemarks(ctx, 1); err != nil {
			t.Fatal(err)
		}
		d.Rewind(ctx)
		if _, _, err := readAll(t, d, FileOptions{Key: testKey}); !errors.Is(err, ErrTorn) {
			t.Fatalf("read back: %v, want ErrTorn", err)
		}
		if _, err := NewFileReader(ctx, d, FileOptions{Key: testKey}); !errors.Is(err, ErrEOD) {
			t.Fatalf("after the torn file: %v, want ErrEOD", err)
		}
	})
	t.Run("write-protected", func(t *testing.T) {
		lib, d, barcode := emulated(t)
		if err := lib.SetWriteProtected(barcode, true); err != nil {
			t.Fatal(err)
		}
		if err := WriteLabels(ctx, d, testVolume, testSet); !errors.Is(err, ErrWriteProtected) {
			t.Fatalf("labelling a write-protected cartridge: %v", err)
		}
		if _, _, err := ReadLabels(ctx, d); !errors.Is(err, ErrNotLabelled) {
			t.Fatalf("after a refused labelling: %v, want ErrNotLabelled", err)
		}
	})
}
