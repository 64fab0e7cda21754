package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/procs"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// PackTargetSize is the size at which a pack is closed.
var PackTargetSize = 16 << 20

// indexEvery bounds how many packs one index file covers.
const indexEvery = 256

// indexEveryBlobs bounds how many blobs the packs waiting for their index
// file hold: the writer keeps their entries (and builds the file whole)
// until then, which with small packs of small blobs (a collection
// rewriting) would otherwise grow with the number of blobs written.
const indexEveryBlobs = 1 << 13

// Writer adds blobs to the store. It is created by Lock.NewWriter and is
// safe for concurrent use: SaveBlob compresses and encrypts in the calling
// goroutine and only appending to the open pack is serialised.
type Writer struct {
	s       *Store
	comp    Compression // codec of new blobs
	tag     string      // the session's temp tag (backend.Tagger), "" for none
	journal string      // the journal tag of its packs (journal.go), "" for none
	// lost, when set, says (non-nil) that the lock the writer was made
	// under is lost: it writes nothing more (Lock.Lost).
	lost func() error

	mu      sync.Mutex
	pending map[ID]struct{} // saved in this session, not yet in the index
	open    [3]*packBuilder
	done    []packRecord // finished packs not yet covered by an index file
	// doneBlobs is the number of entries in done.
	doneBlobs int
	written   []ID // every pack this writer finished
	err       error

	finishing sync.WaitGroup
	sem       chan struct{} // bounds packs being finished at once
	// scratch keeps SaveBlob's buffers for compressed and sealed bytes
	// (see scratchBuf).
	scratch chan *[]byte

	statMu                  sync.Mutex
	newBlobs, newBytes, raw int64
}

type packBuilder struct {
	f       backend.FileWriter
	size    int64
	entries []PackEntry
}

// newWriter returns a writer whose packs are built under the temp tag;
// the caller holds the store lock, and sets the writer's journal tag (a
// writer without one, in tests, records no pack).
func (s *Store) newWriter(tag string) *Writer {
	return &Writer{s: s, comp: s.cfg.compression(), tag: tag, pending: map[ID]struct{}{}, sem: make(chan struct{}, s.uploads()),
		scratch: make(chan *[]byte, 4*procs.CPUs())}
}

// scratchBuf returns a buffer for a blob's compressed or sealed bytes,
// and putScratch gives it back.
//
// The writer keeps them itself, not in a sync.Pool: every garbage
// collection empties a pool, and a backup collects every few tens of
// milliseconds, so most buffers were allocated and zeroed afresh. That
// was 0.1-0.2 s of a 6 s CPU profile of the bench set's first backup.
// Kept here, at most as many as savers use at once (two per CPU, one
// each, two when sealing) outlive a use, and all go with the writer, so
// a long-lived process (a mount, the server between backups) holds none.
func (w *Writer) scratchBuf() *[]byte {
	select {
	case b := <-w.scratch:
		return b
	default:
		b := make([]byte, 0, 2<<20)
		return &b
	}
}

// scratchKeep is the largest buffer the writer keeps: one grown for a
// rare maximal chunk is let go.
const scratchKeep = 4 << 20

func (w *Writer) putScratch(b *[]byte) {
	if cap(*b) > scratchKeep {
		return
	}
	select {
	case w.scratch <- b:
	default:
	}
}

// uploads is how many packs a writer finishes at once. A backend that
// streams a pack to its own storage as blobs come (backend.Creator: the
// local disk) has little left to do at Commit (an fsync, a rename): two
// overlap that with filling the next. One that takes a pack whole at
// Commit (an object store: one PUT) gets as many as it has connections
// (an optional Connections method; backend/s3, and the cache over it):
// one PUT at a time is far from what a gateway takes. Each pack finishing
// is held in memory until its upload returns, in a buffer of the
// process's budget (membudget.go), which bounds them all together.
func (s *Store) uploads() int {
	if _, ok := s.be.(backend.Creator); ok {
		return 2
	}
	if c, ok := s.be.(interface{ Connections() int }); ok && c.Connections() > 2 {
		return c.Connections()
	}
	return 2
}

