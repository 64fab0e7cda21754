package local

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// An open file reads at offsets, stays readable when removed, and a
// missing one is ErrNotExist.
func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	b, err := Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Index, Name: "f"}
	if err := b.Save(ctx, h, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	f, size, err := b.OpenFile(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if size != 10 {
		t.Errorf("size %d, want 10", size)
	}
	if err := b.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 3)
	if n, err := f.ReadAt(p, 4); err != nil || string(p[:n]) != "456" {
		t.Errorf("read after remove: %q, %v; want 456", p[:n], err)
	}
	if _, _, err := b.OpenFile(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("open of a missing file: %v, want ErrNotExist", err)
	}
}
