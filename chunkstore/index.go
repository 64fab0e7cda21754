package chunkstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
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
// Version 1 files are small (one backup's packs) and are read whole into
// the index's recent part. Consolidated files (version 2, index2.go) hold
// the bulk of a large store and are read in place; the index has the two
// parts:
//
//   - the base: at most one consolidated file, of which only a summary is
//     in memory (index2.go says what and why);
//   - the recent part: every place added since the base was written (v1
//     files, packs indexed from their headers, packs a writer just
//     finished), in memory with full ids (52 bytes a place), in a map of
//     new places and a slice sorted by id that the map is merged into.
//
// The store opens the newest consolidated file as the base and reads the
// version 1 files it does not supersede into the recent part. A new base
// is written only by one process at a time, since every writer must build
// on the same one: under the exclusive lock, by Lock.ConsolidateIndex (run
// at the end of 'recall repair index') and by itself when the lock is
// taken; and by garbage collection (one at a time, never beside the
// exclusive lock), when it hides packs and, hiding none, at the same
// thresholds: the recent part holds at least consolidateMin places and
// more than an eighth of the base's, or consolidateMax places. The files
// a base supersedes are recorded (gc/retire-<id>) and removed by a
// collection after its grace.
//
// The map is merged when it holds more than a third of the sorted slice
// (and at least 65,536 places), one linear merge of sorted runs, so adding n
// places costs O(n log n) whatever their order. Every place is kept with
// its full id: a lookup answers only for the id asked, never for another
// id that shares a prefix, so Has cannot report a blob present that is not.

const (
	indexMagic   = "RCALLIX1"
	indexVersion = 1

	lenMask    = 1<<28 - 1
	typeShift  = 28 // 2 bits: the blob type (1 or 2)
	compShift  = 30 // 2 bits: the compression code, compOther for any unknown one
	maxBlobLen = lenMask
)

// compOther stands in the index for a compression code no codec has: the
// blob's bytes are damage when read.
const compOther = 3

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

// ientry is one place of the recent part: everything its pack entry says,
// so a consolidation writes the place as the pack header has it.
type ientry struct {
	id ID
	loc
	raw  uint32 // the blob's raw length
	comp uint8  // the pack entry's compression code as stored
	typ  uint8  // the pack entry's blob type as stored
}

func (e ientry) packEntry() PackEntry {
	return PackEntry{Type: BlobType(e.typ), Comp: e.comp, Offset: e.off, Length: e.length(), RawLength: e.raw, ID: e.id}
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
// pick one that is usable. Pack numbers never change while the index
// lives (the store keys open pack files by them). Safe for concurrent use.
type index struct {
	mu      sync.RWMutex
	packs   []ID          // pack number -> pack id
	packNum map[ID]uint32 // pack id -> number
	size    []int64       // pack number -> file size, sizeUnknown or sizeGone
	retired map[uint32]bool
	// hidden: packs the base lists with no place, which garbage
	// collection hid (gc.go): their places, from earlier index files or
	// read from their headers, serve reads but never deduplication.
	hidden     map[uint32]bool
	hiddenRead map[uint32]bool // hidden packs whose headers a pack walk read
	sorted     []ientry        // recent part, sorted by id, then pack number and offset
	recent     map[ID][]ientry
	nrecent    int     // places in recent
	base       *index2 // the consolidated file, or nil
	count      int
	damaged    map[blobAt]string // recorded damage -> reason
	// baseWarn: a read of the base failed; said once (index2.go).
	baseWarn sync.Once
}

func newIndex() *index {
	return &index{packNum: map[ID]uint32{}, recent: map[ID][]ientry{}, retired: map[uint32]bool{}, hidden: map[uint32]bool{}, hiddenRead: map[uint32]bool{}, damaged: map[blobAt]string{}}
}

// addPack registers a pack of size bytes (sizeUnknown when not known) and
// its entries; it returns false if the pack was known already.
func (x *index) addPack(packID ID, entries []PackEntry, size int64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n, ok := x.packNum[packID]; ok {
		if !x.hidden[n] {
			return false
		}
		// A pack the base lists with no place (garbage collection hid or
		// deleted it) that an index file lists again: indexed again, or
		// written again with the same bytes.
		delete(x.hidden, n)
		x.addPlacesLocked(n, entries)
		return true
	}
	x.addPlacesLocked(x.newPackLocked(packID, size), entries)
	return true
}

func (x *index) addPlacesLocked(n uint32, entries []PackEntry) {
	for _, e := range entries {
		x.recent[e.ID] = append(x.recent[e.ID], ientry{id: e.ID, loc: makeLoc(n, e), raw: e.RawLength, comp: e.Comp, typ: uint8(e.Type)})
	}
	x.nrecent += len(entries)
	x.count += len(entries)
	if x.nrecent > max(1<<16, len(x.sorted)/3) {
		x.compactLocked()
	}
}

// dropBase forgets the base, whose file is being removed (repair found
// it wrong): its packs keep their numbers but lose their places until
// addPlaces gives them again. The packs it hid are hidden no more: the
// hide was that file, and a consolidation must not write it again into a
// file no garbage collection plan names (gc.go). It returns the packs the
// base covered.
func (x *index) dropBase() map[ID]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := x.base
	if b == nil {
		return nil
	}
	out := make(map[ID]bool, b.npacks)
	for i := range b.npacks {
		out[b.packID(i)] = true
		if b.packMap != nil {
			delete(x.hidden, b.packMap[i])
			delete(x.hiddenRead, b.packMap[i])
		}
	}
	x.base = nil
	x.count -= b.count
	return out
}