// SetCompression makes c the codec of the blobs this writer saves from
// now on, instead of the store's default. Call it before saving blobs
// from other goroutines. Choosing s2 makes a version 1 store version 2
// (config.go says why); the error is from writing its config.
func (w *Writer) SetCompression(c Compression) error {
	c, err := ParseCompression(string(c))
	if err != nil {
		return err
	}
	if c == CompressionS2 && w.s.cfg.Version < 2 {
		cfg := *w.s.cfg
		cfg.Version = 2
		if err := writeConfigFiles(w.s.be, &cfg); err != nil {
			return storeWriteError(w.s.Dir(), err)
		}
		w.s.cfg.Version = 2
	}
	w.comp = c
	return nil
}

// Compression returns the codec of the blobs this writer saves.
func (w *Writer) Compression() Compression { return w.comp }

// Stats reports what this writer added.
func (w *Writer) Stats() (blobs, storedBytes, rawBytes int64) {
	w.statMu.Lock()
	defer w.statMu.Unlock()
	return w.newBlobs, w.newBytes, w.raw
}

// StoredLen is the length blob id is stored with (as Stats counts it),
// once the store indexes it; false when it does not.
func (w *Writer) StoredLen(id ID) (int64, bool) {
	l, ok, _ := w.s.idx.lookup(id)
	return int64(l.length()), ok
}

// SaveBlob stores data under id unless the store has it. It reports
// whether the blob was new. data is not retained.
func (w *Writer) SaveBlob(t BlobType, id ID, data []byte) (bool, error) {
	if len(data) > maxBlobLen-64 {
		return false, fmt.Errorf("blob of %d bytes exceeds the %d byte limit", len(data), maxBlobLen-64)
	}
	if w.s.Has(id) {
		return false, nil
	}
	if err := w.checkLock(); err != nil {
		return false, err
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	if _, ok := w.pending[id]; ok {
		w.mu.Unlock()
		return false, nil
	}
	w.pending[id] = struct{}{}
	w.mu.Unlock()

	bp := w.scratchBuf()
	defer w.putScratch(bp)
	comp, payload := w.s.compressBlob(w.comp.code(), data, bp)
	var stored []byte
	if w.s.keys.aead != nil {
		ep := w.scratchBuf()
		defer w.putScratch(ep)
		stored = seal(w.s.keys.aead, (*ep)[:0], payload, id[:])
		*ep = stored
	} else {
		stored = payload
	}
	if err := w.appendBlob(t, id, comp, stored, len(data)); err != nil {
		w.mu.Lock()
		delete(w.pending, id)
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
		return false, err
	}
	w.statMu.Lock()
	w.newBlobs++
	w.newBytes += int64(len(stored))
	w.raw += int64(len(data))
	w.statMu.Unlock()
	return true, nil
}

// newZstdEncoder returns the encoder for blobs: zstd's fastest level, which
// on text still compresses ~3x and is the cheapest zstd there is. One
// encoder per CPU (internal/procs): a backup's savers (two per CPU) take
// turns at them; each keeps a history of twice the window.
//
// Frames carry no checksum: readers never checked it (every blob is
// checked against its id, or authenticated, which is stronger), and its
// xxhash was 1.5% of the CPU of a first backup of a /usr, where zstd is
// two thirds of it. Encoding a shared library in 1 MiB blobs, five
// interleaved pairs: 244-292 MB/s without against 218-283 MB/s with it.
// Frames written with one still decode (TestZstdChecksum).
func newZstdEncoder() *zstd.Encoder {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(procs.CPUs()), zstd.WithZeroFrames(true), zstd.WithWindowSize(zstdWindow), zstd.WithEncoderCRC(false))
	return e
}

