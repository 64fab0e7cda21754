package chunkstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// logText returns n bytes of log-like lines.
func logText(seed uint64, n int) []byte {
	rnd := rand.New(rand.NewPCG(seed, 7))
	levels := []string{"INFO", "WARN", "DEBUG", "ERROR"}
	words := []string{"request", "served", "cache", "miss", "user", "session", "opened", "closed", "timeout", "retry", "backend", "ok"}
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "2026-11-%02d 12:%02d:%02d.%06d %-5s worker-%d", 1+i%28, rnd.IntN(60), rnd.IntN(60), rnd.IntN(1e6), levels[rnd.IntN(4)], rnd.IntN(16))
		for range 3 + rnd.IntN(6) {
			b = append(b, ' ')
			b = append(b, words[rnd.IntN(len(words))]...)
		}
		b = fmt.Appendf(b, " id=%x\n", rnd.Uint32())
	}
	return b[:n]
}

func TestWorthCompressing(t *testing.T) {
	s := &Store{}
	s.zenc = newZstdEncoder()
	text := logText(1, 1<<20)
	random := randBytes(1, 1<<20)
	// Random but for a compressible stretch at the start of the last three
	// quarters (a fifth of the blob, which pays): the sample spans the
	// blob, so it sees them.
	mixed := append([]byte(nil), random...)
	for q := 1; q < 4; q++ {
		copy(mixed[q*len(mixed)/4:], make([]byte, 64<<10))
	}
	for _, c := range []struct {
		name string
		data []byte
		want bool
	}{
		{"text", text, true},
		{"random", random, false},
		{"mixed", mixed, true},
		{"small random", random[:sampleMin], true}, // small blobs are simply tried
	} {
		if got := worthCompressing(s, compZstd, c.data, nil); got != c.want {
			t.Errorf("%s: worthCompressing = %v, want %v", c.name, got, c.want)
		}
	}
}

func BenchmarkCompress(b *testing.B) {
	s := &Store{}
	s.zenc = newZstdEncoder()
	scratch := make([]byte, 0, 2<<20)
	for _, c := range []struct {
		name string
		data []byte
	}{{"random", randBytes(1, 1<<20)}, {"text", logText(1, 1<<20)}} {
		b.Run(c.name+"/sample", func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				worthCompressing(s, compZstd, c.data, scratch[:0])
			}
		})
		b.Run(c.name+"/full", func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				s.zenc.EncodeAll(c.data, scratch[:0])
			}
		})
	}
}

