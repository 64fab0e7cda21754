package fs

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/recall-backup/recall/engine"
)

// seqWindow: a read starting this close to where the previous one ended
// counts as sequential. The kernel issues readahead requests in parallel,
// so they arrive slightly out of order.
const seqWindow = 4 << 20

// ErrDamaged marks a read that failed because stored data is missing or
// damaged; the adapter answers EIO.
var ErrDamaged = errors.New("damaged or missing data")

// Handle is an open file. Its methods may be called concurrently: the
// sequential-read state is kept in atomics, not under a lock.
type Handle struct {
	e     *Entry
	next  atomic.Int64 // where the previous read ended
	ahead atomic.Int64 // highest extent index a prefetch was started for
	done  atomic.Int64 // extents below this index were dropped behind the reader
}

// Open returns a handle for reading a regular file or device image.
func (e *Entry) Open() (*Handle, error) {
	if e.n == nil || !e.n.Type.HasContent() {
		return nil, syscall.EISDIR
	}
	h := &Handle{e: e}
	h.ahead.Store(-1)
	return h, nil
}

// Entry returns the handle's entry.
func (h *Handle) Entry() *Entry { return h.e }

// ReadAt fills p from offset off and returns how many bytes it read: fewer
// than len(p) only at the end of the file. It never returns bytes other
// than the ones backed up: a chunk that cannot be read or verified fails
// the whole read with an error wrapping ErrDamaged, and is logged with the
// point and path.
func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	v, err := h.ReadVec(off, len(p))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range v.Bufs {
		n += copy(p[n:], b)
	}
	v.Release()
	return n, nil
}

// Vec is the result of ReadVec: the bytes read, as slices of cached
// chunks (and of a shared zero buffer for holes). The slices are shared,
// must not be modified, and are valid until Release.
type Vec struct {
	Bufs [][]byte
	held []*chunk
}

// Release lets go of the chunks v's slices point into. Call it once.
func (v *Vec) Release() {
	for _, c := range v.held {
		c.release()
	}
	v.held = nil
}

// zeros backs holes in ReadVec results; never written.
var zeros = make([]byte, 1<<20)

// ReadVec is ReadAt without copying: it returns up to size bytes from
// off. The caller must Release the result.
func (h *Handle) ReadVec(off int64, size int) (*Vec, error) {
	return h.readVec(off, size, true)
}

// readVec is ReadVec; with report false a damaged chunk is not logged
// (for reads ahead of the reader, which the reader's own read reports).
func (h *Handle) readVec(off int64, size int, report bool) (*Vec, error) {
	n := h.e.n
	if off < 0 || size < 0 {
		return nil, syscall.EINVAL
	}
	fsize := int64(n.Size)
	if off >= fsize || size == 0 {
		return &Vec{}, nil
	}
	end := min(off+int64(size), fsize)
	t := h.e.p.t
	v := &Vec{Bufs: make([][]byte, 0, 2)}
	hole := func(k int64) {
		for k > 0 {
			c := min(k, int64(len(zeros)))
			v.Bufs = append(v.Bufs, zeros[:c:c])
			k -= c
		}
	}
	i := n.ExtentAt(uint64(off))
	for pos := off; pos < end; i++ {
		if i >= len(n.Extents) {
			hole(end - pos) // size beyond the last extent: a sparse tail
			break
		}
		x := n.Extents[i]
		start := int64(n.ExtentStart(i))
		stop := min(int64(x.End), end)
		if x.Hole {
			hole(stop - pos)
		} else {
			c, err := t.chunks.get(x.ID)
			if err == nil {
				v.held = append(v.held, c)
				if int64(len(c.b)) != int64(x.End)-start {
					err = fmt.Errorf("chunk %s holds %d bytes, the tree says %d", x.ID.Short(), len(c.b), int64(x.End)-start)
				}
			}
			if err != nil {
				v.Release()
				if report {
					t.opts.Log("error: %s: read at offset %d: %v", h.e.where(), pos, err)
				}
				return nil, fmt.Errorf("%s: offset %d: %w: %v", h.e.where(), pos, ErrDamaged, err)
			}
			v.Bufs = append(v.Bufs, c.b[pos-start:stop-start:stop-start])
		}
		pos = stop
	}
	prev := h.next.Swap(end)
	if t.opts.Prefetch > 0 && (off == 0 || (off >= prev-seqWindow && off <= prev+seqWindow)) {
		h.prefetch(n.ExtentAt(uint64(end-1)) + 1)
		h.dropBehind(off - seqWindow)
	}
	return v, nil
}

