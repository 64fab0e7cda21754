package tapefs

// The emulator: drives and cartridges kept in files, for machines with no
// tape hardware (and for every test). Text for the package comment:
//
// # Emulated cartridges
//
// An emulated cartridge is a directory named by its barcode holding
// "tape", the recorded data, "cartridge.json", what is physical about it
// (capacity, early-warning zone, write-protect tab, injected faults), and,
// once it holds many records, "index", a cache of its record headers
// (emulator_index.go). Moving the directory moves the cartridge, whole.
//
// tape, version 1 (integers little-endian):
//
//	tape    = header record*
//	header  = "RCLTAPE\x00" | version u32 (1) | reserved u32 (0)
//	record  = kind u8 | reserved [3]byte (0) | length u32 | payload [length]byte
//	kind    = 1 block | 2 filemark (length 0) | 3 torn block
//
// Record n is logical object n, as Drive positions count them; the end of
// the file is the end of recorded data. Writing at object n truncates the
// file at record n first, as a drive discards what followed. Records are
// appended with one write and made durable by Flush (fsync). A process
// that dies mid-write leaves at worst a record cut short: opening the
// cartridge drops a partial record header and turns a record whose payload
// was cut short into a torn block (kind 3, length what is there), which
// reads as ErrMediumError. Capacity counts payload bytes only.
//
// cartridge.json, version 1: {"version", "barcode", "capacity",
// "early_warning", "write_protected", "bad_blocks"}; bad_blocks lists the
// logical objects that read as ErrMediumError (a write over one heals it).
// It is replaced atomically (temporary file, fsync, rename).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"

	"github.com/recall-backup/recall/internal/atomicfile"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

const (
	cartridgeVersion = 1
	cartridgeMagic   = "RCLTAPE\x00"
	tapeHeaderLen    = 16
	recordHeaderLen  = 8
	// MaxEmulatedBlock is the largest block an emulated drive writes, as
	// a real drive has a largest block (LTO: 8 MiB through st).
	MaxEmulatedBlock = 16 << 20

	recBlock    = 1
	recFilemark = 2
	recTorn     = 3

	tapeFile = "tape"
	metaFile = "cartridge.json"
)

// cartMeta is cartridge.json.
type cartMeta struct {
	Version        int      `json:"version"`
	Barcode        string   `json:"barcode"`
	Capacity       int64    `json:"capacity"`
	EarlyWarning   int64    `json:"early_warning"`
	WriteProtected bool     `json:"write_protected"`
	BadBlocks      []uint64 `json:"bad_blocks,omitempty"`
}

// cartridge is an open emulated cartridge: the tape file (flocked, so one
// process uses it at a time) and an index of its records. The index keeps
// one offset and one kind byte per object, so positioning never reads the
// file; ~9 bytes of memory per object.
type cartridge struct {
	dir     string
	f       *os.File
	meta    cartMeta
	ends    []int64  // ends[i]: file offset just past record i
	kinds   []byte   // kinds[i]: the kind of record i
	marks   []uint64 // positions of the filemarks, ascending
	dirty   bool     // written since the last fsync
	indexed uint64   // records the index file covers (0: none)
}

// createCartridge makes a blank cartridge directory at dir.
func createCartridge(dir string, m cartMeta) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create cartridge %s: %w", m.Barcode, err)
	}
	hdr := make([]byte, tapeHeaderLen)
	copy(hdr, cartridgeMagic)
	binary.LittleEndian.PutUint32(hdr[8:], cartridgeVersion)
	if err := atomicfile.Write(filepath.Join(dir, tapeFile), hdr, 0o644); err != nil {
		return fmt.Errorf("create cartridge %s: %w", m.Barcode, err)
	}
	m.Version = cartridgeVersion
	return saveMeta(dir, &m)
}

func saveMeta(dir string, m *cartMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, metaFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("cartridge %s: %w", m.Barcode, err)
	}
	return nil
}

func loadMeta(dir string) (cartMeta, error) {
	var m cartMeta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, fmt.Errorf("cartridge %s: %w", filepath.Base(dir), err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("cartridge %s: %s: %w", filepath.Base(dir), metaFile, err)
	}
	if m.Version != cartridgeVersion {
		return m, fmt.Errorf("cartridge %s: %s version %d, this recall reads %d: use a recall that knows it",
			filepath.Base(dir), metaFile, m.Version, cartridgeVersion)
	}
	return m, nil
}

