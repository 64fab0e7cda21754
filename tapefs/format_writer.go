package tapefs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The entry stream inside a tape file's blocks; the package comment
// draws it.
const (
	recEntry      = 'E'
	recEnd        = 'Z'
	maxNameLen    = 1024
	endRecordLen  = 1 + 8 + 8
	entryFixedLen = 1 + 2 + 8
)

// FileOptions say how a tape file's blocks are sealed.
type FileOptions struct {
	Key      []byte // the set key (SetKey), nil for a plain file
	Compress bool   // zstd per block (writing only: a reader follows the block flags)
}

// CatalogEntry is one entry of a tape file: its name and size, and where
// its record starts, so a reader can go straight to it (OpenEntry)
// instead of reading the file from its start.
type CatalogEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Block  uint32 `json:"block"`  // the block of the file holding the start of its record
	Offset uint32 `json:"offset"` // where in that block's data the record starts
}

// FileWriter writes one tape file at the drive's current position: named
// entries, then (Close) the end record and a filemark. It fills every
// block to BlockSize, so entries share and span blocks. Not safe for
// concurrent use.
type FileWriter struct {
	d      Drive
	kind   FileKind
	fileNo uint32
	codec  *blockCodec
	blk    []byte // the block being filled: header room, then n bytes of stream
	hl     int
	cap    int
	n      int
	seq    uint32
	start  uint64
	early  bool
	err    error // sticky: the file cannot be finished

	count, total uint64
	pending      []CatalogEntry // added, their last bytes still in blk
	done         []CatalogEntry // whole on tape
	closed       bool
}

// NewFileWriter starts tape file fileNo (the number of filemarks before it
// on the cartridge) of the given kind at the drive's current position.
func NewFileWriter(ctx context.Context, d Drive, kind FileKind, fileNo int, o FileOptions) (*FileWriter, error) {
	if fileNo < 0 || int64(fileNo) > 0xffffffff {
		return nil, fmt.Errorf("tape file number %d out of range", fileNo)
	}
	c, err := newBlockCodec(o.Key, o.Compress)
	if err != nil {
		return nil, err
	}
	pos, err := d.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("start tape file %d on %s: %w", fileNo, d.Name(), err)
	}
	w := &FileWriter{d: d, kind: kind, fileNo: uint32(fileNo), codec: c, hl: c.hdrLen(), start: pos}
	w.cap = dataCap(c.aead != nil)
	w.blk = blockPool.Get(BlockSize)
	return w, nil
}

// StartPos is the logical object number of the file's first block: Locate
// there and NewFileReader reads the file.
func (w *FileWriter) StartPos() uint64 { return w.start }

// FileNo is the file number the writer was started with.
func (w *FileWriter) FileNo() int { return int(w.fileNo) }

// Entries lists the entries whole on tape so far: after Close, all of
// them; after ErrEndOfMedium, those whose last block the drive took (an
// entry that shared the refused block with the failing one is lost too).
func (w *FileWriter) Entries() []CatalogEntry { return w.done }

// Add writes one entry. earlyWarning is true once any block of the file
// went into the cartridge's early-warning zone: finish the file (Close)
// and continue on the next cartridge. ErrEndOfMedium means the cartridge
// filled during this entry: the entry is not on tape and the file is left
// unfinished (Close then returns the same error). data is not kept.
func (w *FileWriter) Add(ctx context.Context, name string, data []byte) (earlyWarning bool, err error) {
	if w.err != nil {
		return w.early, w.err
	}
	if w.closed {
		return w.early, fmt.Errorf("tape file %d: add %q after close", w.fileNo, name)
	}
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return w.early, fmt.Errorf("tape entry name %q: want 1 to %d bytes of UTF-8", name, maxNameLen)
	}
	at := CatalogEntry{Name: name, Size: int64(len(data)), Block: w.seq, Offset: uint32(w.n)}
	var hdr [entryFixedLen + maxNameLen]byte
	hdr[0] = recEntry
	binary.BigEndian.PutUint16(hdr[1:], uint16(len(name)))
	k := 3 + copy(hdr[3:], name)
	binary.BigEndian.PutUint64(hdr[k:], uint64(len(data)))
	if err := w.put(ctx, hdr[:k+8]); err != nil {
		return w.early, err
	}
	if err := w.put(ctx, data); err != nil {
		return w.early, err
	}
	w.count++
	w.total += uint64(len(data))
	w.pending = append(w.pending, at)
	if w.n == 0 {
		w.commit()
	}
	return w.early, nil
}

// put appends p to the stream, writing every block it fills.
func (w *FileWriter) put(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		k := copy(w.blk[w.hl+w.n:w.hl+w.cap], p)
		w.n += k
		p = p[k:]
		if w.n == w.cap {
			if err := w.flush(ctx, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *FileWriter) commit() {
	w.done = append(w.done, w.pending...)
	w.pending = w.pending[:0]
}

// flush seals and writes the block being filled.
func (w *FileWriter) flush(ctx context.Context, last bool) error {
	if err := ctx.Err(); err != nil {
		w.err = err
		return err
	}
	b, err := w.codec.seal(w.blk, w.n, w.kind, w.fileNo, w.seq, last)
	if err != nil {
		w.err = err
		return err
	}
	early, err := w.d.WriteBlock(ctx, b)
	if err != nil {
		w.err = fmt.Errorf("write block %d of tape file %d on %s: %w", w.seq, w.fileNo, w.d.Name(), err)
		if errors.Is(err, ErrEndOfMedium) {
			w.early = true
		}
		return w.err
	}
	w.early = w.early || early
	w.seq++
	w.n = 0
	w.commit()
	return nil
}

// Close writes the end record, the last block and a filemark, and returns
// once the drive has them on the medium (Flush).
func (w *FileWriter) Close(ctx context.Context) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	var end [endRecordLen]byte
	end[0] = recEnd
	binary.BigEndian.PutUint64(end[1:], w.count)
	binary.BigEndian.PutUint64(end[9:], w.total)
	// The end record goes whole into the last block, so the block that
	// says "last" is the one holding it.
	if w.n+endRecordLen > w.cap {
		if err := w.flush(ctx, false); err != nil {
			return err
		}
	}
	w.n += copy(w.blk[w.hl+w.n:], end[:])
	if err := w.flush(ctx, true); err != nil {
		return err
	}
	if err := w.d.WriteFilemarks(ctx, 1); err != nil {
		w.err = fmt.Errorf("end tape file %d on %s: %w", w.fileNo, w.d.Name(), err)
		return w.err
	}
	blockPool.Put(w.blk)
	w.blk = nil
	if err := w.d.Flush(ctx); err != nil {
		w.err = fmt.Errorf("flush tape file %d on %s: %w", w.fileNo, w.d.Name(), err)
		return w.err
	}
	return nil
}

// EarlyWarning reports whether any block of the file went into the
// early-warning zone.
func (w *FileWriter) EarlyWarning() bool { return w.early }
