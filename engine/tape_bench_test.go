package engine

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/tapefs"
)

// lto9Rate is an LTO-9 drive's native speed, the emulator's limit here.
const lto9Rate = 400e6

// emulatorBurst is the time the emulated drive's rate limiter lets pass at
// once: its bucket holds an eighth of a second's bytes and starts full
// each time a drive is opened (once per cartridge a job uses). The
// benchmarks count it as time spent, so what they report is the rate the
// drive sustains, not a burst.
const emulatorBurst = 0.125

// BenchmarkTapeWrite writes a point of 256 MiB from a store in memory to an
// emulated LTO-9 drive (400 MB/s) and reports the share of the drive's
// rate the writer sustains while it streams packs (loading and labelling
// the cartridge are the drive's own time): below 1/3 a real drive
// shoe-shines, and the goal is 0.9 or more. Each iteration writes a new
// set.
func BenchmarkTapeWrite(b *testing.B) {
	ctx := context.Background()
	home, s, p := tapeBenchHome(b, b.N+1, 0)
	if _, err := CreateTapePool(home, TapePool{Name: "p", Retention: "1y", Allocation: AllocAlways}, time.Now(), func(string, ...any) {}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var bytes int64
	var secs float64
	for range b.N {
		rep, err := s.WriteTape(ctx, home, TapeWriteOptions{Pool: "p", Points: []*Point{p}})
		if err != nil {
			b.Fatal(err)
		}
		bytes += rep.Bytes
		secs += rep.StreamSeconds + emulatorBurst*float64(len(rep.Tapes))
	}
	b.StopTimer()
	rate := float64(bytes) / secs
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(rate/lto9Rate, "drive-ratio")
}

// BenchmarkTapeRestore restores a point of 256 MiB written across three
// cartridges of an emulated LTO-9 drive (400 MB/s), the whole way: tape
// to staging store, index, restore into a directory in memory. It reports
// the point's bytes per second against the drive's rate.
func BenchmarkTapeRestore(b *testing.B) {
	ctx := context.Background()
	home, s, p := tapeBenchHome(b, 4, 128<<20)
	if _, err := CreateTapePool(home, TapePool{Name: "p", Retention: "1y"}, time.Now(), func(string, ...any) {}); err != nil {
		b.Fatal(err)
	}
	rep, err := s.WriteTape(ctx, home, TapeWriteOptions{Pool: "p", Points: []*Point{p}})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(home), "out")
	b.ResetTimer()
	var secs float64
	for range b.N {
		os.RemoveAll(out)
		start := time.Now()
		if _, err := RestoreFromTape(ctx, home, TapeRestoreOptions{Point: p.ID.String(), Target: out}); err != nil {
			b.Fatal(err)
		}
		secs += time.Since(start).Seconds() + emulatorBurst*float64(len(rep.Tapes))
	}
	b.StopTimer()
	rate := float64(rep.Bytes) * float64(b.N) / secs
	b.SetBytes(rep.Bytes)
	b.ReportMetric(float64(len(rep.Tapes)), "cartridges")
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(rate/lto9Rate, "drive-ratio")
}

// tapeBenchHome makes, in memory where the system has it, a home whose
// store holds a point of 256 MiB of random data (uncompressed), and an
// emulated library of slots cartridges (capacity 0: LTO-9's) at 400 MB/s.
func tapeBenchHome(b *testing.B, slots int, capacity int64) (string, *Store, *Point) {
	base := "/dev/shm"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = b.TempDir()
	}
	dir, err := os.MkdirTemp(base, "recall-tape-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	home := filepath.Join(dir, "home")
	storeDir := StoreDir(home)
	if _, err := chunkstore.Init(storeDir, chunkstore.InitOptions{Compression: chunkstore.CompressionOff}); err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64<<20)
	rnd := rand.New(rand.NewSource(1))
	for i := range 4 {
		rnd.Read(data)
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(storeDir, chunkstore.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ss, err := s.Session(ctx, SessionOptions{Purpose: "bench", Source: "src"})
	if err != nil {
		b.Fatal(err)
	}
	p, err := Backup(ctx, ss, BackupOptions{Path: src, Source: "src"})
	ss.Close()
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(src)
	if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(dir, "lib"), Warn: func(string, ...any) {},
		Emulator: tapefs.EmulatorOptions{Slots: slots, Drives: 1, Rate: lto9Rate, Capacity: capacity, EarlyWarning: capacity / 6}}); err != nil {
		b.Fatal(err)
	}
	return home, s, p
}
