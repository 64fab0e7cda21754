package chunkstore

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSessionFirstWriter: what a backup pays before it reads a byte,
// a write session's lock and its first writer (which adopts what an
// interrupted session of its source left), on stores of 10^4 and 10^5
// tiny packs with their index files. The store is opened once, as a
// server keeps it open; each round takes a new lock. The cost must not
// grow with the number of packs stored.
//
//	go test -run '^$' -bench SessionFirstWriter -benchtime 20x ./chunkstore
func BenchmarkSessionFirstWriter(b *testing.B) {
	for _, packs := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("packs=%d", packs), func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "store")
			start := time.Now()
			synthStore(b, dir, packs)
			// The fixture's writes go to disk now, not during the
			// rounds timed.
			syscall.Sync()
			b.Logf("built %d packs in %v", packs, time.Since(start))
			s, err := Open(dir, OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for b.Loop() {
				l, err := s.LockSession(bg, "bench", "bench", 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				w, err := l.NewWriter()
				if err != nil {
					b.Fatal(err)
				}
				w.Abort()
				l.Unlock()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/session")
		})
	}
}
