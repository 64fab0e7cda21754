package tapefs

import (
	"context"
	"errors"
	"fmt"
)

// Errors a Drive returns, checked with errors.Is. A read that meets a
// filemark, the end of data, or a block larger than the caller's buffer
// says so with a distinct error, as the st driver does with its return
// codes; everything else is an I/O error naming the device.
var (
	// ErrFilemark: ReadBlock met a filemark; the position is past it.
	ErrFilemark = errors.New("filemark")
	// ErrEOD: ReadBlock or SpaceFiles met the end of recorded data.
	ErrEOD = errors.New("end of data")
	// ErrBlockTooBig: the block on tape is larger than the read buffer;
	// the position is past the block (its bytes are lost to this read).
	ErrBlockTooBig = errors.New("block larger than the read buffer")
	// ErrEndOfMedium: the cartridge is full (past the early-warning zone);
	// the block was not written.
	ErrEndOfMedium = errors.New("end of medium: the cartridge is full")
	// ErrWriteProtected: the cartridge is write-protected.
	ErrWriteProtected = errors.New("cartridge is write-protected")
	// ErrNoMedium: no cartridge is loaded in the drive.
	ErrNoMedium = errors.New("no cartridge in the drive")
	// ErrMediumError: an unrecoverable read or write error on the medium
	// (a bad block); the position is past the block.
	ErrMediumError = errors.New("medium error")
)

// Drive is one tape drive in variable-block mode. Positions are logical
// object numbers counted from the beginning of tape, as SCSI LOCATE and
// READ POSITION count them: every block and every filemark is one object.
// A Drive is used by one goroutine at a time.
type Drive interface {
	// Name names the drive for messages (a device path, or the emulated
	// library and drive number).
	Name() string
	// Load loads the cartridge in the drive (a changer has moved it there)
	// and positions at the beginning of tape; Unload rewinds and ejects it.
	Load(ctx context.Context) error
	Unload(ctx context.Context) error
	// Rewind positions at the beginning of tape.
	Rewind(ctx context.Context) error
	// SpaceFiles moves over n filemarks: forward when n > 0 (ending just
	// past the n-th), backward when n < 0 (ending just before it).
	// Meeting the end of data forward gives ErrEOD.
	SpaceFiles(ctx context.Context, n int) error
	// SeekEOD positions at the end of recorded data, where the next write
	// appends.
	SeekEOD(ctx context.Context) error
	// Locate positions at the logical object pos.
	Locate(ctx context.Context, pos uint64) error
	// Position reports the current logical object number.
	Position(ctx context.Context) (uint64, error)
	// WriteBlock writes p as one block at the current position, ending the
	// recorded data there (writing in the middle of a tape discards what
	// followed). earlyWarning is true once the block lies in the
	// early-warning zone near the end of the cartridge: the writer should
	// finish its current tape file and move on. Past the zone the write
	// fails with ErrEndOfMedium and nothing is written.
	WriteBlock(ctx context.Context, p []byte) (earlyWarning bool, err error)
	// WriteFilemarks writes n filemarks at the current position. It
	// returns once they are handed to the drive (immediate), not once they
	// are on the medium: Flush is the durability point.
	WriteFilemarks(ctx context.Context, n int) error
	// ReadBlock reads the next block into p and returns its length, or
	// ErrFilemark, ErrEOD, ErrBlockTooBig or ErrMediumError.
	ReadBlock(ctx context.Context, p []byte) (int, error)
	// Flush returns once everything written is on the medium.
	Flush(ctx context.Context) error
	// Status reports the drive's state.
	Status(ctx context.Context) (Status, error)
	// Close releases the device; a loaded cartridge stays loaded.
	Close() error
}

// Status is what a drive reports about itself and its cartridge.
type Status struct {
	Loaded         bool   // a cartridge is in the drive
	WriteProtected bool   // the cartridge refuses writes
	BOT            bool   // at the beginning of tape
	EOD            bool   // at the end of recorded data
	EarlyWarning   bool   // in the early-warning zone
	Position       uint64 // logical object number
	File           int64  // file number (filemarks passed), -1 if unknown
	Block          int64  // block number within the file, -1 if unknown
}

// DeviceError wraps an error of a drive or changer with the device it came
// from and what the operator can do about it.
type DeviceError struct {
	Device string // the drive or changer, as Drive.Name gives it
	Op     string // what was being done: "write block", "locate 1234"
	Err    error
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Device, e.Op, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }
