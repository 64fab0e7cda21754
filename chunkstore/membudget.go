package chunkstore

import (
	"context"
	"sync"
)

// The memory of a store on an object store. A backend that takes a pack
// whole at Commit (one PUT) makes the writer build each pack in memory
// (memPack), and keep it there until its upload returns; a copy reads
// its source's packs through buffers of a span and a chunk. Left to
// themselves these grew with the connections, the writers and the copy's
// readers (a backup held ten 17-24 MiB packs, a copy some thirty buffers),
// and a server runs many of them. So every such buffer is taken from one
// budget per process, objectMemory, of at most MemoryBudget bytes:
//
//   - a pack being built takes a buffer of a whole pack (packBufSize) when
//     it opens and gives it back when its upload returns (or it is
//     aborted); it is closed early rather than grown past that size;
//   - a copy's reader takes a span and a chunk buffer for the pass over
//     one source pack (LoadStoredBlobs), and readers together leave room
//     for two packs, so a reader blocked on a pack buffer always gets one;
//   - a writer that finds the budget spent waits for an upload to return.
//     When none is on its way (every buffer is a pack being built, of
//     this writer or others, or a reader's), it finishes its own open
//     packs of other types first: those uploads free buffers. Nothing
//     ever waits while no upload is on its way, though: when that does
//     not start one, the grant goes past the limit. Holders can wait on
//     each other in too many ways to rule out one by one (several
//     sessions of a server each holding open packs while their copies'
//     readers wait, two goroutines of one writer taking turns at a
//     buffer), and only an upload is sure to give a buffer back; a
//     grant past the limit (Overdrawn counts them) is one buffer more
//     for a while, a wait there would be for ever.
//
// Uploads in flight stay bounded by the connections too (Store.uploads):
// the budget decides how many packs may wait or be built beside them.

// DefaultMemoryBudget is MemoryBudget until SetMemoryBudget: five
// buffers of a 16 MiB pack (17 MiB with room for a last blob and the
// header), so a backup keeps a data and a tree pack open while three
// upload, or a copy reads with two readers while one pack fills and two
// upload. On a Ceph gateway on loopback (BenchmarkS3Upload, and backups
// and copies of the bench's 2.2 GB set) that keeps its eight connections
// as busy as eight uploads at once did, and a backup's peak RSS at about
// 230 MB, a copy's at 190 MB, where 128 MiB gave 270 and 230.
const DefaultMemoryBudget = 96 << 20

// minMemoryBudget is the least SetMemoryBudget sets: a reader and two
// packs of the default size.
const minMemoryBudget = 64 << 20

var objectMemory = newMemBudget(DefaultMemoryBudget)

// SetMemoryBudget bounds the bytes this process holds in buffers on
// their way to or from an object store (the packs being built and
// uploaded, a copy's read buffers) to n, at least 64 MiB. Call it before
// writers start; it is a process-wide setting.
func SetMemoryBudget(n int64) {
	objectMemory.setLimit(max(n, minMemoryBudget))
}

// MemoryBudget returns the bound SetMemoryBudget sets.
func MemoryBudget() int64 {
	objectMemory.mu.Lock()
	defer objectMemory.mu.Unlock()
	return objectMemory.limit
}

// memBudget counts the bytes held against a limit; its waiters are woken
// by every release.
type memBudget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit int64
	// used is what is granted; readers the part of it granted to readers,
	// uploading the part held by packs whose upload is on its way (it
	// will be given back without anyone else's help).
	used, readers, uploading int64
	// peak is the most used has been: what tests check against limit.
	peak int64
	// free keeps pack buffers given back, for the next pack: allocating
	// and zeroing 17 MiB per pack was a steady load on the collector.
	// They are part of used's room: dropped when a grant needs the room,
	// and all of them once nothing is held.
	free      []*[]byte
	freeBytes int64
	// waits, if set, is called (with mu held) each time a grant waits:
	// tests release uploads on it.
	waits func()
	// overdrawn counts the grants made past the limit because no upload
	// was on its way to end a wait.
	overdrawn int64
}

