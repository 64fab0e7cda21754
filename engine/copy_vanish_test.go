package engine

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// repackingSource is a source store whose garbage collection runs while
// a copy reads it: pack gone vanishes when first read, and pack repacked
// (where gc put gone's live blobs) is listed only from then on.
type repackingSource struct {
	backend.Backend
	gone, repacked string
	mu             sync.Mutex
	swept          bool
}

func (b *repackingSource) List(ctx context.Context, t backend.FileType, fn func(string, int64) error) error {
	return b.Backend.List(ctx, t, func(name string, size int64) error {
		b.mu.Lock()
		hide := t == backend.Packs && (name == b.repacked && !b.swept || name == b.gone && b.swept)
		b.mu.Unlock()
		if hide {
			return nil
		}
		return fn(name, size)
	})
}

func (b *repackingSource) Load(ctx context.Context, h backend.Handle, off int64, n int, buf []byte) ([]byte, error) {
	if h.Type == backend.Packs && h.Name == b.gone {
		b.mu.Lock()
		b.swept = true
		b.mu.Unlock()
		return nil, backend.ErrNotExist
	}
	return b.Backend.Load(ctx, h, off, n, buf)
}

// A sealed copy that finds a listed pack gone lists the packs again
// before any index file or manifest, and copies the ones garbage
// collection wrote meanwhile.
func TestCopySealedPackVanishes(t *testing.T) {
	f := newCopyFixture(t, true)
	ctx := context.Background()
	srcLoc, err := resolveLocation(ctx, f.home, RemoteOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer srcLoc.be.Close()
	var packs []string
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(backend.ListNames(ctx, srcLoc.be, backend.Packs, func(n string) error { packs = append(packs, n); return nil }))
	slices.Sort(packs)
	if len(packs) < 3 {
		t.Fatalf("packs: %v", packs)
	}
	src := &repackingSource{Backend: srcLoc.be, gone: packs[0], repacked: packs[len(packs)-1]}
	srcLoc.be = src
	dst := filepath.Join(t.TempDir(), "offsite")
	dstLoc, err := resolveLocation(ctx, dst, RemoteOptions{}, true)
	must(err)
	defer func() { dstLoc.be.Close() }()
	rep, err := copySealed(ctx, srcLoc, dstLoc, CopyOptions{Log: func(string, ...any) {}}, time.Now())
	must(err)
	var got []string
	must(backend.ListNames(ctx, dstLoc.be, backend.Packs, func(n string) error { got = append(got, n); return nil }))
	if !slices.Contains(got, src.repacked) {
		t.Errorf("the pack written while the copy ran was not copied (copied %d packs of %d)", rep.Packs, len(packs))
	}
	if slices.Contains(got, src.gone) {
		t.Errorf("the vanished pack is in the copy")
	}
}
