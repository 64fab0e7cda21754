package engine

import (
	"context"
	"sync"

	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/recall-backup/recall/chunkstore"
)

// StoreReader is the part of a chunk store that reading needs: blobs,
// packs, points and the store's facts, and nothing that writes. A Reader
// reads through it, so restore, verify and the recovery tree, which get a
// Reader, cannot reach a write method: locking, saving a point and
// removing one are not in this method set.
//
// Some reads record what they find (a blob that fails its check is
// recorded as damage, in chunkstore): that is the store's bookkeeping of
// its own health, not a change to any point.
type StoreReader interface {
	// LoadBlob returns the verified plaintext of a blob, in dst's storage
	// when it is large enough (see ChunkBuffer and LoadSize).
	LoadBlob(id chunkstore.ID, dst []byte) ([]byte, error)
	// LoadSize is the dst capacity with which LoadBlob fills dst instead
	// of allocating, or 0 if unknown.
	LoadSize(id chunkstore.ID) int
	// ChunkBuffer returns a buffer any data chunk loads into without
	// allocating.
	ChunkBuffer() []byte
	Has(id chunkstore.ID) bool
	BlobStatus(id chunkstore.ID) (chunkstore.ID, error)
	PackOf(id chunkstore.ID) (chunkstore.ID, bool)
	DamagedBlobs() []chunkstore.DamagedBlob

	Packs() []chunkstore.PackInfo
	ListPacks(fn func(id chunkstore.ID, size int64) error) error
	HasPackFile(id chunkstore.ID) bool
	ReadPackHeader(id chunkstore.ID) ([]chunkstore.PackEntry, error)
	CheckPack(id chunkstore.ID) (*chunkstore.PackCheck, error)
	// LoadPackBlobs reads blobs of one pack in one pass (restore's plan).
	LoadPackBlobs(ctx context.Context, pack chunkstore.ID, ids []chunkstore.ID, fn func(id chunkstore.ID, data []byte, err error)) error
	// WarmPacks asks a cold backend for packs about to be read.
	WarmPacks(ctx context.Context, packs []chunkstore.ID) error
	DamagedPacks() ([]chunkstore.PackProblem, error)

	ListPoints() ([]chunkstore.ID, error)
	LoadPoint(id chunkstore.ID) ([]byte, error)
	// Refresh picks up index files written since the store was opened.
	Refresh() error

	Dir() string
	Encrypted() bool
	ConfigProblem() string
	Hash(data []byte) chunkstore.ID
	NewChunker(rd io.Reader) *chunkstore.Chunker
	MinChunk() int
	MaxChunk() int
}

var _ StoreReader = (*chunkstore.Store)(nil)

// Reader is read-only access to recovery points: what restore, verify and
// the recovery tree get. It never writes to the store; write access is a
// Session, which only taking the lock hands out. Its methods may be called
// from many goroutines at once.
type Reader struct {
	st StoreReader

	mu    sync.Mutex
	known map[chunkstore.ID]*Point // see knownPoints
}

// NewReader reads through st: an open *chunkstore.Store, of which it
// uses the read methods only, or a wrapper of one (a test's fault
// injection, a cache).
func NewReader(st StoreReader) *Reader { return &Reader{st: st} }

// LoadTree reads and decodes a tree blob.
func (r *Reader) LoadTree(id chunkstore.ID) (*Tree, error) {
	b, err := r.st.LoadBlob(id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id.Short(), err)
	}
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	return t, nil
}

// ReadChunk returns the plaintext of one data chunk, using dst's storage
// when it is large enough. The bytes are verified against id.
func (r *Reader) ReadChunk(id chunkstore.ID, dst []byte) ([]byte, error) {
	return r.st.LoadBlob(id, dst)
}

// ChunkSize is the dst capacity with which ReadChunk(id, dst) fills dst
// instead of allocating, or 0 if unknown.
func (r *Reader) ChunkSize(id chunkstore.ID) int { return r.st.LoadSize(id) }

// ListPoints returns the ids of all committed points, sorted by id.
func (r *Reader) ListPoints() ([]chunkstore.ID, error) { return r.st.ListPoints() }

// Refresh picks up index files written by backups since the store was
// opened, so points committed meanwhile can be read.
func (r *Reader) Refresh() error {
	return r.st.Refresh()
}

// PointsStamp is a cheap value that changes whenever a point is added or
// removed: the change stamp of the store's points directory, where a
// manifest is added or removed by a rename or unlink, which changes its
// mtime and ctime. Timestamps are coarse (a clock tick), so two changes in
// one tick may share a stamp; a caller that must not miss one lists the
// points now and then as well.
func (r *Reader) PointsStamp() (string, error) {
	var st syscall.Stat_t
	p := filepath.Join(r.st.Dir(), "points")
	if err := syscall.Stat(p, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return fmt.Sprintf("%d.%d/%d.%d/%d/%d", st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Size, st.Ino), nil
}
