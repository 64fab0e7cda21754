package chunkstore

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/cpu"
	"lukechampine.com/blake3/guts"
)

// Hashing a blob while its pieces arrive. A blob read alone (a random read
// through the mount) is read in pieces at once (readDirect), and the disk
// hands them back at about the same time; hashed after the read, as one
// stream, the hash added about 0.3 ms per MiB to a 0.6 ms read. BLAKE3 is
// a tree of 1 KiB chunks, so the blob's hash can be put together from
// hashes of aligned parts of it computed in any order. leafHasher computes
// the chaining value of each 16 KiB leaf (one SIMD call of
// lukechampine.com/blake3/guts) on the goroutine whose piece completes it,
// so the pieces are hashed on both cores as they land, and merges the
// leaves as the BLAKE3 tree does when all are in. The result is BLAKE3-256
// exactly (TestLeafHasher compares it with github.com/zeebo/blake3, which
// hashes small blobs and everything written). Whole direct reads (a
// restore, a reader with loads in flight) are hashed on one goroutine by
// hashWhole: by leaves where the CPU has AVX-512 (the 16-lane leaf
// compressor ran 20-30% faster than zeebo's there), else by zeebo's.

// leavesFaster: whether the leaf compressor hashes a whole blob faster
// than zeebo's hasher. With AVX-512 it does (16 lanes); with AVX2 alone
// it has 8 lanes, and on a 2-vCPU AMD EPYC without AVX-512 it hashed 1 MiB
// at 2.1 GB/s against zeebo's 2.9 GB/s: a restore spent a quarter of its
// CPU in it.
var leavesFaster = cpu.X86.HasAVX512F

// leavesFrom is the smallest blob a store's ids are hashed by leaves for
// (hashWhole). On a 2-vCPU AMD EPYC with AVX-512, one goroutine hashed
// 1 MiB at 3.8-4.0 GB/s by leaves against zeebo's 3.2 GB/s, and 64 KiB at
// 4.1-4.2 against 2.9 GB/s; 16 KiB (a single leaf, its SIMD lanes mostly
// idle) at 1.6 against 2.6 GB/s.
const leavesFrom = 64 << 10

// hashWhole returns the BLAKE3-256 hash of a blob read whole, with the
// faster of the two hashers.
func hashWhole(blob []byte) ID {
	if !leavesFaster {
		return blake3.Sum256(blob)
	}
	h := newLeafHasher(blob, 0, len(blob), len(blob))
	h.arrived(0, len(blob))
	return h.sum()
}

// leafBytes is the size of a leaf: what one SIMD call compresses, an
// aligned subtree of the blob's tree (the last leaf may be shorter).
const leafBytes = guts.MaxSIMD * guts.ChunkSize

var leafPool = sync.Pool{New: func() any { return new([leafBytes]byte) }}

// leafHasher hashes a blob that sits at offset base of a read buffer read
// in pieces of pieceSize bytes.
type leafHasher struct {
	blob  []byte // capacity len(blob): leaves never look past the blob
	base  int
	piece int
	wait  []atomic.Int32 // per leaf: pieces still to arrive
	cvs   [][8]uint32
}

func newLeafHasher(buf []byte, base, length, pieceSize int) *leafHasher {
	n := (length + leafBytes - 1) / leafBytes
	h := &leafHasher{blob: buf[base : base+length : base+length], base: base, piece: pieceSize, wait: make([]atomic.Int32, n), cvs: make([][8]uint32, n)}
	for j := range n {
		lo, hi := base+j*leafBytes, base+min((j+1)*leafBytes, length)
		h.wait[j].Store(int32((hi-1)/pieceSize - lo/pieceSize + 1))
	}
	return h
}

// arrived records that buffer bytes [lo, hi), one whole piece, are in, and
// hashes the leaves that were waiting only for them. Safe to call from the
// goroutines that read the pieces, once per piece.
func (h *leafHasher) arrived(lo, hi int) {
	lo, hi = max(lo-h.base, 0), min(hi-h.base, len(h.blob))
	if lo >= hi {
		return // only alignment padding
	}
	for j := lo / leafBytes; j <= (hi-1)/leafBytes; j++ {
		if h.wait[j].Add(-1) == 0 {
			h.cvs[j] = h.leaf(j)
		}
	}
}

// leaf returns the chaining value of leaf j.
func (h *leafHasher) leaf(j int) [8]uint32 {
	b := h.blob[j*leafBytes:]
	counter := uint64(j * guts.MaxSIMD)
	if len(b) >= leafBytes {
		return guts.ChainingValue(guts.CompressBuffer((*[leafBytes]byte)(b[:leafBytes]), leafBytes, &guts.IV, counter, 0))
	}
	// The last leaf: the SIMD compressor reads a whole leaf's worth.
	buf := leafPool.Get().(*[leafBytes]byte)
	defer leafPool.Put(buf)
	copy(buf[:], b)
	return guts.ChainingValue(guts.CompressBuffer(buf, len(b), &guts.IV, counter, 0))
}

// sum returns the blob's BLAKE3-256 hash. Every piece must have arrived.
func (h *leafHasher) sum() ID {
	if len(h.cvs) < 2 {
		// One leaf is the whole tree: its root is not a parent.
		return blake3.Sum256(h.blob)
	}
	// The leaves are aligned subtrees of equal size, the last one ending
	// the blob: they merge pairwise, level by level, an odd last one
	// moving up as it is, and the last parent is the root.
	cvs := h.cvs
	for len(cvs) > 2 {
		m := len(cvs) / 2
		for i := range m {
			cvs[i] = guts.ChainingValue(guts.ParentNode(cvs[2*i], cvs[2*i+1], &guts.IV, 0))
		}
		if len(cvs)%2 == 1 {
			cvs[m] = cvs[len(cvs)-1]
			m++
		}
		cvs = cvs[:m]
	}
	out := guts.CompressNode(guts.ParentNode(cvs[0], cvs[1], &guts.IV, guts.FlagRoot))
	var id ID
	for i := range 8 {
		binary.LittleEndian.PutUint32(id[4*i:], out[i])
	}
	return id
}
