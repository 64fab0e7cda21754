//go:build linux

package tapefs

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
)

// stCall is one system call the Drive logic is expected to make and what
// the st driver answers to it. A script of them is the kernel's side of a
// scenario, as st.rst and the driver describe it; the Drive logic under test
// is the real one.
type stCall struct {
	call  string // read, write, op, status, position
	op    int16
	count int32
	n     int
	err   error
	st    mtget
	pos   uint64
}

type scriptDev struct {
	t      *testing.T
	script []stCall
}

func (s *scriptDev) next(call string) stCall {
	s.t.Helper()
	if len(s.script) == 0 {
		s.t.Fatalf("the drive made an unexpected %s: the script is done", call)
	}
	c := s.script[0]
	s.script = s.script[1:]
	if c.call != call {
		s.t.Fatalf("the drive made a %s where the script expects %s (%+v)", call, c.call, c)
	}
	return c
}

func (s *scriptDev) read(p []byte) (int, error) {
	c := s.next("read")
	if c.n > len(p) {
		s.t.Fatalf("script returns %d bytes into a buffer of %d", c.n, len(p))
	}
	return c.n, c.err
}

func (s *scriptDev) write(p []byte) (int, error) {
	c := s.next("write")
	if c.err == nil && c.n == 0 {
		return len(p), nil
	}
	return c.n, c.err
}

func (s *scriptDev) op(op int16, count int32) error {
	s.t.Helper()
	c := s.next("op")
	if c.op != op || c.count != count {
		s.t.Fatalf("the drive issued MTIOCTOP %d count %d where the script expects %d count %d", op, count, c.op, c.count)
	}
	return c.err
}

func (s *scriptDev) status() (mtget, error)    { c := s.next("status"); return c.st, c.err }
func (s *scriptDev) position() (uint64, error) { c := s.next("position"); return c.pos, c.err }
func (s *scriptDev) close() error              { return nil }

func (s *scriptDev) done() {
	s.t.Helper()
	if len(s.script) != 0 {
		s.t.Errorf("the drive left %d scripted calls unmade, first %+v", len(s.script), s.script[0])
	}
}

func wrote() stCall                   { return stCall{call: "write"} }
func writeErr(e syscall.Errno) stCall { return stCall{call: "write", err: e} }
func readN(n int) stCall              { return stCall{call: "read", n: n} }
func readErr(e syscall.Errno) stCall  { return stCall{call: "read", err: e} }
func op(o int16, c int32) stCall      { return stCall{call: "op", op: o, count: c} }
func opErr(o int16, c int32, e syscall.Errno) stCall {
	return stCall{call: "op", op: o, count: c, err: e}
}
func status(b uint32) stCall   { return stCall{call: "status", st: mtget{Gstat: bits(b)}} }
func position(p uint64) stCall { return stCall{call: "position", pos: p} }

// bits is how GMT bits arrive in the C long: on 32-bit architectures bit
// 31 is the sign.
func bits(b uint32) int { return int(int32(b)) }

// scriptedDrive is a drive in variable-block mode at position pos (unknown
// when pos < 0) whose kernel answers with script.
func scriptedDrive(t *testing.T, pos int64, script ...stCall) (*stDrive, *scriptDev) {
	dev := &scriptDev{t: t, script: script}
	d := newSTDrive("/dev/nst0", dev)
	d.variable = true
	if pos >= 0 {
		d.pos, d.posKnown = uint64(pos), true
	}
	d.loadPoll = 0
	return d, dev
}

