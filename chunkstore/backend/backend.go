// Package backend is the storage seam of the chunk store: every byte the
// store keeps goes through a Backend, so the store runs unchanged over a
// local directory (backend/local), and later an S3-compatible object store
// or a cold tier.
//
// # Files
//
// A backend holds named files of a few types (FileType): packs, index files,
// point manifests, damage records, the config files, lock objects and
// journal entries (empty files whose name is what they say: a write
// session's pack not yet covered by an index file). A file
// is addressed by a Handle, its type and name; names are chosen by the store
// (mostly hex content hashes) and are plain: no slashes, no leading dot. How
// a backend lays files out is its own business (the local one keeps packs in
// packs/xx/ by the first two characters of the name).
//
// # The contract
//
//   - Save is atomic: a reader sees either no file of that name, or the
//     whole file, never part of it. When Save returns nil the file is
//     durable (it survives a power cut). Saving a name that exists
//     replaces it (the store only does so with the same bytes, or for the
//     config files).
//   - Files are immutable once saved; the store never appends to one. A
//     file being built (a pack) is a FileWriter (Creator): nothing of it is
//     visible until Commit, which is atomic and durable as Save is.
//   - Read-after-write is strong: once Save, Commit or Remove returned, every
//     Stat, Load and List of any process sees its effect. List may miss
//     files saved while it runs, never a file saved before it started.
//   - Load reads a byte range into the caller's buffer; a range past the end
//     of the file returns the bytes there are with io.ErrUnexpectedEOF.
//   - Errors: a missing file gives an error for which errors.Is(err,
//     ErrNotExist) holds; a lock held by others, ErrLocked (a *LockedError
//     naming the holders); an unsupported optional operation,
//     ErrNotSupported; a full storage, ErrNoSpace. Any other error is an I/O error that says nothing
//     about the stored bytes (a retry may succeed). A canceled context makes
//     a call return ctx.Err() (wrapped) as soon as it can; a Save canceled
//     midway leaves no file.
//   - Locks are advisory and named (Lock): shared holders exclude exclusive
//     ones and the other way round. A lock dies with its holder (the local
//     backend uses flock; an object store would write lock objects with a
//     refresh time and treat stale ones as gone). The info a holder gives is
//     what a waiter is shown.
//
// # What an object store can do
//
// The contract is written so that an S3-compatible store implements it
// without changes to the store above: it has no rename (Save and Commit are
// one PUT of the whole object, which S3 makes atomic), no flock (Lock writes
// lock objects, lock/<name>/<token>, and lists them), strong
// read-after-write (S3 since 2020, Ceph RGW), and ranged GET (Load).
// Journal entries need nothing more: each is one empty object, saved before
// the pack it names is committed and removed once an index file covers it,
// so the journal is never appended to or rewritten. An object store has
// no O_DIRECT and no cheap name-only listing; those are optional capabilities
// (DirectReader, NameLister) the store detects and does without. A cold
// tier (tape, archive classes) implements Warmer: the store asks for the
// files it is about to read first, instead of reads that block for minutes.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FileType is a kind of file a backend holds.
type FileType uint8

// The file types.
const (
	Packs   FileType = iota + 1 // packs, named by the hash of their bytes
	Index                       // index files
	Points                      // recovery point manifests
	Damaged                     // damage records
	Config                      // the config and its copy
	Locks                       // lock objects (only the backend writes them)
	Journal                     // journal entries: packs not yet indexed, per write session
	GC                          // garbage collection's plan and records (chunkstore/gc.go)
)

var typeNames = map[FileType]string{Packs: "packs", Index: "index", Points: "points", Damaged: "damaged", Config: "config", Locks: "locks", Journal: "journal", GC: "gc"}

func (t FileType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("filetype(%d)", uint8(t))
}

// FileTypes lists every file type, for suites and tools that walk them all.
var FileTypes = []FileType{Packs, Index, Points, Damaged, Config, Locks, Journal, GC}

// Handle names one file.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string { return h.Type.String() + "/" + h.Name }

