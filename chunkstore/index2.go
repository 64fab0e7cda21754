package chunkstore

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"runtime"
	"slices"
	"sync"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// Consolidated index files, version 2: the index of a large store.
//
// A store of 5·10^7 chunks (80 TB at ~1.5 MiB a chunk) must open in
// seconds and answer "is this chunk stored?" at least 10^6 times a second
// in at most 24 bytes of RAM per chunk. An id alone is 32 bytes, so the
// index cannot keep full ids in memory; and a lookup must compare the
// whole id (a false "stored" loses the chunk). What was studied:
//
//   - borg's hashindex: an open-addressing table of whole keys and values
//     in RAM (~60 B a chunk at its load factor), loaded whole: too big, and
//     its open time grows with the store.
//   - kopia's index v2: sorted fixed-width entries (with pack and format
//     tables) searched in place in a memory-mapped local cache, plus an
//     in-memory map (bigmap) for what is being written. In place is right;
//     but a binary search over mapped entries touches a page per probe,
//     and a dedup workload of random ids faults in the whole file: at
//     5·10^7 entries of ~50 bytes that is the file (~2.5 GiB) in the
//     process's resident set, which is 50 B a chunk.
//   - a Bloom or cuckoo filter for absent ids: ~1-2 B a chunk, but it only
//     says "absent"; the present case still needs a place.
//
// Chosen: sorted fixed-width records read in place, plus an in-memory
// summary that is both the filter and the locator. The summary holds, per
// record, 16 bits of its id (the bits after the fanout bits) in record
// order, and a fanout table of record counts per leading-bits bucket
// (16-32 records a bucket, so the table is ~0.2 B a chunk and mostly
// stays in the CPU's cache). A lookup reads the id's bucket bounds, then
// searches its 16-32 fingerprints, one cache line, in memory: an absent
// id is answered there with no I/O but for ~1 in 3,000 (a fingerprint
// collision). A match names the exact record positions, which are read
// with one ranged read (pread, or a backend's Load into the caller's
// buffer) of one block and compared on the whole id. Nothing is mapped,
// so the file's pages are the kernel's page cache, shared and
// reclaimable, not the process's resident memory. The summary is ~2.2 B
// a chunk, the pack table ~2.2 B (at 20 blobs a pack); with the pack
// numbering every store keeps (ids, a map, sizes) the index holds ~10 B
// a chunk. Wider fingerprints would cost memory for no gain: a collision
// costs one read, and the whole id decides.
//
// Consolidation merges the current base with the recent part (sorted runs
// both) into a new file in one linear pass; the new file names the files
// it supersedes, which readers then skip and which are removed after a
// grace period, so a reader that listed the old files meanwhile still
// finds them.
//
// The file (all integers little-endian):
//
//	file    = header | block* | summary | trailer
//	header  = magic "RCALLIX2" | u8 version (2) | u8 log2 records per block
//	          | 6 zero bytes | [16]byte salt (random per file)
//	block   = the next 2^shift records (fewer in the last block), framed:
//	          plaintext store: records | u32 crc32c(u64 block number | records)
//	          encrypted store: nonce(12) | AES-256-GCM(records) | tag(16),
//	                           AD = salt | u64 block number
//	record  = [32]byte id | u32 pack (position in the pack table) | u32 offset
//	          | u32 stored length | u32 raw length | u8 blob type
//	          | u8 compression code | u16 zero                  (52 bytes)
//	summary = plaintext store: body | u32 crc32c(body)
//	          encrypted store: nonce(12) | AES-256-GCM(body) | tag(16),
//	                           AD = header | u64 record count
//	body    = u8 fanout bits k | u32 npacks | u32 nsupersedes
//	          | u32 fanout[2^k]   records whose id's first k bits are <= b
//	          | u16 fp[count]     bits k..k+15 of each record's id
//	          | pack * npacks     sorted by id, no id twice
//	          | [32]byte superseded index file name * nsupersedes
//	pack    = [32]byte pack id | u32 blobs | u64 end of its last blob
//	trailer = u64 record count | u32 summary length (as stored)
//	          | u32 crc32c(the 12 bytes before) | magic "RCALLIX2"
//
// Records are sorted by id (places of one id in any order); k is
// max(0, bits.Len(count)-5), so a bucket holds 16-32 records. Every size
// follows from the count and the summary length, and the file must be
// exactly that long. The file is named, like every index file, by the
// BLAKE3-256 of its bytes. A reader keeps the newest consolidated file
// (the one no other names as superseded), skips the files it supersedes,
// and reads the remaining version 1 files into the recent part.

const (
	index2Magic      = "RCALLIX2"
	index2Version    = 2
	index2HeaderLen  = 32
	index2RecLen     = 52
	index2PackLen    = 44
	index2TrailerLen = 24
	index2Shift      = 5  // 32 records a block: one read of 1.7 KiB per present lookup
	index2MaxShift   = 10 // a reader's bound on the block it buffers
)