// errCartridgeBusy: another open file description (another process, or
// another drive of this one) holds the cartridge.
var errCartridgeBusy = errors.New("cartridge is in use by another process")

// openCartridge opens the cartridge at dir, takes its lock and indexes
// its records, repairing the tail a crash left.
func openCartridge(dir string) (*cartridge, error) {
	m, err := loadMeta(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, tapeFile), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("cartridge %s: %w", m.Barcode, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cartridge %s: %w: close the other recall first", m.Barcode, errCartridgeBusy)
		}
		return nil, fmt.Errorf("cartridge %s: lock: %w", m.Barcode, err)
	}
	c := &cartridge{dir: dir, f: f, meta: m}
	if err := c.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cartridge %s: %w", m.Barcode, err)
	}
	return c, nil
}

// index reads the record headers the index file does not cover. It reads
// through a window so that a run of small records costs one read, and
// seeks over large payloads.
func (c *cartridge) index() error {
	fi, err := c.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	hdr := make([]byte, tapeHeaderLen)
	if _, err := c.f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("read the tape header: %w", err)
	}
	if string(hdr[:8]) != cartridgeMagic {
		return fmt.Errorf("%s is not an emulated tape (bad magic)", tapeFile)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != cartridgeVersion {
		return fmt.Errorf("%s version %d, this recall reads %d: use a recall that knows it", tapeFile, v, cartridgeVersion)
	}
	const window = 64 << 10
	buf := make([]byte, window)
	var wOff int64 = -1 // file offset of buf[0]
	wLen := 0
	readLen := window
	off := c.loadIndex(size)
	for off < size {
		if off+recordHeaderLen > size {
			// A header cut short: the record never began.
			if err := c.f.Truncate(off); err != nil {
				return fmt.Errorf("drop the torn record at %d: %w", off, err)
			}
			break
		}
		if wOff < 0 || off < wOff || off+recordHeaderLen > wOff+int64(wLen) {
			// After a large record the next one is far: read one page,
			// not a window of payload bytes nobody wants.
			n, err := c.f.ReadAt(buf[:readLen], off)
			if err != nil && err != io.EOF {
				return fmt.Errorf("read record at %d: %w", off, err)
			}
			wOff, wLen = off, n
		}
		h := buf[off-wOff : off-wOff+recordHeaderLen]
		kind := h[0]
		length := int64(binary.LittleEndian.Uint32(h[4:]))
		if kind < recBlock || kind > recTorn || h[1] != 0 || h[2] != 0 || h[3] != 0 ||
			(kind == recFilemark && length != 0) {
			return fmt.Errorf("record %d at offset %d is damaged: the file was not written by the emulator", len(c.ends), off)
		}
		end := off + recordHeaderLen + length
		if end > size {
			// The payload was cut short: keep what is there as a torn block.
			if err := c.rewriteHeader(off, recTorn, size-off-recordHeaderLen); err != nil {
				return err
			}
			kind, end = recTorn, size
		}
		if kind == recFilemark {
			c.marks = append(c.marks, uint64(len(c.ends)))
		}
		c.ends = append(c.ends, end)
		c.kinds = append(c.kinds, kind)
		readLen = window
		if length >= window/2 {
			readLen = 4096
		}
		off = end
	}
	return nil
}

func (c *cartridge) rewriteHeader(off int64, kind byte, length int64) error {
	h := make([]byte, recordHeaderLen)
	h[0] = kind
	binary.LittleEndian.PutUint32(h[4:], uint32(length))
	if _, err := c.f.WriteAt(h, off); err != nil {
		return fmt.Errorf("mark the torn record at %d: %w", off, err)
	}
	return nil
}

