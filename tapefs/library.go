package tapefs

// The emulated library. Text for the package comment:
//
// # Emulated libraries
//
// An emulated library is a directory:
//
//	state.json            slots, drives, what is where (version 1, below)
//	lock                  flocked by a process while it reads or changes state.json
//	drive<N>.lock         flocked by the process driving drive N (holds its pid)
//	cartridges/<barcode>/ the cartridges in the library (slots and drives)
//	outside/<barcode>/    cartridges taken out (Eject), waiting to be inserted
//
// state.json, version 1: {"version", "capacity", "early_warning",
// "rate", "barcode_prefix", "next_barcode", "slots", "drives"}. slots
// lists the barcode in each slot ("" when empty), slot 1 first; the last
// one is the import/export slot. drives lists {"barcode", "from"} for each
// drive, from being the slot its cartridge came from. capacity and
// early_warning are what new blank cartridges get; rate is bytes per
// second per drive (0 unlimited). It is replaced atomically (temporary
// file, fsync, rename, directory fsync), under the lock, so two processes
// never lose each other's moves.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/recall-backup/recall/internal/atomicfile"
)

// Library is a tape library as the engine uses it: a changer and its
// drives, emulated or real (mtx and st).
type Library interface {
	Changer
	// Drive returns drive n (0-based), the drive the changer's drive
	// element n loads. The library owns it: Close of the library closes it.
	Drive(n int) (Drive, error)
	NumDrives() int
	Close() error
}

// Errors of the changer beside ErrNoCartridge, checked with errors.Is.
var (
	// ErrElementFull: a move's destination (slot or drive) already holds a cartridge.
	ErrElementFull = errors.New("already holds a cartridge")
	// ErrNoElement: the library has no slot or drive of that number.
	ErrNoElement = errors.New("no such element")
	// ErrDriveBusy: another process drives the drive or holds its cartridge.
	ErrDriveBusy = errors.New("in use by another process")
)

// EmulatorOptions shape a new emulated library.
type EmulatorOptions struct {
	Slots, Drives int    // storage slots (plus one import/export slot, numbered Slots+1), drives
	Capacity      int64  // payload bytes per cartridge; 0 = 18e12 (LTO-9)
	EarlyWarning  int64  // the early-warning zone before Capacity; 0 = max(Capacity/50, 256 MiB) capped at Capacity/4
	Rate          int64  // bytes per second per drive; 0 = unlimited (LTO-9: 400e6)
	BarcodePrefix string // barcodes like "RC0001L9"; "" = "RC"
}

const (
	libraryVersion = 1
	stateFile      = "state.json"
	lockFile       = "lock"
	cartridgesDir  = "cartridges"
	outsideDir     = "outside"
	// LTO9Capacity is the native capacity of an LTO-9 cartridge.
	LTO9Capacity = 18e12
)

type libState struct {
	Version       int          `json:"version"`
	Capacity      int64        `json:"capacity"`
	EarlyWarning  int64        `json:"early_warning"`
	Rate          int64        `json:"rate"`
	BarcodePrefix string       `json:"barcode_prefix"`
	NextBarcode   int          `json:"next_barcode"`
	Slots         []string     `json:"slots"`
	Drives        []driveState `json:"drives"`
}

type driveState struct {
	Barcode string `json:"barcode,omitempty"`
	From    int    `json:"from,omitempty"`
}

// ieSlot is the number of the import/export slot.
func (s *libState) ieSlot() int { return len(s.Slots) }

// where finds barcode: the slot holding it, or the drive (-1 for each
// when elsewhere).
func (s *libState) where(barcode string) (slot, drive int) {
	for i, b := range s.Slots {
		if b == barcode {
			return i + 1, -1
		}
	}
	for i, d := range s.Drives {
		if d.Barcode == barcode {
			return -1, i
		}
	}
	return -1, -1
}

// EmulatedLibrary is a tape library in a directory: slots of cartridges
// with barcodes, drives, an import/export slot. It implements Library.
// Its methods may be called from several goroutines.
type EmulatedLibrary struct {
	dir  string
	name string

	mu    sync.Mutex // orders this process's use of lockf
	lockf *os.File   // flocked around every access to state.json

	ndrives int
	rate    int64

	dmu    sync.Mutex // guards drives; taken after any emuDrive.mu
	drives map[int]*emuDrive
}

var _ Library = (*EmulatedLibrary)(nil)
var _ Library = (*MtxLibrary)(nil)

var barcodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// CreateEmulatedLibrary makes an emulated library in dir, which must be
// new or empty, and fills every storage slot with a blank cartridge.
func CreateEmulatedLibrary(dir string, o EmulatorOptions) (*EmulatedLibrary, error) {
	if o.Slots < 1 || o.Drives < 1 {
		return nil, fmt.Errorf("create emulated library %s: %d slots and %d drives: it needs at least one of each", dir, o.Slots, o.Drives)
	}
	if o.Capacity < 0 || o.EarlyWarning < 0 || o.Rate < 0 {
		return nil, fmt.Errorf("create emulated library %s: capacity, early warning and rate cannot be negative", dir)
	}
	if o.Capacity == 0 {
		o.Capacity = LTO9Capacity
	}
	if o.EarlyWarning == 0 {
		o.EarlyWarning = min(max(o.Capacity/50, 256<<20), o.Capacity/4)
	}
	if o.EarlyWarning > o.Capacity {
		return nil, fmt.Errorf("create emulated library %s: early-warning zone %d is larger than the capacity %d", dir, o.EarlyWarning, o.Capacity)
	}
	if o.BarcodePrefix == "" {
		o.BarcodePrefix = "RC"
	}
	if !barcodeRE.MatchString(o.BarcodePrefix + "0001L9") {
		return nil, fmt.Errorf("create emulated library %s: barcode prefix %q: use letters and digits", dir, o.BarcodePrefix)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create emulated library: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("create emulated library: %w", err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("create emulated library %s: the directory is not empty: name a new one", dir)
	}
	for _, sub := range []string{cartridgesDir, outsideDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create emulated library: %w", err)
		}
	}
	s := &libState{
		Version: libraryVersion, Capacity: o.Capacity, EarlyWarning: o.EarlyWarning, Rate: o.Rate,
		BarcodePrefix: o.BarcodePrefix, NextBarcode: 1,
		Slots:  make([]string, o.Slots+1),
		Drives: make([]driveState, o.Drives),
	}
	for i := range o.Slots {
		bc := s.newBarcode()
		if err := createCartridge(filepath.Join(dir, cartridgesDir, bc), s.blankMeta(bc)); err != nil {
			return nil, fmt.Errorf("create emulated library %s: %w", dir, err)
		}
		s.Slots[i] = bc
	}
	if err := saveState(dir, s); err != nil {
		return nil, fmt.Errorf("create emulated library: %w", err)
	}
	return OpenEmulatedLibrary(dir)
}

func (s *libState) newBarcode() string {
	bc := fmt.Sprintf("%s%04dL9", s.BarcodePrefix, s.NextBarcode)
	s.NextBarcode++
	return bc
}

func (s *libState) blankMeta(barcode string) cartMeta {
	return cartMeta{Barcode: barcode, Capacity: s.Capacity, EarlyWarning: s.EarlyWarning}
}

// OpenEmulatedLibrary opens the emulated library in dir.
func OpenEmulatedLibrary(dir string) (*EmulatedLibrary, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open emulated library %s: %w", dir, err)
	}
	s, err := loadState(abs)
	if err != nil {
		return nil, fmt.Errorf("open emulated library %s: %w", dir, err)
	}
	lf, err := os.OpenFile(filepath.Join(abs, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open emulated library %s: %w", dir, err)
	}
	return &EmulatedLibrary{
		dir: abs, name: "emulated library " + abs, lockf: lf,
		ndrives: len(s.Drives), rate: s.Rate, drives: map[int]*emuDrive{},
	}, nil
}

func loadState(dir string) (*libState, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no %s: not an emulated library (create one first)", stateFile)
	}
	if err != nil {
		return nil, err
	}
	s := new(libState)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	if s.Version != libraryVersion {
		return nil, fmt.Errorf("%s version %d, this recall reads %d: use a recall that knows it", stateFile, s.Version, libraryVersion)
	}
	if len(s.Slots) < 2 || len(s.Drives) < 1 {
		return nil, fmt.Errorf("%s: %d slots and %d drives: the file is damaged", stateFile, len(s.Slots), len(s.Drives))
	}
	return s, nil
}

func saveState(dir string, s *libState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), append(b, '\n'), 0o644)
}

