// Package local is the chunk store's backend on a local directory, the
// embedded default. It holds all of the store's system calls: atomic
// saves (temp file, fsync, rename, directory fsync), O_DIRECT pack writes
// and reads, and flock locks.
//
// Layout of the directory:
//
//	config, config.copy      Config files
//	packs/xx/<name>          Packs, by the first two characters of the name
//	index/<name>             Index files
//	points/<name>            Points
//	damaged/<name>           Damage records
//	journal/<name>           Journal entries (empty files)
//	locks/<name>             the flock of lock <name>, with the info of an
//	                         exclusive holder; locks/<name>.<pid>-<token>
//	                         one per holder, with its info, flocked by it
//	tmp/[<tag>/]<type>-<n>   files being built (Create, CreateTagged): packs-123,
//	                         index-456; nothing else in tmp/ is ours (CleanTemp)
//	reserve                  room set aside for garbage collection on a
//	                         full file system (backend.Reserver, reserve.go)
//
// Files whose name starts with "." are temp files of saves in progress (or
// interrupted) and are never listed.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"golang.org/x/sys/unix"
)

// Backend is a store directory.
type Backend struct {
	dir string

	mu       sync.Mutex
	files    map[string]*os.File // pack name -> buffered descriptor
	dfiles   map[string]*os.File // pack name -> O_DIRECT descriptor
	noDirect atomic.Bool         // the file system refused O_DIRECT
}

var (
	_ backend.Backend      = (*Backend)(nil)
	_ backend.Creator      = (*Backend)(nil)
	_ backend.Tagger       = (*Backend)(nil)
	_ backend.DirectReader = (*Backend)(nil)
	_ backend.NameLister   = (*Backend)(nil)
	_ backend.TempCleaner  = (*Backend)(nil)
)

// maxOpen bounds each descriptor cache: packs are read at random by a
// mount, and reopening one per read costs more than the read.
const maxOpen = 2048

// Open returns the backend of an existing directory. Nothing is checked or
// written: the store reads its config to know whether there is a store.
func Open(dir string) *Backend {
	return &Backend{dir: dir, files: map[string]*os.File{}, dfiles: map[string]*os.File{}}
}

// Create makes the directory layout of a new store in dir (which may
// exist) and returns its backend.
func Create(dir string) (*Backend, error) {
	for _, d := range []string{"", "packs", "index", "points", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "packs", fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return nil, err
		}
	}
	return Open(dir), nil
}

// Location returns the directory.
func (b *Backend) Location() string { return b.dir }

// Path returns the path of a file (tests and messages).
func (b *Backend) Path(h backend.Handle) string {
	switch h.Type {
	case backend.Config:
		return filepath.Join(b.dir, h.Name)
	case backend.Packs:
		return filepath.Join(b.dir, "packs", packDir(h.Name), h.Name)
	}
	return filepath.Join(b.dir, h.Type.String(), h.Name)
}

// packDir is the folder under packs/ a pack of the given name is read
// from: its first two characters.
func packDir(name string) string {
	if len(name) >= 2 {
		return name[:2]
	}
	return name
}

// notExist turns a missing file into backend.ErrNotExist, keeping the path.
func notExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", backend.ErrNotExist, err)
	}
	return err
}

// full marks a write that failed for want of space as backend.ErrNoSpace.
func full(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", backend.ErrNoSpace, err)
	}
	return err
}

// List lists the files of type t. A pack is listed only in the folder it
// is read from (packs/<first two characters>/, or a link to a directory
// there): one moved into another folder is not where Load looks, and
// listing it would have verify call it present while restore cannot read
// it. Misplaced names those; PutBack moves them home.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(name string, size int64) error) error {
	return b.list(ctx, t, func(dir string, e os.DirEntry) error {
		if t == backend.Packs && filepath.Base(dir) != packDir(e.Name()) {
			return nil
		}
		info, err := e.Info()
		if err == nil && info.Mode()&os.ModeSymlink != 0 {
			// Followed, as Load and Open follow it: an administrator
			// who moved packs to another disk and left links behind
			// must not see them listed as missing (and repair then
			// drop them from the index) while they read fine.
			info, err = os.Stat(filepath.Join(dir, e.Name()))
		}
		if err != nil {
			return nil // removed meanwhile, or a dangling link: missing
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		return fn(e.Name(), info.Size())
	})
}

// ListNames lists names without a stat per file. A directory in the
// place of a point's manifest is listed: loading it fails, and the point
// shows as damaged instead of vanishing, which would let garbage
// collection delete what only that point uses.
func (b *Backend) ListNames(ctx context.Context, t backend.FileType, fn func(name string) error) error {
	return b.list(ctx, t, func(dir string, e os.DirEntry) error {
		if e.IsDir() && t != backend.Points || t == backend.Packs && filepath.Base(dir) != packDir(e.Name()) {
			return nil
		}
		return fn(e.Name())
	})
}

