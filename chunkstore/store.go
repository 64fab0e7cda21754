package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/recall-backup/recall/internal/procs"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// Store is an open chunk store: read access to blobs, packs and points.
// Writing goes through a Writer (NewWriter), which needs the store lock.
// Every byte it reads or writes goes through its backend. A Store is safe
// for concurrent use.
type Store struct {
	be   backend.Backend
	cfg  *Config
	keys *keys
	pol  chunker.Pol
	cdc  *cdcTables
	idx  *index
	zdec *zstd.Decoder
	zenc *zstd.Encoder
	// zencLits: zenc coding the bytes of blobs with no match too, made
	// on first need (zencLits).
	zencLitsOnce sync.Once
	zencLitsEnc  *zstd.Encoder

	walkMu sync.Mutex // one pack walk at a time

	fmu        sync.Mutex
	walked     bool            // a pack walk has been done
	walkWanted bool            // an index file was unreadable: its packs need a walk
	loading    atomic.Int32    // O_DIRECT blob reads in progress (readPlain)
	loadedI    map[string]bool // index files already loaded
	loadedD    map[string]bool // damage records already loaded
	orphans    []packRecord    // packs indexed from their headers, no index file yet
	cfgProblem string          // damage found in config or its copy (configfile.go)
	// idxProblems: index files that did not load (name -> why), for
	// IndexProblems; RebuildIndex forgets the ones it replaces.
	idxProblems map[string]string
	// unlocatable: packs no index file covers whose header is unreadable,
	// so none of their blobs can be found (pack -> why).
	unlocatable map[ID]string
	misplaced   map[ID]string // pack files outside their folder, by the last walk: path (misplaced.go)
	placed      map[ID]bool   // packs SetAsideMisnamed moved to be put in their place, or out of it (misnamed.go)
	damageWarn  sync.Once     // the record cannot be written
	// damageListWarn: the record's directory cannot be read.
	damageListWarn sync.Once
	// unindexed: packs the index knows that no index file covers yet
	// (finished by a writer of this process, or orphans), with their
	// entries; a journal entry of one is not dropped (journal.go).
	unindexed map[ID][]PackEntry
	// missingPacks: packs a rebuild of the index found missing, which
	// consolidations leave out (guarded by fmu).
	missingPacks map[ID]bool
	// copies: the backend keeps local copies (backend/cache), or nil.
	copies localCopies
}

// localCopies is a backend that keeps local copies of a remote store's
// files (backend/cache). The store tells it how a file is checked against
// its name, and which packs hold tree blobs: packs are written per blob
// type, and what opening, listing points, browsing and planning a restore
// read again and again are the index files, the manifests and the trees.
type localCopies interface {
	CheckNamesWith(check func(h backend.Handle, data []byte) error)
	Keep(h backend.Handle)
}

// checkName checks the bytes of a file named by their hash against its
// name: a pack by its header and trailer (pack.go), an index file or a
// point manifest by all its bytes. Other files are not named by content.
func checkName(h backend.Handle, b []byte) error {
	want, err := ParseID(h.Name)
	if err != nil {
		return fmt.Errorf("%v: %w: not named by its content", h, ErrCorrupt)
	}
	var got ID
	switch h.Type {
	case backend.Packs:
		hdr, err := packHeaderBytes(b)
		if err != nil {
			return fmt.Errorf("%v: %w", h, err)
		}
		got = packName(hdr)
	case backend.Index, backend.Points:
		got = ID(blake3.Sum256(b))
	default:
		return fmt.Errorf("%v: %w: not named by its content", h, ErrCorrupt)
	}
	if got != want {
		return fmt.Errorf("%v: %w: content does not match its name", h, ErrCorrupt)
	}
	return nil
}

// blobType is the type of the blob at l (index.go keeps it in two bits).
func (l loc) blobType() BlobType { return BlobType(l.lenFlg >> typeShift & 3) }

// Connections is how many requests the store's backend serves at once
// when it is an object store (backend/s3, and the cache over it), 0 for
// a local one. Readers size their parallelism by it: a request to an
// object store waits on a round trip, not on a disk.
func (s *Store) Connections() int {
	if c, ok := s.be.(interface{ Connections() int }); ok {
		return c.Connections()
	}
	return 0
}

// keepTrees tells a backend with local copies that pack holds tree blobs.
func (s *Store) keepTrees(t BlobType, pack ID) {
	if s.copies != nil && t == TreeBlob {
		s.copies.Keep(packHandle(pack))
	}
}

// OpenOptions configure Open.
type OpenOptions struct {
	Password string
}

// bg is the context of store calls that do not take one yet: the store's
// methods predate the backend's contexts, and their callers cancel by
// stopping to call.
var bg = context.Background()

// Open opens the store in the local directory dir, unlocking its key and
// loading its index. Nothing is written.
func Open(dir string, o OpenOptions) (*Store, error) {
	return OpenBackend(local.Open(dir), o)
}

