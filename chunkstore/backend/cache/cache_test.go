package cache

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/zeebo/blake3"
)

var bg = context.Background()

// The cache is a backend like any other, keeping copies of every index
// file and manifest (a check that accepts every name).
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		c := newCache(t, newLocal(t), Options{})
		c.CheckNamesWith(func(backend.Handle, []byte) error { return nil })
		return c
	})
}

// counting is a remote that counts the bytes its Loads return, per type.
type counting struct {
	backend.Backend
	loaded [backend.GC + 1]atomic.Int64
}

func (c *counting) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	b, err := c.Backend.Load(ctx, h, off, n, buf)
	c.loaded[h.Type].Add(int64(len(b)))
	return b, err
}

func (c *counting) reset() {
	for i := range c.loaded {
		c.loaded[i].Store(0)
	}
}

// hashNames checks every file as named by the BLAKE3 of its bytes.
func hashNames(h backend.Handle, b []byte) error {
	if sum := blake3.Sum256(b); hex.EncodeToString(sum[:]) != h.Name {
		return errors.New("content does not match its name")
	}
	return nil
}

func newCache(t *testing.T, remote backend.Backend, o Options) *Backend {
	t.Helper()
	c, err := New(remote, filepath.Join(t.TempDir(), "cache"), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// open is a second process's cache of the same remote in the same dir.
func open(t *testing.T, remote backend.Backend, dir string, o Options) *Backend {
	t.Helper()
	c, err := New(remote, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	c.CheckNamesWith(hashNames)
	return c
}

func file(typ backend.FileType, seed int64, n int) (backend.Handle, []byte) {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	sum := blake3.Sum256(b)
	return backend.Handle{Type: typ, Name: hex.EncodeToString(sum[:])}, b
}

func mustLoad(t *testing.T, be backend.Backend, h backend.Handle, off int64, n int, want []byte) {
	t.Helper()
	got, err := be.Load(bg, h, off, n, nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("load %v %d@%d: %d bytes, %v", h, n, off, len(got), err)
	}
}

// What a process saved, another reads from the local copies; packs only
// once the store said they are worth it, and then with one download.
func TestCopiesServeReads(t *testing.T) {
	remote := &counting{Backend: newLocal(t)}
	dir := filepath.Join(t.TempDir(), "cache")
	a := open(t, remote, dir, Options{})
	idx, idxData := file(backend.Index, 1, 70_000)
	pt, ptData := file(backend.Points, 2, 300)
	tree, treeData := file(backend.Packs, 3, 200_000)
	data, dataData := file(backend.Packs, 4, 200_000)
	a.Keep(tree)
	for _, f := range []struct {
		h backend.Handle
		b []byte
	}{{idx, idxData}, {pt, ptData}, {tree, treeData}, {data, dataData}} {
		if err := a.Save(bg, f.h, f.b); err != nil {
			t.Fatal(err)
		}
	}

	b := open(t, remote, dir, Options{}) // another process
	mustLoad(t, b, idx, 0, 65536, idxData[:65536])
	mustLoad(t, b, idx, 65536, -1, idxData[65536:])
	mustLoad(t, b, pt, 0, -1, ptData)
	mustLoad(t, b, tree, 1000, 5000, treeData[1000:6000])
	for _, typ := range []backend.FileType{backend.Index, backend.Points, backend.Packs} {
		if n := remote.loaded[typ].Load(); n != 0 {
			t.Errorf("%v: %d bytes loaded from the remote, want 0", typ, n)
		}
	}
	// A data pack is read from the remote, range by range, and not kept.
	mustLoad(t, b, data, 100, 1000, dataData[100:1100])
	mustLoad(t, b, data, 100, 1000, dataData[100:1100])
	if n := remote.loaded[backend.Packs].Load(); n != 2000 {
		t.Errorf("data pack: %d bytes from the remote, want 2000", n)
	}
	// Kept from now on: one whole download, then local reads.
	b.Keep(data)
	remote.reset()
	for range 3 {
		mustLoad(t, b, data, 100, 1000, dataData[100:1100])
	}
	if n := remote.loaded[backend.Packs].Load(); n != int64(len(dataData)) {
		t.Errorf("kept pack: %d bytes from the remote, want %d (once, whole)", n, len(dataData))
	}
	// Past the end: the contract's short read, from the copy too.
	got, err := b.Load(bg, tree, int64(len(treeData))-10, 20, nil)
	if !bytes.Equal(got, treeData[len(treeData)-10:]) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("past the end: %d bytes, %v", len(got), err)
	}
}

// A copy damaged on the local disk is found at its first read, dropped and
// fetched again; one the remote gives with bytes that do not match its
// name is served as it is and not kept.
func TestDamagedCopyRefetched(t *testing.T) {
	tests := []struct {
		name   string
		damage func(p string) error
	}{
		{"bit flip", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return os.WriteFile(p, b, 0o600)
		}},
		{"truncated", func(p string) error { return os.Truncate(p, 100) }},
		{"trailer gone", func(p string) error {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, st.Size()-trailerLen)
		}},
		{"empty", func(p string) error { return os.Truncate(p, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			remote := &counting{Backend: newLocal(t)}
			dir := filepath.Join(t.TempDir(), "cache")
			h, want := file(backend.Index, 5, 50_000)
			if err := open(t, remote, dir, Options{}).Save(bg, h, want); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "index", h.Name)
			if err := tc.damage(p); err != nil {
				t.Fatal(err)
			}
			c := open(t, remote, dir, Options{})
			mustLoad(t, c, h, 0, -1, want)
			if n := remote.loaded[backend.Index].Load(); n != int64(len(want)) {
				t.Errorf("%d bytes fetched again, want %d", n, len(want))
			}
			// The copy is whole again: a third process reads it locally.
			remote.reset()
			mustLoad(t, open(t, remote, dir, Options{}), h, 0, -1, want)
			if n := remote.loaded[backend.Index].Load(); n != 0 {
				t.Errorf("after the refetch: %d bytes from the remote, want 0", n)
			}
		})
	}
	t.Run("bad on the remote", func(t *testing.T) {
		remote := &counting{Backend: newLocal(t)}
		dir := filepath.Join(t.TempDir(), "cache")
		h, _ := file(backend.Points, 6, 1000)
		bad := []byte("not what the name says")
		if err := remote.Save(bg, h, bad); err != nil {
			t.Fatal(err)
		}
		c := open(t, remote, dir, Options{})
		for range 2 {
			mustLoad(t, c, h, 0, -1, bad)
		}
		if n := remote.loaded[backend.Points].Load(); n != 2*int64(len(bad)) {
			t.Errorf("%d bytes from the remote, want %d: a bad file must not be kept", n, 2*len(bad))
		}
		if _, err := os.Stat(filepath.Join(dir, "points", h.Name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a copy of bytes that do not match their name: %v", err)
		}
	})
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The directory stays within its bound, and the least recently used
// copies go first, also across processes (the order is in the files).
func TestBound(t *testing.T) {
	const max, size = 160 << 10, 16 << 10 // about ten copies
	remote := newLocal(t)
	dir := filepath.Join(t.TempDir(), "cache")
	c := open(t, remote, dir, Options{MaxBytes: max})
	var hs []backend.Handle
	var datas [][]byte
	base := time.Now().Add(-time.Hour)
	for i := range 40 {
		h, b := file(backend.Points, int64(100+i), size)
		if err := c.Save(bg, h, b); err != nil {
			t.Fatal(err)
		}
		hs, datas = append(hs, h), append(datas, b)
		if n := dirBytes(t, dir); n > max {
			t.Fatalf("after %d saves the cache holds %d bytes, bound %d", i+1, n, max)
		}
		// File 0 is used after every save, so it is never the least
		// recently used; the others in the order they came.
		now := base.Add(time.Duration(i) * time.Second)
		os.Chtimes(filepath.Join(dir, "points", hs[i].Name), now, now)
		later := now.Add(time.Second / 2)
		os.Chtimes(filepath.Join(dir, "points", hs[0].Name), later, later)
	}
	have := func(i int) bool {
		_, err := os.Stat(filepath.Join(dir, "points", hs[i].Name))
		return err == nil
	}
	if !have(0) || !have(39) || have(1) || have(20) {
		t.Errorf("kept: first %v, last %v, second %v, middle %v; want the used and the newest only", have(0), have(39), have(1), have(20))
	}
	// Two processes saving by turns keep the sum within the bound, each
	// scanning for the other's copies every sixteenth of it.
	d := open(t, remote, dir, Options{MaxBytes: max})
	for i := range 40 {
		h, b := file(backend.Points, int64(200+i), size)
		if err := []*Backend{c, d}[i%2].Save(bg, h, b); err != nil {
			t.Fatal(err)
		}
		if n := dirBytes(t, dir); n > max+max/8 {
			t.Fatalf("two processes: %d bytes after %d saves, bound %d", n, i+1, max)
		}
	}
	// A smaller bound in another process evicts at once.
	open(t, remote, dir, Options{MaxBytes: 3 * size})
	if n := dirBytes(t, dir); n > 3*size {
		t.Errorf("reopened with a smaller bound: %d bytes", n)
	}
	// Everything still reads, from the remote when evicted.
	for i := range hs {
		mustLoad(t, c, hs[i], 0, -1, datas[i])
	}
	// A file too large to keep is read through.
	big, bigData := file(backend.Index, 7, max/8+1)
	if err := c.Save(bg, big, bigData); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, c, big, 1, 10, bigData[1:11])
	if _, err := os.Stat(filepath.Join(dir, "index", big.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file larger than an eighth of the bound was kept: %v", err)
	}
}

// A file removed by another process (on the remote directly) loses its
// copy at the next listing of its type; Remove through the cache at once.
func TestRemovedRemotelyDropped(t *testing.T) {
	remote := &counting{Backend: newLocal(t)}
	dir := filepath.Join(t.TempDir(), "cache")
	c := open(t, remote, dir, Options{})
	gone, goneData := file(backend.Index, 8, 1000)
	stays, staysData := file(backend.Index, 9, 1000)
	removed, removedData := file(backend.Index, 10, 1000)
	for _, f := range []struct {
		h backend.Handle
		b []byte
	}{{gone, goneData}, {stays, staysData}, {removed, removedData}} {
		if err := c.Save(bg, f.h, f.b); err != nil {
			t.Fatal(err)
		}
	}
	copyOf := func(h backend.Handle) bool {
		_, err := os.Stat(filepath.Join(dir, "index", h.Name))
		return err == nil
	}
	if err := c.Remove(bg, removed); err != nil || copyOf(removed) {
		t.Fatalf("remove: %v; copy left: %v", err, copyOf(removed))
	}
	if err := remote.Remove(bg, gone); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := c.ListNames(bg, backend.Index, func(n string) error { names = append(names, n); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != stays.Name || copyOf(gone) || !copyOf(stays) {
		t.Errorf("listed %v; copy of the removed file left: %v, of the other: %v", names, copyOf(gone), copyOf(stays))
	}
	if _, err := c.Load(bg, gone, 0, -1, nil); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("load of a removed file after a listing: %v", err)
	}
}

// Two processes (two caches) on one directory, saving and reading the same
// files at once, always read the right bytes and leave whole copies.
func TestSharedDirectory(t *testing.T) {
	remote := newLocal(t)
	dir := filepath.Join(t.TempDir(), "cache")
	procs := []*Backend{open(t, remote, dir, Options{MaxBytes: 4 << 20}), open(t, remote, dir, Options{MaxBytes: 4 << 20})}
	const files = 40
	var wg sync.WaitGroup
	for p, c := range procs {
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewSource(int64(p*10 + g)))
				for range 200 {
					i := r.Intn(files)
					h, b := file(backend.Packs, int64(i), 64<<10+i)
					c.Keep(h)
					if r.Intn(4) == 0 {
						if err := c.Save(bg, h, b); err != nil {
							t.Error(err)
							return
						}
						continue
					}
					got, err := c.Load(bg, h, 10, 1000, nil)
					if errors.Is(err, backend.ErrNotExist) {
						continue // not saved yet
					}
					if err != nil || !bytes.Equal(got, b[10:1010]) {
						t.Errorf("pack %d: %d bytes, %v", i, len(got), err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	ents, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var c fileCheck
		if err := c.check(filepath.Join(dir, "packs", e.Name())); err != nil {
			t.Error(err)
		}
	}
}

type fileCheck struct{}

// check tells a whole copy whose content matches its trailer and name.
func (fileCheck) check(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if int64(len(b)) < trailerLen {
		return fmt.Errorf("%s: %d bytes", p, len(b))
	}
	content := b[:int64(len(b))-trailerLen]
	sum := blake3.Sum256(content)
	if !bytes.Equal(sum[:], b[len(content):len(content)+sumLen]) || string(b[len(content)+sumLen:]) != magic || hex.EncodeToString(sum[:]) != filepath.Base(p) {
		return fmt.Errorf("%s: not a whole copy", p)
	}
	return nil
}

func newLocal(t *testing.T) backend.Backend {
	t.Helper()
	be, err := local.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return be
}