// fanoutBits is the fanout table's k for count records.
func fanoutBits(count int) uint { return uint(max(0, bits.Len(uint(count))-5)) }

// bucketFP splits an id's leading bits into its fanout bucket and its
// 16-bit fingerprint.
func bucketFP(id *ID, k uint) (bucket int, fp uint16) {
	h := binary.BigEndian.Uint64(id[:8])
	if k > 0 {
		bucket = int(h >> (64 - k))
	}
	return bucket, uint16(h << k >> 48)
}

// index2 is an open consolidated file: the summary in memory, the records
// read in place. Immutable once adopted, so lookups need no lock of their
// own.
type index2 struct {
	r       io.ReaderAt
	closer  io.Closer // of r, when the index opened it; or nil
	name    string    // for messages
	aead    bool
	k       *keys
	header  [index2HeaderLen]byte
	count   int
	kbits   uint
	shift   uint
	npacks  int
	fanout  []byte // u32 * 2^k
	fps     []byte // u16 * count
	packs   []byte // pack * npacks
	super   []byte // [32]byte * nsupersedes
	packMap []uint32
	bufs    sync.Pool // *index2Buf
}

type index2Buf struct {
	b  []byte
	ad [24]byte
}

func (b *index2) overhead() int {
	if b.aead {
		return b.k.aead.NonceSize() + b.k.aead.Overhead()
	}
	return 4
}

func (b *index2) blockStored(n int) int64 { return int64(n)*index2RecLen + int64(b.overhead()) }

// blocksLen is where the summary starts, less the header.
func blocksLen(count int, shift uint, overhead int) int64 {
	full, last := int64(count>>shift), int64(count&(1<<shift-1))
	n := full * (int64(1<<shift)*index2RecLen + int64(overhead))
	if last > 0 {
		n += last*index2RecLen + int64(overhead)
	}
	return n
}

func (b *index2) fanoutAt(i int) int { return int(binary.LittleEndian.Uint32(b.fanout[4*i:])) }
func (b *index2) fpAt(i int) uint16  { return binary.LittleEndian.Uint16(b.fps[2*i:]) }
func (b *index2) packID(i int) (id ID) {
	copy(id[:], b.packs[i*index2PackLen:])
	return id
}
func (b *index2) packBlobs(i int) int {
	return int(binary.LittleEndian.Uint32(b.packs[i*index2PackLen+32:]))
}
func (b *index2) packEnd(i int) int64 {
	return int64(binary.LittleEndian.Uint64(b.packs[i*index2PackLen+36:]))
}

// supersedes lists the index files this one replaces.
func (b *index2) supersedes() []ID {
	out := make([]ID, len(b.super)/32)
	for i := range out {
		copy(out[i][:], b.super[32*i:])
	}
	return out
}

func corrupt2(what string, args ...any) error {
	return fmt.Errorf("%w: consolidated index file: %s", ErrCorrupt, fmt.Sprintf(what, args...))
}

// openIndex2 reads the header, trailer and summary of a consolidated
// file of size bytes and checks them; the records are read by lookups.
// r must stay readable while the index uses the file. name is for
// messages. Errors wrap ErrCorrupt when the bytes are bad.
func openIndex2(r io.ReaderAt, size int64, k *keys, name string) (*index2, error) {
	b := &index2{r: r, name: name, k: k, aead: k.aead != nil}
	if size < index2HeaderLen+index2TrailerLen {
		return nil, corrupt2("%d bytes is too short", size)
	}
	if err := readFull(r, b.header[:], 0); err != nil {
		return nil, err
	}
	if string(b.header[:8]) != index2Magic || b.header[8] != index2Version || b.header[9] > index2MaxShift {
		return nil, corrupt2("header")
	}
	b.shift = uint(b.header[9])
	var tr [index2TrailerLen]byte
	if err := readFull(r, tr[:], size-index2TrailerLen); err != nil {
		return nil, err
	}
	if string(tr[16:]) != index2Magic || crc32.Checksum(tr[:12], crcTable) != binary.LittleEndian.Uint32(tr[12:]) {
		return nil, corrupt2("trailer")
	}
	count64 := binary.LittleEndian.Uint64(tr[:])
	slen := int64(binary.LittleEndian.Uint32(tr[8:]))
	if count64 > uint64(size/index2RecLen) || count64 > 1<<32-1 {
		return nil, corrupt2("%d records in %d bytes", count64, size)
	}
	b.count = int(count64)
	sumOff := index2HeaderLen + blocksLen(b.count, b.shift, b.overhead())
	if sumOff+slen+index2TrailerLen != size {
		return nil, corrupt2("%d bytes, its trailer implies %d", size, sumOff+slen+index2TrailerLen)
	}
	stored := b.allocSummary(int(slen))
	if err := readFull(r, stored, sumOff); err != nil {
		return nil, err
	}
	var body []byte
	if b.aead {
		ad := binary.LittleEndian.AppendUint64(slices.Clone(b.header[:]), count64)
		ns := k.aead.NonceSize()
		if len(stored) < ns {
			return nil, corrupt2("summary fails authentication")
		}
		var err error
		// Decrypted in place: the summary is most of the index's memory.
		if body, err = open(k.aead, stored[ns:ns], stored, ad); err != nil {
			return nil, corrupt2("summary fails authentication")
		}
	} else {
		if len(stored) < 4 || crc32.Checksum(stored[:len(stored)-4], crcTable) != binary.LittleEndian.Uint32(stored[len(stored)-4:]) {
			return nil, corrupt2("summary checksum")
		}
		body = stored[:len(stored)-4]
	}
	if err := b.parseSummary(body); err != nil {
		return nil, err
	}
	b.bufs.New = func() any {
		return &index2Buf{b: make([]byte, b.blockStored(1<<b.shift))}
	}
	return b, nil
}