// OpenBackend opens the store kept in be, unlocking its key and loading
// its index. Nothing is written. The store owns be from here on (Close
// closes it).
func OpenBackend(be backend.Backend, o OpenOptions) (*Store, error) {
	dir := be.Location()
	copies, _ := be.(localCopies)
	if copies != nil {
		copies.CheckNamesWith(checkName)
	}
	oc, err := openConfig(be, o.Password)
	if errors.Is(err, ErrNoStore) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	cfg, k, pol := oc.cfg, oc.keys, oc.pol
	cdc, err := newCDCTables(pol)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{be: be, cfg: cfg, cfgProblem: oc.problem, keys: k, pol: pol, cdc: cdc, idx: newIndex(), loadedI: map[string]bool{}, loadedD: map[string]bool{}, unlocatable: map[ID]string{}, unindexed: map[ID][]PackEntry{}, missingPacks: map[ID]bool{}, copies: copies}
	if err := checkChunkBounds(int(cfg.MinChunk), int(cfg.MaxChunk), s.averageBits()); err != nil {
		return nil, fmt.Errorf("open store %s: config: %w", dir, err)
	}
	// Frames' own checksums (xxhash) are not checked: every decoded blob
	// is checked against its id, or was authenticated before decoding,
	// which is stronger, so the checksum only cost time on every read.
	// No blob decodes to more than a writer stores (SaveBlob).
	s.zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(2*procs.CPUs()), zstd.WithDecoderMaxMemory(maxBlobLen), zstd.IgnoreChecksum(true))
	s.zenc = newZstdEncoder()
	if err := s.checkKey(); err != nil {
		return nil, err
	}
	n, err := s.loadIndexFiles()
	if err != nil {
		return nil, err
	}
	if err := s.loadDamage(); err != nil {
		return nil, err
	}
	if n == 0 {
		// No index file: a new store (the walk finds nothing) or one whose
		// index files were lost, whose blobs only the walk can find.
		if err := s.walkPacks(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// checkKey makes sure the config's key (or its lack of one) is the one
// the store's data was written with, from a point manifest: a
// manifest whose bytes match its name is whole, so when it does not
// decrypt with the config's key (or, in a store the config says is not
// encrypted, does not start as text, looksPlain) the config is another store's, copied
// over this one's. Opened so, every manifest, index file and pack header
// reads as damaged, and the repairs would delete them all. A store
// without a whole manifest is not judged.
func (s *Store) checkKey() error {
	// The first whole manifest decides: one that does not read with the
	// key cannot be damage. Damaged ones are passed over, up to a bound
	// (a listing of the names beyond it is not worth an open's time).
	const sample = 1024
	var ids []ID
	errEnough := errors.New("enough")
	err := backend.ListNames(bg, s.be, backend.Points, func(name string) error {
		if id, err := ParseID(name); err == nil {
			ids = append(ids, id)
		}
		if len(ids) >= sample {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil // met, and said, where the points are listed
	}
	for _, id := range ids {
		b, err := s.LoadPointStored(id)
		if err != nil {
			continue // not whole: damage, judged elsewhere
		}
		what := "does not decrypt with the key this config holds"
		if s.keys.aead == nil {
			if looksPlain(b) {
				return nil
			}
			what = "is not plain text, though this config says the store is not encrypted"
		} else if _, err := open(s.keys.aead, nil, b, []byte("point")); err == nil {
			return nil
		}
		return fmt.Errorf("open store %s: %w: point manifest %s is whole (its bytes match its name) but %s, and so would every file of the store be: the config (config, config.copy) is another store's, copied over this one's; put back this store's own config (from a copy of the store, or a backup of it); nothing was changed, and no repair may run until then",
			s.Dir(), ErrKeyMismatch, id.String()[:12], what)
	}
	return nil
}

// looksPlain says whether b, a manifest, starts as text (UTF-8, no
// control characters but white space) as every manifest does that was
// not encrypted; a sealed one starts with random bytes, which 64 bytes of
// text practically never are.
func looksPlain(b []byte) bool {
	for i := 0; i < min(len(b), 64); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
		i += size
	}
	return true
}

// Close releases what the store and its backend hold open (the
// consolidated index file, pack descriptors).
func (s *Store) Close() error {
	s.idx.closeBase()
	return s.be.Close()
}

// Dir returns the store's location: its directory for a local store.
func (s *Store) Dir() string { return s.be.Location() }

// Backend returns the storage the store is kept in.
func (s *Store) Backend() backend.Backend { return s.be }

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

// Has reports whether a blob can be read from the store as far as the
// index knows without reading: it is indexed at a place whose pack file is
// present, that lies inside the pack's size, and that is not recorded
// damaged. Deduplication asks this (a writer before it stores a blob, a
// backup before it reuses an unchanged file's chunks), so a blob that is
// lost or damaged is stored again by the next backup that has it.
//
// The pack's size is known from a pack walk, or else learned here: the
// first time Has would answer true from a pack whose size is not known
// (since the store was opened, or since the last write session began:
// forgetPackSizes), it stats the pack, so a missing or truncated pack is
// found at a cost of one stat per pack deduplicated against, however many
// packs the store holds. A stat that fails for another reason than a
// missing file leaves the pack assumed present, as it was before.
func (s *Store) Has(id ID) bool {
	for {
		l, _, ok := s.idx.lookup(id)
		if !ok {
			return false
		}
		if s.idx.sizeOf(l.pack) != sizeUnknown || !s.learnPackSize(l.pack) {
			// Not in a pack garbage collection hid (gc.go): lookups
			// prefer other places, so a hidden place means no other.
			return !s.idx.isHidden(l.pack)
		}
		// The size is known now: look again, with the place judged by it
		// (a place in a missing or truncated pack gives way to another).
	}
}

// learnPackSize stats pack number n and records its size, or that it is
// missing; it reports whether it could.
func (s *Store) learnPackSize(n uint32) bool {
	size, err := s.be.Stat(bg, packHandle(s.idx.packID(n)))
	switch {
	case errors.Is(err, backend.ErrNotExist):
		size = sizeGone
	case err != nil:
		return false
	}
	s.idx.learnSize(n, size)
	return true
}

// BlobStatus tells whether a blob can be read as far as the index knows
// (as Has), and names its pack: the usable one, or the one whose problem
// the error describes. The error wraps ErrNotFound (not indexed, pack
// missing) or ErrCorrupt (pack truncated, recorded damaged).
func (s *Store) BlobStatus(id ID) (ID, error) {
	l, found, usable := s.idx.lookup(id)
	if !found {
		return ID{}, fmt.Errorf("blob %s is not in the index: %w", id.Short(), ErrNotFound)
	}
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	pack := s.idx.packs[l.pack]
	if usable {
		return pack, nil
	}
	return pack, s.idx.unusableLocked(id, l)
}

// BlobCount returns the number of indexed blob places (a blob stored again
// after damage counts twice).
func (s *Store) BlobCount() int {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	return s.idx.count
}

func packHandle(id ID) backend.Handle { return backend.Handle{Type: backend.Packs, Name: id.String()} }

// Refresh loads index files and damage records written since the last
// call. It lists neither packs nor points: a reader (a mount, verify)
// learns of new blobs from the index files every writer writes before it
// commits a point, so a refresh costs a listing of index/ and the new
// files, whatever the number of packs. Packs no index file covers (left by
// an interrupted writer) are found by a write session from its source's
// journal (journal.go), by the exclusive lock from its pack walk, and by
// the pack walk which Packs and a failed lookup do for readers; Open does
// the walk too when the store has no index file at all (index/ lost: every
// pack is then indexed from its header).
func (s *Store) Refresh() error {
	if _, err := s.loadIndexFiles(); err != nil {
		return err
	}
	return s.loadDamage()
}

// loadIndexFiles loads the index files not loaded yet and returns how many
// index files there are. Consolidated files come first: the one no other
// supersedes becomes the index's base, read in place, and the files it
// supersedes are skipped; the version 1 files left are read whole into
// the recent part. Each new file is read with one Load of its first
// 64 KiB, which for a version 1 file is usually all of it.
func (s *Store) loadIndexFiles() (int, error) {
	var names []string
	err := backend.ListNames(bg, s.be, backend.Index, func(name string) error {
		if _, err := ParseID(name); err != nil {
			// Not a file recall wrote (those are named by their hash):
			// left alone, said once. Before, it was read as a damaged
			// index file, and every command advised a repair that, rightly,
			// leaves it.
			if !s.indexLoaded(name) {
				fmt.Fprintf(os.Stderr, "recall: %s in the index directory of store %s is not an index file recall wrote; it is left alone (move it out of the store)\n", name, s.Dir())
				s.markIndexLoaded(name)
			}
			return nil
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list index: %w", err)
	}
	type v1file struct {
		name string
		b    []byte
	}
	var v1 []v1file
	var v2 []string
	var fresh []string
	for _, name := range names {
		if !s.indexLoaded(name) {
			fresh = append(fresh, name)
		}
	}
	// The new files are read a few at once on an object store, where each
	// is a request that waits on a round trip (a fresh cache, or the
	// files other machines wrote), and one at a time on a disk. They are
	// taken in the listing's order all the same.
	type head struct {
		b   []byte
		err error
	}
	heads := make([]head, len(fresh))
	loadHead := func(i int) {
		heads[i].b, heads[i].err = s.be.Load(bg, backend.Handle{Type: backend.Index, Name: fresh[i]}, 0, indexHead, nil)
	}
	if c := s.Connections(); c > 1 && len(fresh) > 1 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, c)
		for i := range fresh {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				loadHead(i)
			}()
		}
		wg.Wait()
	} else {
		for i := range fresh {
			loadHead(i)
		}
	}
	for i, name := range fresh {
		h := backend.Handle{Type: backend.Index, Name: name}
		b, err := heads[i].b, heads[i].err
		whole := errors.Is(err, io.ErrUnexpectedEOF) // all of a small file
		switch {
		case errors.Is(err, backend.ErrNotExist):
			continue // superseded meanwhile
		case err != nil && !whole:
			return 0, fmt.Errorf("read index file %s: %w", name, err)
		case isIndex2(b):
			v2 = append(v2, name)
			continue
		case !whole:
			rest, err := s.be.Load(bg, h, indexHead, -1, nil)
			if errors.Is(err, backend.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("read index file %s: %w", name, err)
			}
			b = append(b, rest...)
		}
		v1 = append(v1, v1file{name, b})
	}
	loaded := false
	for _, name := range v2 {
		ok, err := s.loadBase(name)
		if err != nil {
			s.indexUnreadable(name, err)
			continue
		}
		loaded = loaded || ok
	}
	for _, f := range v1 {
		if s.indexLoaded(f.name) { // superseded by the base just adopted
			continue
		}
		if err := s.addIndexFile(f.name, f.b); err != nil {
			s.indexUnreadable(f.name, err)
			continue
		}
		loaded = true
	}
	if loaded {
		s.idx.compact()
	}
	return len(names), nil
}

// saidOnce holds the warnings a process has printed that it prints once,
// by what they are about.
var saidOnce sync.Map

// indexHead is how much of a new index file the first read takes.
const indexHead = 64 << 10

func (s *Store) indexLoaded(name string) bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.loadedI[name]
}

func (s *Store) markIndexLoaded(names ...string) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for _, n := range names {
		s.loadedI[n] = true
	}
}

