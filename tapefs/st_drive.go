//go:build linux

package tapefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"syscall"
	"time"
)

// The Linux SCSI tape driver (st) as a Drive.
//
// The driver speaks through read/write return codes and three ioctls
// (MTIOCTOP, MTIOCGET, MTIOCPOS); how it reports each tape condition, as its
// documentation (Documentation/scsi/st.rst) and source describe it in
// variable-block mode, and what this file makes of it:
//
//   - A read that meets a filemark returns 0 bytes and leaves the tape past
//     the filemark; MTIOCGET then shows block 0 (GMT_EOF): ErrFilemark.
//   - A read at the end of data right after a filemark also returns 0 bytes
//     (once), then fails with EIO; either way MTIOCGET shows GMT_EOD: ErrEOD.
//   - A read at the end of data that does not follow a filemark (a torn last
//     file, after a power cut) fails with EIO at once, and so does an
//     unrecoverable medium error. The two are told apart by where the end of
//     data is (MTEOM, then MTIOCPOS): at the block we tried to read, ErrEOD;
//     beyond it, ErrMediumError, and the tape is moved past the bad block.
//   - A block larger than the read buffer: ENOMEM, the tape past the block:
//     ErrBlockTooBig.
//   - Early warning on write: the write that enters the zone succeeds and the
//     driver notes it (MTIOCGET shows GMT_EOT); the next write fails with
//     ENOSPC having written nothing, and the one after that goes through,
//     alternating so that a program can write its trailer. WriteBlock hides
//     the alternation: it retries a first ENOSPC once and reports
//     earlyWarning from GMT_EOT after every block. Two ENOSPC in a row is the
//     physical end: ErrEndOfMedium, nothing written.
//   - A write-protected cartridge: EACCES on write (the device is opened
//     O_NONBLOCK, which st allows for writing whatever the tab says).
//   - No cartridge: ENOMEDIUM.
//
// Two habits of the driver are undone here. After blocks were written, st
// writes a filemark of its own before it rewinds, locates, spaces backward or
// unloads, and at close, unless the last operation wrote filemarks: a file
// left unfinished (the cartridge filled, the job failed) would end with a
// filemark on a real drive and without one on the emulator. So before any
// of those the drive first writes zero filemarks, which flushes and tells st
// the writing is over (settle). And positions are the drive's logical object
// numbers only if st asks READ POSITION and LOCATE for logical addresses (its
// scsi2logical option), and a write returns its own errors only without st's
// asynchronous writes: OpenST sets the options it needs (stOptionProblem),
// which st allows only to root, and refuses a drive whose options it sees
// are wrong.
//
// Calls cannot be cancelled once issued to the driver (a locate can take a
// minute or two); ctx is checked before each.

// The MTIOCTOP operations used (linux/mtio.h).
const (
	mtFSF          = 1  // space forward over filemarks
	mtBSF          = 2  // space backward over filemarks
	mtWEOF         = 5  // write filemarks (synchronous: 0 of them flushes)
	mtREW          = 6  // rewind
	mtOFFL         = 7  // rewind and eject
	mtEOM          = 12 // space to the end of recorded data
	mtSETBLK       = 20 // block size; 0 is variable-block mode
	mtSEEK         = 22 // locate to a logical object
	mtSETDRVBUFFER = 24 // with MT_ST_* option bits: driver options
	mtLOAD         = 30 // SCSI LOAD
	mtWEOFI        = 35 // write filemarks with the immediate bit
)

// MTSETDRVBUFFER arguments: set or clear the listed boolean options
// (linux/mtio.h, MT_ST_*).
const (
	mtSTSetBooleans   = 0x30000000
	mtSTClearBooleans = 0x40000000
	mtSTAsyncWrites   = 0x2
	mtSTSCSI2Logical  = 0x800
	mtSTNowait        = 0x2000
	mtSTNowaitEOF     = 0x8000
)