func TestSTWriteBlock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  []stCall
		ew      bool
		err     error
		errno   error
		pos     uint64
		unknown bool
	}{
		{name: "before the zone", script: []stCall{wrote(), status(gmtOnline)}, pos: 11},
		{name: "the block that enters the zone", script: []stCall{wrote(), status(gmtOnline | gmtEOT)}, ew: true, pos: 11},
		{
			// st refuses the write after an early-warning write once, with
			// nothing written; the retry goes through.
			name:   "in the zone: refused once, then written",
			script: []stCall{writeErr(syscall.ENOSPC), wrote(), status(gmtOnline | gmtEOT)},
			ew:     true, pos: 11,
		},
		{
			name:   "physical end: refused twice",
			script: []stCall{writeErr(syscall.ENOSPC), writeErr(syscall.ENOSPC)},
			err:    ErrEndOfMedium, errno: syscall.ENOSPC, pos: 10,
		},
		{name: "write-protected", script: []stCall{writeErr(syscall.EACCES)}, err: ErrWriteProtected, errno: syscall.EACCES, pos: 10},
		{name: "medium error", script: []stCall{writeErr(syscall.EIO)}, err: ErrMediumError, errno: syscall.EIO, pos: 10},
		{name: "no cartridge", script: []stCall{writeErr(syscall.ENOMEDIUM)}, err: ErrNoMedium, unknown: true},
		{name: "cut short", script: []stCall{{call: "write", n: 3}}, err: io.ErrShortWrite, unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, 10, tc.script...)
			ew, err := d.WriteBlock(context.Background(), make([]byte, 8))
			dev.done()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.errno != nil && !errors.Is(err, tc.errno) {
				t.Errorf("err = %v does not keep the errno %v", err, tc.errno)
			}
			var de *DeviceError
			if err != nil && (!errors.As(err, &de) || de.Device != "/dev/nst0") {
				t.Errorf("err = %v does not name the device", err)
			}
			if ew != tc.ew {
				t.Errorf("earlyWarning = %v, want %v", ew, tc.ew)
			}
			if d.posKnown == tc.unknown || (!tc.unknown && d.pos != tc.pos) {
				t.Errorf("position %d (known %v), want %d (known %v)", d.pos, d.posKnown, tc.pos, !tc.unknown)
			}
		})
	}
}

// TestSTWriteSequenceInZone writes blocks across the early-warning point as
// st answers them, alternating refusals and writes, then the physical end.
func TestSTWriteSequenceInZone(t *testing.T) {
	d, dev := scriptedDrive(t, 0,
		wrote(), status(gmtOnline),
		wrote(), status(gmtOnline|gmtEOT),
		writeErr(syscall.ENOSPC), wrote(), status(gmtOnline|gmtEOT),
		writeErr(syscall.ENOSPC), wrote(), status(gmtOnline|gmtEOT),
		writeErr(syscall.ENOSPC), writeErr(syscall.ENOSPC),
	)
	var ews []bool
	for i := 0; i < 5; i++ {
		ew, err := d.WriteBlock(context.Background(), []byte("block"))
		if i == 4 {
			if !errors.Is(err, ErrEndOfMedium) {
				t.Fatalf("block %d: err = %v, want end of medium", i, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		ews = append(ews, ew)
	}
	dev.done()
	if want := []bool{false, true, true, true}; len(ews) != 4 || ews[0] != want[0] || ews[1] != want[1] || ews[2] != want[2] || ews[3] != want[3] {
		t.Errorf("early warnings %v, want %v", ews, want)
	}
	if d.pos != 4 {
		t.Errorf("position %d after four blocks, want 4", d.pos)
	}
}

func TestSTReadBlock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   int64 // -1: unknown
		script  []stCall
		n       int
		err     error
		errno   error
		pos     uint64
		unknown bool
	}{
		{name: "a block", start: 7, script: []stCall{readN(5)}, n: 5, pos: 8},
		{name: "a block at an unknown position", start: -1, script: []stCall{position(7), readN(5)}, n: 5, pos: 8},
		{name: "filemark", start: 7, script: []stCall{readN(0), status(gmtOnline | gmtEOF)}, err: ErrFilemark, pos: 8},
		{name: "end of data after a filemark", start: 8, script: []stCall{readN(0), status(gmtOnline | gmtEOD)}, err: ErrEOD, pos: 8},
		{name: "end of data read again", start: 8, script: []stCall{readErr(syscall.EIO), status(gmtOnline | gmtEOD)}, err: ErrEOD, pos: 8},
		{
			// No filemark before the end of data: st says EIO as for a bad
			// block; the end of data is where the read was.
			name: "end of data after a torn file", start: 7,
			script: []stCall{readErr(syscall.EIO), status(gmtOnline), op(mtEOM, 1), position(7)},
			err:    ErrEOD, pos: 7,
		},
		{
			name: "bad block", start: 7,
			script: []stCall{readErr(syscall.EIO), status(gmtOnline), op(mtEOM, 1), position(40), op(mtSEEK, 8)},
			err:    ErrMediumError, errno: syscall.EIO, pos: 8,
		},
		{name: "block larger than the buffer", start: 7, script: []stCall{readErr(syscall.ENOMEM)}, err: ErrBlockTooBig, errno: syscall.ENOMEM, pos: 8},
		{name: "empty read without a filemark", start: 7, script: []stCall{readN(0), status(gmtOnline)}, err: ErrMediumError, unknown: true},
		{name: "no cartridge", start: 7, script: []stCall{readErr(syscall.ENOMEDIUM)}, err: ErrNoMedium, unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, tc.start, tc.script...)
			n, err := d.ReadBlock(context.Background(), make([]byte, 16))
			dev.done()
			if n != tc.n || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ReadBlock = %d, %v; want %d, %v", n, err, tc.n, tc.err)
			}
			if tc.errno != nil && !errors.Is(err, tc.errno) {
				t.Errorf("err = %v does not keep the errno %v", err, tc.errno)
			}
			if d.posKnown == tc.unknown || (!tc.unknown && d.pos != tc.pos) {
				t.Errorf("position %d (known %v), want %d (known %v)", d.pos, d.posKnown, tc.pos, !tc.unknown)
			}
		})
	}
}

func TestSTSpaceFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		script []stCall
		err    error
		not    error // the error must not match
	}{
		{name: "forward", n: 3, script: []stCall{op(mtFSF, 3)}},
		{name: "backward", n: -2, script: []stCall{op(mtBSF, 2)}},
		{name: "none", n: 0},
		{name: "into the end of data", n: 3, script: []stCall{opErr(mtFSF, 3, syscall.EIO), status(gmtOnline | gmtEOD)}, err: ErrEOD},
		{name: "medium error", n: 3, script: []stCall{opErr(mtFSF, 3, syscall.EIO), status(gmtOnline)}, err: ErrMediumError},
		{name: "back into the beginning", n: -3, script: []stCall{opErr(mtBSF, 3, syscall.EIO), position(0)}, err: syscall.EIO, not: ErrMediumError},
		{name: "back: medium error", n: -3, script: []stCall{opErr(mtBSF, 3, syscall.EIO), position(4)}, err: ErrMediumError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, 5, tc.script...)
			err := d.SpaceFiles(context.Background(), tc.n)
			dev.done()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("SpaceFiles(%d) = %v, want %v", tc.n, err, tc.err)
			}
			if tc.not != nil && errors.Is(err, tc.not) {
				t.Errorf("SpaceFiles(%d) = %v, which is not %v", tc.n, err, tc.not)
			}
			if tc.n > 0 && d.posKnown {
				t.Error("position still taken as known after spacing")
			}
		})
	}
}

func TestSTWriteFilemarks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []stCall
		err    error
		pos    uint64
	}{
		{name: "immediate", script: []stCall{op(mtWEOFI, 2)}, pos: 12},
		{name: "kernel without MTWEOFI", script: []stCall{opErr(mtWEOFI, 2, syscall.ENOSYS), op(mtWEOF, 2)}, pos: 12},
		{name: "write-protected", script: []stCall{opErr(mtWEOFI, 2, syscall.EACCES)}, err: ErrWriteProtected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, 10, tc.script...)
			err := d.WriteFilemarks(context.Background(), 2)
			dev.done()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("WriteFilemarks = %v, want %v", err, tc.err)
			}
			if err == nil && d.pos != tc.pos {
				t.Errorf("position %d, want %d", d.pos, tc.pos)
			}
		})
	}
}

