package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// A pack file moved out of its folder is not listed (Load would not find
// it), Misplaced names it wherever under packs/ it lies, and PutBack
// moves it home, never over a file already there.
func TestMisplacedPacks(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ab01", "ab02", "cd03", "ef04"} {
		if err := b.Save(ctx, backend.Handle{Type: backend.Packs, Name: n}, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	packs := filepath.Join(dir, "packs")
	mv := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(packs, from), filepath.Join(packs, to)); err != nil {
			t.Fatal(err)
		}
	}
	mv("ab/ab02", "00/ab02") // another folder
	mv("cd/cd03", "cd03")    // packs/ itself
	mv("ef/ef04", "zz-ef04") // packs/ itself, renamed: no pack of ours by that name either
	if err := os.WriteFile(filepath.Join(packs, "00", "ab01"), []byte("a second ab01"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory under a wrong folder is no pack.
	if err := os.Mkdir(filepath.Join(packs, "00", "cd99"), 0o700); err != nil {
		t.Fatal(err)
	}

	var listed []string
	if err := b.List(ctx, backend.Packs, func(n string, _ int64) error { listed = append(listed, n); return nil }); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := b.ListNames(ctx, backend.Packs, func(n string) error { names = append(names, n); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	slices.Sort(names)
	if !slices.Equal(listed, []string{"ab01"}) || !slices.Equal(names, listed) {
		t.Fatalf("listed %v, names %v; want only ab01, the one pack in its folder", listed, names)
	}

	found := map[string]string{}
	if err := b.Misplaced(ctx, func(n, p string) error { found[p] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		filepath.Join(packs, "00", "ab02"): "ab02",
		filepath.Join(packs, "00", "ab01"): "ab01",
		filepath.Join(packs, "cd03"):       "cd03",
		filepath.Join(packs, "zz-ef04"):    "zz-ef04",
	}
	if len(found) != len(want) {
		t.Fatalf("misplaced %v, want %v", found, want)
	}
	for p, n := range want {
		if found[p] != n {
			t.Fatalf("misplaced %v, want %v", found, want)
		}
	}

	for _, n := range []string{"ab02", "cd03"} {
		p := filepath.Join(packs, "00", n)
		if n == "cd03" {
			p = filepath.Join(packs, n)
		}
		if err := b.PutBack(ctx, n, p); err != nil {
			t.Fatal(err)
		}
		got, err := b.Load(ctx, backend.Handle{Type: backend.Packs, Name: n}, 0, -1, nil)
		if err != nil || string(got) != n {
			t.Fatalf("load %s after PutBack: %q, %v", n, got, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s still there after PutBack: %v", p, err)
		}
	}
	// Never over a file in the place: both stay as they were.
	second := filepath.Join(packs, "00", "ab01")
	if err := b.PutBack(ctx, "ab01", second); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("PutBack over a pack in its place: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(second); string(got) != "a second ab01" {
		t.Fatalf("the misplaced copy changed: %q", got)
	}
	if got, _ := b.Load(ctx, backend.Handle{Type: backend.Packs, Name: "ab01"}, 0, -1, nil); string(got) != "ab01" {
		t.Fatalf("the pack in its place changed: %q", got)
	}
}
