package engine

import (
	"context"
	"math/bits"
	"sync"
)

// Chunk buffers come in power-of-two classes from 64 KiB to 8 MiB and are
// bounded by a byte budget, so a backup holds at most that many chunk
// bytes in flight however many files it reads at once.

const (
	minBufShift = 16 // 64 KiB
	maxBufShift = 23 // 8 MiB
)

type chunkBuf struct {
	b     []byte
	shift int
}

var bufClasses [maxBufShift + 1]sync.Pool

func bufShift(n int) int {
	if n <= 1<<minBufShift {
		return minBufShift
	}
	return bits.Len(uint(n - 1))
}

// budget is a weighted semaphore over bytes.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int64
}

func newBudget(n int64) *budget {
	b := &budget{free: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// get returns a buffer of at least n bytes (len n), waiting for budget.
func (bg *budget) get(ctx context.Context, n int) (*chunkBuf, error) {
	sh := bufShift(n)
	w := int64(1) << sh
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
	if v := bufClasses[sh].Get(); v != nil {
		cb := v.(*chunkBuf)
		cb.b = cb.b[:n]
		return cb, nil
	}
	return &chunkBuf{b: make([]byte, n, 1<<sh), shift: sh}, nil
}

func (bg *budget) put(cb *chunkBuf) {
	bufClasses[cb.shift].Put(cb)
	bg.mu.Lock()
	bg.free += int64(1) << cb.shift
	bg.mu.Unlock()
	bg.cond.Broadcast()
}

// wake lets waiters notice a cancelled context.
func (bg *budget) wake() { bg.cond.Broadcast() }
