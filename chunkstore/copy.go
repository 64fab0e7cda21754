package chunkstore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/iobuf"
	"github.com/zeebo/blake3"
)

// Copying blobs between stores that share their keys (recall copy). A
// blob's stored bytes (compressed, and sealed in an encrypted store) are
// read from the source's packs and appended unchanged to packs of the
// destination: nothing is decoded into a new encoding or sealed again, so
// a copy costs a read, a check and a write per blob, and an encrypted
// store's blobs stay sealed all the way. That is right only when both
// stores have the same keys (SameKeys): a blob's id, its seal and every
// pack header and index file depend on them.
//
// What is copied is checked first, exactly as LoadBlob checks it
// (authenticated, decompressed, hashed), so a copy never carries damage
// to the destination: a blob that fails is recorded damaged in the source
// and handed to the caller as an error.

// StoredBlob is one blob as a pack holds it.
type StoredBlob struct {
	ID   ID
	Type BlobType
	// Comp is the blob's compression code (PackEntry.Comp).
	Comp uint8
	// RawLength is the length of the blob's plaintext.
	RawLength uint32
	// Bytes are the stored bytes: compressed as Comp says, sealed in an
	// encrypted store.
	Bytes []byte
}

// LoadStoredBlobs reads the blobs ids, of type t, from the pack named pack
// in one pass (as LoadPackBlobs does: spans of nearby blobs, one ranged
// read each) and calls fn once per distinct id with the blob's stored
// bytes, checked, or with the error LoadBlob(id) would give. Ids the
// index does not place usably in this pack are read alone after the pass,
// from wherever the index places them. b.Bytes is valid only during fn;
// fn is called on the calling goroutine. A done ctx stops the pass
// between reads, with ctx's error.
func (s *Store) LoadStoredBlobs(ctx context.Context, pack ID, t BlobType, ids []ID, fn func(b StoredBlob, err error)) error {
	here, elsewhere := s.placeInPack(pack, ids)
	// The pass's buffers count against the budget of what is on its way
	// to or from an object store (membudget.go), leaving room for the
	// packs a copy's writer fills from them.
	held := int64(spanBufferSize + s.MaxChunk() + 2*readAlign)
	if err := objectMemory.takeReader(ctx, held, 2*s.packBufSize()); err != nil {
		return err
	}
	defer objectMemory.putReader(held)
	var ck storedChecker
	defer ck.release()
	sp := spanBuffer()
	defer iobuf.Put(sp)
	for i := 0; i < len(here); {
		if err := ctx.Err(); err != nil {
			return err
		}
		j, start, end := nextSpan(here, i)
		k := i
		_ = s.readSpan(here[i].l.pack, start, end, sp, func(span []byte) {
			for ; k < j && int64(here[k].l.off)+int64(here[k].l.length())-start <= int64(len(span)); k++ {
				b := here[k]
				off := int64(b.l.off) - start
				stored := span[off : off+int64(b.l.length())]
				raw, err := ck.check(s, b.id, b.l.comp(), stored)
				if err != nil {
					fn(s.loadStoredAlone(b.id, t, &ck))
					continue
				}
				fn(StoredBlob{ID: b.id, Type: t, Comp: b.l.comp(), RawLength: uint32(raw), Bytes: stored}, nil)
			}
		})
		for ; k < j; k++ {
			fn(s.loadStoredAlone(here[k].id, t, &ck))
		}
		i = j
	}
	slices.SortFunc(elsewhere, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range slices.Compact(elsewhere) {
		if err := ctx.Err(); err != nil {
			return err
		}
		fn(s.loadStoredAlone(id, t, &ck))
	}
	return nil
}

// loadStoredAlone reads one blob's stored bytes from a usable place. It
// lets LoadBlob find the place (recording damage, trying other places,
// wording the error), then reads the stored bytes there and checks them
// again: a blob read alone is one that failed in its pass or was not
// where it was expected, which is rare.
func (s *Store) loadStoredAlone(id ID, t BlobType, ck *storedChecker) (StoredBlob, error) {
	readAlone.Add(1)
	if _, err := s.LoadBlob(id, ck.plainBuf(s)); err != nil {
		return StoredBlob{ID: id, Type: t}, err
	}
	// The place LoadBlob read: a usable one, or with none the first,
	// which it reads anyway (a record of damage the bytes no longer show).
	l, found, _ := s.idx.lookup(id)
	if !found {
		return StoredBlob{ID: id, Type: t}, &BlobError{ID: id, Err: ErrNotFound}
	}
	pack := s.idx.packID(l.pack)
	stored, err := s.loadPack(pack, int64(l.off), int(l.length()), nil)
	if err == nil {
		var raw int
		if raw, err = ck.check(s, id, l.comp(), stored); err == nil {
			return StoredBlob{ID: id, Type: t, Comp: l.comp(), RawLength: uint32(raw), Bytes: stored}, nil
		}
	}
	return StoredBlob{ID: id, Type: t}, &BlobError{ID: id, Pack: pack, Err: err}
}

// storedChecker checks stored bytes without changing them (LoadBlob
// decrypts in place; here the stored bytes are what is copied) with
// pooled buffers.
type storedChecker struct {
	open, plain *[]byte
}

func (c *storedChecker) plainBuf(s *Store) []byte {
	if c.plain == nil {
		c.plain, _ = plainPool.Get().(*[]byte)
		if c.plain == nil || cap(*c.plain) < s.MaxChunk()+2*readAlign {
			b := s.ChunkBuffer()
			c.plain = &b
		}
	}
	return *c.plain
}

func (c *storedChecker) release() {
	if c.plain != nil {
		plainPool.Put(c.plain)
	}
	if c.open != nil {
		bufPool.Put(c.open)
	}
}

// check checks one blob's stored bytes against id as LoadBlob does and
// returns the length of its plaintext.
func (c *storedChecker) check(s *Store, id ID, comp uint8, stored []byte) (int, error) {
	if s.keys.aead == nil && comp == compNone {
		return len(stored), checkPlain(id, stored)
	}
	data := stored
	if s.keys.aead != nil {
		if c.open == nil {
			c.open = storedBuf(len(stored))
		}
		var err error
		if data, err = open(s.keys.aead, (*c.open)[:0], stored, id[:]); err != nil {
			return 0, fmt.Errorf("%w: authentication failed", ErrCorrupt)
		}
		*c.open = data[:0]
		if comp == compNone {
			return len(data), nil
		}
	}
	out, err := s.decompress(comp, data, c.plainBuf(s))
	if err != nil {
		return 0, err
	}
	if s.keys.aead == nil {
		if err := checkPlain(id, out); err != nil {
			return 0, err
		}
	}
	return len(out), nil
}

// SaveStored appends a blob's stored bytes, as a store with the same keys
// holds them, unchanged to the writer's open pack of its type, unless
// the store has the blob. It reports whether the blob was new. b.Bytes is
// not retained. The caller checked the bytes (LoadStoredBlobs) and that
// both stores share their keys (SameKeys): they are not decoded here.
func (w *Writer) SaveStored(b StoredBlob) (bool, error) {
	switch {
	case b.Type != DataBlob && b.Type != TreeBlob:
		return false, fmt.Errorf("blob %s: %v is no blob type", b.ID.Short(), b.Type)
	case b.Comp != compNone && b.Comp != compZstd && b.Comp != compS2:
		return false, fmt.Errorf("blob %s: compression code %d is none this recall knows", b.ID.Short(), b.Comp)
	case len(b.Bytes) > maxBlobLen || b.RawLength > maxBlobLen:
		return false, fmt.Errorf("blob %s of %d bytes exceeds the %d byte limit", b.ID.Short(), len(b.Bytes), maxBlobLen)
	}
	if w.s.Has(b.ID) {
		return false, nil
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	if _, ok := w.pending[b.ID]; ok {
		w.mu.Unlock()
		return false, nil
	}
	w.pending[b.ID] = struct{}{}
	w.mu.Unlock()
	if err := w.appendBlob(b.Type, b.ID, b.Comp, b.Bytes, int(b.RawLength)); err != nil {
		w.mu.Lock()
		delete(w.pending, b.ID)
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
		return false, err
	}
	w.statMu.Lock()
	w.newBlobs++
	w.newBytes += int64(len(b.Bytes))
	w.raw += int64(b.RawLength)
	w.statMu.Unlock()
	return true, nil
}

// Written returns how many packs the writer has finished so far.
func (w *Writer) Written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.written)
}