// indexUnreadable reports an index file that does not decode. A damaged
// index file is only a cache: the packs it covers are re-read from their
// own headers by the next pack walk.
func (s *Store) indexUnreadable(name string, err error) {
	if _, said := saidOnce.LoadOrStore("index "+s.Dir()+" "+name, true); !said {
		// Once per process: a command may open the store more than once.
		fmt.Fprintf(os.Stderr, "recall: index file %s: %v (its packs are read from their headers; 'recall repair index' replaces it)\n", name, err)
	}
	s.fmu.Lock()
	s.loadedI[name] = true // said once per process
	s.walkWanted = true
	if s.idxProblems == nil {
		s.idxProblems = map[string]string{}
	}
	s.idxProblems[name] = err.Error()
	s.fmu.Unlock()
}

// unreadableIndexFiles returns the index files that did not decode, and
// why (name -> error): a copy, safe to keep.
func (s *Store) unreadableIndexFiles() map[string]string {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return maps.Clone(s.idxProblems)
}

// IndexProblems lists the index files that could not be read or decoded
// since the store was opened, one "index file NAME: WHY" line each,
// sorted; none when all loaded. No data is lost with them (their packs
// are read from their headers), but they are damage that verify reports
// and RebuildIndex replaces.
func (s *Store) IndexProblems() []string {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	out := make([]string, 0, len(s.idxProblems))
	for name, why := range s.idxProblems {
		out = append(out, "index file "+name+": "+why)
	}
	slices.Sort(out)
	return out
}

