package chunkstore

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/guts"
)

// leafHasher must give BLAKE3-256 for every blob length and place in the
// read buffer, whatever the order the pieces arrive in and on whichever
// goroutines: around chunk, leaf and piece boundaries, and for blobs up
// to beyond the largest chunk.
func TestLeafHasher(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	data := make([]byte, 9<<20)
	r.Read(data)
	lengths := []int{1, guts.ChunkSize, leafBytes, leafBytes + 1, 2 * leafBytes, 2*leafBytes + 1, 3*leafBytes - 1}
	for _, base := range []int{directMin, 512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20} {
		for _, d := range []int{-1025, -1024, -1, 0, 1, 1023, 1024, leafBytes + 1} {
			lengths = append(lengths, base+d)
		}
	}
	for range 100 {
		lengths = append(lengths, 1+r.Intn(len(data)-readAlign))
	}
	for _, length := range lengths {
		head := r.Intn(readAlign)
		if length%3 == 0 {
			head = 0
		}
		n := (head + length + readAlign - 1) &^ (readAlign - 1)
		buf := make([]byte, n)
		copy(buf[head:], data[:length])
		piece := directPiece
		if length%2 == 0 {
			piece = 64 << 10 // more pieces than leaves' worth of boundaries
		}
		h := newLeafHasher(buf, head, length, piece)
		pieces := r.Perm((n + piece - 1) / piece)
		var wg sync.WaitGroup
		for _, i := range pieces {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.arrived(i*piece, min((i+1)*piece, n))
			}()
		}
		wg.Wait()
		if got, want := h.sum(), ID(blake3.Sum256(data[:length])); got != want {
			t.Fatalf("length %d at %d, pieces of %d: %x, want %x", length, head, piece, got[:8], want[:8])
		}
	}
}

// BenchmarkLeafHasher: hashing a blob by leaves on two goroutines, against
// hashing it as one stream.
func BenchmarkLeafHasher(b *testing.B) {
	for _, n := range []int{256 << 10, 1 << 20, 4 << 20} {
		data := randBytes(1, n)
		b.Run(fmt.Sprintf("leaves/%dK", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				h := newLeafHasher(data, 0, n, n/2)
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { defer wg.Done(); h.arrived(n/2, n) }()
				h.arrived(0, n/2)
				wg.Wait()
				h.sum()
			}
		})
		b.Run(fmt.Sprintf("stream/%dK", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				blake3.Sum256(data)
			}
		})
	}
}

// hashWhole gives BLAKE3-256 by either hasher, whichever the CPU favours.
func TestHashWhole(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	data := make([]byte, 3<<20)
	r.Read(data)
	defer func(v bool) { leavesFaster = v }(leavesFaster)
	for _, leaves := range []bool{false, true} {
		leavesFaster = leaves
		for _, n := range []int{0, 1, guts.ChunkSize, leafBytes - 1, leafBytes, leafBytes + 1, 5*leafBytes + 77, len(data)} {
			if got, want := hashWhole(data[:n]), ID(blake3.Sum256(data[:n])); got != want {
				t.Errorf("leaves=%v, %d bytes: hash %s, want %s", leaves, n, got.Short(), want.Short())
			}
		}
	}
}

// A plaintext store's ids are BLAKE3-256 whichever hasher makes them.
func TestStoreIDsByEitherHasher(t *testing.T) {
	data := randBytes(3, 3<<20)
	defer func(v bool) { leavesFaster = v }(leavesFaster)
	for _, leaves := range []bool{false, true} {
		leavesFaster = leaves
		for _, n := range []int{0, leavesFrom - 1, leavesFrom, leavesFrom + 1, 1 << 20, len(data)} {
			if got, want := (&keys{}).hash(data[:n]), ID(blake3.Sum256(data[:n])); got != want {
				t.Errorf("leaves=%v, %d bytes: id %s, want %s", leaves, n, got.Short(), want.Short())
			}
		}
	}
}
