package chunkstore

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Content-defined chunking.
//
// The cut points are restic/chunker's, bit for bit: a 64-byte Rabin
// fingerprint over the store's random polynomial, no cut before MinChunk
// bytes, a cut where the low AverageBits bits of the fingerprint are zero,
// and a forced cut at MaxChunk. Stores depend on that forever (chunks of a
// new backup must match chunks already stored), and TestChunkerMatchesRestic
// compares both on random data, runs of zeroes and every boundary case.
//
// The scan is ours because restic's loop is bound by the latency of one
// chain of dependent table look-ups per byte. After restic's reset (its
// window zeroed, MinChunk-64 bytes skipped unhashed), the fingerprint that
// decides a cut at byte i depends only on bytes i-63..i: the byte slid in
// at reset has slid out again by the first position a cut may fall on, and
// the fingerprint is linear, so a window that starts from zero and takes
// 64 bytes reaches exactly the same value. So a region is scanned in
// several lanes at once, each lane a stretch of its own warmed up with the
// 64 bytes before it; the lanes' chains are independent and the CPU
// overlaps them. The first cut in stream order wins.

const windowSize = 64

// scanLane is the stretch one lane covers per round; scanLanes lanes make
// a round. A round may look past the cut that ends a chunk (up to
// scanLanes-1 lanes of wasted work, ~2% of the mean chunk) and costs
// scanLanes*windowSize bytes of warm-up.
const (
	scanLane  = 8 << 10
	scanLanes = 4
)

// cdcTables are restic/chunker's tables for one polynomial.
type cdcTables struct {
	out   [256]uint64 // out[b] = fingerprint of b followed by 63 zero bytes
	mod   [256]uint64 // reduction by the byte above the degree
	shift uint        // degree - 8
}

func newCDCTables(pol chunker.Pol) (*cdcTables, error) {
	deg := pol.Deg()
	if deg < 9 || deg > 53 {
		return nil, fmt.Errorf("chunker polynomial %v has degree %d, want 9..53", pol, deg)
	}
	t := &cdcTables{shift: uint(deg - 8)}
	appendByte := func(h chunker.Pol, b byte) chunker.Pol { return (h<<8 | chunker.Pol(b)).Mod(pol) }
	for b := 0; b < 256; b++ {
		h := appendByte(0, byte(b))
		for i := 0; i < windowSize-1; i++ {
			h = appendByte(h, 0)
		}
		t.out[b] = uint64(h)
		t.mod[b] = uint64(chunker.Pol(uint64(b)<<uint(deg)).Mod(pol) | chunker.Pol(b)<<uint(deg))
	}
	return t, nil
}

// scan returns the first index i in [from, to) at which the fingerprint of
// data[i-63:i+1] has no bit of mask set, or -1. from must be >= 64.
func (t *cdcTables) scan(data []byte, from, to int, mask uint64) int {
	if t.shift == 53-8 {
		// restic's RandomPolynomial, and so every store's, has degree
		// 53; a constant shift keeps the lanes' state in registers.
		for to-from >= scanLanes*scanLane {
			if i := t.scanRound53(data, from, mask); i >= 0 {
				return i
			}
			from += scanLanes * scanLane
		}
	}
	if from >= to {
		return -1
	}
	// The rest, or every byte for other degrees: one lane.
	shift := t.shift & 63
	var d uint64
	for _, b := range data[from-windowSize : from] {
		d = (d<<8 | uint64(b)) ^ t.mod[byte(d>>shift)]
	}
	tail := data[from-windowSize : to]
	for j, b := range tail[windowSize:] {
		d ^= t.out[tail[j]]
		d = (d<<8 | uint64(b)) ^ t.mod[byte(d>>shift)]
		if d&mask == 0 {
			return from + j
		}
	}
	return -1
}