// stOptionProblem says what is wrong for recall with a drive's st options,
// "" if nothing, and how to fix it:
//   - scsi2logical must be on, or MTIOCPOS and MTSEEK use device-specific
//     addresses instead of the logical object numbers the format records;
//   - async writes must be off: a write then returns before the drive has
//     the block, its early warning or error comes with the next call, and
//     a block refused at the end of the medium has already been reported
//     written;
//   - positioning must wait for the tape (MT_ST_NOWAIT off), or a rewind
//     or locate returns before the tape is there;
//   - filemarks must not be immediate by default (MT_ST_NOWAIT_EOF), or
//     Flush, which writes zero filemarks synchronously, returns at once.
func stOptionProblem(opts uint64, dev string) string {
	var wrong, fix []string
	if opts&mtSTSCSI2Logical == 0 {
		wrong = append(wrong, "scsi2logical is off (positions would be device-specific)")
		fix = append(fix, "mt -f "+dev+" stsetoptions scsi2logical")
	}
	if opts&mtSTAsyncWrites != 0 {
		wrong = append(wrong, "async-writes is on (write errors would come one block late)")
		fix = append(fix, "mt -f "+dev+" stclearoptions async-writes")
	}
	if opts&mtSTNowait != 0 {
		wrong = append(wrong, "no-wait is on (rewinds and locates would return before the tape moved)")
		fix = append(fix, "mt -f "+dev+" stclearoptions no-wait")
	}
	if opts&mtSTNowaitEOF != 0 {
		wrong = append(wrong, "filemarks are written without waiting (a flush would not wait for the medium)")
		fix = append(fix, "clear the driver's nowait-eof option (MT_ST_NOWAIT_EOF)")
	}
	if len(wrong) == 0 {
		return ""
	}
	return "the st driver's options for this drive do not suit recall: " + strings.Join(wrong, "; ") +
		". Open it once as root (recall sets them), or set them at boot: " + strings.Join(fix, ", then ") +
		" (or the same in /etc/stinit.def)"
}

// The GMT_* bits of mtget.gstat (linux/mtio.h).
const (
	gmtEOF    uint32 = 0x80000000 // just past a filemark (block 0 of a file > 0)
	gmtBOT    uint32 = 0x40000000
	gmtEOT    uint32 = 0x20000000 // early warning (or past the physical end)
	gmtEOD    uint32 = 0x08000000 // at the end of recorded data
	gmtWrProt uint32 = 0x04000000
	gmtOnline uint32 = 0x01000000 // a cartridge is loaded and ready
)

// mtBlockSizeMask takes the block size out of mtget.dsreg.
const mtBlockSizeMask = 0xffffff

// mtget is struct mtget: C longs are Go ints on every Linux architecture
// st_linux.go builds for, and __kernel_daddr_t is a C int.
type mtget struct {
	Type   int
	Resid  int
	Dsreg  int
	Gstat  int
	Erreg  int
	Fileno int32
	Blkno  int32
}

// gstat is the status bits; the field is a C long, of which st sets the
// low 32 bits.
func (g mtget) gstat() uint32 { return uint32(g.Gstat) }

// stDevice is the kernel side of one st device: the system calls the Drive
// logic makes, and nothing else. Errors are syscall.Errno values.
type stDevice interface {
	read(p []byte) (int, error)
	write(p []byte) (int, error)
	op(op int16, count int32) error
	status() (mtget, error)
	position() (uint64, error)
	close() error
}

// Load waits for a cartridge the changer just moved in: drives take tens of
// seconds to thread a tape and report not ready meanwhile.
const (
	stLoadTimeout = 5 * time.Minute
	stLoadPoll    = 2 * time.Second
)

// stDrive is a Drive on an st device. It tracks the logical position itself
// (each block and filemark is one object) so that a failed read knows which
// block failed without asking the drive first; after moves whose end it
// cannot know (spacing, end of data) it asks.
type stDrive struct {
	name     string
	dev      stDevice
	pos      uint64
	posKnown bool
	variable bool // variable-block mode set for the loaded cartridge
	closed   bool
	// wrote: blocks were written since the last filemark or flush, so st
	// would write a filemark of its own before moving the tape (settle).
	wrote bool
	// blockUnknown: st counts the block within the file as 0 after
	// writing zero filemarks (a flush); its File and Block mean nothing
	// until the tape is positioned again.
	blockUnknown bool

	loadTimeout, loadPoll time.Duration
}

var _ Drive = (*stDrive)(nil)

func newSTDrive(name string, dev stDevice) *stDrive {
	return &stDrive{name: name, dev: dev, loadTimeout: stLoadTimeout, loadPoll: stLoadPoll}
}

func (d *stDrive) Name() string { return d.name }

func (d *stDrive) fail(op string, err error) error {
	return &DeviceError{Device: d.name, Op: op, Err: err}
}

