// Command s3speed measures an S3 gateway's own throughput as recall's s3
// backend sees it: PUT, then ranged GETs, of 16 MiB objects over 8
// connections — the figures bench/run.sh holds recall's backup, restore
// and copy to. It is BenchmarkGateway (chunkstore/backend/s3) against a
// running gateway instead of the tests' own cluster.
//
//	s3speed [-conns 8] [-size 16777216] [-n 32] s3:http://host:port/bucket/prefix
//
// Credentials are the backend's (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, a credentials file). The bucket is made when
// missing. Before the timed PUTs, one object per connection is written
// untimed: the first write to a new gateway creates its data pool, which
// is no part of its speed. Every object is removed at the end. Output on
// stdout, MB = 10^6 bytes:
//
//	put_mbps 183.2
//	get_mbps 412.9
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/s3"
)

func main() {
	conns := flag.Int("conns", 8, "connections (parallel requests)")
	size := flag.Int("size", 16<<20, "object size in bytes")
	n := flag.Int("n", 32, "objects PUT and then read back, timed")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: s3speed [-conns N] [-size BYTES] [-n N] s3:http://host:port/bucket/prefix")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *conns < 1 || *size < 2 || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), flag.Arg(0), *conns, *size, *n); err != nil {
		fmt.Fprintln(os.Stderr, "s3speed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, conns, size, n int) error {
	cfg, err := s3.ParseURL(url)
	if err != nil {
		return err
	}
	cfg.Connections = conns
	be, err := s3.Create(ctx, cfg)
	if err != nil {
		return err
	}
	defer be.Close()
	data := make([]byte, size)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	h := func(i int) backend.Handle {
		return backend.Handle{Type: backend.Packs, Name: fmt.Sprintf("%064x", i)}
	}
	defer func() {
		for i := range n + conns {
			be.Remove(ctx, h(i))
		}
	}()
	// The untimed warm-up objects are n..n+conns-1.
	if _, err := parallel(conns, conns, func(i int, _ []byte) error { return be.Save(ctx, h(n+i), data) }, size); err != nil {
		return fmt.Errorf("warm-up PUT: %w", err)
	}
	put, err := parallel(n, conns, func(i int, _ []byte) error { return be.Save(ctx, h(i), data) }, size)
	if err != nil {
		return fmt.Errorf("PUT: %w", err)
	}
	get, err := parallel(n, conns, func(i int, buf []byte) error {
		// Two ranged GETs of half an object each: how restore reads runs
		// of blobs.
		half := size / 2
		for off := 0; off < size; off += half {
			l := min(half, size-off)
			if _, err := be.Load(ctx, h(i), int64(off), l, buf[off:off]); err != nil {
				return err
			}
		}
		return nil
	}, size)
	if err != nil {
		return fmt.Errorf("GET: %w", err)
	}
	mbps := func(d time.Duration) float64 { return float64(n) * float64(size) / 1e6 / d.Seconds() }
	fmt.Printf("put_mbps %.1f\nget_mbps %.1f\n", mbps(put), mbps(get))
	return nil
}

// parallel calls op for i in [0, n) from conns goroutines, each with a
// buffer of size bytes of its own, and returns the wall time.
func parallel(n, conns int, op func(i int, buf []byte) error, size int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := op(i, buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}
