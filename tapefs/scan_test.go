package tapefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// testPackSizes are the packs of each point writeTestSet writes: one
// spans two blocks.
var testPackSizes = []int{3000, BlockSize + 7, 10}

// writeTestSet writes a cartridge as the engine does: labels, then per
// point a packs file and a point file, and a catalog file after each job
// (jobs points each), after a first cartridge of the set holding point-0.
// It returns the catalog the last catalog file holds.
func writeTestSet(t testing.TB, d Drive, set SetLabel, poolKey []byte, jobs ...int) *MediaCatalog {
	t.Helper()
	ctx := context.Background()
	if err := WriteLabels(ctx, d, testVolume, set); err != nil {
		t.Fatal(err)
	}
	o := FileOptions{Compress: set.Compressed}
	if poolKey != nil {
		o.Key = SetKey(poolKey, set.SetID)
	}
	cat := &MediaCatalog{Pool: set.Pool, SetID: set.SetID, Written: testTime,
		Tapes: []CatalogTape{{Sequence: 1, Barcode: "RC0000L9", VolumeID: "earlier", Full: true},
			{Sequence: set.Sequence, Barcode: testVolume.Barcode, VolumeID: testVolume.VolumeID}},
		// The set's first cartridge holds a point too: full scans keep it.
		Files:  []CatalogFile{{Sequence: 1, FileNo: 2, StartPos: 4, Kind: KindPacks, Entries: []CatalogEntry{{Name: "00aa", Size: 5}}}},
		Points: []CatalogPoint{{ID: "point-0", Source: "web", Time: testTime, Packs: []string{"00aa"}, Files: []int{0}}}}
	fileNo, n := 2, 0
	for _, points := range jobs {
		for range points {
			n++
			packs := makeEntries(uint64(n), testPackSizes...)
			for i := range packs {
				packs[i].name = fmt.Sprintf("%02x%062x", n, i)
			}
			w := writeFile(t, d, KindPacks, fileNo, o, packs)
			cat.Files = append(cat.Files, CatalogFile{Sequence: set.Sequence, FileNo: fileNo, StartPos: w.StartPos(), Kind: KindPacks, Entries: w.Entries()})
			fileNo++
			p := CatalogPoint{ID: fmt.Sprintf("point-%d", n), Source: "web", Time: testTime}
			for _, pk := range packs {
				p.Packs = append(p.Packs, pk.name)
			}
			pj, _ := json.Marshal(pointJSON{p.ID, p.Source, p.Time, p.Packs})
			w = writeFile(t, d, KindPoint, fileNo, o, []testEntry{{"manifest", []byte("manifest bytes")}, {pointFileJSON, pj}})
			cat.Files = append(cat.Files, CatalogFile{Sequence: set.Sequence, FileNo: fileNo, StartPos: w.StartPos(), Kind: KindPoint, Entries: w.Entries()})
			fileNo++
			p.Files = []int{len(cat.Files) - 2, len(cat.Files) - 1}
			cat.Points = append(cat.Points, p)
		}
		if _, err := WriteCatalogFile(ctx, d, fileNo, o, cat); err != nil {
			t.Fatal(err)
		}
		fileNo++
	}
	return cat
}

