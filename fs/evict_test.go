package fs

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Through a real mount with a chunk cache much smaller than what is read,
// chunks are evicted and loaded again, their buffers reused by others, and
// every byte read is still the backed-up one. The files come in pairs of
// equal content ("a" and "a2"): the second of a pair is another inode, so
// the kernel's page cache does not answer for it, and its chunks are the
// ids the first one loaded and the other pair's reads evicted since.
func TestMountReadsRightBytesAcrossEvictions(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	const size = 24 << 20 // ~24 chunks; the cache holds 16 MiB
	content := map[string][]byte{}
	for i, name := range []string{"a", "b"} {
		b := randomBytes(int64(40+i), size)
		content[name], content[name+"2"] = b, b
		writeFile(t, filepath.Join(src, name), b, 0o644)
		writeFile(t, filepath.Join(src, name+"2"), b, 0o644)
	}
	ts.backup(src, "s", time.Time{})

	tests := []struct {
		name     string
		prefetch int
		read     func(t *testing.T, path string, size int) []byte
	}{
		// No prefetch and so no drop-behind: chunks leave the cache only
		// by eviction.
		{"sequential, no prefetch", -1, func(t *testing.T, path string, size int) []byte {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read %s: %v", path, err)
			}
			return b
		}},
		// The mount's defaults: a sequential reader prefetches ahead and
		// drops the chunks behind it from the cache.
		{"sequential, prefetch", 0, func(t *testing.T, path string, size int) []byte {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read %s: %v", path, err)
			}
			return b
		}},
		// Scattered reads: no sequential pattern, so nothing is dropped
		// behind, while prefetches started by chance add to the churn.
		{"scattered, prefetch", 0, func(t *testing.T, path string, size int) []byte {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			const piece = 192 << 10
			out := make([]byte, size)
			for _, k := range rand.New(rand.NewSource(1)).Perm((size + piece - 1) / piece) {
				off := k * piece
				if n, err := f.ReadAt(out[off:min(off+piece, size)], int64(off)); err != nil || n != min(piece, size-off) {
					t.Fatalf("read %s at %d: %d bytes, %v", path, off, n, err)
				}
			}
			return out
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := &countingBackend{Backend: ts.backend()}
			tr, err := New(cb, Options{CacheBytes: 16 << 20, Prefetch: tc.prefetch})
			if err != nil {
				t.Fatal(err)
			}
			srv := mountTree(t, tr, MountOptions{})
			point := filepath.Join(srv.Dir(), "s", tr.Source("s").Latest().Name)
			chunks := map[chunkstore.ID]bool{}
			for _, name := range []string{"a", "b"} {
				for _, x := range lookupPath(t, tr.Source("s").Latest().Root(), name).Node().Extents {
					chunks[x.ID] = true
				}
			}
			for _, name := range []string{"a", "b", "a2", "b2"} {
				if got := tc.read(t, filepath.Join(point, name), size); !bytes.Equal(got, content[name]) {
					t.Fatalf("%s through the mount differs from the source (first at byte %d)", name, firstDiff(got, content[name]))
				}
			}
			// The premise: chunks were loaded again after their eviction.
			if n := cb.loads.Load(); n < int64(len(chunks))*3/2 {
				t.Fatalf("%d chunk loads for %d distinct chunks: too few evictions to test anything", n, len(chunks))
			}
		})
	}
}

// countingBackend counts chunk loads. It passes LoadSize on, so the tree
// reads chunks into pooled buffers that evicted chunks give back, as it
// does over a store.
type countingBackend struct {
	Backend
	loads atomic.Int64
}

func (c *countingBackend) ReadChunk(id chunkstore.ID, dst []byte) ([]byte, error) {
	c.loads.Add(1)
	return c.Backend.ReadChunk(id, dst)
}

func (c *countingBackend) LoadSize(id chunkstore.ID) int {
	return c.Backend.(LoadSizer).LoadSize(id)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