// addIndexFile adds the places of a whole index file to the recent part.
func (s *Store) addIndexFile(name string, b []byte) error {
	packs, err := decodeIndexFile(b, s.keys)
	if err != nil {
		return err
	}
	for _, p := range packs {
		s.idx.addPack(p.id, p.entries, sizeUnknown)
	}
	s.markIndexLoaded(name)
	return nil
}

// loadBase takes in the consolidated file name: as the index's base when
// there is none or it supersedes the current one, else (two files
// neither of which supersedes the other, which only a consolidation
// outside the exclusive lock could leave) read whole into the recent
// part. A file the base already supersedes is skipped unread. It reports
// whether places were added.
func (s *Store) loadBase(name string) (bool, error) {
	id, err := ParseID(name)
	if err != nil {
		return false, fmt.Errorf("%w: index file name", ErrCorrupt)
	}
	if s.idx.superseded()[id] {
		s.markIndexLoaded(name)
		return false, nil
	}
	b, err := openIndex2Backend(s.be, name, s.keys)
	if errors.Is(err, backend.ErrNotExist) {
		return false, nil // superseded and removed meanwhile
	}
	if err != nil {
		return false, err
	}
	cur := s.idx.baseName()
	replaces := cur == ""
	for _, sup := range b.supersedes() {
		replaces = replaces || sup.String() == cur
	}
	if !replaces {
		whole, err := s.be.Load(bg, backend.Handle{Type: backend.Index, Name: name}, 0, -1, nil)
		if err != nil {
			return false, err
		}
		return true, s.addIndexFile(name, whole)
	}
	s.idx.adoptBase(b)
	s.markIndexLoaded(name)
	for sup := range s.idx.superseded() {
		s.markIndexLoaded(sup.String())
	}
	return true, nil
}

// unlocatableSaid holds the packs walkPacks has warned of, so that each
// is named once per process.
var unlocatableSaid sync.Map

// walkPacks lists every pack: it records their sizes (a missing or
// truncated pack is known from here on without a stat per lookup) and
// indexes the packs no index file covers from their headers. It costs a
// listing with sizes of every pack (about 0.5 s per 100,000 packs on a
// local disk), so it is never done per refresh.
func (s *Store) walkPacks() error {
	s.walkMu.Lock()
	defer s.walkMu.Unlock()
	var orphans []packRecord
	sizes := map[ID]int64{}
	unlocatable := map[ID]string{}
	err := s.ListPacks(func(id ID, size int64) error {
		sizes[id] = size
		if s.idx.hasPack(id) {
			return nil
		}
		entries, err := s.readPackHeaderSized(id, size)
		if err != nil {
			unlocatable[id] = err.Error()
			if _, said := unlocatableSaid.LoadOrStore(id, true); said {
				return nil // a repair walks the packs more than once
			}
			if size == 0 {
				fmt.Fprintf(os.Stderr, "recall: pack %s of store %s: an empty file under a pack's name, which recall never writes (a pack takes its name only once whole): no point needs it; remove it by hand\n", id, s.Dir())
				return nil
			}
			fmt.Fprintf(os.Stderr, "recall: pack %s: %v (no index file lists it, so nothing says what it holds: put back a copy of its index file and run 'recall repair index'; repair leaves it in place)\n", id, err)
			return nil
		}
		s.idx.addPack(id, entries, size)
		orphans = append(orphans, packRecord{id: id, entries: entries})
		return nil
	})
	if err != nil {
		return err
	}
	misplaced, err := s.listMisplaced()
	if err != nil {
		return err
	}
	s.markUnindexed(orphans...)
	s.idx.setSizes(sizes)
	s.readHidden(sizes) // gc.go
	s.idx.compact()
	if err := s.loadDamage(); err != nil {
		return err
	}
	s.fmu.Lock()
	s.orphans = append(s.orphans, orphans...)
	s.unlocatable = unlocatable
	s.misplaced = misplaced
	s.walked, s.walkWanted = true, false
	s.fmu.Unlock()
	return nil
}

