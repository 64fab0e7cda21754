package engine

import (
	"bytes"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// Chunks cut into segments reach the savers without a copy: every chunk
// must still hold its bytes when a saver gets to it, however far the
// chunker has gone on meanwhile, and a file never has more than
// segsPerFile segments at once.
func TestSegmentChunksSurviveUntilSaved(t *testing.T) {
	st := parCutsStore(t, 3<<20)
	data := make([]byte, 48<<20)
	rand.New(rand.NewSource(7)).Read(data)
	clear(data[20<<20 : 30<<20]) // chunks of the maximum size, and a segment that grows
	pool := &segPool{}
	chk := newChunkerPool(st).Get()
	for _, slow := range []bool{false, true} {
		f := newSegFile(pool)
		maxLive := 0
		chk.ResetOwned(bytes.NewReader(data), func(n int) []byte {
			b := f.give(n)
			f.mu.Lock()
			maxLive = max(maxLive, f.live)
			f.mu.Unlock()
			// Garbage first: a chunk read from stale bytes shows.
			for i := range b {
				b[i] = 0x5a
			}
			return b
		})
		type job struct {
			cb  *chunkBuf
			off int
		}
		q := make(chan job)
		var wg sync.WaitGroup
		var bad []int
		var mu sync.Mutex
		for range 2 { // savers
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range q {
					if slow {
						time.Sleep(time.Millisecond)
					}
					if !bytes.Equal(j.cb.b, data[j.off:j.off+len(j.cb.b)]) {
						mu.Lock()
						bad = append(bad, j.off)
						mu.Unlock()
					}
					newBudget(1).put(j.cb) // a segment's chunk never touches the budget
				}
			}()
		}
		off := 0
		for {
			c, err := chk.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			q <- job{f.chunk(c), off}
			off += len(c)
		}
		chk.Reset(nil)
		f.done()
		close(q)
		wg.Wait()
		if off != len(data) {
			t.Fatalf("chunked %d of %d bytes", off, len(data))
		}
		if len(bad) > 0 {
			t.Errorf("slow savers %v: %d chunks changed before they were saved, the first at %d", slow, len(bad), bad[0])
		}
		if maxLive > segsPerFile {
			t.Errorf("slow savers %v: %d segments at once, want at most %d", slow, maxLive, segsPerFile)
		}
		if f.live != 0 {
			t.Errorf("slow savers %v: %d segments not given back", slow, f.live)
		}
	}
	if len(pool.free) == 0 || len(pool.free) > segPoolKeep {
		t.Errorf("pool keeps %d segments after the files, want 1..%d", len(pool.free), segPoolKeep)
	}
}
