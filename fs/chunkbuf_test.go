package fs

import (
	"bytes"
	"sync"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
)

// A chunk's buffer is reused only after the cache and every reader have
// let go of it; until then its bytes stay as loaded.
func TestChunkBuffersReusedOnlyWhenReleased(t *testing.T) {
	const cls = 64 << 10
	pool := newBufPool(64 << 20)
	loads := 0
	c := newCache(2*cls, cls, func(id chunkstore.ID) (*chunk, int64, error) {
		loads++
		ch := &chunk{pool: pool, mem: pool.get(cls)}
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
	if &x.mem[0] != mem && len(pool.free[cls]) == 0 {
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
	pool := newBufPool(64 << 20)
	gate := make(chan struct{})
	var once sync.Once
	c := newCache(16*cls, cls, func(id chunkstore.ID) (*chunk, int64, error) {
		once.Do(func() { <-gate })
		ch := &chunk{pool: pool, mem: pool.get(cls)}
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

func TestBufClass(t *testing.T) {
	prev := 0
	for n := 1; n <= 9<<20; n += 997 {
		c := bufClass(n)
		if c < n || c > max(4096, n+n/8+1) {
			t.Fatalf("bufClass(%d) = %d: want n <= size <= n*1.125", n, c)
		}
		if c < prev {
			t.Fatalf("bufClass not monotonic at %d", n)
		}
		if bufClass(c) != c {
			t.Fatalf("bufClass(%d) = %d is not a fixed point", c, bufClass(c))
		}
		prev = c
	}
}
