package engine

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/restic/chunker"
)

// TestParallelCutsMatchSequential: parallel chunking must cut exactly
// where one chunker would, also across zero runs that never resync.
func TestParallelCutsMatchSequential(t *testing.T) {
	old := parSegment
	parSegment = 3 << 20
	defer func() { parSegment = old }()
	data := make([]byte, 40<<20)
	rng := rand.New(rand.NewSource(1))
	rng.Read(data)
	clear(data[7<<20 : 15<<20])    // long zero run across segment edges
	clear(data[30<<20+5 : 31<<20]) // short one
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, data, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	dir := t.TempDir()
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
		err := parallelCuts(f, &sync.Pool{New: func() any { return st.NewChunker(nil) }}, r[0], r[1], func(a, b int64) error {
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
