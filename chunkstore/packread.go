package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/iobuf"
)

// Reading many blobs of one pack at once. Restore plans its reads by pack
// (verify --read-data reads whole packs, CheckPack), so that each pack is
// read once, front to back, in a few large ranged reads: what tape and
// object storage need (a request costs far more than the bytes it
// returns), and fewer, larger reads on a disk. The blobs asked for are
// sorted by their place in the pack and read in spans: a span takes in the
// next blob while the gap to it is at most packReadGap and the span stays
// within packReadSpan (one blob larger than that is a span of its own). A
// span is read in pieces, and each blob handed over as soon as it is in.
// A pass holds one span buffer and one decode buffer (pooled): some
// 16 MiB per pass in flight.
//
// A blob is checked exactly as LoadBlob checks it. Anything short of a
// blob that passes (a span that cannot be read, bytes that fail their
// check, a blob the index places elsewhere or nowhere usable) is handed to
// LoadBlob itself, so damage is recorded, other places are tried and
// errors are worded exactly as for a blob read alone; the cost is a
// second read of a damaged blob.

const (
	// packReadGap: unneeded bytes between two blobs read rather than
	// skipped with a new request (a seek on a disk, a request to an object
	// store costs more).
	packReadGap = 1 << 20
	// packReadSpan bounds one span, and so the buffer each reader holds.
	packReadSpan = 8 << 20
	// packReadPiece is what one read call of a span asks for.
	packReadPiece = 2 << 20
)

// readAlone counts the blobs of a pass that were read again alone, so
// tests can tell the one-pass path works (LoadBlob would hide it failing).
var readAlone atomic.Int64

// plainPool holds the buffers blobs are decoded into (ChunkBuffer's size,
// which differs between stores).
var plainPool sync.Pool

// spanBuffer returns a read buffer of packReadSpan bytes plus the aligned
// window of a direct read, given back with iobuf.Put. It is of huge pages where
// the kernel has them (internal/iobuf): each piece of a direct read is then
// one request to the disk, not several.
func spanBuffer() []byte { return iobuf.Get(packReadSpan + 2*readAlign) }

// spanBufferSize is the memory a span buffer holds: iobuf's units.
const spanBufferSize = (packReadSpan + 2*readAlign + iobuf.Align - 1) &^ (iobuf.Align - 1)

type placed struct {
	id ID
	l  loc
}

