package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/atomicfile"
	"github.com/recall-backup/recall/tapefs"
	"github.com/restic/chunker"
	bolt "go.etcd.io/bbolt"
)

// The tape tier, as the engine runs it: libraries, pools, cartridges and
// media sets recorded in the catalog (schema in catalog.go), and the jobs
// that write points to tape (tapewrite.go), read them back (taperestore.go)
// and read cartridges into the catalog (tapescan.go). tapefs knows drives,
// changers and the on-tape format; what a pool, a set or a point is, and
// where a point's packs are, is known here.
//
// A media set is what a pool writes: cartridges labelled with the set's id
// and their sequence number in it. A pack is written once per set (the
// set deduplicates), never across two cartridges. Each job ends with a
// catalog file on the cartridge in use, and a cartridge left full gets one
// too, so the last catalog file of any cartridge describes the whole set
// up to then: a fresh server reads it with 'recall tape catalog'.
//
// The pool key is kept in <home>/tape-keys/<pool>.key (mode 0600, hex),
// not in catalog.db: the store exposes no key to seal it with, and a home
// may hold no store at all (a server restoring from tape alone). Losing
// the file loses nothing the exported key file ('recall tape key export')
// does not hold; without either an encrypted set cannot be read.

// Tape errors, checked with errors.Is.
var (
	// ErrTapeNotFound: no library, pool, cartridge, set or point of that name.
	ErrTapeNotFound = errors.New("not in the media catalog")
	// ErrTapeRefused: a cartridge holds data of another pool or of an
	// unexpired set; it is not overwritten without --force.
	ErrTapeRefused = errors.New("cartridge refused")
	// ErrCartridgeMissing: a cartridge a job needs is not in the library.
	ErrCartridgeMissing = errors.New("cartridge not in the library")
	// ErrNoKey: an encrypted set's pool key is not on this server.
	ErrNoKey = errors.New("pool key not on this server")
)