// begin is the start of every operation: a cancelled context stops it.
func (d *stDrive) begin(ctx context.Context) error {
	if d.closed {
		return d.fail("use", errors.New("drive is closed"))
	}
	return ctx.Err()
}

// ensureVariable puts the drive in variable-block mode: st resets the block
// size to its default whenever a cartridge is loaded, and a fixed block size
// would split our blocks.
func (d *stDrive) ensureVariable() error {
	if d.variable {
		return nil
	}
	st, err := d.dev.status()
	if err != nil {
		return d.fail("status", translate(stMove, err))
	}
	if st.gstat()&gmtOnline == 0 {
		return nil // nothing loaded; the I/O that follows says so
	}
	if st.Dsreg&mtBlockSizeMask != 0 {
		if err := d.dev.op(mtSETBLK, 0); err != nil {
			return d.fail("set variable-block mode", translate(stMove, err))
		}
	}
	d.variable = true
	return nil
}

// noMedium forgets what belonged to the cartridge once the drive says there
// is none.
func (d *stDrive) noMedium(err error) {
	if errors.Is(err, syscall.ENOMEDIUM) {
		d.variable = false
		d.posKnown = false
	}
}

// settle ends a run of written blocks without a filemark before the tape
// moves (see the note on st's own filemarks above). Errors the drive held
// back for buffered blocks come out here.
func (d *stDrive) settle(what string) error {
	if !d.wrote {
		return nil
	}
	if err := d.dev.op(mtWEOF, 0); err != nil {
		d.posKnown = false
		d.noMedium(err)
		return d.fail(what+": flush before moving", translate(stWrite, err))
	}
	d.wrote, d.blockUnknown = false, true
	return nil
}

func (d *stDrive) Load(ctx context.Context) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if err := d.settle("load"); err != nil && !errors.Is(err, ErrNoMedium) {
		return err
	}
	d.wrote = false
	d.variable, d.posKnown, d.blockUnknown = false, false, false
	deadline := time.Now().Add(d.loadTimeout)
	for {
		err := d.dev.op(mtLOAD, 1)
		if err == nil {
			break
		}
		// After a bus reset st refuses everything but rewinding and a few
		// moves (EIO) until the tape is rewound: a rewind that works means
		// the cartridge is in and ready.
		if errors.Is(err, syscall.EIO) && d.dev.op(mtREW, 1) == nil {
			break
		}
		// Not ready yet (EIO) or not there yet (ENOMEDIUM) while the drive
		// threads the tape; anything else will not pass by waiting.
		if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENOMEDIUM) || time.Now().After(deadline) {
			return d.fail("load", translate(stLoad, err))
		}
		t := time.NewTimer(d.loadPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if err := d.dev.op(mtREW, 1); err != nil {
		return d.fail("rewind after load", translate(stMove, err))
	}
	d.pos, d.posKnown = 0, true
	return d.ensureVariable()
}

func (d *stDrive) Unload(ctx context.Context) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if err := d.settle("unload"); err != nil && !errors.Is(err, ErrNoMedium) {
		return err
	}
	d.wrote = false
	d.variable, d.posKnown, d.blockUnknown = false, false, false
	if err := d.dev.op(mtOFFL, 1); err != nil {
		return d.fail("unload", translate(stMove, err))
	}
	return nil
}

func (d *stDrive) Rewind(ctx context.Context) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if err := d.settle("rewind"); err != nil {
		return err
	}
	d.blockUnknown = false
	if err := d.dev.op(mtREW, 1); err != nil {
		d.posKnown = false
		d.noMedium(err)
		return d.fail("rewind", translate(stMove, err))
	}
	d.pos, d.posKnown = 0, true
	return nil
}

func (d *stDrive) SpaceFiles(ctx context.Context, n int) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if n > math.MaxInt32 || n < -math.MaxInt32 {
		return d.fail(fmt.Sprintf("space %d files", n), errors.New("count out of range"))
	}
	what := fmt.Sprintf("space %d files", n)
	if err := d.settle(what); err != nil {
		return err
	}
	d.posKnown, d.blockUnknown = false, false
	op, count := int16(mtFSF), int32(n)
	if n < 0 {
		op, count = mtBSF, int32(-n)
	}
	err := d.dev.op(op, count)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EIO) && n > 0 {
		// Spacing into blank tape: st marks the end of data.
		if st, serr := d.dev.status(); serr == nil && st.gstat()&gmtEOD != 0 {
			return d.fail(what, ErrEOD)
		}
	}
	if errors.Is(err, syscall.EIO) && n < 0 {
		// st keeps no file count after a locate, so it cannot say it is
		// at the beginning; the drive can.
		if p, perr := d.dev.position(); perr == nil {
			d.pos, d.posKnown = p, true
			if p == 0 {
				return d.fail(what, fmt.Errorf("the beginning of tape came before %d filemarks (%w)", -n, err))
			}
		}
	}
	d.noMedium(err)
	return d.fail(what, translate(stMove, err))
}