// newZstdLitsEncoder is newZstdEncoder that codes the bytes of a blob in
// which it finds no match too (compress).
func newZstdLitsEncoder() *zstd.Encoder {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(procs.CPUs()), zstd.WithZeroFrames(true), zstd.WithWindowSize(zstdWindow), zstd.WithEncoderCRC(false), zstd.WithAllLitEntropyCompression(true))
	return e
}

func (s *Store) zencLits() *zstd.Encoder {
	s.zencLitsOnce.Do(func() { s.zencLitsEnc = newZstdLitsEncoder() })
	return s.zencLitsEnc
}

// zstdWindow is how far back a match may reach within a blob: 2 MiB, half
// of what the fastest level takes by default. The bench set and the
// small-file set are stored within 25 KB of 2.27 GB of the same size with
// it (a blob is compressed alone, and matches in text are near), and each
// encoder holds 4 MiB less. Frames carry their window; the decoder takes
// any up to maxBlobLen (doc.go).
const zstdWindow = 2 << 20

// compressBlob returns the code and bytes data is stored with: compressed
// with the codec of code (into *scratch's storage, which it may replace)
// when that pays, else data itself with compNone.
func (s *Store) compressBlob(code uint8, data []byte, scratch *[]byte) (uint8, []byte) {
	if code == compNone || len(data) < 64 || !worthCompressing(s, code, data, (*scratch)[:0]) {
		return compNone, data
	}
	c := s.compress(code, data, (*scratch)[:0])
	*scratch = c
	if len(c) < len(data)-len(data)/32 {
		return code, c
	}
	return compNone, data
}

// compress compresses data with the codec of code (zstd or s2) into the
// storage of dst, which must be empty, allocating when it is too small.
func (s *Store) compress(code uint8, data, dst []byte) []byte {
	if code == compS2 {
		return s2.Encode(dst, data)
	}
	c := s.zenc.EncodeAll(data, dst)
	if len(c) > len(data)-len(data)/8 && skewed(data) {
		// The fastest level tries no entropy coding where it finds no
		// match: text with few repeats of six bytes (a column of
		// numbers, hex, base64) was stored as it was, or nearly, where
		// coding its bytes too gives 1.3-2.5x. Tried again so, only
		// when the bytes are far from uniform: random data is not, and
		// pays nothing more.
		if again := s.zencLits().EncodeAll(data, nil); len(again) < len(c) {
			c = append(c[:0], again...)
		}
	}
	return c
}

// skewed reports whether the bytes of data, judged from its first 4 KiB,
// carry under 7 bits each (their order-0 entropy), so that coding them
// alone pays; random and compressed data carry about 8.
func skewed(data []byte) bool {
	sample := data[:min(len(data), 4<<10)]
	if len(sample) < 64 {
		return false
	}
	var hist [256]int
	for _, b := range sample {
		hist[b]++
	}
	n := float64(len(sample))
	bits := 0.0
	for _, c := range hist {
		if c > 0 {
			p := float64(c) / n
			bits -= p * math.Log2(p)
		}
	}
	return bits < 7
}

// worthCompressing tells whether compressing data with the codec of code
// is likely to pay. Blobs up to sampleMin are simply compressed: both
// codecs give up on incompressible input fast enough that a test would
// cost more than it saves. Larger ones test-compress a sample of
// sampleParts slices taken evenly across the blob, so incompressible data
// (media, archives, encrypted or random files) costs a few percent of a
// full attempt and compressible data pays ~2% extra.
func worthCompressing(s *Store, code uint8, data, scratch []byte) bool {
	if len(data) <= sampleMin {
		return true
	}
	sample := scratch[:0]
	step := len(data) / sampleParts
	for i := range sampleParts {
		sample = append(sample, data[i*step:i*step+samplePart]...)
	}
	c := s.compress(code, sample, sample[len(sample):])
	return len(c) < len(sample)-len(sample)/16
}

const (
	sampleMin   = 128 << 10
	samplePart  = 4 << 10
	sampleParts = 4
)

