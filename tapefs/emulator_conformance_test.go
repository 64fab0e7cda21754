package tapefs_test

import (
	"context"
	"testing"

	"github.com/recall-backup/recall/tapefs"
	"github.com/recall-backup/recall/tapefs/tapetest"
)

// loadedDrive makes a one-slot emulated library in a temporary directory
// and returns its drive with the cartridge loaded.
func loadedDrive(t *testing.T, o tapefs.EmulatorOptions) (*tapefs.EmulatedLibrary, tapefs.Drive) {
	t.Helper()
	ctx := context.Background()
	if o.Slots == 0 {
		o.Slots = 1
	}
	if o.Drives == 0 {
		o.Drives = 1
	}
	lib, err := tapefs.CreateEmulatedLibrary(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
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
	return lib, d
}

// inDrive is the barcode loaded in drive 0.
func inDrive(t *testing.T, lib *tapefs.EmulatedLibrary) string {
	t.Helper()
	inv, err := lib.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inv.Drives[0].Barcode
}

func TestEmulatorConformance(t *testing.T) {
	libs := map[tapefs.Drive]*tapefs.EmulatedLibrary{}
	tapetest.Run(t,
		func(t *testing.T) tapefs.Drive {
			lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
			libs[d] = lib
			return d
		},
		tapetest.WithCapacity(func(t *testing.T, d tapefs.Drive, capacity, earlyWarning int64) {
			lib := libs[d]
			if err := lib.SetCapacity(inDrive(t, lib), capacity, earlyWarning); err != nil {
				t.Fatal(err)
			}
		}),
		tapetest.WithWriteProtect(func(t *testing.T, d tapefs.Drive, on bool) {
			lib := libs[d]
			if err := lib.SetWriteProtected(inDrive(t, lib), on); err != nil {
				t.Fatal(err)
			}
		}),
	)
}
