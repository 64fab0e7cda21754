package chunkstore

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSessionFirstWriter: what a backup pays before it reads a byte,
// a write session's lock and its first writer, on stores of 10^4 and 10^5
// tiny packs with their index files: "clean" after a session that
// completed, "adopt" after one that was interrupted with a pack visible
// and not indexed (the first writer reads the journal, the pack's header,
// and writes its index file). The store is opened once, as a server keeps
// it open; each round takes a new lock. Neither may grow with the number
// of packs stored.
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
			firstWriter := func() {
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
			seq := 0
			// interrupted leaves what a session killed between a pack
			// and its index file leaves: the pack and its journal entry.
			interrupted := func() {
				l, err := s.LockSession(bg, "bench", "bench", 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Unlock()
				w, err := l.NewWriter()
				if err != nil {
					b.Fatal(err)
				}
				seq++
				data := []byte(fmt.Sprintf("left by an interrupted session %d", seq))
				if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
					b.Fatal(err)
				}
				w.mu.Lock()
				p := w.open[DataBlob]
				w.open[DataBlob] = nil
				w.mu.Unlock()
				if _, err := w.finish(p); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("clean", func(b *testing.B) {
				for b.Loop() {
					firstWriter()
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/session")
			})
			b.Run("adopt", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					interrupted()
					b.StartTimer()
					firstWriter()
					b.StopTimer()
					if left, err := s.journalList(""); err != nil || len(left) > 0 {
						b.Fatalf("the journal after the first writer: %v, %v; want it empty", left, err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/session")
			})
		})
	}
}
