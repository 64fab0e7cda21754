package fs

import (
	"bytes"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/bufpool"
)

// A chunk's buffer is reused only after the cache and every reader have
// let go of it; until then its bytes stay as loaded.
func TestChunkBuffersReusedOnlyWhenReleased(t *testing.T) {
	const cls = 64 << 10
	// The pool's free buffers are the collector's to take; none may go
	// while the test looks for one.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	pool := bufpool.New(1)
	loads := 0
	c := newCache(2*cls, cls, func(id chunkstore.ID) (*chunk, int64, error) {
		loads++
		ch := &chunk{pool: pool, mem: pool.Get(cls)}
		ch.b = ch.mem[:cls]
		for i := range ch.b {
			ch.b[i] = id[0]
		}
		return ch, cls, nil
	})
	c.hold, c.drop = (*chunk).hold, (*chunk).release
	id := func(b byte) chunkstore.ID { return chunkstore.ID{b} }

	held, err := c.get(id(1))
	if err != nil {
		t.Fatal(err)
	}
	// Evict chunk 1 from the cache by loading others, releasing each.
	for b := byte(2); b < 10; b++ {
		x, _ := c.get(id(b))
		x.release()
	}
	if c.has(id(1)) {
		t.Fatal("chunk 1 still cached; the test needs it evicted")
	}
	if !bytes.Equal(held.b, bytes.Repeat([]byte{1}, cls)) {
		t.Fatal("a held chunk's buffer was reused")
	}
	mem := &held.mem[0]
	held.release()
	if held.refs.Load() != 0 || held.mem != nil {
		t.Fatalf("released chunk: refs %d, mem kept %v", held.refs.Load(), held.mem != nil)
	}
	x, _ := c.get(id(20))
	reused := &x.mem[0] == mem
	for i := 0; i < 16 && !reused; i++ {
		reused = &pool.Get(cls)[0] == mem
	}
	if !reused {
		t.Error("the released buffer was neither reused nor kept in the pool")
	}
	x.release()
	if loads != 10 {
		t.Errorf("%d loads, want 10", loads)
	}
}

// Concurrent gets of one chunk share one load and each holds it.
func TestChunkSharedLoadHoldsEveryReader(t *testing.T) {
	const cls = 64 << 10
	pool := bufpool.New(1)
	gate := make(chan struct{})
	var once sync.Once
	c := newCache(16*cls, cls, func(id chunkstore.ID) (*chunk, int64, error) {
		once.Do(func() { <-gate })
		ch := &chunk{pool: pool, mem: pool.Get(cls)}
		ch.b = ch.mem[:10]
		return ch, cls, nil
	})
	c.hold, c.drop = (*chunk).hold, (*chunk).release
	const readers = 8
	got := make(chan *chunk, readers)
	for range readers {
		go func() {
			x, _ := c.get(chunkstore.ID{7})
			got <- x
		}()
	}
	close(gate)
	var first *chunk
	for range readers {
		x := <-got
		if first == nil {
			first = x
		} else if x != first {
			t.Fatal("readers got different chunks for one id")
		}
	}
	if n := first.refs.Load(); n != readers+1 {
		t.Fatalf("refs %d, want %d (readers + cache)", n, readers+1)
	}
	for range readers {
		first.release()
	}
	if first.refs.Load() != 1 || first.mem == nil {
		t.Fatal("the cache's hold was lost")
	}
}
