package tapefs_test

import (
	"context"
	"testing"

	"github.com/recall-backup/recall/tapefs"
	"github.com/recall-backup/recall/tapefs/tapetest"
)

// TestSTConformanceModel runs the drive conformance suite on the st driver
// over the model of the kernel's st driver: the same sessions a real drive
// meets (a filemark st adds before moving after writes, the early-warning
// ENOSPC alternation) with the driver's own code above them.
func TestSTConformanceModel(t *testing.T) {
	type model struct {
		setCap func(capacity, earlyWarning int64)
		setWP  func(on bool)
	}
	models := map[tapefs.Drive]model{}
	tapetest.Run(t, func(t *testing.T) tapefs.Drive {
		d, setCap, setWP := tapefs.NewSTModelDrive()
		if err := d.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		models[d] = model{setCap, setWP}
		return d
	},
		tapetest.WithCapacity(func(t *testing.T, d tapefs.Drive, capacity, earlyWarning int64) {
			models[d].setCap(capacity, earlyWarning)
		}),
		tapetest.WithWriteProtect(func(t *testing.T, d tapefs.Drive, on bool) {
			models[d].setWP(on)
		}),
	)
}