func (w *Writer) appendBlob(t BlobType, id ID, comp uint8, stored []byte, rawLen int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.err != nil {
			return w.err
		}
		p := w.open[t]
		if p != nil && !p.fits(len(stored)) {
			w.open[t] = nil
			w.finishAsync(p)
			continue
		}
		if p == nil {
			f, err := w.newPack(t, len(stored))
			if err != nil {
				return storeWriteError(w.s.Dir(), err)
			}
			if w.open[t] != nil || w.err != nil {
				// Another goroutine opened one while this one waited
				// for a buffer.
				f.Abort()
				continue
			}
			p = &packBuilder{f: f}
			w.open[t] = p
		}
		if _, err := p.f.Write(stored); err != nil {
			return storeWriteError(w.s.Dir(), err)
		}
		p.entries = append(p.entries, PackEntry{Type: t, Comp: comp, Offset: uint32(p.size), Length: uint32(len(stored)), RawLength: uint32(rawLen), ID: id})
		p.size += int64(len(stored))
		if p.size >= int64(PackTargetSize) {
			w.open[t] = nil
			w.finishAsync(p)
		}
		return nil
	}
}

// newPack returns the writer of a new pack of type t: the backend's own
// when it streams files as they are built (backend.Creator), else a
// memPack, whose buffer comes from the process's budget (membudget.go).
// The caller holds w.mu, which is released while the budget is waited
// for: the caller checks w.open again.
func (w *Writer) newPack(t BlobType, first int) (backend.FileWriter, error) {
	s := w.s
	if _, ok := s.be.(backend.Creator); ok {
		return backend.CreateSized(bg, s.be, backend.Packs, w.tag, int64(PackTargetSize))
	}
	// A blob larger than a pack (a tree of a huge directory) gets a
	// buffer of its own size, counted as such.
	size := max(s.packBufSize(), int64(first)+packHeaderMax(2))
	w.mu.Unlock()
	buf := objectMemory.takePack(size, func() { w.finishOpen(t) })
	w.mu.Lock()
	return &memPack{be: s.be, buf: buf, size: size}, nil
}

// finishOpen finishes the writer's open packs of types other than t: what
// a writer waiting for a pack buffer while no upload is on its way does,
// so that writers holding the budget in open packs never wait on each
// other (membudget.go).
func (w *Writer) finishOpen(t BlobType) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// w.open is read afresh each time: finishAsync may release w.mu.
	for u := range len(w.open) {
		if p := w.open[u]; p != nil && BlobType(u) != t {
			w.open[u] = nil
			w.finishAsync(p)
		}
	}
}

// packBufSize is the capacity of a memPack's buffer: a pack of the target
// size with room for its header, and never less than the largest blob
// and its header, so a blob always fits in an empty pack.
func (s *Store) packBufSize() int64 {
	return int64(max(PackTargetSize, s.MaxChunk()+blobSlack)) + 1<<20
}

// blobSlack bounds what a stored blob has beyond its chunk's bytes (an
// encrypted blob's nonce and tag).
const blobSlack = 4 << 10

// packHeaderMax bounds the header and trailer of a pack of n blobs, with
// the filler blob unlikeHidden may add.
func packHeaderMax(n int) int64 {
	return int64(5 + (n+1)*packEntrySize + 32 + 64 + packTrailerLen)
}

// fits reports whether a blob of n stored bytes may join the pack: a
// memPack is closed early rather than grown past its buffer, whose size
// the budget counts. An empty pack takes any blob.
func (p *packBuilder) fits(n int) bool {
	mp, ok := p.f.(*memPack)
	return !ok || len(p.entries) == 0 || p.size+int64(n)+packHeaderMax(len(p.entries)+1) <= int64(cap(*mp.buf))
}

// memPack builds a pack in memory for a backend that takes files whole
// (an object store: one PUT at Commit), in a buffer of packBufSize bytes
// taken from the process's budget (membudget.go) and given back when the
// upload returns. The buffer is never grown by appends: growing one
// copied each pack twice over and left twice its size as garbage, CPU the
// gateway sharing the machine then lacked (BenchmarkS3Upload), and memory
// the budget did not count.
type memPack struct {
	be   backend.Backend
	buf  *[]byte // nil once committed or aborted
	size int64   // what the budget granted for buf
	// closing is set once the pack is handed to be finished: its buffer
	// is on its way back to the budget.
	closing bool
}

