//go:build linux

package tapefs

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
)

// st.h's eof states, in its order: st compares them.
const (
	eNOEOF = iota
	eFMHIT
	eFM
	eEOMOK
	eEOMERR
	eEOD1
	eEOD2
	eEOD
)

// st's rw states.
const (
	rwIdle = iota
	rwReading
	rwWriting
)

type modelObj struct {
	fm   bool
	data []byte
}

// stModel is the st driver over an in-memory tape, as drivers/scsi/st.c
// behaves in variable-block mode with direct I/O: its eof states (the
// filemark and end-of-data bookkeeping, the early-warning alternation), its
// rw state (the filemark it adds before moving after writes), its file and
// block counters, READ POSITION and LOCATE on logical objects. The drive
// under it writes in the middle by truncating, refuses a block past the
// capacity (VOLUME OVERFLOW), reports early warning for a block that ends in
// the zone, and puts a locate beyond the end of data at the end of data.
// The st Drive runs on it as it would on the kernel, so that sessions of many
// calls, not one call at a time, are checked against the driver's rules
// (and part A's conformance suite, tapetest.Run, passes on newModelDrive).
type stModel struct {
	objs            []modelObj
	pos             int
	capacity, ew    int64
	writeProt       bool
	ready           bool
	eof, rw         int
	drvFile, drvBlk int32
	blockSize       int
}

func newModelDrive() (*stDrive, *stModel) {
	m := &stModel{capacity: 1 << 40, blockSize: 512}
	d := newSTDrive("model", m)
	d.loadPoll = 0
	return d, m
}

func (m *stModel) setCapacity(c, ew int64) { m.capacity, m.ew = c, ew }

func (m *stModel) used(upto int) int64 {
	var n int64
	for _, o := range m.objs[:upto] {
		n += int64(len(o.data))
	}
	return n
}

func (m *stModel) incBlk() {
	if m.drvBlk >= 0 {
		m.drvBlk++
	}
}

func (m *stModel) write(p []byte) (int, error) {
	if !m.ready {
		return 0, syscall.ENOMEDIUM
	}
	if m.writeProt {
		return 0, syscall.EACCES
	}
	if m.eof == eEOMOK {
		m.eof = eEOD1
		return 0, syscall.ENOSPC
	}
	if m.eof == eEOMERR {
		return 0, syscall.EIO
	}
	m.rw = rwWriting
	end := m.used(m.pos) + int64(len(p))
	if end > m.capacity {
		m.objs = m.objs[:m.pos]
		m.eof = eEOMOK
		return 0, syscall.ENOSPC
	}
	m.objs = append(m.objs[:m.pos], modelObj{data: append([]byte(nil), p...)})
	m.pos++
	m.incBlk()
	if end > m.capacity-m.ew {
		m.eof = eEOMOK
		return len(p), nil
	}
	if m.eof == eEOD1 {
		m.eof = eEOMOK
	} else if m.eof != eEOMOK {
		m.eof = eNOEOF
	}
	return len(p), nil
}

func (m *stModel) read(p []byte) (int, error) {
	if !m.ready {
		return 0, syscall.ENOMEDIUM
	}
	if m.rw == rwWriting {
		m.rw = rwReading
	}
	if m.eof >= eEOD1 {
		if m.eof < eEOD {
			m.eof++
			return 0, nil
		}
		return 0, syscall.EIO
	}
	m.rw = rwReading
	if m.pos >= len(m.objs) {
		m.drvBlk = -1
		if m.eof == eFM {
			// read_tape: blank check right after a filemark is EOD_2, which
			// st_read turns into EOD after returning 0 bytes.
			m.eof = eEOD
			return 0, nil
		}
		return 0, syscall.EIO
	}
	o := m.objs[m.pos]
	m.pos++
	if o.fm {
		if m.eof != eFMHIT {
			m.eof = eFMHIT
		} else {
			m.eof = eEOD2
		}
		m.incBlk()
		// st_read, total == 0
		if m.eof == eFMHIT {
			m.eof = eFM
			m.drvBlk = 0
			if m.drvFile >= 0 {
				m.drvFile++
			}
		} else if m.eof == eEOD2 {
			m.eof = eEOD
		}
		return 0, nil
	}
	if len(o.data) > len(p) {
		m.incBlk()
		return 0, syscall.ENOMEM
	}
	m.incBlk()
	if m.eof == eFM {
		m.eof = eNOEOF
	}
	return copy(p, o.data), nil
}

func (m *stModel) writeFMs(n int) {
	m.objs = m.objs[:m.pos]
	for range n {
		m.objs = append(m.objs, modelObj{fm: true})
	}
	m.pos += n
}

