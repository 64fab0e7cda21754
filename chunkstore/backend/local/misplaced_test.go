package local

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// A pack file found in a directory made in its place (mv P x; mkdir P;
// mv x P/P) is named by Misplaced and put back: the directory, left empty,
// goes, and the file takes its name. One that holds other files stays,
// with the pack in it. A put back cut short between its two renames is
// found and finished. Before, verify called the pack missing, and repair
// dropped its index entries while the pack lay one folder down.
func TestPackInDirectoryInItsPlace(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ab05", "ab06", "ab07", "ab08"} {
		if err := b.Save(ctx, backend.Handle{Type: backend.Packs, Name: n}, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	ab := filepath.Join(dir, "packs", "ab")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	into := func(n string) {
		must(os.Rename(filepath.Join(ab, n), filepath.Join(dir, "x")))
		must(os.Mkdir(filepath.Join(ab, n), 0o700))
		must(os.Rename(filepath.Join(dir, "x"), filepath.Join(ab, n, n)))
	}
	into("ab05")
	into("ab06")
	// ab08: the same, with the file keeping the name it had between.
	must(os.Rename(filepath.Join(ab, "ab08"), filepath.Join(dir, "x")))
	must(os.Mkdir(filepath.Join(ab, "ab08"), 0o700))
	must(os.Rename(filepath.Join(dir, "x"), filepath.Join(ab, "ab08", "x")))
	must(os.WriteFile(filepath.Join(ab, "ab06", "notes.txt"), []byte("mine"), 0o600))
	// ab07: cut short after its first rename.
	must(os.Rename(filepath.Join(ab, "ab07"), filepath.Join(ab, ".putback-ab07")))
	must(os.Mkdir(filepath.Join(ab, "ab07"), 0o700))

	found := map[string]string{}
	must(b.Misplaced(ctx, func(n, p string) error { found[n] = p; return nil }))
	want := map[string]string{"ab05": filepath.Join(ab, "ab05", "ab05"), "ab06": filepath.Join(ab, "ab06", "ab06"), "ab07": filepath.Join(ab, ".putback-ab07"),
		"notes.txt": filepath.Join(ab, "ab06", "notes.txt"), // named as any file outside its folder; the store takes pack names only
		"ab08":      filepath.Join(ab, "ab08", "x")}         // the one file in a directory in the pack's place
	if !maps.Equal(found, want) {
		t.Fatalf("misplaced %v, want %v", found, want)
	}
	for _, n := range []string{"ab05", "ab07", "ab08"} {
		must(b.PutBack(ctx, n, want[n]))
		if got, err := b.Load(ctx, backend.Handle{Type: backend.Packs, Name: n}, 0, -1, nil); err != nil || string(got) != n {
			t.Fatalf("load %s after PutBack: %q, %v", n, got, err)
		}
	}
	if err := b.PutBack(ctx, "ab06", want["ab06"]); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "holds other files") {
		t.Fatalf("PutBack out of a directory holding another file: %v, want fs.ErrExist", err)
	}
	for _, f := range []string{"ab06/ab06", "ab06/notes.txt"} {
		if _, err := os.Stat(filepath.Join(ab, f)); err != nil {
			t.Errorf("%s: %v, want it left where it was", f, err)
		}
	}
	if ents, _ := os.ReadDir(ab); len(ents) != 4 {
		t.Errorf("packs/ab holds %v", ents)
	}
}
