package tapefs

// The index beside a cartridge's tape file. Text for the package comment:
//
// A cartridge of many records keeps "index" beside "tape", so that
// opening it reads the headers of only the records written since (a
// cartridge of 10^7 1 MiB blocks would otherwise cost 10^7 reads to open).
// It is a cache: written when the cartridge is closed after the tape file
// is synced, removed before anything it covers is truncated, checked
// against the tape on open and ignored when it does not match.
//
// index, version 1 (integers little-endian):
//
//	index  = "RCLTIDX\x00" | version u32 (1) | count u64 | entry{count} | crc u32
//	entry  = kind u8 | length u32     (the headers of records 0 to count-1)
//	crc    = CRC32C of everything before it

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/recall-backup/recall/internal/atomicfile"
)

const (
	indexFile    = "index"
	indexMagic   = "RCLTIDX\x00"
	indexVersion = 1
	indexEntry   = 5
	indexHeader  = 20
	// indexMinRecords: below this, scanning the headers is as quick as
	// reading an index, and a cartridge is closed without writing one.
	indexMinRecords = 1024
)

var indexCRC = crc32.MakeTable(crc32.Castagnoli)

// loadIndex fills the record index from the index file when it matches
// the tape file of size bytes, and returns the offset up to which it did
// (the tape header's end when it did not).
func (c *cartridge) loadIndex(size int64) int64 {
	b, err := os.ReadFile(filepath.Join(c.dir, indexFile))
	if err != nil || len(b) < indexHeader+4 || string(b[:8]) != indexMagic ||
		binary.LittleEndian.Uint32(b[8:]) != indexVersion {
		return tapeHeaderLen
	}
	count := binary.LittleEndian.Uint64(b[12:])
	body := b[:len(b)-4]
	if uint64(len(body)-indexHeader) != count*indexEntry ||
		crc32.Checksum(body, indexCRC) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return tapeHeaderLen
	}
	ends := make([]int64, 0, count)
	kinds := make([]byte, 0, count)
	var marks []uint64
	off := int64(tapeHeaderLen)
	for i := range count {
		e := b[indexHeader+i*indexEntry:]
		kind, length := e[0], int64(binary.LittleEndian.Uint32(e[1:]))
		if kind == recFilemark {
			marks = append(marks, i)
		}
		off += recordHeaderLen + length
		ends = append(ends, off)
		kinds = append(kinds, kind)
	}
	if count == 0 || off > size {
		return tapeHeaderLen
	}
	// The last record it lists must be the tape's, header for header.
	last := tapeHeaderLen
	if count > 1 {
		last = int(ends[count-2])
	}
	h := make([]byte, recordHeaderLen)
	if _, err := c.f.ReadAt(h, int64(last)); err != nil ||
		h[0] != kinds[count-1] || int64(binary.LittleEndian.Uint32(h[4:])) != off-int64(last)-recordHeaderLen {
		return tapeHeaderLen
	}
	c.ends, c.kinds, c.marks, c.indexed = ends, kinds, marks, count
	return off
}

// saveIndex writes the index of every record, once the tape is synced.
func (c *cartridge) saveIndex() error {
	n := c.count()
	if n < indexMinRecords || n == c.indexed {
		return nil
	}
	b := make([]byte, indexHeader, indexHeader+int(n)*indexEntry+4)
	copy(b, indexMagic)
	binary.LittleEndian.PutUint32(b[8:], indexVersion)
	binary.LittleEndian.PutUint64(b[12:], n)
	var e [indexEntry]byte
	for i := range n {
		e[0] = c.kinds[i]
		binary.LittleEndian.PutUint32(e[1:], uint32(c.ends[i]-c.offset(i)-recordHeaderLen))
		b = append(b, e[:]...)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, indexCRC))
	if err := atomicfile.Write(filepath.Join(c.dir, indexFile), b, 0o644); err != nil {
		return err
	}
	c.indexed = n
	return nil
}

// dropIndex removes the index before a change to a record it covers
// (pos and after), durably, so that no crash leaves it describing
// records that are no longer there.
func (c *cartridge) dropIndex(pos uint64) error {
	if pos >= c.indexed {
		return nil
	}
	if err := os.Remove(filepath.Join(c.dir, indexFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	c.indexed = 0
	return atomicfile.SyncDir(c.dir)
}