func (m *stModel) op(op int16, count int32) error {
	// st_ioctl: after writes, a filemark before these moves.
	if m.rw == rwWriting && (op == mtREW || op == mtOFFL || op == mtSEEK || op == mtBSF) {
		if !m.ready {
			return syscall.ENOMEDIUM
		}
		m.writeFMs(1)
		if m.drvFile >= 0 {
			m.drvFile++
		}
		m.drvBlk = 0
		m.rw = rwIdle
	}
	if op != mtSETBLK && op != mtSETDRVBUFFER {
		m.rw = rwIdle
	}
	switch op {
	case mtSETDRVBUFFER:
		return nil
	case mtSEEK:
		if !m.ready {
			return syscall.EIO
		}
		m.eof = eNOEOF
		m.drvFile, m.drvBlk = -1, -1
		if int(count) > len(m.objs) {
			m.pos = len(m.objs)
			return syscall.EIO
		}
		m.pos = int(count)
		if count == 0 {
			m.drvFile, m.drvBlk = 0, 0
		}
		return nil
	case mtOFFL:
		if !m.ready {
			return syscall.ENOMEDIUM
		}
		m.ready = false
		m.pos = 0
		return nil
	case mtLOAD:
		m.ready = true
		m.pos, m.drvFile, m.drvBlk, m.eof, m.rw = 0, 0, 0, eNOEOF, rwIdle
		m.blockSize = 512
		return nil
	}
	if !m.ready {
		return syscall.ENOMEDIUM
	}
	switch op {
	case mtFSF:
		n := int(count)
		for n > 0 {
			if m.pos >= len(m.objs) {
				m.drvBlk = -1
				m.eof = eEOD
				return syscall.EIO
			}
			if m.objs[m.pos].fm {
				n--
				if m.drvFile >= 0 {
					m.drvFile++
				}
			}
			m.pos++
		}
		m.drvBlk = 0
		m.eof = eFM
	case mtBSF:
		n := int(count)
		for n > 0 {
			if m.pos == 0 {
				m.drvBlk = 0
				m.eof = eNOEOF
				return syscall.EIO
			}
			m.pos--
			if m.objs[m.pos].fm {
				n--
				if m.drvFile >= 0 {
					m.drvFile--
				}
			}
		}
		m.drvBlk = -1
		m.eof = eNOEOF
	case mtWEOF, mtWEOFI:
		if m.writeProt {
			return syscall.EACCES
		}
		if count > 0 {
			m.writeFMs(int(count))
		}
		if m.drvFile >= 0 {
			m.drvFile += count
		}
		m.drvBlk = 0
		m.eof = eNOEOF
		m.rw = rwIdle
	case mtREW:
		m.pos, m.drvFile, m.drvBlk, m.eof = 0, 0, 0, eNOEOF
	case mtEOM:
		for m.pos < len(m.objs) {
			if m.objs[m.pos].fm && m.drvFile >= 0 {
				m.drvFile++
			}
			m.pos++
		}
		m.drvBlk = -1
		m.eof = eEOD
	case mtSETBLK:
		m.blockSize = int(count)
	default:
		return syscall.ENOSYS
	}
	return nil
}

func (m *stModel) status() (mtget, error) {
	var g mtget
	g.Dsreg = m.blockSize
	g.Fileno, g.Blkno = m.drvFile, m.drvBlk
	var b uint32
	if m.writeProt {
		b |= gmtWrProt
	}
	if g.Blkno == 0 {
		if g.Fileno == 0 {
			b |= gmtBOT
		} else {
			b |= gmtEOF
		}
	}
	if m.eof == eEOMOK || m.eof == eEOMERR {
		b |= gmtEOT
	} else if m.eof >= eEOMOK {
		b |= gmtEOD
	}
	if m.ready {
		b |= gmtOnline
	}
	g.Gstat = int(int32(b))
	return g, nil
}

func (m *stModel) position() (uint64, error) {
	if !m.ready {
		return 0, syscall.EIO
	}
	return uint64(m.pos), nil
}

func (m *stModel) close() error {
	if m.rw == rwWriting {
		m.writeFMs(1)
	}
	return nil
}

// objects is what is on the tape: -1 for a filemark, else a block's size.
func (m *stModel) objects() []int {
	var r []int
	for _, o := range m.objs {
		if o.fm {
			r = append(r, -1)
		} else {
			r = append(r, len(o.data))
		}
	}
	return r
}

