package tapefs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/tapefs"
)

var ctx = context.Background()

// pattern is the content of block i of n bytes in these tests.
func pattern(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i + j*13 + j>>9)
	}
	return b
}

// obj is what a read at one position gives: a block of that content, a
// filemark, or an error.
type obj struct {
	data []byte
	err  error
}

func blk(i, n int) obj { return obj{data: pattern(i, n)} }

var (
	mark = obj{err: tapefs.ErrFilemark}
	bad  = obj{err: tapefs.ErrMediumError}
	eod  = obj{err: tapefs.ErrEOD}
)

func writeObjs(t *testing.T, d tapefs.Drive, objs ...obj) {
	t.Helper()
	for k, o := range objs {
		var err error
		if o.err == tapefs.ErrFilemark {
			err = d.WriteFilemarks(ctx, 1)
		} else {
			_, err = d.WriteBlock(ctx, o.data)
		}
		if err != nil {
			t.Fatalf("write object %d: %v", k, err)
		}
	}
}

// readObjs reads from the current position and checks each result.
func readObjs(t *testing.T, d tapefs.Drive, want ...obj) {
	t.Helper()
	buf := make([]byte, 2<<20)
	for k, w := range want {
		n, err := d.ReadBlock(ctx, buf)
		if w.err != nil {
			if !errors.Is(err, w.err) {
				t.Fatalf("object %d: want %v, got %d bytes, err %v", k, w.err, n, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], w.data) {
			t.Fatalf("object %d: want %d bytes of data, got %d bytes, err %v", k, len(w.data), n, err)
		}
	}
}

func tapePath(lib *tapefs.EmulatedLibrary, barcode string) string {
	return filepath.Join(lib.Dir(), "cartridges", barcode, "tape")
}

// Everything written survives closing the library and opening it again:
// the cartridge stays in its drive, with its data, marks and end of data.
func TestEmulatorRestart(t *testing.T) {
	dir := t.TempDir()
	lib, err := tapefs.CreateEmulatedLibrary(dir, tapefs.EmulatorOptions{Slots: 3, Drives: 2, Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Load(ctx, 2, 1); err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(1)
	if err != nil {
		t.Fatal(err)
	}
	objs := []obj{blk(1, 1000), blk(2, 1<<20), mark, blk(3, 7), mark}
	writeObjs(t, d, objs...)
	if err := lib.Close(); err != nil {
		t.Fatal(err)
	}

	lib, err = tapefs.OpenEmulatedLibrary(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Drives[1]; !got.Full || got.Barcode != "RC0002L9" || got.From != 2 {
		t.Fatalf("drive 1 after a restart: %+v", got)
	}
	if inv.Slots[1].Full {
		t.Fatalf("slot 2 after a restart: %+v", inv.Slots[1])
	}
	d, err = lib.Drive(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SeekEOD(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := d.Position(ctx); err != nil || p != 5 {
		t.Fatalf("end of data after a restart: %d, %v", p, err)
	}
	writeObjs(t, d, blk(4, 10))
	if err := d.Rewind(ctx); err != nil {
		t.Fatal(err)
	}
	readObjs(t, d, append(objs, blk(4, 10), eod)...)
}

// Each fault the tests of the tape tier need, through the operator calls.
func TestEmulatorFaults(t *testing.T) {
	t.Run("BadBlock", func(t *testing.T) {
		lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
		bc := inDrive(t, lib)
		writeObjs(t, d, blk(1, 10), blk(2, 20), blk(3, 30), mark)
		if err := lib.InjectBadBlock(bc, 1); err != nil {
			t.Fatal(err)
		}
		if err := d.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		// The read moves past the bad block: the rest is readable.
		readObjs(t, d, blk(1, 10), bad, blk(3, 30), mark, eod)
		if err := lib.InjectBadBlock(bc, 9); err == nil {
			t.Fatal("a bad block past the end of data was accepted")
		}
		// Reopened, the fault is still there (it is on the cartridge).
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := lib.Drive(0)
		if err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, blk(1, 10), bad)
		// A write over it heals it.
		if err := d.Locate(ctx, 1); err != nil {
			t.Fatal(err)
		}
		writeObjs(t, d, blk(5, 50))
		if err := d.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, blk(1, 10), blk(5, 50), eod)
	})
	t.Run("TornLastBlock", func(t *testing.T) {
		lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
		bc := inDrive(t, lib)
		writeObjs(t, d, blk(1, 10), mark, blk(2, 1000), blk(3, 1000), mark)
		if err := lib.TearLastBlock(bc); err != nil {
			t.Fatal(err)
		}
		if err := d.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, blk(1, 10), mark, blk(2, 1000), bad, eod)
		// The drive appends after the torn block, as after a power cut.
		if err := d.SeekEOD(ctx); err != nil {
			t.Fatal(err)
		}
		writeObjs(t, d, blk(4, 40))
		if err := d.Locate(ctx, 3); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, bad, blk(4, 40), eod)
		// Torn while no drive holds it: the same.
		if err := lib.Unload(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := lib.TearLastBlock(bc); err != nil {
			t.Fatal(err)
		}
		if err := lib.Load(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, blk(1, 10), mark, blk(2, 1000), bad, bad, eod)
	})
	t.Run("TearBlank", func(t *testing.T) {
		lib, _ := loadedDrive(t, tapefs.EmulatorOptions{})
		if err := lib.TearLastBlock(inDrive(t, lib)); err == nil {
			t.Fatal("tearing a blank cartridge succeeded")
		}
	})
	t.Run("WriteProtectedInSlot", func(t *testing.T) {
		lib, d := loadedDrive(t, tapefs.EmulatorOptions{Slots: 2})
		// The tab is slid while the cartridge is in its slot; loaded, it refuses writes.
		if err := lib.SetWriteProtected("RC0002L9", true); err != nil {
			t.Fatal(err)
		}
		if err := lib.Unload(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := lib.Load(ctx, 2, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := d.WriteBlock(ctx, pattern(1, 10)); !errors.Is(err, tapefs.ErrWriteProtected) {
			t.Fatalf("write to a protected cartridge: %v", err)
		}
	})
	t.Run("BadBlockUnknownCartridge", func(t *testing.T) {
		lib, _ := loadedDrive(t, tapefs.EmulatorOptions{})
		if err := lib.InjectBadBlock("NOPE01", 0); !errors.Is(err, tapefs.ErrNoCartridge) {
			t.Fatalf("a fault on an unknown cartridge: %v", err)
		}
	})
}

// A process that dies while writing leaves a cartridge that opens with
// at worst its last block torn, whatever byte the file ends at.
func TestEmulatorCutShort(t *testing.T) {
	lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
	bc := inDrive(t, lib)
	writeObjs(t, d, blk(1, 100), mark, blk(2, 50))
	if err := lib.Close(); err != nil {
		t.Fatal(err)
	}
	path := tapePath(lib, bc)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastRecord := len(whole) - 8 - 50
	for cut := lastRecord; cut < len(whole); cut++ {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			if err := os.WriteFile(path, whole[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			want := []obj{blk(1, 100), mark, eod}
			if cut >= lastRecord+8 {
				want = []obj{blk(1, 100), mark, bad, eod}
			}
			// Twice: the repair made by the first open holds for the second.
			for range 2 {
				lib, err := tapefs.OpenEmulatedLibrary(lib.Dir())
				if err != nil {
					t.Fatal(err)
				}
				d, err := lib.Drive(0)
				if err != nil {
					t.Fatal(err)
				}
				readObjs(t, d, want...)
				if err := lib.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// A file that is not a cartridge does not open as one.
	if err := os.WriteFile(path, append(slicesClone(whole[:16]), 9, 9, 9, 9, 0, 0, 0, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	lib, err = tapefs.OpenEmulatedLibrary(lib.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	d, err = lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Rewind(ctx); err == nil {
		t.Fatal("a damaged cartridge file opened")
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// crashHelperEnv names the library a helper process writes to until it
// is killed; the helper is this test binary.
const crashHelperEnv = "RECALL_TEST_TAPE_WRITER"

// TestEmulatorWriterHelper is not a test: run by TestEmulatorKilledWriter
// in a child process, it writes blocks and filemarks to drive 0 until
// killed, saying "ready" after the first 64 objects.
func TestEmulatorWriterHelper(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		return
	}
	lib, err := tapefs.OpenEmulatedLibrary(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i%8 == 7 {
			err = d.WriteFilemarks(ctx, 1)
		} else {
			_, err = d.WriteBlock(ctx, pattern(i, 64<<10+i%1000))
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 63 {
			os.Stdout.WriteString("ready\n")
		}
	}
}

// kill -9 of a writing process at an arbitrary moment: the cartridge
// opens, and everything but at most its last block reads back exactly.
func TestEmulatorKilledWriter(t *testing.T) {
	for round := range 3 {
		lib, _ := loadedDrive(t, tapefs.EmulatorOptions{})
		if err := lib.Close(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestEmulatorWriterHelper$")
		cmd.Env = append(os.Environ(), crashHelperEnv+"="+lib.Dir())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if line != "ready\n" {
			t.Fatalf("round %d: helper said %q, %v", round, line, err)
		}

		lib, err = tapefs.OpenEmulatedLibrary(lib.Dir())
		if err != nil {
			t.Fatal(err)
		}
		d, err := lib.Drive(0)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		i := 0
		for ; ; i++ {
			n, err := d.ReadBlock(ctx, buf)
			if errors.Is(err, tapefs.ErrEOD) {
				break
			}
			if errors.Is(err, tapefs.ErrMediumError) {
				// Only the last object may be torn.
				if _, err := d.ReadBlock(ctx, buf); !errors.Is(err, tapefs.ErrEOD) {
					t.Fatalf("round %d: a torn block at %d is not the last: %v", round, i, err)
				}
				break
			}
			if i%8 == 7 {
				if !errors.Is(err, tapefs.ErrFilemark) {
					t.Fatalf("round %d: object %d: want a filemark, got %v", round, i, err)
				}
				continue
			}
			if err != nil || !bytes.Equal(buf[:n], pattern(i, 64<<10+i%1000)) {
				t.Fatalf("round %d: object %d: %d bytes, %v", round, i, n, err)
			}
		}
		if i < 64 {
			t.Fatalf("round %d: %d objects after the helper wrote 64", round, i)
		}
		lib.Close()
	}
}

// The drive never goes faster than its rate: a lower bound on time,
// which a loaded machine cannot break.
func TestEmulatorRate(t *testing.T) {
	const rate = 40e6
	_, d := loadedDrive(t, tapefs.EmulatorOptions{Rate: rate})
	p := make([]byte, 1<<20)
	const blocks = 20
	start := time.Now()
	for range blocks {
		if _, err := d.WriteBlock(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket starts full (an eighth of a second's bytes).
	min := time.Duration(float64(blocks<<20-rate/8) / rate * float64(time.Second))
	if el := time.Since(start); el < min {
		t.Fatalf("%d MiB at %v B/s took %v, less than %v", blocks, rate, el, min)
	}
	// Reads are limited the same way.
	if err := d.Rewind(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for range blocks {
		if _, err := d.ReadBlock(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < min {
		t.Fatalf("reading %d MiB at %v B/s took %v, less than %v", blocks, rate, el, min)
	}
}

// The cartridge's tape file is a format: pinned.
func TestEmulatorTapeFormat(t *testing.T) {
	lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
	bc := inDrive(t, lib)
	writeObjs(t, d, obj{data: []byte("first block")}, mark, obj{data: []byte{0, 1, 2}}, mark, mark)
	if err := lib.TearLastBlock(bc); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tapePath(lib, bc))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "emulator/tape-v1", b)
}

func TestEmulatorWriteErrors(t *testing.T) {
	lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
	for _, n := range []int{0, tapefs.MaxEmulatedBlock + 1} {
		if _, err := d.WriteBlock(ctx, make([]byte, n)); err == nil {
			t.Errorf("a block of %d bytes was written", n)
		}
	}
	if _, err := d.WriteBlock(ctx, make([]byte, tapefs.MaxEmulatedBlock)); err != nil {
		t.Errorf("the largest block: %v", err)
	}
	if err := d.WriteFilemarks(ctx, -1); err == nil {
		t.Error("-1 filemarks written")
	}
	// Errors name the drive and what it did.
	err := d.Locate(ctx, 99)
	var de *tapefs.DeviceError
	if !errors.As(err, &de) || de.Device != lib.Name()+" drive 0" || de.Op != "locate 99" || !errors.Is(err, tapefs.ErrEOD) {
		t.Errorf("locate past the end: %v", err)
	}
}

// With no cartridge in it, a drive says so.
func TestEmulatorNoMedium(t *testing.T) {
	lib, err := tapefs.CreateEmulatedLibrary(t.TempDir(), tapefs.EmulatorOptions{Slots: 1, Drives: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"load":    func() error { return d.Load(ctx) },
		"rewind":  func() error { return d.Rewind(ctx) },
		"read":    func() error { _, err := d.ReadBlock(ctx, make([]byte, 10)); return err },
		"write":   func() error { _, err := d.WriteBlock(ctx, make([]byte, 10)); return err },
		"unload":  func() error { return d.Unload(ctx) },
		"seekEOD": func() error { return d.SeekEOD(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, tapefs.ErrNoMedium) {
			t.Errorf("%s on an empty drive: %v", name, err)
		}
	}
	if st, err := d.Status(ctx); err != nil || st.Loaded {
		t.Errorf("status of an empty drive: %+v, %v", st, err)
	}
	// Loaded by the changer, then unloaded by the drive: no medium until Load.
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	writeObjs(t, d, blk(1, 10))
	if err := d.Unload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Rewind(ctx); !errors.Is(err, tapefs.ErrNoMedium) {
		t.Errorf("rewind after unload: %v", err)
	}
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	readObjs(t, d, blk(1, 10), eod)
}

// The record index makes positioning independent of the tape's length;
// opening builds it from the index file and the headers written since,
// or from every header (scan: a tape never closed cleanly). 10^5 objects
// (a filemark every 100): small blocks, and 1 MiB blocks (100 GB, written
// sparse straight in the documented tape file format, so the disk holds
// only the headers).
func BenchmarkEmulatorOpen100k(b *testing.B) {
	const objects = 100_000
	for _, bc := range []struct {
		size int
		scan bool
	}{{512, true}, {512, false}, {1 << 20, true}, {1 << 20, false}} {
		size := bc.size
		b.Run(fmt.Sprintf("block=%d/scan=%v", size, bc.scan), func(b *testing.B) {
			dir := craftTape(b, objects, size)
			index := filepath.Join(dir, "cartridges", "RC0001L9", "index")
			b.ResetTimer()
			for range b.N {
				if bc.scan {
					os.Remove(index)
				}
				lib, err := tapefs.OpenEmulatedLibrary(dir)
				if err != nil {
					b.Fatal(err)
				}
				d, err := lib.Drive(0)
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Locate(ctx, objects/2); err != nil {
					b.Fatal(err)
				}
				if err := d.SpaceFiles(ctx, 100); err != nil {
					b.Fatal(err)
				}
				// Closing writes the index (not counted in the scan case).
				b.StopTimer()
				lib.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
		})
	}
}

// craftTape makes a library whose drive holds a cartridge of n objects
// (a filemark every 100, blocks of size bytes), written sparse straight
// in the documented tape file format so the disk holds only the headers,
// then opened and closed once: the page cache is warm and the index
// written. It returns the library's directory.
func craftTape(b *testing.B, n, size int) string {
	dir := b.TempDir()
	lib, err := tapefs.CreateEmulatedLibrary(dir, tapefs.EmulatorOptions{Slots: 1, Drives: 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := lib.Load(ctx, 1, 0); err != nil {
		b.Fatal(err)
	}
	if err := lib.Close(); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(tapePath(lib, "RC0001L9"), os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	off := int64(16)
	for i := range n {
		h := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		l := size
		if i%100 == 99 {
			h[0], l = 2, 0
		}
		binary.LittleEndian.PutUint32(h[4:], uint32(l))
		if _, err := f.WriteAt(h, off); err != nil {
			b.Fatal(err)
		}
		off += 8 + int64(l)
	}
	if err := f.Truncate(off); err != nil {
		b.Fatal(err)
	}
	f.Close()
	lib, err = tapefs.OpenEmulatedLibrary(dir)
	if err != nil {
		b.Fatal(err)
	}
	if d, err := lib.Drive(0); err != nil || d.Rewind(ctx) != nil {
		b.Fatal("open the crafted tape")
	}
	if err := lib.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// Positioning once the cartridge is open costs the same on a short tape
// and a long one: a Locate and a SpaceFiles each way per op.
func BenchmarkEmulatorPosition(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			lib, err := tapefs.OpenEmulatedLibrary(craftTape(b, n, 1<<20))
			if err != nil {
				b.Fatal(err)
			}
			defer lib.Close()
			d, err := lib.Drive(0)
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Rewind(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := d.Locate(ctx, uint64(i*7919%n)); err != nil {
					b.Fatal(err)
				}
				if err := d.SpaceFiles(ctx, -1); err != nil && i*7919%n >= 100 {
					b.Fatal(err)
				}
				if err := d.SpaceFiles(ctx, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The writer's speed through the drive in 1 MiB blocks, on tmpfs where
// the disk is not what is measured: unlimited, and at LTO-9's 400 MB/s,
// which the drive must sustain at 90% or better.
func BenchmarkEmulatorWrite(b *testing.B) {
	for _, rate := range []int64{0, 400e6} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			dir, err := os.MkdirTemp("/dev/shm", "recall-tape-bench-")
			if err != nil {
				dir = b.TempDir()
			}
			defer os.RemoveAll(dir)
			lib, err := tapefs.CreateEmulatedLibrary(filepath.Join(dir, "lib"), tapefs.EmulatorOptions{Slots: 1, Drives: 1, Rate: rate})
			if err != nil {
				b.Fatal(err)
			}
			defer lib.Close()
			if err := lib.Load(ctx, 1, 0); err != nil {
				b.Fatal(err)
			}
			d, err := lib.Drive(0)
			if err != nil {
				b.Fatal(err)
			}
			p := make([]byte, 1<<20)
			// Drain the rate limiter's bucket (an eighth of a second's
			// bytes) first: what is measured is the sustained rate.
			for range 64 {
				if _, err := d.WriteBlock(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for i := range b.N {
				if i%1024 == 1023 {
					// Keep tmpfs small: start over from the beginning.
					if err := d.Rewind(ctx); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := d.WriteBlock(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			if err := d.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)*float64(len(p))/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}

// The index file beside a long tape: used when it matches the tape,
// ignored when it does not (older, newer, damaged), and never trusted
// over a truncation.
func TestEmulatorIndex(t *testing.T) {
	// objsN is the content of a tape of n objects: a filemark every 10.
	objsN := func(n int) []obj {
		var o []obj
		for i := range n {
			if i%10 == 9 {
				o = append(o, mark)
			} else {
				o = append(o, blk(i, 1+i%300))
			}
		}
		return o
	}
	setup := func(t *testing.T, n int) (*tapefs.EmulatedLibrary, string) {
		lib, d := loadedDrive(t, tapefs.EmulatorOptions{})
		writeObjs(t, d, objsN(n)...)
		if err := lib.Close(); err != nil {
			t.Fatal(err)
		}
		return lib, filepath.Join(lib.Dir(), "cartridges", "RC0001L9")
	}
	// check opens the library and reads the whole tape, spot-checking
	// positioning by the index first.
	check := func(t *testing.T, dir string, want []obj) {
		t.Helper()
		lib, err := tapefs.OpenEmulatedLibrary(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer lib.Close()
		d, err := lib.Drive(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.SeekEOD(ctx); err != nil {
			t.Fatal(err)
		}
		if p, _ := d.Position(ctx); p != uint64(len(want)) {
			t.Fatalf("end of data at %d, want %d", p, len(want))
		}
		if err := d.Locate(ctx, uint64(len(want)/2)); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, want[len(want)/2])
		if err := d.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.SpaceFiles(ctx, 5); err != nil {
			t.Fatal(err)
		}
		if p, _ := d.Position(ctx); p != 50 {
			t.Fatalf("5 files on: at %d, want 50", p)
		}
		if err := d.Rewind(ctx); err != nil {
			t.Fatal(err)
		}
		readObjs(t, d, append(want, eod)...)
	}
	read := func(t *testing.T, p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("Written", func(t *testing.T) {
		lib, cart := setup(t, 2000)
		if _, err := os.Stat(filepath.Join(cart, "index")); err != nil {
			t.Fatalf("no index after closing 2000 objects: %v", err)
		}
		check(t, lib.Dir(), objsN(2000))
	})
	t.Run("NotForShortTapes", func(t *testing.T) {
		_, cart := setup(t, 100)
		if _, err := os.Stat(filepath.Join(cart, "index")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("an index for 100 objects: %v", err)
		}
	})
	t.Run("OlderThanTheTape", func(t *testing.T) {
		lib, cart := setup(t, 2000)
		old := read(t, filepath.Join(cart, "index"))
		lib2, err := tapefs.OpenEmulatedLibrary(lib.Dir())
		if err != nil {
			t.Fatal(err)
		}
		d, _ := lib2.Drive(0)
		d.SeekEOD(ctx)
		writeObjs(t, d, blk(7, 70), mark)
		lib2.Close()
		// As if the process died before closing: the old index stays.
		if err := os.WriteFile(filepath.Join(cart, "index"), old, 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, lib.Dir(), append(objsN(2000), blk(7, 70), mark))
	})
	t.Run("NewerThanTheTape", func(t *testing.T) {
		lib, cart := setup(t, 2000)
		tape := read(t, filepath.Join(cart, "tape"))
		// The tape loses its last records behind the index's back.
		short := tapeLen(1500)
		if err := os.WriteFile(filepath.Join(cart, "tape"), tape[:short], 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, lib.Dir(), objsN(1500))
	})
	t.Run("Damaged", func(t *testing.T) {
		lib, cart := setup(t, 2000)
		idx := read(t, filepath.Join(cart, "index"))
		idx[100] ^= 0x40
		if err := os.WriteFile(filepath.Join(cart, "index"), idx, 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, lib.Dir(), objsN(2000))
	})
	t.Run("DroppedByTruncation", func(t *testing.T) {
		lib, cart := setup(t, 2000)
		lib2, err := tapefs.OpenEmulatedLibrary(lib.Dir())
		if err != nil {
			t.Fatal(err)
		}
		d, _ := lib2.Drive(0)
		if err := d.Locate(ctx, 1200); err != nil {
			t.Fatal(err)
		}
		writeObjs(t, d, blk(5000, 5000))
		if _, err := os.Stat(filepath.Join(cart, "index")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the index outlived a truncation: %v", err)
		}
		lib2.Close()
		check(t, lib.Dir(), append(objsN(1200), blk(5000, 5000)))
	})
}

// tapeLen is the length of the tape file holding the first n objects of
// the index test's tape: the tape header, then each record.
func tapeLen(n int) int {
	size := 16
	for i := range n {
		size += 8
		if i%10 != 9 {
			size += 1 + i%300
		}
	}
	return size
}

// The reader's speed through the drive in 1 MiB blocks (a restore's
// forward pass), on tmpfs: unlimited, and at LTO-9's 400 MB/s.
func BenchmarkEmulatorRead(b *testing.B) {
	for _, rate := range []int64{0, 400e6} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			dir, err := os.MkdirTemp("/dev/shm", "recall-tape-bench-")
			if err != nil {
				dir = b.TempDir()
			}
			defer os.RemoveAll(dir)
			lib, err := tapefs.CreateEmulatedLibrary(filepath.Join(dir, "lib"), tapefs.EmulatorOptions{Slots: 1, Drives: 1, Rate: rate})
			if err != nil {
				b.Fatal(err)
			}
			defer lib.Close()
			if err := lib.Load(ctx, 1, 0); err != nil {
				b.Fatal(err)
			}
			d, err := lib.Drive(0)
			if err != nil {
				b.Fatal(err)
			}
			const blocks = 256
			p := make([]byte, 1<<20)
			for range blocks {
				if _, err := d.WriteBlock(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			// Drain the rate limiter's bucket, as the write benchmark does.
			if err := d.Rewind(ctx); err != nil {
				b.Fatal(err)
			}
			for range 64 {
				if _, err := d.ReadBlock(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for i := range b.N {
				if (i+64)%blocks == 0 {
					if err := d.Rewind(ctx); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := d.ReadBlock(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*float64(len(p))/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}