func (d *stDrive) SeekEOD(ctx context.Context) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if err := d.settle("seek end of data"); err != nil {
		return err
	}
	d.posKnown, d.blockUnknown = false, false
	if err := d.dev.op(mtEOM, 1); err != nil {
		d.noMedium(err)
		return d.fail("seek end of data", translate(stMove, err))
	}
	return nil
}

func (d *stDrive) Locate(ctx context.Context, pos uint64) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if err := d.settle(fmt.Sprintf("locate %d", pos)); err != nil {
		return err
	}
	err := d.locate(pos)
	if errors.Is(err, syscall.EIO) {
		// A locate beyond the end of data fails like a bad spot on the
		// medium; the end of data tells which.
		if d.dev.op(mtEOM, 1) == nil {
			if eod, perr := d.position(); perr == nil && pos > eod {
				return d.fail(fmt.Sprintf("locate %d", pos), fmt.Errorf("beyond the end of data at %d (%w)", eod, syscall.EIO))
			}
		}
	}
	return err
}

func (d *stDrive) locate(pos uint64) error {
	what := fmt.Sprintf("locate %d", pos)
	// MTSEEK takes a C int; LTO-9 holds about 17 million 1 MiB blocks.
	if pos > math.MaxInt32 {
		return d.fail(what, errors.New("position beyond what the st driver can locate"))
	}
	d.blockUnknown = false
	if err := d.dev.op(mtSEEK, int32(pos)); err != nil {
		d.posKnown = false
		d.noMedium(err)
		return d.fail(what, translate(stMove, err))
	}
	d.pos, d.posKnown = pos, true
	return nil
}

func (d *stDrive) Position(ctx context.Context) (uint64, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	return d.position()
}

func (d *stDrive) position() (uint64, error) {
	p, err := d.dev.position()
	if err != nil {
		d.posKnown = false
		d.noMedium(err)
		return 0, d.fail("read position", translate(stMove, err))
	}
	d.pos, d.posKnown = p, true
	return p, nil
}

func (d *stDrive) advance(n uint64) {
	if d.posKnown {
		d.pos += n
	}
}

func (d *stDrive) WriteBlock(ctx context.Context, p []byte) (bool, error) {
	if err := d.begin(ctx); err != nil {
		return false, err
	}
	if len(p) == 0 {
		return false, d.fail("write block", errors.New("an empty block cannot be written in variable-block mode"))
	}
	if err := d.ensureVariable(); err != nil {
		return false, err
	}
	for attempt := 0; ; attempt++ {
		n, err := d.dev.write(p)
		switch {
		case err == nil && n == len(p):
			d.advance(1)
			d.wrote = true
			st, err := d.dev.status()
			if err != nil {
				return false, d.fail("status after write", translate(stMove, err))
			}
			return st.gstat()&gmtEOT != 0, nil
		case err == nil:
			// Variable-block writes are whole or nothing; a short count
			// means the drive cut the block, which no reader will accept.
			d.posKnown = false
			return false, d.fail("write block", fmt.Errorf("%w: %d of %d bytes written: the block on tape is damaged", io.ErrShortWrite, n, len(p)))
		case errors.Is(err, syscall.ENOSPC) && attempt == 0:
			// The first write after an early-warning write is refused with
			// nothing written, so that the program notices; the next goes
			// through. At the physical end the retry fails too.
			continue
		default:
			d.noMedium(err)
			return false, d.fail("write block", translate(stWrite, err))
		}
	}
}

func (d *stDrive) WriteFilemarks(ctx context.Context, n int) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	if n <= 0 || n > math.MaxInt32 {
		return d.fail(fmt.Sprintf("write %d filemarks", n), errors.New("count out of range"))
	}
	if err := d.ensureVariable(); err != nil {
		return err
	}
	err := d.dev.op(mtWEOFI, int32(n))
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) {
		// Kernels before 2.6.37 have no MTWEOFI: the synchronous one is
		// slower (it flushes) but writes the same filemarks.
		err = d.dev.op(mtWEOF, int32(n))
	}
	if err != nil {
		d.posKnown = false
		d.noMedium(err)
		return d.fail(fmt.Sprintf("write %d filemarks", n), translate(stWrite, err))
	}
	d.advance(uint64(n))
	d.wrote, d.blockUnknown = false, false
	return nil
}

