package engine

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// The cold reader's pieces are the chunker's segments: chunks cut from a
// file that is not in the page cache reach the savers as slices of the
// buffers the disk read into, hold their bytes until saved (savers far
// behind the chunker, some finishing after the reader is closed), and
// every buffer goes back. A short pattern repeated has no cut: chunks of
// the maximum size, whose
// unfinished part does not fit in front of the next piece and is copied
// with it into a new buffer.
func TestColdSegmentsSurviveUntilSaved(t *testing.T) {
	st := parCutsStore(t, 3<<20)
	data := make([]byte, 40<<20+12345)
	rand.New(rand.NewSource(8)).Read(data)
	copy(data[12<<20:32<<20], bytes.Repeat([]byte("abcdefg"), 3<<20)) // no cut: chunks of the maximum size
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	chk := newChunkerPool(st).Get()
	for _, c := range []struct {
		name       string
		start, end int64
		slow       bool
	}{
		{"whole", 0, int64(len(data)), false},
		{"unaligned region, slow savers", 5000, int64(len(data)) - 777, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_ = unix.Fsync(int(f.Fd()))
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			merged := coldMerged.Load()
			cr := newColdReader(f, c.start, c.end, coldBufsSegments)
			segs := newSegFile(&segPool{})
			chk.ResetSegments(cr.segments(segs))
			type job struct {
				cb  *chunkBuf
				off int64
			}
			q := make(chan job, 64)
			var wg sync.WaitGroup
			var bad []int64
			var mu sync.Mutex
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range q {
						if c.slow {
							time.Sleep(2 * time.Millisecond)
						}
						if !bytes.Equal(j.cb.b, data[j.off:j.off+int64(len(j.cb.b))]) {
							mu.Lock()
							bad = append(bad, j.off)
							mu.Unlock()
						}
						newBudget(1).put(j.cb)
					}
				}()
			}
			off := c.start
			for {
				b, err := chk.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				q <- job{segs.chunk(b), off}
				off += int64(len(b))
			}
			chk.Reset(nil)
			segs.done()
			cr.Close() // savers may still hold buffers: they go back after
			close(q)
			wg.Wait()
			if off != c.end {
				t.Fatalf("chunked %d..%d, want ..%d", c.start, off, c.end)
			}
			if len(bad) > 0 {
				t.Errorf("%d chunks changed before they were saved, the first at %d", len(bad), bad[0])
			}
			if n := cr.lent.Load(); n != 0 || segs.live != 0 {
				t.Errorf("%d buffers and %d segments not given back", n, segs.live)
			}
			if coldMerged.Load() == merged {
				t.Error("no segment was merged: the zeroes' chunks of the maximum size should not fit in front of a piece")
			}
		})
	}
}
