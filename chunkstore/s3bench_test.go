package chunkstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
	"github.com/recall-backup/recall/internal/cephtest"
)

// BenchmarkS3Upload compares what the store uploads to a Ceph gateway with
// what the gateway takes: "gateway" PUTs 16 MiB objects over 8
// connections (the s3 package's BenchmarkGateway), "store" saves as many
// bytes of incompressible 1 MiB chunks through a store on the same
// gateway, flush included, with as many packs uploading at once as the
// backend has connections ("store") and with two ("store-2", what a local
// disk gets). Each iteration is 16 MiB; 64 of them are 1 GiB:
//
//	go test -run - -bench S3Upload -benchtime 64x ./chunkstore
func BenchmarkS3Upload(b *testing.B) {
	const unit, chunk, conns = 16 << 20, 1 << 20, 8
	cl := cephtest.Start(b, cephtest.Options{MemstoreSize: 6 << 30})
	ctx := context.Background()
	config := func() s3.Config {
		tok := make([]byte, 6)
		rand.Read(tok)
		return s3.Config{Endpoint: cl.Endpoint, Bucket: "bench", Prefix: hex.EncodeToString(tok), AccessKey: cl.AccessKey, SecretKey: cl.SecretKey, Connections: conns}
	}
	openS3 := func(b *testing.B) *s3.Backend {
		be, err := s3.Create(ctx, config())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { be.Close() })
		return be
	}
	rate := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)*unit/(1<<20)/time.Since(start).Seconds(), "MiB/s")
	}

	b.Run("gateway", func(b *testing.B) {
		be := openS3(b)
		data := make([]byte, unit)
		rand.Read(data)
		b.SetBytes(unit)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
					if err := be.Save(ctx, backend.Handle{Type: backend.Packs, Name: fmt.Sprintf("%064x", i)}, data); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rate(b, start)
	})

	// "store" uploads as many packs at once as the backend has
	// connections; "store-2" hides them (two at once, as on a local disk).
	// "store-32MiB" makes packs of 32 MiB: what the requests per pack
	// (the pack's journal entry, its removal) cost.
	for _, v := range []struct {
		name string
		wrap func(*s3.Backend) backend.Backend
		pack int
	}{
		{"store", func(be *s3.Backend) backend.Backend { return be }, 16 << 20},
		{"store-2", func(be *s3.Backend) backend.Backend { return struct{ backend.Backend }{be} }, 16 << 20},
		{"store-32MiB", func(be *s3.Backend) backend.Backend { return be }, 32 << 20},
	} {
		b.Run(v.name, func(b *testing.B) {
			defer func(size int) { PackTargetSize = size }(PackTargetSize)
			PackTargetSize = v.pack
			be := v.wrap(openS3(b))
			if _, err := InitBackend(be, InitOptions{Compression: CompressionZstd}); err != nil {
				b.Fatal(err)
			}
			s, err := OpenBackend(be, OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// The chunks and their ids are made before the clock starts: what
			// is measured is the store's way to the gateway, not the CPU's
			// random numbers and hashes.
			chunks := make([][]byte, b.N*unit/chunk)
			ids := make([]ID, len(chunks))
			for i := range chunks {
				chunks[i] = make([]byte, chunk)
				rand.Read(chunks[i])
				ids[i] = s.Hash(chunks[i])
			}
			l, err := s.LockSession(ctx, "bench", "bench", 0, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Unlock()
			w, err := l.NewWriter()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(unit)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range runtime.GOMAXPROCS(0) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1) - 1; i < int64(len(chunks)); i = next.Add(1) - 1 {
						if _, err := w.SaveBlob(DataBlob, ids[i], chunks[i]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			flush := time.Now()
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(flush).Seconds(), "flush-s")
			rate(b, start)
		})
	}
}
