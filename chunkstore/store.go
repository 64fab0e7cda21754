package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// Store is an open chunk store: read access to blobs, packs and points.
// Writing goes through a Writer (NewWriter), which needs the store lock.
// A Store is safe for concurrent use.
type Store struct {
	dir  string
	cfg  *Config
	keys *keys
	pol  chunker.Pol
	cdc  *cdcTables
	idx  *index
	zdec *zstd.Decoder
	zenc *zstd.Encoder

	fmu      sync.Mutex
	files    map[uint32]*os.File
	dfiles   map[uint32]*os.File // O_DIRECT descriptors
	noDirect atomic.Bool         // the file system refused O_DIRECT
	loading  atomic.Int32        // O_DIRECT blob reads in progress (readPlain)
	loadedI  map[string]bool     // index files already loaded
	orphans  []packRecord        // packs indexed from their headers, no index file yet
}

// OpenOptions configure Open.
type OpenOptions struct {
	Password string
}

// Open opens the store in dir, unlocking its key and loading its index.
// Nothing is written.
func Open(dir string, o OpenOptions) (*Store, error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, err
	}
	k, pol, err := cfg.unlock(o.Password)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	cdc, err := newCDCTables(pol)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{dir: dir, cfg: cfg, keys: k, pol: pol, cdc: cdc, idx: newIndex(), files: map[uint32]*os.File{}, dfiles: map[uint32]*os.File{}, loadedI: map[string]bool{}}
	if err := checkChunkBounds(int(cfg.MinChunk), int(cfg.MaxChunk), s.averageBits()); err != nil {
		return nil, fmt.Errorf("open store %s: config: %w", dir, err)
	}
	// Frames' own checksums (xxhash) are not checked: every decoded blob
	// is checked against its id, or was authenticated before decoding,
	// which is stronger, so the checksum only cost time on every read.
	// No blob decodes to more than a writer stores (SaveBlob).
	s.zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)*2), zstd.WithDecoderMaxMemory(maxBlobLen), zstd.IgnoreChecksum(true))
	s.zenc = newZstdEncoder()
	if err := s.Refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close releases open pack files.
func (s *Store) Close() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for _, m := range []map[uint32]*os.File{s.files, s.dfiles} {
		for n, f := range m {
			f.Close()
			delete(m, n)
		}
	}
	return nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// Config returns the store configuration.
func (s *Store) Config() *Config { return s.cfg }

// Encrypted reports whether blobs are encrypted at rest.
func (s *Store) Encrypted() bool { return s.keys.aead != nil }

// Polynomial returns the store's chunker polynomial.
func (s *Store) Polynomial() chunker.Pol { return s.pol }

// MinChunk and MaxChunk are the store's chunk size bounds.
func (s *Store) MinChunk() int { return int(s.cfg.MinChunk) }

// MaxChunk is the largest chunk the store's chunker makes.
func (s *Store) MaxChunk() int { return int(s.cfg.MaxChunk) }

// NewChunker returns a chunker over rd with the store's parameters. Every
// chunker of a store must come from here, or chunks stop deduplicating.
// Reuse a chunker with Reset: each holds a buffer of 4 MiB or more.
func (s *Store) NewChunker(rd io.Reader) *Chunker {
	c, err := newChunker(s.cdc, int(s.cfg.MinChunk), int(s.cfg.MaxChunk), s.averageBits(), rd)
	if err != nil {
		panic(err) // Open checked the parameters
	}
	return c
}

func (s *Store) averageBits() int {
	if s.cfg.AverageBits == 0 {
		return 20 // restic's default, which stores without the field use
	}
	return s.cfg.AverageBits
}

// Hash returns the id of data in this store.
func (s *Store) Hash(data []byte) ID { return s.keys.hash(data) }

// Has reports whether a blob is indexed.
func (s *Store) Has(id ID) bool {
	_, ok := s.idx.lookup(id)
	return ok
}

// BlobCount returns the number of indexed blobs.
func (s *Store) BlobCount() int {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	return s.idx.count
}

func (s *Store) packPath(id ID) string {
	h := id.String()
	return filepath.Join(s.dir, "packs", h[:2], h)
}

