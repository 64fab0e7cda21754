package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/restic/chunker"
)

// resticCuts chunks data with restic/chunker itself.
func resticCuts(t testing.TB, pol chunker.Pol, lo, hi, bits int, data []byte) []int {
	t.Helper()
	c := chunker.NewWithBoundaries(bytes.NewReader(data), pol, uint(lo), uint(hi))
	c.SetAverageBits(bits)
	buf := make([]byte, hi)
	var lens []int
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return lens
		}
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, int(ch.Length))
	}
}

// jumpyReader returns reads of random lengths, down to one byte.
type jumpyReader struct {
	r   io.Reader
	rnd *rand.Rand
}

func (j *jumpyReader) Read(p []byte) (int, error) {
	if n := j.rnd.IntN(3 * windowSize); n > 0 && n < len(p) {
		p = p[:n]
	}
	return j.r.Read(p)
}

// randomData returns n bytes from rnd.
func randomData(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

func ourCuts(t testing.TB, c *Chunker, data []byte, rd io.Reader) []int {
	t.Helper()
	c.Reset(rd)
	var lens []int
	off := 0
	for {
		b, err := c.Next()
		if err == io.EOF {
			return lens
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data[off:off+len(b)]) {
			t.Fatalf("chunk at %d: bytes differ from the input", off)
		}
		off += len(b)
		lens = append(lens, len(b))
	}
}

// ownedCuts is ourCuts through ResetOwned: each chunk must lie in the
// buffer given last, and every chunk must still hold its bytes at the end
// (the chunker never moved or overwrote one it returned). Each given
// buffer is filled with garbage first, so a chunk read from stale bytes
// shows.
func ownedCuts(t testing.TB, c *Chunker, data []byte, rd io.Reader) []int {
	t.Helper()
	var last []byte
	c.ResetOwned(rd, func(n int) []byte {
		last = bytes.Repeat([]byte{0xa5}, n+17)
		return last
	})
	defer c.Reset(nil)
	return keptChunks(t, c, data, func() []byte { return last })
}

// keptChunks reads c's chunks of data to the end: each must lie in the
// buffer last returns when it is returned, and every one must still hold
// its bytes at the end. It returns their lengths.
func keptChunks(t testing.TB, c *Chunker, data []byte, last func() []byte) []int {
	t.Helper()
	var chunks [][]byte
	var lens []int
	off := 0
	for {
		b, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && !within(b, last()) {
			t.Fatalf("chunk at %d is not in the buffer given last", off)
		}
		chunks = append(chunks, b)
		off += len(b)
		lens = append(lens, len(b))
	}
	off = 0
	for _, b := range chunks {
		if !bytes.Equal(b, data[off:off+len(b)]) {
			t.Fatalf("chunk at %d: bytes differ from the input at the end", off)
		}
		off += len(b)
	}
	if off != len(data) {
		t.Fatalf("chunks cover %d of %d bytes", off, len(data))
	}
	return lens
}

// segmentCuts is ourCuts through ResetSegments, with a source that hands
// out the data in pieces of random sizes, each in a buffer of its own
// with a random room in front: where keep fits, it is copied there, else
// into a new buffer of keep and the piece together (as the cold reader
// does). Each chunk must lie in the buffer returned last and still hold
// its bytes at the end; a read error must come after the bytes before it.
func segmentCuts(t testing.TB, c *Chunker, data []byte, rnd *rand.Rand, maxPiece int) []int {
	t.Helper()
	var last []byte
	pos := 0
	c.ResetSegments(func(keep []byte) ([]byte, int, int, error) {
		if pos == len(data) {
			return nil, 0, 0, io.EOF
		}
		n := min(len(data)-pos, 1+rnd.IntN(maxPiece))
		room := rnd.IntN(2 * maxPiece)
		buf := bytes.Repeat([]byte{0x5a}, room+n+rnd.IntN(9))
		copy(buf[room:], data[pos:pos+n])
		pos += n
		start := room - len(keep)
		if start < 0 {
			merged := make([]byte, len(keep)+n)
			copy(merged[copy(merged, keep):], buf[room:room+n])
			buf, start, room = merged, 0, len(keep)
		} else {
			copy(buf[start:], keep)
		}
		last = buf
		return buf, start, room + n, nil
	})
	defer c.Reset(nil)
	return keptChunks(t, c, data, func() []byte { return last })
}

func TestChunkerSegmentSourceError(t *testing.T) {
	pol, _ := chunker.RandomPolynomial()
	tab, _ := newCDCTables(pol)
	c, err := newChunker(tab, 100, 1000, 6, nil)
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk on fire")
	calls := 0
	c.ResetSegments(func(keep []byte) ([]byte, int, int, error) {
		calls++
		if calls == 1 {
			return make([]byte, 50), 0, 50, nil
		}
		return nil, 0, 0, broken
	})
	if _, err := c.Next(); !errors.Is(err, broken) {
		t.Fatalf("Next = %v, want the source's error", err)
	}
	// A source that claims no new bytes is a bug, said so.
	c.ResetSegments(func(keep []byte) ([]byte, int, int, error) {
		return make([]byte, 10), 0, 0, nil
	})
	if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "segment source") {
		t.Fatalf("Next = %v, want an error naming the segment source", err)
	}
	c.Reset(nil)
}

// within reports whether b lies inside buf's bytes.
func within(b, buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	lo, hi := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[len(buf)-1]))
	p, q := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	return p >= lo && q <= hi
}