// Overdrawn returns how many buffers were granted past MemoryBudget
// because no upload was on its way to free one (see membudget.go).
func Overdrawn() int64 {
	objectMemory.mu.Lock()
	defer objectMemory.mu.Unlock()
	return objectMemory.overdrawn
}

// wait waits for a release; the caller holds mu.
func (m *memBudget) wait() {
	if m.waits != nil {
		m.waits()
	}
	m.cond.Wait()
}

func newMemBudget(limit int64) *memBudget {
	m := &memBudget{limit: limit}
	m.cond = sync.NewCond(&m.mu)
	return m
}

func (m *memBudget) setLimit(n int64) {
	m.mu.Lock()
	m.limit = n
	m.mu.Unlock()
	m.cond.Broadcast()
}

// fits reports whether n more bytes may be granted; the caller holds mu.
// A grant larger than the whole budget is made when nothing else is held.
func (m *memBudget) fits(n int64) bool {
	return m.used+n <= m.limit || m.used == 0
}

// takePack grants size bytes for a pack buffer and returns the buffer,
// empty, of that capacity. When the budget is spent and no upload is on
// its way, stuck is called (without the budget's lock) to finish packs
// the caller holds open, which starts their uploads; it may be nil. If
// still none is on its way, the grant is made past the limit.
func (m *memBudget) takePack(size int64, stuck func()) *[]byte {
	m.mu.Lock()
	called := false
	for !m.fits(size) {
		if m.uploading == 0 {
			if !called && stuck != nil {
				called = true
				m.mu.Unlock()
				stuck()
				m.mu.Lock()
				continue
			}
			m.overdrawn++
			break
		}
		m.wait()
	}
	m.used += size
	m.peak = max(m.peak, m.used)
	var b *[]byte
	if n := len(m.free); n > 0 && int64(cap(*m.free[n-1])) == size {
		b = m.free[n-1]
		m.free = m.free[:n-1]
		m.freeBytes -= size
	}
	m.trim()
	m.mu.Unlock()
	if b == nil {
		nb := make([]byte, 0, size)
		b = &nb
	}
	return b
}

// trim drops the free buffers that no longer fit beside what is granted;
// the caller holds mu.
func (m *memBudget) trim() {
	for len(m.free) > 0 && m.used+m.freeBytes > m.limit {
		m.freeBytes -= int64(cap(*m.free[0]))
		m.free = m.free[1:]
	}
}

// uploadingPack says a pack buffer of size bytes is on its way back
// (its upload started).
func (m *memBudget) uploadingPack(size int64) {
	m.mu.Lock()
	m.uploading += size
	m.mu.Unlock()
}

// putPack gives back a pack buffer granted by takePack; uploading says
// whether uploadingPack was called for it.
func (m *memBudget) putPack(b *[]byte, size int64, uploading bool) {
	m.mu.Lock()
	m.used -= size
	if uploading {
		m.uploading -= size
	}
	if m.used == 0 {
		m.free, m.freeBytes = nil, 0
	} else if int64(cap(*b)) == size && m.used+m.freeBytes+size <= m.limit {
		*b = (*b)[:0]
		m.free = append(m.free, b)
		m.freeBytes += size
	}
	m.mu.Unlock()
	m.cond.Broadcast()
}

// takeReader grants n bytes to a reader, leaving room for reserve bytes
// of packs beside all readers (at least one reader is let in). A done
// ctx ends the wait with ctx's error.
func (m *memBudget) takeReader(ctx context.Context, n, reserve int64) error {
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for !(m.fits(n) && (m.readers == 0 || m.readers+n <= m.limit-reserve)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if m.readers == 0 && m.uploading == 0 {
			// Only packs being built hold the budget, and their
			// writers may be waiting for this reader's blobs.
			m.overdrawn++
			break
		}
		m.wait()
	}
	m.used += n
	m.peak = max(m.peak, m.used)
	m.trim()
	m.readers += n
	return nil
}

// putReader gives back what takeReader granted.
func (m *memBudget) putReader(n int64) {
	m.mu.Lock()
	m.used -= n
	m.readers -= n
	if m.used == 0 {
		m.free, m.freeBytes = nil, 0
	}
	m.mu.Unlock()
	m.cond.Broadcast()
}