// Refresh loads index files written since the last call and indexes packs
// that no index file covers (left by an interrupted backup); the next writer
// records those in an index file (Lock.NewWriter).
func (s *Store) Refresh() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "index"))
	if err != nil {
		return fmt.Errorf("list index: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		s.fmu.Lock()
		seen := s.loadedI[name]
		s.fmu.Unlock()
		if strings.HasPrefix(name, ".") || seen {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "index", name))
		if err != nil {
			return fmt.Errorf("read index file %s: %w", name, err)
		}
		packs, err := decodeIndexFile(b, s.keys)
		if err != nil {
			// A damaged index file is only a cache: the packs it covers are
			// re-read below from their own headers.
			fmt.Fprintf(os.Stderr, "recall: index file %s: %v (rebuilding from pack headers)\n", name, err)
			continue
		}
		for _, p := range packs {
			s.idx.addPack(p.id, p.entries)
		}
		s.fmu.Lock()
		s.loadedI[name] = true
		s.fmu.Unlock()
	}
	var orphans []packRecord
	err = s.ListPacks(func(id ID, size int64) error {
		if s.idx.hasPack(id) {
			return nil
		}
		entries, err := s.ReadPackHeader(id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "recall: pack %s: %v (ignored; run 'recall verify')\n", id, err)
			return nil
		}
		s.idx.addPack(id, entries)
		orphans = append(orphans, packRecord{id: id, entries: entries})
		return nil
	})
	if err != nil {
		return err
	}
	s.idx.compact()
	s.fmu.Lock()
	s.orphans = append(s.orphans, orphans...)
	s.fmu.Unlock()
	return nil
}

// HasPackFile reports whether a pack's file is present.
func (s *Store) HasPackFile(id ID) bool {
	_, err := os.Stat(s.packPath(id))
	return err == nil
}

