package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/zeebo/blake3"
)

const (
	magic      = "RCLCACH1"
	sumLen     = 32
	trailerLen = int64(sumLen + len(magic))

	// DefaultMaxBytes is the bound of a cache whose Options give none.
	DefaultMaxBytes = 2 << 30
	// touchEvery: a file's use is recorded (its modification time set)
	// at most this often per process, so a walk reading a tree pack
	// thousands of times costs one syscall, not thousands.
	touchEvery = time.Minute
	// staleTemp: a temporary copy older than this was left by a process
	// that died while writing it.
	staleTemp = time.Hour
	tmpPrefix = ".tmp-"
)

// kinds are the file types a cache keeps, with their directories.
var kinds = []backend.FileType{backend.Index, backend.Points, backend.Packs}

// Options configure a cache.
type Options struct {
	// MaxBytes bounds the bytes of the cache directory (DefaultMaxBytes
	// when 0). A file larger than an eighth of it is not kept.
	MaxBytes int64
}

// Backend is a remote backend with local copies of what opening and
// browsing a store read again and again (see the package comment). It is
// safe for concurrent use.
type Backend struct {
	remote backend.Backend
	dir    string
	max    int64

	mu       sync.Mutex
	check    func(backend.Handle, []byte) error
	keep     map[string]bool // names of the packs worth a copy
	verified map[string]fileKey
	touched  map[string]time.Time
	fetching map[backend.Handle]*fetch
	total    int64 // the directory's bytes, as far as this process knows
	added    int64 // bytes this process added since it last scanned

	evictMu  sync.Mutex
	warnOnce sync.Once
}

// fileKey identifies one local copy: a copy replaced by another process is
// another inode, and is checked again.
type fileKey struct {
	ino  uint64
	size int64
}

// fetch is one whole-file download that concurrent readers share.
type fetch struct {
	done chan struct{}
	data []byte
	err  error
}

// errPassThrough: the file is not kept (too large); read the remote.
var errPassThrough = errors.New("not kept")

// New returns a cache of remote's files in dir, created when missing.
// The cache owns remote from here on (Close closes it). dir serves one
// store: point every store at its own.
func New(remote backend.Backend, dir string, o Options) (*Backend, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	b := &Backend{remote: remote, dir: dir, max: o.MaxBytes, keep: map[string]bool{}, verified: map[string]fileKey{}, touched: map[string]time.Time{}, fetching: map[backend.Handle]*fetch{}}
	for _, t := range kinds {
		if err := os.MkdirAll(b.typeDir(t), 0o700); err != nil {
			return nil, fmt.Errorf("create the cache of %s: %w; check the permissions of %s or choose another cache directory", remote.Location(), err, dir)
		}
	}
	files, err := b.scan(true)
	if err != nil {
		return nil, fmt.Errorf("open the cache of %s: %w", remote.Location(), err)
	}
	for _, f := range files {
		b.total += f.size
	}
	if b.total > b.max {
		b.evict()
	}
	return b, nil
}

// CheckNamesWith tells the cache how a file's bytes are checked against
// its name (the store calls it as it opens); until it is called nothing is
// kept. check returns nil for bytes that match their name, and for files
// it does not name by content an error, so that they are not kept.
func (b *Backend) CheckNamesWith(check func(h backend.Handle, data []byte) error) {
	b.mu.Lock()
	b.check = check
	b.mu.Unlock()
}

// Keep marks a pack worth a local copy (the store calls it for packs of
// tree blobs): its next Load fetches it whole, and a Save of it is written
// locally too. It costs nothing when the pack is kept already.
func (b *Backend) Keep(h backend.Handle) {
	if h.Type != backend.Packs || h.Valid() != nil {
		return
	}
	b.mu.Lock()
	b.keep[h.Name] = true
	b.mu.Unlock()
}

// Connections is the remote's parallelism (what the store's writer sizes
// its uploads by), 0 when the remote does not say.
func (b *Backend) Connections() int {
	if c, ok := b.remote.(interface{ Connections() int }); ok {
		return c.Connections()
	}
	return 0
}

// Remote returns the backend the cache copies.
func (b *Backend) Remote() backend.Backend { return b.remote }

// Location names the remote: the cache is not a place of its own.
func (b *Backend) Location() string { return b.remote.Location() }

// cached reports whether h is a file the cache may hold.
func (b *Backend) cached(h backend.Handle) bool {
	if h.Valid() != nil || !slices.Contains(kinds, h.Type) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.check != nil
}

