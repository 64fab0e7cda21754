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

// BenchmarkTapeWrite writes a point of 256 MiB from a store in memory to an
// emulated LTO-9 drive (400 MB/s) and reports the share of the drive's
// rate the writer sustains: below 1/3 a real drive shoe-shines, and the
// goal is 0.9 or more. Each iteration writes a new set.
func BenchmarkTapeWrite(b *testing.B) {
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
	defer s.Close()
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
	warn := func(string, ...any) {}
	if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(dir, "lib"), Warn: warn,
		Emulator: tapefs.EmulatorOptions{Slots: b.N + 1, Drives: 1, Rate: lto9Rate}}); err != nil {
		b.Fatal(err)
	}
	if _, err := CreateTapePool(home, TapePool{Name: "p", Retention: "1y", Allocation: AllocAlways}, time.Now(), warn); err != nil {
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
		secs += rep.Seconds
	}
	b.StopTimer()
	rate := float64(bytes) / secs
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(rate/lto9Rate, "drive-ratio")
}