// locked runs fn with the state loaded under the library's lock: shared
// to read, exclusive to change. With write, fn's changes are saved unless
// it fails.
func (l *EmulatedLibrary) locked(write bool, fn func(s *libState) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lockf == nil {
		return errors.New("the library is closed")
	}
	how := syscall.LOCK_SH
	if write {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(l.lockf.Fd()), how); err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Join(l.dir, lockFile), err)
	}
	defer syscall.Flock(int(l.lockf.Fd()), syscall.LOCK_UN)
	s, err := loadState(l.dir)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return err
	}
	if write {
		return saveState(l.dir, s)
	}
	return nil
}

func (l *EmulatedLibrary) fail(op string, err error) error {
	return &DeviceError{Device: l.name, Op: op, Err: err}
}

// Name names the library for messages: "emulated library DIR".
func (l *EmulatedLibrary) Name() string { return l.name }

// Dir is the library's directory.
func (l *EmulatedLibrary) Dir() string { return l.dir }

// NumDrives is the number of drives.
func (l *EmulatedLibrary) NumDrives() int { return l.ndrives }

// BarcodePrefix is what the library's barcodes begin with ("RC" for
// RC0001L9): the barcodes it gave and will give its new cartridges. A
// home holding several emulated libraries makes each with its own, so
// no two of its cartridges share a barcode.
func (l *EmulatedLibrary) BarcodePrefix() (string, error) {
	var p string
	err := l.locked(false, func(s *libState) error {
		p = s.BarcodePrefix
		return nil
	})
	if err != nil {
		return "", l.fail("read state", err)
	}
	return p, nil
}

func isCleaning(barcode string) bool { return strings.HasPrefix(barcode, "CLN") }

// Inventory lists the drives and slots with their barcodes.
func (l *EmulatedLibrary) Inventory(ctx context.Context) (*Inventory, error) {
	inv := new(Inventory)
	err := l.locked(false, func(s *libState) error {
		for i, d := range s.Drives {
			inv.Drives = append(inv.Drives, Element{
				Kind: DriveElement, Number: i, Full: d.Barcode != "", Barcode: d.Barcode,
				Cleaning: isCleaning(d.Barcode), From: d.From,
			})
		}
		for i, b := range s.Slots {
			kind := SlotElement
			if i+1 == s.ieSlot() {
				kind = ImportExportElement
			}
			inv.Slots = append(inv.Slots, Element{
				Kind: kind, Number: i + 1, Full: b != "", Barcode: b, Cleaning: isCleaning(b),
			})
		}
		return nil
	})
	if err != nil {
		return nil, l.fail("inventory", err)
	}
	return inv, nil
}

func (s *libState) checkSlot(slot int) error {
	if slot < 1 || slot > len(s.Slots) {
		return fmt.Errorf("slot %d: %w (slots 1 to %d; %d is import/export)", slot, ErrNoElement, len(s.Slots), s.ieSlot())
	}
	return nil
}

func (s *libState) checkDrive(drive int) error {
	if drive < 0 || drive >= len(s.Drives) {
		return fmt.Errorf("drive %d: %w (drives 0 to %d)", drive, ErrNoElement, len(s.Drives)-1)
	}
	return nil
}

// heldDrive returns this process's open drive n, locked, or nil. The
// caller unlocks it.
func (l *EmulatedLibrary) heldDrive(n int) *emuDrive {
	l.dmu.Lock()
	d := l.drives[n]
	l.dmu.Unlock()
	if d != nil {
		d.mu.Lock()
	}
	return d
}

// Load moves the cartridge in slot into drive.
func (l *EmulatedLibrary) Load(ctx context.Context, slot, drive int) error {
	op := fmt.Sprintf("load slot %d into drive %d", slot, drive)
	d := l.heldDrive(drive)
	if d != nil {
		defer d.mu.Unlock()
	}
	err := l.locked(true, func(s *libState) error {
		if err := s.checkSlot(slot); err != nil {
			return err
		}
		if err := s.checkDrive(drive); err != nil {
			return err
		}
		if s.Slots[slot-1] == "" {
			return fmt.Errorf("slot %d is empty: %w", slot, ErrNoCartridge)
		}
		if d := s.Drives[drive]; d.Barcode != "" {
			return fmt.Errorf("drive %d %w (%s, from slot %d): unload it first", drive, ErrElementFull, d.Barcode, d.From)
		}
		if d != nil {
			// The drive was empty: what this process may still have
			// open there is stale, and the new cartridge loads itself.
			if err := d.release(); err != nil {
				return err
			}
			d.ejected = false
		}
		s.Drives[drive] = driveState{Barcode: s.Slots[slot-1], From: slot}
		s.Slots[slot-1] = ""
		return nil
	})
	if err != nil {
		return l.fail(op, err)
	}
	return nil
}

