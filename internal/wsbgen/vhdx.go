package wsbgen

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"unicode/utf16"
)

// The VHDX layout this package writes ([MS-VHDX] section 2), every
// structure 1 MiB aligned where the specification asks for it:
//
//	0        file type identifier: "vhdxfile", creator (UTF-16LE, 512 B)
//	64 KiB   header 1: "head", CRC-32C, sequence number, write GUIDs, log
//	128 KiB  header 2: the same with the next sequence number (current)
//	192 KiB  region table 1: "regi", CRC-32C, the BAT and metadata regions
//	256 KiB  region table 2: a copy
//	1 MiB    log region, 1 MiB, left a hole: the log GUID is zero (no log)
//	2 MiB    metadata region, 1 MiB: table at 0, items from 64 KiB
//	3 MiB    BAT, rounded up to 1 MiB
//	...      payload blocks of BlockSize, in the order of the volume
//
// Only blocks the volume has data in are present, and inside a present
// block the unallocated clusters are holes too (they read as zeroes, as
// the volume's free space does).
const (
	vhdxLogOffset      = 1 << 20
	vhdxLogLength      = 1 << 20
	vhdxMetadataOffset = 2 << 20
	vhdxMetadataLength = 1 << 20
	vhdxBATOffset      = 3 << 20

	// BlockSize is the payload block size of the VHDX files: 32 MiB, the
	// VHDX default block size for dynamic disks, which is what a VHDX made
	// by Windows (and so by WSB) uses unless told otherwise.
	BlockSize = 32 << 20
	// LogicalSectorSize is 512 as for WSB's images of 512e disks; it sets
	// the chunk ratio: 2^23 * 512 / 32 MiB = 128 payload entries per
	// sector bitmap entry in the BAT.
	LogicalSectorSize  = 512
	PhysicalSectorSize = 4096

	batPayloadNotPresent   = 0
	batPayloadFullyPresent = 6
	batSBNotPresent        = 0
)

