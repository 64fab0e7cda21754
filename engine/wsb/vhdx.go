package wsb

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
)

// The structures CheckVHDX reads, as [MS-VHDX] section 2 places them.
const (
	mib = 1 << 20

	headerOffset1 = 64 << 10
	headerOffset2 = 128 << 10
	headerSize    = 4 << 10
	regionOffset1 = 192 << 10
	regionOffset2 = 256 << 10
	regionSize    = 64 << 10
	metaTableSize = 64 << 10

	maxEntries = 2047 // region and metadata table entries
	maxDisk    = 64 << 40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// guid is a GUID in its on-disk byte order.
type guid [16]byte

// mustGUID parses the GUIDs the specification names (Data1..3 are
// stored little-endian).
func mustGUID(s string) guid {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		panic("guid " + s)
	}
	var g guid
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(raw[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(raw[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(raw[6:]))
	copy(g[8:], raw[8:])
	return g
}

func (g guid) String() string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(g[0:]), le.Uint16(g[4:]), le.Uint16(g[6:]), g[8:10], g[10:])
}

var (
	regionBAT      = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	regionMetadata = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")

	metaFileParameters = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	metaVirtualSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	metaLogicalSector  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	metaPhysicalSector = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	metaPage83         = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	metaParentLocator  = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// errVHDX marks every finding of CheckVHDX.
var errVHDX = errors.New("not a valid VHDX")

// vhdxErr is one finding, wrapping errVHDX.
func vhdxErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errVHDX}, args...)...)
}

// CheckVHDX says why a file is not a valid VHDX, nil when it is: the
// file type identifier, the headers and region tables with their CRC-32C,
// the metadata the disk needs, and that every block the BAT points to is
// inside the file. It reads the structures, never the payload. Ingestion
// warns about what it finds and ingests the file, except a file cut short
// (blocks past its end), which is an image not written whole: that
// error wraps ErrIncomplete too, and no point is made of it. A .vhd (the
// older format WSB wrote before VHDX) is not a VHDX: it is not checked.
// Every finding names the structure and its offset; an error reading r
// is returned as it is.
func CheckVHDX(r io.ReaderAt, size int64) error {
	if size < mib {
		return vhdxErr("%d bytes, shorter than the 1 MiB header section", size)
	}
	read := func(off int64, n int) ([]byte, error) {
		b := make([]byte, n)
		if got, err := r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && got == n) {
			return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, err)
		}
		return b, nil
	}
	id, err := read(0, 8)
	if err != nil {
		return err
	}
	if string(id) != "vhdxfile" {
		return vhdxErr("no file type identifier: %q at 0, want \"vhdxfile\"", id)
	}

	h, err := pickHeader(read, size)
	if err != nil {
		return err
	}
	regions, err := pickRegions(read, size, h)
	if err != nil {
		return err
	}
	d, err := readMetadata(read, regions[regionMetadata])
	if err != nil {
		return err
	}
	return checkBAT(read, size, regions[regionBAT], d)
}

type reader func(off int64, n int) ([]byte, error)

// header is the current header's log fields.
type header struct {
	seq                  uint64
	logOffset, logLength uint64
}

// pickHeader returns the valid header with the higher sequence number.
func pickHeader(read reader, size int64) (*header, error) {
	var best *header
	var why []string
	for i, off := range []int64{headerOffset1, headerOffset2} {
		b, err := read(off, headerSize)
		if err != nil {
			return nil, err
		}
		if problem := checkSum(b, "head"); problem != "" {
			why = append(why, fmt.Sprintf("header %d at %d KiB: %s", i+1, off>>10, problem))
			continue
		}
		le := binary.LittleEndian
		h := &header{seq: le.Uint64(b[8:]), logLength: uint64(le.Uint32(b[68:])), logOffset: le.Uint64(b[72:])}
		if v := le.Uint16(b[66:]); v != 1 {
			why = append(why, fmt.Sprintf("header %d at %d KiB: version %d, want 1", i+1, off>>10, v))
			continue
		}
		if best == nil || h.seq > best.seq {
			best = h
		}
	}
	if best == nil {
		return nil, vhdxErr("no valid header (%s)", strings.Join(why, "; "))
	}
	if best.logLength > 0 && (best.logOffset%mib != 0 || best.logLength%mib != 0 || best.logOffset < mib ||
		best.logOffset > uint64(size) || best.logLength > uint64(size)-best.logOffset) {
		return nil, vhdxErr("log of %d bytes at %d: want 1 MiB aligned, inside the file of %d bytes", best.logLength, best.logOffset, size)
	}
	return best, nil
}

