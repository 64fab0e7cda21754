package faulty

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/backendtest"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

func newLocal(t *testing.T) *local.Backend {
	b, err := local.Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// With no fault set the wrapper is the backend it wraps.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return New(newLocal(t)) })
}

var ctx = context.Background()

func TestFaults(t *testing.T) {
	h := backend.Handle{Type: backend.Index, Name: "aa"}
	p := backend.Handle{Type: backend.Packs, Name: "bb"}
	cases := []struct {
		name  string
		set   func(*Backend)
		check func(*testing.T, *Backend)
	}{
		{"fail the 2nd save of index files", func(b *Backend) { b.FailAt(Save, backend.Index, 2, nil) }, func(t *testing.T, b *Backend) {
			if err := b.Save(ctx, p, []byte("pack")); err != nil {
				t.Errorf("save of another type: %v", err)
			}
			if err := b.Save(ctx, h, []byte("1")); err != nil {
				t.Errorf("1st save: %v", err)
			}
			if err := b.Save(ctx, h, []byte("2")); !errors.Is(err, ErrInjected) {
				t.Errorf("2nd save: %v", err)
			}
			if err := b.Save(ctx, h, []byte("3")); err != nil {
				t.Errorf("3rd save: %v", err)
			}
			if got, _ := b.Load(ctx, h, 0, -1, nil); string(got) != "3" {
				t.Errorf("the failed save reached the backend, or the next did not: %q", got)
			}
		}},
		{"every load fails", func(b *Backend) { b.FailAt(Load, 0, 0, errors.New("EIO")) }, func(t *testing.T, b *Backend) {
			for range 3 {
				if _, err := b.Load(ctx, h, 0, -1, nil); err == nil || err.Error() != "load index: EIO" {
					t.Errorf("load: %v", err)
				}
			}
		}},
		{"full at the 3rd write", func(b *Backend) { b.FullAt(3) }, func(t *testing.T, b *Backend) {
			b.Save(ctx, h, []byte("1"))
			fw, err := backend.Create(ctx, b, backend.Packs)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fw.Write([]byte("x")); err != nil {
				t.Errorf("2nd write: %v", err)
			}
			if _, err := fw.Write([]byte("x")); !errors.Is(err, backend.ErrNoSpace) {
				t.Errorf("3rd write: %v", err)
			}
			fw.Abort()
			if err := b.Save(ctx, h, []byte("4")); !errors.Is(err, backend.ErrNoSpace) {
				t.Errorf("4th write: %v; the disk stays full", err)
			}
			if err := b.Remove(ctx, h); err != nil {
				t.Errorf("remove on a full disk: %v", err)
			}
		}},
		{"short reads", func(b *Backend) { b.ShortReads(backend.Index, 2) }, func(t *testing.T, b *Backend) {
			if got, err := b.Load(ctx, h, 0, 5, nil); err != nil || len(got) != 3 {
				t.Errorf("load: %q, %v", got, err)
			}
			if got, err := b.Load(ctx, p, 0, -1, nil); err != nil || string(got) != "pack" {
				t.Errorf("load of another type: %q, %v", got, err)
			}
		}},
		{"latency ends with the context", func(b *Backend) { b.Latency(time.Hour) }, func(t *testing.T, b *Backend) {
			c, cancel := context.WithCancel(ctx)
			go cancel()
			if _, err := b.Stat(c, h); !errors.Is(err, context.Canceled) {
				t.Errorf("stat: %v", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New(newLocal(t))
			b.Save(ctx, h, []byte("index"))
			b.Save(ctx, p, []byte("pack"))
			c.set(b)
			c.check(t, b)
			b.Clear()
			if err := b.Save(ctx, h, []byte("after")); err != nil {
				t.Errorf("after Clear: %v", err)
			}
		})
	}
}