func (b *Backend) list(ctx context.Context, t backend.FileType, fn func(dir string, e os.DirEntry) error) error {
	var dirs []string
	switch t {
	case backend.Packs:
		subs, err := os.ReadDir(filepath.Join(b.dir, "packs"))
		if err != nil {
			return fmt.Errorf("list packs: %w", notExist(err))
		}
		for _, s := range subs {
			d := filepath.Join(b.dir, "packs", s.Name())
			if s.Type()&os.ModeSymlink != 0 {
				// A directory moved elsewhere and linked back: its
				// packs are read through the link, so listed through it.
				if fi, err := os.Stat(d); err == nil && fi.IsDir() {
					dirs = append(dirs, d)
				}
				continue
			}
			if s.IsDir() {
				dirs = append(dirs, d)
			}
		}
	case backend.Config:
		dirs = []string{b.dir}
	default:
		if err := (backend.Handle{Type: t, Name: "x"}).Valid(); err != nil {
			return err
		}
		dirs = []string{filepath.Join(b.dir, t.String())}
	}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) && t != backend.Packs {
			// A directory a careless hand removed holds no files; the
			// next save recreates it.
			continue
		}
		if err != nil && t == backend.Packs {
			return err // names the folder; the store says it was listing packs
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			if t == backend.Config && name != "config" && !strings.HasPrefix(name, "config.") {
				continue
			}
			if t == backend.Locks && strings.Contains(name, ".") {
				continue // holder files are part of a lock, not locks
			}
			if err := fn(d, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stat returns a file's size.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (int64, error) {
	if err := h.Valid(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	st, err := os.Stat(b.Path(h))
	if err != nil {
		return 0, notExist(err)
	}
	return st.Size(), nil
}

// Load reads a range of a file into buf's storage. Pack descriptors are
// kept open (packs are immutable); other files are opened per call.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off int64, length int, buf []byte) ([]byte, error) {
	if err := h.Valid(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("load %v: negative offset %d", h, off)
	}
	var f *os.File
	if h.Type == backend.Packs {
		var err error
		if f, err = b.cached(b.files, h, 0); err != nil {
			return nil, err
		}
	} else {
		var err error
		if f, err = os.Open(b.Path(h)); err != nil {
			return nil, notExist(err)
		}
		defer f.Close()
	}
	if length < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		length = int(max(st.Size()-off, 0))
	}
	if cap(buf) < length {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	got, err := f.ReadAt(buf, off)
	if got == length {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return buf[:got], err
}

// cached returns an open descriptor of pack h from m, opening it with flags.
func (b *Backend) cached(m map[string]*os.File, h backend.Handle, flags int) (*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := m[h.Name]; ok {
		return f, nil
	}
	f, err := os.OpenFile(b.Path(h), os.O_RDONLY|flags, 0)
	if err != nil {
		return nil, notExist(err)
	}
	if len(m) >= maxOpen {
		// A read in progress on an evicted file finishes before the
		// descriptor really closes.
		for k, old := range m {
			delete(m, k)
			go func() { old.Close() }()
			break
		}
	}
	m[h.Name] = f
	return f, nil
}

// forget closes the cached descriptors of a pack removed or replaced.
func (b *Backend) forget(h backend.Handle) {
	if h.Type != backend.Packs {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range []map[string]*os.File{b.files, b.dfiles} {
		if f, ok := m[h.Name]; ok {
			f.Close()
			delete(m, h.Name)
		}
	}
}

// OpenDirect returns an O_DIRECT descriptor of a pack, or
// backend.ErrNotSupported when the file system has no O_DIRECT.
func (b *Backend) OpenDirect(ctx context.Context, h backend.Handle) (io.ReaderAt, error) {
	if err := h.Valid(); err != nil {
		return nil, err
	}
	if h.Type != backend.Packs || b.noDirect.Load() {
		return nil, backend.ErrNotSupported
	}
	f, err := b.cached(b.dfiles, h, unix.O_DIRECT)
	if errors.Is(err, unix.EINVAL) {
		b.noDirect.Store(true)
		return nil, backend.ErrNotSupported
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// DirectRefused reports whether the file system refused O_DIRECT.
func (b *Backend) DirectRefused() bool { return b.noDirect.Load() }

// Save writes a file atomically and durably.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.Path(h)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return full(err)
	}
	if err := writeFileAtomic(ctx, filepath.Dir(p), filepath.Base(p), data); err != nil {
		return full(err)
	}
	b.forget(h)
	return nil
}

// writeFileAtomic writes name in dir durably: temp file, fsync, rename,
// directory fsync. Readers see either nothing or the whole file.
func writeFileAtomic(ctx context.Context, dir, name string, data []byte) error {
	f, err := createTemp(dir, name)
	if err != nil {
		return err
	}
	defer f.discard()
	tmp := f.Name()
	if err := fault(StepCreate, tmp, ""); err != nil {
		return err
	}
	if err := fault(StepWrite, tmp, ""); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	if err := fault(StepSync, tmp, ""); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Join(dir, name), err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fault(StepRename, tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	f.kept = true
	return syncDir(dir)
}

// tempFile is a save's temp file, dir/.tmp-<name>-*: CleanTemp removes
// those a killed process left. discard closes and removes it unless it
// was kept (renamed into place).
type tempFile struct {
	*os.File
	kept bool
}

func createTemp(dir, name string) (*tempFile, error) {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return nil, err
	}
	return &tempFile{File: f}, nil
}

func (t *tempFile) discard() {
	if !t.kept {
		t.Close()
		os.Remove(t.Name())
	}
}

func syncDir(dir string) error {
	if err := fault(StepSyncDir, dir, ""); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Remove deletes a file and syncs its directory.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.Path(h)
	b.forget(h)
	if err := os.Remove(p); err != nil {
		return notExist(err)
	}
	return syncDir(filepath.Dir(p))
}

// Close closes the cached descriptors.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range []map[string]*os.File{b.files, b.dfiles} {
		for n, f := range m {
			f.Close()
			delete(m, n)
		}
	}
	return nil
}

// CleanTemp removes what writers that died left being built: with a tag,
// the temp files in tmp/<tag>/, and the directory once empty; with tag
// "", those in tmp/ and in each directory of tmp/ (each directory that
// held them goes once empty), and every interrupted save's temp file
// (.tmp-<name>-<digits>) beside the store's files, packs/xx/ included.
//
// Only the names this backend gives what it writes are removed
// (isTempName, isSaveTemp), regular files only, never a symlink: no
// command removes what it did not write. Before, tag "" removed every
// entry of tmp/ and tag the whole of tmp/<tag>/, so a note or a
// directory an administrator kept there went too, and with tmp/ a
// symlink to a directory elsewhere, everything in that directory.
//
// A tmp/ that is a symlink is followed, as Create follows it to write
// there: with only our names removed, what else is in the directory it
// points to is safe. It must be on the store's file system, since a file
// built there is renamed into place (Commit says so when it is not). A
// directory of tmp/ that is a symlink is followed for its own tag (a
// session writes through it) and never removed; the sweep of tag "" does
// not enter it.
func (b *Backend) CleanTemp(ctx context.Context, tag string) error {
	tmp := filepath.Join(b.dir, "tmp")
	if tag != "" {
		if err := (backend.Handle{Type: backend.Packs, Name: tag}).Valid(); err != nil {
			return fmt.Errorf("temp tag: %w", err)
		}
		_, err := cleanTempDir(filepath.Join(tmp, tag), true)
		return err
	}
	if _, err := removeIn(tmp, isTempName); err != nil { // tmp/ itself stays
		return err
	}
	ents, err := os.ReadDir(tmp)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clean temp files: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() { // not a symlink to one: the sweep follows none
			if _, err := cleanTempDir(filepath.Join(tmp, e.Name()), false); err != nil {
				return err
			}
		}
	}
	// gc/ too: the exclusive holder that calls this excludes gc, which
	// holds the store lock shared (a killed gc left its plan's temp file).
	for _, d := range []string{"", "index", "points", "damaged", "journal", "gc"} {
		if _, err := removeIn(filepath.Join(b.dir, d), isSaveTemp); err != nil {
			return err
		}
	}
	// And packs/xx/: a pack saved whole (Save: a copy into this store, a
	// tape restore's packs) leaves its temp file beside the packs when
	// killed. One listing of each directory, as the exclusive holder's
	// pack walk makes anyway; symlinked directories are not entered.
	packs := filepath.Join(b.dir, "packs")
	ents, err = os.ReadDir(packs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clean temp files: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() {
			if _, err := removeIn(filepath.Join(packs, e.Name()), isSaveTemp); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanTempDir removes the temp files Create left in dir, a tag's
// directory of tmp/ (isTempName), then dir itself when nothing else is
// left in it and it is the caller's tag (named) or held such files: an
// empty directory that never held any is not known to be ours. It
// reports whether dir was removed; a dir that is not there is no error.
func cleanTempDir(dir string, named bool) (bool, error) {
	n, err := removeIn(dir, isTempName)
	if err != nil || !named && n == 0 {
		return false, err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return false, nil // gone, or a symlink: not ours to remove
	}
	// rmdir: refused when anything else is in it, which then stays.
	if err := os.Remove(dir); err != nil {
		return false, nil
	}
	return true, nil
}

// removeIn removes the regular files of dir whose name matches, and
// returns how many it removed. A dir that is not there holds none.
func removeIn(dir string, match func(string) bool) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean temp files: %w", err)
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !match(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("remove temp file %s: %w; remove it by hand if this persists", p, err)
		}
		n++
	}
	return n, nil
}

// isSaveTemp reports whether name is one createTemp gives a save's temp
// file: ".tmp-" + the file's name + "-" + os.CreateTemp's decimal digits.
func isSaveTemp(name string) bool {
	rest, ok := strings.CutPrefix(name, ".tmp-")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, '-')
	return i > 0 && allDigits(rest[i+1:])
}