func TestScanTape(t *testing.T) {
	ctx := context.Background()
	plain := testSet
	plain.KeyFingerprint = ""
	for _, tc := range []struct {
		name    string
		set     SetLabel
		key     []byte
		damage  func(d *memDrive)
		catalog bool // read from the catalog file
		torn    bool
		damaged int // files named damaged
		points  int
	}{
		{"catalog file", plain, nil, nil, true, false, 0, 4},
		{"catalog file, encrypted", testSet, testKey, nil, true, false, 0, 4},
		{"torn last file", plain, nil, func(d *memDrive) {
			// A job cut by a power cut after its packs' first blocks.
			d.SeekEOD(context.Background())
			w, _ := NewFileWriter(context.Background(), d, KindPacks, 9, FileOptions{Compress: true})
			w.Add(context.Background(), "cut", make([]byte, 2*BlockSize))
		}, false, true, 1, 4},
		{"torn last block, encrypted", testSet, testKey, func(d *memDrive) {
			d.objs = d.objs[:len(d.objs)-1]
			last := d.objs[len(d.objs)-1]
			d.objs[len(d.objs)-1] = last[:len(last)-3]
		}, false, true, 1, 4},
		{"bad block in a packs file", plain, nil, func(d *memDrive) {
			// The last job's packs file: its second block holds the end
			// of the second pack.
			d.bad = map[int]bool{len(d.objs) - 2 - 2 - 2: true}
			d.objs = d.objs[:len(d.objs)-2] // without the last catalog file
		}, false, false, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newMemDrive()
			want := writeTestSet(t, d, tc.set, tc.key, 2, 1)
			if tc.damage != nil {
				tc.damage(d)
			}
			res, err := ScanTape(ctx, d, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if res.FromCatalogFile != tc.catalog || res.Torn != tc.torn || len(res.Damaged) != tc.damaged {
				t.Fatalf("from catalog %v torn %v damaged %v, want %v %v %d", res.FromCatalogFile, res.Torn, res.Damaged, tc.catalog, tc.torn, tc.damaged)
			}
			if !reflect.DeepEqual(*res.Volume, testVolume) || !reflect.DeepEqual(*res.Set, tc.set) {
				t.Fatalf("labels %+v %+v", res.Volume, res.Set)
			}
			if p, _ := d.Position(ctx); res.EODPos != uint64(len(d.objs)) || p != res.EODPos {
				t.Fatalf("EODPos %d, drive at %d, want both %d", res.EODPos, p, len(d.objs))
			}
			c := res.Catalog
			if tc.catalog {
				want.Version = CatalogVersion
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("catalog\n%+v\nwant\n%+v", c, want)
				}
				return
			}
			if len(c.Points) != tc.points {
				t.Fatalf("%d points, want %d", len(c.Points), tc.points)
			}
			for _, p := range c.Points {
				var wp CatalogPoint
				for _, q := range want.Points {
					if q.ID == p.ID {
						wp = q
					}
				}
				if !reflect.DeepEqual(p.Packs, wp.Packs) || p.Source != wp.Source || !p.Time.Equal(wp.Time) {
					t.Errorf("point %+v, want %+v", p, wp)
				}
				if p.ID == "point-0" {
					if len(p.Files) != 1 || !reflect.DeepEqual(c.Files[p.Files[0]], want.Files[0]) {
						t.Errorf("point-0 of the first cartridge: files %v", p.Files)
					}
					continue
				}
				if len(p.Files) != 2 || c.Files[p.Files[0]].Kind != KindPacks || c.Files[p.Files[1]].Kind != KindPoint {
					t.Errorf("point %s: files %v", p.ID, p.Files)
				}
			}
			damaged := map[int]bool{}
			for _, f := range res.Damaged {
				damaged[f.FileNo] = true
			}
			type at struct{ seq, fileNo int }
			byNo := map[at]CatalogFile{}
			for _, f := range c.Files {
				byNo[at{f.Sequence, f.FileNo}] = f
			}
			for _, f := range want.Files {
				got := byNo[at{f.Sequence, f.FileNo}]
				if !(f.Sequence == tc.set.Sequence && damaged[f.FileNo]) && !reflect.DeepEqual(got, f) {
					t.Errorf("file %d of cartridge %d: %+v, want %+v", f.FileNo, f.Sequence, got, f)
				}
			}
			if len(c.Tapes) != 2 || c.Tapes[0].Sequence != 1 || c.Tapes[1].VolumeID != testVolume.VolumeID {
				t.Errorf("tapes %+v", c.Tapes)
			}
		})
	}
}

func TestScanTapeWrongKey(t *testing.T) {
	ctx := context.Background()
	d := newMemDrive()
	writeTestSet(t, d, testSet, testKey, 1)
	other := make([]byte, 32)
	for _, key := range [][]byte{nil, other} {
		if _, err := ScanTape(ctx, d, key); !errors.Is(err, ErrWrongKey) {
			t.Errorf("key %x: %v, want ErrWrongKey", key, err)
		}
	}
}
