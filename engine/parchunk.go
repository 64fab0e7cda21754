package engine

import (
	"errors"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/procs"
)

// Parallel chunking of one large region.
//
// Content-defined chunking is sequential: where a chunk ends depends on
// where the previous one ended. But after a cut at position p, restic's
// chunker depends only on p and the bytes after it (its window is reset
// and the first MinSize-64 bytes are skipped). So the region is split into
// segments and every segment is chunked at once by its own goroutine as if
// a cut were at its start. A stitcher then follows the true chain of cuts:
// as soon as the chain reaches a cut that a segment's chunker also made,
// both agree from there on, and that segment's cuts are taken as they are.
// Where they never meet (long runs of zeroes, whose cuts keep their phase)
// the stitcher chunks on by itself from the last true cut. The result is
// identical to one sequential pass, so dedup against earlier points is
// unaffected.

// parSegment is the segment size; each segment costs one extra chunk of
// chunking (the one that crosses into the next segment).
var parSegment int64 = 64 << 20

type segCuts struct {
	done chan struct{}
	cuts []int64 // absolute ends of chunks, the last one >= next segment start (or region end)
	err  error
}

// cutsFrom chunks [from, end) of f with a fresh chunker and returns the
// chunk ends, stopping after the first end >= stop.
func cutsFrom(f *os.File, chk *chunkstore.Chunker, from, stop, end int64) ([]int64, error) {
	chk.Reset(io.NewSectionReader(f, from, end-from))
	var cuts []int64
	pos := from
	for pos < stop {
		c, err := chk.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		pos += int64(len(c))
		cuts = append(cuts, pos)
	}
	return cuts, nil
}

// parallelCuts calls emit(start, end) for every chunk of [start, end) in
// order, exactly as sequential chunking would cut it. emit runs in the
// caller's goroutine; an error from it stops everything.
//
// chunkers hands out chunkers with the store's parameters; the backup's
// sequential path shares it, so buffers are not allocated again per file.
func parallelCuts(f *os.File, chunkers *chunkerPool, start, end int64, emit func(a, b int64) error) error {
	workers := procs.CPUs()
	nseg := int((end - start + parSegment - 1) / parSegment)
	segStart := func(j int) int64 { return start + int64(j)*parSegment }
	segs := make([]*segCuts, nseg)
	for j := range segs {
		segs[j] = &segCuts{done: make(chan struct{})}
	}
	tokens := make(chan struct{}, workers+1)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(quit)
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; j < nseg; j++ {
			select {
			case tokens <- struct{}{}:
			case <-quit:
				return
			}
			wg.Add(1)
			go func(s *segCuts, from, stop int64) {
				defer wg.Done()
				defer close(s.done)
				chk := chunkers.Get()
				defer chunkers.Put(chk)
				s.cuts, s.err = cutsFrom(f, chk, from, stop, end)
			}(segs[j], segStart(j), min(segStart(j+1), end))
		}
	}()
	wait := func(j int) ([]int64, error) {
		select {
		case <-segs[j].done:
			return segs[j].cuts, segs[j].err
		case <-quit:
			return nil, errors.New("stopped")
		}
	}
	released := 0
	release := func(pos int64) {
		// Segments wholly behind pos are done with: let more start.
		for released < nseg && (segStart(released+1) <= pos || pos >= end) {
			<-tokens
			released++
		}
	}
	segOf := func(p int64) int { return int((p - start) / parSegment) }

	pos := start
	for pos < end {
		j := segOf(pos)
		cuts, err := wait(j)
		if err != nil {
			return err
		}
		i := 0
		if pos != segStart(j) {
			k, found := slices.BinarySearch(cuts, pos)
			if !found {
				// Not in step with segment j: chunk on from the last true
				// cut until the chain meets a segment's cuts.
				chk := chunkers.Get()
				chk.Reset(io.NewSectionReader(f, pos, end-pos))
				synced := false
				for !synced && pos < end {
					c, err := chk.Next()
					if err == io.EOF {
						err = errShrank
					}
					if err != nil {
						chunkers.Put(chk)
						return err
					}
					next := pos + int64(len(c))
					if err := emit(pos, next); err != nil {
						chunkers.Put(chk)
						return err
					}
					pos = next
					release(pos)
					if pos >= end {
						break
					}
					sj := segOf(pos)
					if pos == segStart(sj) {
						synced = true
						break
					}
					sc, err := wait(sj)
					if err != nil {
						chunkers.Put(chk)
						return err
					}
					_, synced = slices.BinarySearch(sc, pos)
				}
				chunkers.Put(chk)
				continue
			}
			i = k + 1
		}
		for ; i < len(cuts); i++ {
			if err := emit(pos, cuts[i]); err != nil {
				return err
			}
			pos = cuts[i]
			release(pos)
		}
		if pos < end && pos < segStart(j+1) {
			// Segment j's chunker met the end of the file before the
			// segment's end: the file shrank while read. Taking its cuts
			// again would not move pos (it spun here for good before).
			return errShrank
		}
	}
	return nil
}

// errShrank: the region ended before its end as the file's stat gave
// it: the file shrank while read. The caller keeps what was read up to
// the last cut and compares the file's stat, which reads it again.
var errShrank = errors.New("file shrank while read")

// chunkerPool keeps a backup's chunkers (each with a 4 MiB buffer) for
// the next file or segment. Not a sync.Pool: every garbage collection
// empties one, and a backup collects every few tens of milliseconds
// (internal/procs), so most files got a chunker allocated and zeroed
// afresh: 4% of a warm first backup's CPU time, in memclr. It holds at
// most as many as were in use at once (the file slots and the parallel
// segments), and all go with the backup.
type chunkerPool struct {
	mu   sync.Mutex
	free []*chunkstore.Chunker
	st   chunkerMaker
}

type chunkerMaker interface {
	NewChunker(io.Reader) *chunkstore.Chunker
}

func newChunkerPool(st chunkerMaker) *chunkerPool { return &chunkerPool{st: st} }

// Get returns a free chunker, or a new one.
func (p *chunkerPool) Get() *chunkstore.Chunker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c
	}
	return p.st.NewChunker(nil)
}

// Put gives c back; it drops its reader.
func (p *chunkerPool) Put(c *chunkstore.Chunker) {
	c.Reset(nil)
	p.mu.Lock()
	p.free = append(p.free, c)
	p.mu.Unlock()
}