// allDigits reports whether s is a non-empty run of decimal digits (what
// os.CreateTemp puts for its "*": a random uint32).
func allDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Lock takes a flock on locks/<name> (LOCK_SH or LOCK_EX, without
// waiting) and records info in a holder file locks/<name>.<token>, which
// the holder keeps flocked: a holder file whose flock can be taken belongs
// to a dead holder and is removed by whoever finds it, whether the lock is
// busy (the holders are read) or taken (so that the files of holders
// killed with -9 do not pile up: a registration that garbage collection
// proves dead by taking its lock leaves nothing behind).
func (b *Backend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	if err := (backend.Handle{Type: backend.Locks, Name: name}).Valid(); err != nil || strings.Contains(name, ".") {
		return nil, fmt.Errorf("lock name %q: must be a plain name without dots", name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if mode == backend.Exclusive {
		how = syscall.LOCK_EX
	} else if mode != backend.Shared {
		return nil, fmt.Errorf("lock %s: unknown mode %v", name, mode)
	}
	dir := filepath.Join(b.dir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &backend.LockedError{Name: name, Holders: holders(dir, name, p)}
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	holders(dir, name, "")
	hf, hpath, err := writeHolder(dir, name, info)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// No exclusive holder is inside, so what the lock file says is stale.
	// An exclusive holder writes its info there too, where releases that
	// knew only the exclusive lock look for it.
	f.Truncate(0)
	if mode == backend.Exclusive {
		f.WriteAt(info, 0)
	}
	return &lock{f: f, holder: hf, holderPath: hpath, exclusive: mode == backend.Exclusive}, nil
}

type lock struct {
	once   sync.Once
	f      *os.File
	holder *os.File
	// holderPath is the holder file's name (holder.Name() is the temp
	// name it was created under).
	holderPath string
	exclusive  bool
}

func (l *lock) Unlock() error {
	var err error
	l.once.Do(func() {
		os.Remove(l.holderPath)
		l.holder.Close()
		if l.exclusive {
			l.f.Truncate(0)
		}
		err = l.f.Close()
	})
	return err
}

// writeHolder creates the holder file, flocked before it is visible under
// its name, so a finder never takes a living holder for a dead one.
func writeHolder(dir, name string, info []byte) (*os.File, string, error) {
	tok := make([]byte, 8)
	rand.Read(tok)
	f, err := os.CreateTemp(dir, ".tmp-holder-*")
	if err != nil {
		return nil, "", err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, "", err
	}
	if _, err := f.Write(info); err != nil {
		if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
			f.Close()
			os.Remove(f.Name())
			return nil, "", err
		}
		// A file system with no block left still has an inode for an
		// empty holder file: the lock is held, only what others are
		// shown of its holder is missing (its pid is in the name).
		// forget and gc, which free space, must get their lock on a
		// full store.
		f.Truncate(0)
	}
	final := filepath.Join(dir, name+"."+fmt.Sprint(os.Getpid())+"-"+hex.EncodeToString(tok))
	if err := os.Rename(f.Name(), final); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, "", err
	}
	return f, final, nil
}

// removeDeadTemp removes a holder's temp file left by a process killed
// between its creation and its rename, once no one flocks it and it is
// older than a minute (a holder between CreateTemp and its flock is
// younger).
func removeDeadTemp(p string) {
	fi, err := os.Stat(p)
	if err != nil || time.Since(fi.ModTime()) < time.Minute {
		return
	}
	f, err := os.Open(p)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		os.Remove(p)
	}
}

// holders returns the info of the living holders of lock name, removing
// the files of dead ones. With none, the holder is one that writes its
// info into the lock file itself (a release that knew only the exclusive
// lock), or one between its flock and its holder file; lockFile "" asks
// for the sweep alone.
func holders(dir, name, lockFile string) [][]byte {
	ents, _ := os.ReadDir(dir)
	var out [][]byte
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-holder-") {
			removeDeadTemp(filepath.Join(dir, e.Name()))
			continue
		}
		if !strings.HasPrefix(e.Name(), name+".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
			os.Remove(p) // its holder died
			f.Close()
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, b)
	}
	if len(out) == 0 && lockFile != "" {
		b, _ := os.ReadFile(lockFile)
		out = append(out, b)
	}
	return out
}