// Valid reports whether h can name a file: a known type and a plain name.
func (h Handle) Valid() error {
	if _, ok := typeNames[h.Type]; !ok {
		return fmt.Errorf("%v: unknown file type", h)
	}
	if h.Name == "" || strings.ContainsAny(h.Name, "/\\\x00") || strings.HasPrefix(h.Name, ".") {
		return fmt.Errorf("%v: invalid file name %q", h, h.Name)
	}
	return nil
}

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotExist: the file does not exist.
	ErrNotExist = errors.New("file does not exist")
	// ErrLocked: the lock is held by others (see LockedError).
	ErrLocked = errors.New("locked")
	// ErrNotSupported: the backend does not offer this optional operation.
	ErrNotSupported = errors.New("not supported by this backend")
	// ErrNoSpace: the storage is full (a file system's ENOSPC or quota, an
	// object store's quota). Nothing partial was left visible.
	ErrNoSpace = errors.New("no space left")
)

// Backend is the storage of one store. It is safe for concurrent use.
type Backend interface {
	// Location names the backend for messages (a directory, a URL).
	Location() string

	// List calls fn with the name and size of every file of type t, in no
	// particular order, from the calling goroutine. An error from fn stops
	// the listing and is returned.
	List(ctx context.Context, t FileType, fn func(name string, size int64) error) error

	// Stat returns the size of a file.
	Stat(ctx context.Context, h Handle) (int64, error)

	// Load reads length bytes at offset of a file (length < 0: to its end)
	// into buf's storage, allocating when buf is too small, and returns
	// them. The caller owns buf and the result. When the file ends before
	// offset+length the bytes there are come back with io.ErrUnexpectedEOF.
	Load(ctx context.Context, h Handle, offset int64, length int, buf []byte) ([]byte, error)

	// Save stores data as a file, atomically and durably (see the package
	// comment). data is not retained.
	Save(ctx context.Context, h Handle, data []byte) error

	// Remove deletes a file durably. A missing file gives ErrNotExist.
	Remove(ctx context.Context, h Handle) error

	// Lock takes the named lock in mode without waiting, recording info
	// (who holds it, shown to others). A lock held in a conflicting mode
	// gives a *LockedError (ErrLocked); the caller decides whether to wait
	// and try again. The lock lasts until Unlock or the holder's death:
	// at once for a lock the kernel drops (flock); for a lock kept where
	// it outlives its holder (an object store), when it goes stale, or at
	// once when ctx asks for it (FreeDeadHere) and the holder is known
	// to have died on this host. What a dead holder left (its record of
	// info) goes when the lock is next taken or found busy, so holders
	// killed with -9 leave nothing that accumulates; Remove of a lock
	// taken exclusively then removes the lock itself.
	Lock(ctx context.Context, name string, mode LockMode, info []byte) (Unlocker, error)

	// Close releases what the backend holds open. Locks are not released.
	Close() error
}

// LockMode is how a lock is held.
type LockMode uint8

// The lock modes.
const (
	Shared    LockMode = iota + 1 // with other shared holders
	Exclusive                     // alone
)

func (m LockMode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	}
	return fmt.Sprintf("lockmode(%d)", uint8(m))
}

// Unlocker releases a lock.
type Unlocker interface {
	Unlock() error
}

// LostNotifier is an Unlocker that can lose its lock while held (a
// remote lock whose refreshes failed, or that another holder took as
// stale): Lost is closed then. Its holder must stop writing: another
// may hold the lock by now. A lock that cannot be lost (flock) does not
// implement it.
type LostNotifier interface {
	Lost() <-chan struct{}
}

// FreeDeadHere returns ctx marked so that a Lock under it frees, at once,
// the lock of a conflicting holder known to have died on this host (the
// s3 backend's SetHolderDead: same host name, same boot, and its holder
// file, in this process's local holder directory, held by no process),
// instead of waiting for it to go stale.
// Such a holder can send nothing more, but what it sent before it died
// may still be carried out after: the kernel drains a dead process's
// socket send buffers, and a proxy or the server may hold a whole request
// (a pack's PUT) and complete it seconds later. So a caller asks for it
// only where a dead holder's late requests are harmless to what it does
// under the lock; without it, a dead holder's lock frees only when stale.
// Backends whose locks die with their holder (flock) ignore it.
func FreeDeadHere(ctx context.Context) context.Context {
	return context.WithValue(ctx, freeDeadHereKey{}, true)
}

// IsFreeDeadHere reports whether ctx was marked by FreeDeadHere.
func IsFreeDeadHere(ctx context.Context) bool {
	v, _ := ctx.Value(freeDeadHereKey{}).(bool)
	return v
}

type freeDeadHereKey struct{}