// walkForReaders does the pack walk for a reader that needs what only it
// finds (a blob no index file lists, an unreadable index file), at most
// once per store unless an unreadable index file asks again.
func (s *Store) walkForReaders() {
	s.fmu.Lock()
	need := !s.walked || s.walkWanted || s.idx.hiddenUnread()
	s.fmu.Unlock()
	if need {
		if err := s.walkPacks(); err != nil {
			fmt.Fprintf(os.Stderr, "recall: %v (packs no index file lists are not read)\n", err)
		}
	}
}

// HasPackFile reports whether a pack's file is present.
func (s *Store) HasPackFile(id ID) bool {
	_, err := s.be.Stat(bg, packHandle(id))
	return err == nil
}

// ListPacks calls fn for every pack file in the store.
func (s *Store) ListPacks(fn func(id ID, size int64) error) error {
	err := s.be.List(bg, backend.Packs, func(name string, size int64) error {
		id, err := ParseID(name)
		if err != nil {
			return nil
		}
		return fn(id, size)
	})
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("list packs: %w: let recall read it (its owner or mode), then run the command again", err)
	}
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	return nil
}

// WarmPacks asks a cold backend (backend.Warmer) to make packs readable,
// and returns when they are; a reader that will read them calls it first,
// instead of reads that block for minutes. On other backends it does
// nothing.
func (s *Store) WarmPacks(ctx context.Context, packs []ID) error {
	hs := make([]backend.Handle, len(packs))
	for i, id := range packs {
		hs[i] = packHandle(id)
	}
	if err := backend.Warm(ctx, s.be, hs); err != nil {
		return fmt.Errorf("warm up %d packs: %w", len(packs), err)
	}
	return nil
}

// loadPack reads n bytes at off of a pack (n < 0: to its end) into buf's
// storage. A pack that ends before them is corrupt (errTruncated); a
// missing one is not found.
func (s *Store) loadPack(id ID, off int64, n int, buf []byte) ([]byte, error) {
	b, err := s.be.Load(bg, packHandle(id), off, n, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errTruncated
	case errors.Is(err, backend.ErrNotExist):
		return nil, fmt.Errorf("%w (%w)", errPackMissing, err)
	case err != nil:
		return nil, err
	case n >= 0 && len(b) != n:
		// The backend broke its contract; the pack may be whole, so this
		// is an I/O error, not damage to record.
		return nil, fmt.Errorf("read pack %s: %w: %d bytes at %d, asked for %d", id, errShortLoad, len(b), off, n)
	}
	return b, nil
}

// errShortLoad: a backend returned fewer bytes than asked without saying
// the file ends there.
var errShortLoad = errors.New("short read from the storage backend")

// ReadPackHeader reads and decodes the header of one pack.
func (s *Store) ReadPackHeader(id ID) ([]PackEntry, error) {
	es, _, err := s.readPackHeader(id)
	return es, err
}

// readPackHeader is ReadPackHeader that also returns the pack's size.
func (s *Store) readPackHeader(id ID) ([]PackEntry, int64, error) {
	size, err := s.be.Stat(bg, packHandle(id))
	if err != nil {
		return nil, 0, err
	}
	es, err := s.readPackHeaderSized(id, size)
	return es, size, err
}

// readPackHeaderSized reads the header of a pack whose size a listing has
// just given, saving the stat per pack that a walk of 10^5 packs would
// otherwise cost. A pack cut short since the listing gives an error, as a
// stat would have: its trailer is read where the listing said it ends.
func (s *Store) readPackHeaderSized(id ID, size int64) ([]PackEntry, error) {
	if size == 0 {
		// Never a pack recall wrote: a pack is renamed to its name only
		// once whole and synced.
		return nil, fmt.Errorf("%w: an empty file, not a pack recall wrote", ErrCorrupt)
	}
	if size < int64(packTrailerLen) {
		return nil, fmt.Errorf("%w: pack too short", ErrCorrupt)
	}
	tr, err := s.loadPack(id, size-int64(packTrailerLen), packTrailerLen, nil)
	if err != nil {
		return nil, err
	}
	hl, err := packHeaderLength(tr)
	if err != nil {
		return nil, err
	}
	if int64(hl) > size-int64(packTrailerLen) {
		return nil, fmt.Errorf("%w: pack header length", ErrCorrupt)
	}
	hdr, err := s.loadPack(id, size-int64(packTrailerLen)-int64(hl), hl, nil)
	if err != nil {
		return nil, err
	}
	// A pack is named by the hash of its header and trailer: a header
	// that decodes but is not the one its name says (another pack's bytes
	// copied over it) describes other blobs, and trusting it would index
	// them here and supersede the index file that knows this pack's own.
	if packName(slices.Concat(hdr, tr)) != id {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, errHeaderNotName)
	}
	return decodePackHeader(hdr, s.keys, size)
}

// errHeaderNotName says a pack holds a header other than the one its name
// is the hash of.
const errHeaderNotName = "pack header does not match the pack's name (the file holds another pack's header, or a damaged one)"

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

// bufPool holds buffers for stored bytes (read from a pack, or decrypted).
// It has no New: storedBuf makes a buffer as large as the blob that needs
// it. A pool is emptied by every garbage collection, and a backup collects
// often (GOGC 25 or less, internal/procs), so a fixed 2 MiB New was one
// fresh, zeroed 2 MiB allocation per tree an incremental backup loads:
// 0.12 s of zeroing and 0.08 s of giving the pages back to the kernel in a
// 0.9 CPU-second re-backup of the bench set's 400 unchanged directories.
var bufPool sync.Pool

