package chunkstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// directChunk is the unit of O_DIRECT writes: pack bytes collect in an
// aligned buffer of this size and go to disk without the page-cache copy,
// which otherwise costs as much CPU as chunking. The unaligned tail and the
// header are written through an ordinary descriptor when the pack is
// finished. File systems without O_DIRECT (tmpfs) get ordinary writes.
const directChunk = 4 << 20

// packFile is a pack being written.
type packFile struct {
	f       *os.File // ordinary descriptor (tail, header, fsync)
	direct  *os.File // O_DIRECT descriptor, or nil
	buf     []byte   // aligned staging buffer (direct only)
	n       int      // bytes staged in buf
	flushed int64    // bytes written through direct
}

func newPackFile(f *os.File) *packFile {
	p := &packFile{f: f}
	d, err := os.OpenFile(f.Name(), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return p
	}
	p.direct, p.buf = d, alignedWindow(make([]byte, directChunk+readAlign), directChunk)
	return p
}

func (p *packFile) Name() string { return p.f.Name() }

// Write appends b.
func (p *packFile) Write(b []byte) (int, error) {
	if err := fault(StepWrite, p.f.Name(), ""); err != nil {
		return 0, err
	}
	if p.direct == nil {
		return p.f.Write(b)
	}
	total := len(b)
	for len(b) > 0 {
		c := copy(p.buf[p.n:], b)
		p.n += c
		b = b[c:]
		if p.n == len(p.buf) {
			if err := fault(StepWrite, p.f.Name(), ""); err != nil {
				return 0, err
			}
			if _, err := p.direct.WriteAt(p.buf, p.flushed); err != nil {
				return 0, err
			}
			p.flushed += int64(p.n)
			p.n = 0
		}
	}
	return total, nil
}

// finish writes the staged tail and then tail, and makes the file durable.
func (p *packFile) finish(tail []byte) error {
	if err := fault(StepWrite, p.f.Name(), ""); err != nil {
		return err
	}
	if p.direct != nil {
		if _, err := p.f.WriteAt(p.buf[:p.n], p.flushed); err != nil {
			return err
		}
		p.flushed += int64(p.n)
		p.n = 0
		if _, err := p.f.WriteAt(tail, p.flushed); err != nil {
			return err
		}
	} else if _, err := p.f.Write(tail); err != nil {
		return err
	}
	if err := fault(StepSync, p.f.Name(), ""); err != nil {
		return err
	}
	return p.f.Sync()
}

// Close closes both descriptors.
func (p *packFile) Close() error {
	if p.direct != nil {
		p.direct.Close()
	}
	return p.f.Close()
}
