//go:build tapehw

package tapefs_test

import (
	"context"
	"testing"

	"github.com/recall-backup/recall/tapefs"
	"github.com/recall-backup/recall/tapefs/tapetest"
)

// TestSTConformanceDevice runs the drive conformance suite on a real drive:
//
//	RECALL_TEST_TAPE=/dev/nst0 go test -tags tapehw -run TestSTConformanceDevice ./tapefs
//
// The cartridge in the drive is overwritten. The build tag keeps it out of
// runs on machines with no drive, where it could only skip.
func TestSTConformanceDevice(t *testing.T) {
	dev := tapetest.Device(t)
	tapetest.Run(t, func(t *testing.T) tapefs.Drive {
		d, err := tapefs.OpenST(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	})
}