func (d *stDrive) ReadBlock(ctx context.Context, p []byte) (int, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	if err := d.ensureVariable(); err != nil {
		return 0, err
	}
	if !d.posKnown {
		if _, err := d.position(); err != nil {
			return 0, err
		}
	}
	// Reading ends st's writing without a filemark: there is nothing
	// left to settle, and a flush at a read position is not wanted.
	d.wrote = false
	before := d.pos
	n, err := d.dev.read(p)
	switch {
	case err == nil && n > 0:
		d.pos++
		return n, nil
	case err == nil:
		st, serr := d.dev.status()
		if serr != nil {
			d.posKnown = false
			return 0, d.fail("status after read", translate(stMove, serr))
		}
		cond := zeroReadMeaning(st)
		if errors.Is(cond, ErrFilemark) {
			d.pos++
			d.blockUnknown = false
		} else if !errors.Is(cond, ErrEOD) {
			d.posKnown = false
		}
		return 0, d.fail("read block", cond)
	case errors.Is(err, syscall.ENOMEM):
		d.pos++
		return 0, d.fail("read block", translate(stRead, err))
	case errors.Is(err, syscall.EIO):
		return 0, d.readEIO(before, err)
	default:
		d.posKnown = false
		d.noMedium(err)
		return 0, d.fail("read block", translate(stRead, err))
	}
}

// zeroReadMeaning says what a read that returned no bytes met, from the
// status st reports just after it. Blocks of zero bytes cannot be written in
// variable-block mode, so it is never data.
func zeroReadMeaning(st mtget) error {
	switch {
	case st.gstat()&gmtEOD != 0:
		return ErrEOD
	case st.gstat()&gmtEOF != 0:
		return ErrFilemark
	}
	// No filemark was crossed (st counts the block as read): a damaged
	// block that the drive returned as empty.
	return fmt.Errorf("%w: the drive returned an empty block", ErrMediumError)
}

// readEIO tells the end of data from a bad block after a read failed with
// EIO at logical object before.
func (d *stDrive) readEIO(before uint64, readErr error) error {
	if st, err := d.dev.status(); err == nil && st.gstat()&gmtEOD != 0 {
		return d.fail("read block", ErrEOD)
	}
	if err := d.dev.op(mtEOM, 1); err != nil {
		d.posKnown = false
		return d.fail("read block", fmt.Errorf("%w; then seeking the end of data to tell it from the end of data: %v", translate(stRead, readErr), err))
	}
	eod, err := d.position()
	if err != nil {
		return err
	}
	if !eodIsBadBlock(before, eod) {
		return d.fail("read block", ErrEOD)
	}
	if err := d.locate(before + 1); err != nil {
		return err
	}
	return d.fail(fmt.Sprintf("read block at %d", before), translate(stRead, readErr))
}

// eodIsBadBlock reports whether a read of the object at pos that failed
// with EIO met a damaged block rather than the end of data at eod.
func eodIsBadBlock(pos, eod uint64) bool { return eod > pos }

func (d *stDrive) Flush(ctx context.Context) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	// Writing zero filemarks without the immediate bit returns once the
	// drive's buffer is on the medium.
	err := d.dev.op(mtWEOF, 0)
	if errors.Is(err, syscall.EACCES) {
		return nil // write-protected: nothing can be waiting to be written
	}
	if err != nil {
		d.noMedium(err)
		return d.fail("flush", translate(stWrite, err))
	}
	d.wrote, d.blockUnknown = false, true
	return nil
}

func (d *stDrive) Status(ctx context.Context) (Status, error) {
	if err := d.begin(ctx); err != nil {
		return Status{}, err
	}
	st, err := d.dev.status()
	if err != nil {
		return Status{}, d.fail("status", translate(stMove, err))
	}
	var pos uint64
	if st.gstat()&gmtOnline != 0 {
		if pos, err = d.position(); err != nil {
			return Status{}, err
		}
	}
	s := statusOf(st, pos)
	if d.blockUnknown {
		s.File, s.Block = -1, -1
	}
	return s, nil
}

