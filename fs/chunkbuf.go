package fs

import (
	"sync/atomic"

	"github.com/recall-backup/recall/internal/bufpool"
)

// chunk is a decoded data chunk held by the chunk cache and by reads in
// flight. Its memory goes back to the pool when the last holder lets go:
// the cache when it evicts the chunk, a read when the kernel has the
// reply.
type chunk struct {
	b    []byte // the chunk's bytes
	mem  []byte // pooled storage b lives in; nil when not pooled
	pool *bufpool.Pool
	refs atomic.Int32
}

func (c *chunk) hold() { c.refs.Add(1) }

func (c *chunk) release() {
	switch n := c.refs.Add(-1); {
	case n == 0 && c.mem != nil:
		c.pool.Put(c.mem)
		c.mem, c.b = nil, nil
	case n < 0:
		panic("fs: chunk released more often than held")
	}
}
