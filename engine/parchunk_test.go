package engine

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/restic/chunker"
)

// TestParallelCutsMatchSequential: parallel chunking must cut exactly
// where one chunker would, also across zero runs that never resync.
func TestParallelCutsMatchSequential(t *testing.T) {
	st := parCutsStore(t, 3<<20)
	data := make([]byte, 40<<20)
	rng := rand.New(rand.NewSource(1))
	rng.Read(data)
	clear(data[7<<20 : 15<<20])    // long zero run across segment edges
	clear(data[30<<20+5 : 31<<20]) // short one
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, data, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	for _, r := range [][2]int64{{0, int64(len(data))}, {12345, 33 << 20}, {0, 6<<20 + 1}} {
		// The reference is restic/chunker itself, with the store's
		// parameters.
		var want []int64
		chk := chunker.NewWithBoundaries(io.NewSectionReader(f, r[0], r[1]-r[0]), st.Polynomial(), uint(st.MinChunk()), uint(st.MaxChunk()))
		chk.SetAverageBits(chunkstore.DefaultAverageBits)
		buf := make([]byte, chunker.MaxSize)
		pos := r[0]
		for {
			c, err := chk.Next(buf)
			if err == io.EOF {
				break
			}
			pos += int64(c.Length)
			want = append(want, pos)
		}
		var got []int64
		last := r[0]
		err := parallelCuts(f, newChunkerPool(st), r[0], r[1], func(a, b int64) error {
			if a != last {
				t.Fatalf("gap: chunk starts at %d, previous ended at %d", a, last)
			}
			last = b
			got = append(got, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("range %v: %d parallel cuts differ from %d sequential ones", r, len(got), len(want))
		}
	}
}

// A file cut short after its stat: the parallel cuts stop with
// errShrank at its new end, having emitted a contiguous run of chunks up
// to it at most. Before, a cut inside a segment made the stitcher take
// that segment's cuts again and again without moving (a backup spun at
// full CPU for good), and a cut the stitcher's own chunker met was a
// plain io.EOF, which skipped the file ("read: EOF").
func TestParallelCutsFileShrank(t *testing.T) {
	st := parCutsStore(t, 2<<20)
	const size = 16 << 20
	data := make([]byte, size)
	rand.New(rand.NewSource(3)).Read(data)
	for _, cut := range []int64{0, 1 << 20, 5<<20 + 12345, 6 << 20, size - 1} {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		var last int64
		go func() {
			done <- parallelCuts(f, newChunkerPool(st), 0, size, func(a, b int64) error {
				if a != last || b > cut {
					t.Errorf("cut at %d: chunk [%d, %d) after %d", cut, a, b, last)
				}
				last = b
				return nil
			})
		}()
		select {
		case err := <-done:
			if err != errShrank {
				t.Errorf("file cut to %d of %d: %v, want errShrank", cut, size, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("file cut to %d of %d: parallelCuts did not return", cut, size)
		}
		f.Close()
	}
}

// parCutsStore sets parSegment to seg for the test and returns a new
// store, whose chunker parameters the cuts use.
func parCutsStore(t *testing.T, seg int64) *chunkstore.Store {
	t.Helper()
	old := parSegment
	parSegment = seg
	t.Cleanup(func() { parSegment = old })
	dir := t.TempDir()
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A chunker given back is handed out again after garbage collections (a
// backup collects every few tens of milliseconds): its 4 MiB buffer is not
// allocated and zeroed afresh per file, as with a sync.Pool.
func TestChunkerPoolKeepsChunkersOverGC(t *testing.T) {
	st := parCutsStore(t, 3<<20)
	p := newChunkerPool(st)
	a, b := p.Get(), p.Get()
	if a == b {
		t.Fatal("one chunker handed out twice")
	}
	p.Put(a)
	p.Put(b)
	runtime.GC()
	runtime.GC()
	c, d := p.Get(), p.Get()
	if !(c == a && d == b || c == b && d == a) {
		t.Error("chunkers given back were not handed out again after a collection")
	}
	if n := len(p.free); n != 0 {
		t.Errorf("pool holds %d chunkers with all handed out", n)
	}
}