// checkSum checks a structure's signature and its CRC-32C, computed over
// the structure with the checksum field (bytes 4..7) zero.
func checkSum(b []byte, sig string) string {
	if string(b[:len(sig)]) != sig {
		return fmt.Sprintf("signature %q, want %q", b[:len(sig)], sig)
	}
	want := binary.LittleEndian.Uint32(b[4:])
	c := bytes.Clone(b)
	clear(c[4:8])
	if got := crc32.Checksum(c, castagnoli); got != want {
		return fmt.Sprintf("checksum %08x, computed %08x", want, got)
	}
	return ""
}

// region is one entry of the region table.
type region struct{ off, len int64 }

// pickRegions reads the first valid region table and checks its entries:
// 1 MiB aligned, inside the file, not overlapping each other or the log,
// the BAT and the metadata region present and no unknown required one.
func pickRegions(read reader, size int64, h *header) (map[guid]region, error) {
	var why []string
	for i, off := range []int64{regionOffset1, regionOffset2} {
		b, err := read(off, regionSize)
		if err != nil {
			return nil, err
		}
		if problem := checkSum(b, "regi"); problem != "" {
			why = append(why, fmt.Sprintf("region table %d at %d KiB: %s", i+1, off>>10, problem))
			continue
		}
		return regionsOf(b, size, h)
	}
	return nil, vhdxErr("no valid region table (%s)", strings.Join(why, "; "))
}