func (b *Backend) keeps(h backend.Handle) bool {
	if h.Type != backend.Packs {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keep[h.Name]
}

func (b *Backend) typeDir(t backend.FileType) string { return filepath.Join(b.dir, t.String()) }

func (b *Backend) path(h backend.Handle) string { return filepath.Join(b.typeDir(h.Type), h.Name) }

// List lists the remote's files, and drops the local copies of files of
// type t it does not list.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(name string, size int64) error) error {
	seen := b.seenSet(t)
	err := b.remote.List(ctx, t, func(name string, size int64) error {
		if seen != nil {
			seen[name] = true
		}
		return fn(name, size)
	})
	if err == nil && seen != nil {
		b.dropUnlisted(t, seen)
	}
	return err
}

// ListNames is List without sizes, as cheap as the remote makes it.
func (b *Backend) ListNames(ctx context.Context, t backend.FileType, fn func(name string) error) error {
	seen := b.seenSet(t)
	err := backend.ListNames(ctx, b.remote, t, func(name string) error {
		if seen != nil {
			seen[name] = true
		}
		return fn(name)
	})
	if err == nil && seen != nil {
		b.dropUnlisted(t, seen)
	}
	return err
}

// seenSet returns a set to collect a listing of t in, or nil when no copy
// of a file of t is kept (a listing of many packs then costs no memory).
func (b *Backend) seenSet(t backend.FileType) map[string]bool {
	if !slices.Contains(kinds, t) {
		return nil
	}
	d, err := os.Open(b.typeDir(t))
	if err != nil {
		return nil
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(64)
		for _, n := range names {
			if !strings.HasPrefix(n, ".") {
				return map[string]bool{}
			}
		}
		if err != nil {
			return nil
		}
	}
}

// dropUnlisted removes the copies of files the remote did not list. A
// file saved while the listing ran may lose its copy: it is fetched again.
func (b *Backend) dropUnlisted(t backend.FileType, listed map[string]bool) {
	names, err := readNames(b.typeDir(t))
	if err != nil {
		return
	}
	for _, n := range names {
		if !strings.HasPrefix(n, ".") && !listed[n] {
			b.drop(backend.Handle{Type: t, Name: n})
		}
	}
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// drop removes the local copy of h, if any.
func (b *Backend) drop(h backend.Handle) {
	p := b.path(h)
	st, err := os.Stat(p)
	if err != nil {
		return
	}
	if os.Remove(p) == nil {
		b.mu.Lock()
		b.total -= st.Size()
		delete(b.verified, p)
		delete(b.touched, p)
		b.mu.Unlock()
	}
}

// Stat asks the remote: a local copy says nothing of whether the file is
// still there, which is what a Stat is for.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (int64, error) {
	return b.remote.Stat(ctx, h)
}

// Load reads a range of a file: from its local copy when there is one,
// else from the remote, fetching a file worth keeping whole first.
func (b *Backend) Load(ctx context.Context, h backend.Handle, off int64, length int, buf []byte) ([]byte, error) {
	if !b.cached(h) || off < 0 {
		return b.remote.Load(ctx, h, off, length, buf)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %v: %w", h, err)
	}
	if f, size, ok := b.openLocal(h); ok {
		out, err := readRange(f, size, off, length, buf)
		f.Close()
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, err
		}
		// The local disk failed: the remote still has the file.
		b.drop(h)
	}
	if !b.keeps(h) {
		return b.remote.Load(ctx, h, off, length, buf)
	}
	data, err := b.fetch(ctx, h)
	if errors.Is(err, errPassThrough) {
		return b.remote.Load(ctx, h, off, length, buf)
	}
	if err != nil {
		return nil, err
	}
	return readRange(bytes.NewReader(data), int64(len(data)), off, length, buf)
}

// readRange reads length bytes at off (length < 0: to the end) of a file
// of size bytes into buf's storage, with the contract's short read.
func readRange(r io.ReaderAt, size, off int64, length int, buf []byte) ([]byte, error) {
	n := int64(length)
	if length < 0 {
		n = max(size-off, 0)
	}
	have := min(n, max(size-off, 0))
	if int64(cap(buf)) < have {
		buf = make([]byte, have)
	}
	buf = buf[:have]
	if have > 0 {
		if _, err := r.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && off+have == size) {
			return nil, err
		}
	}
	if have < n {
		return buf, io.ErrUnexpectedEOF
	}
	return buf, nil
}