// TapeLibrary is a library as the catalog records it.
type TapeLibrary struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`              // "emulated" or "mtx"
	Dir     string   `json:"dir,omitempty"`     // emulated: the library's directory
	Changer string   `json:"changer,omitempty"` // mtx: the changer's /dev/sgN
	Drives  []string `json:"drives,omitempty"`  // mtx: the drives' /dev/nstN, by drive number
}

// Allocation policies of a pool.
const (
	AllocContinue = "continue" // append to the pool's open set
	AllocAlways   = "always"   // every job starts a new set
)

// TapePool is a media pool: the cartridges of one retention, encryption
// and allocation policy.
type TapePool struct {
	Name      string `json:"name"`
	Library   string `json:"library"`
	Retention string `json:"retention"` // a span: "7y", "18mo", "4w", "30d"
	// AppendWindow is how long after its creation a set accepts appends
	// (a span; "" is DefaultAppendWindow). A set expires its retention
	// after the window closes, so the last point appended to it is kept
	// the whole retention too.
	AppendWindow   string    `json:"append_window,omitempty"`
	Encrypt        bool      `json:"encrypt,omitempty"`
	Compress       bool      `json:"compress,omitempty"`
	Allocation     string    `json:"allocation"`
	KeyFingerprint string    `json:"key_fingerprint,omitempty"`
	Created        time.Time `json:"created"`
}

// DefaultAppendWindow is a pool's append window when it names none.
const DefaultAppendWindow = "7d"

// Window is the pool's append window, the default filled in.
func (p TapePool) Window() string {
	if p.AppendWindow == "" {
		return DefaultAppendWindow
	}
	return p.AppendWindow
}

// AppendEnd is when a set of the pool created at created stops accepting
// appends.
func (p TapePool) AppendEnd(created time.Time) (time.Time, error) {
	t, err := spanAfter(p.Window(), created)
	if err != nil {
		return t, fmt.Errorf("pool %s: append window: %w", p.Name, err)
	}
	return t, nil
}

// SetExpiry is when a set of the pool created at created expires: its
// retention after its append window closes.
func (p TapePool) SetExpiry(created time.Time) (time.Time, error) {
	end, err := p.AppendEnd(created)
	if err != nil {
		return end, err
	}
	return retentionExpiry(p.Retention, end)
}

// Cartridge states.
const (
	MediaFree    = "free"    // blank, or labelled for the pool and holding nothing
	MediaWriting = "writing" // in a set, room left (none is written once its set is closed)
	MediaFull    = "full"    // in a set, no room left
	MediaExpired = "expired" // its set's expiry passed: reusable
)

// TapeMedium is one cartridge as the catalog records it.
type TapeMedium struct {
	Barcode  string    `json:"barcode"`
	VolumeID string    `json:"volume_id,omitempty"`
	Pool     string    `json:"pool,omitempty"`
	Set      string    `json:"set,omitempty"`
	Sequence int       `json:"sequence,omitempty"`
	State    string    `json:"state"`
	Written  time.Time `json:"written,omitempty"`
	Expiry   time.Time `json:"expiry,omitempty"`
	Library  string    `json:"library,omitempty"`
	Slot     int       `json:"slot,omitempty"`
	// NextFile is the tape file number the next write appends.
	NextFile int `json:"next_file,omitempty"`
}

// TapeSet is one media set and what it holds.
type TapeSet struct {
	ID      string    `json:"id"`
	Pool    string    `json:"pool"`
	Created time.Time `json:"created"`
	Expiry  time.Time `json:"expiry"`
	// Tapes are the set's barcodes by sequence (Tapes[0] is sequence 1).
	Tapes []string `json:"tapes"`
	// Closed: no job appends to the set any more (allocation always, or
	// expired).
	Closed bool `json:"closed,omitempty"`
	// Dropped are the sequences of cartridges erased or relabelled since
	// they were written (dropCartridge): what the set's catalog files on
	// its other cartridges say they held is gone.
	Dropped []int `json:"dropped,omitempty"`
	// Revision counts the saves of the set's record: a save names the
	// revision it read, and is refused if the record moved on since
	// (UpdateTape), so no job saves over what another saved meanwhile.
	Revision int64 `json:"revision,omitempty"`
	// KeyFingerprint is the pool key's ("" for a plain set), as the set
	// label holds it.
	KeyFingerprint string               `json:"key_fingerprint,omitempty"`
	Compressed     bool                 `json:"compressed,omitempty"`
	Catalog        *tapefs.MediaCatalog `json:"catalog"`
}

// TapeCatalogWait is how long a tape command waits for another process to
// close the catalog.
const TapeCatalogWait = 30 * time.Second

// WithTapeCatalog opens the catalog of home for one transaction. Unlike
// WithCatalog it needs no store in home: a server restoring from tape
// alone has none. It still writes nothing into a directory that is not
// recall's: home must hold a store or a catalog, or be empty or missing.
func WithTapeCatalog(home string, warn func(format string, args ...any), fn func(*Catalog) error) error {
	if err := tapeHome(home); err != nil {
		return err
	}
	return withCatalogFile(home, TapeCatalogWait, warn, fn)
}

// tapeHome makes home ready for the media catalog (see WithTapeCatalog).
func tapeHome(home string) error {
	fresh, err := tapeHomeFresh(home)
	if err != nil || !fresh {
		return err
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("home %s: %w", home, err)
	}
	return nil
}

// tapeHomeExists refuses a home that is not there, for the listings: an
// empty list would hide a slip in --home.
func tapeHomeExists(home string) error {
	if _, err := os.Stat(home); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("home %s does not exist: %w: give the home of a recall server with --home", home, chunkstore.ErrNoStore)
	}
	return nil
}

// tapeHomeFresh reports whether home holds neither a store nor a catalog
// and is missing or empty: a media catalog there is empty, and reading it
// needs no file. A directory that is not recall's is an error.
func tapeHomeFresh(home string) (bool, error) {
	if RequireStore(home) == nil {
		return false, nil
	}
	if _, err := os.Stat(CatalogPath(home)); err == nil {
		return false, nil
	}
	ents, err := os.ReadDir(home)
	// The tape lock is recall's own: a tape job takes it before its
	// first catalog write, and one that failed before that write (a key
	// import into a fresh home) left a home that was then refused as
	// "not empty" by every later tape command.
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == filepath.Base(tapeLockFile(home)) })
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("home %s: %w", home, err)
	case len(ents) > 0:
		return false, fmt.Errorf("%s: %w, nor a catalog, and it is not empty: give the home of a recall server with --home, an empty directory for one that restores from tape alone, or run 'recall init'", home, chunkstore.ErrNoStore)
	}
	return true, nil
}

func putJSON(tx *bolt.Tx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), b)
}

func listJSON[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("catalog %s/%s: %w", bucket, k, err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// TapeState is the whole media catalog, as one transaction read it.
type TapeState struct {
	Libraries []TapeLibrary
	Pools     []TapePool
	Media     []TapeMedium
	Sets      []TapeSet
}

// TapeState reads the media catalog.
func (c *Catalog) TapeState() (*TapeState, error) {
	st := &TapeState{}
	err := c.guard(func() error {
		return c.db.View(func(tx *bolt.Tx) (err error) {
			if st.Libraries, err = listJSON[TapeLibrary](tx, bucketTapeLibraries); err != nil {
				return err
			}
			if st.Pools, err = listJSON[TapePool](tx, bucketTapePools); err != nil {
				return err
			}
			if st.Media, err = listJSON[TapeMedium](tx, bucketTapeMedia); err != nil {
				return err
			}
			st.Sets, err = listJSON[TapeSet](tx, bucketTapeSets)
			return err
		})
	})
	return st, err
}

// TapeUpdate is a change to the media catalog, made in one transaction.
type TapeUpdate struct {
	Libraries []TapeLibrary
	Pools     []TapePool
	Media     []TapeMedium
	Sets      []TapeSet
}

// ErrTapeSetChanged: a set was saved by another job since it was read.
var ErrTapeSetChanged = errors.New("the set's record changed since this job read it")

// UpdateTape writes u in one transaction. Each set of u must be at the
// revision the catalog holds (0 for a set it does not hold yet), else
// nothing is written and the error wraps ErrTapeSetChanged; each is saved
// at the next revision, which u.Sets[i].Revision is then set to.
func (c *Catalog) UpdateTape(u TapeUpdate) error {
	err := c.updateTape(u)
	if err == nil {
		for i := range u.Sets {
			u.Sets[i].Revision++
		}
	}
	return err
}

func (c *Catalog) updateTape(u TapeUpdate) error {
	return c.guard(func() error {
		return c.db.Update(func(tx *bolt.Tx) error {
			for _, l := range u.Libraries {
				if err := putJSON(tx, bucketTapeLibraries, l.Name, l); err != nil {
					return err
				}
			}
			for _, p := range u.Pools {
				if err := putJSON(tx, bucketTapePools, p.Name, p); err != nil {
					return err
				}
			}
			for _, m := range u.Media {
				if err := putJSON(tx, bucketTapeMedia, m.Barcode, m); err != nil {
					return err
				}
			}
			for _, s := range u.Sets {
				var head struct {
					Revision int64 `json:"revision"`
				}
				if b := tx.Bucket(bucketTapeSets).Get([]byte(s.ID)); b != nil {
					if err := json.Unmarshal(b, &head); err != nil {
						return fmt.Errorf("catalog %s/%s: %w", bucketTapeSets, s.ID, err)
					}
				}
				if head.Revision != s.Revision {
					return fmt.Errorf("set %s: %w (revision %d, read at %d): nothing was saved", s.ID, ErrTapeSetChanged, head.Revision, s.Revision)
				}
				s.Revision++
				if err := putJSON(tx, bucketTapeSets, s.ID, s); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func (st *TapeState) library(name string) (TapeLibrary, error) {
	if name == "" {
		switch len(st.Libraries) {
		case 0:
			return TapeLibrary{}, fmt.Errorf("no tape library: %w (add one with 'recall tape library add')", ErrTapeNotFound)
		case 1:
			return st.Libraries[0], nil
		}
		names := make([]string, 0, len(st.Libraries))
		for _, l := range st.Libraries {
			names = append(names, l.Name)
		}
		return TapeLibrary{}, fmt.Errorf("several tape libraries (%s): name one with --library", strings.Join(names, ", "))
	}
	for _, l := range st.Libraries {
		if l.Name == name {
			return l, nil
		}
	}
	return TapeLibrary{}, fmt.Errorf("tape library %q: %w (see 'recall tape library add')", name, ErrTapeNotFound)
}

func (st *TapeState) pool(name string) (TapePool, error) {
	for _, p := range st.Pools {
		if p.Name == name {
			return p, nil
		}
	}
	return TapePool{}, fmt.Errorf("tape pool %q: %w (create it with 'recall tape pool create')", name, ErrTapeNotFound)
}

func (st *TapeState) medium(barcode string) (TapeMedium, bool) {
	for _, m := range st.Media {
		if m.Barcode == barcode {
			return m, true
		}
	}
	return TapeMedium{}, false
}

func (st *TapeState) set(id string) (TapeSet, bool) {
	for _, s := range st.Sets {
		if s.ID == id {
			return s, true
		}
	}
	return TapeSet{}, false
}

// readTapeState reads the media catalog of home; tests wrap it to count
// the reads.
var readTapeState = readTapeStateFile

func readTapeStateFile(home string, warn func(string, ...any)) (*TapeState, error) {
	// A look at a home that has no catalog yet (a typing slip in --home,
	// a tape-only server before its first library) creates nothing.
	if fresh, err := tapeHomeFresh(home); err != nil {
		return nil, err
	} else if fresh {
		return &TapeState{}, nil
	}
	var st *TapeState
	// Not WithTapeCatalog: the home was just found to be recall's.
	err := withCatalogFile(home, TapeCatalogWait, warn, func(c *Catalog) (err error) {
		st, err = c.TapeState()
		return err
	})
	return st, err
}

func writeTapeState(home string, warn func(string, ...any), u TapeUpdate) error {
	return WithTapeCatalog(home, warn, func(c *Catalog) error { return c.UpdateTape(u) })
}

// openLibrary opens a library the catalog records; tests wrap it to watch
// what the jobs do with the drives.
var openLibrary = openRecordedLibrary

func openRecordedLibrary(l TapeLibrary) (tapefs.Library, error) {
	switch l.Kind {
	case "emulated":
		lib, err := tapefs.OpenEmulatedLibrary(l.Dir)
		if err != nil {
			return nil, fmt.Errorf("tape library %s: %w", l.Name, err)
		}
		return lib, nil
	case "mtx":
		lib, err := tapefs.OpenMtxLibrary(l.Changer, l.Drives)
		if err != nil {
			return nil, fmt.Errorf("tape library %s: %w", l.Name, err)
		}
		return lib, nil
	}
	return nil, fmt.Errorf("tape library %s: unknown kind %q", l.Name, l.Kind)
}

// AddLibraryOptions describe a library to add.
type AddLibraryOptions struct {
	Name string
	// Emulated: Dir, created with Emulator when new, opened when it holds
	// a library.
	Dir      string
	Emulator tapefs.EmulatorOptions
	// mtx: the changer's device and the drives'.
	Changer string
	Drives  []string
	Warn    func(format string, args ...any)
}

// AddTapeLibrary records a library, creating an emulated one in a new
// directory; it checks the library answers an inventory first.
func AddTapeLibrary(ctx context.Context, home string, o AddLibraryOptions) (TapeLibrary, error) {
	if err := checkName(o.Name); err != nil {
		return TapeLibrary{}, fmt.Errorf("library name %q: %v (letters, digits, '.', '_', '-')", o.Name, err)
	}
	if err := tapeHome(home); err != nil {
		return TapeLibrary{}, err
	}
	st, err := readTapeState(home, o.Warn)
	if err != nil {
		return TapeLibrary{}, err
	}
	// A library's cartridges are recorded by barcode with its name:
	// pointing the name at another library would give them the new
	// library's cartridges of the same barcodes.
	if l, err := st.library(o.Name); err == nil && o.Name != "" {
		return l, fmt.Errorf("tape library %q exists (%s): nothing was changed; give the new library another name", o.Name, l.Where())
	}
	rec := TapeLibrary{Name: o.Name}
	var lib tapefs.Library
	switch {
	case o.Dir != "" && o.Changer != "":
		return rec, errors.New("give --emulated DIR or --changer DEV, not both")
	case o.Dir != "":
		dir, aerr := filepath.Abs(o.Dir)
		if aerr != nil {
			return rec, aerr
		}
		rec.Kind, rec.Dir = "emulated", dir
		if ents, rerr := os.ReadDir(dir); rerr != nil || len(ents) == 0 {
			if c := o.Emulator.Capacity; c != 0 && c < minTapeCapacity {
				return rec, fmt.Errorf("tape library %s: cartridges of %s are too small: a pack never straddles cartridges, so a cartridge must take the largest one whole; give --capacity %dMiB or more", o.Name, mib(c), minTapeCapacity>>20)
			}
			eo := o.Emulator
			if eo.BarcodePrefix == "" {
				if eo.BarcodePrefix, err = freeBarcodePrefix(st); err != nil {
					return rec, fmt.Errorf("tape library %s: %w", o.Name, err)
				}
			}
			lib, err = tapefs.CreateEmulatedLibrary(dir, eo)
		} else {
			lib, err = tapefs.OpenEmulatedLibrary(dir)
		}
	case o.Changer != "":
		if len(o.Drives) == 0 {
			return rec, errors.New("--changer needs at least one --drive /dev/nstN")
		}
		rec.Kind, rec.Changer, rec.Drives = "mtx", o.Changer, o.Drives
		lib, err = tapefs.OpenMtxLibrary(o.Changer, o.Drives)
	default:
		return rec, errors.New("give --emulated DIR or --changer DEV --drive DEV")
	}
	if err != nil {
		return rec, fmt.Errorf("tape library %s: %w", o.Name, err)
	}
	defer lib.Close()
	if l, ok := st.libraryAt(rec); ok {
		return rec, fmt.Errorf("tape library %s: it is library %s of this home already (%s): nothing was changed", o.Name, l.Name, l.Where())
	}
	if _, err := lib.Inventory(ctx); err != nil {
		return rec, fmt.Errorf("tape library %s: inventory: %w", o.Name, err)
	}
	return rec, writeTapeState(home, o.Warn, TapeUpdate{Libraries: []TapeLibrary{rec}})
}

// SetLibraryOptions change where a recorded library is: an emulated
// library's directory (moved), a real one's changer and drive devices
// (/dev/sgN and /dev/nstN are numbered as the kernel finds the devices,
// which can change at a reboot or a new HBA).
type SetLibraryOptions struct {
	Name    string
	Dir     string   // emulated: its directory now ("": unchanged)
	Changer string   // mtx: the changer's device now ("": unchanged)
	Drives  []string // mtx: the drives' devices now, by drive number (nil: unchanged)
	Warn    func(format string, args ...any)
}

// SetTapeLibrary points the library recorded as o.Name at its devices (or
// directory) now, after checking it answers an inventory there. Its
// cartridges, pools and sets stay as they are: it is the same library,
// found elsewhere. A directory that holds another emulated library
// (another barcode prefix), or devices another library of the home uses,
// are refused; a real library none of whose recorded cartridges are in
// the new changer's inventory is refused too, as it is likely another one.
func SetTapeLibrary(ctx context.Context, home string, o SetLibraryOptions) (TapeLibrary, error) {
	if o.Warn == nil {
		o.Warn = func(string, ...any) {}
	}
	st, err := readTapeState(home, o.Warn)
	if err != nil {
		return TapeLibrary{}, err
	}
	rec, err := st.library(o.Name)
	if err != nil || o.Name == "" {
		return TapeLibrary{}, fmt.Errorf("tape library %q: not in this home (see 'recall tape inventory'); add one with 'recall tape library add'", o.Name)
	}
	old := rec
	switch rec.Kind {
	case "emulated":
		if o.Changer != "" || o.Drives != nil {
			return old, fmt.Errorf("tape library %s is emulated (directory %s): give --emulated DIR, not devices", rec.Name, rec.Dir)
		}
		if o.Dir == "" {
			return old, fmt.Errorf("tape library %s: give its directory now with --emulated DIR", rec.Name)
		}
		if rec.Dir, err = filepath.Abs(o.Dir); err != nil {
			return old, err
		}
	case "mtx":
		if o.Dir != "" {
			return old, fmt.Errorf("tape library %s is a real library (%s): give --changer DEV and --drive DEV, not a directory", rec.Name, rec.Where())
		}
		if o.Changer == "" && o.Drives == nil {
			return old, fmt.Errorf("tape library %s: give its changer (--changer /dev/sgN) or its drives (--drive /dev/nstN, each in drive order) as they are now", rec.Name)
		}
		if o.Changer != "" {
			rec.Changer = o.Changer
		}
		if o.Drives != nil {
			rec.Drives = o.Drives
		}
	default:
		return old, fmt.Errorf("tape library %s: unknown kind %q", rec.Name, rec.Kind)
	}
	if l, ok := st.libraryAt(rec); ok && l.Name != rec.Name {
		return old, fmt.Errorf("tape library %s: %s is library %s's: nothing was changed", rec.Name, rec.Where(), l.Name)
	}
	lib, err := openRecordedLibrary(rec)
	if err != nil {
		return old, fmt.Errorf("%w: nothing was changed", err)
	}
	defer lib.Close()
	if el, ok := lib.(*tapefs.EmulatedLibrary); ok && old.Dir != "" {
		// An emulated library knows its barcode prefix: the one at the
		// old directory had the prefix of the cartridges recorded.
		prefix, err := el.BarcodePrefix()
		if err != nil {
			return old, fmt.Errorf("tape library %s: %w", rec.Name, err)
		}
		for _, m := range st.Media {
			if m.Library == rec.Name && !strings.HasPrefix(m.Barcode, prefix) {
				return old, fmt.Errorf("tape library %s: %s holds another emulated library (barcodes %s..., but this one's cartridges include %s): nothing was changed", rec.Name, rec.Dir, prefix, m.Barcode)
			}
		}
	}
	inv, err := lib.Inventory(ctx)
	if err != nil {
		return old, fmt.Errorf("tape library %s: inventory at %s: %w; nothing was changed", rec.Name, rec.Where(), err)
	}
	if rec.Kind == "mtx" {
		present := map[string]bool{}
		for _, e := range append(inv.Slots, inv.Drives...) {
			if e.Full {
				present[e.Barcode] = true
			}
		}
		known, found := 0, 0
		for _, m := range st.Media {
			if m.Library == rec.Name {
				known++
				if present[m.Barcode] {
					found++
				}
			}
		}
		if known > 0 && found == 0 {
			return old, fmt.Errorf("tape library %s: the changer %s holds none of the %d cartridges recorded in this library: is it another library? nothing was changed", rec.Name, rec.Changer, known)
		}
	}
	return rec, writeTapeState(home, o.Warn, TapeUpdate{Libraries: []TapeLibrary{rec}})
}

// libraryAt is the library of st at l's place (the same emulated
// directory, or the same changer device), if any.
func (st *TapeState) libraryAt(l TapeLibrary) (TapeLibrary, bool) {
	for _, o := range st.Libraries {
		if o.Kind == l.Kind && (l.Dir != "" && o.Dir == l.Dir || l.Changer != "" && o.Changer == l.Changer) {
			return o, true
		}
	}
	return TapeLibrary{}, false
}

// minTapeCapacity is the smallest cartridge a new emulated library is
// made with. A pack is closed once it reaches chunkstore.PackTargetSize,
// so with the blob that crossed that (up to the chunker's largest chunk)
// it can reach about 24 MiB; a cartridge must take such a pack whole
// after its labels, as a pack never straddles cartridges, or every write
// of it stops (tapeWriter.tooBig). 8 MiB more leaves room for the labels
// and a catalog file. Tests lower it to make small cartridges.
var minTapeCapacity = int64(chunkstore.PackTargetSize + chunker.MaxSize + 8<<20)

// Where says where the library is, for a message.
func (l TapeLibrary) Where() string {
	if l.Kind == "emulated" {
		return "emulated, directory " + l.Dir
	}
	return fmt.Sprintf("%s, changer %s, drives %s", l.Kind, l.Changer, strings.Join(l.Drives, " "))
}

// freeBarcodePrefix picks the barcode prefix of a new emulated library:
// the first of RC, RD, ... that no cartridge the media catalog records
// and no emulated library of the home uses. The catalog knows a
// cartridge by its barcode alone, as a real library's barcodes are
// unique labels; two emulated libraries numbering theirs alike would
// have the catalog take one's blank cartridges for the other's full ones.
func freeBarcodePrefix(st *TapeState) (string, error) {
	var used []string
	for _, m := range st.Media {
		used = append(used, m.Barcode)
	}
	var prefixes []string
	for _, l := range st.Libraries {
		if l.Kind != "emulated" {
			continue
		}
		// A library that does not open (its directory gone) has its
		// cartridges that matter in the media catalog already.
		el, err := tapefs.OpenEmulatedLibrary(l.Dir)
		if err != nil {
			continue
		}
		if p, err := el.BarcodePrefix(); err == nil {
			prefixes = append(prefixes, p)
		}
		if inv, err := el.Inventory(context.Background()); err == nil {
			for _, e := range append(inv.Slots, inv.Drives...) {
				used = append(used, e.Barcode)
			}
		}
		el.Close()
	}
	for i := range 26 * 26 {
		n := ('R'-'A')*26 + ('C' - 'A') + i // RC first, as libraries were always made
		p := string(rune('A'+n/26%26)) + string(rune('A'+n%26))
		taken := slices.ContainsFunc(prefixes, func(q string) bool { return strings.HasPrefix(q, p) || strings.HasPrefix(p, q) }) ||
			slices.ContainsFunc(used, func(bc string) bool { return strings.HasPrefix(bc, p) })
		if !taken {
			return p, nil
		}
	}
	return "", errors.New("every two-letter barcode prefix is in use by the home's cartridges: give the library a home of its own")
}

// CreateTapePool records a pool; an encrypting pool gets a new key.
func CreateTapePool(home string, p TapePool, now time.Time, warn func(string, ...any)) (TapePool, error) {
	if err := checkName(p.Name); err != nil {
		return p, fmt.Errorf("pool name %q: %v (letters, digits, '.', '_', '-')", p.Name, err)
	}
	if err := checkPoolPolicy(&p, now); err != nil {
		return p, fmt.Errorf("tape pool %s: %w: nothing was created", p.Name, err)
	}
	st, err := readTapeState(home, warn)
	if err != nil {
		return p, err
	}
	if _, err := st.pool(p.Name); err == nil {
		return p, fmt.Errorf("tape pool %q exists", p.Name)
	}
	lib, err := st.library(p.Library)
	if err != nil {
		return p, err
	}
	p.Library, p.Created = lib.Name, now.UTC()
	if p.Encrypt {
		key, err := tapefs.NewPoolKey()
		if err != nil {
			return p, err
		}
		if err := savePoolKey(home, p.Name, key, warn); err != nil {
			return p, err
		}
		p.KeyFingerprint = tapefs.KeyFingerprint(key)
	}
	return p, writeTapeState(home, warn, TapeUpdate{Pools: []TapePool{p}})
}

// checkPoolPolicy checks a pool's spans and allocation, filling in the
// default allocation.
func checkPoolPolicy(p *TapePool, now time.Time) error {
	p.Retention, p.AppendWindow = strings.TrimSpace(p.Retention), strings.TrimSpace(p.AppendWindow)
	if _, err := retentionExpiry(p.Retention, now); err != nil {
		return err
	}
	if p.AppendWindow != "" {
		if _, err := spanAfter(p.AppendWindow, now); err != nil {
			return fmt.Errorf("append window: %w", err)
		}
	}
	switch p.Allocation {
	case "":
		p.Allocation = AllocContinue
	case AllocContinue, AllocAlways:
	default:
		return fmt.Errorf("allocation %q: give continue or always", p.Allocation)
	}
	return nil
}

// TapePoolChange is a change to a pool's policy; nil fields stay.
type TapePoolChange struct {
	Retention, AppendWindow, Allocation *string
	Compress                            *bool
}

// SetTapePool changes a pool's policy. Sets already written keep the
// expiry their labels hold; the change applies to sets created after it
// (and, for the append window, to what is appended to the open set from
// now on). A set keeps its compression: after a change of it the pool's
// next write starts a new set.
func SetTapePool(home, name string, ch TapePoolChange, now time.Time, warn func(string, ...any)) (TapePool, error) {
	st, err := readTapeState(home, warn)
	if err != nil {
		return TapePool{}, err
	}
	p, err := st.pool(name)
	if err != nil {
		return p, err
	}
	if ch.Retention != nil {
		p.Retention = *ch.Retention
	}
	if ch.AppendWindow != nil {
		p.AppendWindow = *ch.AppendWindow
	}
	if ch.Allocation != nil {
		p.Allocation = *ch.Allocation
	}
	if ch.Compress != nil {
		p.Compress = *ch.Compress
	}
	if err := checkPoolPolicy(&p, now); err != nil {
		return p, fmt.Errorf("tape pool %s: %w: nothing was changed", name, err)
	}
	return p, writeTapeState(home, warn, TapeUpdate{Pools: []TapePool{p}})
}

// ListTapePools lists the pools by name.
func ListTapePools(home string, warn func(string, ...any)) ([]TapePool, error) {
	if err := tapeHomeExists(home); err != nil {
		return nil, err
	}
	st, err := readTapeState(home, warn)
	if err != nil {
		return nil, err
	}
	out := append([]TapePool{}, st.Pools...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// retentionExpiry is when a set created at now with retention span expires:
// calendar years and months, not multiples of 24 hours.
func retentionExpiry(span string, now time.Time) (time.Time, error) {
	t, err := spanAfter(span, now)
	if err != nil {
		return t, fmt.Errorf("retention: %w", err)
	}
	return t, nil
}

// maxSpanYears bounds a pool's spans: the product keeps sets 1 to 99
// years. Beyond that nothing is kept longer, but a set's expiry can leave
// the years a label's timestamps hold (to 9999), and every write fails.
const maxSpanYears = 99

// spanAfter is now plus span, in calendar years, months, weeks or days,
// at most maxSpanYears.
func spanAfter(span string, now time.Time) (time.Time, error) {
	n, unit, err := splitSpan(span)
	if err != nil || n <= 0 || n > maxSpanYears*366 {
		return time.Time{}, fmt.Errorf("%q: give a span from 1d to %dy, like 7y, 18mo, 4w or 30d", span, maxSpanYears)
	}
	var t time.Time
	switch unit {
	case "y":
		t = now.AddDate(n, 0, 0)
	case "mo":
		t = now.AddDate(0, n, 0)
	case "w":
		t = now.AddDate(0, 0, 7*n)
	default:
		t = now.AddDate(0, 0, n)
	}
	if t.After(now.AddDate(maxSpanYears, 0, 0)) {
		return time.Time{}, fmt.Errorf("%q is longer than %d years: give a span from 1d to %dy, like 7y, 18mo, 4w or 30d", span, maxSpanYears, maxSpanYears)
	}
	return t, nil
}

func keyPath(home, pool string) string { return filepath.Join(home, "tape-keys", pool+".key") }

func savePoolKey(home, pool string, key []byte, warn func(string, ...any)) error {
	// The catalog first: a fresh home holding a key file but no catalog
	// would be refused as "not empty" by the catalog write that follows
	// (tapeHomeFresh), and by every tape command after it.
	if err := WithTapeCatalog(home, warn, func(*Catalog) error { return nil }); err != nil {
		return err
	}
	p := keyPath(home, pool)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	// Durable before any set is encrypted with it: a key lost to a power
	// cut would leave cartridges nobody can read.
	if err := atomicfile.Write(p, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return fmt.Errorf("pool key: %w", err)
	}
	return nil
}

// loadPoolKey reads the key of pool; fingerprint, when given, must match.
func loadPoolKey(home, pool, fingerprint string) ([]byte, error) {
	b, err := os.ReadFile(keyPath(home, pool))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pool %s (key fingerprint %s): %w (import its key file with 'recall tape key import FILE')", pool, fingerprint, ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("pool %s key: %w", pool, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("pool key file %s is damaged: import the pool's exported key file again with 'recall tape key import FILE'", keyPath(home, pool))
	}
	if fingerprint != "" && tapefs.KeyFingerprint(key) != fingerprint {
		return nil, fmt.Errorf("pool %s: the key on this server has fingerprint %s, the set needs %s: %w (a set of another pool of the same name, from another site or store: this pool's key stays, so read its cartridges in a home of their own: 'recall --home DIR tape library add', 'tape key import FILE', then 'tape catalog' and 'tape restore' there)", pool, tapefs.KeyFingerprint(key), fingerprint, ErrNoKey)
	}
	return key, nil
}

// ExportTapeKey returns the key file of pool, sealed with passphrase.
func ExportTapeKey(home, pool, passphrase string, warn func(string, ...any)) ([]byte, error) {
	st, err := readTapeState(home, warn)
	if err != nil {
		return nil, err
	}
	p, err := st.pool(pool)
	if err != nil {
		return nil, err
	}
	if !p.Encrypt {
		return nil, fmt.Errorf("tape pool %s does not encrypt: it has no key to export", pool)
	}
	key, err := loadPoolKey(home, pool, p.KeyFingerprint)
	if err != nil {
		return nil, err
	}
	return tapefs.ExportKey(pool, key, passphrase)
}

// ErrNeedRetention: a key import would create a pool, and no retention
// was given for it.
var ErrNeedRetention = errors.New("the pool is not on this server: give --retention SPAN (how long the sets this server writes to it are kept) to create it")

// ImportTapeKey opens a key file and keeps its key on this server,
// recording its pool if the catalog has none of that name: it then needs
// retention (ErrNeedRetention), so that what this server writes to the
// pool is kept as long as it should be; for a pool the catalog has,
// retention may be "" (a non-empty one changes the pool's). A pool of
// that name with another key is refused.
//
// A key imported onto a plain pool makes it encrypt from then on, and
// closes its sets still open for appends: a set is plain or encrypted
// from its first cartridge to its last (its labels say which, and a fresh
// server reads its catalog files by them), so what the pool writes next
// goes to a new, encrypted set, and the plain sets stay readable as they
// are. Refusing instead would leave no way to have an existing pool
// encrypt, short of a new pool.
func ImportTapeKey(home string, file []byte, passphrase, retention string, now time.Time, warn func(string, ...any)) (TapePool, error) {
	retention = strings.TrimSpace(retention)
	if retention != "" {
		if _, err := retentionExpiry(retention, now); err != nil {
			return TapePool{}, err
		}
	}
	unlock, err := lockTape(context.Background(), home, "tape-key-import", warn)
	if err != nil {
		return TapePool{}, err
	}
	defer unlock()
	st, err := readTapeState(home, warn)
	if err != nil {
		return TapePool{}, err
	}
	pool, key, err := tapefs.ImportKey(file, passphrase)
	if err != nil {
		return TapePool{}, err
	}
	fp := tapefs.KeyFingerprint(key)
	p, perr := st.pool(pool)
	if perr == nil && p.KeyFingerprint != "" && p.KeyFingerprint != fp {
		return p, fmt.Errorf("tape pool %s has key fingerprint %s on this server; the file holds %s: nothing was changed", pool, p.KeyFingerprint, fp)
	}
	if perr != nil {
		if retention == "" {
			return TapePool{Name: pool}, fmt.Errorf("tape pool %s: %w; nothing was changed", pool, ErrNeedRetention)
		}
		p = TapePool{Name: pool, Allocation: AllocContinue, Created: now.UTC()}
		if lib, err := st.library(""); err == nil {
			p.Library = lib.Name
		}
	}
	if retention != "" {
		p.Retention = retention
	}
	u := TapeUpdate{}
	if perr == nil && p.KeyFingerprint != fp {
		for _, s := range st.Sets {
			if s.Pool == pool && !s.Closed && s.KeyFingerprint != fp {
				s.Closed = true
				u.Sets = append(u.Sets, s)
				warn("tape pool %s: set %s is %s: closed, so the pool's next write starts a new set, encrypted", pool, s.ID, policyOf(s.KeyFingerprint, s.Compressed))
			}
		}
	}
	p.Encrypt, p.KeyFingerprint = true, fp
	if err := savePoolKey(home, pool, key, warn); err != nil {
		return p, err
	}
	u.Pools = []TapePool{p}
	return p, writeTapeState(home, warn, u)
}

// ExpireTapes marks the cartridges of sets whose expiry passed as expired
// (reusable) and closes those sets; it returns the barcodes it expired.
// The server calls it at every tick, so it reads the sets' heads only, not
// their catalogs, unless one is to be closed.
func ExpireTapes(home string, now time.Time, warn func(string, ...any)) ([]string, error) {
	if fresh, err := tapeHomeFresh(home); err != nil || fresh {
		return nil, err // nothing recorded, nothing to expire
	}
	var out []string
	// Not WithTapeCatalog: the home was just found to be recall's (the
	// server asks at every tick; the check is a stat and a listing).
	err := withCatalogFile(home, TapeCatalogWait, warn, func(c *Catalog) error {
		return c.guard(func() error {
			// Most ticks find nothing to expire: look first, in a read
			// transaction, which costs no write to the file.
			due := false
			err := c.db.View(func(tx *bolt.Tx) (err error) {
				due, err = expireTapes(tx, now, nil)
				return err
			})
			if err != nil || !due {
				return err
			}
			out = out[:0]
			return c.db.Update(func(tx *bolt.Tx) error {
				_, err := expireTapes(tx, now, &out)
				return err
			})
		})
	})
	return out, err
}

// expireTapes expires what is due as of now, appending the cartridges to
// expired; with expired nil it changes nothing and reports whether
// anything is due.
func expireTapes(tx *bolt.Tx, now time.Time, expired *[]string) (due bool, err error) {
	media, err := listJSON[TapeMedium](tx, bucketTapeMedia)
	if err != nil {
		return false, err
	}
	for _, m := range media {
		if m.Set != "" && m.State != MediaExpired && m.State != MediaFree && !m.Expiry.IsZero() && !now.Before(m.Expiry) {
			if expired == nil {
				return true, nil
			}
			m.State = MediaExpired
			if err := putJSON(tx, bucketTapeMedia, m.Barcode, m); err != nil {
				return false, err
			}
			*expired = append(*expired, m.Barcode)
		}
	}
	type setHead struct {
		ID     string    `json:"id"`
		Expiry time.Time `json:"expiry"`
		Closed bool      `json:"closed"`
	}
	heads, err := listJSON[setHead](tx, bucketTapeSets)
	if err != nil {
		return false, err
	}
	for _, h := range heads {
		if h.Closed || now.Before(h.Expiry) {
			continue
		}
		if expired == nil {
			return true, nil
		}
		var s TapeSet
		if err := json.Unmarshal(tx.Bucket(bucketTapeSets).Get([]byte(h.ID)), &s); err != nil {
			return false, fmt.Errorf("catalog %s/%s: %w", bucketTapeSets, h.ID, err)
		}
		s.Closed = true
		s.Revision++
		if err := putJSON(tx, bucketTapeSets, s.ID, s); err != nil {
			return false, err
		}
	}
	return false, nil
}

// TapeListEntry is one cartridge as 'recall tape list' shows it: which
// points it holds, in which set, until when.
type TapeListEntry struct {
	Barcode  string    `json:"barcode"`
	Pool     string    `json:"pool"`
	Set      string    `json:"set"`
	Sequence int       `json:"sequence"`
	State    string    `json:"state"`
	Written  time.Time `json:"written,omitempty"`
	Expiry   time.Time `json:"expiry,omitempty"`
	Library  string    `json:"library,omitempty"`
	Slot     int       `json:"slot,omitempty"`
	Points   []string  `json:"points"`
}

// ListTapes lists the cartridges that hold data, with the points each
// holds (a point whose packs span several cartridges is listed on each);
// point, when not "", keeps only the cartridges holding that point (an id
// or a unique prefix).
func ListTapes(home, point string, warn func(string, ...any)) ([]TapeListEntry, error) {
	if err := tapeHomeExists(home); err != nil {
		return nil, err
	}
	st, err := readTapeState(home, warn)
	if err != nil {
		return nil, err
	}
	out := []TapeListEntry{}
	for _, s := range st.Sets {
		held := setPointsBySequence(&s)
		for i, bc := range s.Tapes {
			m, ok := st.medium(bc)
			if ok && m.Set != s.ID {
				continue // erased or relabelled since
			}
			e := TapeListEntry{Barcode: bc, Pool: s.Pool, Set: s.ID, Sequence: i + 1, State: m.State,
				Written: m.Written, Expiry: s.Expiry, Library: m.Library, Slot: m.Slot, Points: held[i+1]}
			if e.Points == nil {
				e.Points = []string{}
			}
			if point != "" && !slices.ContainsFunc(e.Points, func(id string) bool { return strings.HasPrefix(id, point) }) {
				continue
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Set != out[j].Set {
			return out[i].Written.Before(out[j].Written)
		}
		return out[i].Sequence < out[j].Sequence
	})
	if point != "" && len(out) == 0 {
		return nil, fmt.Errorf("point %s: %w: no cartridge holds it", point, ErrTapeNotFound)
	}
	return out, nil
}

// setPointsBySequence maps each cartridge sequence of s to the points
// whose packs or point file it holds.
func setPointsBySequence(s *TapeSet) map[int][]string {
	out := map[int][]string{}
	if s.Catalog == nil {
		return out
	}
	packFile := s.Catalog.PackIndex()
	for _, p := range s.Catalog.Points {
		seqs := map[int]bool{}
		for _, pk := range p.Packs {
			if i, ok := packFile[pk]; ok {
				seqs[s.Catalog.Files[i].Sequence] = true
			}
		}
		if loc, ok := pointFileOf(s.Catalog, p.ID); ok {
			seqs[loc.Sequence] = true
		}
		for q := range seqs {
			out[q] = append(out[q], p.ID)
		}
	}
	for q := range out {
		sort.Strings(out[q])
	}
	return out
}

// openReadyLibrary opens the library of the media catalog named name
// ("" for the only one) and reads its inventory with the drives cleared
// (readyLibrary). The caller closes the library.
func openReadyLibrary(ctx context.Context, st *TapeState, name string) (tapefs.Library, TapeLibrary, *tapefs.Inventory, error) {
	libRec, err := st.library(name)
	if err != nil {
		return nil, libRec, nil, err
	}
	lib, err := openLibrary(libRec)
	if err != nil {
		return nil, libRec, nil, err
	}
	inv, err := readyLibrary(ctx, lib, libRec.Name)
	if err != nil {
		lib.Close()
		return nil, libRec, nil, err
	}
	return lib, libRec, inv, nil
}

// readyLibrary makes a library ready for a job: the drive emptied of a
// cartridge a previous job left in it, and the inventory after that.
func readyLibrary(ctx context.Context, lib tapefs.Library, name string) (*tapefs.Inventory, error) {
	inv, err := lib.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("tape library %s: %w", name, err)
	}
	if err := clearDrive(ctx, lib, inv, tapeDrive); err != nil {
		return nil, err
	}
	if inv, err = lib.Inventory(ctx); err != nil {
		return nil, fmt.Errorf("tape library %s: %w", name, err)
	}
	return inv, nil
}

// mayOverwrite decides whether the cartridge barcode may be overwritten:
// labelled into pool, or erased (pool ""). It is the one place that
// decides, for a write choosing a cartridge and for 'tape label' and
// 'tape erase': first on what the media catalog records (read false: the
// cartridge is not loaded yet), then again once its set label is read
// (read true; sl nil for a blank cartridge). It returns nil when the
// cartridge may be overwritten, else an error wrapping ErrTapeRefused
// that says why. --force skips it, and nothing else does.
//
// A set whose expiry is unknown (zero) is never expired: a zero expiry
// comes from a set written with no retention, and reusing its cartridges
// would lose data nobody chose to lose.
func mayOverwrite(st *TapeState, barcode string, read bool, sl *tapefs.SetLabel, pool string, now time.Time) error {
	force := "use --force to overwrite it ('recall tape erase --force' or 'recall tape label --force')"
	expired := func(t time.Time) bool { return !t.IsZero() && !now.Before(t) }
	until := func(t time.Time) string {
		if t.IsZero() {
			return "with no expiry recorded"
		}
		return "expires " + t.Format(time.DateOnly)
	}
	if m, ok := st.medium(barcode); ok {
		if m.Set != "" {
			exp := m.Expiry
			if s, ok := st.set(m.Set); ok {
				exp = s.Expiry
			}
			if !expired(exp) {
				return fmt.Errorf("%w: the catalog says it holds set %s of pool %s (%s); %s", ErrTapeRefused, m.Set, m.Pool, until(exp), force)
			}
		}
		if pool != "" && m.Pool != "" && m.Pool != pool {
			return fmt.Errorf("%w: the catalog says it is pool %s's; %s", ErrTapeRefused, m.Pool, force)
		}
	}
	if !read || sl == nil {
		return nil
	}
	if pool != "" && sl.Pool != pool {
		return fmt.Errorf("%w: it is labelled for pool %s (set %s, %s); %s", ErrTapeRefused, sl.Pool, sl.SetID, until(sl.Expiry), force)
	}
	if freeLabel(sl) {
		return nil
	}
	exp := sl.Expiry
	s, known := st.set(sl.SetID)
	if known {
		exp = s.Expiry
	}
	switch {
	case expired(exp):
		return nil
	case !known:
		// Not written over unread: a set's points may be on another
		// of its cartridges, which a look at this one cannot tell.
		return fmt.Errorf("%w: it holds set %s of pool %s (%s), which this server's catalog does not know (a cartridge from elsewhere, or a write stopped before it recorded its set): 'recall tape catalog --slot N' reads what it holds into the catalog (a pool that appends then goes on writing that set); if it holds nothing you need, %s",
			ErrTapeRefused, sl.SetID, sl.Pool, until(exp), force)
	}
	return fmt.Errorf("%w: it holds set %s of pool %s (%s); %s", ErrTapeRefused, sl.SetID, sl.Pool, until(exp), force)
}

// freeLabel tells a set label 'recall tape label' wrote (a set that
// expired as it was created, holding nothing) from a set's.
func freeLabel(sl *tapefs.SetLabel) bool {
	return !sl.Expiry.IsZero() && !sl.Expiry.After(sl.Created)
}

// dropCartridge removes from s what cartridge seq held, once it is erased
// or relabelled: its files leave the set's catalog (so no later write
// takes a pack on it as already written), the points that needed any of
// them go too, and the set is closed, so nothing is appended to a set
// with a hole in it. It returns the ids of the points lost.
func dropCartridge(s *TapeSet, seq int) []string {
	s.Closed = true
	if !slices.Contains(s.Dropped, seq) {
		s.Dropped = append(s.Dropped, seq)
	}
	c := s.Catalog
	if c == nil {
		return nil
	}
	newIndex := map[int]int{}
	var files []tapefs.CatalogFile
	have := map[string]bool{}
	for i, f := range c.Files {
		if f.Sequence == seq {
			continue
		}
		newIndex[i] = len(files)
		files = append(files, f)
		if f.Kind == tapefs.KindPacks {
			for _, e := range f.Entries {
				have[e.Name] = true
			}
		}
	}
	var lost []string
	var points []tapefs.CatalogPoint
	for _, p := range c.Points {
		whole := slices.IndexFunc(p.Packs, func(pk string) bool { return !have[pk] }) < 0
		var idx []int
		pointFile := false
		for _, i := range p.Files {
			j, ok := newIndex[i]
			if !ok {
				continue
			}
			idx = append(idx, j)
			pointFile = pointFile || files[j].Kind == tapefs.KindPoint
		}
		if !whole || !pointFile {
			lost = append(lost, p.ID)
			continue
		}
		p.Files = idx
		points = append(points, p)
	}
	c.Files, c.Points = files, points
	return lost
}