// statusOf turns what MTIOCGET and MTIOCPOS report into a Status.
func statusOf(st mtget, pos uint64) Status {
	s := Status{
		Loaded:         st.gstat()&gmtOnline != 0,
		WriteProtected: st.gstat()&gmtWrProt != 0,
		BOT:            st.gstat()&gmtBOT != 0,
		EOD:            st.gstat()&gmtEOD != 0,
		EarlyWarning:   st.gstat()&gmtEOT != 0,
		File:           int64(st.Fileno),
		Block:          int64(st.Blkno),
	}
	if s.Loaded {
		s.Position = pos
	} else {
		s.File, s.Block = -1, -1
	}
	if s.File < 0 {
		s.File = -1
	}
	if s.Block < 0 {
		s.Block = -1
	}
	return s
}

func (d *stDrive) Close() error {
	if d.closed {
		return nil
	}
	serr := d.settle("close")
	d.closed = true
	if err := d.dev.close(); err != nil {
		return d.fail("close", err)
	}
	return serr
}

// stOp is the kind of operation an errno came from: st gives the same
// errno different meanings in each.
type stOp int

const (
	stOpen  stOp = iota
	stRead       // read(2)
	stWrite      // write(2), writing filemarks, flushing
	stMove       // positioning and status ioctls
	stLoad
)

// translate turns an errno of the st driver into this package's error for
// it, keeping the errno (both match errors.Is), with what the operator can
// do next.
func translate(op stOp, errno error) error {
	var sentinel error
	hint := ""
	switch {
	case errors.Is(errno, syscall.ENOMEDIUM):
		sentinel, hint = ErrNoMedium, "load a cartridge (the changer moves one in, or insert it by hand)"
	case op == stOpen && (errors.Is(errno, syscall.EACCES) || errors.Is(errno, syscall.EPERM)):
		hint = "this user may not open the tape device: add it to the device's group (tape on Debian) or install a udev rule"
	case op == stOpen && errors.Is(errno, syscall.EBUSY):
		hint = "another process has the drive open (st allows one): find it with fuser"
	case op == stOpen && (errors.Is(errno, syscall.ENOENT) || errors.Is(errno, syscall.ENXIO) || errors.Is(errno, syscall.ENODEV)):
		hint = "no such tape device: is the st module loaded (modprobe st), and is this the drive's /dev/nstN (lsscsi -g)?"
	case op == stOpen && errors.Is(errno, syscall.ENOTTY):
		hint = "not a tape device: give the drive's non-rewinding st device, /dev/nstN (lsscsi -g lists it)"
	case (op == stWrite) && (errors.Is(errno, syscall.EACCES) || errors.Is(errno, syscall.EROFS)):
		sentinel, hint = ErrWriteProtected, "slide the cartridge's write-protect tab, or use another cartridge"
	case op == stWrite && errors.Is(errno, syscall.ENOSPC):
		sentinel = ErrEndOfMedium
	case op == stWrite && errors.Is(errno, syscall.EINVAL):
		hint = "the drive or the SCSI adapter refused the block size: check the drive's block limits and the adapter's max_sectors_kb, or the st module's max_sg_segs"
	case op == stRead && errors.Is(errno, syscall.ENOMEM):
		sentinel = ErrBlockTooBig
	case op == stRead && errors.Is(errno, syscall.EINVAL):
		hint = "the read buffer is larger than the drive or the SCSI adapter allows: read with a buffer of the block size written"
	case errors.Is(errno, syscall.EIO) && op == stWrite:
		sentinel, hint = ErrMediumError, "the write failed on the medium: clean the drive, then use another cartridge if it fails again"
	case errors.Is(errno, syscall.EIO) && (op == stRead || op == stMove):
		sentinel, hint = ErrMediumError, "unrecoverable error on the medium: clean the drive and retry; if it persists the cartridge is damaged there"
	case errors.Is(errno, syscall.EIO) && op == stLoad:
		hint = "the drive did not become ready: check that the changer put a cartridge in it and that it is not a cleaning cartridge"
	}
	switch {
	case sentinel != nil && hint != "":
		return fmt.Errorf("%w (%w); %s", sentinel, errno, hint)
	case sentinel != nil:
		return fmt.Errorf("%w (%w)", sentinel, errno)
	case hint != "":
		return fmt.Errorf("%w; %s", errno, hint)
	}
	return errno
}
