// Package tapetest is the conformance suite every tapefs.Drive passes:
// the emulator runs it in one line, a real drive when one is named by
// RECALL_TEST_TAPE. It checks what the on-tape format relies on: exact
// block boundaries, filemarks, end of data, positions, truncation by a
// write in the middle, early warning then end of medium, write-protect.
//
// The suite writes from the beginning of tape and so destroys what a real
// cartridge held.
package tapetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
	"github.com/recall-backup/recall/tapefs"
)

// DeviceEnv names the variable giving a real drive to test (/dev/nstN).
const DeviceEnv = "RECALL_TEST_TAPE"

// Option adds a capability of the drive under test that the suite can use.
type Option func(*config)

type config struct {
	capacity     func(t *testing.T, d tapefs.Drive, capacity, earlyWarning int64)
	writeProtect func(t *testing.T, d tapefs.Drive, on bool)
}

// WithCapacity lets the suite give the loaded cartridge a small capacity
// and early-warning zone (payload bytes), so it can fill it: the early
// warning and end-of-medium cases run only with it.
func WithCapacity(set func(t *testing.T, d tapefs.Drive, capacity, earlyWarning int64)) Option {
	return func(c *config) { c.capacity = set }
}

// WithWriteProtect lets the suite slide the loaded cartridge's
// write-protect tab: the write-protect case runs only with it.
func WithWriteProtect(set func(t *testing.T, d tapefs.Drive, on bool)) Option {
	return func(c *config) { c.writeProtect = set }
}

// Device returns the real drive named by RECALL_TEST_TAPE, or skips the
// test through testskip (which fails it where skips are disallowed).
func Device(t *testing.T) string {
	t.Helper()
	dev := os.Getenv(DeviceEnv)
	if dev == "" {
		testskip.Skip(t, "no real tape drive: set %s=/dev/nstN (the cartridge in it is overwritten)", DeviceEnv)
	}
	return dev
}

// Run runs the suite. open returns the drive under test with a cartridge
// loaded, one whose contents the test may destroy; it is called once per
// case, and the suite closes the drive at the end of the case.
func Run(t *testing.T, open func(t *testing.T) tapefs.Drive, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cases := []struct {
		name string
		run  func(t *testing.T, d tapefs.Drive)
		need bool // the capability the case needs is there
	}{
		{"BlocksAndFilemarks", blocksAndFilemarks, true},
		{"Locate", locate, true},
		{"BlockTooBig", blockTooBig, true},
		{"SpaceFiles", spaceFiles, true},
		{"SeekEODAppend", seekEODAppend, true},
		{"WriteInTheMiddleTruncates", writeInTheMiddle, true},
		{"FlushAndStatus", flushAndStatus, true},
		{"EarlyWarningThenEndOfMedium", func(t *testing.T, d tapefs.Drive) { earlyWarning(t, d, cfg.capacity) }, cfg.capacity != nil},
		{"EarlyWarningFromTheFirstBlock", func(t *testing.T, d tapefs.Drive) { earlyWarningAtOnce(t, d, cfg.capacity) }, cfg.capacity != nil},
		{"WriteProtected", func(t *testing.T, d tapefs.Drive) { writeProtected(t, d, cfg.writeProtect) }, cfg.writeProtect != nil},
	}
	for _, c := range cases {
		if !c.need {
			// Not a skip: the drive cannot do what the case needs (a real
			// cartridge's capacity and tab are not the test's to set).
			t.Logf("%s: not run: the drive under test gives no hook for it", c.name)
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			d := open(t)
			t.Cleanup(func() {
				if err := d.Close(); err != nil {
					t.Errorf("close %s: %v", d.Name(), err)
				}
			})
			must(t, d.Rewind(context.Background()), "rewind")
			c.run(t, d)
		})
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// block is the content of test block i of size n: distinct per block, so
// a read of the wrong block shows.
func block(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j>>8)
	}
	return b
}

// item is one object of a layout: a block of the given size, or a
// filemark when size is 0.
type item struct{ id, size int }

func fm() item { return item{} }

func write(t *testing.T, d tapefs.Drive, items []item) {
	t.Helper()
	ctx := context.Background()
	for _, it := range items {
		if it.size == 0 {
			must(t, d.WriteFilemarks(ctx, 1), "write filemark")
			continue
		}
		if _, err := d.WriteBlock(ctx, block(it.id, it.size)); err != nil {
			t.Fatalf("write block %d (%d bytes): %v", it.id, it.size, err)
		}
	}
}