// LockedError is the error of a lock held by others: the info each
// holder gave (empty when a holder has not written it yet).
type LockedError struct {
	Name    string
	Holders [][]byte
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("lock %s: %v by %d holder(s)", e.Name, ErrLocked, len(e.Holders))
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Optional capabilities. The store detects them with a type assertion and
// works without each of them.

// Creator is a backend that streams a file as it is built (a pack), instead
// of taking it whole (Save). Without it the store uses Create's buffering
// writer.
type Creator interface {
	Create(ctx context.Context, t FileType) (FileWriter, error)
}

// FileWriter is a file being built. Writes append; nothing is visible
// until Commit publishes the bytes under a name, atomically and durably
// (as Save). Abort discards them. After Commit or Abort the writer is done;
// Abort after Commit does nothing. Not safe for concurrent use.
type FileWriter interface {
	io.Writer
	Commit(ctx context.Context, name string) error
	Abort() error
}

// Create returns a writer of a new file of type t: be's own streaming one
// when it has it, otherwise one that keeps the bytes in memory and Saves
// them at Commit.
func Create(ctx context.Context, be Backend, t FileType) (FileWriter, error) {
	if c, ok := be.(Creator); ok {
		return c.Create(ctx, t)
	}
	return &bufferedWriter{be: be, t: t}, nil
}

type bufferedWriter struct {
	be   Backend
	t    FileType
	buf  []byte
	done bool
}

func (w *bufferedWriter) Write(b []byte) (int, error) {
	if w.done {
		return 0, errors.New("write to a finished file")
	}
	w.buf = append(w.buf, b...)
	return len(b), nil
}

func (w *bufferedWriter) Commit(ctx context.Context, name string) error {
	if w.done {
		return errors.New("commit of a finished file")
	}
	w.done = true
	err := w.be.Save(ctx, Handle{Type: w.t, Name: name}, w.buf)
	w.buf = nil
	return err
}

func (w *bufferedWriter) Abort() error {
	w.done, w.buf = true, nil
	return nil
}

// FileOpener is a backend that can keep a file open for reads at random
// offsets: cheaper than a Load per read where each Load opens the file
// (local), for what is read in place a block at a time (a consolidated
// index file). The file stays readable through the returned reader even
// when it is removed meanwhile, until the caller closes it. A backend
// without it is read with a Load per read.
type FileOpener interface {
	OpenFile(ctx context.Context, h Handle) (ReadAtCloser, int64, error)
}

// ReadAtCloser is an open file: reads at offsets, then Close.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

// DirectReader is a backend that can read a file bypassing caches (local:
// O_DIRECT). Reads through the returned ReaderAt must use buffers, offsets
// and lengths aligned to DirectAlign; near the end of the file they read
// short. ErrNotSupported says the underlying file system refuses it. The
// ReaderAt stays usable until the file is removed or replaced, or the
// backend closed; the caller does not close it.
type DirectReader interface {
	OpenDirect(ctx context.Context, h Handle) (io.ReaderAt, error)
}

// DirectAlign is the alignment of DirectReader reads.
const DirectAlign = 4096

// NameLister is a backend that lists names more cheaply than List lists
// names with sizes (local: no stat per file).
type NameLister interface {
	ListNames(ctx context.Context, t FileType, fn func(name string) error) error
}

// ListNames lists the names of the files of type t, cheaply where be can.
func ListNames(ctx context.Context, be Backend, t FileType, fn func(name string) error) error {
	if nl, ok := be.(NameLister); ok {
		return nl.ListNames(ctx, t, fn)
	}
	return be.List(ctx, t, func(name string, _ int64) error { return fn(name) })
}

// Warmer is a cold backend: files must be asked for (Warm) before Load
// returns them without a long wait. Warm returns when they can be read.
type Warmer interface {
	Warm(ctx context.Context, hs []Handle) error
}

// Warm asks be to make the files readable; a backend that is not cold has
// nothing to do.
func Warm(ctx context.Context, be Backend, hs []Handle) error {
	if w, ok := be.(Warmer); ok {
		return w.Warm(ctx, hs)
	}
	return nil
}

// PackPlacer is a backend that keeps each pack in a folder of its own
// by name (local: packs/<first two characters>/), whose files can be
// moved out of it by hand. Misplaced names the files under a pack's name
// that lie elsewhere (List does not list them: Load does not find them);
// PutBack moves one where it is read from, never over a file already
// there (an error wrapping fs.ErrExist).
type PackPlacer interface {
	Misplaced(ctx context.Context, fn func(name, path string) error) error
	PutBack(ctx context.Context, name, path string) error
}

// PackRenamer is a backend that can set the file in pack name's place
// aside as a misplaced file of pack as (one its Misplaced names as as,
// and PutBack moves to as's place): for a file that holds pack as, not
// name. It never replaces a file: one set aside as as already is an
// error wrapping fs.ErrExist.
type PackRenamer interface {
	SetAside(ctx context.Context, name, as string) error
}

// TempCleaner is a backend that keeps temporary files of its own (local:
// tmp/, and .tmp- files of interrupted saves) which a crashed writer
// leaves behind. CleanTemp removes those of tag (a FileWriter's tag, see
// Tagger), or with tag "" every temporary file, which only the holder of
// an exclusive lock may ask for. It removes only what the backend's own
// writers made, told by its names: the place it keeps them may hold what
// is not the store's (local: a note in tmp/, or tmp/ a symlink to a
// directory that holds other files), and that stays. What ListTemp
// lists is what it removes.
type TempCleaner interface {
	CleanTemp(ctx context.Context, tag string) error
}

// Reserver is a backend on storage that can fill to its last block (a
// file system): it keeps a reserve, room set aside that garbage
// collection gives up when it starts. A collection writes its plan and
// the index file that hides packs before it deletes any, so on a store
// that is full to the last block, without a reserve, the one command
// that frees space could not begin. Backends that cannot fill up that
// way (an object store's quota is raised, not freed) do not implement it.
type Reserver interface {
	// Reserve sets n bytes aside, if they are free and not set aside
	// yet. Kept by the backend: no file of any FileType.
	Reserve(ctx context.Context, n int64) error
	// Release gives the reserve up (none is no error).
	Release(ctx context.Context) error
}

// Tagger is a Creator whose writers can carry a tag (a writing session),
// so that CleanTemp(tag) removes exactly what an earlier session with that
// tag left behind.
type Tagger interface {
	CreateTagged(ctx context.Context, t FileType, tag string) (FileWriter, error)
}

// SizedTagger is a Tagger told the size a file is expected to reach
// (about: the file may end up smaller or larger), so it can choose how to
// write it. The local backend writes with O_DIRECT only files of several
// staging buffers: for a smaller one the buffer costs more memory than
// the page-cache copy costs time.
type SizedTagger interface {
	CreateSized(ctx context.Context, t FileType, tag string, size int64) (FileWriter, error)
}

// CreateSized is CreateTagged for a file expected to be about size bytes.
func CreateSized(ctx context.Context, be Backend, t FileType, tag string, size int64) (FileWriter, error) {
	if st, ok := be.(SizedTagger); ok && tag != "" {
		return st.CreateSized(ctx, t, tag, size)
	}
	return CreateTagged(ctx, be, t, tag)
}

// Syncer is a FileWriter that can make the bytes written so far durable in
// the temp area before Commit (local: staged bytes written, fsync), so that
// a writer killed after Sync leaves a whole file a TempReader can read.
// After Sync only Commit or Abort may follow.
type Syncer interface {
	Sync() error
}

// TempReader is a backend whose streamed files outlive a writer that dies
// before Commit (local: tmp/<tag>/), and can list and read them: a file a
// writer finished but did not commit (killed between the two) is then not
// lost. A backend whose uploads are invisible until complete (an object
// store) has no temp area and no TempReader.
//
// Only the holder of what owns tag (a session's lock; for tag "", every
// tag: the exclusive lock) may call these: no writer of tag is running, so
// the files do not change while they are read.
type TempReader interface {
	// ListTemp calls fn with the tag, name and size of every file of type
	// t that writers tagged tag (every tag: "") left, in no particular
	// order, from the calling goroutine. An error from fn stops the
	// listing and is returned.
	ListTemp(ctx context.Context, tag string, t FileType, fn func(tag, name string, size int64) error) error
	// LoadTemp reads a whole file ListTemp named into buf's storage,
	// allocating when buf is too small. ErrNotExist when it is gone.
	LoadTemp(ctx context.Context, tag, name string, buf []byte) ([]byte, error)
}

// CreateTagged is Create for a writing session named tag.
func CreateTagged(ctx context.Context, be Backend, t FileType, tag string) (FileWriter, error) {
	if tg, ok := be.(Tagger); ok && tag != "" {
		return tg.CreateTagged(ctx, t, tag)
	}
	return Create(ctx, be, t)
}