// openLocal opens the local copy of h, checked against its own hash the
// first time this process reads it, and returns it with the size of its
// content. A copy that fails is removed.
func (b *Backend) openLocal(h backend.Handle) (*os.File, int64, bool) {
	p := b.path(h)
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, false
	}
	st, err := f.Stat()
	if err != nil || st.Size() < trailerLen {
		f.Close()
		b.drop(h)
		return nil, 0, false
	}
	key := keyOf(st)
	b.mu.Lock()
	ok := b.verified[p] == key
	last := b.touched[p]
	b.mu.Unlock()
	if !ok {
		if !verifyFile(f, st.Size()) {
			f.Close()
			b.drop(h)
			return nil, 0, false
		}
		b.mu.Lock()
		b.verified[p] = key
		b.mu.Unlock()
	}
	if now := time.Now(); now.Sub(last) >= touchEvery {
		// The least recently used go first (evict): this is the use.
		os.Chtimes(p, now, now)
		b.mu.Lock()
		b.touched[p] = now
		b.mu.Unlock()
	}
	return f, st.Size() - trailerLen, true
}

func keyOf(st fs.FileInfo) fileKey {
	key := fileKey{size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		key.ino = sys.Ino
	}
	return key
}

func statKey(p string) (fileKey, error) {
	st, err := os.Stat(p)
	if err != nil {
		return fileKey{}, err
	}
	return keyOf(st), nil
}

// verifyFile checks a local copy's content against the hash its trailer
// holds.
func verifyFile(f *os.File, size int64) bool {
	var tr [sumLen + len(magic)]byte
	if _, err := f.ReadAt(tr[:], size-trailerLen); err != nil || string(tr[sumLen:]) != magic {
		return false
	}
	h := blake3.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size-trailerLen)); err != nil {
		return false
	}
	return bytes.Equal(h.Sum(nil), tr[:sumLen])
}

// fetch downloads the whole of h once for all concurrent readers, and
// keeps a copy when its bytes match its name. Bytes that do not are
// returned all the same: they are what the remote holds, and the store's
// own checks say what is wrong with them.
func (b *Backend) fetch(ctx context.Context, h backend.Handle) ([]byte, error) {
	b.mu.Lock()
	if f, ok := b.fetching[h]; ok {
		b.mu.Unlock()
		select {
		case <-f.done:
			return f.data, f.err
		case <-ctx.Done():
			return nil, fmt.Errorf("load %v: %w", h, ctx.Err())
		}
	}
	f := &fetch{done: make(chan struct{})}
	b.fetching[h] = f
	check := b.check
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.fetching, h)
		b.mu.Unlock()
		close(f.done)
	}()
	size, err := b.remote.Stat(ctx, h)
	if err != nil {
		f.err = err
		return nil, err
	}
	if size > b.max/8 {
		f.err = errPassThrough
		return nil, f.err
	}
	data, err := b.remote.Load(ctx, h, 0, -1, make([]byte, 0, size))
	if err != nil {
		f.err = err
		return nil, err
	}
	if check(h, data) == nil {
		b.store(h, data)
	}
	f.data = data
	return data, nil
}

// Save saves to the remote, then keeps a copy of a file worth keeping.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := b.remote.Save(ctx, h, data); err != nil {
		return err
	}
	if !b.cached(h) {
		return nil
	}
	b.mu.Lock()
	check := b.check
	b.mu.Unlock()
	switch {
	case check(h, data) != nil:
		b.drop(h) // replaced by bytes its name does not match
	case b.keeps(h) && int64(len(data)) <= b.max/8:
		b.store(h, data)
	}
	return nil
}

// store writes a local copy of h, whole or not at all, and keeps the
// directory within its bound. A failure to write costs only the copy.
func (b *Backend) store(h backend.Handle, data []byte) {
	sum := blake3.Sum256(data)
	err := func() error {
		tmp, err := os.CreateTemp(b.typeDir(h.Type), tmpPrefix+"*")
		if err != nil {
			return err
		}
		_, err = tmp.Write(data)
		if err == nil {
			_, err = tmp.Write(append(sum[:], magic...))
		}
		// No fsync: a copy torn by a power cut fails its check and is
		// fetched again.
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), b.path(h))
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
		return err
	}()
	if err != nil {
		b.warnOnce.Do(func() {
			fmt.Fprintf(os.Stderr, "recall: cache %s: %v (reads go to %s; free space there or choose another cache directory)\n", b.dir, err, b.remote.Location())
		})
		return
	}
	p := b.path(h)
	key, kerr := statKey(p)
	b.mu.Lock()
	b.total += int64(len(data)) + trailerLen
	b.added += int64(len(data)) + trailerLen
	if kerr == nil && key.size == int64(len(data))+trailerLen {
		b.verified[p] = key // written from checked bytes just now
	}
	b.touched[p] = time.Now()
	// Other processes add copies too, which only a scan sees: one every
	// sixteenth of the bound keeps the sum of all within it.
	over := b.total > b.max || b.added > b.max/16
	b.mu.Unlock()
	if over {
		b.evict()
	}
}