// placeInPack splits ids into those the index places usably in pack, in
// the order of their places there and each once, and the others (placed
// elsewhere, damaged, unknown), which are read alone.
func (s *Store) placeInPack(pack ID, ids []ID) (here []placed, elsewhere []ID) {
	for _, id := range ids {
		l, _, usable := s.idx.lookup(id)
		if usable && s.idx.packID(l.pack) == pack {
			here = append(here, placed{id, l})
		} else {
			elsewhere = append(elsewhere, id)
		}
	}
	slices.SortFunc(here, func(a, b placed) int {
		if a.l.off != b.l.off {
			return int(int64(a.l.off) - int64(b.l.off))
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	return slices.CompactFunc(here, func(a, b placed) bool { return a.id == b.id }), elsewhere
}

// LoadPackBlobs reads the blobs ids from the pack named pack in one pass,
// in the order of their places in it, and calls fn once per distinct id
// with the blob's plaintext, or with the error LoadBlob(id) would give.
// Ids the index does not place usably in this pack (placed elsewhere,
// damaged, unknown) are loaded one by one with LoadBlob after the pass.
// data is valid only during fn and must not be kept; fn is called on the
// calling goroutine. A done ctx stops the pass between reads: the error is
// ctx's, and the ids not yet handed to fn are not.
func (s *Store) LoadPackBlobs(ctx context.Context, pack ID, ids []ID, fn func(id ID, data []byte, err error)) error {
	here, elsewhere := s.placeInPack(pack, ids)
	if len(here) > 0 {
		s.keepTrees(here[0].l.blobType(), pack) // a pack holds one type of blob
	}

	var dst *[]byte // decoding and LoadBlob's buffer, taken on first need
	buffer := func() []byte {
		if dst == nil {
			dst, _ = plainPool.Get().(*[]byte)
			if dst == nil || cap(*dst) < s.MaxChunk()+2*readAlign {
				b := s.ChunkBuffer()
				dst = &b
			}
		}
		return *dst
	}
	defer func() {
		if dst != nil {
			plainPool.Put(dst)
		}
	}()
	sp := spanBuffer()
	defer iobuf.Put(sp)
	for i := 0; i < len(here); {
		if err := ctx.Err(); err != nil {
			return err
		}
		j, start, end := nextSpan(here, i)
		k := i // the next blob of the span to hand over
		// Blobs are handed over as soon as their bytes are in; those a
		// failed read did not bring are read alone after it.
		_ = s.readSpan(here[i].l.pack, start, end, sp, func(span []byte) {
			for ; k < j && int64(here[k].l.off)+int64(here[k].l.length())-start <= int64(len(span)); k++ {
				b := here[k]
				off := int64(b.l.off) - start
				data, err := s.checkSpanBlob(b, span[off:off+int64(b.l.length())], buffer)
				if err != nil {
					readAlone.Add(1)
					data, err = s.LoadBlob(b.id, buffer())
				}
				fn(b.id, data, err)
			}
		})
		for ; k < j; k++ {
			readAlone.Add(1)
			data, err := s.LoadBlob(here[k].id, buffer())
			fn(here[k].id, data, err)
		}
		i = j
	}
	slices.SortFunc(elsewhere, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range slices.Compact(elsewhere) {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := s.LoadBlob(id, buffer())
		fn(id, data, err)
	}
	return nil
}

// nextSpan returns the span that starts with here[i] (sorted by offset):
// it ends before here[j], and covers bytes [start, end) of the pack.
func nextSpan(here []placed, i int) (j int, start, end int64) {
	start = int64(here[i].l.off)
	end = start + int64(here[i].l.length())
	for j = i + 1; j < len(here); j++ {
		off := int64(here[j].l.off)
		e := off + int64(here[j].l.length())
		if off-end > packReadGap || e-start > packReadSpan {
			break
		}
		end = max(end, e)
	}
	return j, start, end
}

// readSpan reads bytes [start, end) of pack number n, into buf's storage
// when it can hold them, in pieces of packReadPiece bytes, and calls
// arrived after each with the bytes of the span in so far. Large spans
// are read with O_DIRECT where the file system has it, as a lone large
// blob is, so a restore does not fill the page cache with packs it reads
// once. Reading in pieces, a few at once, keeps the disk busy while the
// caller checks and writes each blob as soon as the pieces that hold it
// are in, and lets a slow store show progress.
func (s *Store) readSpan(n uint32, start, end int64, buf []byte, arrived func(span []byte)) error {
	length := int(end - start)
	// [a, a+total) is read: aligned for O_DIRECT.
	a, total := start, length
	h := packHandle(s.idx.packID(n))
	var f io.ReaderAt
	if dr, ok := s.be.(backend.DirectReader); ok && length >= directMin {
		if ra, err := dr.OpenDirect(bg, h); err == nil {
			f = ra
			a = start &^ (readAlign - 1)
			total = int((end+readAlign-1)&^(readAlign-1) - a)
		}
	}
	piece := packReadPiece
	remote := s.Connections() > 0
	if remote {
		// An object store: the span is one ranged GET. A request costs
		// far more than its bytes, and pieces would add requests (eight
		// per full span) for an overlap the store's other connections
		// give anyway.
		piece = max(total, 1)
	}
	if f == nil {
		// One open file for the span where the backend keeps files open
		// (local), else each piece is a ranged load of its own (a ranged
		// GET on an object store). Not on an object store, where
		// opening is a HEAD request for a size this does not use.
		f = backendReaderAt{s.be, h}
		if fo, ok := s.be.(backend.FileOpener); ok && !remote {
			if of, _, err := fo.OpenFile(bg, h); err == nil {
				defer of.Close()
				f = of
			}
		}
	}
	w := alignedWindow(buf, total)
	if w == nil {
		w = alignedWindow(make([]byte, total+readAlign), total)
	}
	head, need := int(start-a), int(end-a)
	// The pieces are read packReadDepth at a time on their own
	// goroutines, which never wait for arrived: the disk is kept busy
	// while the blobs that are in are checked and written.
	pieces := (total + piece - 1) / piece
	res := make([]error, pieces)
	ready := make([]chan struct{}, pieces)
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	var stop atomic.Bool
	go func() {
		sem := make(chan struct{}, packReadDepth)
		for i := range pieces {
			sem <- struct{}{}
			if stop.Load() {
				for ; i < pieces; i++ {
					res[i] = errNotRead
					close(ready[i])
				}
				return
			}
			go func() {
				lo, hi := i*piece, min((i+1)*piece, total)
				n, err := f.ReadAt(w[lo:hi], a+int64(lo))
				// Only the span's own bytes must be there: the
				// aligned tail past the end of the pack reads short.
				if err = shortRead(n, min(hi, need)-lo, err); err != nil {
					err = &pieceError{n: n, err: err}
				}
				res[i] = err
				close(ready[i])
				<-sem
			}()
		}
	}()
	var first error
	// Every piece is waited for: none writes into w after return.
	for i := range pieces {
		<-ready[i]
		if first != nil {
			continue
		}
		got := min((i+1)*piece, need)
		var pe *pieceError
		if errors.As(res[i], &pe) {
			first = pe.err
			stop.Store(true)
			got = i*piece + pe.n // what came before the pack ended
		}
		if got > head {
			arrived(w[head:got])
		}
	}
	return first
}

// packReadDepth is how many pieces of a span are read at once.
const packReadDepth = 2

// pieceError is a piece read that failed after n bytes.
type pieceError struct {
	n   int
	err error
}

func (e *pieceError) Error() string { return e.err.Error() }

// errNotRead marks the pieces not read after one failed.
var errNotRead = errors.New("not read")

// checkSpanBlob checks one blob's stored bytes as loadAt does, and returns
// its plaintext: the stored bytes themselves when the blob is stored as is.
func (s *Store) checkSpanBlob(b placed, stored []byte, buffer func() []byte) ([]byte, error) {
	if s.keys.aead == nil && !b.l.compressed() {
		if hashWhole(stored) != b.id {
			return nil, errMismatch
		}
		return stored, nil
	}
	return s.decodeBlob(b.id, stored, b.l.comp(), buffer())
}