func regionsOf(b []byte, size int64, h *header) (map[guid]region, error) {
	le := binary.LittleEndian
	n := le.Uint32(b[8:])
	if n > maxEntries {
		return nil, vhdxErr("region table lists %d entries, at most %d fit", n, maxEntries)
	}
	out := map[guid]region{}
	spans := []region{}
	if h.logLength > 0 {
		spans = append(spans, region{int64(h.logOffset), int64(h.logLength)})
	}
	for i := range int(n) {
		e := b[16+32*i:]
		var g guid
		copy(g[:], e[:16])
		off, length, required := le.Uint64(e[16:]), int64(le.Uint32(e[24:])), le.Uint32(e[28:])&1 != 0
		name := map[guid]string{regionBAT: "BAT", regionMetadata: "metadata"}[g]
		if name == "" {
			if required {
				return nil, vhdxErr("unknown required region %s", g)
			}
			name = "region " + g.String()
		}
		if off%mib != 0 || off < mib || length == 0 || length%mib != 0 || off > uint64(size) || uint64(length) > uint64(size)-off {
			return nil, vhdxErr("%s region of %d bytes at %d: want 1 MiB aligned, after the header section, inside the file of %d bytes", name, length, off, size)
		}
		if _, dup := out[g]; dup {
			return nil, vhdxErr("%s region listed twice", name)
		}
		r := region{int64(off), length}
		out[g] = r
		spans = append(spans, r)
	}
	for _, g := range []guid{regionBAT, regionMetadata} {
		if _, ok := out[g]; !ok {
			return nil, vhdxErr("no %s region", map[guid]string{regionBAT: "BAT", regionMetadata: "metadata"}[g])
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	for i := 1; i < len(spans); i++ {
		if spans[i-1].off+spans[i-1].len > spans[i].off {
			return nil, vhdxErr("regions at %d and %d overlap", spans[i-1].off, spans[i].off)
		}
	}
	return out, nil
}

// disk is what the metadata says of the virtual disk.
type disk struct {
	blockSize, sectorSize int64
	size                  int64
	parent                bool
}

// readMetadata reads the metadata table and the items the BAT's layout
// depends on.
func readMetadata(read reader, m region) (*disk, error) {
	b, err := read(m.off, metaTableSize)
	if err != nil {
		return nil, err
	}
	if string(b[:8]) != "metadata" {
		return nil, vhdxErr("metadata table signature %q, want \"metadata\"", b[:8])
	}
	le := binary.LittleEndian
	n := int(le.Uint16(b[10:]))
	if n > maxEntries {
		return nil, vhdxErr("metadata table lists %d entries, at most %d fit", n, maxEntries)
	}
	items := map[guid][]byte{}
	for i := range n {
		e := b[32+32*i:]
		var g guid
		copy(g[:], e[:16])
		off, length, flags := int64(le.Uint32(e[16:])), int64(le.Uint32(e[20:])), le.Uint32(e[24:])
		known := g == metaFileParameters || g == metaVirtualSize || g == metaLogicalSector ||
			g == metaPhysicalSector || g == metaPage83 || g == metaParentLocator
		if !known && flags&4 != 0 {
			return nil, vhdxErr("unknown required metadata item %s", g)
		}
		if length > 0 && (off < metaTableSize || off > m.len || length > m.len-off) {
			return nil, vhdxErr("metadata item %s of %d bytes at %d: outside the metadata region of %d bytes", g, length, off, m.len)
		}
		if !known || length > 8 {
			continue // only the fixed-size items below are read
		}
		item, err := read(m.off+off, int(length))
		if err != nil {
			return nil, err
		}
		items[g] = item
	}
	get := func(g guid, name string, n int) ([]byte, error) {
		v, ok := items[g]
		if !ok || len(v) < n {
			return nil, vhdxErr("no %s metadata item", name)
		}
		return v, nil
	}
	d := &disk{}
	fp, err := get(metaFileParameters, "File Parameters", 8)
	if err != nil {
		return nil, err
	}
	d.blockSize = int64(le.Uint32(fp))
	d.parent = le.Uint32(fp[4:])&2 != 0
	if d.blockSize < mib || d.blockSize > 256*mib || d.blockSize&(d.blockSize-1) != 0 {
		return nil, vhdxErr("block size %d: want a power of 2 from 1 to 256 MiB", d.blockSize)
	}
	ls, err := get(metaLogicalSector, "Logical Sector Size", 4)
	if err != nil {
		return nil, err
	}
	if d.sectorSize = int64(le.Uint32(ls)); d.sectorSize != 512 && d.sectorSize != 4096 {
		return nil, vhdxErr("logical sector size %d: want 512 or 4096", d.sectorSize)
	}
	vs, err := get(metaVirtualSize, "Virtual Disk Size", 8)
	if err != nil {
		return nil, err
	}
	if s := le.Uint64(vs); s == 0 || s > maxDisk || s%uint64(d.sectorSize) != 0 {
		return nil, vhdxErr("virtual disk size %d: want a multiple of the %d-byte sector up to 64 TiB", s, d.sectorSize)
	}
	d.size = int64(le.Uint64(vs))
	return d, nil
}

// BAT entry states ([MS-VHDX] 2.5.1).
const (
	payloadFullyPresent     = 6
	payloadPartiallyPresent = 7
	sbPresent               = 6
)

// checkBAT checks that the BAT region holds an entry for every block and
// that every present block lies inside the file.
func checkBAT(read reader, size int64, bat region, d *disk) error {
	chunkRatio := (int64(1) << 23) * d.sectorSize / d.blockSize
	data := (d.size + d.blockSize - 1) / d.blockSize
	entries := data + (data-1)/chunkRatio
	if d.parent {
		entries = (data + chunkRatio - 1) / chunkRatio * (chunkRatio + 1)
	}
	if entries*8 > bat.len {
		return vhdxErr("BAT region of %d bytes holds %d entries, the disk of %d bytes needs %d", bat.len, bat.len/8, d.size, entries)
	}
	le := binary.LittleEndian
	var cut int64
	var first string
	for start := int64(0); start < entries; start += mib / 8 {
		n := min(entries-start, mib/8)
		b, err := read(bat.off+start*8, int(n*8))
		if err != nil {
			return err
		}
		for k := range n {
			i := start + k
			e := le.Uint64(b[8*k:])
			state, off := e&7, int64(e>>20)*mib
			bitmap := (i+1)%(chunkRatio+1) == 0
			what, length := fmt.Sprintf("payload block %d", i-i/(chunkRatio+1)), d.blockSize
			present := state == payloadFullyPresent || state == payloadPartiallyPresent
			if bitmap {
				what, length = fmt.Sprintf("sector bitmap %d", i/(chunkRatio+1)), mib
				present = state == sbPresent
				if state != 0 && !present {
					return vhdxErr("%s: state %d, want 0 or 6", what, state)
				}
			} else if state == 4 || state == 5 {
				return vhdxErr("%s: state %d is not a payload state", what, state)
			}
			if !present {
				continue
			}
			if off < mib {
				return vhdxErr("%s at %d: inside the header section", what, off)
			}
			if off+length > size {
				if cut == 0 {
					first = fmt.Sprintf("%s at %d", what, off)
				}
				cut++
			}
		}
	}
	if cut > 0 {
		// Not a damaged image but an unfinished one (a transfer that
		// broke off, a share that filled): ErrIncomplete too.
		return fmt.Errorf("%w: %w", ErrIncomplete, vhdxErr("cut short: the file has %d bytes, %d blocks lie past its end (the first: %s)", size, cut, first))
	}
	return nil
}
