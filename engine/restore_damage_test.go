package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file whose chunks cannot all be read is restored at its recorded
// size, with holes where its data is missing, whichever chunk is lost:
// the last one (where the writes alone would leave it short), its only
// one, one in the middle, or the data before a final hole. It is listed
// as damaged, and its metadata is applied after its size is set. With
// no file held open, the files of several chunks are opened again to be
// given their size.
func TestRestoreDamagedFileKeepsSize(t *testing.T) {
	ds := newDamageStore(t, false)
	sparse := append(randomBytes(4, 2<<20), make([]byte, 4<<20)...)
	files := map[string][]byte{
		"damaged/tail":   randomBytes(1, 12<<20),
		"damaged/one":    randomBytes(2, 400<<10),
		"damaged/middle": randomBytes(3, 12<<20),
		"damaged/sparse": sparse,
		"damaged/leader": randomBytes(5, 6<<20),
		"damaged/link":   nil, // a hard link of leader
	}
	files["damaged/link"] = files["damaged/leader"]
	os.MkdirAll(filepath.Join(ds.src, "damaged"), 0o755)
	if err := os.WriteFile(filepath.Join(ds.src, "damaged/leader"), files["damaged/leader"], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ds.src, "damaged/leader"), filepath.Join(ds.src, "damaged/link")); err != nil {
		t.Fatal(err)
	}
	ds.addFiles(files)

	// Which extent of each file to damage: the last one, but for middle,
	// and for sparse its data before the final hole.
	lost := map[string]int{}
	for rel := range files {
		n := ds.node(rel)
		k := len(n.Extents)
		switch rel {
		case "damaged/link":
			continue // the leader's damage is its
		case "damaged/one":
			if k != 1 {
				t.Fatalf("%s has %d extents, the test wants one", rel, k)
			}
		case "damaged/middle":
			if k < 3 {
				t.Fatalf("%s has %d extents, the test wants several", rel, k)
			}
			k = k/2 + 1
		case "damaged/sparse":
			if !n.Extents[k-1].Hole || n.Extents[k-2].Hole {
				t.Fatalf("%s does not end in data then a hole: %+v", rel, n.Extents)
			}
			k--
		default:
			if k < 2 {
				t.Fatalf("%s has %d extents, the test wants several", rel, k)
			}
		}
		lost[rel] = k - 1
		pack, off, length := ds.packOf(n.Extents[k-1].ID)
		flip(t, pack, off+length/2)
	}

	defaultLimit := holdLimit
	t.Cleanup(func() { holdLimit = defaultLimit })
	for _, limit := range []int64{0, defaultLimit()} {
		t.Run(fmt.Sprintf("hold=%d", limit), func(t *testing.T) {
			holdLimit = func() int64 { return limit }
			r := ds.open()
			p, err := r.LoadPoint(ds.point)
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "t")
			res, err := Restore(context.Background(), r, p, RestoreOptions{Target: target})
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("restore: %v, want ErrDamaged", err)
			}
			damaged := map[string]bool{}
			for _, d := range res.Damaged {
				damaged[d.Path] = true
			}
			if res.Files != int64(len(ds.files)) {
				t.Errorf("restore counts %d files, the point has %d", res.Files, len(ds.files))
			}
			for rel, src := range files {
				if !damaged[rel] {
					t.Errorf("%s not listed as damaged (damaged: %v)", rel, keys(damaged))
				}
				path := filepath.Join(target, rel)
				got, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("%s: %v", rel, err)
					continue
				}
				if len(got) != len(src) {
					t.Errorf("%s restored with %d bytes, want %d", rel, len(got), len(src))
					continue
				}
				leader := rel
				if rel == "damaged/link" {
					leader = "damaged/leader"
				}
				n := ds.node(leader)
				for i, e := range n.Extents {
					from, to := n.ExtentStart(i), e.End
					want := src[from:to]
					if i == lost[leader] {
						want = make([]byte, to-from) // a hole where the data is lost
					}
					if !bytes.Equal(got[from:to], want) {
						t.Errorf("%s: bytes %d-%d differ (extent %d, lost %d)", rel, from, to, i, lost[leader])
					}
				}
				// Its mode is the point's, its time the restore's: a
				// damaged file must not pass for one restored whole, which
				// "restore --resume" keeps (it did, zeroes and all).
				a, _ := os.Stat(filepath.Join(ds.src, rel))
				b, _ := os.Stat(path)
				if a.ModTime().Equal(b.ModTime()) || a.Mode() != b.Mode() {
					t.Errorf("%s: modified %v (the point's: %v), mode %v (the point's: %v)", rel, b.ModTime(), a.ModTime(), b.Mode(), a.Mode())
				}
			}
			// The rest of the point is restored exactly.
			for rel, want := range ds.files {
				if _, ok := files[rel]; ok {
					continue
				}
				if got, err := os.ReadFile(filepath.Join(target, rel)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s not restored exactly (%v)", rel, err)
				}
			}
		})
	}
}

// A file every chunk of which is damaged is reported with all of it: its
// first range, how many ranges and how many bytes in all. Before, only
// the first range was named, and a file of zeroes read as mostly whole.
func TestRestoreDamagedRangesCounted(t *testing.T) {
	ds := newDamageStore(t, false)
	data := randomBytes(7, 12<<20)
	ds.addFiles(map[string][]byte{"all": data})
	n := ds.node("all")
	if len(n.Extents) < 3 {
		t.Fatalf("all has %d extents, the test wants several", len(n.Extents))
	}
	for _, e := range n.Extents {
		pack, off, length := ds.packOf(e.ID)
		flip(t, pack, off+length/2)
	}
	r := ds.open()
	p, err := r.LoadPoint(ds.point)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), r, p, RestoreOptions{Target: filepath.Join(t.TempDir(), "t")})
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("restore: %v, want ErrDamaged", err)
	}
	want := fmt.Sprintf("%d damaged ranges, %d bytes in all", len(n.Extents), len(data))
	if len(res.Damaged) != 1 || res.Damaged[0].Path != "all" || !strings.Contains(res.Damaged[0].Error, want) {
		t.Errorf("damaged %+v, want all with %q", res.Damaged, want)
	}
}