// expect reads items from the current position and checks each.
func expect(t *testing.T, d tapefs.Drive, items []item) {
	t.Helper()
	buf := make([]byte, 4<<20)
	for k, it := range items {
		n, err := d.ReadBlock(context.Background(), buf)
		if it.size == 0 {
			if !errors.Is(err, tapefs.ErrFilemark) {
				t.Fatalf("object %d: want a filemark, got %d bytes, err %v", k, n, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("object %d: want block %d (%d bytes), got %v", k, it.id, it.size, err)
		}
		if !bytes.Equal(buf[:n], block(it.id, it.size)) {
			t.Fatalf("object %d: want block %d (%d bytes), got %d other bytes", k, it.id, it.size, n)
		}
	}
}

func expectEOD(t *testing.T, d tapefs.Drive) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for range 2 {
		if n, err := d.ReadBlock(context.Background(), buf); !errors.Is(err, tapefs.ErrEOD) {
			t.Fatalf("want end of data, got %d bytes, err %v", n, err)
		}
	}
}

func position(t *testing.T, d tapefs.Drive) uint64 {
	t.Helper()
	p, err := d.Position(context.Background())
	must(t, err, "read position")
	return p
}

func wantPos(t *testing.T, d tapefs.Drive, want uint64, after string) {
	t.Helper()
	if p := position(t, d); p != want {
		t.Fatalf("after %s: position %d, want %d", after, p, want)
	}
}

// sizes of several kinds: tiny, odd, the format's block and just under it
// (not over: a real drive's st buffer may stop at the format's block).
var sizes = []int{1, 100, 4097, 64 << 10, 1 << 20, 1<<20 - 3, 3}

func blocksAndFilemarks(t *testing.T, d tapefs.Drive) {
	var items []item
	for i, n := range sizes {
		items = append(items, item{i + 1, n})
		if i == 2 {
			items = append(items, fm())
		}
	}
	items = append(items, fm(), fm())
	write(t, d, items)
	wantPos(t, d, uint64(len(items)), "writing")
	must(t, d.Rewind(context.Background()), "rewind")
	wantPos(t, d, 0, "rewind")
	expect(t, d, items)
	expectEOD(t, d)
	wantPos(t, d, uint64(len(items)), "reading to the end of data")
}

// layout is four files, the last without its filemark.
var layout = []item{
	{1, 10}, {2, 20}, fm(), // file 0: objects 0-2
	{3, 30}, {4, 40}, {5, 50}, fm(), // file 1: 3-6
	{6, 60}, fm(), // file 2: 7-8
	{7, 70}, // file 3: 9, then end of data at 10
}

func locate(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	write(t, d, layout)
	// Every object, in an order that goes back and forth.
	for _, pos := range []int{9, 0, 2, 5, 3, 8, 7, 1, 6, 4} {
		must(t, d.Locate(ctx, uint64(pos)), fmt.Sprintf("locate %d", pos))
		wantPos(t, d, uint64(pos), fmt.Sprintf("locate %d", pos))
		expect(t, d, layout[pos:pos+1])
		wantPos(t, d, uint64(pos+1), fmt.Sprintf("reading object %d", pos))
	}
	must(t, d.Locate(ctx, uint64(len(layout))), "locate the end of data")
	expectEOD(t, d)
	if err := d.Locate(ctx, uint64(len(layout))+5); err == nil {
		t.Fatal("locate past the end of data succeeded")
	}
}

func blockTooBig(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	write(t, d, []item{{1, 1000}, {2, 10}})
	must(t, d.Rewind(ctx), "rewind")
	if _, err := d.ReadBlock(ctx, make([]byte, 100)); !errors.Is(err, tapefs.ErrBlockTooBig) {
		t.Fatalf("read 1000 bytes into 100: want ErrBlockTooBig, got %v", err)
	}
	wantPos(t, d, 1, "a block too big")
	expect(t, d, []item{{2, 10}})
	// A buffer of exactly the block's size is not too small.
	must(t, d.Rewind(ctx), "rewind")
	buf := make([]byte, 1000)
	n, err := d.ReadBlock(ctx, buf)
	if err != nil || n != 1000 || !bytes.Equal(buf, block(1, 1000)) {
		t.Fatalf("read 1000 bytes into 1000: %d bytes, %v", n, err)
	}
}

func spaceFiles(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	write(t, d, layout)
	steps := []struct {
		from  uint64
		n     int
		to    uint64
		isEOD bool // forward into the end of data
		isBOT bool // backward past the beginning
	}{
		{0, 1, 3, false, false},     // to file 1
		{0, 2, 7, false, false},     // to file 2
		{4, 1, 7, false, false},     // from inside file 1 to file 2
		{3, 3, 10, true, false},     // past the last mark: end of data
		{9, 1, 10, true, false},     // from the unterminated file
		{9, -1, 8, false, false},    // before the mark that ends file 2
		{7, -1, 6, false, false},    // just past a mark: back before it
		{10, -2, 6, false, false},   // from the end of data
		{5, -1, 2, false, false},    // from inside file 1, before the mark ending file 0
		{5, -2, 0, false, true},     // one mark too many
		{0, 0, 0, false, false},     // nothing
		{10, -3, 2, false, false},   // all marks from the end
		{2, 1, 3, false, false},     // at a mark: over it
		{8, 1, 9, false, false},     // at the last mark
		{6, -1, 2, false, false},    // at a mark: the previous one
		{3, 1000, 10, true, false},  // far too many
		{10, -1000, 0, false, true}, // far too many back
	}
	for _, s := range steps {
		must(t, d.Locate(ctx, s.from), fmt.Sprintf("locate %d", s.from))
		err := d.SpaceFiles(ctx, s.n)
		what := fmt.Sprintf("space %d files from %d", s.n, s.from)
		switch {
		case s.isEOD:
			if !errors.Is(err, tapefs.ErrEOD) {
				t.Fatalf("%s: want ErrEOD, got %v", what, err)
			}
		case s.isBOT:
			if err == nil {
				t.Fatalf("%s: want an error at the beginning of tape", what)
			}
		default:
			must(t, err, what)
		}
		wantPos(t, d, s.to, what)
	}
	// The idiom for "the start of the current file": back over one mark,
	// forward over it.
	must(t, d.Locate(ctx, 9), "locate 9")
	must(t, d.SpaceFiles(ctx, -1), "space back")
	must(t, d.SpaceFiles(ctx, 1), "space forward")
	expect(t, d, layout[9:])
}

func seekEODAppend(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	first := []item{{1, 100}, fm(), {2, 200}}
	write(t, d, first)
	must(t, d.Rewind(ctx), "rewind")
	must(t, d.SeekEOD(ctx), "seek end of data")
	wantPos(t, d, 3, "seek end of data")
	more := []item{{3, 300}, fm()}
	write(t, d, more)
	wantPos(t, d, 5, "appending")
	must(t, d.Rewind(ctx), "rewind")
	expect(t, d, append(first, more...))
	expectEOD(t, d)
}

func writeInTheMiddle(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	write(t, d, []item{{1, 100}, {2, 100}, {3, 100}, fm(), {4, 100}, fm()})
	must(t, d.Locate(ctx, 2), "locate 2")
	write(t, d, []item{{9, 55}})
	wantPos(t, d, 3, "writing at 2")
	must(t, d.SeekEOD(ctx), "seek end of data")
	wantPos(t, d, 3, "seek end of data after writing at 2")
	must(t, d.Rewind(ctx), "rewind")
	expect(t, d, []item{{1, 100}, {2, 100}, {9, 55}})
	expectEOD(t, d)

	// A filemark written in the middle truncates too.
	must(t, d.Locate(ctx, 1), "locate 1")
	must(t, d.WriteFilemarks(ctx, 1), "write a filemark at 1")
	must(t, d.SeekEOD(ctx), "seek end of data")
	wantPos(t, d, 2, "seek end of data after a filemark at 1")
	must(t, d.Rewind(ctx), "rewind")
	expect(t, d, []item{{1, 100}, fm()})
	expectEOD(t, d)
}

func flushAndStatus(t *testing.T, d tapefs.Drive) {
	ctx := context.Background()
	st, err := d.Status(ctx)
	must(t, err, "status")
	if !st.Loaded || !st.BOT || st.Position != 0 || st.WriteProtected {
		t.Fatalf("status at the beginning of tape: %+v", st)
	}
	if st.File != 0 && st.File != -1 || st.Block != 0 && st.Block != -1 {
		t.Fatalf("status at the beginning of tape: file %d block %d, want 0 (or -1, unknown)", st.File, st.Block)
	}
	write(t, d, []item{{1, 100}, {2, 100}, fm(), {3, 100}})
	must(t, d.Flush(ctx), "flush")
	st, err = d.Status(ctx)
	must(t, err, "status")
	if st.BOT || st.Position != 4 {
		t.Fatalf("status after 4 objects: %+v", st)
	}
	if st.File != -1 && (st.File != 1 || st.Block != 1) {
		t.Fatalf("status after 4 objects: file %d block %d, want 1 and 1 (or -1, unknown)", st.File, st.Block)
	}
	if st.EarlyWarning {
		t.Fatalf("status after 300 bytes: early warning")
	}
	must(t, d.Rewind(ctx), "rewind")
	must(t, d.SeekEOD(ctx), "seek end of data")
	st, err = d.Status(ctx)
	must(t, err, "status")
	if !st.EOD || st.Position != 4 {
		t.Fatalf("status at the end of data: %+v", st)
	}
	// Load of a loaded drive positions at the beginning of tape.
	must(t, d.Load(ctx), "load")
	wantPos(t, d, 0, "load")
	expect(t, d, []item{{1, 100}})
}

func earlyWarning(t *testing.T, d tapefs.Drive, set func(*testing.T, tapefs.Drive, int64, int64)) {
	ctx := context.Background()
	set(t, d, 10000, 3000)
	for i := 1; i <= 10; i++ {
		ew, err := d.WriteBlock(ctx, block(i, 1000))
		must(t, err, fmt.Sprintf("write block %d", i))
		// The zone starts after 7000 payload bytes.
		if want := i > 7; ew != want {
			t.Fatalf("block %d ending at %d bytes: early warning %v, want %v", i, i*1000, ew, want)
		}
	}
	st, err := d.Status(ctx)
	must(t, err, "status")
	if !st.EarlyWarning {
		t.Fatalf("status in the zone: %+v", st)
	}
	if _, err := d.WriteBlock(ctx, block(11, 1)); !errors.Is(err, tapefs.ErrEndOfMedium) {
		t.Fatalf("a block past the capacity: want ErrEndOfMedium, got %v", err)
	}
	wantPos(t, d, 10, "a refused block")
	// A filemark still fits.
	must(t, d.WriteFilemarks(ctx, 1), "write a filemark at the end of medium")
	must(t, d.Rewind(ctx), "rewind")
	var want []item
	for i := 1; i <= 10; i++ {
		want = append(want, item{i, 1000})
	}
	expect(t, d, append(want, fm()))
	expectEOD(t, d)
	// Writing in the middle frees what followed.
	must(t, d.Locate(ctx, 5), "locate 5")
	if _, err := d.WriteBlock(ctx, block(20, 3000)); err != nil {
		t.Fatalf("write over the second half: %v", err)
	}
}

func earlyWarningAtOnce(t *testing.T, d tapefs.Drive, set func(*testing.T, tapefs.Drive, int64, int64)) {
	set(t, d, 5000, 5000)
	ew, err := d.WriteBlock(context.Background(), block(1, 100))
	must(t, err, "write the first block")
	if !ew {
		t.Fatal("a zone the size of the cartridge: the first block gave no early warning")
	}
}

func writeProtected(t *testing.T, d tapefs.Drive, set func(*testing.T, tapefs.Drive, bool)) {
	ctx := context.Background()
	write(t, d, []item{{1, 100}, fm()})
	must(t, d.Rewind(ctx), "rewind")
	set(t, d, true)
	if _, err := d.WriteBlock(ctx, block(2, 100)); !errors.Is(err, tapefs.ErrWriteProtected) {
		t.Fatalf("write a block: want ErrWriteProtected, got %v", err)
	}
	if err := d.WriteFilemarks(ctx, 1); !errors.Is(err, tapefs.ErrWriteProtected) {
		t.Fatalf("write a filemark: want ErrWriteProtected, got %v", err)
	}
	st, err := d.Status(ctx)
	must(t, err, "status")
	if !st.WriteProtected {
		t.Fatalf("status of a protected cartridge: %+v", st)
	}
	// Reading is fine, and nothing was lost.
	expect(t, d, []item{{1, 100}, fm()})
	expectEOD(t, d)
	set(t, d, false)
	must(t, d.Rewind(ctx), "rewind")
	write(t, d, []item{{3, 100}})
}
