package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/atomicfile"
	"golang.org/x/sys/unix"
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
// number (verify-share.json): {"version": 1, "last_run": K, "running":
// [{"run": R, "pid": P}, ...]}. The next such run is one after K and
// after every run still running (a process of that pid lives), so that
// any ceil(100/P) runs in a row read every pack, and two at once read two
// shares, not one twice. "running" is optional (older records lack it).
const shareRunFile = "verify-share.json"

type shareRunRecord struct {
	Version int            `json:"version"`
	LastRun *uint64        `json:"last_run,omitempty"` // nil: none made yet
	Running []shareRunning `json:"running,omitempty"`
}

// next is the run after the last one made: 0 when none was.
func (r *shareRunRecord) next() uint64 {
	if r.LastRun == nil {
		return 0
	}
	return *r.LastRun + 1
}

type shareRunning struct {
	Run uint64 `json:"run"`
	Pid int    `json:"pid"`
}

// NextShareRun returns the run number of the next verify of a share
// that is given none: one after the last RecordShareRun recorded in
// home, 0 when none was (or the record cannot be read: a run that reads
// some share is better than none, and the record is written anew).
func NextShareRun(home string) uint64 {
	r, _ := readShareRuns(home)
	return r.next()
}

func readShareRuns(home string) (shareRunRecord, bool) {
	var r shareRunRecord
	b, err := os.ReadFile(filepath.Join(home, shareRunFile))
	if err != nil || json.Unmarshal(b, &r) != nil || r.Version != 1 {
		return shareRunRecord{Version: 1}, false
	}
	return r, true
}

// withShareRuns runs fn on the home's record under an exclusive lock of
// it (verify-share.lock), and writes what fn leaves.
func withShareRuns(home string, fn func(r *shareRunRecord)) error {
	f, err := os.OpenFile(filepath.Join(home, "verify-share.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record the read-data run: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("record the read-data run: lock %s: %w", f.Name(), err)
	}
	r, _ := readShareRuns(home)
	fn(&r)
	r.Version = 1
	b, _ := json.Marshal(r)
	if err := atomicfile.Write(filepath.Join(home, shareRunFile), b, 0o600); err != nil {
		return fmt.Errorf("record the read-data run made: %w", err)
	}
	return nil
}

// ClaimShareRun takes the run number of a verify of a share that is given
// none: one after the last run recorded and after every run still
// running, recorded as running under this process until ShareRunDone.
func ClaimShareRun(home string) (uint64, error) {
	var run uint64
	err := withShareRuns(home, func(r *shareRunRecord) {
		run = r.next()
		live := r.Running[:0]
		for _, x := range r.Running {
			if x.Pid > 0 && unix.Kill(x.Pid, 0) != unix.ESRCH {
				live = append(live, x)
				run = max(run, x.Run+1)
			}
		}
		r.Running = append(live, shareRunning{Run: run, Pid: os.Getpid()})
	})
	return run, err
}

// ShareRunDone ends a run ClaimShareRun gave: no longer running, and, when
// made (its share was read), the last run unless a later one is.
func ShareRunDone(home string, run uint64, made bool) error {
	return withShareRuns(home, func(r *shareRunRecord) {
		r.Running = slices.DeleteFunc(r.Running, func(x shareRunning) bool { return x.Run == run && x.Pid == os.Getpid() })
		if made && (r.LastRun == nil || run > *r.LastRun) {
			r.LastRun = &run
		}
	})
}