var (
	guidBATRegion      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	guidMetadataRegion = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	guidFileParameters = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	guidVirtualSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	guidPage83         = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	guidLogicalSector  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	guidPhysicalSector = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")

	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

const vhdxCreator = "recall wsbgen test data"

// chunkRatio is the number of payload blocks per sector bitmap block.
func chunkRatio() int64 { return (int64(1) << 23) * LogicalSectorSize / BlockSize }

// batIndex is the BAT entry of payload block b: a sector bitmap entry
// follows every chunkRatio payload entries.
func batIndex(b int64) int64 { return b + b/chunkRatio() }

// batEntries is the number of BAT entries of a dynamic disk of size
// bytes ([MS-VHDX] 2.5: data blocks plus the interleaved bitmap entries).
func batEntries(size int64) int64 {
	blocks := (size + BlockSize - 1) / BlockSize
	return blocks + (blocks-1)/chunkRatio()
}

// vhdxIDs are the GUIDs of one VHDX file.
type vhdxIDs struct {
	fileWrite, dataWrite, disk GUID
	sequence                   uint64
}

// vhdxHead returns the first 3 MiB + BAT bytes of a VHDX of a volume of
// size bytes whose present payload blocks are listed (ascending): file
// identifier, headers, region tables, metadata and BAT, with the hole
// ranges (the log, padding) as zeroes. present[i] lands at payloadStart +
// i*BlockSize.
func vhdxHead(size int64, present []int64, ids vhdxIDs) (head []byte, payloadStart int64) {
	batLen := roundUp(batEntries(size)*8, 1<<20)
	payloadStart = vhdxBATOffset + batLen
	head = make([]byte, payloadStart)
	le := binary.LittleEndian

	copy(head, "vhdxfile")
	for i, u := range utf16.Encode([]rune(vhdxCreator)) {
		le.PutUint16(head[8+2*i:], u)
	}

	for i, off := range []int{64 << 10, 128 << 10} {
		h := head[off : off+4096]
		copy(h, "head")
		le.PutUint64(h[8:], ids.sequence+uint64(i))
		copy(h[16:], ids.fileWrite[:])
		copy(h[32:], ids.dataWrite[:])
		// h[48:64] log GUID stays zero: no log to replay.
		le.PutUint16(h[64:], 0) // log version
		le.PutUint16(h[66:], 1) // version
		le.PutUint32(h[68:], vhdxLogLength)
		le.PutUint64(h[72:], vhdxLogOffset)
		le.PutUint32(h[4:], crc32.Checksum(h, castagnoli))
	}

	for _, off := range []int{192 << 10, 256 << 10} {
		r := head[off : off+64<<10]
		copy(r, "regi")
		le.PutUint32(r[8:], 2)
		e := r[16:]
		copy(e, guidBATRegion[:])
		le.PutUint64(e[16:], vhdxBATOffset)
		le.PutUint32(e[24:], uint32(batLen))
		le.PutUint32(e[28:], 1) // required
		e = r[48:]
		copy(e, guidMetadataRegion[:])
		le.PutUint64(e[16:], vhdxMetadataOffset)
		le.PutUint32(e[24:], vhdxMetadataLength)
		le.PutUint32(e[28:], 1)
		le.PutUint32(r[4:], crc32.Checksum(r, castagnoli))
	}

	m := head[vhdxMetadataOffset : vhdxMetadataOffset+vhdxMetadataLength]
	copy(m, "metadata")
	const (
		isVirtualDisk = 2
		isRequired    = 4
	)
	items := []struct {
		id    GUID
		data  []byte
		flags uint32
	}{
		{guidFileParameters, u32s(BlockSize, 0), isRequired}, // flags 0: dynamic, no parent
		{guidVirtualSize, u64(uint64(size)), isVirtualDisk | isRequired},
		{guidPage83, ids.disk[:], isVirtualDisk | isRequired},
		{guidLogicalSector, u32s(LogicalSectorSize), isVirtualDisk | isRequired},
		{guidPhysicalSector, u32s(PhysicalSectorSize), isVirtualDisk | isRequired},
	}
	le.PutUint16(m[10:], uint16(len(items)))
	at := 64 << 10
	for i, it := range items {
		e := m[32+32*i:]
		copy(e, it.id[:])
		le.PutUint32(e[16:], uint32(at))
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(m[at:], it.data)
		at += len(it.data)
	}

	bat := head[vhdxBATOffset:]
	for i, b := range present {
		mb := uint64(payloadStart+int64(i)*BlockSize) >> 20
		le.PutUint64(bat[8*batIndex(b):], mb<<20|batPayloadFullyPresent)
	}
	// Absent blocks and the sector bitmap entries (a dynamic disk has no
	// bitmaps) stay zero: PAYLOAD_BLOCK_NOT_PRESENT, SB_BLOCK_NOT_PRESENT.
	return head, payloadStart
}

// writeVHDX writes the image of p to path, streaming: the volume is
// generated a cluster at a time, written at its place in its block, and
// never held whole in memory.
func writeVHDX(path string, p *plan, ids vhdxIDs) (err error) {
	present := p.presentBlocks()
	head, payloadStart := vhdxHead(p.size, present, ids)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create vhdx %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close vhdx %s: %w", path, cerr)
		}
	}()
	// The head is mostly zeroes: write only its structures, so the log
	// and padding stay holes as the payload's free space does.
	for _, r := range [][2]int64{{0, 320 << 10}, {vhdxMetadataOffset, vhdxMetadataOffset + 128<<10}, {vhdxBATOffset, int64(len(head))}} {
		if _, err := f.WriteAt(head[r[0]:r[1]], r[0]); err != nil {
			return fmt.Errorf("write vhdx %s: %w", path, err)
		}
	}
	slot := make(map[int64]int64, len(present))
	for i, b := range present {
		slot[b] = payloadStart + int64(i)*BlockSize
	}
	w := &runWriter{f: f, buf: make([]byte, 0, 1<<20)}
	cl := make([]byte, clusterSize)
	for _, e := range p.extents {
		for off := e.off; off < e.end(); off += clusterSize {
			p.cluster(off/clusterSize, cl)
			if err := w.write(slot[off/BlockSize]+off%BlockSize, cl); err != nil {
				return fmt.Errorf("write vhdx %s: %w", path, err)
			}
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("write vhdx %s: %w", path, err)
	}
	end := payloadStart + int64(len(present))*BlockSize
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("size vhdx %s: %w", path, err)
	}
	return nil
}

// runWriter gathers contiguous writes into one pwrite.
type runWriter struct {
	f   *os.File
	buf []byte
	at  int64
}

func (w *runWriter) write(off int64, b []byte) error {
	if len(w.buf) > 0 && (off != w.at+int64(len(w.buf)) || len(w.buf)+len(b) > cap(w.buf)) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.at = off
	}
	w.buf = append(w.buf, b...)
	return nil
}

func (w *runWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(w.buf, w.at)
	w.buf = w.buf[:0]
	return err
}

// corruptVHDX breaks both headers' checksums: a reader finds no valid
// header, which [MS-VHDX] makes the file unusable.
func corruptVHDX(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("corrupt vhdx %s: %w", path, err)
	}
	defer f.Close()
	for _, off := range []int64{64<<10 + 80, 128<<10 + 80} {
		if _, err := f.WriteAt([]byte{0xff}, off); err != nil {
			return fmt.Errorf("corrupt vhdx %s: %w", path, err)
		}
	}
	return f.Close()
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

func u32s(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