func (c *cartridge) close() error {
	err := c.sync()
	if err == nil {
		err = c.saveIndex()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *cartridge) sync() error {
	if !c.dirty {
		return nil
	}
	if err := c.f.Sync(); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

// count is the number of objects: the end-of-data position.
func (c *cartridge) count() uint64 { return uint64(len(c.ends)) }

// offset is the file offset of record pos (the end of data for count()).
func (c *cartridge) offset(pos uint64) int64 {
	if pos == 0 {
		return tapeHeaderLen
	}
	return c.ends[pos-1]
}

// used is the payload bytes recorded before pos.
func (c *cartridge) used(pos uint64) int64 {
	return c.offset(pos) - tapeHeaderLen - int64(pos)*recordHeaderLen
}

// filesBefore is the number of filemarks before pos.
func (c *cartridge) filesBefore(pos uint64) int {
	return sort.Search(len(c.marks), func(i int) bool { return c.marks[i] >= pos })
}

func (c *cartridge) bad(pos uint64) bool {
	return slices.Contains(c.meta.BadBlocks, pos)
}

// truncate discards objects from pos on. Injected bad blocks there go
// too: a new write over them is good.
func (c *cartridge) truncate(pos uint64) error {
	if pos >= c.count() {
		return nil
	}
	if err := c.dropIndex(pos); err != nil {
		return err
	}
	if err := c.f.Truncate(c.offset(pos)); err != nil {
		return err
	}
	c.dirty = true
	c.ends = c.ends[:pos]
	c.kinds = c.kinds[:pos]
	c.marks = c.marks[:c.filesBefore(pos)]
	kept := slices.DeleteFunc(slices.Clone(c.meta.BadBlocks), func(b uint64) bool { return b >= pos })
	if len(kept) != len(c.meta.BadBlocks) {
		c.meta.BadBlocks = kept
		return saveMeta(c.dir, &c.meta)
	}
	return nil
}

// appendRecord writes one record at the end of data with one write, so a
// dying process leaves it whole or cut short, never interleaved.
func (c *cartridge) appendRecord(kind byte, p []byte) error {
	var h [recordHeaderLen]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[4:], uint32(len(p)))
	off := c.offset(c.count())
	want := recordHeaderLen + len(p)
	n, err := unix.Pwritev(int(c.f.Fd()), [][]byte{h[:], p}, off)
	if err == nil && n != want {
		err = io.ErrShortWrite
	}
	if err != nil {
		// Leave no partial record behind for the index to trip on.
		c.f.Truncate(off)
		return err
	}
	c.dirty = true
	if kind == recFilemark {
		c.marks = append(c.marks, c.count())
	}
	c.ends = append(c.ends, off+int64(want))
	c.kinds = append(c.kinds, kind)
	return nil
}

// tearLast cuts the last block short and ends the data there, as a power
// cut in the middle of writing it would.
func (c *cartridge) tearLast() error {
	last := -1
	for i := len(c.kinds) - 1; i >= 0; i-- {
		if c.kinds[i] == recBlock {
			last = i
			break
		}
	}
	if last < 0 {
		return fmt.Errorf("cartridge %s holds no block to tear", c.meta.Barcode)
	}
	pos := uint64(last)
	off := c.offset(pos)
	length := c.ends[pos] - off - recordHeaderLen
	keep := length / 2
	if err := c.dropIndex(pos); err != nil {
		return err
	}
	if err := c.rewriteHeader(off, recTorn, keep); err != nil {
		return err
	}
	end := off + recordHeaderLen + keep
	if err := c.f.Truncate(end); err != nil {
		return err
	}
	c.dirty = true
	c.ends = append(c.ends[:pos], end)
	c.kinds = append(c.kinds[:pos], recTorn)
	c.marks = c.marks[:c.filesBefore(pos)]
	return c.sync()
}

// emuDrive is drive n of an emulated library. It holds the drive's lock
// file from Drive(n) to Close, so two processes cannot drive it at once.
type emuDrive struct {
	lib   *EmulatedLibrary
	n     int
	name  string
	lockf *os.File
	lim   *rate.Limiter // nil: unlimited
	burst int

	mu      sync.Mutex
	closed  bool
	cart    *cartridge // nil: none opened yet (or unloaded)
	ejected bool       // Unload was called: no medium until Load
	pos     uint64
}

var _ Drive = (*emuDrive)(nil)

func newEmuDrive(l *EmulatedLibrary, n int, lockf *os.File, bytesPerSec int64) *emuDrive {
	d := &emuDrive{lib: l, n: n, name: fmt.Sprintf("%s drive %d", l.Name(), n), lockf: lockf}
	if bytesPerSec > 0 {
		// The bucket holds an eighth of a second: deep enough that the
		// wait per block is one timer, shallow enough that a short burst
		// cannot beat the rate by much.
		d.burst = int(min(max(bytesPerSec/8, 4096), 1<<30))
		d.lim = rate.NewLimiter(rate.Limit(bytesPerSec), d.burst)
	}
	return d
}

func (d *emuDrive) Name() string { return d.name }

func (d *emuDrive) fail(op string, err error) error {
	return &DeviceError{Device: d.name, Op: op, Err: err}
}

// medium returns the cartridge in the drive, opening the one the changer
// put there: the drive loads a cartridge by itself when it is inserted.
// The caller holds d.mu.
func (d *emuDrive) medium() (*cartridge, error) {
	if d.closed {
		return nil, errors.New("the drive is closed")
	}
	if d.cart != nil {
		return d.cart, nil
	}
	if d.ejected {
		return nil, ErrNoMedium
	}
	barcode, err := d.lib.inDrive(d.n)
	if err != nil {
		return nil, err
	}
	if barcode == "" {
		return nil, ErrNoMedium
	}
	c, err := d.lib.openCartridge(barcode)
	if err != nil {
		return nil, err
	}
	d.cart, d.pos = c, 0
	return c, nil
}

// release closes the open cartridge (the changer takes it, or the drive
// closes). The caller holds d.mu.
func (d *emuDrive) release() error {
	if d.cart == nil {
		return nil
	}
	err := d.cart.close()
	d.cart, d.pos = nil, 0
	return err
}

func (d *emuDrive) wait(ctx context.Context, n int) error {
	if d.lim == nil {
		return ctx.Err()
	}
	for n > 0 {
		k := min(n, d.burst)
		if err := d.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func (d *emuDrive) Load(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return d.fail("load", errors.New("the drive is closed"))
	}
	d.ejected = false
	if d.cart != nil {
		// The changer may have swapped cartridges behind this process.
		barcode, err := d.lib.inDrive(d.n)
		if err != nil {
			return d.fail("load", err)
		}
		if barcode != d.cart.meta.Barcode {
			if err := d.release(); err != nil {
				return d.fail("load", err)
			}
		}
	}
	if _, err := d.medium(); err != nil {
		return d.fail("load", err)
	}
	d.pos = 0
	return ctx.Err()
}

func (d *emuDrive) Unload(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.medium(); err != nil {
		return d.fail("unload", err)
	}
	if err := d.release(); err != nil {
		return d.fail("unload", err)
	}
	d.ejected = true
	return nil
}

func (d *emuDrive) Rewind(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.medium(); err != nil {
		return d.fail("rewind", err)
	}
	d.pos = 0
	return nil
}

func (d *emuDrive) SpaceFiles(ctx context.Context, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	op := fmt.Sprintf("space %d files", n)
	c, err := d.medium()
	if err != nil {
		return d.fail(op, err)
	}
	before := c.filesBefore(d.pos) // marks strictly before pos
	switch {
	case n > 0:
		// The n-th mark at or after pos.
		i := before + n - 1
		if i >= len(c.marks) {
			d.pos = c.count()
			return d.fail(op, ErrEOD)
		}
		d.pos = c.marks[i] + 1
	case n < 0:
		i := before + n
		if i < 0 {
			d.pos = 0
			return d.fail(op, fmt.Errorf("beginning of tape after %d filemarks", before))
		}
		d.pos = c.marks[i]
	}
	return nil
}

func (d *emuDrive) SeekEOD(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if err != nil {
		return d.fail("seek end of data", err)
	}
	d.pos = c.count()
	return nil
}

func (d *emuDrive) Locate(ctx context.Context, pos uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	op := fmt.Sprintf("locate %d", pos)
	c, err := d.medium()
	if err != nil {
		return d.fail(op, err)
	}
	if pos > c.count() {
		d.pos = c.count()
		return d.fail(op, fmt.Errorf("%w at %d", ErrEOD, c.count()))
	}
	d.pos = pos
	return nil
}

func (d *emuDrive) Position(ctx context.Context) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.medium(); err != nil {
		return 0, d.fail("read position", err)
	}
	return d.pos, nil
}

func (d *emuDrive) writable(c *cartridge) error {
	if c.meta.WriteProtected {
		return ErrWriteProtected
	}
	return nil
}

func (d *emuDrive) WriteBlock(ctx context.Context, p []byte) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if err != nil {
		return false, d.fail("write block", err)
	}
	op := fmt.Sprintf("write block at %d", d.pos)
	if err := d.writable(c); err != nil {
		return false, d.fail(op, err)
	}
	if len(p) == 0 || len(p) > MaxEmulatedBlock {
		return false, d.fail(op, fmt.Errorf("block of %d bytes: a block holds 1 to %d bytes", len(p), MaxEmulatedBlock))
	}
	end := c.used(d.pos) + int64(len(p))
	if end > c.meta.Capacity {
		return false, d.fail(op, ErrEndOfMedium)
	}
	if err := d.wait(ctx, len(p)); err != nil {
		return false, d.fail(op, err)
	}
	if err := c.truncate(d.pos); err != nil {
		return false, d.fail(op, err)
	}
	if err := c.appendRecord(recBlock, p); err != nil {
		return false, d.fail(op, err)
	}
	d.pos++
	return inEarlyWarning(end, c.meta), nil
}

