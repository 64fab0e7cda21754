package tapefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FileReader reads one tape file from the drive's current position, entry
// by entry. Not safe for concurrent use.
type FileReader struct {
	d      Drive
	codec  *blockCodec
	buf    []byte // the block as read
	data   []byte // the unread stream bytes of the current block
	kind   FileKind
	fileNo uint32
	seq    uint32 // the sequence number the next block must have
	last   bool   // the block with the last flag has been read
	blkLen int    // the data length of the current block
	mid    bool   // started at an entry (OpenEntry), not at the file's start
	entry  CatalogEntry
	start  uint64
	ctx    context.Context // Next's, for Read

	inEntry bool
	remain  int64 // unread bytes of the current entry
	count   uint64
	total   uint64
	eof     bool
	err     error // sticky
}

// errEmptyFile: a filemark where a file's first block should be.
var errEmptyFile = errors.New("an empty tape file (a filemark and no block)")

// NewFileReader starts reading the tape file at the drive's position: it
// reads the first block, so Kind and FileNo are known. At the end of
// recorded data it returns an error wrapping ErrEOD; an encrypted file
// read with no key or a wrong one gives ErrWrongKey before any data.
func NewFileReader(ctx context.Context, d Drive, o FileOptions) (*FileReader, error) {
	c, err := newBlockCodec(o.Key, false)
	if err != nil {
		return nil, err
	}
	pos, err := d.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("read tape file on %s: %w", d.Name(), err)
	}
	r := &FileReader{d: d, codec: c, buf: blockPool.Get(BlockSize), start: pos, ctx: ctx}
	if err := r.readBlock(ctx, true); err != nil {
		r.releaseIfDone()
		return nil, err
	}
	return r, nil
}

// Kind is the kind of tape file, from its first block.
func (r *FileReader) Kind() FileKind { return r.kind }

// FileNo is the file number its blocks carry.
func (r *FileReader) FileNo() int { return int(r.fileNo) }

// StartPos is the logical object number where the file starts.
func (r *FileReader) StartPos() uint64 { return r.start }

func (r *FileReader) where() string {
	return fmt.Sprintf("tape file at %d on %s", r.start, r.d.Name())
}

// readBlock reads and opens the next block into r.data.
func (r *FileReader) readBlock(ctx context.Context, first bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.last {
		return r.fail(ctx, fmt.Errorf("%s: the stream goes on past its last block: %w", r.where(), ErrBadBlock))
	}
	n, err := r.d.ReadBlock(ctx, r.buf)
	switch {
	case err == nil:
	case errors.Is(err, ErrEOD) && first:
		r.err = fmt.Errorf("%s: %w", r.where(), err)
		return r.err
	case errors.Is(err, ErrFilemark) && first:
		// A filemark where a file should start: no file at all.
		r.err = fmt.Errorf("%s: %w: %w", r.where(), errEmptyFile, ErrTorn)
		return r.err
	case errors.Is(err, ErrFilemark), errors.Is(err, ErrEOD):
		// The file ended before the block carrying its end record.
		r.err = fmt.Errorf("%s: %w", r.where(), ErrTorn)
		return r.err
	case errors.Is(err, ErrMediumError), errors.Is(err, ErrBlockTooBig):
		return r.fail(ctx, fmt.Errorf("%s: block %d: %w: %w", r.where(), r.seq, ErrBadBlock, err))
	default:
		r.err = fmt.Errorf("%s: %w", r.where(), err)
		return r.err
	}
	h, data, err := r.codec.open(r.buf[:n])
	if err != nil {
		switch {
		case first && errors.Is(err, ErrForeign):
			// Foreign whatever follows: a tear is told by recall blocks.
			ferr := fmt.Errorf("%s: %w", r.where(), err)
			r.fail(ctx, ferr)
			r.err = ferr
			return ferr
		case first && (errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrWrongKey)):
			// Said of the whole file, before any of its data: not
			// damage to skip.
			r.err = fmt.Errorf("%s: %w", r.where(), err)
			return r.err
		case first && errors.Is(err, errAuth):
			r.err = fmt.Errorf("%s: the key does not open its blocks: %w", r.where(), ErrWrongKey)
			return r.err
		}
		return r.fail(ctx, fmt.Errorf("%s: block %d: %w: %v", r.where(), r.seq, ErrBadBlock, err))
	}
	if first {
		r.kind, r.fileNo = h.kind, h.fileNo
	}
	if h.kind != r.kind || h.fileNo != r.fileNo || h.seq != r.seq {
		return r.fail(ctx, fmt.Errorf("%s: block %d is block %d of %s file %d: %w", r.where(), r.seq, h.seq, h.kind, h.fileNo, ErrBadBlock))
	}
	r.seq++
	r.last = h.flags&flagLast != 0
	r.data = data
	r.blkLen = len(data)
	return nil
}

