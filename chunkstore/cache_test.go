package chunkstore

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/cache"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// loadCounter counts the bytes a backend's Loads return, per file type.
type loadCounter struct {
	backend.Backend
	loaded [backend.GC + 1]atomic.Int64
}

func (c *loadCounter) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	b, err := c.Backend.Load(ctx, h, off, n, buf)
	c.loaded[h.Type].Add(int64(len(b)))
	return b, err
}

// openCached opens the store in dir through a cache in cdir over a
// counting "remote".
func openCached(t *testing.T, dir, cdir string) (*Store, *loadCounter) {
	t.Helper()
	remote := &loadCounter{Backend: local.Open(dir)}
	c, err := cache.New(remote, cdir, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenBackend(c, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, remote
}

// Over a cache, opening a store, listing and reading its points and
// reading every tree blob load nothing from the remote but the config the
// second time, whether the first process wrote the store or read it; data
// blobs are read from the remote and never kept.
func TestCacheKeepsTrees(t *testing.T) {
	for _, encrypt := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypt], func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if _, err := Init(dir, InitOptions{Encrypt: encrypt, Password: "pw", KDFMemoryKB: 1024}); err != nil {
				t.Fatal(err)
			}
			written, read := filepath.Join(t.TempDir(), "written"), filepath.Join(t.TempDir(), "read")
			s, _ := openCached(t, dir, written)
			l, w := sessionWriter(t, s, "src")
			var trees, datas []ID
			for i := range 40 {
				typ, b := DataBlob, randBytes(int64(i), 100<<10)
				if i%4 == 0 {
					typ, b = TreeBlob, randBytes(int64(i), 3000)
				}
				id := s.Hash(b)
				if _, err := w.SaveBlob(typ, id, b); err != nil {
					t.Fatal(err)
				}
				if typ == TreeBlob {
					trees = append(trees, id)
				} else {
					datas = append(datas, id)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			point, err := s.SavePoint([]byte("manifest naming the trees"))
			if err != nil {
				t.Fatal(err)
			}
			l.Unlock()
			s.Close()

			// browse opens the store as a process would and reads what a
			// listing of points and a walk of their trees read.
			browse := func(cdir string) *loadCounter {
				s, remote := openCached(t, dir, cdir)
				ids, err := s.ListPoints()
				if err != nil || len(ids) != 1 || ids[0] != point {
					t.Fatalf("points: %v, %v", ids, err)
				}
				if _, err := s.LoadPoint(point); err != nil {
					t.Fatal(err)
				}
				for _, id := range trees {
					if _, err := s.LoadBlob(id, nil); err != nil {
						t.Fatal(err)
					}
				}
				return remote
			}
			for _, c := range []struct {
				name string
				cdir string
			}{{"the writer's cache", written}, {"a reader's cache, second time", read}} {
				if c.cdir == read {
					if r := browse(read); r.loaded[backend.Packs].Load() == 0 || r.loaded[backend.Index].Load() == 0 {
						t.Fatalf("a new cache loaded %d bytes of packs, %d of index files", r.loaded[backend.Packs].Load(), r.loaded[backend.Index].Load())
					}
				}
				r := browse(c.cdir)
				for _, typ := range []backend.FileType{backend.Packs, backend.Index, backend.Points} {
					if n := r.loaded[typ].Load(); n != 0 {
						t.Errorf("%s: %d bytes of %v loaded from the remote, want 0", c.name, n, typ)
					}
				}
				ents, err := os.ReadDir(filepath.Join(c.cdir, "packs"))
				if err != nil || len(ents) != 1 {
					t.Errorf("%s: %d packs kept (%v), want the one of trees", c.name, len(ents), err)
				}
			}
			s, remote := openCached(t, dir, read)
			if _, err := s.LoadBlob(datas[0], nil); err != nil {
				t.Fatal(err)
			}
			if remote.loaded[backend.Packs].Load() == 0 {
				t.Error("a data blob was read from the cache")
			}
		})
	}
}