// hugeSummary is the summary size from which it gets its own mapping.
const hugeSummary = 8 << 20

// allocSummary returns a buffer for the summary. A large one is mapped
// apart from the Go heap and asks for transparent huge pages: lookups
// touch it at random, and with 4 KiB pages nearly each one also misses
// the TLB (at 5·10^7 chunks the summary is ~200 MB; in 2 MiB pages its
// page table fits the TLB). The mapping is unmapped when b is collected.
// Memory the kernel refuses is taken from the heap instead.
func (b *index2) allocSummary(n int) []byte {
	if n < hugeSummary {
		return make([]byte, n)
	}
	m, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, n)
	}
	unix.Madvise(m, unix.MADV_HUGEPAGE) // a hint: without it, 4 KiB pages
	runtime.AddCleanup(b, func(m []byte) { unix.Munmap(m) }, m)
	return m
}

func (b *index2) parseSummary(body []byte) error {
	if len(body) < 9 {
		return corrupt2("summary length")
	}
	b.kbits = uint(body[0])
	if b.kbits != fanoutBits(b.count) {
		return corrupt2("fanout of %d bits for %d records", b.kbits, b.count)
	}
	np := int64(binary.LittleEndian.Uint32(body[1:]))
	ns := int64(binary.LittleEndian.Uint32(body[5:]))
	want := 9 + 4<<b.kbits + 2*int64(b.count) + np*index2PackLen + 32*ns
	if int64(len(body)) != want {
		return corrupt2("summary is %d bytes, its counts imply %d", len(body), want)
	}
	b.npacks = int(np)
	rest := body[9:]
	cut := func(n int) []byte { s := rest[:n:n]; rest = rest[n:]; return s }
	b.fanout = cut(4 << b.kbits)
	b.fps = cut(2 * b.count)
	b.packs = cut(b.npacks * index2PackLen)
	b.super = cut(len(rest))
	// Every bound a lookup relies on is checked here, once: buckets in
	// order and ending at count, fingerprints sorted within each.
	prev := 0
	for i := range 1 << b.kbits {
		end := b.fanoutAt(i)
		if end < prev || end > b.count {
			return corrupt2("fanout entry %d", i)
		}
		for j := prev + 1; j < end; j++ {
			if b.fpAt(j) < b.fpAt(j-1) {
				return corrupt2("fingerprints out of order at record %d", j)
			}
		}
		prev = end
	}
	if prev != b.count {
		return corrupt2("fanout ends at %d of %d records", prev, b.count)
	}
	blobs := 0
	for i := range b.npacks {
		if i > 0 && bytes.Compare(b.packs[(i-1)*index2PackLen:i*index2PackLen-12], b.packs[i*index2PackLen:(i+1)*index2PackLen-12]) >= 0 {
			return corrupt2("pack table out of order at %d", i)
		}
		blobs += b.packBlobs(i)
	}
	if blobs != b.count {
		return corrupt2("pack table counts %d blobs, the file has %d records", blobs, b.count)
	}
	return nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return corrupt2("short read at %d", off)
	}
	return err
}

// blockRecs is the number of records in block blk (0 past the end).
func (b *index2) blockRecs(blk int) int {
	return max(0, min(1<<b.shift, b.count-blk<<b.shift))
}

func (b *index2) blockOff(blk int) int64 {
	return index2HeaderLen + int64(blk)*b.blockStored(1<<b.shift)
}