// fail records a damaged file and skips to its filemark, so the drive is
// positioned at the next file. A damaged block followed by the end of data
// is a torn file, not a damaged one: a power cut while the block was
// written leaves it cut short or unreadable, and the data ends there.
func (r *FileReader) fail(ctx context.Context, err error) error {
	r.data = nil
	_, rerr := r.d.ReadBlock(ctx, r.buf)
	switch {
	case errors.Is(rerr, ErrFilemark):
	case errors.Is(rerr, ErrEOD):
		err = fmt.Errorf("%s: its last block is damaged and the data ends there (%v): %w", r.where(), err, ErrTorn)
	default:
		if serr := r.d.SpaceFiles(ctx, 1); serr != nil && !errors.Is(serr, ErrEOD) {
			err = fmt.Errorf("%w (and skipping to the next file: %v)", err, serr)
		}
	}
	r.err = err
	return err
}

// readFull fills p from the stream.
func (r *FileReader) readFull(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		if len(r.data) == 0 {
			if err := r.readBlock(ctx, false); err != nil {
				return err
			}
			continue
		}
		k := copy(p, r.data)
		r.data = r.data[k:]
		p = p[k:]
	}
	return nil
}

// Next moves to the next entry, skipping what is unread of the current
// one. After the last entry it returns io.EOF with the drive past the
// file's filemark. ErrTorn: the file ends without its end record (its
// last entry is cut short and not returned). ErrBadBlock: a block is
// damaged; the rest of the file is skipped (the drive is past its
// filemark).
func (r *FileReader) Next(ctx context.Context) (name string, size int64, err error) {
	name, size, err = r.next(ctx)
	r.releaseIfDone()
	return name, size, err
}

// releaseIfDone gives the buffers back once the file is read or failed:
// no more bytes will come from them.
func (r *FileReader) releaseIfDone() {
	if (r.err != nil || r.eof) && r.buf != nil {
		blockPool.Put(r.buf)
		r.codec.release()
		r.buf, r.data = nil, nil
	}
}

func (r *FileReader) next(ctx context.Context) (name string, size int64, err error) {
	if r.err != nil {
		return "", 0, r.err
	}
	if r.eof {
		return "", 0, io.EOF
	}
	r.ctx = ctx
	for r.remain > 0 {
		if len(r.data) == 0 {
			if err := r.readBlock(ctx, false); err != nil {
				return "", 0, err
			}
		}
		k := int64(len(r.data))
		if k > r.remain {
			k = r.remain
		}
		r.data = r.data[k:]
		r.remain -= k
	}
	r.inEntry = false
	if len(r.data) == 0 {
		if err := r.readBlock(ctx, false); err != nil {
			return "", 0, err
		}
	}
	at := CatalogEntry{Block: r.seq - 1, Offset: uint32(r.blkLen - len(r.data))}
	var rec [1]byte
	if err := r.readFull(ctx, rec[:]); err != nil {
		return "", 0, err
	}
	switch rec[0] {
	case recEntry:
		var hdr [2]byte
		if err := r.readFull(ctx, hdr[:]); err != nil {
			return "", 0, err
		}
		nl := int(binary.BigEndian.Uint16(hdr[:]))
		if nl == 0 || nl > maxNameLen {
			return "", 0, r.fail(ctx, fmt.Errorf("%s: entry name of %d bytes: %w", r.where(), nl, ErrBadBlock))
		}
		var nb [maxNameLen + 8]byte
		if err := r.readFull(ctx, nb[:nl+8]); err != nil {
			return "", 0, err
		}
		size := binary.BigEndian.Uint64(nb[nl:])
		if size > 1<<62 {
			return "", 0, r.fail(ctx, fmt.Errorf("%s: entry size %d: %w", r.where(), size, ErrBadBlock))
		}
		r.inEntry, r.remain = true, int64(size)
		r.count++
		r.total += size
		at.Name, at.Size = string(nb[:nl]), int64(size)
		r.entry = at
		return at.Name, at.Size, nil
	case recEnd:
		var end [endRecordLen - 1]byte
		if err := r.readFull(ctx, end[:]); err != nil {
			return "", 0, err
		}
		count, total := binary.BigEndian.Uint64(end[:]), binary.BigEndian.Uint64(end[8:])
		// A reader that started at an entry has not seen the ones
		// before it: it checks only what it can.
		if (!r.mid && (count != r.count || total != r.total)) || !r.last || len(r.data) != 0 {
			return "", 0, r.fail(ctx, fmt.Errorf("%s: end record says %d entries of %d bytes, the file holds %d of %d: %w", r.where(), count, total, r.count, r.total, ErrBadBlock))
		}
		// Past the filemark, so the drive is at the next file. A file
		// whose filemark was lost to a power cut after its last block is
		// still whole: the end of data stands in for it.
		_, err := r.d.ReadBlock(ctx, r.buf)
		if err != nil && !errors.Is(err, ErrFilemark) && !errors.Is(err, ErrEOD) {
			r.err = fmt.Errorf("%s: after its end record: %w", r.where(), err)
			return "", 0, r.err
		}
		if err == nil {
			r.err = fmt.Errorf("%s: a block follows its end record: %w", r.where(), ErrBadBlock)
			if serr := r.d.SpaceFiles(ctx, 1); serr != nil && !errors.Is(serr, ErrEOD) {
				r.err = fmt.Errorf("%w (and skipping to the next file: %v)", r.err, serr)
			}
			return "", 0, r.err
		}
		r.eof = true
		return "", 0, io.EOF
	}
	return "", 0, r.fail(ctx, fmt.Errorf("%s: unknown record %#x: %w", r.where(), rec[0], ErrBadBlock))
}