// inEarlyWarning reports whether data ending at used payload bytes lies
// in the zone; a zone as large as the cartridge covers even the first block.
func inEarlyWarning(used int64, m cartMeta) bool {
	return used > m.Capacity-m.EarlyWarning || m.EarlyWarning >= m.Capacity
}

func (d *emuDrive) WriteFilemarks(ctx context.Context, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if err != nil {
		return d.fail("write filemarks", err)
	}
	op := fmt.Sprintf("write %d filemarks at %d", n, d.pos)
	if n < 0 {
		return d.fail(op, errors.New("negative count"))
	}
	if err := d.writable(c); err != nil {
		return d.fail(op, err)
	}
	if n == 0 {
		return nil
	}
	if err := c.truncate(d.pos); err != nil {
		return d.fail(op, err)
	}
	for range n {
		if err := c.appendRecord(recFilemark, nil); err != nil {
			return d.fail(op, err)
		}
		d.pos++
	}
	return nil
}

func (d *emuDrive) ReadBlock(ctx context.Context, p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if err != nil {
		return 0, d.fail("read block", err)
	}
	pos := d.pos
	op := fmt.Sprintf("read block at %d", pos)
	if pos >= c.count() {
		return 0, d.fail(op, ErrEOD)
	}
	off := c.offset(pos)
	length := c.ends[pos] - off - recordHeaderLen
	if err := d.wait(ctx, int(length)); err != nil {
		return 0, d.fail(op, err)
	}
	d.pos++
	switch {
	case c.bad(pos):
		return 0, d.fail(op, ErrMediumError)
	case c.kinds[pos] == recFilemark:
		return 0, ErrFilemark
	case c.kinds[pos] == recTorn:
		return 0, d.fail(op, fmt.Errorf("%w: the block was cut short", ErrMediumError))
	case length > int64(len(p)):
		return 0, d.fail(op, fmt.Errorf("%w: %d bytes, buffer %d", ErrBlockTooBig, length, len(p)))
	}
	n, err := c.f.ReadAt(p[:length], off+recordHeaderLen)
	if err != nil {
		return n, d.fail(op, err)
	}
	return n, nil
}

func (d *emuDrive) Flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if err != nil {
		return d.fail("flush", err)
	}
	if err := c.sync(); err != nil {
		return d.fail("flush", err)
	}
	return nil
}

func (d *emuDrive) Status(ctx context.Context) (Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := d.medium()
	if errors.Is(err, ErrNoMedium) {
		return Status{File: -1, Block: -1}, nil
	}
	if err != nil {
		return Status{}, d.fail("status", err)
	}
	files := c.filesBefore(d.pos)
	start := uint64(0)
	if files > 0 {
		start = c.marks[files-1] + 1
	}
	return Status{
		Loaded:         true,
		WriteProtected: c.meta.WriteProtected,
		BOT:            d.pos == 0,
		EOD:            d.pos == c.count(),
		EarlyWarning:   d.pos > 0 && inEarlyWarning(c.used(d.pos), c.meta),
		Position:       d.pos,
		File:           int64(files),
		Block:          int64(d.pos - start),
	}, nil
}

// Close releases the drive (its lock and the cartridge file); the
// cartridge stays in the drive.
func (d *emuDrive) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.release()
	d.lib.forgetDrive(d)
	if cerr := d.lockf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d.fail("close", err)
	}
	return nil
}