// LoadPointStored reads a point manifest's stored bytes (sealed in an
// encrypted store), checked against its id, which is their hash.
func (s *Store) LoadPointStored(id ID) ([]byte, error) {
	b, err := s.be.Load(bg, backend.Handle{Type: backend.Points, Name: id.String()}, 0, -1, nil)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("point %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read point %s: %w", id, err)
	}
	if ID(blake3.Sum256(b)) != id {
		return nil, fmt.Errorf("point %s: %w", id, ErrCorrupt)
	}
	return b, nil
}

// SavePointStored durably stores a point manifest's stored bytes under
// id, which must be their hash: the manifest of a store with the same
// keys, copied unchanged. Every blob it refers to must be flushed first.
func (s *Store) SavePointStored(id ID, stored []byte) error {
	if ID(blake3.Sum256(stored)) != id {
		return fmt.Errorf("point %s: %w: its bytes do not hash to its id", id, ErrCorrupt)
	}
	if err := s.be.Save(bg, backend.Handle{Type: backend.Points, Name: id.String()}, stored); err != nil {
		return fmt.Errorf("save recovery point %s: %w", id.Short(), storeWriteError(s.Dir(), err))
	}
	return nil
}

// SameKeys reports whether o was made with the same keys as s: chunker
// polynomial and chunk sizes, id key and encryption key. Only then can
// blobs, pack headers, index files and manifests of one be read as the
// other's, and stored bytes be copied between them.
func (s *Store) SameKeys(o *Store) bool {
	if s.pol != o.pol || s.cfg.MinChunk != o.cfg.MinChunk || s.cfg.MaxChunk != o.cfg.MaxChunk || s.averageBits() != o.averageBits() {
		return false
	}
	if !bytes.Equal(s.keys.idKey, o.keys.idKey) || (s.keys.aead == nil) != (o.keys.aead == nil) {
		return false
	}
	if s.keys.aead == nil {
		return true
	}
	return sameAEADKey(s.keys.aead, o.keys.aead)
}