func TestSTFlush(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []stCall
		err    error
	}{
		{name: "flushed", script: []stCall{op(mtWEOF, 0)}},
		{name: "write-protected: nothing to flush", script: []stCall{opErr(mtWEOF, 0, syscall.EACCES)}},
		{name: "write error", script: []stCall{opErr(mtWEOF, 0, syscall.EIO)}, err: ErrMediumError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, 10, tc.script...)
			err := d.Flush(context.Background())
			dev.done()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Flush = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestSTLoad(t *testing.T) {
	fixed := stCall{call: "status", st: mtget{Gstat: bits(gmtOnline | gmtBOT), Dsreg: 512}}
	for _, tc := range []struct {
		name   string
		script []stCall
		err    error
	}{
		{
			// The drive threads the tape: not there, then not ready, then
			// loaded; st has reset the block size, which goes back to 0.
			name: "waits for the drive",
			script: []stCall{
				opErr(mtLOAD, 1, syscall.ENOMEDIUM),
				opErr(mtLOAD, 1, syscall.EIO), opErr(mtREW, 1, syscall.EIO),
				op(mtLOAD, 1), op(mtREW, 1), fixed, op(mtSETBLK, 0),
			},
		},
		{
			name:   "already variable",
			script: []stCall{op(mtLOAD, 1), op(mtREW, 1), status(gmtOnline | gmtBOT)},
		},
		{
			// After a bus reset st takes nothing but a rewind; one that
			// works finds the cartridge loaded.
			name:   "after a reset",
			script: []stCall{opErr(mtLOAD, 1, syscall.EIO), op(mtREW, 1), op(mtREW, 1), status(gmtOnline | gmtBOT)},
		},
		{name: "refused", script: []stCall{opErr(mtLOAD, 1, syscall.EACCES)}, err: syscall.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, -1, tc.script...)
			d.variable = false
			err := d.Load(context.Background())
			dev.done()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Load = %v, want %v", err, tc.err)
			}
			if err == nil && (!d.posKnown || d.pos != 0 || !d.variable) {
				t.Errorf("after load: position %d known %v, variable %v; want 0, true, true", d.pos, d.posKnown, d.variable)
			}
		})
	}
}

func TestSTLoadGivesUp(t *testing.T) {
	d, dev := scriptedDrive(t, -1, opErr(mtLOAD, 1, syscall.EIO), opErr(mtREW, 1, syscall.EIO))
	d.loadTimeout = 0
	err := d.Load(context.Background())
	dev.done()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Load = %v, want the drive's EIO once the wait is over", err)
	}
}

func TestSTLocate(t *testing.T) {
	d, dev := scriptedDrive(t, -1, op(mtSEEK, 1234))
	if err := d.Locate(context.Background(), 1234); err != nil {
		t.Fatal(err)
	}
	dev.done()
	if !d.posKnown || d.pos != 1234 {
		t.Errorf("position %d known %v after locate 1234", d.pos, d.posKnown)
	}
	if err := d.Locate(context.Background(), 1<<31); err == nil {
		t.Error("locating beyond a C int was not refused")
	}
}