type cacheFile struct {
	path  string
	size  int64
	mtime time.Time
}

// scan lists the copies in the directory; with clean, it removes the
// temporary files processes that died left.
func (b *Backend) scan(clean bool) ([]cacheFile, error) {
	var out []cacheFile
	for _, t := range kinds {
		ents, err := os.ReadDir(b.typeDir(t))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			p := filepath.Join(b.typeDir(t), e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				if clean && strings.HasPrefix(e.Name(), tmpPrefix) && time.Since(info.ModTime()) > staleTemp {
					os.Remove(p)
				}
				continue
			}
			out = append(out, cacheFile{path: p, size: info.Size(), mtime: info.ModTime()})
		}
	}
	return out, nil
}

// evict removes the least recently used copies, when the directory is
// over its bound, until it is within seven eighths of it (so that the
// next few copies do not each cost a scan). It scans the directory rather
// than trusting its own count: other processes add and remove copies too.
func (b *Backend) evict() {
	b.evictMu.Lock()
	defer b.evictMu.Unlock()
	files, err := b.scan(false)
	if err != nil {
		return
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	var removed []string
	if total > b.max {
		slices.SortFunc(files, func(x, y cacheFile) int { return x.mtime.Compare(y.mtime) })
		for _, f := range files {
			if total <= b.max-b.max/8 {
				break
			}
			if err := os.Remove(f.path); err == nil || errors.Is(err, fs.ErrNotExist) {
				total -= f.size
				removed = append(removed, f.path)
			}
		}
	}
	b.mu.Lock()
	b.total, b.added = total, 0
	for _, p := range removed {
		delete(b.verified, p) // a new copy there may reuse the inode
		delete(b.touched, p)
	}
	b.mu.Unlock()
}

// Remove removes the remote file, then its local copy.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	err := b.remote.Remove(ctx, h)
	if (err == nil || errors.Is(err, backend.ErrNotExist)) && b.cached(h) {
		b.drop(h)
	}
	return err
}

// Lock is the remote's.
func (b *Backend) Lock(ctx context.Context, name string, mode backend.LockMode, info []byte) (backend.Unlocker, error) {
	return b.remote.Lock(ctx, name, mode, info)
}

// Warm asks the remote.
func (b *Backend) Warm(ctx context.Context, hs []backend.Handle) error {
	return backend.Warm(ctx, b.remote, hs)
}

// OpenFile opens a file for reads in place (a consolidated index file):
// its local copy, fetched first when it is worth keeping, else the
// remote's file.
func (b *Backend) OpenFile(ctx context.Context, h backend.Handle) (backend.ReadAtCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("open %v: %w", h, err)
	}
	if b.cached(h) && b.keeps(h) {
		f, size, ok := b.openLocal(h)
		if !ok {
			if _, err := b.fetch(ctx, h); err != nil && !errors.Is(err, errPassThrough) {
				return nil, 0, err
			}
			f, size, ok = b.openLocal(h)
		}
		if ok {
			return sectionFile{io.NewSectionReader(f, 0, size), f}, size, nil
		}
	}
	if fo, ok := b.remote.(backend.FileOpener); ok {
		return fo.OpenFile(ctx, h)
	}
	size, err := b.remote.Stat(ctx, h)
	if err != nil {
		return nil, 0, err
	}
	return remoteFile{b.remote, h}, size, nil
}

// sectionFile is a local copy without its trailer.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s sectionFile) Close() error { return s.f.Close() }

// remoteFile reads a file of the remote a Load per read.
type remoteFile struct {
	be backend.Backend
	h  backend.Handle
}

func (r remoteFile) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.be.Load(context.Background(), r.h, off, len(p), p[:0])
	n := copy(p, b)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (remoteFile) Close() error { return nil }

// Close closes the remote.
func (b *Backend) Close() error { return b.remote.Close() }

var (
	_ backend.Backend    = (*Backend)(nil)
	_ backend.NameLister = (*Backend)(nil)
	_ backend.Warmer     = (*Backend)(nil)
	_ backend.FileOpener = (*Backend)(nil)
)
