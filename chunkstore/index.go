package chunkstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
)

// Index file format, version 1 (<store>/index/<hex of hash of file>):
//
//	index  = magic "RCALLIX1" | payload
//	payload = plaintext store: body | u32le crc32c(body)
//	          encrypted store: nonce(12) | AES-256-GCM(body) | tag(16), AD = magic
//	body   = u8 version (1) | u32le npacks | [32]byte pack id * npacks
//	         | u32le count | entry*count
//	entry  = the 48-byte pack header entry, with the u16 "reserved" field
//	         holding the pack's position in this file's pack list
//
// Index files are caches of pack headers: a backup writes one after its
// packs are durable and before its recovery point, so every committed point
// is covered by index files. Packs with no index file (a crash between pack
// and index) are found by listing packs/ and reading their headers.
//
// In memory each place of a blob costs 24 bytes: a 12-byte id prefix, pack number,
// offset and a stored length with the blob type and compression code in its
// top bits. A 96-bit prefix makes a false match between distinct chunks
// about 1e-15 likely at 10 million chunks, and every read re-hashes (or
// authenticates) the blob against its full id, so a false match can never
// return wrong bytes.

const (
	indexMagic   = "RCALLIX1"
	indexVersion = 1
	prefixLen    = 12

	lenMask    = 1<<28 - 1
	typeShift  = 28 // 2 bits: the blob type (1 or 2)
	compShift  = 30 // 2 bits: the compression code, compOther for any unknown one
	maxBlobLen = lenMask
)

// compOther stands in the index for a compression code no codec has: the
// blob's bytes are damage when read.
const compOther = 3

type prefix [prefixLen]byte

type loc struct {
	pack   uint32
	off    uint32
	lenFlg uint32
}

func (l loc) length() uint32   { return l.lenFlg & lenMask }
func (l loc) comp() uint8      { return uint8(l.lenFlg >> compShift) }
func (l loc) compressed() bool { return l.comp() != compNone }

func makeLoc(pack uint32, e PackEntry) loc {
	c := uint32(e.Comp)
	if c > compS2 {
		c = compOther
	}
	f := e.Length | uint32(e.Type&3)<<typeShift | c<<compShift
	return loc{pack: pack, off: e.Offset, lenFlg: f}
}

type ientry struct {
	p prefix
	loc
}

// Pack sizes known to the index: the file's size in bytes, or one of these.
const (
	sizeUnknown = -1 // not yet seen by a pack walk: assumed present
	sizeGone    = -2 // the file is missing
)

// blobAt is one place of one blob, the key of the damage record.
type blobAt struct{ blob, pack ID }

// index maps blob ids to their places. A blob may have several (stored
// again after its first copy was found damaged): all are kept, and lookups
// pick one that is usable. Safe for concurrent use.
type index struct {
	mu      sync.RWMutex
	packs   []ID          // pack number -> pack id
	packNum map[ID]uint32 // pack id -> number
	size    []int64       // pack number -> file size, sizeUnknown or sizeGone
	retired map[uint32]bool
	sorted  []ientry // sorted by prefix, then pack number and offset
	recent  map[prefix][]loc
	count   int
	damaged map[blobAt]string // recorded damage -> reason
}

func newIndex() *index {
	return &index{packNum: map[ID]uint32{}, recent: map[prefix][]loc{}, retired: map[uint32]bool{}, damaged: map[blobAt]string{}}
}

func pfx(id ID) (p prefix) { copy(p[:], id[:prefixLen]); return }

// addPack registers a pack of size bytes (sizeUnknown when not known) and
// its entries; it returns false if the pack was known already.
func (x *index) addPack(packID ID, entries []PackEntry, size int64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.packNum[packID]; ok {
		return false
	}
	n := uint32(len(x.packs))
	x.packs = append(x.packs, packID)
	x.size = append(x.size, size)
	x.packNum[packID] = n
	for _, e := range entries {
		p := pfx(e.ID)
		x.recent[p] = append(x.recent[p], makeLoc(n, e))
	}
	x.count += len(entries)
	if len(x.recent) > 1<<16 {
		x.compactLocked()
	}
	return true
}

func cmpEntry(a, b ientry) int {
	if c := bytes.Compare(a.p[:], b.p[:]); c != 0 {
		return c
	}
	if a.pack != b.pack {
		return int(a.pack) - int(b.pack)
	}
	return int(a.off) - int(b.off)
}

func (x *index) compactLocked() {
	for p, ls := range x.recent {
		for _, l := range ls {
			x.sorted = append(x.sorted, ientry{p: p, loc: l})
		}
	}
	clear(x.recent)
	// Every place is kept, even of equal prefixes: a blob stored again
	// after its first copy was damaged has two, and only one is good.
	slices.SortFunc(x.sorted, cmpEntry)
	x.sorted = slices.Compact(x.sorted)
	x.sorted = slices.Clip(x.sorted)
}

func (x *index) compact() {
	x.mu.Lock()
	x.compactLocked()
	x.mu.Unlock()
}

// lookup returns a usable place of id when there is one (usable true);
// otherwise the first place known (found true), whose read gives the error
// that says why it cannot be read.
func (x *index) lookup(id ID) (l loc, found, usable bool) {
	p := pfx(id)
	x.mu.RLock()
	defer x.mu.RUnlock()
	var first loc
	try := func(l loc) bool {
		if !found {
			first, found = l, true
		}
		return x.unusableLocked(id, l) == nil
	}
	for _, l := range x.recent[p] {
		if try(l) {
			return l, true, true
		}
	}
	i, _ := slices.BinarySearchFunc(x.sorted, p, func(e ientry, p prefix) int { return bytes.Compare(e.p[:], p[:]) })
	for ; i < len(x.sorted) && x.sorted[i].p == p; i++ {
		if try(x.sorted[i].loc) {
			return x.sorted[i].loc, true, true
		}
	}
	return first, found, false
}