// scanRound53 scans scanLanes*scanLane bytes from index from in
// scanLanes lanes (for polynomials of degree 53).
func (t *cdcTables) scanRound53(data []byte, from int, mask uint64) int {
	const (
		shift = 53 - 8
		l1    = scanLane
		l2    = 2 * scanLane
		l3    = 3 * scanLane
		w     = windowSize
	)
	// Lane k covers p[k*scanLane+w:] and warms up on the w bytes before.
	p := (*[scanLanes*scanLane + windowSize]byte)(data[from-windowSize:])
	out, mod := &t.out, &t.mod
	var d0, d1, d2, d3 uint64
	for j := 0; j < w; j++ {
		d0 = (d0<<8 | uint64(p[j])) ^ mod[byte(d0>>shift)]
		d1 = (d1<<8 | uint64(p[j+l1])) ^ mod[byte(d1>>shift)]
		d2 = (d2<<8 | uint64(p[j+l2])) ^ mod[byte(d2>>shift)]
		d3 = (d3<<8 | uint64(p[j+l3])) ^ mod[byte(d3>>shift)]
	}
	f1, f2, f3 := -1, -1, -1
	for j := 0; j < scanLane; j++ {
		d0 ^= out[p[j]]
		d1 ^= out[p[j+l1]]
		d2 ^= out[p[j+l2]]
		d3 ^= out[p[j+l3]]
		d0 = (d0<<8 | uint64(p[j+w])) ^ mod[byte(d0>>shift)]
		d1 = (d1<<8 | uint64(p[j+l1+w])) ^ mod[byte(d1>>shift)]
		d2 = (d2<<8 | uint64(p[j+l2+w])) ^ mod[byte(d2>>shift)]
		d3 = (d3<<8 | uint64(p[j+l3+w])) ^ mod[byte(d3>>shift)]
		if d0&mask == 0 {
			return from + j
		}
		if d1&mask == 0 && f1 < 0 {
			f1 = j
		}
		if d2&mask == 0 && f2 < 0 {
			f2 = j
		}
		if d3&mask == 0 && f3 < 0 {
			f3 = j
		}
	}
	switch {
	case f1 >= 0:
		return from + l1 + f1
	case f2 >= 0:
		return from + l2 + f2
	case f3 >= 0:
		return from + l3 + f3
	}
	return -1
}

// Chunker cuts a stream into chunks. The slice Next returns is valid until
// the next call of Next or Reset, unless the chunker was reset with
// ResetOwned.
type Chunker struct {
	t        *cdcTables
	min, max int
	mask     uint64

	rd         io.Reader
	buf        []byte
	own        []byte             // the chunker's own buffer while it reads into given ones
	give       func(n int) []byte // ResetOwned's: a fresh buffer of n bytes, or nil
	next       SegmentSource      // ResetSegments's, or nil
	start, end int                // buf[start:end] is read and not yet returned
	scanned    int                // bytes after start known to hold no cut
	eof        bool
}

// chunkerBuffer is the chunker's first buffer size. It grows (up to
// MaxChunk plus as much again) only while a chunk does not fit; most
// chunks are far below MaxChunk.
const chunkerBuffer = 4 << 20

func checkChunkBounds(lo, hi, averageBits int) error {
	if lo <= windowSize || hi < lo || hi > 1<<30 {
		return fmt.Errorf("chunk bounds %d..%d: want %d < min <= max <= 1 GiB", lo, hi, windowSize)
	}
	if averageBits < 1 || averageBits > 40 {
		return fmt.Errorf("chunk average bits %d out of range 1..40", averageBits)
	}
	return nil
}

func newChunker(t *cdcTables, lo, hi int, averageBits int, rd io.Reader) (*Chunker, error) {
	if err := checkChunkBounds(lo, hi, averageBits); err != nil {
		return nil, err
	}
	c := &Chunker{t: t, min: lo, max: hi, mask: 1<<uint(averageBits) - 1}
	c.buf = make([]byte, min(chunkerBuffer, 2*hi))
	c.Reset(rd)
	return c, nil
}

// Reset points c at rd as if it were new.
func (c *Chunker) Reset(rd io.Reader) {
	if c.give != nil || c.next != nil {
		c.buf, c.own, c.give, c.next = c.own, nil, nil, nil
	}
	c.rd = rd
	c.start, c.end, c.scanned = 0, 0, 0
	c.eof = false
}

