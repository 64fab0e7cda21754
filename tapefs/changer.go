package tapefs

import (
	"context"
	"errors"
)

// ErrNoCartridge: the changer has no cartridge where one was asked for (an
// empty slot, an unknown barcode).
var ErrNoCartridge = errors.New("no cartridge there")

// ElementKind is the kind of a changer element, as SCSI media changers
// name them.
type ElementKind uint8

const (
	SlotElement         ElementKind = iota + 1 // a storage slot
	DriveElement                               // a data transfer element
	ImportExportElement                        // a mail slot: cartridges enter and leave here
)

func (k ElementKind) String() string {
	switch k {
	case SlotElement:
		return "slot"
	case DriveElement:
		return "drive"
	case ImportExportElement:
		return "import/export"
	}
	return "element?"
}

// Element is one place in a changer that can hold a cartridge.
type Element struct {
	Kind     ElementKind
	Number   int    // the slot number (1-based, as mtx prints it) or drive number (0-based)
	Full     bool   // holds a cartridge
	Barcode  string // the cartridge's volume tag, "" when empty or unreadable
	Cleaning bool   // a cleaning cartridge (barcode CLNxxx)
	From     int    // for a full drive: the slot the cartridge came from, 0 if unknown
}

// Inventory is a changer's view of its elements.
type Inventory struct {
	Drives []Element
	Slots  []Element // storage slots, import/export slots included, by number
}

// Changer moves cartridges between the elements of a library.
// Numbers are those of Element.Number.
type Changer interface {
	// Name names the changer for messages.
	Name() string
	// Inventory reads the elements and barcodes.
	Inventory(ctx context.Context) (*Inventory, error)
	// Load moves the cartridge in slot into drive.
	Load(ctx context.Context, slot, drive int) error
	// Unload moves the cartridge in drive back to slot.
	Unload(ctx context.Context, drive, slot int) error
	// Transfer moves a cartridge between two slots (into or out of an
	// import/export slot).
	Transfer(ctx context.Context, from, to int) error
}