// ListPacks calls fn for every pack file in the store.
func (s *Store) ListPacks(fn func(id ID, size int64) error) error {
	root := filepath.Join(s.dir, "packs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, sub.Name()))
		if err != nil {
			return fmt.Errorf("list packs: %w", err)
		}
		for _, e := range ents {
			id, err := ParseID(e.Name())
			if err != nil {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if err := fn(id, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadPackHeader reads and decodes the header of one pack.
func (s *Store) ReadPackHeader(id ID) ([]PackEntry, error) {
	f, err := os.Open(s.packPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < int64(packTrailerLen) {
		return nil, fmt.Errorf("%w: pack too short", ErrCorrupt)
	}
	tr := make([]byte, packTrailerLen)
	if _, err := f.ReadAt(tr, st.Size()-int64(packTrailerLen)); err != nil {
		return nil, err
	}
	hl, err := packHeaderLength(tr)
	if err != nil {
		return nil, err
	}
	if int64(hl) > st.Size()-int64(packTrailerLen) {
		return nil, fmt.Errorf("%w: pack header length", ErrCorrupt)
	}
	hdr := make([]byte, hl)
	if _, err := f.ReadAt(hdr, st.Size()-int64(packTrailerLen)-int64(hl)); err != nil {
		return nil, err
	}
	return decodePackHeader(hdr, s.keys, st.Size())
}

func (s *Store) packFile(n uint32) (*os.File, error) { return s.openPack(s.files, n, 0) }

// directPackFile returns an O_DIRECT descriptor of pack n, or nil when the
// file system does not support it.
func (s *Store) directPackFile(n uint32) *os.File {
	if s.noDirect.Load() {
		return nil
	}
	f, err := s.openPack(s.dfiles, n, unix.O_DIRECT)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			s.noDirect.Store(true)
		}
		return nil
	}
	return f
}

func (s *Store) openPack(m map[uint32]*os.File, n uint32, flags int) (*os.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if f, ok := m[n]; ok {
		return f, nil
	}
	f, err := os.OpenFile(s.packPath(s.idx.packID(n)), os.O_RDONLY|flags, 0)
	if err != nil {
		return nil, err
	}
	if len(m) >= 2048 {
		// Keep the descriptor table bounded; a read in progress on an
		// evicted file finishes before the descriptor really closes.
		for k, old := range m {
			delete(m, k)
			go func() { old.Close() }()
			break
		}
	}
	m[n] = f
	return f, nil
}

// BlobError says which blob of which pack could not be read.
type BlobError struct {
	ID   ID
	Pack ID
	Err  error
}

func (e *BlobError) Error() string {
	if e.Pack.IsZero() {
		return fmt.Sprintf("blob %s: %v", e.ID.Short(), e.Err)
	}
	return fmt.Sprintf("blob %s in pack %s: %v", e.ID.Short(), e.Pack, e.Err)
}

func (e *BlobError) Unwrap() error { return e.Err }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2<<20); return &b }}

// LoadBlob reads, authenticates, decompresses and re-hashes one blob and
// returns its plaintext, in dst's storage when it is large enough (not
// necessarily at its start: plaintext blobs are read with O_DIRECT into an
// aligned window of dst). The caller owns the result. The
// returned bytes are always the blob whose id is id, or an error
// (ErrNotFound, ErrCorrupt wrapped in *BlobError).
func (s *Store) LoadBlob(id ID, dst []byte) ([]byte, error) {
	l, ok := s.idx.lookup(id)
	if !ok {
		return nil, &BlobError{ID: id, Err: ErrNotFound}
	}
	packID := s.idx.packID(l.pack)
	fail := func(err error) ([]byte, error) { return nil, &BlobError{ID: id, Pack: packID, Err: err} }
	if s.keys.aead == nil && !l.compressed() {
		// Plaintext, uncompressed: read straight into the result,
		// hashing as the pieces arrive.
		raw, sum, err := s.readPlain(l, dst)
		if err != nil {
			return fail(err)
		}
		if sum != id {
			return fail(errMismatch)
		}
		return raw, nil
	}
	f, err := s.packFile(l.pack)
	if err != nil {
		return fail(err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	raw, err := readAt(f, int64(l.off), int(l.length()), *bp)
	if err != nil {
		return fail(err)
	}
	*bp = raw[:0]
	out, err := s.decodeBlob(id, raw, l.compressed(), dst)
	if err != nil {
		return fail(err)
	}
	return out, nil
}

// readPlain reads a stored-as-is blob into dst's storage, and hashes it:
// large ones with O_DIRECT where the file system has it, the rest through
// the page cache.
func (s *Store) readPlain(l loc, dst []byte) ([]byte, ID, error) {
	if l.length() >= directMin {
		if df := s.directPackFile(l.pack); df != nil {
			// A lone read (a random read through the mount) is split
			// so hashing overlaps the disk and uses both cores; with
			// others in flight (a restore, a prefetching reader) those
			// are busy anyway and whole reads are cheaper for the disk.
			split := s.loading.Add(1) == 1
			defer s.loading.Add(-1)
			return readDirect(df, int64(l.off), int(l.length()), dst, split)
		}
	}
	f, err := s.packFile(l.pack)
	if err != nil {
		return nil, ID{}, err
	}
	b, err := readAt(f, int64(l.off), int(l.length()), dst)
	if err != nil {
		return nil, ID{}, err
	}
	return b, blake3.Sum256(b), nil
}

// readAt reads n bytes at off into buf's storage (allocating when it is
// too small).
func readAt(f *os.File, off int64, n int, buf []byte) ([]byte, error) {
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	got, err := f.ReadAt(buf, off)
	if err := shortRead(got, n, err); err != nil {
		return nil, err
	}
	return buf, nil
}

// checkPlain checks a plaintext blob against its id: in a plaintext store
// the id is the only integrity check there is.
func checkPlain(id ID, data []byte) error {
	if blake3.Sum256(data) != id {
		return errMismatch
	}
	return nil
}

var errMismatch = fmt.Errorf("%w: content does not match its id", ErrCorrupt)

// decodeBlob turns stored bytes into plaintext and checks the id.
func (s *Store) decodeBlob(id ID, stored []byte, compressed bool, dst []byte) ([]byte, error) {
	data := stored
	if s.keys.aead != nil {
		var err error
		// Decrypted in place; too short to hold a nonce, stored cannot be
		// sliced for it (and could not be authentic anyway).
		if len(stored) < s.keys.aead.NonceSize() {
			err = ErrCorrupt
		} else {
			data, err = open(s.keys.aead, stored[s.keys.aead.NonceSize():s.keys.aead.NonceSize()], stored, id[:])
		}
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
		}
	}
	var out []byte
	if compressed {
		err := checkZstdSizes(data)
		if err == nil {
			out, err = s.zdec.DecodeAll(data, dst[:0])
		}
		if err != nil {
			return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
		}
	} else {
		out = append(dst[:0], data...)
	}
	if s.keys.aead == nil {
		if err := checkPlain(id, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckPack reads a whole pack, checks that its content hashes to its
// name, and decodes every blob. It returns the header entries (nil if the
// header itself is unreadable) and the ids of blobs that fail.
func (s *Store) CheckPack(id ID) (entries []PackEntry, bad []ID, err error) {
	b, err := os.ReadFile(s.packPath(id))
	if err != nil {
		return nil, nil, err
	}
	if len(b) < packTrailerLen {
		return nil, nil, fmt.Errorf("%w: pack too short", ErrCorrupt)
	}
	hl, err := packHeaderLength(b[len(b)-packTrailerLen:])
	if err != nil {
		return nil, nil, err
	}
	if hl > len(b)-packTrailerLen {
		return nil, nil, fmt.Errorf("%w: pack header length", ErrCorrupt)
	}
	var fileErr error
	if packName(b[len(b)-packTrailerLen-hl:]) != id {
		fileErr = fmt.Errorf("%w: pack header does not match the pack's name", ErrCorrupt)
	}
	entries, err = decodePackHeader(b[len(b)-packTrailerLen-hl:len(b)-packTrailerLen], s.keys, int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	var buf []byte
	for _, e := range entries {
		out, derr := s.decodeBlob(e.ID, b[e.Offset:e.Offset+e.Length], e.Comp == compZstd, buf)
		if derr == nil && s.keys.aead != nil && s.keys.hash(out) != e.ID {
			derr = ErrCorrupt
		}
		if derr != nil {
			bad = append(bad, e.ID)
		}
		buf = out
	}
	return entries, bad, fileErr
}

// PackOf returns the pack that holds a blob.
func (s *Store) PackOf(id ID) (ID, bool) {
	l, ok := s.idx.lookup(id)
	if !ok {
		return ID{}, false
	}
	return s.idx.packID(l.pack), true
}

// Points: small immutable manifests, named by the hash of their stored
// bytes, encrypted like blobs in an encrypted store.

// SavePoint durably stores a point manifest and returns its id.
func (s *Store) SavePoint(manifest []byte) (ID, error) {
	stored := manifest
	if s.keys.aead != nil {
		stored = seal(s.keys.aead, nil, manifest, []byte("point"))
	}
	id := ID(blake3.Sum256(stored))
	if err := writeFileAtomic(filepath.Join(s.dir, "points"), id.String(), stored); err != nil {
		return ID{}, fmt.Errorf("save recovery point: %w", err)
	}
	return id, nil
}

// LoadPoint reads a point manifest.
func (s *Store) LoadPoint(id ID) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "points", id.String()))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("point %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if ID(blake3.Sum256(b)) != id {
		return nil, fmt.Errorf("point %s: %w", id, ErrCorrupt)
	}
	if s.keys.aead != nil {
		return open(s.keys.aead, nil, b, []byte("point"))
	}
	return b, nil
}

// ListPoints returns the ids of all point manifests, sorted.
func (s *Store) ListPoints() ([]ID, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "points"))
	if err != nil {
		return nil, fmt.Errorf("list points: %w", err)
	}
	var ids []ID
	for _, e := range ents {
		if id, err := ParseID(e.Name()); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	return ids, nil
}

// RemovePoint deletes a point manifest. Its blobs stay until pruned.
func (s *Store) RemovePoint(id ID) error {
	p := filepath.Join(s.dir, "points", id.String())
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("point %s: %w", id, ErrNotFound)
		}
		return err
	}
	return syncDir(filepath.Join(s.dir, "points"))
}
