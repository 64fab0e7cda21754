package engine

import "sync"

// Chunks of large files without a copy.
//
// The sequential path of a large file chunks it with a chunker reset with
// ResetOwned: the chunker reads into segments (buffers of 4 MiB or more)
// that it never moves or overwrites, so each chunk is handed to a saver
// as a slice of its segment instead of being copied into a buffer of its
// own. A segment goes back to the pool when the chunker has moved on
// from it and every chunk cut from it is saved. That copy was a tenth of
// the CPU time of a warm first backup of the bench set with s2 (0.73 of
// 7.3 CPU-seconds), and the chunker's moving of its unreturned bytes to
// the front of its buffer another 2%; now only the unfinished chunk at a
// segment's end is copied, into the next one.
//
// A file has at most segsPerFile segments at once: the one being read
// into and cut, and the one before, whose chunks the savers are still
// working on. Waiting for the older one ends because savers always give
// their chunks back. Segments are not counted in the budget (a file
// holding one and waiting for another, beside others doing the same,
// could wait for ever); they replace the chunker's own buffer and the
// budget's copies of its chunks.
const segsPerFile = 2

// segPool keeps a backup's segment buffers for the next file.
type segPool struct {
	mu   sync.Mutex
	free [][]byte
}

// segPoolKeep is how many free segments the pool keeps; more are
// dropped.
const segPoolKeep = 8

func (p *segPool) get(n int) []byte {
	p.mu.Lock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; cap(b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			p.mu.Unlock()
			return b[:n]
		}
	}
	p.mu.Unlock()
	return make([]byte, n)
}

func (p *segPool) put(b []byte) {
	p.mu.Lock()
	if len(p.free) < segPoolKeep {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}

// segFile hands one file's chunker its segments (give) and its chunks
// (chunk), and gives the segments back as the chunks are saved.
type segFile struct {
	pool *segPool
	mu   sync.Mutex
	cond sync.Cond
	live int      // segments taken and not given back
	cur  *segment // the one given last: chunks are cut from it
	prev *segment // the one before, while the chunker copies out of it
}

type segment struct {
	f        *segFile
	b        []byte
	refs     int    // the chunker's (while cur or prev) and its chunks' in flight
	giveBack func() // gives b back to whoever filled it (adopt), or nil: to the pool
}

func newSegFile(p *segPool) *segFile {
	f := &segFile{pool: p}
	f.cond.L = &f.mu
	return f
}

// give is the chunker's ResetOwned source: a segment of n bytes, once
// the file has fewer than segsPerFile.
func (f *segFile) give(n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The chunker has copied what it needed out of prev (it asks again
	// only after that): prev is its no longer.
	f.dropPrevLocked()
	for f.live >= segsPerFile {
		f.cond.Wait()
	}
	f.prev, f.cur = f.cur, &segment{f: f, b: f.pool.get(n), refs: 1}
	f.live++
	return f.cur.b
}

// adopt makes b, filled by a chunker's SegmentSource (the cold reader),
// the segment chunks are cut from; release gives it back once the chunker
// has moved on and its chunks are saved. The source has copied what the
// chunker kept out of the segment before: that one is the chunker's no
// longer. The source bounds how many it fills (no wait here).
func (f *segFile) adopt(b []byte, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropPrevLocked()
	if f.cur != nil {
		f.unrefLocked(f.cur)
	}
	f.cur = &segment{f: f, b: b, refs: 1, giveBack: release}
	f.live++
}

func (f *segFile) dropPrevLocked() {
	if f.prev != nil {
		f.unrefLocked(f.prev)
		f.prev = nil
	}
}

func (f *segFile) unrefLocked(s *segment) {
	s.refs--
	if s.refs == 0 {
		if s.giveBack != nil {
			s.giveBack()
		} else {
			f.pool.put(s.b)
		}
		s.b = nil
		f.live--
		f.cond.Broadcast()
	}
}

// chunk returns data, a chunk the chunker just returned (a slice of
// cur), as a buffer to hand to a saver: its segment stays until it is
// given back (budget.put).
func (f *segFile) chunk(data []byte) *chunkBuf {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropPrevLocked()
	f.cur.refs++
	return &chunkBuf{b: data, seg: f.cur}
}

// done ends the chunker's use of its segments (it must be Reset first);
// they go back once their chunks are saved.
func (f *segFile) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropPrevLocked()
	if f.cur != nil {
		f.unrefLocked(f.cur)
		f.cur = nil
	}
}

// release gives back one chunk of s.
func (s *segment) release() {
	f := s.f
	f.mu.Lock()
	f.unrefLocked(s)
	f.mu.Unlock()
}