func (p *memPack) Write(b []byte) (int, error) {
	if p.buf == nil {
		return 0, errors.New("write to a finished pack")
	}
	*p.buf = append(*p.buf, b...)
	return len(b), nil
}

// close says the pack is being finished (see closing).
func (p *memPack) close() {
	if p.buf != nil && !p.closing {
		p.closing = true
		objectMemory.uploadingPack(p.size)
	}
}

func (p *memPack) Commit(ctx context.Context, name string) error {
	if p.buf == nil {
		return errors.New("commit of a finished pack")
	}
	err := p.be.Save(ctx, backend.Handle{Type: backend.Packs, Name: name}, *p.buf) // Save keeps no reference
	p.Abort()
	return err
}

func (p *memPack) Abort() error {
	if p.buf != nil {
		objectMemory.putPack(p.buf, p.size, p.closing)
		p.buf = nil
	}
	return nil
}

// storeWriteError turns a failed write into a message naming the store
// and, for a full disk, what to do.
func storeWriteError(dir string, err error) error {
	if errors.Is(err, backend.ErrNoSpace) {
		return fmt.Errorf("store %s is full: %w; free space on that file system, move the store, or forget points and run 'recall gc' ('recall gc --index-grace 0' also removes at once what stopped backups left for their next run, which otherwise stays an hour); earlier recovery points are intact", dir, err)
	}
	return fmt.Errorf("write to store %s: %w", dir, err)
}