// errPackMissing: the pack file of a blob is not there.
var errPackMissing = fmt.Errorf("pack file is missing: %w", ErrNotFound)

// unusableLocked says why the place l of id cannot give the blob, or nil.
func (x *index) unusableLocked(id ID, l loc) error {
	switch sz := x.size[l.pack]; {
	case sz == sizeGone || len(x.retired) > 0 && x.retired[l.pack]:
		return errPackMissing
	case sz >= 0 && int64(l.off)+int64(l.length()) > sz:
		return fmt.Errorf("%w: the pack is truncated (%d bytes) before the blob's end", ErrCorrupt, sz)
	}
	if len(x.damaged) > 0 {
		if why, bad := x.damaged[blobAt{id, x.packs[l.pack]}]; bad {
			return fmt.Errorf("%w: recorded damaged (%s)", ErrCorrupt, why)
		}
	}
	return nil
}

// setSizes records the pack walk's result: the size of every pack file
// present; the packs it does not list are missing.
func (x *index) setSizes(sizes map[ID]int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for n, id := range x.packs {
		if sz, ok := sizes[id]; ok {
			x.size[n] = sz
		} else {
			x.size[n] = sizeGone
		}
	}
}

func (x *index) packID(n uint32) ID {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.packs[n]
}

func (x *index) hasPack(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packNum[id]
	return ok
}

// retire makes the places in packs unusable (or usable again, with
// back): repair stores their good blobs anew before it removes them.
func (x *index) retire(packs []ID, back bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range packs {
		if n, ok := x.packNum[id]; ok {
			if back {
				delete(x.retired, n)
			} else {
				x.retired[n] = true
			}
		}
	}
}

// packShapes returns, per pack number, how many blobs the index places in
// it and where the last one ends.
func (x *index) packShapes() (count []int, end []int64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	count, end = make([]int, len(x.packs)), make([]int64, len(x.packs))
	add := func(l loc) {
		count[l.pack]++
		end[l.pack] = max(end[l.pack], int64(l.off)+int64(l.length()))
	}
	for _, ls := range x.recent {
		for _, l := range ls {
			add(l)
		}
	}
	for _, e := range x.sorted {
		add(e.loc)
	}
	return count, end
}

type packRecord struct {
	id      ID
	entries []PackEntry
}

func encodeIndexFile(packs []packRecord, k *keys) []byte {
	body := []byte{indexVersion}
	body = binary.LittleEndian.AppendUint32(body, uint32(len(packs)))
	n := 0
	for _, p := range packs {
		body = append(body, p.id[:]...)
		n += len(p.entries)
	}
	body = binary.LittleEndian.AppendUint32(body, uint32(n))
	for i, p := range packs {
		for _, e := range p.entries {
			var b [packEntrySize]byte
			b[0] = byte(e.Type)
			b[1] = e.Comp
			binary.LittleEndian.PutUint16(b[2:], uint16(i))
			binary.LittleEndian.PutUint32(b[4:], e.Offset)
			binary.LittleEndian.PutUint32(b[8:], e.Length)
			binary.LittleEndian.PutUint32(b[12:], e.RawLength)
			copy(b[16:], e.ID[:])
			body = append(body, b[:]...)
		}
	}
	out := []byte(indexMagic)
	if k.aead != nil {
		return seal(k.aead, out, body, []byte(indexMagic))
	}
	out = append(out, body...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, crcTable))
}

func decodeIndexFile(b []byte, k *keys) ([]packRecord, error) {
	if len(b) < len(indexMagic) || string(b[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("%w: index file magic", ErrCorrupt)
	}
	b = b[len(indexMagic):]
	var body []byte
	if k.aead != nil {
		var err error
		if body, err = open(k.aead, nil, b, []byte(indexMagic)); err != nil {
			return nil, fmt.Errorf("%w: index file fails authentication", ErrCorrupt)
		}
	} else {
		if len(b) < 4 || crc32.Checksum(b[:len(b)-4], crcTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
			return nil, fmt.Errorf("%w: index file checksum", ErrCorrupt)
		}
		body = b[:len(b)-4]
	}
	if len(body) < 9 || body[0] != indexVersion {
		return nil, fmt.Errorf("%w: index file version", ErrCorrupt)
	}
	np := int(binary.LittleEndian.Uint32(body[1:]))
	if len(body) < 5+np*32+4 {
		return nil, fmt.Errorf("%w: index file truncated", ErrCorrupt)
	}
	packs := make([]packRecord, np)
	for i := range packs {
		copy(packs[i].id[:], body[5+i*32:])
	}
	rest := body[5+np*32:]
	n := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if len(rest) != n*packEntrySize {
		return nil, fmt.Errorf("%w: index file length", ErrCorrupt)
	}
	for i := 0; i < n; i++ {
		e := rest[i*packEntrySize:]
		pi := int(binary.LittleEndian.Uint16(e[2:]))
		if pi >= np {
			return nil, fmt.Errorf("%w: index entry pack %d", ErrCorrupt, pi)
		}
		pe := PackEntry{Type: BlobType(e[0]), Comp: e[1],
			Offset: binary.LittleEndian.Uint32(e[4:]), Length: binary.LittleEndian.Uint32(e[8:]),
			RawLength: binary.LittleEndian.Uint32(e[12:])}
		copy(pe.ID[:], e[16:48])
		packs[pi].entries = append(packs[pi].entries, pe)
	}
	return packs, nil
}