// storedBuf returns a pooled buffer of at least n bytes' capacity, or a
// new one of n; give it back with bufPool.Put.
func storedBuf(n int) *[]byte {
	if bp, _ := bufPool.Get().(*[]byte); bp != nil && cap(*bp) >= n {
		return bp
	}
	b := make([]byte, 0, n)
	return &b
}

// LoadBlob reads, authenticates, decompresses and re-hashes one blob and
// returns its plaintext, in dst's storage when it is large enough (not
// necessarily at its start: plaintext blobs are read with O_DIRECT into an
// aligned window of dst). The caller owns the result. The
// returned bytes are always the blob whose id is id, or an error
// (ErrNotFound, ErrCorrupt wrapped in *BlobError).
//
// A blob may have several places (stored again after damage); a usable one
// is read. Stored bytes that fail their check are recorded as damage (best
// effort, see recordDamage) and the next usable place, if any, is tried;
// so is the next place when the pack turns out to be missing, which the
// index then knows.
// With no usable place the first is read anyway, for the error that says
// what is wrong with it.
func (s *Store) LoadBlob(id ID, dst []byte) ([]byte, error) {
	refreshed := false
	for tries := 0; ; tries++ {
		l, found, usable := s.idx.lookup(id)
		if !found && tries == 0 {
			// Perhaps in a pack no index file lists yet.
			s.walkForReaders()
			l, found, usable = s.idx.lookup(id)
		}
		if !found {
			return nil, &BlobError{ID: id, Err: ErrNotFound}
		}
		packID := s.idx.packID(l.pack)
		s.keepTrees(l.blobType(), packID)
		out, err := s.loadAt(id, l, dst)
		if err == nil {
			return out, nil
		}
		if errors.Is(err, errPackMissing) && tries < 8 {
			// Nothing walked the packs since this one went: known
			// missing from now on, and another place may hold the blob.
			// Readers beside this one may have found it first: the blob
			// is tried again wherever the index now places it.
			s.idx.learnGone(l.pack)
			if next, found, usable := s.idx.lookup(id); found && usable && next != l {
				continue
			}
			// Garbage collection may have rewritten the pack: the new
			// place is in an index file written since this process
			// loaded the index. A reader (a mount, restore, verify, a
			// copy's source) takes no session, so nothing refreshed it;
			// before, a live blob read "pack file is missing" until the
			// process started again.
			if !refreshed {
				refreshed = true
				if s.Refresh() == nil {
					if next, found, _ := s.idx.lookup(id); found && next != l {
						continue
					}
				}
			}
		}
		if errors.Is(err, ErrCorrupt) {
			// An I/O error (EIO, a pack gone meanwhile) says nothing
			// about the stored bytes and is not recorded.
			s.recordDamage(DamagedBlob{Blob: id, Pack: packID, Reason: damageReason(err)})
			if usable && tries < 8 {
				continue
			}
		}
		return nil, &BlobError{ID: id, Pack: packID, Err: err}
	}
}

// loadAt reads and checks the blob id at place l.
func (s *Store) loadAt(id ID, l loc, dst []byte) ([]byte, error) {
	if s.keys.aead == nil && !l.compressed() {
		// Plaintext, uncompressed: read straight into the result,
		// hashing as the pieces arrive.
		raw, sum, err := s.readPlain(l, dst)
		if err != nil {
			return nil, err
		}
		if sum != id {
			return nil, errMismatch
		}
		return raw, nil
	}
	bp := storedBuf(int(l.length()))
	defer bufPool.Put(bp)
	raw, err := s.loadPack(s.idx.packID(l.pack), int64(l.off), int(l.length()), *bp)
	if err != nil {
		return nil, err
	}
	*bp = raw[:0]
	return s.decodeBlob(id, raw, l.comp(), dst)
}