// readBlock reads and checks block blk into buf and returns its records.
func (b *index2) readBlock(blk int, buf *index2Buf) ([]byte, error) {
	n := b.blockRecs(blk)
	if blk < 0 || n == 0 {
		return nil, corrupt2("block %d", blk)
	}
	stored := buf.b[:b.blockStored(n)]
	if err := readFull(b.r, stored, b.blockOff(blk)); err != nil {
		return nil, err
	}
	return b.openBlock(blk, stored, &buf.ad)
}

// openBlock checks (or decrypts in place) block blk's stored bytes and
// returns its records.
func (b *index2) openBlock(blk int, stored []byte, ad *[24]byte) ([]byte, error) {
	if b.aead {
		copy(ad[:16], b.header[16:])
		binary.LittleEndian.PutUint64(ad[16:], uint64(blk))
		ns := b.k.aead.NonceSize()
		recs, err := open(b.k.aead, stored[ns:ns], stored, ad[:])
		if err != nil {
			return nil, corrupt2("block %d fails authentication", blk)
		}
		return recs, nil
	}
	recs := stored[:len(stored)-4]
	binary.LittleEndian.PutUint64(ad[:8], uint64(blk))
	if crc32.Update(crc32.Checksum(ad[:8], crcTable), crcTable, recs) != binary.LittleEndian.Uint32(stored[len(stored)-4:]) {
		return nil, corrupt2("block %d checksum", blk)
	}
	return recs, nil
}

// rec2 is one decoded record.
type rec2 struct {
	e    PackEntry
	pack int // position in the file's pack table
}

func (b *index2) decodeRec(r []byte) (rec2, error) {
	var x rec2
	copy(x.e.ID[:], r)
	x.pack = int(binary.LittleEndian.Uint32(r[32:]))
	x.e.Offset = binary.LittleEndian.Uint32(r[36:])
	x.e.Length = binary.LittleEndian.Uint32(r[40:])
	x.e.RawLength = binary.LittleEndian.Uint32(r[44:])
	x.e.Type, x.e.Comp = BlobType(r[48]), r[49]
	if x.pack >= b.npacks || x.e.Length > maxBlobLen || r[50] != 0 || r[51] != 0 {
		return x, corrupt2("record of blob %s", x.e.ID.Short())
	}
	return x, nil
}

// places calls try with each place of id the file holds until try returns
// true. Absent ids (all but a fingerprint collision) need no read.
func (b *index2) places(id ID, try func(loc) bool) error {
	bucket, fp := bucketFP(&id, b.kbits)
	lo, hi := 0, b.fanoutAt(bucket)
	if bucket > 0 {
		lo = b.fanoutAt(bucket - 1)
	}
	for lo < hi { // the first fingerprint >= fp
		m := int(uint(lo+hi) >> 1)
		if b.fpAt(m) < fp {
			lo = m + 1
		} else {
			hi = m
		}
	}
	end := lo
	for bucketEnd := b.fanoutAt(bucket); end < bucketEnd && b.fpAt(end) == fp; end++ {
	}
	if end == lo {
		return nil
	}
	buf := b.bufs.Get().(*index2Buf)
	defer b.bufs.Put(buf)
	for i := lo; i < end; {
		blk := i >> b.shift
		recs, err := b.readBlock(blk, buf)
		if err != nil {
			return err
		}
		for ; i < end && i>>b.shift == blk; i++ {
			r := recs[(i-blk<<b.shift)*index2RecLen:][:index2RecLen]
			if !bytes.Equal(r[:32], id[:]) {
				continue
			}
			x, err := b.decodeRec(r)
			if err != nil {
				return err
			}
			if try(makeLoc(b.packMap[x.pack], x.e)) {
				return nil
			}
		}
	}
	return nil
}

