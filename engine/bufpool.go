package engine

import (
	"context"
	"sync"

	"github.com/recall-backup/recall/internal/bufpool"
)

type chunkBuf struct {
	b []byte
	w int64
}

type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int64
	pool *bufpool.Pool
}

func newBudget(n int64) *budget {
	b := &budget{free: n, pool: bufpool.New(8)}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (bg *budget) get(ctx context.Context, n int) (*chunkBuf, error) {
	w := int64(bufpool.Class(n))
	bg.mu.Lock()
	for bg.free < w {
		if ctx.Err() != nil {
			bg.mu.Unlock()
			return nil, context.Cause(ctx)
		}
		bg.cond.Wait()
	}
	bg.free -= w
	bg.mu.Unlock()
	return &chunkBuf{b: bg.pool.Get(n)[:n], w: w}, nil
}

func (bg *budget) put(cb *chunkBuf) {
	bg.pool.Put(cb.b)
	bg.mu.Lock()
	bg.free += cb.w
	bg.mu.Unlock()
	bg.cond.Broadcast()
}

func (bg *budget) wake() { bg.cond.Broadcast() }