// readPlain reads a stored-as-is blob into dst's storage, and hashes it:
// large ones with O_DIRECT where the backend has it (backend.DirectReader),
// the rest through the page cache.
func (s *Store) readPlain(l loc, dst []byte) ([]byte, ID, error) {
	id := s.idx.packID(l.pack)
	if dr, ok := s.be.(backend.DirectReader); ok && l.length() >= directMin {
		if ra, err := dr.OpenDirect(bg, packHandle(id)); err == nil {
			// A lone read (a random read through the mount) is split
			// so hashing overlaps the disk and uses both cores; with
			// others in flight (a restore, a prefetching reader) those
			// are busy anyway and whole reads are cheaper for the disk.
			split := s.loading.Add(1) == 1
			defer s.loading.Add(-1)
			return readDirect(ra, int64(l.off), int(l.length()), dst, split)
		}
	}
	b, err := s.loadPack(id, int64(l.off), int(l.length()), dst)
	if err != nil {
		return nil, ID{}, err
	}
	return b, blake3.Sum256(b), nil
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

// decodeBlob turns stored bytes, compressed as comp says, into plaintext
// and checks the id.
func (s *Store) decodeBlob(id ID, stored []byte, comp uint8, dst []byte) ([]byte, error) {
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
	out, err := s.decompress(comp, data, dst)
	if err != nil {
		return nil, err
	}
	if s.keys.aead == nil {
		if err := checkPlain(id, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PackCheck is what CheckPack found in one pack.
type PackCheck struct {
	Size    int64
	Entries []PackEntry // from the header; nil when it is unreadable
	// Header is why the header is unreadable or does not match the
	// pack's name, or nil. A bad header alone loses no blob the index
	// still locates: LoadBlob reads at the index's places.
	Header error
	Bad    []DamagedBlob // blobs the header locates whose bytes fail their check
}

// CheckPack reads a whole pack, checks its header against the pack's name,
// and decodes and checks every blob the header lists. Bad blobs are
// recorded as damage. The error is for a pack that cannot be read at all
// (missing, I/O error); damage is in the result.
func (s *Store) CheckPack(id ID) (*PackCheck, error) {
	pc, err := s.checkPack(id)
	if pc != nil {
		s.recordDamage(pc.Bad...)
	}
	return pc, err
}

// CheckPackData is CheckPack for a pack already read whole (b), as a
// tape write streams it: what goes to tape is checked, not a second read.
//
// b is left as it was: an encrypted blob is opened in a copy (a check
// decrypting in place sent plaintext to tape under the store's name).
func (s *Store) CheckPackData(id ID, b []byte) *PackCheck {
	pc := s.checkPackData(id, b, true)
	s.recordDamage(pc.Bad...)
	return pc
}

// checkPack is CheckPack without recording what it finds.
func (s *Store) checkPack(id ID) (*PackCheck, error) {
	b, err := s.loadPack(id, 0, -1, nil)
	if err != nil {
		return nil, err
	}
	return s.checkPackData(id, b, false), nil
}

// checkPackData checks the whole pack b; keep leaves b unchanged.
func (s *Store) checkPackData(id ID, b []byte, keep bool) *PackCheck {
	pc := &PackCheck{Size: int64(len(b))}
	hdr, err := packHeaderBytes(b)
	if err == nil && packName(hdr) != id {
		pc.Header = fmt.Errorf("%w: pack header does not match the pack's name", ErrCorrupt)
	}
	if err == nil {
		pc.Entries, err = decodePackHeader(hdr[:len(hdr)-packTrailerLen], s.keys, int64(len(b)))
	}
	if err != nil {
		pc.Header = err
		return pc
	}
	var buf, scratch []byte // scratch: what an encrypted blob opens to, read by nobody
	for _, e := range pc.Entries {
		stored := b[e.Offset : e.Offset+e.Length]
		if keep && s.keys.aead != nil {
			// The blob's authentication is its check: the tag binds the
			// sealed bytes to the blob's id, so a flipped bit fails it,
			// and what was sealed was checked against the id when the
			// backup stored it. Decompressing and hashing besides
			// doubled the cost, and a tape write on two cores fell
			// below an LTO-9 drive's speed.
			out, derr := open(s.keys.aead, scratch[:0], stored, e.ID[:])
			if derr == nil {
				scratch = out
			} else {
				pc.Bad = append(pc.Bad, DamagedBlob{Blob: e.ID, Pack: id, Reason: damageReason(fmt.Errorf("%w: authentication failed", ErrCorrupt))})
			}
			continue
		}
		out, derr := s.checkStored(e, stored, buf)
		if derr != nil {
			pc.Bad = append(pc.Bad, DamagedBlob{Blob: e.ID, Pack: id, Reason: damageReason(derr)})
		} else {
			buf = out
		}
	}
	return pc
}

// checkStored decodes one stored blob and checks it against its id.
func (s *Store) checkStored(e PackEntry, stored, buf []byte) ([]byte, error) {
	out, err := s.decodeBlob(e.ID, stored, e.Comp, buf)
	if err == nil && s.keys.aead != nil && s.keys.hash(out) != e.ID {
		err = errMismatch
	}
	return out, err
}

// packHeaderBytes returns the header and trailer at the end of a whole
// pack, or why they cannot be found.
func packHeaderBytes(b []byte) ([]byte, error) {
	if len(b) < packTrailerLen {
		return nil, fmt.Errorf("%w: pack too short", ErrCorrupt)
	}
	hl, err := packHeaderLength(b[len(b)-packTrailerLen:])
	if err != nil {
		return nil, err
	}
	if hl > len(b)-packTrailerLen {
		return nil, fmt.Errorf("%w: pack header length", ErrCorrupt)
	}
	return b[len(b)-packTrailerLen-hl:], nil
}

// PackOf returns the pack that holds a blob: a usable place when there is
// one (see Has), else the first place known.
func (s *Store) PackOf(id ID) (ID, bool) {
	l, ok, _ := s.idx.lookup(id)
	if !ok {
		return ID{}, false
	}
	return s.idx.packID(l.pack), true
}

// notPackFile says what lies where a local store reads pack id from when
// it is not a file to read (a directory, a link that cannot be followed),
// or "": such a pack was reported only as missing.
func notPackFile(s *Store, id ID) string {
	if s.Dir() == "" {
		return ""
	}
	p := s.packHome(id)
	fi, err := os.Lstat(p)
	if err != nil {
		return ""
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("%s is a symbolic link that cannot be followed (%v): put the pack file there", p, err)
		}
	case fi.IsDir():
		return fmt.Sprintf("%s is a directory: put the pack file there", p)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file (%s): put the pack file there", p, fi.Mode().Type())
	}
	return ""
}

// PackInfo describes one pack as the index and the last pack walk see it.
type PackInfo struct {
	ID       ID
	Size     int64 // bytes; -1 when the file is missing
	Expected int64 // the size the index implies; 0 when it places no blob in the pack
	Blobs    int   // blob places the index has in it
	// Problem says what is wrong with the pack without reading it, or "".
	Problem string
}

// Packs lists every pack the index or the last pack walk knows, sorted by
// id, with the problems visible without reading: missing, a size other
// than the index implies (truncated, or a damaged trailer), recorded
// damage, a header unreadable with no index file listing the pack.
//
// It walks the packs first (see Refresh), so it is for verify and repair,
// not for a hot path.
func (s *Store) Packs() []PackInfo {
	if err := s.walkPacks(); err != nil {
		fmt.Fprintf(os.Stderr, "recall: %v (pack sizes are as of the last walk)\n", err)
	}
	count, end := s.idx.packShapes()
	damaged := map[ID]int{}
	s.idx.mu.RLock()
	for k := range s.idx.damaged {
		damaged[k.pack]++
	}
	out := make([]PackInfo, 0, len(s.idx.packs))
	for n, id := range s.idx.packs {
		pi := PackInfo{ID: id, Size: s.idx.size[n], Blobs: count[n]}
		if pi.Blobs == 0 && pi.Size == sizeGone {
			continue // deleted by garbage collection, which keeps it listed for a while (gc.go)
		}
		if pi.Blobs > 0 {
			pi.Expected = end[n] + int64(s.packHeaderLen(pi.Blobs)) + int64(packTrailerLen)
		}
		switch {
		case pi.Size == sizeGone:
			pi.Size = -1
			pi.Problem = "pack file is missing"
			s.fmu.Lock()
			if at, ok := s.misplaced[id]; ok {
				pi.Problem = fmt.Sprintf("pack file is missing from %s: it lies at %s ('recall repair index' moves it back)", s.packHome(id), at)
			} else if why := notPackFile(s, id); why != "" {
				pi.Problem = "pack file is missing: " + why
			}
			s.fmu.Unlock()
		case pi.Size >= 0 && pi.Blobs > 0 && pi.Size < pi.Expected:
			pi.Problem = fmt.Sprintf("truncated: %d bytes, the index expects %d", pi.Size, pi.Expected)
		case pi.Size >= 0 && pi.Blobs > 0 && pi.Size != pi.Expected:
			pi.Problem = fmt.Sprintf("%d bytes, the index expects %d", pi.Size, pi.Expected)
		case damaged[id] > 0:
			pi.Problem = fmt.Sprintf("%d blobs recorded damaged", damaged[id])
		}
		out = append(out, pi)
	}
	s.idx.mu.RUnlock()
	s.fmu.Lock()
	for id, why := range s.unlocatable {
		out = append(out, PackInfo{ID: id, Size: -1, Problem: "header unreadable and no index file lists the pack: " + why})
	}
	s.fmu.Unlock()
	slices.SortFunc(out, func(a, b PackInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// packHeaderLen is the length of the header of a pack of n blobs.
func (s *Store) packHeaderLen(n int) int {
	body := 5 + packEntrySize*n
	if s.keys.aead != nil {
		return s.keys.aead.NonceSize() + body + s.keys.aead.Overhead()
	}
	return body + 4
}

// Points: small immutable manifests, named by the hash of their stored
// bytes, encrypted like blobs in an encrypted store.

// SavePoint durably stores a point manifest and returns its id. A
// session commits its points through Lock.SavePoint, which stops when the
// lock is lost.
func (s *Store) SavePoint(manifest []byte) (ID, error) {
	return s.savePoint(bg, manifest)
}

// savePoint is SavePoint under ctx: the backend's retries stop when ctx
// is done.
func (s *Store) savePoint(ctx context.Context, manifest []byte) (ID, error) {
	stored := manifest
	if s.keys.aead != nil {
		stored = seal(s.keys.aead, nil, manifest, []byte("point"))
	}
	id := ID(blake3.Sum256(stored))
	if err := s.be.Save(ctx, backend.Handle{Type: backend.Points, Name: id.String()}, stored); err != nil {
		next := "run again once the store is reachable"
		if errors.Is(err, backend.ErrNoSpace) {
			next = "free space on the store's file system or move the store, then run again"
		}
		return ID{}, fmt.Errorf("save recovery point %s in store %s: %w; the blobs it refers to are stored and kept, only its manifest is missing: %s, and the data already sent is reused", id, s.Dir(), err, next)
	}
	return id, nil
}

// LoadPoint reads a point manifest.
func (s *Store) LoadPoint(id ID) ([]byte, error) {
	b, err := s.be.Load(bg, backend.Handle{Type: backend.Points, Name: id.String()}, 0, -1, nil)
	if errors.Is(err, backend.ErrNotExist) {
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
	var ids []ID
	err := backend.ListNames(bg, s.be, backend.Points, func(name string) error {
		if id, err := ParseID(name); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list points: %w", err)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	return ids, nil
}

// RemovePoint deletes a point manifest. Its blobs stay until pruned.
func (s *Store) RemovePoint(id ID) error {
	err := s.be.Remove(bg, backend.Handle{Type: backend.Points, Name: id.String()})
	if errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("point %s: %w", id, ErrNotFound)
	}
	return err
}

// reserveSize is the room a store on a file system keeps set aside for
// garbage collection (backend.Reserver): enough for its plan and the
// index file that hides packs, a few KiB per thousand packs, so that a
// collection can begin on a store whose file system is full to its last
// block.
const reserveSize = 4 << 20

// keepReserve sets the reserve aside again if it is missing and there is
// room; a full store keeps none until garbage collection frees some.
func (s *Store) keepReserve() {
	if r, ok := s.be.(backend.Reserver); ok {
		r.Reserve(bg, reserveSize)
	}
}
