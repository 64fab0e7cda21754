package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/atomicfile"
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

// The home's record of verify --read-data-share runs made without a run
// number (verify-share.json): {"version": 1, "last_run": K}. The next such
// run is K+1, so that any ceil(100/P) of them in a row read every pack.
const shareRunFile = "verify-share.json"

type shareRunRecord struct {
	Version int    `json:"version"`
	LastRun uint64 `json:"last_run"`
}

// NextShareRun returns the run number of the next verify of a share
// that is given none: one after the last RecordShareRun recorded in
// home, 0 when none was (or the record cannot be read: a run that reads
// some share is better than none, and the record is written anew).
func NextShareRun(home string) uint64 {
	b, err := os.ReadFile(filepath.Join(home, shareRunFile))
	if err != nil {
		return 0
	}
	var r shareRunRecord
	if json.Unmarshal(b, &r) != nil || r.Version != 1 {
		return 0
	}
	return r.LastRun + 1
}

// RecordShareRun records in home that run was made.
func RecordShareRun(home string, run uint64) error {
	b, _ := json.Marshal(shareRunRecord{Version: 1, LastRun: run})
	if err := atomicfile.Write(filepath.Join(home, shareRunFile), b, 0o600); err != nil {
		return fmt.Errorf("record the read-data run made: %w", err)
	}
	return nil
}
