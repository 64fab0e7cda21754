package fs

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// chunk is a decoded data chunk held by the chunk cache and by reads in
// flight. Its memory goes back to the pool when the last holder lets go:
// the cache when it evicts the chunk, a read when the kernel has the
// reply.
type chunk struct {
	b    []byte // the chunk's bytes
	mem  []byte // pooled storage b lives in; nil when not pooled
	pool *bufPool
	refs atomic.Int32
}

func (c *chunk) hold() { c.refs.Add(1) }

func (c *chunk) release() {
	switch n := c.refs.Add(-1); {
	case n == 0 && c.mem != nil:
		c.pool.put(c.mem)
		c.mem, c.b = nil, nil
	case n < 0:
		panic("fs: chunk released more often than held")
	}
}

// bufClass rounds n up to a pooled buffer size: eight sizes per doubling,
// so a buffer is at most 12.5% larger than asked for, and chunks (whose
// sizes vary continuously) still find buffers freed by others.
func bufClass(n int) int {
	if n <= 4096 {
		return 4096
	}
	shift := bits.Len(uint(n-1)) - 4
	return ((n-1)>>shift + 1) << shift
}

// bufPool keeps freed chunk buffers by size class, up to max idle bytes.
// Reusing them saves allocating and zeroing a buffer per chunk read,
// which was a tenth of the cost of a first read through the mount.
type bufPool struct {
	mu   sync.Mutex
	free map[int][][]byte // by capacity
	idle int64
	max  int64
}

func newBufPool(max int64) *bufPool { return &bufPool{free: map[int][][]byte{}, max: max} }

// get returns a buffer of capacity >= n: a free one of n's size class or
// the next, else a new one.
func (p *bufPool) get(n int) []byte {
	size := bufClass(n)
	p.mu.Lock()
	for _, c := range [2]int{size, bufClass(size + 1)} {
		if l := p.free[c]; len(l) > 0 {
			b := l[len(l)-1]
			p.free[c] = l[:len(l)-1]
			p.idle -= int64(c)
			p.mu.Unlock()
			return b
		}
	}
	p.mu.Unlock()
	return make([]byte, size)
}

func (p *bufPool) put(b []byte) {
	b = b[:cap(b)]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle+int64(len(b)) > p.max {
		return // let the GC have it
	}
	p.free[len(b)] = append(p.free[len(b)], b)
	p.idle += int64(len(b))
}