// sameAEADKey tells whether b opens what a seals. The nonce is fixed: the
// sealed bytes are compared and dropped, never stored.
func sameAEADKey(a, b cipher.AEAD) bool {
	if a.NonceSize() != b.NonceSize() {
		return false
	}
	nonce := make([]byte, a.NonceSize())
	msg := []byte("recall: do these stores share their key?")
	_, err := b.Open(nil, nonce, a.Seal(nil, nonce, msg, nil), nil)
	return err == nil
}

// StoredPlace returns the pack holding a usable place of a blob (see Has)
// and the blob's stored length there; ok is false when there is none.
func (s *Store) StoredPlace(id ID) (pack ID, length int64, ok bool) {
	l, _, usable := s.idx.lookup(id)
	if !usable {
		return ID{}, 0, false
	}
	return s.idx.packID(l.pack), int64(l.length()), true
}

// Copying without the key. An encrypted store whose passphrase the copy
// is not given can only be copied as files: pack headers, index files and
// manifests are sealed, so neither which blobs a point needs nor which a
// pack holds can be read. What can be checked without the key is checked:
// a pack's name is the hash of its header (CheckPackName), an index
// file's and a manifest's the hash of their bytes (CheckFileName).

// CheckPackName checks a whole pack's bytes against its name, the hash of
// its header and trailer: what can be checked of a pack without the key.
// The blobs are not checked.
func CheckPackName(id ID, b []byte) error {
	hdr, err := packHeaderBytes(b)
	if err != nil {
		return err
	}
	if packName(hdr) != id {
		return fmt.Errorf("%w: pack header does not match the pack's name", ErrCorrupt)
	}
	return nil
}

