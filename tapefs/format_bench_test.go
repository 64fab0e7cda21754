package tapefs

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkFileWriter writes 1 GiB of 64 MiB entries to a drive that
// discards: the format's own cost per byte, which must stay well above
// the 400 MB/s of an LTO-9 drive so one core keeps a drive streaming.
func BenchmarkFileWriter(b *testing.B) {
	const entry = 64 << 20
	const total = 1 << 30
	data := make([]byte, entry)
	// Half random, half zeros: compression has something to do.
	for i := 0; i < entry/2; i += 8 {
		x := uint64(i)*0x9e3779b97f4a7c15 + 1
		for j := 0; j < 8; j++ {
			data[i+j] = byte(x >> (8 * j))
		}
	}
	for _, tc := range fileOptionCases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				d := &discardDrive{memDrive: *newMemDrive()}
				w, err := NewFileWriter(ctx, d, KindPacks, 2, tc.o)
				if err != nil {
					b.Fatal(err)
				}
				for range total / entry {
					if _, err := w.Add(ctx, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", data); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFileWriterIncompressible writes packs the store already
// compressed or encrypted to a pool that compresses: every block's
// compression is tried and dropped, which must not slow the writer below
// a drive's rate.
func BenchmarkFileWriterIncompressible(b *testing.B) {
	const entry = 64 << 20
	const total = 1 << 30
	data := make([]byte, entry)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for _, o := range []FileOptions{{Compress: true}, {Compress: true, Key: testKey}} {
		name := "compressed"
		if o.Key != nil {
			name += "+encrypted"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			b.SetBytes(total)
			for b.Loop() {
				d := &discardDrive{memDrive: *newMemDrive()}
				w, _ := NewFileWriter(ctx, d, KindPacks, 2, o)
				for range total / entry {
					if _, err := w.Add(ctx, "pack", data); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAddStreams checks that Add of a 64 MiB pack holds no copy of it:
// a writer's memory is its one block buffer (and the compressor's
// scratch), allocated before, whatever the entry's size.
func TestAddStreams(t *testing.T) {
	data := make([]byte, 64<<20)
	for _, tc := range fileOptionCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := &discardDrive{memDrive: *newMemDrive()}
			w, err := NewFileWriter(ctx, d, KindPacks, 2, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			// The first Add grows the compressor's scratch and warms the
			// shared encoder.
			w.Add(ctx, "warm", data)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := w.Add(ctx, "pack", data); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
				t.Fatalf("Add of a 64 MiB entry allocated %d bytes", got)
			}
		})
	}
}

// BenchmarkFileReader reads back 256 MiB of 64 MiB entries from memory:
// a restore reads at the drive's rate only if opening blocks is faster.
func BenchmarkFileReader(b *testing.B) {
	const entry = 64 << 20
	data := make([]byte, entry)
	for i := 0; i < entry/2; i += 8 {
		x := uint64(i)*0x9e3779b97f4a7c15 + 1
		for j := 0; j < 8; j++ {
			data[i+j] = byte(x >> (8 * j))
		}
	}
	buf := make([]byte, 256<<10)
	for _, tc := range fileOptionCases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			d := newMemDrive()
			writeFile(b, d, KindPacks, 2, tc.o, []testEntry{{"a", data}, {"b", data}, {"c", data}, {"d", data}})
			b.SetBytes(4 * entry)
			b.ReportAllocs()
			for b.Loop() {
				d.Rewind(ctx)
				r, err := NewFileReader(ctx, d, tc.o)
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, _, err := r.Next(ctx)
					if err != nil {
						break
					}
					for {
						if _, err := r.Read(buf); err != nil {
							break
						}
					}
				}
			}
		})
	}
}