// ResetOwned is Reset, except that the bytes of a chunk Next returns are
// never moved or overwritten by the chunker: each time it needs room it
// takes a fresh buffer of n bytes from give, copies the bytes it has read
// and not yet returned to its start, and reads on into it. So a chunk can
// be handed on (to be hashed, compressed and stored) without a copy; the
// caller knows when every chunk of a buffer is done with and may reuse
// it. The buffer Next returned a chunk from is always the one give
// returned last; bytes are copied out of the one before only until give
// is called again (or the chunker is Reset). Reset ends it.
func (c *Chunker) ResetOwned(rd io.Reader, give func(n int) []byte) {
	c.Reset(rd)
	c.own, c.buf, c.give = c.buf, nil, give
}

// A SegmentSource fills the buffers a chunker reset with ResetSegments
// cuts its chunks from: a reader with buffers of its own (one reading
// ahead of the chunker with O_DIRECT, say) places its bytes where they
// stay, so not even the chunker's read copies them.
//
// The chunker calls it each time it needs more bytes, with keep: the
// bytes it has read and not yet returned (the unfinished chunk, shorter
// than MaxChunk; empty at first). It returns a buffer holding keep
// followed by the stream's next bytes (at least one) as buf[start:end],
// and keeps it unchanged until the chunker is done with its chunks, as a
// buffer from ResetOwned's give. After the last bytes it returns io.EOF
// and no buffer (the chunker goes on with the one it has); a read error
// comes the same way, after the bytes read before it.
type SegmentSource func(keep []byte) (buf []byte, start, end int, err error)

// ResetSegments is ResetOwned for a source that fills the buffers
// itself. Reset ends it.
func (c *Chunker) ResetSegments(next SegmentSource) {
	c.Reset(nil)
	c.own, c.buf, c.next = c.buf, nil, next
}

// Next returns the next chunk, or io.EOF after the last one.
func (c *Chunker) Next() ([]byte, error) {
	for {
		avail := c.end - c.start
		limit := min(avail, c.max)
		if from := max(c.scanned, c.min-1); from < limit {
			if i := c.t.scan(c.buf[c.start:c.start+limit], from, limit, c.mask); i >= 0 {
				return c.take(i + 1), nil
			}
			c.scanned = limit
		}
		if avail >= c.max {
			return c.take(c.max), nil
		}
		if c.eof {
			if avail == 0 {
				return nil, io.EOF
			}
			return c.take(avail), nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

func (c *Chunker) take(n int) []byte {
	b := c.buf[c.start : c.start+n : c.start+n]
	c.start += n
	c.scanned = 0
	return b
}

// fill moves the unreturned bytes to the front, grows the buffer if they
// fill it, and reads until the buffer is full or the stream ends.
func (c *Chunker) fill() error {
	if c.next != nil {
		keep := c.buf[c.start:c.end]
		nb, start, end, err := c.next(keep)
		switch {
		case err == nil:
			if end-start <= len(keep) || start < 0 || end > len(nb) {
				return fmt.Errorf("chunker: segment source returned %d..%d of %d bytes for %d kept", start, end, len(nb), len(keep))
			}
			c.buf, c.start, c.end = nb, start, end
		case errors.Is(err, io.EOF):
			c.eof = true
		default:
			return err
		}
		return nil
	}
	if c.give != nil {
		// Room for what is left (less than MaxChunk: Next returns a
		// chunk of MaxChunk before it fills) and as much again.
		n := chunkerBuffer
		for n <= c.end-c.start {
			n *= 2
		}
		nb := c.give(n)[:n]
		c.end = copy(nb, c.buf[c.start:c.end])
		c.start = 0
		c.buf = nb
	} else if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	if c.end == len(c.buf) {
		// One unfinished chunk fills it (so the buffer is below MaxChunk).
		nb := make([]byte, min(2*len(c.buf), 2*c.max))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := io.ReadFull(c.rd, c.buf[c.end:])
	c.end += n
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		c.eof = true
	default:
		return err
	}
	return nil
}
