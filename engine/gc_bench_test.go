package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// BenchmarkGC times one garbage collection of a synthetic store:
// GC_CHUNKS chunks (default 200,000) of 1 KiB in packs of 1 MiB, in 20
// points of one source; 12 points are forgotten. Half the chunks were
// written point after point (their packs die whole: deleted), half
// interleaved across the points (their packs are 60% dead: rewritten).
// It reports packs/s and MB/s marked (the points' trees walked, the index
// sorted into live and dead) and swept (copy, hide, delete), and the
// peak heap the collection added per live chunk.
func BenchmarkGC(b *testing.B) {
	chunks := 200_000
	if s := os.Getenv("GC_CHUNKS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("GC_CHUNKS=%q: %v", s, err)
		}
		chunks = n
	}
	withPackSize(b, 1<<20)
	// As the command line runs (cmd/recall sets it): the peak heap is
	// then near the live set.
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	for range b.N {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "store")
		forget := buildGCStore(b, dir, chunks)
		s, err := Open(dir, chunkstore.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range forget {
			if _, err := s.Forget(context.Background(), id.String(), "", LockOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		// As a store that has lived: its index consolidated (the
		// exclusive lock does it), read in place rather than held whole.
		ex, err := s.Session(context.Background(), SessionOptions{Purpose: "bench", Exclusive: true})
		if err != nil {
			b.Fatal(err)
		}
		ex.Close()
		s.Close()
		if s, err = Open(dir, chunkstore.OpenOptions{}); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		base := heapBytes()
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				peak.Store(max(peak.Load(), heapBytes()))
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		rep, err := GC(context.Background(), s, GCOptions{IndexGrace: -1})
		b.StopTimer()
		close(stop)
		<-sampled
		s.Close()
		if err != nil {
			b.Fatal(err)
		}
		if rep.PacksDeleted == 0 || rep.PacksRewritten == 0 {
			b.Fatalf("the collection did not delete and rewrite: %+v", rep)
		}
		mark, sweep := rep.MarkTime.Seconds(), rep.SweepTime.Seconds()
		b.ReportMetric(float64(rep.PacksMarked)/mark, "packs/s-marked")
		b.ReportMetric(float64(rep.BytesMarked)/1e6/mark, "MB/s-marked")
		b.ReportMetric(float64(rep.PacksDeleted)/sweep, "packs/s-swept")
		b.ReportMetric(float64(rep.BytesDeleted+rep.BytesWritten)/1e6/sweep, "MB/s-swept")
		b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/float64(rep.LiveBlobs), "B/live-chunk")
		b.ReportMetric(float64(rep.LiveBlobs), "live-chunks")
	}
}

// heapBytes is the memory of live and not yet swept heap objects.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// buildGCStore writes the benchmark's store and returns the points to
// forget.
func buildGCStore(b *testing.B, dir string, chunks int) []chunkstore.ID {
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{Compression: chunkstore.CompressionOff}); err != nil {
		b.Fatal(err)
	}
	st, err := Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ss, err := st.Session(context.Background(), SessionOptions{Purpose: "bench", Source: "bench", Blobs: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	const points = 20
	rnd := rand.NewChaCha8([32]byte{9})
	owned := make([][]chunkstore.ID, points)
	buf := make([]byte, 1024)
	for i := range chunks {
		rnd.Read(buf)
		id := st.st.Hash(buf)
		if _, err := ss.SaveBlob(chunkstore.DataBlob, id, buf); err != nil {
			b.Fatal(err)
		}
		p := i % points // interleaved
		if i >= chunks/2 {
			p = (i - chunks/2) * points / (chunks - chunks/2) // point after point
		}
		owned[p] = append(owned[p], id)
	}
	var forget []chunkstore.ID
	for p, ids := range owned {
		t := &Tree{}
		for f := 0; f*100 < len(ids); f++ {
			n := &Node{Name: fmt.Sprintf("f%06d", f), Type: TypeFile, Mode: 0o644}
			for _, id := range ids[f*100 : min(len(ids), f*100+100)] {
				n.Size += 1024
				n.Extents = append(n.Extents, Extent{End: n.Size, ID: id})
			}
			t.Nodes = append(t.Nodes, n)
		}
		tb := EncodeTree(t)
		tid := st.st.Hash(tb)
		if _, err := ss.SaveBlob(chunkstore.TreeBlob, tid, tb); err != nil {
			b.Fatal(err)
		}
		if err := ss.Flush(); err != nil {
			b.Fatal(err)
		}
		pt := &Point{Source: "bench", Kind: "dir", Time: time.Date(2026, 1, 1, p, 0, 0, 0, time.UTC), Tree: tid}
		id, err := ss.CommitPoint(pt)
		if err != nil {
			b.Fatal(err)
		}
		if p%5 < 3 {
			forget = append(forget, id)
		}
	}
	return forget
}