// Unload moves the cartridge in drive to slot; slot 0 is the slot it
// came from.
func (l *EmulatedLibrary) Unload(ctx context.Context, drive, slot int) error {
	op := fmt.Sprintf("unload drive %d into slot %d", drive, slot)
	d := l.heldDrive(drive)
	if d != nil {
		defer d.mu.Unlock()
	}
	err := l.locked(true, func(s *libState) error {
		if err := s.checkDrive(drive); err != nil {
			return err
		}
		ds := s.Drives[drive]
		if ds.Barcode == "" {
			return fmt.Errorf("drive %d is empty: %w", drive, ErrNoCartridge)
		}
		if slot == 0 {
			slot = ds.From
		}
		if err := s.checkSlot(slot); err != nil {
			return err
		}
		if b := s.Slots[slot-1]; b != "" {
			return fmt.Errorf("slot %d %w (%s): name a free slot", slot, ErrElementFull, b)
		}
		if d != nil {
			// This process's drive lets go of it (flushed).
			if err := d.release(); err != nil {
				return err
			}
		} else if err := l.probe(ds.Barcode); err != nil {
			return fmt.Errorf("drive %d: %w", drive, err)
		}
		s.Slots[slot-1] = ds.Barcode
		s.Drives[drive] = driveState{}
		return nil
	})
	if err != nil {
		return l.fail(op, err)
	}
	return nil
}

// probe fails when another process has barcode open in a drive.
func (l *EmulatedLibrary) probe(barcode string) error {
	f, err := os.Open(filepath.Join(l.dir, cartridgesDir, barcode, tapeFile))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("cartridge %s is %w: close the other recall first", barcode, ErrDriveBusy)
		}
		return err
	}
	return nil
}

// Transfer moves a cartridge between two slots.
func (l *EmulatedLibrary) Transfer(ctx context.Context, from, to int) error {
	op := fmt.Sprintf("transfer slot %d to slot %d", from, to)
	err := l.locked(true, func(s *libState) error {
		if err := s.checkSlot(from); err != nil {
			return err
		}
		if err := s.checkSlot(to); err != nil {
			return err
		}
		if s.Slots[from-1] == "" {
			return fmt.Errorf("slot %d is empty: %w", from, ErrNoCartridge)
		}
		if from == to {
			return nil
		}
		if b := s.Slots[to-1]; b != "" {
			return fmt.Errorf("slot %d %w (%s): name a free slot", to, ErrElementFull, b)
		}
		s.Slots[to-1], s.Slots[from-1] = s.Slots[from-1], ""
		return nil
	})
	if err != nil {
		return l.fail(op, err)
	}
	return nil
}