// BenchmarkLoadSmallBlobs: loading the compressed blobs of small text
// files (16 KiB each, as a tree walk through the mount does), from the
// page cache: the CPU cost per byte of read, decompress and verify.
func BenchmarkLoadSmallBlobs(b *testing.B) {
	_, s := newStore(b, false)
	defer s.Close()
	lock, w := openWriter(b, s)
	var ids []ID
	for i := range 1000 {
		data := logText(uint64(i), 16<<10)
		id := s.Hash(data)
		if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	lock.Unlock()
	dst := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(ids)) * 16 << 10)
	for b.Loop() {
		for _, id := range ids {
			if _, err := s.LoadBlob(id, dst); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Blobs are written with zstdWindow, and frames with a larger window (as
// stores written before it hold) still decode.
func TestZstdWindow(t *testing.T) {
	_, s := newStore(t, false)
	// 6 MiB of text with repeats farther apart than the window.
	line := func(i int) string {
		return fmt.Sprintf("%08d the quick brown fox jumps over the lazy dog %x\n", i, i*7919)
	}
	var b strings.Builder
	for i := 0; b.Len() < 6<<20; i++ {
		b.WriteString(line(i % 50000))
	}
	data := []byte(b.String())
	c := s.compress(compZstd, data, nil)
	var h zstd.Header
	if err := h.Decode(c); err != nil {
		t.Fatal(err)
	}
	if h.SingleSegment || h.WindowSize > zstdWindow {
		t.Fatalf("frame of a %d-byte blob: single segment %v, window %d; want a window of at most %d", len(data), h.SingleSegment, h.WindowSize, zstdWindow)
	}
	for _, enc := range []*zstd.Encoder{s.zenc, mustEncoder(t, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(8<<20))} {
		got, err := s.decompress(compZstd, enc.EncodeAll(data, nil), nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decode: %v (equal %v)", err, bytes.Equal(got, data))
		}
	}
}

// Blobs are written without zstd's content checksum, and frames with one
// (as stores written before hold) still decode; a blob whose bytes are
// damaged is caught by its id, checksum or not.
func TestZstdChecksum(t *testing.T) {
	_, s := newStore(t, false)
	data := bytes.Repeat([]byte("a line of text that zstd compresses well enough\n"), 4000)
	c := s.compress(compZstd, data, nil)
	var h zstd.Header
	if err := h.Decode(c); err != nil {
		t.Fatal(err)
	}
	if h.HasCheckSum {
		t.Error("a blob's frame carries a checksum")
	}
	old := mustEncoder(t, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true)).EncodeAll(data, nil)
	if err := h.Decode(old); err != nil || !h.HasCheckSum {
		t.Fatalf("a frame as stores before held: checksum %v, %v", h.HasCheckSum, err)
	}
	if got, err := s.decompress(compZstd, old, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decode of a frame with a checksum: %v (equal %v)", err, bytes.Equal(got, data))
	}

	id, e, stored := savedBlob(t, s, data, nil)
	if e.Comp != compZstd {
		t.Fatalf("pack entry %+v: not zstd", e)
	}
	blob := bytes.Clone(stored)
	blob[len(blob)-1] ^= 0x40 // the end of the last block's literals or sequences
	if got, err := s.decodeBlob(id, blob, compZstd, nil); err == nil {
		t.Fatalf("a damaged blob decoded to %d bytes with no error", len(got))
	}
}

// savedBlob saves data as a data blob through a writer of s, flushes it,
// and returns its id, its pack entry and its bytes as its pack holds them.
// opened, if set, runs once the writer is open.
func savedBlob(t *testing.T, s *Store, data []byte, opened func()) (ID, PackEntry, []byte) {
	t.Helper()
	lock, w := openWriter(t, s)
	defer lock.Unlock()
	if opened != nil {
		opened()
	}
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	pack, _ := s.PackOf(id)
	entries, err := s.ReadPackHeader(pack)
	if err != nil || len(entries) != 1 || entries[0].ID != id {
		t.Fatalf("pack header %+v, %v", entries, err)
	}
	b, err := os.ReadFile(s.packPath(pack))
	if err != nil {
		t.Fatal(err)
	}
	e := entries[0]
	return id, e, b[e.Offset : e.Offset+e.Length]
}

func mustEncoder(t *testing.T, o ...zstd.EOption) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, o...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCompressTextWithoutMatches: text in which zstd's fastest level
// finds no match (a column of numbers, hex, base64) is stored compressed:
// it was stored as it was, the level trying no entropy coding without a
// match. Random data is not, and a small random blob stays as it was.
func TestCompressTextWithoutMatches(t *testing.T) {
	s := &Store{}
	s.zenc = newZstdEncoder()
	var numbers []byte
	for i := 1; len(numbers) < 600<<10; i++ {
		numbers = fmt.Appendf(numbers, "%d\n", i)
	}
	random := randBytes(2, 400<<10)
	hex := fmt.Appendf(nil, "%x", random[:200<<10])
	for _, c := range []struct {
		name string
		data []byte
		max  float64 // stored/raw at most
	}{
		{"numbers", numbers, 0.5},
		{"numbers, small", numbers[:8<<10], 0.6},
		{"hex", hex, 0.6},
	} {
		code, stored := s.compressBlob(compZstd, c.data, new([]byte))
		if ratio := float64(len(stored)) / float64(len(c.data)); code != compZstd || ratio > c.max {
			t.Errorf("%s: code %d, stored %d of %d bytes (%.2f); want zstd, at most %.2f", c.name, code, len(stored), len(c.data), ratio, c.max)
		}
	}
	for _, data := range [][]byte{random, random[:16<<10]} {
		if code, _ := s.compressBlob(compZstd, data, new([]byte)); code != compNone {
			t.Errorf("random %d bytes stored with code %d, want none", len(data), code)
		}
	}
}