// addPlaces adds the places of a pack, known or not, to the recent part:
// for packs whose places were dropped with the base.
func (x *index) addPlaces(packID ID, entries []PackEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.packNum[packID]
	if !ok {
		n = x.newPackLocked(packID, sizeUnknown)
	}
	x.addPlacesLocked(n, entries)
}

func (x *index) newPackLocked(packID ID, size int64) uint32 {
	n := uint32(len(x.packs))
	x.packs = append(x.packs, packID)
	x.size = append(x.size, size)
	x.packNum[packID] = n
	return n
}

func cmpEntry(a, b ientry) int {
	if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
		return c
	}
	if a.pack != b.pack {
		return cmp.Compare(a.pack, b.pack)
	}
	return cmp.Compare(a.off, b.off)
}

// compactLocked merges the map of new places into the sorted slice: the
// new ones are sorted on their own, then the two runs are merged.
func (x *index) compactLocked() {
	if x.nrecent == 0 {
		return
	}
	batch := make([]ientry, 0, x.nrecent)
	for _, es := range x.recent {
		batch = append(batch, es...)
	}
	x.recent = map[ID][]ientry{} // clear would keep its buckets, the size it grew to
	x.nrecent = 0
	slices.SortFunc(batch, cmpEntry)
	// Every place is kept, even of equal ids: a blob stored again
	// after its first copy was damaged has two, and only one is good.
	x.sorted = mergeEntries(x.sorted, batch)
}

