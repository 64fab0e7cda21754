package fs

import (
	"errors"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// Backend is what the tree reads. Every method may be called from many
// goroutines at once. Returned trees and points are shared and must not be
// modified; ReadChunk returns bytes the caller owns (dst's storage when it
// is large enough).
type Backend interface {
	// ListPoints returns the ids of all committed points, in any order.
	ListPoints() ([]chunkstore.ID, error)
	// LoadPoint reads one manifest; a forgotten point gives an error
	// wrapping chunkstore.ErrNotFound.
	LoadPoint(id chunkstore.ID) (*engine.Point, error)
	// LoadTree reads and decodes one directory tree.
	LoadTree(id chunkstore.ID) (*engine.Tree, error)
	// ReadChunk returns the verified plaintext of a data chunk.
	ReadChunk(id chunkstore.ID, dst []byte) ([]byte, error)
	// Refresh makes chunks of points committed since the last call
	// readable. Called before new points are shown.
	Refresh() error
}

// Stamper is an optional Backend method: a cheap value that changes
// whenever a point is added or removed (it may also change otherwise).
// The tree uses it to notice new points between polls without listing.
type Stamper interface {
	PointsStamp() (string, error)
}

// NewEngineBackend adapts a read-only engine.Reader.
func NewEngineBackend(r *engine.Reader) Backend { return engineBackend{r} }

type engineBackend struct{ r *engine.Reader }

func (b engineBackend) ListPoints() ([]chunkstore.ID, error) { return b.r.ListPoints() }
func (b engineBackend) LoadPoint(id chunkstore.ID) (*engine.Point, error) {
	return b.r.LoadPoint(id)
}
func (b engineBackend) LoadTree(id chunkstore.ID) (*engine.Tree, error) { return b.r.LoadTree(id) }
func (b engineBackend) ReadChunk(id chunkstore.ID, dst []byte) ([]byte, error) {
	out, err := b.r.ReadChunk(id, dst)
	if errors.Is(err, chunkstore.ErrNotFound) && b.r.Refresh() == nil {
		// Garbage collection may have moved the chunk to a new pack
		// since this mount last read the index: the new index files
		// say where. Still missing, the read fails (EIO, logged).
		out, err = b.r.ReadChunk(id, dst)
	}
	return out, err
}
func (b engineBackend) Refresh() error                { return b.r.Refresh() }
func (b engineBackend) PointsStamp() (string, error)  { return b.r.PointsStamp() }
func (b engineBackend) LoadSize(id chunkstore.ID) int { return b.r.ChunkSize(id) }

// LoadSizer is an optional Backend method: the dst capacity with which
// ReadChunk(id, dst) fills dst instead of allocating, or 0 if unknown.
// With it the tree reuses chunk buffers instead of allocating (and
// zeroing) one per chunk read.
type LoadSizer interface {
	LoadSize(id chunkstore.ID) int
}