// TestSTSettle: st would write a filemark of its own when the tape moves
// after blocks were written; the drive flushes first, which ends the
// writing without one, so that a file left unfinished stays so.
func TestSTSettle(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		move   func(d *stDrive) error
		script []stCall
	}{
		{name: "rewind", move: func(d *stDrive) error { return d.Rewind(ctx) }, script: []stCall{op(mtWEOF, 0), op(mtREW, 1)}},
		{name: "locate", move: func(d *stDrive) error { return d.Locate(ctx, 3) }, script: []stCall{op(mtWEOF, 0), op(mtSEEK, 3)}},
		{name: "space back", move: func(d *stDrive) error { return d.SpaceFiles(ctx, -1) }, script: []stCall{op(mtWEOF, 0), op(mtBSF, 1)}},
		{name: "unload", move: func(d *stDrive) error { return d.Unload(ctx) }, script: []stCall{op(mtWEOF, 0), op(mtOFFL, 1)}},
		{name: "close", move: func(d *stDrive) error { return d.Close() }, script: []stCall{op(mtWEOF, 0)}},
		{
			// What the drive held back for buffered blocks comes out
			// before the tape moves, and it does not move.
			name: "a held-back write error", move: func(d *stDrive) error { return d.Rewind(ctx) },
			script: []stCall{opErr(mtWEOF, 0, syscall.EIO)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev := scriptedDrive(t, 0, append([]stCall{wrote(), status(gmtOnline)}, tc.script...)...)
			if _, err := d.WriteBlock(ctx, []byte("unfinished")); err != nil {
				t.Fatal(err)
			}
			err := tc.move(d)
			dev.done()
			if wantErr := tc.script[0].err != nil; (err != nil) != wantErr || wantErr && !errors.Is(err, ErrMediumError) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// Nothing written since the last filemark: no flush.
	d, dev := scriptedDrive(t, 0, wrote(), status(gmtOnline), op(mtWEOFI, 1), op(mtREW, 1))
	if _, err := d.WriteBlock(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFilemarks(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Rewind(ctx); err != nil {
		t.Fatal(err)
	}
	dev.done()
}

// TestSTStatusAfterFlush: st counts block 0 after writing zero filemarks,
// so its file and block numbers are reported unknown until the tape moves.
func TestSTStatusAfterFlush(t *testing.T) {
	ctx := context.Background()
	stAfter := stCall{call: "status", st: mtget{Gstat: bits(gmtOnline | gmtEOF), Fileno: 1, Blkno: 0}}
	d, dev := scriptedDrive(t, 3, wrote(), status(gmtOnline), op(mtWEOF, 0), stAfter, position(4),
		op(mtREW, 1), stCall{call: "status", st: mtget{Gstat: bits(gmtOnline | gmtBOT)}}, position(0))
	if _, err := d.WriteBlock(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := d.Status(ctx)
	if err != nil || st.File != -1 || st.Block != -1 || st.Position != 4 {
		t.Fatalf("status after a flush: %+v, %v; want file and block unknown at 4", st, err)
	}
	if err := d.Rewind(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = d.Status(ctx); err != nil || st.File != 0 || st.Block != 0 || !st.BOT {
		t.Fatalf("status after rewinding: %+v, %v", st, err)
	}
	dev.done()
}

func TestSTLocateBeyondEOD(t *testing.T) {
	d, dev := scriptedDrive(t, 0, opErr(mtSEEK, 20, syscall.EIO), op(mtEOM, 1), position(10))
	err := d.Locate(context.Background(), 20)
	dev.done()
	if err == nil || !strings.Contains(err.Error(), "beyond the end of data at 10") || errors.Is(err, ErrMediumError) {
		t.Fatalf("Locate(20) with the end of data at 10 = %v", err)
	}
	d, dev = scriptedDrive(t, 0, opErr(mtSEEK, 5, syscall.EIO), op(mtEOM, 1), position(10))
	if err := d.Locate(context.Background(), 5); !errors.Is(err, ErrMediumError) {
		t.Fatalf("Locate(5) failing before the end of data = %v, want a medium error", err)
	}
	dev.done()
}

func TestSTCancelled(t *testing.T) {
	d, dev := scriptedDrive(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.WriteBlock(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteBlock on a cancelled context = %v", err)
	}
	if _, err := d.ReadBlock(ctx, make([]byte, 4)); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadBlock on a cancelled context = %v", err)
	}
	dev.done()
}

func TestZeroReadMeaning(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   mtget
		want error
	}{
		// st reports a filemark by block 0 of a file other than the first.
		{name: "filemark", st: mtget{Gstat: bits(gmtOnline | gmtEOF), Fileno: 3}, want: ErrFilemark},
		{name: "filemark, file unknown after a locate", st: mtget{Gstat: bits(gmtOnline | gmtEOF), Fileno: -1}, want: ErrFilemark},
		{name: "end of data", st: mtget{Gstat: bits(gmtOnline | gmtEOD), Fileno: 4}, want: ErrEOD},
		{name: "no filemark", st: mtget{Gstat: bits(gmtOnline), Fileno: 3, Blkno: 12}, want: ErrMediumError},
	} {
		if got := zeroReadMeaning(tc.st); !errors.Is(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   mtget
		pos  uint64
		want Status
	}{
		{
			name: "loaded at the beginning",
			st:   mtget{Gstat: bits(gmtOnline | gmtBOT)},
			want: Status{Loaded: true, BOT: true},
		},
		{
			name: "write-protected in the early-warning zone",
			st:   mtget{Gstat: bits(gmtOnline | gmtWrProt | gmtEOT), Fileno: 5, Blkno: 77},
			pos:  1234,
			want: Status{Loaded: true, WriteProtected: true, EarlyWarning: true, Position: 1234, File: 5, Block: 77},
		},
		{
			name: "at the end of data, position unknown to st",
			st:   mtget{Gstat: bits(gmtOnline | gmtEOD), Fileno: -1, Blkno: -1},
			pos:  99,
			want: Status{Loaded: true, EOD: true, Position: 99, File: -1, Block: -1},
		},
		{name: "empty drive", st: mtget{Gstat: 0x00040000}, want: Status{File: -1, Block: -1}},
	} {
		if got := statusOf(tc.st, tc.pos); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestTranslate(t *testing.T) {
	for _, tc := range []struct {
		op    stOp
		errno syscall.Errno
		want  error // the package error it must match, nil for none
		hint  bool  // says what to do
	}{
		{stWrite, syscall.ENOSPC, ErrEndOfMedium, false},
		{stWrite, syscall.EACCES, ErrWriteProtected, true},
		{stWrite, syscall.EROFS, ErrWriteProtected, true},
		{stWrite, syscall.EIO, ErrMediumError, true},
		{stWrite, syscall.EINVAL, nil, true},
		{stRead, syscall.ENOMEM, ErrBlockTooBig, false},
		{stRead, syscall.EIO, ErrMediumError, true},
		{stRead, syscall.ENOMEDIUM, ErrNoMedium, true},
		{stMove, syscall.ENOMEDIUM, ErrNoMedium, true},
		{stMove, syscall.EIO, ErrMediumError, true},
		{stOpen, syscall.EACCES, nil, true},
		{stOpen, syscall.EBUSY, nil, true},
		{stOpen, syscall.ENOENT, nil, true},
		{stOpen, syscall.ENOTTY, nil, true},
		{stLoad, syscall.EIO, nil, true},
		{stRead, syscall.EINVAL, nil, true},
		{stRead, syscall.EACCES, nil, false}, // st never says this on read: passed through
	} {
		got := translate(tc.op, tc.errno)
		if !errors.Is(got, tc.errno) {
			t.Errorf("op %d %v: %v lost the errno", tc.op, tc.errno, got)
		}
		for _, s := range []error{ErrEndOfMedium, ErrWriteProtected, ErrMediumError, ErrBlockTooBig, ErrNoMedium} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("op %d %v: %v; matches %v = %v", tc.op, tc.errno, got, s, errors.Is(got, s))
			}
		}
		if hasHint := strings.Contains(got.Error(), "; "); hasHint != tc.hint {
			t.Errorf("op %d %v: %q: says what to do = %v, want %v", tc.op, tc.errno, got, hasHint, tc.hint)
		}
	}
}

func TestSTOptionProblem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  uint64
		words []string // the problem names these; none: no problem
	}{
		{name: "as recall sets them", opts: mtSTSCSI2Logical | 0x1 | 0x4 | 0x100},
		{name: "st's defaults", opts: mtSTAsyncWrites | 0x1 | 0x4 | 0x100, words: []string{"scsi2logical is off", "async-writes is on", "stsetoptions scsi2logical", "stclearoptions async-writes", "root"}},
		{name: "immediate filemarks", opts: mtSTSCSI2Logical | mtSTNowaitEOF, words: []string{"without waiting", "MT_ST_NOWAIT_EOF"}},
		{name: "immediate positioning", opts: mtSTSCSI2Logical | mtSTNowait, words: []string{"no-wait is on", "stclearoptions no-wait"}},
	} {
		got := stOptionProblem(tc.opts, "/dev/nst0")
		if (got == "") != (len(tc.words) == 0) {
			t.Errorf("%s: %q", tc.name, got)
		}
		for _, w := range tc.words {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not say %q", tc.name, got, w)
			}
		}
	}
}