// Drive returns drive n. The first call takes the drive's lock (another
// process driving it makes this fail with ErrDriveBusy); later calls
// return the same drive until it is closed.
func (l *EmulatedLibrary) Drive(n int) (Drive, error) {
	op := fmt.Sprintf("open drive %d", n)
	if n < 0 || n >= l.ndrives {
		return nil, l.fail(op, fmt.Errorf("drive %d: %w (drives 0 to %d)", n, ErrNoElement, l.ndrives-1))
	}
	l.mu.Lock()
	closed := l.lockf == nil
	l.mu.Unlock()
	if closed {
		return nil, l.fail(op, errors.New("the library is closed"))
	}
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if d := l.drives[n]; d != nil {
		return d, nil
	}
	path := filepath.Join(l.dir, "drive"+strconv.Itoa(n)+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, l.fail(op, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, l.fail(op, fmt.Errorf("%w (pid %s): wait for it to finish", ErrDriveBusy, strings.TrimSpace(string(holder))))
		}
		return nil, l.fail(op, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	d := newEmuDrive(l, n, f, l.rate)
	l.drives[n] = d
	return d, nil
}

func (l *EmulatedLibrary) forgetDrive(d *emuDrive) {
	l.dmu.Lock()
	if l.drives[d.n] == d {
		delete(l.drives, d.n)
	}
	l.dmu.Unlock()
}

// inDrive is the barcode in drive n, "" when empty.
func (l *EmulatedLibrary) inDrive(n int) (string, error) {
	var bc string
	err := l.locked(false, func(s *libState) error {
		if err := s.checkDrive(n); err != nil {
			return err
		}
		bc = s.Drives[n].Barcode
		return nil
	})
	return bc, err
}

func (l *EmulatedLibrary) openCartridge(barcode string) (*cartridge, error) {
	return openCartridge(filepath.Join(l.dir, cartridgesDir, barcode))
}

// Close closes the library and the drives it opened (cartridges stay
// where they are).
func (l *EmulatedLibrary) Close() error {
	l.dmu.Lock()
	var ds []*emuDrive
	for _, d := range l.drives {
		ds = append(ds, d)
	}
	l.dmu.Unlock()
	var errs []error
	for _, d := range ds {
		errs = append(errs, d.Close())
	}
	l.mu.Lock()
	if l.lockf != nil {
		errs = append(errs, l.lockf.Close())
		l.lockf = nil
	}
	l.mu.Unlock()
	return errors.Join(errs...)
}

// cartridgeDir finds a cartridge's directory: in the library or outside.
func (l *EmulatedLibrary) cartridgeDir(barcode string) (string, bool) {
	for _, sub := range []string{cartridgesDir, outsideDir} {
		p := filepath.Join(l.dir, sub, barcode)
		if _, err := os.Stat(filepath.Join(p, metaFile)); err == nil {
			return p, true
		}
	}
	return "", false
}

// withCartridge runs fn on barcode's cartridge wherever it is: through
// the drive of this process that has it open, or opened for the call.
func (l *EmulatedLibrary) withCartridge(barcode string, fn func(c *cartridge, d *emuDrive) error) error {
	if !barcodeRE.MatchString(barcode) {
		return fmt.Errorf("barcode %q: %w", barcode, ErrNoCartridge)
	}
	l.dmu.Lock()
	var ds []*emuDrive
	for _, d := range l.drives {
		ds = append(ds, d)
	}
	l.dmu.Unlock()
	for _, d := range ds {
		d.mu.Lock()
		if d.cart != nil && d.cart.meta.Barcode == barcode {
			defer d.mu.Unlock()
			return fn(d.cart, d)
		}
		d.mu.Unlock()
	}
	dir, ok := l.cartridgeDir(barcode)
	if !ok {
		return fmt.Errorf("cartridge %s: %w (neither in the library nor outside it)", barcode, ErrNoCartridge)
	}
	c, err := openCartridge(dir)
	if err != nil {
		return err
	}
	err = fn(c, nil)
	if cerr := c.close(); err == nil {
		err = cerr
	}
	return err
}

// Eject takes a cartridge out of the library (from a slot, not a drive)
// and keeps it in the library directory's outside/.
func (l *EmulatedLibrary) Eject(barcode string) error {
	op := "eject " + barcode
	err := l.locked(true, func(s *libState) error {
		slot, drive := s.where(barcode)
		if drive >= 0 {
			return fmt.Errorf("cartridge %s is in drive %d: unload it first", barcode, drive)
		}
		if slot < 0 {
			return fmt.Errorf("cartridge %s: %w (not in the library)", barcode, ErrNoCartridge)
		}
		s.Slots[slot-1] = ""
		// The state goes first: a crash before the rename leaves the
		// cartridge in no slot, which Insert takes back.
		if err := saveState(l.dir, s); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(l.dir, cartridgesDir, barcode), filepath.Join(l.dir, outsideDir, barcode)); err != nil {
			return err
		}
		return atomicfile.SyncDir(filepath.Join(l.dir, outsideDir))
	})
	if err != nil {
		return l.fail(op, err)
	}
	return nil
}

// Insert puts a cartridge that is outside the library into the first
// free storage slot.
func (l *EmulatedLibrary) Insert(barcode string) (int, error) {
	op := "insert " + barcode
	var slot int
	err := l.locked(true, func(s *libState) error {
		if !barcodeRE.MatchString(barcode) {
			return fmt.Errorf("barcode %q: %w", barcode, ErrNoCartridge)
		}
		if sl, dr := s.where(barcode); sl >= 0 || dr >= 0 {
			return fmt.Errorf("cartridge %s is already in the library", barcode)
		}
		dir, ok := l.cartridgeDir(barcode)
		if !ok {
			return fmt.Errorf("cartridge %s: %w outside the library", barcode, ErrNoCartridge)
		}
		var err error
		if slot, err = s.freeSlot(); err != nil {
			return err
		}
		in := filepath.Join(l.dir, cartridgesDir, barcode)
		if dir != in {
			if err := os.Rename(dir, in); err != nil {
				return err
			}
			if err := atomicfile.SyncDir(filepath.Join(l.dir, cartridgesDir)); err != nil {
				return err
			}
		}
		s.Slots[slot-1] = barcode
		return nil
	})
	if err != nil {
		return 0, l.fail(op, err)
	}
	return slot, nil
}

func (s *libState) freeSlot() (int, error) {
	for i, b := range s.Slots[:len(s.Slots)-1] {
		if b == "" {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("every storage slot %w: eject a cartridge first", ErrElementFull)
}

// AddBlank makes a new blank cartridge with the library's capacity and
// puts it into the first free storage slot; "" picks the next barcode.
func (l *EmulatedLibrary) AddBlank(barcode string) (int, error) {
	given := barcode
	var slot int
	err := l.locked(true, func(s *libState) error {
		if barcode == "" {
			for {
				barcode = s.newBarcode()
				if _, ok := l.cartridgeDir(barcode); !ok {
					break
				}
			}
		}
		if !barcodeRE.MatchString(barcode) {
			return fmt.Errorf("barcode %q: use 1 to 32 letters, digits, '-' or '_'", barcode)
		}
		if _, ok := l.cartridgeDir(barcode); ok {
			return fmt.Errorf("barcode %s is taken: barcodes are unique", barcode)
		}
		var err error
		if slot, err = s.freeSlot(); err != nil {
			return err
		}
		if err := createCartridge(filepath.Join(l.dir, cartridgesDir, barcode), s.blankMeta(barcode)); err != nil {
			return err
		}
		s.Slots[slot-1] = barcode
		return nil
	})
	if err != nil {
		op := "add blank cartridge" // "add blank cartridge : ..." when none was given
		if given != "" {
			op += " " + given
		}
		return 0, l.fail(op, err)
	}
	return slot, nil
}

// SetWriteProtected slides the cartridge's write-protect tab.
func (l *EmulatedLibrary) SetWriteProtected(barcode string, on bool) error {
	err := l.withCartridge(barcode, func(c *cartridge, _ *emuDrive) error {
		c.meta.WriteProtected = on
		return saveMeta(c.dir, &c.meta)
	})
	if err != nil {
		return l.fail(fmt.Sprintf("write-protect %s (%v)", barcode, on), err)
	}
	return nil
}

// InjectBadBlock makes logical object pos of the cartridge unreadable:
// reading it gives ErrMediumError, until a write over it.
func (l *EmulatedLibrary) InjectBadBlock(barcode string, pos uint64) error {
	err := l.withCartridge(barcode, func(c *cartridge, _ *emuDrive) error {
		if pos >= c.count() {
			return fmt.Errorf("position %d is past the end of data at %d", pos, c.count())
		}
		if !c.bad(pos) {
			c.meta.BadBlocks = append(c.meta.BadBlocks, pos)
		}
		return saveMeta(c.dir, &c.meta)
	})
	if err != nil {
		return l.fail(fmt.Sprintf("inject a bad block at %d of %s", pos, barcode), err)
	}
	return nil
}

// TearLastBlock does to the cartridge what a power cut while writing its
// last block does: the block is cut short and the data ends there (any
// filemark after it is gone). Reading the block gives ErrMediumError,
// then ErrEOD.
func (l *EmulatedLibrary) TearLastBlock(barcode string) error {
	err := l.withCartridge(barcode, func(c *cartridge, d *emuDrive) error {
		if err := c.tearLast(); err != nil {
			return err
		}
		if d != nil {
			d.pos = min(d.pos, c.count())
		}
		return nil
	})
	if err != nil {
		return l.fail("tear the last block of "+barcode, err)
	}
	return nil
}

// SetCapacity changes the cartridge's capacity and early-warning zone;
// earlyWarning == capacity puts every block in the zone.
func (l *EmulatedLibrary) SetCapacity(barcode string, capacity, earlyWarning int64) error {
	op := fmt.Sprintf("set the capacity of %s to %d (early warning %d)", barcode, capacity, earlyWarning)
	if capacity <= 0 || earlyWarning < 0 || earlyWarning > capacity {
		return l.fail(op, errors.New("capacity must be positive and the early-warning zone within it"))
	}
	err := l.withCartridge(barcode, func(c *cartridge, _ *emuDrive) error {
		c.meta.Capacity, c.meta.EarlyWarning = capacity, earlyWarning
		return saveMeta(c.dir, &c.meta)
	})
	if err != nil {
		return l.fail(op, err)
	}
	return nil
}
