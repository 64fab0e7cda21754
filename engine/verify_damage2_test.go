package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Fix: verify judges every chunk of a damaged file, not only the first bad
// one, so a truncated pack counts each blob past its new end as damaged,
// as many as repair packs then reports lost.
func TestVerifyCountsEveryBlobATruncationLost(t *testing.T) {
	withPackSize(t, 64<<20) // one data pack for the whole file
	f := newGCFixture(t)
	src := t.TempDir()
	randomFiles(t, src, rand.NewChaCha8([32]byte{9}), map[string]int{"big": 12 << 20})
	p := f.backup(src, "s")
	r := f.open().Reader()
	tree, err := r.LoadTree(p.Tree)
	if err != nil {
		t.Fatal(err)
	}
	n := tree.Find("big")
	if n == nil || len(n.Extents) < 4 {
		t.Fatalf("want a file of several chunks: %+v", n)
	}
	pack, ok := r.st.PackOf(n.Extents[0].ID)
	if !ok {
		t.Fatal("first chunk not indexed")
	}
	ents, err := r.st.ReadPackHeader(pack)
	if err != nil {
		t.Fatal(err)
	}
	h := pack.String()
	path := filepath.Join(f.dir, "packs", h[:2], h)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := fi.Size() / 2
	lost := 0
	for _, e := range ents {
		if int64(e.Offset)+int64(e.Length) > cut {
			lost++
		}
	}
	if lost < 2 {
		t.Fatalf("only %d blobs past the cut: the test needs several", lost)
	}
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	for _, readData := range []bool{false, true} {
		rep, err := Verify(context.Background(), f.open().Reader(), VerifyOptions{ReadData: readData})
		if !errors.Is(err, ErrVerifyFailed) {
			t.Fatalf("verify (read data %v) of a truncated pack: %v", readData, err)
		}
		got := 0
		for _, b := range rep.DamagedBlobs {
			if b.Pack == h {
				got++
			}
		}
		if got != lost {
			t.Errorf("verify (read data %v): %d damaged blobs in the truncated pack, want the %d past its end", readData, got, lost)
		}
		if len(rep.Damage) != 1 {
			t.Errorf("verify (read data %v): damaged files %v, want the one file once", readData, rep.Damage)
		}
	}
	s := f.open()
	ss, err := s.Session(context.Background(), SessionOptions{Purpose: "repair", Exclusive: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	rep, err := RepairPacks(context.Background(), ss, RepairOptions{DryRun: true})
	if !errors.Is(err, ErrDamaged) || len(rep.Lost) != lost {
		t.Errorf("repair packs --dry-run: %d lost (%v), want %d", len(rep.Lost), err, lost)
	}
}
