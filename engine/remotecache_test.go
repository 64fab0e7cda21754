package engine

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/cache"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
	"github.com/recall-backup/recall/internal/cephtest"
)

// gatewayCounter counts the requests that read files from the gateway.
type gatewayCounter struct {
	backend.Backend
	loads [backend.GC + 1]atomic.Int64
	bytes [backend.GC + 1]atomic.Int64
}

func (c *gatewayCounter) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	b, err := c.Backend.Load(ctx, h, off, n, buf)
	c.loads[h.Type].Add(1)
	c.bytes[h.Type].Add(int64(len(b)))
	return b, err
}

// A store on the S3 gateway, opened through a local cache: the second
// process to open it lists its points and walks every tree of every point
// without reading a pack or an index file from the gateway.
func TestRemoteCacheWalksTreesLocally(t *testing.T) {
	cl := cephtest.Start(t, cephtest.Options{})
	ctx := context.Background()
	cfg := s3.Config{Endpoint: cl.Endpoint, Bucket: "cache-walk", Prefix: "store", AccessKey: cl.AccessKey, SecretKey: cl.SecretKey,
		RetryBase: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond, LockRecheck: 20 * time.Millisecond}
	created, err := s3.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.InitBackend(created, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	created.Close()

	cacheDir := filepath.Join(t.TempDir(), "cache")
	open := func() (*chunkstore.Store, *gatewayCounter) {
		t.Helper()
		remote, err := s3.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		counter := &gatewayCounter{Backend: remote}
		c, err := cache.New(counter, cacheDir, cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := chunkstore.OpenBackend(c, chunkstore.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st, counter
	}

	// Two points of a tree of directories, the second after a change.
	src := t.TempDir()
	r := rand.New(rand.NewSource(1))
	for d := range 12 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", d%4), fmt.Sprintf("e%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 5 {
			b := make([]byte, r.Intn(200<<10))
			r.Read(b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, _ := open()
	for i := range 2 {
		if i == 1 {
			if err := os.WriteFile(filepath.Join(src, "d1", "new"), []byte("changed"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s := openSession(t, st, SessionOptions{Purpose: "test", Source: "src"})
		if _, err := Backup(ctx, s, BackupOptions{Path: src, Source: "src"}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	st.Close()

	walk := func(st *chunkstore.Store) (points, trees int) {
		t.Helper()
		rd := NewReader(st)
		ps, err := rd.Points()
		if err != nil {
			t.Fatal(err)
		}
		var visit func(id chunkstore.ID)
		visit = func(id chunkstore.ID) {
			tree, err := rd.LoadTree(id)
			if err != nil {
				t.Fatal(err)
			}
			trees++
			for _, n := range tree.Nodes {
				if n.Type == TypeDir {
					visit(n.Subtree)
				}
			}
		}
		for _, p := range ps {
			visit(p.Tree)
		}
		return len(ps), trees
	}
	for _, pass := range []string{"first", "second"} {
		st, counter := open()
		points, trees := walk(st)
		st.Close()
		if points != 2 || trees < 2*17 {
			t.Fatalf("%s walk: %d points, %d trees", pass, points, trees)
		}
		for _, typ := range []backend.FileType{backend.Packs, backend.Index, backend.Points} {
			if n := counter.loads[typ].Load(); n != 0 {
				t.Errorf("%s open and walk: %d reads (%d bytes) of %v from the gateway, want none", pass, n, counter.bytes[typ].Load(), typ)
			}
		}
	}
	var kept, stored int64
	ents, _ := os.ReadDir(filepath.Join(cacheDir, "packs"))
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			kept += info.Size()
		}
	}
	remote, err := s3.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.List(ctx, backend.Packs, func(_ string, size int64) error { stored += size; return nil }); err != nil {
		t.Fatal(err)
	}
	remote.Close()
	if kept == 0 || kept >= stored/4 {
		t.Errorf("the cache keeps %d bytes of packs of the %d stored: want the tree packs only", kept, stored)
	}
	t.Logf("tree packs kept: %d of %d bytes of packs (%d packs)", kept, stored, len(ents))
	// A fresh cache (another machine's home) fetches each tree pack once,
	// whole, and then walks locally.
	cacheDir = filepath.Join(t.TempDir(), "other")
	st, counter := open()
	walk(st)
	st.Close()
	if counter.loads[backend.Packs].Load() == 0 {
		t.Fatal("a fresh cache read no pack: the walk did not go to the gateway")
	}
	st, counter = open()
	walk(st)
	st.Close()
	if n := counter.loads[backend.Packs].Load() + counter.loads[backend.Index].Load(); n != 0 {
		t.Errorf("second walk over the fresh cache: %d reads of packs and index files from the gateway", n)
	}
}