// Entry is the current entry (after Next returned it), with where its
// record starts in the file.
func (r *FileReader) Entry() CatalogEntry { return r.entry }

// OpenEntry reads from entry e of the tape file starting at fileStart
// (CatalogFile.StartPos): it locates the block holding the entry's record,
// so the file's earlier blocks are not read. The reader is positioned in
// e, as if Next had returned it: Read gives its bytes, Next the entries
// after it. A record there that is not e (a catalog that does not match
// the tape) is ErrBadBlock.
func OpenEntry(ctx context.Context, d Drive, o FileOptions, fileStart uint64, e CatalogEntry) (*FileReader, error) {
	if err := d.Locate(ctx, fileStart+uint64(e.Block)); err != nil {
		return nil, fmt.Errorf("entry %s at block %d of the tape file at %d on %s: %w", e.Name, e.Block, fileStart, d.Name(), err)
	}
	c, err := newBlockCodec(o.Key, false)
	if err != nil {
		return nil, err
	}
	// The block is the reader's first, whose kind and file number it
	// takes; its sequence must be the one asked for.
	r := &FileReader{d: d, codec: c, buf: blockPool.Get(BlockSize), start: fileStart, ctx: ctx, seq: e.Block, mid: true}
	if err := r.readBlock(ctx, true); err != nil {
		r.releaseIfDone()
		return nil, err
	}
	if int(e.Offset) > len(r.data) {
		r.err = fmt.Errorf("%s: entry %s at offset %d of block %d, which carries %d bytes: %w", r.where(), e.Name, e.Offset, e.Block, len(r.data), ErrBadBlock)
		r.releaseIfDone()
		return nil, r.err
	}
	r.data = r.data[e.Offset:]
	name, size, err := r.Next(ctx)
	if err == nil && (name != e.Name || size != e.Size) {
		err = r.fail(ctx, fmt.Errorf("%s: block %d offset %d holds entry %q of %d bytes, not %q of %d: %w", r.where(), e.Block, e.Offset, name, size, e.Name, e.Size, ErrBadBlock))
	}
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%s: block %d offset %d is the end of the file, not entry %q: %w", r.where(), e.Block, e.Offset, e.Name, ErrBadBlock)
		}
		r.releaseIfDone()
		return nil, err
	}
	return r, nil
}

// Read reads the current entry's bytes; io.EOF at its end. It uses the
// context of the last Next.
func (r *FileReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.inEntry || r.remain == 0 {
		return 0, io.EOF
	}
	if len(r.data) == 0 {
		if err := r.readBlock(r.ctx, false); err != nil {
			r.releaseIfDone()
			return 0, err
		}
	}
	k := len(p)
	if int64(k) > r.remain {
		k = int(r.remain)
	}
	k = copy(p[:k], r.data)
	r.data = r.data[k:]
	r.remain -= int64(k)
	return k, nil
}

// ReadEntry reads the whole current entry, refusing one larger than max
// (a bound for entries held in memory, such as labels and catalogs). Its
// memory grows with the bytes read, not with the size the entry claims.
func (r *FileReader) ReadEntry(max int64) ([]byte, error) {
	if r.remain > max {
		return nil, fmt.Errorf("%s: entry of %d bytes, more than the %d expected", r.where(), r.remain, max)
	}
	want := r.remain
	var buf bytes.Buffer
	buf.Grow(int(min(want, BlockSize)))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	if int64(buf.Len()) != want {
		return nil, fmt.Errorf("%s: entry of %d bytes ends after %d", r.where(), want, buf.Len())
	}
	return buf.Bytes(), nil
}