func TestChunkerMatchesRestic(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte { return randomData(rnd, n) }
	// Data with every kind of stretch: random, zeroes, a repeated short
	// pattern, low-entropy text.
	mixed := func(n int) []byte {
		var b []byte
		for len(b) < n {
			k := 1 + rnd.IntN(64<<10)
			switch rnd.IntN(4) {
			case 0:
				b = append(b, random(k)...)
			case 1:
				b = append(b, make([]byte, k)...)
			case 2:
				b = append(b, bytes.Repeat([]byte("abcdefg"), k/7+1)...)
			case 3:
				for i := 0; i < k; i++ {
					b = append(b, "etaoin shrdlu\n"[rnd.IntN(14)])
				}
			}
		}
		return b[:n]
	}
	type params struct{ lo, hi, bits int }
	small := []params{{65, 65, 4}, {65, 200, 3}, {100, 4096, 6}, {128, 1 << 16, 10}, {1000, 1001, 2}, {4096, 8192, 20}}
	for round := 0; round < 6; round++ {
		pol, err := chunker.RandomPolynomial()
		if err != nil {
			t.Fatal(err)
		}
		tab, err := newCDCTables(pol)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range small {
			for _, n := range []int{0, 1, 64, p.lo - 1, p.lo, p.lo + 1, p.hi - 1, p.hi, p.hi + 1, 3*p.hi + 7, 300 << 10} {
				if n < 0 {
					continue
				}
				for _, data := range [][]byte{random(n), mixed(n)} {
					c, err := newChunker(tab, p.lo, p.hi, p.bits, nil)
					if err != nil {
						t.Fatal(err)
					}
					want := resticCuts(t, pol, p.lo, p.hi, p.bits, data)
					name := fmt.Sprintf("pol %v, %+v, %d bytes", pol, p, n)
					check := func(how string, got []int) {
						t.Helper()
						if fmt.Sprint(got) != fmt.Sprint(want) {
							t.Fatalf("%s, %s:\n got %v\nwant %v", name, how, got, want)
						}
					}
					check("one reader", ourCuts(t, c, data, bytes.NewReader(data)))
					check("short reads", ourCuts(t, c, data, &jumpyReader{bytes.NewReader(data), rnd}))
					check("owned buffers", ownedCuts(t, c, data, &jumpyReader{bytes.NewReader(data), rnd}))
					check("one reader after owned buffers", ourCuts(t, c, data, bytes.NewReader(data)))
					check("segment source", segmentCuts(t, c, data, rnd, max(1, p.hi/2)))
					check("one reader after segment source", ourCuts(t, c, data, bytes.NewReader(data)))
				}
			}
		}
	}
	// The store's own parameters over enough data for many chunks, some of
	// them forced at the maximum by zeroes.
	pol, _ := chunker.RandomPolynomial()
	tab, _ := newCDCTables(pol)
	data := append(random(24<<20), make([]byte, 20<<20)...)
	data = append(data, mixed(24<<20)...)
	for _, bits := range []int{19, 20} {
		c, err := newChunker(tab, chunker.MinSize, chunker.MaxSize, bits, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := resticCuts(t, pol, chunker.MinSize, chunker.MaxSize, bits, data)
		got := ourCuts(t, c, data, &jumpyReader{bytes.NewReader(data), rnd})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("default bounds, bits %d:\n got %v\nwant %v", bits, got, want)
		}
		if got := ownedCuts(t, c, data, &jumpyReader{bytes.NewReader(data), rnd}); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("default bounds, bits %d, owned buffers:\n got %v\nwant %v", bits, got, want)
		}
		if got := segmentCuts(t, c, data, rnd, 2<<20); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("default bounds, bits %d, segment source:\n got %v\nwant %v", bits, got, want)
		}
		if len(want) < 20 {
			t.Fatalf("only %d chunks: the test data is too uniform", len(want))
		}
	}
}

func TestChunkerBadParameters(t *testing.T) {
	pol, _ := chunker.RandomPolynomial()
	tab, _ := newCDCTables(pol)
	for _, p := range [][3]int{{64, 100, 10}, {200, 100, 10}, {100, 200, 0}, {100, 200, 41}} {
		if _, err := newChunker(tab, p[0], p[1], p[2], nil); err == nil {
			t.Errorf("bounds %v accepted", p)
		}
	}
	if _, err := newCDCTables(chunker.Pol(0x3)); err == nil {
		t.Error("a polynomial of degree 1 accepted")
	}
}

// The chunker's cost per byte against restic/chunker's over the same data
// (go test ./chunkstore -run '^$' -bench Chunker).
func BenchmarkChunker(b *testing.B) {
	data := randomData(rand.New(rand.NewPCG(3, 4)), 64<<20)
	pol, _ := chunker.RandomPolynomial()
	b.Run("recall", func(b *testing.B) {
		tab, _ := newCDCTables(pol)
		c, _ := newChunker(tab, chunker.MinSize, chunker.MaxSize, DefaultAverageBits, nil)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			c.Reset(bytes.NewReader(data))
			for {
				if _, err := c.Next(); err != nil {
					break
				}
			}
		}
	})
	b.Run("restic", func(b *testing.B) {
		c := chunker.New(nil, pol)
		buf := make([]byte, chunker.MaxSize)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			c.Reset(bytes.NewReader(data), pol)
			c.SetAverageBits(DefaultAverageBits)
			for {
				if _, err := c.Next(buf); err != nil {
					break
				}
			}
		}
	})
}

func BenchmarkCDCScan(b *testing.B) {
	data := randomData(rand.New(rand.NewPCG(3, 4)), 16<<20)
	pol, _ := chunker.RandomPolynomial()
	tab, _ := newCDCTables(pol)
	b.SetBytes(int64(len(data) - 64))
	for b.Loop() {
		tab.scan(data, 64, len(data), 1<<40-1)
	}
}
