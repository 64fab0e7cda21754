package tapefs

import (
	"context"
	"fmt"
)

// memDrive is a tape in memory with exact blocks and filemarks, for the
// format's tests: positions count blocks and filemarks as the Drive
// contract says. Writes from ewAt on report early warning; from eomAt on
// they fail with ErrEndOfMedium. bad marks blocks that read as medium
// errors.
type memDrive struct {
	objs  [][]byte // nil is a filemark
	pos   int
	ewAt  int
	eomAt int
	bad   map[int]bool
}

func newMemDrive() *memDrive { return &memDrive{ewAt: 1 << 30, eomAt: 1 << 30} }

func (m *memDrive) Name() string                             { return "memdrive" }
func (m *memDrive) Load(context.Context) error               { m.pos = 0; return nil }
func (m *memDrive) Unload(context.Context) error             { m.pos = 0; return nil }
func (m *memDrive) Rewind(context.Context) error             { m.pos = 0; return nil }
func (m *memDrive) Flush(context.Context) error              { return nil }
func (m *memDrive) Close() error                             { return nil }
func (m *memDrive) SeekEOD(context.Context) error            { m.pos = len(m.objs); return nil }
func (m *memDrive) Position(context.Context) (uint64, error) { return uint64(m.pos), nil }

func (m *memDrive) Locate(_ context.Context, pos uint64) error {
	if pos > uint64(len(m.objs)) {
		return ErrEOD
	}
	m.pos = int(pos)
	return nil
}

func (m *memDrive) SpaceFiles(_ context.Context, n int) error {
	for ; n > 0; n-- {
		for {
			if m.pos >= len(m.objs) {
				return ErrEOD
			}
			m.pos++
			if m.objs[m.pos-1] == nil {
				break
			}
		}
	}
	for ; n < 0; n++ {
		for {
			if m.pos == 0 {
				return fmt.Errorf("space back: beginning of tape")
			}
			m.pos--
			if m.objs[m.pos] == nil {
				break
			}
		}
	}
	return nil
}

func (m *memDrive) WriteBlock(_ context.Context, p []byte) (bool, error) {
	if m.pos >= m.eomAt {
		return true, ErrEndOfMedium
	}
	m.objs = append(m.objs[:m.pos], append([]byte(nil), p...))
	m.pos++
	return m.pos > m.ewAt, nil
}

func (m *memDrive) WriteFilemarks(_ context.Context, n int) error {
	for ; n > 0; n-- {
		m.objs = append(m.objs[:m.pos], nil)
		m.pos++
	}
	return nil
}

func (m *memDrive) ReadBlock(_ context.Context, p []byte) (int, error) {
	if m.pos >= len(m.objs) {
		return 0, ErrEOD
	}
	o := m.objs[m.pos]
	m.pos++
	switch {
	case o == nil:
		return 0, ErrFilemark
	case m.bad[m.pos-1]:
		return 0, ErrMediumError
	case len(o) > len(p):
		return 0, ErrBlockTooBig
	}
	return copy(p, o), nil
}

func (m *memDrive) Status(context.Context) (Status, error) {
	return Status{Loaded: true, BOT: m.pos == 0, EOD: m.pos == len(m.objs), Position: uint64(m.pos), File: -1, Block: -1}, nil
}

// discardDrive takes blocks and forgets them: the writer benchmarks
// measure the format, not a drive.
type discardDrive struct {
	memDrive
	blocks int
}

func (d *discardDrive) WriteBlock(_ context.Context, p []byte) (bool, error) {
	d.blocks++
	return false, nil
}
func (d *discardDrive) WriteFilemarks(context.Context, int) error { return nil }
