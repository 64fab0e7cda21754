package s3

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// BenchmarkGateway measures the gateway's own throughput as this backend
// sees it: PUT and ranged GET of 16 MiB objects over 8 connections, the
// figure backup and restore are held to (go test -run - -bench Gateway
// -benchtime 32x ./chunkstore/backend/s3).
func BenchmarkGateway(b *testing.B) {
	const size, conns = 16 << 20, 8
	cfg := config(b, gateway(b).Endpoint)
	cfg.Connections = conns
	be := open(b, cfg)
	data := randBytes(1, size)
	h := func(i int) backend.Handle {
		return backend.Handle{Type: backend.Packs, Name: fmt.Sprintf("%064x", i%(2*conns))}
	}
	// run calls op for i in [0, b.N) from conns goroutines.
	run := func(b *testing.B, op func(i int, buf []byte) error) {
		b.SetBytes(size)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, size)
				for i := int(next.Add(1) - 1); i < b.N; i = int(next.Add(1) - 1) {
					if err := op(i, buf); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)*size/(1<<20)/time.Since(start).Seconds(), "MiB/s")
	}
	b.Run("put", func(b *testing.B) {
		run(b, func(i int, _ []byte) error { return be.Save(bg, h(i), data) })
	})
	for i := range 2 * conns {
		if err := be.Save(bg, h(i), data); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("get", func(b *testing.B) {
		run(b, func(i int, buf []byte) error {
			// Two ranged GETs of half an object each: how restore reads
			// runs of blobs.
			half := size / 2
			for off := 0; off < size; off += half {
				if _, err := be.Load(bg, h(i), int64(off), half, buf[off:off]); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