// finishAsync finishes p in the background; the caller holds w.mu. Every
// indexEvery finished packs get their index file at once rather than at
// Flush, which bounds the session's journal entries (and what an
// interrupted session leaves its successor to read) to about indexEvery.
func (w *Writer) finishAsync(p *packBuilder) {
	if mp, ok := p.f.(*memPack); ok {
		mp.close()
	}
	w.finishing.Add(1)
	w.mu.Unlock()
	w.sem <- struct{}{}
	w.mu.Lock()
	go func() {
		defer w.finishing.Done()
		defer func() { <-w.sem }()
		rec, err := w.finish(p)
		w.mu.Lock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		w.done = append(w.done, rec)
		w.doneBlobs += len(rec.entries)
		var batch []packRecord
		if len(w.done) >= indexEvery || w.doneBlobs >= indexEveryBlobs {
			n := min(len(w.done), indexEvery)
			batch = w.done[:n:n]
			w.done = slices.Clone(w.done[n:])
			w.doneBlobs = 0
			for _, r := range w.done {
				w.doneBlobs += len(r.entries)
			}
		}
		w.mu.Unlock()
		if batch == nil {
			return
		}
		if err := w.indexPacks(batch); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
}

// finish writes the header, records the pack in the session's journal and
// commits the pack under its name (each durable when it returns), then
// makes its blobs visible in the index. The journal entry comes first so
// that no pack is ever visible unindexed without one (journal.go).
func (w *Writer) finish(p *packBuilder) (packRecord, error) {
	hdr := w.unlikeHidden(p, encodePackHeader(p.entries, w.s.keys)) // gc.go says why
	if _, err := p.f.Write(hdr); err != nil {
		p.f.Abort()
		return packRecord{}, storeWriteError(w.s.Dir(), err)
	}
	id := packName(hdr)
	// Whole and durable in the temp area before the entry names it: a
	// session killed from here on leaves a pack the next one adopts
	// (journal_temp.go) rather than one it loses.
	if sy, ok := p.f.(backend.Syncer); ok {
		if err := sy.Sync(); err != nil {
			p.f.Abort()
			return packRecord{}, storeWriteError(w.s.Dir(), err)
		}
	}
	if w.journal != "" {
		if err := w.s.journalAdd(w.journal, id); err != nil {
			p.f.Abort()
			return packRecord{}, storeWriteError(w.s.Dir(), err)
		}
	}
	if err := w.checkLock(); err != nil {
		p.f.Abort()
		return packRecord{}, err
	}
	if len(p.entries) > 0 {
		w.s.keepTrees(p.entries[0].Type, id) // before Commit: its bytes are kept as they are saved
	}
	if err := p.f.Commit(bg, id.String()); err != nil {
		return packRecord{}, storeWriteError(w.s.Dir(), err)
	}
	w.s.markUnindexed(packRecord{id: id, entries: p.entries})
	if size := p.size + int64(len(hdr)); !w.s.idx.addPack(id, p.entries, size) {
		w.s.idx.setPackSize(id, size)
	}
	w.mu.Lock()
	for _, e := range p.entries {
		delete(w.pending, e.ID)
	}
	w.written = append(w.written, id)
	w.mu.Unlock()
	return packRecord{id: id, entries: p.entries}, nil
}

// checkLock returns the error of a lost lock, nil while it is held.
func (w *Writer) checkLock() error {
	if w.lost == nil {
		return nil
	}
	return w.lost()
}

// Flush finishes open packs and writes an index file covering every pack
// this writer finished. After Flush returns nil, every blob saved so far is
// durable and indexed, so a point referring to them may be committed.
func (w *Writer) Flush() error {
	w.mu.Lock()
	for t, p := range w.open {
		if p != nil {
			w.open[t] = nil
			w.finishAsync(p)
		}
	}
	w.mu.Unlock()
	w.finishing.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.checkLock(); err != nil {
		w.err = err
		return err
	}
	for len(w.done) > 0 {
		n := min(len(w.done), indexEvery)
		if err := w.indexPacks(w.done[:n]); err != nil {
			w.err = err
			return w.err
		}
		w.done = w.done[n:]
	}
	w.doneBlobs = 0
	return nil
}

// indexPacks durably writes the index file of finished packs, then drops
// their journal entries.
func (w *Writer) indexPacks(packs []packRecord) error {
	if _, err := w.s.writeIndexFile(packs); err != nil {
		return storeWriteError(w.s.Dir(), err)
	}
	if w.journal != "" {
		ids := make([]ID, len(packs))
		for i, p := range packs {
			ids[i] = p.id
		}
		w.s.journalDrop(w.journal, ids)
	}
	return nil
}

// errAborted is what a writer's saves return once it was aborted.
var errAborted = errors.New("the pack writer was aborted")

// Abort discards unfinished packs (temp files). Finished packs stay, in
// the journal: the next session of the source (or the exclusive lock)
// indexes and reuses them.
func (w *Writer) Abort() {
	w.mu.Lock()
	if w.err == nil {
		// A save waiting for a pack buffer meanwhile must not open a
		// pack nobody would finish or give back.
		w.err = errAborted
	}
	for t, p := range w.open {
		if p != nil {
			p.f.Abort()
			w.open[t] = nil
		}
	}
	w.mu.Unlock()
	w.finishing.Wait()
}

// writeIndexFile durably writes an index file of packs and returns its name.
func (s *Store) writeIndexFile(packs []packRecord) (string, error) {
	b := encodeIndexFile(packs, s.keys)
	name := ID(blake3.Sum256(b)).String()
	if err := s.be.Save(bg, backend.Handle{Type: backend.Index, Name: name}, b); err != nil {
		return "", err
	}
	s.fmu.Lock()
	s.loadedI[name] = true
	for _, p := range packs {
		delete(s.unindexed, p.id)
	}
	if len(s.orphans) > 0 {
		// Covered now (a journal's adopter found them first): garbage
		// collection counts them, and no writer indexes them again.
		covered := make(map[ID]bool, len(packs))
		for _, p := range packs {
			covered[p.id] = true
		}
		s.orphans = slices.DeleteFunc(s.orphans, func(o packRecord) bool { return covered[o.id] })
	}
	s.fmu.Unlock()
	return name, nil
}