// dropBehind takes the chunks that end before off out of the cache: a
// sequential reader is past them and the kernel's page cache has their
// bytes. A large file read from start to end so does not push everything
// else out of the cache, and its buffers are reused at once. The margin
// the caller leaves covers the kernel's readahead requests, which arrive
// slightly out of order.
func (h *Handle) dropBehind(off int64) {
	n := h.e.n
	t := h.e.p.t
	for {
		i := h.done.Load()
		if i >= int64(len(n.Extents)) || int64(n.Extents[i].End) > off {
			return
		}
		if !h.done.CompareAndSwap(i, i+1) {
			continue
		}
		if x := n.Extents[i]; !x.Hole {
			t.chunks.remove(x.ID)
		}
	}
}

// dropCached takes the file's chunks out of the cache: the caller knows
// the kernel holds the whole content (it was stored in the kernel's cache),
// so keeping them would only crowd out others, and their buffers are
// reused at once instead of new ones being allocated.
func (h *Handle) dropCached() {
	for _, x := range h.e.n.Extents {
		if !x.Hole {
			h.e.p.t.chunks.remove(x.ID)
		}
	}
}

// prefetch starts loads of extents from..from+Prefetch-1 that no earlier
// prefetch of this handle started, as far as the global prefetch limit
// allows. Errors are left for the read that needs the chunk to report.
func (h *Handle) prefetch(from int) {
	n := h.e.n
	t := h.e.p.t
	last := min(from+t.opts.Prefetch, len(n.Extents))
	for i := from; i < last; i++ {
		cur := h.ahead.Load()
		if int64(i) <= cur {
			continue
		}
		x := n.Extents[i]
		if x.Hole || t.chunks.has(x.ID) {
			h.ahead.CompareAndSwap(cur, int64(i))
			continue
		}
		select {
		case t.prefetchSem <- struct{}{}:
		default:
			return // busy: a later read tries again
		}
		if !h.ahead.CompareAndSwap(cur, int64(i)) {
			<-t.prefetchSem
			continue
		}
		go func(x engine.Extent) {
			defer func() { <-t.prefetchSem }()
			if c, err := t.chunks.get(x.ID); err == nil {
				c.release()
			}
		}(x)
	}
}

// NextData returns the first offset at or after off that holds data, as
// lseek(2) SEEK_DATA does: syscall.ENXIO when off is at or past the end
// of the file or only holes follow it. Holes are the regions the point
// recorded as such: holes of the sparse file, and chunks of zeroes that
// the backup did not store.
func (e *Entry) NextData(off uint64) (uint64, error) {
	n, err := e.content(off)
	if err != nil {
		return 0, err
	}
	for i := n.ExtentAt(off); i < len(n.Extents) && n.ExtentStart(i) < n.Size; i++ {
		if !n.Extents[i].Hole {
			return max(off, n.ExtentStart(i)), nil
		}
	}
	return 0, syscall.ENXIO
}

// NextHole returns the first offset at or after off that lies in a hole,
// as lseek(2) SEEK_HOLE does: the end of the file counts as one, and off
// at or past it is syscall.ENXIO. A size beyond the last extent is a hole
// (a sparse tail).
func (e *Entry) NextHole(off uint64) (uint64, error) {
	n, err := e.content(off)
	if err != nil {
		return 0, err
	}
	for i := n.ExtentAt(off); i < len(n.Extents); i++ {
		if n.Extents[i].Hole {
			return min(max(off, n.ExtentStart(i)), n.Size), nil
		}
	}
	var tail uint64 // where the extents end
	if k := len(n.Extents); k > 0 {
		tail = n.Extents[k-1].End
	}
	return max(off, min(tail, n.Size)), nil
}

// content returns the node of a file or device image to seek in from off.
func (e *Entry) content(off uint64) (*engine.Node, error) {
	if e.n == nil || !e.n.Type.HasContent() {
		return nil, syscall.EINVAL
	}
	if off >= e.n.Size {
		return nil, syscall.ENXIO
	}
	return e.n, nil
}