// scan calls fn with every record in file order, checking that ids are
// sorted and agree with the summary.
func (b *index2) scan(fn func(rec2) error) error {
	// Many blocks a read: a merge reads the whole file in order.
	const perRead = 256
	var buf []byte
	var ad [24]byte
	var prev ID
	bucket := 0
	nblocks := (b.count + 1<<b.shift - 1) >> b.shift
	for first := 0; first < nblocks; first += perRead {
		last := min(nblocks, first+perRead)
		size := b.blockOff(last-1) + b.blockStored(b.blockRecs(last-1)) - b.blockOff(first)
		if int64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		if err := readFull(b.r, buf[:size], b.blockOff(first)); err != nil {
			return err
		}
		for blk := first; blk < last; blk++ {
			at := b.blockOff(blk) - b.blockOff(first)
			recs, err := b.openBlock(blk, buf[at:at+b.blockStored(b.blockRecs(blk))], &ad)
			if err != nil {
				return err
			}
			for j := 0; j < len(recs)/index2RecLen; j++ {
				i := blk<<b.shift + j
				x, err := b.decodeRec(recs[j*index2RecLen:])
				if err != nil {
					return err
				}
				for b.fanoutAt(bucket) <= i {
					bucket++
				}
				if bk, fp := bucketFP(&x.e.ID, b.kbits); bk != bucket || fp != b.fpAt(i) || i > 0 && bytes.Compare(prev[:], x.e.ID[:]) > 0 {
					return corrupt2("record %d disagrees with the summary", i)
				}
				prev = x.e.ID
				if err := fn(x); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// decodeIndex2 reads a whole consolidated file as the packs it lists, for
// what reads index files whole (repair).
func decodeIndex2(b []byte, k *keys) ([]packRecord, []ID, error) {
	x, err := openIndex2(bytes.NewReader(b), int64(len(b)), k, "")
	if err != nil {
		return nil, nil, err
	}
	packs := make([]packRecord, x.npacks)
	for i := range packs {
		packs[i].id = x.packID(i)
	}
	err = x.scan(func(r rec2) error {
		packs[r.pack].entries = append(packs[r.pack].entries, r.e)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return packs, x.supersedes(), nil
}

// index2Writer writes a consolidated file from records given in id order.
type index2Writer struct {
	out     *bufio.Writer
	hash    *blake3.Hasher
	k       *keys
	header  [index2HeaderLen]byte
	count   int
	n       int
	kbits   uint
	body    []byte // the summary body, filled as records come
	fanout  []byte
	fps     []byte
	packs   []ID
	blobs   []uint32
	ends    []uint64
	block   []byte
	sealed  []byte
	nblock  int
	bucket  int // the first bucket whose end is not yet written
	prev    ID
	written int64
	err     error
}

// newIndex2Writer starts a consolidated file of exactly count records of
// the given packs (sorted by id, none twice) that supersedes the named
// index files. The salt must be random (it binds blocks to this file).
func newIndex2Writer(w io.Writer, k *keys, salt [16]byte, count int, packs []ID, supersedes []ID) (*index2Writer, error) {
	for i := 1; i < len(packs); i++ {
		if bytes.Compare(packs[i-1][:], packs[i][:]) >= 0 {
			return nil, fmt.Errorf("consolidated index: pack table not sorted at %d", i)
		}
	}
	if count > 1<<32-1 || len(packs) > 1<<32-1 {
		return nil, fmt.Errorf("consolidated index: %d records in %d packs is more than the format holds", count, len(packs))
	}
	x := &index2Writer{hash: blake3.New(), k: k, count: count, kbits: fanoutBits(count), packs: packs,
		blobs: make([]uint32, len(packs)), ends: make([]uint64, len(packs))}
	x.out = bufio.NewWriterSize(io.MultiWriter(w, x.hash), 1<<20)
	copy(x.header[:], index2Magic)
	x.header[8], x.header[9] = index2Version, index2Shift
	copy(x.header[16:], salt[:])
	size := 9 + 4<<x.kbits + 2*count + len(packs)*index2PackLen + 32*len(supersedes)
	x.body = make([]byte, size, size+16) // room for the seal's tag
	x.body[0] = byte(x.kbits)
	binary.LittleEndian.PutUint32(x.body[1:], uint32(len(packs)))
	binary.LittleEndian.PutUint32(x.body[5:], uint32(len(supersedes)))
	x.fanout = x.body[9 : 9+4<<x.kbits]
	x.fps = x.body[9+4<<x.kbits:][:2*count]
	sup := x.body[size-32*len(supersedes):]
	for i, s := range supersedes {
		copy(sup[32*i:], s[:])
	}
	x.block = make([]byte, 0, index2RecLen<<index2Shift)
	x.write(x.header[:])
	return x, nil
}

func (x *index2Writer) write(p []byte) {
	if x.err == nil {
		_, x.err = x.out.Write(p)
		x.written += int64(len(p))
	}
}

// add appends the record of e in pack (its position in the pack table).
func (x *index2Writer) add(e PackEntry, pack int) error {
	if x.err != nil {
		return x.err
	}
	switch {
	case x.n == x.count:
		return fmt.Errorf("consolidated index: more than the %d records announced", x.count)
	case x.n > 0 && bytes.Compare(x.prev[:], e.ID[:]) > 0:
		return fmt.Errorf("%w: consolidated index: blob %s out of order (a damaged index file?)", ErrCorrupt, e.ID.Short())
	case pack < 0 || pack >= len(x.packs) || e.Length > maxBlobLen:
		return fmt.Errorf("consolidated index: entry %+v of pack %d", e, pack)
	}
	bucket, fp := bucketFP(&e.ID, x.kbits)
	binary.LittleEndian.PutUint16(x.fps[2*x.n:], fp)
	for ; x.bucket < bucket; x.bucket++ { // the buckets before this record's end before it
		binary.LittleEndian.PutUint32(x.fanout[4*x.bucket:], uint32(x.n))
	}
	x.prev = e.ID
	x.n++
	x.blobs[pack]++
	x.ends[pack] = max(x.ends[pack], uint64(e.Offset)+uint64(e.Length))
	var r [index2RecLen]byte
	copy(r[:], e.ID[:])
	binary.LittleEndian.PutUint32(r[32:], uint32(pack))
	binary.LittleEndian.PutUint32(r[36:], e.Offset)
	binary.LittleEndian.PutUint32(r[40:], e.Length)
	binary.LittleEndian.PutUint32(r[44:], e.RawLength)
	r[48], r[49] = byte(e.Type), e.Comp
	x.block = append(x.block, r[:]...)
	if len(x.block) == cap(x.block) {
		x.flushBlock()
	}
	return x.err
}

func (x *index2Writer) flushBlock() {
	if len(x.block) == 0 {
		return
	}
	if x.k.aead != nil {
		var ad [24]byte
		copy(ad[:], x.header[16:])
		binary.LittleEndian.PutUint64(ad[16:], uint64(x.nblock))
		x.sealed = seal(x.k.aead, x.sealed[:0], x.block, ad[:])
		x.write(x.sealed)
	} else {
		var nb [8]byte
		binary.LittleEndian.PutUint64(nb[:], uint64(x.nblock))
		x.write(x.block)
		x.write(binary.LittleEndian.AppendUint32(nb[:0], crc32.Update(crc32.Checksum(nb[:], crcTable), crcTable, x.block)))
	}
	x.block = x.block[:0]
	x.nblock++
}

// finish writes the summary and trailer and returns the file's name (the
// hash of its bytes). The caller makes the file durable.
func (x *index2Writer) finish() (ID, error) {
	if x.err == nil && x.n != x.count {
		x.err = fmt.Errorf("consolidated index: %d records of the %d announced", x.n, x.count)
	}
	x.flushBlock()
	for ; x.bucket < 1<<x.kbits; x.bucket++ {
		binary.LittleEndian.PutUint32(x.fanout[4*x.bucket:], uint32(x.count))
	}
	pt := x.body[9+4<<x.kbits+2*x.count:]
	for i, id := range x.packs {
		p := pt[i*index2PackLen:]
		copy(p, id[:])
		binary.LittleEndian.PutUint32(p[32:], x.blobs[i])
		binary.LittleEndian.PutUint64(p[36:], x.ends[i])
	}
	var slen int
	if a := x.k.aead; a != nil {
		ad := binary.LittleEndian.AppendUint64(slices.Clone(x.header[:]), uint64(x.count))
		nonce := make([]byte, a.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return ID{}, err
		}
		x.write(nonce)
		sealed := a.Seal(x.body[:0], nonce, x.body, ad) // in place: the body is the largest part
		x.write(sealed)
		slen = len(nonce) + len(sealed)
	} else {
		x.write(x.body)
		x.write(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(x.body, crcTable)))
		slen = len(x.body) + 4
	}
	if slen > 1<<32-1 {
		return ID{}, fmt.Errorf("consolidated index: summary of %d bytes is more than the format holds", slen)
	}
	tr := binary.LittleEndian.AppendUint64(nil, uint64(x.count))
	tr = binary.LittleEndian.AppendUint32(tr, uint32(slen))
	tr = binary.LittleEndian.AppendUint32(tr, crc32.Checksum(tr, crcTable))
	x.write(append(tr, index2Magic...))
	if x.err == nil {
		x.err = x.out.Flush()
	}
	if x.err != nil {
		return ID{}, x.err
	}
	var name ID
	x.hash.Sum(name[:0])
	return name, nil
}

// consolidate writes to w one consolidated file of every place the index
// holds (the base merged with the recent part, one linear pass over both)
// and every pack it knows, naming supersedes as the files it replaces;
// it returns the file's name. Lookups and new packs go on meanwhile: the
// places added after the start stay in the recent part when the file is
// adopted (adoptBase), which drops only places of packs the file covers.
// The store calls this under its writer lock, writes the result to
// index/<name> atomically, then opens and adopts it.
func (x *index) consolidate(w io.Writer, k *keys, salt [16]byte, supersedes []ID) (ID, error) {
	return x.consolidateWithout(w, k, salt, supersedes, nil)
}

// leaveOut is what a consolidation by garbage collection leaves out of
// the file it writes.
type leaveOut struct {
	// hide: packs whose places are left out. They stay in the pack table,
	// with no places, so that a reader adopting the file drops the places
	// of them it holds from version 1 files the file supersedes
	// (adoptBase drops the recent places of every pack the file lists),
	// and so that a pack walk does not take them for packs no index
	// covers and index them again.
	hide map[ID]bool
	// keepEmpty, if not nil, says which packs with no place stay in the
	// table; the others are left out. Without it all stay.
	keepEmpty func(ID) bool
	// drop: packs left out whole, their places and their entry in the
	// table: packs found missing that the index is rebuilt without
	// (a file listing a missing pack is one a rebuild removes).
	drop map[ID]bool
}

// consolidateWithout is consolidate leaving out what out says (nil:
// nothing).
func (x *index) consolidateWithout(w io.Writer, k *keys, salt [16]byte, supersedes []ID, out *leaveOut) (ID, error) {
	x.mu.Lock()
	x.compactLocked()
	recent := x.sorted // never changed in place: merges and adoption make new slices
	base := x.base
	packs := slices.Clone(x.packs)
	hidden := make([]bool, len(packs)) // by pack number
	dropped := make([]bool, len(packs))
	for n, id := range packs {
		dropped[n] = out != nil && out.drop[id]
		hidden[n] = x.hidden[uint32(n)] || out != nil && out.hide[id] || dropped[n]
	}
	x.mu.Unlock()
	// Places per pack number, as the file will hold them.
	places := make([]int, len(packs))
	count := 0
	for _, e := range recent {
		if !hidden[e.pack] {
			places[e.pack]++
			count++
		}
	}
	if base != nil {
		for i := range base.npacks {
			if n := base.packMap[i]; !hidden[n] {
				places[n] += base.packBlobs(i)
				count += base.packBlobs(i)
			}
		}
	}
	// Positions in the file's pack table: the packs sorted by id.
	order := make([]uint32, 0, len(packs))
	for i := range packs {
		if dropped[i] || out != nil && out.keepEmpty != nil && places[i] == 0 && !hidden[i] && !out.keepEmpty(packs[i]) {
			continue
		}
		order = append(order, uint32(i))
	}
	slices.SortFunc(order, func(a, b uint32) int { return bytes.Compare(packs[a][:], packs[b][:]) })
	local := make([]uint32, len(packs))
	sortedIDs := make([]ID, len(order))
	for pos, n := range order {
		local[n] = uint32(pos)
		sortedIDs[pos] = packs[n]
	}
	wr, err := newIndex2Writer(w, k, salt, count, sortedIDs, supersedes)
	if err != nil {
		return ID{}, err
	}
	emit := func(e ientry) error {
		if hidden[e.pack] {
			return nil
		}
		return wr.add(e.packEntry(), int(local[e.pack]))
	}
	if base != nil {
		err = base.scan(func(r rec2) error {
			for len(recent) > 0 && bytes.Compare(recent[0].id[:], r.e.ID[:]) < 0 {
				if err := emit(recent[0]); err != nil {
					return err
				}
				recent = recent[1:]
			}
			n := base.packMap[r.pack]
			if hidden[n] {
				return nil
			}
			return wr.add(r.e, int(local[n]))
		})
		if err != nil {
			return ID{}, fmt.Errorf("consolidate index: %w", err)
		}
	}
	for _, e := range recent {
		if err := emit(e); err != nil {
			return ID{}, fmt.Errorf("consolidate index: %w", err)
		}
	}
	return wr.finish()
}

// adoptBase makes b the index's base, replacing the old one: b's packs
// keep their numbers (new ones get new numbers), and the places the
// recent part holds of packs b covers are dropped, b holding them now. A
// pack of the old base that b does not list keeps its number but no
// places (b superseded the file that had them).
func (x *index) adoptBase(b *index2) {
	x.mu.Lock()
	defer x.mu.Unlock()
	b.packMap = make([]uint32, b.npacks)
	if len(x.packs) == 0 {
		// A store's open: the file numbers the packs (its table has no
		// id twice), so no lookup before each insert.
		x.packs = make([]ID, b.npacks)
		x.size = make([]int64, b.npacks)
		x.packNum = make(map[ID]uint32, b.npacks)
		for i := range b.npacks {
			x.packs[i] = b.packID(i)
			x.size[i] = sizeUnknown
			x.packNum[x.packs[i]] = uint32(i)
			b.packMap[i] = uint32(i)
		}
	} else {
		for i := range b.npacks {
			id := b.packID(i)
			n, ok := x.packNum[id]
			if !ok {
				n = x.newPackLocked(id, sizeUnknown)
			}
			b.packMap[i] = n
		}
	}
	// A pack b lists with no place is hidden by garbage collection: the
	// places of it known already stay, for reads only (gc.go).
	covered := make([]bool, len(x.packs))
	clear(x.hidden)
	for i, n := range b.packMap {
		if b.packBlobs(i) == 0 {
			x.hidden[n] = true
		} else {
			covered[n] = true
		}
	}
	keep := func(e ientry) bool { return !covered[e.pack] }
	var sorted []ientry
	for _, e := range x.sorted {
		if keep(e) {
			sorted = append(sorted, e)
		}
	}
	x.sorted = sorted
	x.nrecent = 0
	for id, es := range x.recent {
		es = slices.DeleteFunc(es, func(e ientry) bool { return !keep(e) })
		if len(es) == 0 {
			delete(x.recent, id)
		} else {
			x.recent[id] = es
			x.nrecent += len(es)
		}
	}
	x.base = b
	x.count = b.count + len(x.sorted) + x.nrecent
}

// superseded returns the names of the index files the base replaces: the
// store skips them when it reads index files.
func (x *index) superseded() map[ID]bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[ID]bool{}
	if x.base != nil {
		for _, id := range x.base.supersedes() {
			out[id] = true
		}
	}
	return out
}

// backendReaderAt reads one file of a backend at offsets, each read a
// ranged Load into the caller's buffer: what a consolidated file is read
// in place through, on any backend.
type backendReaderAt struct {
	be backend.Backend
	h  backend.Handle
}

func (r backendReaderAt) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.be.Load(bg, r.h, off, len(p), p)
	n := len(b)
	if n > 0 && &b[0] != &p[0] { // Load allocated after all
		n = copy(p, b)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, io.EOF
	}
	return n, err
}

// openIndex2Backend opens the consolidated file name of be's index files.
// It is read in place while the index uses it: a reader that still has
// it as its base when garbage collection removes it (after the grace
// period) finds its places gone, so collection waits for readers to
// refresh onto the newer file.
//
// A backend that keeps files open (backend.FileOpener: local) is read
// through one open file instead, a pread a lookup, which also keeps the
// file readable for this reader when it is removed; the file is closed
// when the index drops it (a later base replaces it and no lookup holds
// it any more) or when the store closes (closeBase).
func openIndex2Backend(be backend.Backend, name string, k *keys) (*index2, error) {
	h := backend.Handle{Type: backend.Index, Name: name}
	var r io.ReaderAt = backendReaderAt{be, h}
	var c io.Closer
	var size int64
	var err error
	if fo, ok := be.(backend.FileOpener); ok {
		var f backend.ReadAtCloser
		if f, size, err = fo.OpenFile(bg, h); err == nil {
			r, c = f, f
		}
	} else {
		size, err = be.Stat(bg, h)
	}
	if err == nil {
		var b *index2
		if b, err = openIndex2(r, size, k, name); err == nil {
			if c != nil {
				b.closer = c
				runtime.AddCleanup(b, func(c io.Closer) { c.Close() }, c)
			}
			return b, nil
		}
	}
	if c != nil {
		c.Close()
	}
	return nil, fmt.Errorf("open index file %s: %w", name, err)
}

// closeBase closes the base's file, for a store that is closed.
func (x *index) closeBase() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.base != nil && x.base.closer != nil {
		x.base.closer.Close()
	}
}

// isIndex2 tells a consolidated file from a version 1 one by its first
// bytes.
func isIndex2(head []byte) bool {
	return len(head) >= len(index2Magic) && string(head[:len(index2Magic)]) == index2Magic
}

// openBase opens the consolidated index file name of be and makes it the
// index's base (adoptBase). The store calls it when it loads index files,
// before the version 1 files, for the consolidated file no other
// supersedes, and skips the files superseded() names.
func (x *index) openBase(be backend.Backend, name string, k *keys) error {
	b, err := openIndex2Backend(be, name, k)
	if err != nil {
		return err
	}
	x.adoptBase(b)
	return nil
}

// baseName returns the name of the base's file, or "" without a base.
func (x *index) baseName() string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.base == nil {
		return ""
	}
	return x.base.name
}

// consolidateFile writes a consolidated file of the whole index into be's
// index files and adopts it. The file is written through the backend's
// streaming writer when it has one (backend.Create), else saved whole,
// and either way appears atomically under the hash of its bytes: a reader
// never sees it partial. supersedes names the index files it replaces
// (the version 1 files loaded so far and the previous consolidated file);
// they are removed after a grace period by whoever collects garbage, not
// here. The store calls it under the exclusive lock: every writer must
// agree on one base.
func (x *index) consolidateFile(be backend.Backend, k *keys, supersedes []ID, out *leaveOut) (ID, error) {
	fail := func(err error) (ID, error) {
		return ID{}, fmt.Errorf("consolidate the index of %s: %w", be.Location(), err)
	}
	var salt [16]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return fail(err)
	}
	w, err := backend.Create(bg, be, backend.Index)
	if err != nil {
		return fail(err)
	}
	name, err := x.consolidateWithout(w, k, salt, supersedes, out)
	if err != nil {
		w.Abort()
		return fail(err)
	}
	if err := w.Commit(bg, name.String()); err != nil {
		return fail(err)
	}
	if err := x.openBase(be, name.String(), k); err != nil {
		return fail(err)
	}
	return name, nil
}
