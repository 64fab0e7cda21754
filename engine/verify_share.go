package engine

import (
	"encoding/binary"

	"github.com/recall-backup/recall/chunkstore"
)

// ReadShare makes Verify's ReadData read a share of the packs, so that a
// check that runs often reads the whole store over several runs instead
// of all of it each time. The packs are put in Buckets() buckets by their
// id (the hash of their bytes, so the buckets are even and a pack stays in
// its bucket); run number Run reads bucket Run mod Buckets(). Any
// Buckets() runs in a row read every pack present at the first of them.
//
// The share is of all the packs in the store, not only of those the
// verified points use: finding which packs a set of points uses costs a
// walk of their trees before any pack is read, and a pack of another
// group read here is damage found all the same.
type ReadShare struct {
	// Percent is the share of packs read per run, 1 to 100; 0 or 100
	// reads every pack. With a Percent that does not divide 100 a run
	// reads 1/ceil(100/Percent) of the packs: every pack is still read
	// within ceil(100/Percent) runs.
	Percent int
	Run     uint64
}

// Buckets is the number of runs within which every pack is read.
func (s ReadShare) Buckets() int {
	if s.Percent <= 0 || s.Percent >= 100 {
		return 1
	}
	return (100 + s.Percent - 1) / s.Percent
}

// Reads reports whether the run reads pack id.
func (s ReadShare) Reads(id chunkstore.ID) bool {
	n := uint64(s.Buckets())
	return n == 1 || packBucket(id, n) == s.Run%n
}

// packBucket is the bucket of pack id among n.
func packBucket(id chunkstore.ID, n uint64) uint64 {
	return binary.BigEndian.Uint64(id[:8]) % n
}
