package tapefs

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"testing"

	"github.com/recall-backup/recall/internal/golden"
)

// countingReader gives 0, 1, 2, ... : fixed nonces and salts, so sealed
// formats can be pinned.
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

func fixRandom(t *testing.T) {
	oldN, oldK := nonceSource, keyFileRand
	nonceSource, keyFileRand = &countingReader{}, &countingReader{}
	t.Cleanup(func() { nonceSource, keyFileRand = oldN, oldK })
}

// goldenEntries is a small file: two entries and the end record.
var goldenEntries = []testEntry{
	{"0123abcd", bytes.Repeat([]byte("pack bytes "), 8)},
	{"manifest", []byte("hello, tape")},
}

// TestGoldenFormat pins every on-tape encoding, and reads each pinned
// encoding back: a tape written today must read with every later recall.
// The compressed block is the one pin a dependency can move: a newer zstd
// may compress the same data to other (equally valid) bytes. Then the
// old pinned block must still read back here before -update takes the
// new one.
func TestGoldenFormat(t *testing.T) {
	ctx := context.Background()
	fixRandom(t)
	for _, tc := range []struct {
		golden string
		o      FileOptions
	}{
		{"format/block-plain-v1.golden", FileOptions{}},
		{"format/block-compressed-v1.golden", FileOptions{Compress: true}},
		{"format/block-encrypted-v1.golden", FileOptions{Key: testKey}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			d := newMemDrive()
			writeFile(t, d, KindPacks, 5, tc.o, goldenEntries)
			if len(d.objs) != 2 {
				t.Fatalf("%d objects, want a block and a filemark", len(d.objs))
			}
			if tc.o.Compress && d.objs[0][5]&flagCompressed == 0 {
				t.Fatal("the compressed golden block is not compressed")
			}
			golden.Check(t, tc.golden, d.objs[0])
			d = &memDrive{objs: [][]byte{golden.Load(t, tc.golden), nil}}
			r, got, err := readAll(t, d, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind() != KindPacks || r.FileNo() != 5 {
				t.Fatalf("kind %v file %d", r.Kind(), r.FileNo())
			}
			sameEntries(t, got, goldenEntries)
		})
	}

	t.Run("labels", func(t *testing.T) {
		d := newMemDrive()
		if err := WriteLabels(ctx, d, testVolume, testSet); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "format/volume-label-v1.golden", d.objs[0])
		golden.Check(t, "format/set-label-v1.golden", d.objs[2])
		d = &memDrive{objs: [][]byte{golden.Load(t, "format/volume-label-v1.golden"), nil, golden.Load(t, "format/set-label-v1.golden"), nil}}
		v, s, err := ReadLabels(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*v, testVolume) || !reflect.DeepEqual(*s, testSet) {
			t.Fatalf("read back %+v %+v", v, s)
		}
	})

	t.Run("catalog", func(t *testing.T) {
		c := goldenCatalog()
		d := newMemDrive()
		if _, err := WriteCatalogFile(ctx, d, 9, FileOptions{}, c); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "format/catalog-file-v1.golden", d.objs[0])
		d = &memDrive{objs: [][]byte{golden.Load(t, "format/catalog-file-v1.golden"), nil}}
		r, err := NewFileReader(ctx, d, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readCatalogFile(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		c.Version = CatalogVersion
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("read back\n%+v\nwant\n%+v", got, c)
		}
	})

	t.Run("key file", func(t *testing.T) {
		// The default argon2id costs: the file pins them too.
		file, err := ExportKey("yearly", testKey, "correct horse battery staple")
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "format/key-file-v1.golden", file)
		pool, key, err := ImportKey(golden.Load(t, "format/key-file-v1.golden"), "correct horse battery staple")
		if err != nil || pool != "yearly" || !bytes.Equal(key, testKey) {
			t.Fatalf("import: %q %x %v", pool, key, err)
		}
	})

	t.Run("keys", func(t *testing.T) {
		// The derivations are part of the format: a set key derived
		// differently would not open the set's blocks.
		var b bytes.Buffer
		b.Write(SetKey(testKey, testSet.SetID))
		io.WriteString(&b, KeyFingerprint(testKey))
		golden.Check(t, "format/key-derivation-v1.golden", b.Bytes())
	})
}

func goldenCatalog() *MediaCatalog {
	return &MediaCatalog{Pool: "yearly", SetID: testSet.SetID, Written: testTime,
		Tapes: []CatalogTape{{Sequence: 1, Barcode: "RC0001L9", VolumeID: testVolume.VolumeID, Full: true}, {Sequence: 2, Barcode: "RC0002L9", VolumeID: "5e0b7c1d-2a3f-4b6e-8c9d-0f1e2d3c4b5a"}},
		Files: []CatalogFile{
			{Sequence: 1, FileNo: 2, StartPos: 4, Kind: KindPacks, Entries: []CatalogEntry{{Name: "0123abcd", Size: 88}, {Name: "4567ef01", Size: 1 << 26, Offset: 107}}},
			{Sequence: 2, FileNo: 2, StartPos: 4, Kind: KindPoint, Entries: []CatalogEntry{{Name: "manifest", Size: 11}, {Name: "point.json", Size: 120, Block: 1, Offset: 30}}},
		},
		Points: []CatalogPoint{{ID: "p-2026-11-29", Source: "web", Time: testTime, Packs: []string{"0123abcd", "4567ef01"}, Files: []int{0, 1}}},
	}
}
