package tapefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// testEntry is an entry with pseudo-random bytes, compressible when half
// is zeros.
type testEntry struct {
	name string
	data []byte
}

func makeEntries(seed uint64, sizes ...int) []testEntry {
	r := rand.New(rand.NewPCG(seed, 1))
	var es []testEntry
	for i, n := range sizes {
		b := make([]byte, n)
		for j := 0; j < n/2; j++ {
			b[j] = byte(r.Uint32())
		}
		es = append(es, testEntry{name: string(rune('a'+i%26)) + "-entry", data: b})
	}
	return es
}

func writeFile(t testing.TB, d Drive, kind FileKind, fileNo int, o FileOptions, es []testEntry) *FileWriter {
	t.Helper()
	ctx := context.Background()
	w, err := NewFileWriter(ctx, d, kind, fileNo, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if _, err := w.Add(ctx, e.name, e.data); err != nil {
			t.Fatalf("add %s: %v", e.name, err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// readAll reads a whole file, returning its entries and the error that
// ended it (nil at a clean end).
func readAll(t *testing.T, d Drive, o FileOptions) (*FileReader, []testEntry, error) {
	t.Helper()
	ctx := context.Background()
	r, err := NewFileReader(ctx, d, o)
	if err != nil {
		return nil, nil, err
	}
	var es []testEntry
	for {
		name, size, err := r.Next(ctx)
		if err == io.EOF {
			return r, es, nil
		}
		if err != nil {
			return r, es, err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return r, es, err
		}
		if int64(len(b)) != size {
			t.Fatalf("entry %s: read %d bytes, size says %d", name, len(b), size)
		}
		es = append(es, testEntry{name, b})
	}
}

// readEntries reads the entries of r to the end of its file.
func readEntries(t *testing.T, r *FileReader) []testEntry {
	t.Helper()
	ctx := context.Background()
	var es []testEntry
	for {
		name, _, err := r.Next(ctx)
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, testEntry{name, b})
	}
}

func sameEntries(t *testing.T, got, want []testEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].name != want[i].name || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("entry %d: %q of %d bytes, want %q of %d", i, got[i].name, len(got[i].data), want[i].name, len(want[i].data))
		}
	}
}

var testKey = bytes.Repeat([]byte{7}, 32)

var fileOptionCases = []struct {
	name string
	o    FileOptions
}{
	{"plain", FileOptions{}},
	{"compressed", FileOptions{Compress: true}},
	{"encrypted", FileOptions{Key: testKey}},
	{"compressed+encrypted", FileOptions{Key: testKey, Compress: true}},
}

func TestFileRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range fileOptionCases {
		t.Run(tc.name, func(t *testing.T) {
			c := dataCap(tc.o.Key != nil)
			// Empty, tiny, exactly a block's data, spanning blocks, and an
			// entry whose header straddles a block boundary.
			es := makeEntries(1, 0, 1, c, 3*BlockSize+5, c-10, 100, 7)
			d := newMemDrive()
			w1 := writeFile(t, d, KindPacks, 2, tc.o, es)
			w2 := writeFile(t, d, KindPoint, 3, tc.o, es[:2])
			if w1.StartPos() != 0 || w2.StartPos() == 0 {
				t.Fatalf("start positions %d, %d", w1.StartPos(), w2.StartPos())
			}
			if len(w1.Entries()) != len(es) {
				t.Fatalf("writer lists %d entries whole, want %d", len(w1.Entries()), len(es))
			}
			for i, b := range d.objs {
				if len(b) > BlockSize {
					t.Fatalf("block %d is %d bytes", i, len(b))
				}
				// The first four blocks are full: a tape sees 1 MiB blocks.
				if !tc.o.Compress && i < 4 && len(b) != BlockSize {
					t.Fatalf("block %d is %d bytes: a full block should be %d", i, len(b), BlockSize)
				}
			}
			d.Rewind(ctx)
			r, got, err := readAll(t, d, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind() != KindPacks || r.FileNo() != 2 {
				t.Fatalf("kind %v file %d", r.Kind(), r.FileNo())
			}
			sameEntries(t, got, es)
			if p, _ := d.Position(ctx); p != w2.StartPos() {
				t.Fatalf("after the first file at %d, want %d (past its filemark)", p, w2.StartPos())
			}
			// Next skips what is not read.
			r, err = NewFileReader(ctx, d, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ; ; n++ {
				if _, _, err := r.Next(ctx); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if n != 2 || r.Kind() != KindPoint {
				t.Fatalf("second file: %d entries of kind %v", n, r.Kind())
			}
			if _, err := NewFileReader(ctx, d, tc.o); !errors.Is(err, ErrEOD) {
				t.Fatalf("past the last file: %v, want ErrEOD", err)
			}
			// Straight to each entry, and on to the end of the file.
			for i, e := range w1.Entries() {
				r, err := OpenEntry(ctx, d, tc.o, w1.StartPos(), e)
				if err != nil {
					t.Fatalf("open entry %d: %v", i, err)
				}
				b, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(b, es[i].data) {
					t.Fatalf("entry %d: %d bytes, %v", i, len(b), err)
				}
				got := readEntries(t, r)
				sameEntries(t, got, es[i+1:])
				if r.FileNo() != 2 {
					t.Fatalf("entry %d: file %d", i, r.FileNo())
				}
			}
			// A catalog that names the wrong block.
			e := w1.Entries()[3]
			e.Block++
			if _, err := OpenEntry(ctx, d, tc.o, w1.StartPos(), e); !errors.Is(err, ErrBadBlock) {
				t.Fatalf("an entry opened at the wrong block: %v", err)
			}
		})
	}
}

func TestFileReaderWrongKey(t *testing.T) {
	ctx := context.Background()
	d := newMemDrive()
	writeFile(t, d, KindPacks, 2, FileOptions{Key: testKey}, makeEntries(2, 5000))
	other := bytes.Repeat([]byte{8}, 32)
	for _, key := range [][]byte{nil, other} {
		d.Rewind(ctx)
		if _, err := NewFileReader(ctx, d, FileOptions{Key: key}); !errors.Is(err, ErrWrongKey) {
			t.Errorf("key %x: %v, want ErrWrongKey", key, err)
		}
	}
}

func TestFileReaderDamage(t *testing.T) {
	ctx := context.Background()
	es := makeEntries(3, 2*BlockSize, 3*BlockSize, 10)
	for _, tc := range []struct {
		name   string
		damage func(d *memDrive)
		want   error
		whole  int  // entries read whole before the error
		more   bool // a file follows the damaged one
	}{
		{"medium error", func(d *memDrive) { d.bad = map[int]bool{3: true} }, ErrBadBlock, 1, true},
		{"flipped bit", func(d *memDrive) { d.objs[3][5000] ^= 1 }, ErrBadBlock, 1, true},
		{"flipped bit in the last block", func(d *memDrive) { d.objs[5][50] ^= 1 }, ErrBadBlock, 1, true},
		{"block out of order", func(d *memDrive) { d.objs[3], d.objs[4] = d.objs[4], d.objs[3] }, ErrBadBlock, 1, true},
		{"block of another file", func(d *memDrive) { d.objs[3] = d.objs[len(d.objs)-2] }, ErrBadBlock, 1, true},
		{"foreign block", func(d *memDrive) { d.objs[3] = bytes.Repeat([]byte("x"), 100) }, ErrBadBlock, 1, true},
		{"no end record", func(d *memDrive) { d.objs = append(d.objs[:3], nil) }, ErrTorn, 1, true},
		{"torn last block", func(d *memDrive) {
			n := len(d.objs) - 2
			d.objs = d.objs[:n+1]
			d.objs[n] = d.objs[n][:len(d.objs[n])/2]
		}, ErrTorn, 1, false},
		{"cut at a block", func(d *memDrive) { d.objs = d.objs[:4] }, ErrTorn, 1, false},
		{"filemark lost", func(d *memDrive) { d.objs = d.objs[:len(d.objs)-1] }, nil, 3, false},
	} {
		for _, oc := range fileOptionCases {
			t.Run(tc.name+"/"+oc.name, func(t *testing.T) {
				// File 2 is damaged; file 3 follows unless the damage
				// is a tear, which only the last file has.
				d := newMemDrive()
				writeFile(t, d, KindPacks, 2, oc.o, es)
				if len(d.objs) != 7 {
					t.Fatalf("file of %d objects, the cases expect 6 blocks and a filemark", len(d.objs))
				}
				tc.damage(d)
				d.SeekEOD(ctx)
				next := makeEntries(4, 100, BlockSize)
				if tc.more {
					writeFile(t, d, KindPacks, 3, oc.o, next)
				}
				d.Rewind(ctx)
				_, got, err := readAll(t, d, oc.o)
				if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				sameEntries(t, got[:min(len(got), tc.whole)], es[:tc.whole])
				if !tc.more {
					return
				}
				r, got, err := readAll(t, d, oc.o)
				if err != nil || r.FileNo() != 3 {
					t.Fatalf("the next file after the damage: %v", err)
				}
				sameEntries(t, got, next)
			})
		}
	}
}
