package chunkstore

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Large plaintext blobs are read with O_DIRECT where the backend offers it
// (backend.DirectReader, the local one on most file systems): the disk writes straight into
// the caller's buffer, without filling the page cache and copying out of
// it, which was the largest cost of a restore or a first read through the
// mount after the data itself. O_DIRECT needs the buffer, offset and length
// aligned, so the aligned range around the blob is read and the blob is a
// window of it.
// readAlign is the alignment of O_DIRECT buffers, offsets and lengths.
const readAlign = backend.DirectAlign

// directMin is the smallest blob read with O_DIRECT. Small blobs (small
// files) sit next to each other in a pack, and buffered reads let the
// kernel's readahead fetch the neighbours a tree walk wants next.
const directMin = 256 << 10

// alignedWindow returns a slice of n bytes of b's storage starting at an
// aligned address, or nil when b's capacity cannot hold one.
func alignedWindow(b []byte, n int) []byte {
	if cap(b) == 0 {
		return nil
	}
	b = b[:cap(b)]
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % readAlign); r != 0 {
		skip = readAlign - r
	}
	if skip+n > len(b) {
		return nil
	}
	return b[skip : skip+n : skip+n]
}

// directPiece is the size of the pieces a lone large direct read is split
// into. They are read at once, and each is hashed on the goroutine that
// read it as soon as it lands (leafHasher), so a cold random read through
// the mount waits for about the read alone, not the read and then the hash
// of a whole chunk.
const directPiece = 256 << 10

// readDirect reads length bytes at off from a direct reader and
// returns them with their BLAKE3-256 hash. With split, the read is made of
// pieces read at once and hashed as they arrive.
func readDirect(f io.ReaderAt, off int64, length int, dst []byte, split bool) ([]byte, ID, error) {
	start := off &^ (readAlign - 1)
	end := (off + int64(length) + readAlign - 1) &^ (readAlign - 1)
	n := int(end - start)
	buf := alignedWindow(dst, n)
	if buf == nil {
		buf = alignedWindow(make([]byte, n+readAlign), n)
	}
	head := int(off - start)
	pieces := (n + directPiece - 1) / directPiece
	if !split || pieces == 1 {
		got, err := f.ReadAt(buf, start)
		if err := shortRead(got, head+length, err); err != nil {
			return nil, ID{}, err
		}
		blob := buf[head : head+length : head+length]
		return blob, hashWhole(blob), nil
	}
	h := newLeafHasher(buf, head, length, directPiece)
	// piece i covers buf[i*directPiece : min((i+1)*directPiece, n)].
	done := make([]chan error, pieces)
	for i := range done {
		done[i] = make(chan error, 1)
	}
	read := func(i int) {
		lo, hi := i*directPiece, min((i+1)*directPiece, n)
		got, err := f.ReadAt(buf[lo:hi], start+int64(lo))
		// Only the blob's own bytes must be there: the aligned tail
		// past the end of the pack reads short.
		err = shortRead(got, min(hi, head+length)-lo, err)
		if err == nil {
			h.arrived(lo, hi)
		}
		done[i] <- err
	}
	for i := 1; i < pieces; i++ {
		go read(i)
	}
	read(0)
	var first error
	for i := range done {
		// Every piece is waited for: none writes into buf, or hashes
		// it, after return.
		if err := <-done[i]; first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, ID{}, first
	}
	return buf[head : head+length : head+length], h.sum(), nil
}

// shortRead turns the result of a read that needed need bytes into nil
// when it got them, the read's error, or errTruncated for a pack that
// ends early.
func shortRead(got, need int, err error) error {
	if got >= need {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}

var errTruncated = fmt.Errorf("%w: pack truncated", ErrCorrupt)

// ChunkBuffer returns a buffer LoadBlob can fill with any data chunk of
// this store without allocating: the largest chunk plus the aligned
// window of a direct read.
func (s *Store) ChunkBuffer() []byte { return make([]byte, s.MaxChunk()+2*readAlign) }

// LoadSize returns a capacity of dst with which LoadBlob(id, dst) fills
// dst's storage instead of allocating, or 0 when that is not known
// without reading (compressed or encrypted blobs: allocate, or pass a
// ChunkBuffer).
func (s *Store) LoadSize(id ID) int {
	l, ok, _ := s.idx.lookup(id)
	if !ok || s.keys.aead != nil || l.compressed() {
		return 0
	}
	return int(l.length()) + 2*readAlign
}