// TestSTSessionOnModel writes a cartridge as the on-tape format does (two
// label files, a file of packs, one filled into the early-warning zone and
// finished there, a catalog, then a file cut short by the end of medium),
// unloads it, loads it again and reads it back as a catalog scan would,
// with each call going through the st driver's rules.
func TestSTSessionOnModel(t *testing.T) {
	ctx := context.Background()
	d, m := newModelDrive()
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must(d.Load(ctx), "load")
	if m.blockSize != 0 {
		t.Fatalf("block size %d after load, want variable (0)", m.blockSize)
	}
	m.setCapacity(40_000, 10_000) // the zone starts after 30,000 bytes
	blk := func(n int) []byte { return bytes.Repeat([]byte{byte(n)}, n) }
	writeFile := func(sizes ...int) (start uint64) {
		t.Helper()
		start, err := d.Position(ctx)
		must(err, "position")
		for _, n := range sizes {
			ew, err := d.WriteBlock(ctx, blk(n))
			must(err, "write")
			if ew {
				t.Fatalf("early warning at %d bytes", m.used(m.pos))
			}
		}
		must(d.WriteFilemarks(ctx, 1), "filemark")
		return start
	}
	writeFile(100)
	writeFile(200)
	packs := writeFile(5000, 6000, 7000)

	// A file into the zone: the writer finishes it at the first warning.
	zoneStart, err := d.Position(ctx)
	must(err, "position")
	var warned int
	for i := 0; warned == 0; i++ {
		ew, err := d.WriteBlock(ctx, blk(3000))
		must(err, "write into the zone")
		if ew {
			warned = i + 1
		}
	}
	if st, err := d.Status(ctx); err != nil || !st.EarlyWarning {
		t.Fatalf("status in the zone: %+v, %v", st, err)
	}
	// The entry under way ends two blocks later; st refuses each of them
	// once before taking it.
	for range 2 {
		ew, err := d.WriteBlock(ctx, blk(3000))
		if err != nil || !ew {
			t.Fatalf("finishing the entry in the zone: early warning %v, %v", ew, err)
		}
	}
	must(d.WriteFilemarks(ctx, 1), "filemark in the zone")
	// The catalog still fits; st refuses its first block once.
	ew, err := d.WriteBlock(ctx, blk(900))
	if err != nil || !ew {
		t.Fatalf("catalog block in the zone: early warning %v, %v", ew, err)
	}
	must(d.WriteFilemarks(ctx, 1), "catalog filemark")
	must(d.Flush(ctx), "flush")

	// A file cut short: blocks until the cartridge is full.
	var cut int
	for {
		_, err := d.WriteBlock(ctx, blk(2000))
		if errors.Is(err, ErrEndOfMedium) {
			break
		}
		must(err, "write to the end")
		cut++
	}
	// 18,300 bytes, then 3,000-byte blocks: the fourth ends at 30,300,
	// in the zone; two more and the catalog make 37,200; one block of
	// 2,000 fits below 40,000, the next does not.
	if warned != 4 || cut != 1 {
		t.Fatalf("warned at block %d, %d blocks fitted at the end; want 4 and 1", warned, cut)
	}
	must(d.Unload(ctx), "unload")

	// On tape: no filemark after the cut-short file, whatever st does on
	// its own when the tape moves after writes.
	want := []int{100, -1, 200, -1, 5000, 6000, 7000, -1}
	for range warned + 2 {
		want = append(want, 3000)
	}
	want = append(want, -1, 900, -1)
	for range cut {
		want = append(want, 2000)
	}
	if got := m.objects(); !slices.Equal(got, want) {
		t.Fatalf("tape holds %v\nwant %v", got, want)
	}

	// Read it back from the beginning, as a scan does.
	must(d.Load(ctx), "load again")
	buf := make([]byte, 8000)
	var got []int
	for {
		n, err := d.ReadBlock(ctx, buf)
		if errors.Is(err, ErrEOD) {
			break
		}
		if errors.Is(err, ErrFilemark) {
			got = append(got, -1)
			continue
		}
		must(err, "read")
		got = append(got, n)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read back %v\nwant %v", got, want)
	}
	if _, err := d.ReadBlock(ctx, buf); !errors.Is(err, ErrEOD) {
		t.Fatalf("second read at the end of data: %v", err)
	}
	if p, err := d.Position(ctx); err != nil || p != uint64(len(want)) {
		t.Fatalf("position at the end of data %d, %v; want %d", p, err, len(want))
	}

	// Straight to a file by its recorded position, and by filemarks.
	must(d.Locate(ctx, packs+1), "locate")
	if n, err := d.ReadBlock(ctx, buf); err != nil || n != 6000 {
		t.Fatalf("block after locate: %d, %v", n, err)
	}
	must(d.Rewind(ctx), "rewind")
	must(d.SpaceFiles(ctx, 3), "space to the zone file")
	if p, err := d.Position(ctx); err != nil || p != zoneStart {
		t.Fatalf("after spacing 3 files: %d, %v; want %d", p, err, zoneStart)
	}
	if err := d.SpaceFiles(ctx, 3); !errors.Is(err, ErrEOD) {
		t.Fatalf("spacing past the last filemark: %v", err)
	}
	// Appending after the cut-short file starts where it ends.
	must(d.SeekEOD(ctx), "seek end of data")
	if p, err := d.Position(ctx); err != nil || p != uint64(len(want)) {
		t.Fatalf("end of data at %d, %v; want %d", p, err, len(want))
	}
}