// CheckFileName checks the bytes of a file named by their hash (an index
// file, a point manifest).
func CheckFileName(name string, b []byte) error {
	if ID(blake3.Sum256(b)).String() != name {
		return fmt.Errorf("%w: the bytes do not hash to the file's name", ErrCorrupt)
	}
	return nil
}

// SameSealedKey reports, without unsealing either, whether the stores in
// a and b have the same keys as far as their config files tell: the same
// store id, chunk parameters and sealed master key (the same key sealed
// the same way). Stores whose keys are the same but sealed apart (a
// passphrase changed on one side) are not told apart from other stores:
// that takes the passphrase.
func SameSealedKey(a, b backend.Backend) (bool, error) {
	ca, err := readConfigSealed(a)
	if err != nil {
		return false, err
	}
	cb, err := readConfigSealed(b)
	if err != nil {
		return false, err
	}
	if ca.Encryption == nil || cb.Encryption == nil {
		return false, nil
	}
	ea, eb := *ca.Encryption, *cb.Encryption
	ja, _ := json.Marshal(ea)
	jb, _ := json.Marshal(eb)
	return ca.ID == cb.ID && ca.MinChunk == cb.MinChunk && ca.MaxChunk == cb.MaxChunk &&
		ca.AverageBits == cb.AverageBits && ca.Polynomial == cb.Polynomial && bytes.Equal(ja, jb), nil
}

// readConfigSealed reads a store's config, or its copy when the config is
// missing or damaged, without unlocking the key.
func readConfigSealed(be backend.Backend) (*Config, error) {
	var first error
	for _, name := range []string{"config", configCopyName} {
		b, err := be.Load(bg, backend.Handle{Type: backend.Config, Name: name}, 0, -1, nil)
		if err == nil {
			var cfg *Config
			if cfg, err = parseConfig(b); err == nil {
				return cfg, nil
			}
		}
		if first == nil {
			first = fmt.Errorf("store config %s: %w", configPath(be, name), err)
		}
	}
	return nil, first
}

// SessionHold is a write session's locks held at a store that is not
// open (its key is not known): what a copy without the key holds at the
// destination, so that backups wait as for any session of its name and
// garbage collection counts it as a session running.
type SessionHold struct{ l *Lock }

// HoldSession takes the locks of a write session of source in the store
// kept in be (shared store lock, the source's lock, a registration) as
// LockSession does, without opening the store. Waiting and the error are
// as LockWriter's.
func HoldSession(ctx context.Context, be backend.Backend, source, purpose string, wait time.Duration, onWait func(LockInfo)) (*SessionHold, error) {
	if source == "" {
		return nil, errors.New("lock a write session: no source named")
	}
	tag := sessionTag(source)
	l := &Lock{s: &Store{be: be}, mode: backend.Shared, source: source, tag: tag, journal: tag}
	if err := l.take(ctx, purpose, wait, onWait); err != nil { // registers too
		return nil, err
	}
	return &SessionHold{l: l}, nil
}

// Unlock releases the session's locks.
func (h *SessionHold) Unlock() error { return h.l.Unlock() }

// Lost is Lock.Lost of the session's locks: an error wrapping
// ErrLockLost once one of them is lost, nil while they are held.
func (h *SessionHold) Lost() error { return h.l.Lost() }