// mergeEntries merges two sorted runs into a new slice; a place in both
// is kept once.
func mergeEntries(a, b []ientry) []ientry {
	out := make([]ientry, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch c := cmpEntry(a[0], b[0]); {
		case c < 0:
			out, a = append(out, a[0]), a[1:]
		case c > 0:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	out = append(append(out, a...), b...)
	return slices.Compact(out)
}

func (x *index) compact() {
	x.mu.Lock()
	x.compactLocked()
	x.mu.Unlock()
}

// lookup returns a usable place of id when there is one (usable true);
// otherwise the first place known (found true), whose read gives the error
// that says why it cannot be read. Only places of id itself are
// considered, compared on the whole id.
func (x *index) lookup(id ID) (l loc, found, usable bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var first, good loc
	try := func(l loc) bool {
		if !found {
			first, found = l, true
		}
		if x.unusableLocked(id, l) == nil {
			if len(x.hidden) == 0 || !x.hidden[l.pack] {
				good, usable = l, true
				return true
			}
			// A pack garbage collection hid (gc.go) is read only when no
			// other place is usable: a blob it moved is read at its new place.
			if !usable {
				good, usable = l, true
			}
		}
		return false
	}
	for _, e := range x.recent[id] {
		if try(e.loc) {
			return good, true, true
		}
	}
	i, _ := slices.BinarySearchFunc(x.sorted, id, func(e ientry, id ID) int { return bytes.Compare(e.id[:], id[:]) })
	for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
		if try(x.sorted[i].loc) {
			return good, true, true
		}
	}
	if x.base != nil {
		if err := x.base.places(id, try); err != nil {
			// The base is a cache like every index file: a place it
			// cannot give is not found, so the blob is stored again.
			x.baseWarn.Do(func() {
				fmt.Fprintf(os.Stderr, "recall: consolidated index file %s: %v (its blobs count as not stored; 'recall repair index' rebuilds it)\n", x.base.name, err)
			})
		}
	}
	if usable {
		return good, true, true
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

// goodPlace reports whether blob has a place in a pack of present (pack
// id -> size) that ends within the pack and is not recorded damaged, or
// is in a pack of whole (made whole again under its name, so its record
// is about to go).
func (x *index) goodPlace(id ID, present map[ID]int64, whole map[ID]bool) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	good := false
	try := func(l loc) bool {
		pack := x.packs[l.pack]
		size, ok := present[pack]
		if !ok || int64(l.off)+int64(l.length()) > size {
			return false
		}
		if _, bad := x.damaged[blobAt{id, pack}]; bad && !whole[pack] {
			return false
		}
		good = true
		return true
	}
	for _, e := range x.recent[id] {
		if try(e.loc) {
			return true
		}
	}
	i, _ := slices.BinarySearchFunc(x.sorted, id, func(e ientry, id ID) int { return bytes.Compare(e.id[:], id[:]) })
	for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
		if try(x.sorted[i].loc) {
			return true
		}
	}
	if x.base != nil {
		// An unreadable base counts as no place: the loss is then
		// reported, never hidden.
		x.base.places(id, try)
	}
	return good
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
	for _, es := range x.recent {
		for _, e := range es {
			add(e.loc)
		}
	}
	for _, e := range x.sorted {
		add(e.loc)
	}
	if b := x.base; b != nil {
		for i := range b.npacks {
			n, blobs, e := b.packMap[i], b.packBlobs(i), b.packEnd(i)
			count[n] += blobs
			end[n] = max(end[n], e)
		}
	}
	return count, end
}

// Consolidation thresholds: the recent part is merged into a new base
// when it holds at least consolidateMin places and more than an eighth of
// the base's, or consolidateMax places whatever the base.
const (
	consolidateMin = 1 << 16
	consolidateMax = 1_000_000
)

// recentLenLocked is the number of places in the recent part.
func (x *index) recentLenLocked() int { return len(x.sorted) + x.nrecent }

// hasRecent reports whether the recent part holds any place a
// consolidation would add to the base: one of a pack that is not hidden.
// The places of hidden packs (read by a pack walk, for reads only) are
// left out of the file, so with none of the others a consolidation would
// write the base again under a new name.
func (x *index) hasRecent() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.hidden) == 0 {
		return x.recentLenLocked() > 0
	}
	for _, e := range x.sorted {
		if !x.hidden[e.pack] {
			return true
		}
	}
	for _, es := range x.recent {
		for _, e := range es {
			if !x.hidden[e.pack] {
				return true
			}
		}
	}
	return false
}

// wantsConsolidation reports whether the recent part has grown enough to
// be worth merging into a new base.
func (x *index) wantsConsolidation() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n, base := x.recentLenLocked(), 0
	if x.base != nil {
		base = x.base.count
	}
	return n >= consolidateMax || n >= consolidateMin && n > base/8
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

// decodeIndexFile decodes a whole index file of either version.
func decodeIndexFile(b []byte, k *keys) ([]packRecord, error) {
	if isIndex2(b) {
		packs, _, err := decodeIndex2(b, k)
		return packs, err
	}
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
