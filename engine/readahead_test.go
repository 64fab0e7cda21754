package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

// Small files are read beyond --files at once: with Files 1 a backup of
// eight small files must have all eight in flight together, which the
// hook below waits for (one file at a time would never get there).
func TestSmallFilesReadBeyondFiles(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	const n = smallSlotsPerFile
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), []byte(fmt.Sprint("content ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	inFlight := 0
	all := make(chan struct{})
	// One deadline for every waiter, so a failure costs it once.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hook := func(path string, try int) {
		mu.Lock()
		if inFlight++; inFlight == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			t.Errorf("%s: the other small files were never read beside it", path)
		}
	}
	p, err := ts.backup(BackupOptions{Path: src, Files: 1, hooks: &backupHooks{afterRead: hook}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if got, want := string(ts.content(p, fmt.Sprintf("f%d", i))), fmt.Sprint("content ", i); got != want {
			t.Errorf("f%d: %q, want %q", i, got, want)
		}
	}
}

// TestEntryTypes: the listing marks regular files (the only entries
// hinted) from the directory's types; wants, which a hint asks before it
// opens anything, takes regular files that are not empty; and willNeed
// neither blocks nor fails on a FIFO (no writer) or a name that is gone.
func TestEntryTypes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("file", "some content")
	empty := write("empty", "")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}

	ents, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantType := map[string][2]bool{ // isDir, isReg
		"empty": {false, true}, "fifo": {false, false}, "file": {false, true},
		"link": {false, false}, "sub": {true, false},
	}
	if len(ents) != len(wantType) {
		t.Fatalf("%d entries, want %d", len(ents), len(wantType))
	}
	for _, e := range ents {
		if w := wantType[e.name]; e.isDir != w[0] || e.isReg != w[1] {
			t.Errorf("%s: isDir %v isReg %v, want %v %v", e.name, e.isDir, e.isReg, w[0], w[1])
		}
	}

	for _, c := range []struct {
		name, path string
		size       int64
		want       bool
	}{
		{"regular file", file, int64(len("some content")), true},
		{"empty file", empty, 0, false},
		{"symlink to a file", link, 0, false},
		{"fifo", fifo, 0, false},
		{"directory", sub, 0, false},
		{"gone", filepath.Join(dir, "gone"), 0, false},
	} {
		if size, got := wants(c.path); got != c.want || size != c.size {
			t.Errorf("%s: wants %d, %v; want %d, %v", c.name, size, got, c.size, c.want)
		}
	}

	h := &hinter{}
	done := make(chan struct{})
	go func() {
		h.willNeed(fifo)
		h.willNeed(filepath.Join(dir, "gone"))
		h.willNeed(file)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("willNeed blocked on a FIFO")
	}
}

// upTo hints the files (not the directories, not what is excluded) of a
// listing up to hintWindow entries past the walk, each once, in order; a
// directory the parent point has gets none.
func TestDirHintsWindow(t *testing.T) {
	var ents []dirEntry
	for i := 0; i < 3*hintWindow; i++ {
		ents = append(ents, dirEntry{name: fmt.Sprintf("e%04d", i), isDir: i%5 == 0, isReg: i%5 != 0})
	}
	excl := Exclude{Patterns: []string{"sub/e*3"}} // e0003, e0013, ...: every tenth
	ex, err := excl.compile()
	if err != nil {
		t.Fatal(err)
	}
	skipped := func(i int) bool { return ents[i].isDir || i%10 == 3 }
	h := newHinter(len(ents))
	b := &backuper{hints: h, ex: ex}
	d := b.hintsFor("/src/sub", "sub", ents, nil)
	next := 0 // the entry the next hint must name
	for _, walk := range []int{0, 0, 1, 10, hintWindow, 2*hintWindow + 7, len(ents) - 1} {
		d.upTo(walk)
		for end := min(len(ents), walk+hintWindow); next < end; next++ {
			if skipped(next) {
				continue
			}
			select {
			case p := <-h.q:
				if want := "/src/sub/" + ents[next].name; p != want {
					t.Fatalf("walk at %d: hint %s, want %s", walk, p, want)
				}
			default:
				t.Fatalf("walk at %d: no hint for %s", walk, ents[next].name)
			}
		}
		select {
		case p := <-h.q:
			t.Fatalf("walk at %d: hint %s beyond the window", walk, p)
		default:
		}
	}
	b.hintsFor("/old", "old", ents, &Tree{}).upTo(0)
	if len(h.q) != 0 {
		t.Errorf("a directory of the parent point got %d hints", len(h.q))
	}
	(&backuper{}).hintsFor("/src", "", ents, nil).upTo(0) // no hinter: nothing to do
}

// The cold reader hands out exactly bytes [start, end) of the file, from
// the page cache or with O_DIRECT, whatever the alignment of either end,
// and stops early at the end of a file that shrank.
func TestColdReader(t *testing.T) {
	size := 2*coldPiece + 12345
	content := make([]byte, size)
	for i := range content {
		content[i] = byte(i*7 + i>>13)
	}
	dirs := map[string]string{"disk": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dirs["tmpfs"] = "/dev/shm" // O_DIRECT may be refused there: read buffered
	}
	cases := []struct {
		name       string
		start, end int64
		cached     bool
		shrinkTo   int64 // >0: the file is cut to this size before reading
	}{
		{"whole, cold", 0, int64(size), false, 0},
		{"whole, cached", 0, int64(size), true, 0},
		{"unaligned ends, cold", 4097, int64(size) - 5000, false, 0},
		{"from just before a piece, cold", coldPiece - 1, int64(size), false, 0},
		{"shrunk while read, cold", 100, int64(size), false, coldPiece + 3},
	}
	for dname, dir := range dirs {
		for _, c := range cases {
			t.Run(dname+"/"+c.name, func(t *testing.T) {
				path := filepath.Join(dir, fmt.Sprintf("recall-cold-%d", os.Getpid()))
				defer os.Remove(path)
				if err := os.WriteFile(path, content, 0o600); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				want := content[c.start:c.end]
				if c.shrinkTo > 0 {
					if err := os.Truncate(path, c.shrinkTo); err != nil {
						t.Fatal(err)
					}
					want = content[c.start:c.shrinkTo]
				}
				if !c.cached {
					// Out of the page cache, as after a reboot (no root needed).
					_ = unix.Fsync(int(f.Fd()))
					_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				}
				direct := coldDirect.Load()
				r := newColdReader(f, c.start, c.end, coldBufsReader)
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
				}
				if dname == "disk" && !c.cached && coldDirect.Load() == direct {
					t.Error("no piece of an uncached file was read with O_DIRECT")
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A large file (read by the cold reader) that changes while it is read is
// read again, and the new content saved.
func TestChangedWhileReadCold(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "big")
	os.WriteFile(f, bytes.Repeat([]byte("a"), coldMinSize+5), 0o644)
	dropCache(t, f) // a file the page cache holds whole is not read by the cold reader
	want := bytes.Repeat([]byte("b"), coldMinSize+7000)
	p, err := ts.backup(BackupOptions{Path: src, Source: "cold", hooks: &backupHooks{afterRead: func(path string, try int) {
		if try == 1 {
			os.WriteFile(f, want, 0o644)
		}
	}}})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if got := ts.content(p, "big"); !bytes.Equal(got, want) {
		t.Errorf("re-read content: %d bytes, want %d", len(got), len(want))
	}
}

// dropCache writes the file at path out and drops it from the page cache.
func dropCache(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_ = unix.Fsync(fd)
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
}

// A large file the page cache holds whole (just written) is read straight
// into the chunker's segments, or by the parallel cuts; one that is not is
// read by the cold reader, with O_DIRECT, even where it is large enough for
// the parallel cuts (which would read it through the page cache, twice).
// The content is the same either way.
func TestBackupLargeFileCachedOrCold(t *testing.T) {
	old := parSegment
	parSegment = 2 << 20 // the file below is eight segments
	t.Cleanup(func() { parSegment = old })
	ts := newTestStore(t)
	src := t.TempDir()
	f := filepath.Join(src, "big")
	data := make([]byte, 2*coldMinSize+12345)
	rand.New(rand.NewSource(3)).Read(data)
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(f, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, cold := range []bool{false, true} {
		if cold {
			dropCache(t, f)
			if cached(fd, 0, len(data)) {
				testskip.Skip(t, "the file system keeps the file in the page cache (tmpfs?)")
			}
		} else if !cached(fd, 0, len(data)) {
			t.Fatal("a file just written is not in the page cache")
		}
		direct, readers := coldDirect.Load(), coldReaders.Load()
		p, err := ts.backup(BackupOptions{Path: src, Source: fmt.Sprintf("cold-%v", cold)})
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		if got := ts.content(p, "big"); !bytes.Equal(got, data) {
			t.Fatalf("cold %v: content differs", cold)
		}
		switch read := coldDirect.Load() - direct; {
		case !cold && coldReaders.Load() != readers:
			t.Errorf("a file in the page cache was read by the cold reader (%d pieces with O_DIRECT)", read)
		case cold && read == 0 && directWorks(f):
			t.Error("a file out of the page cache: no piece read with O_DIRECT")
		}
	}
}

// directWorks reports whether the file at path can be opened with O_DIRECT.
func directWorks(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// TestReadSmall: a small file's read stops at its known size without
// another read for the end, reads on past it if the file grew, and
// returns what there is if it shrank.
func TestReadSmall(t *testing.T) {
	data := []byte("0123456789abcdef")
	for _, c := range []struct {
		name      string
		content   []byte
		buf, size int
		want      int
		reads     int
	}{
		{"as stat said", data[:10], 16, 10, 10, 1},
		{"grew", data[:14], 16, 10, 14, 2},
		{"shrank", data[:6], 16, 10, 6, 2},
		{"fills the buffer", data, 16, 16, 16, 1},
		{"more than the buffer", data, 8, 8, 8, 1},
		{"stat said empty", data[:5], 16, 0, 5, 2},
	} {
		r := &countingReader{r: bytes.NewReader(c.content), max: 4096}
		n, err := readSmall(r, make([]byte, c.buf), c.size)
		if err != nil || n != c.want || r.n != c.reads {
			t.Errorf("%s: %d bytes in %d reads (%v), want %d in %d", c.name, n, r.n, err, c.want, c.reads)
		}
	}
	// A reader that hands out a few bytes at a time is read to the size.
	r := &countingReader{r: bytes.NewReader(data[:10]), max: 3}
	if n, err := readSmall(r, make([]byte, 16), 10); n != 10 || err != nil || r.n != 4 {
		t.Errorf("in pieces: %d bytes in %d reads (%v)", n, r.n, err)
	}
	boom := errors.New("boom")
	if _, err := readSmall(iotest.ErrReader(boom), make([]byte, 16), 10); err != boom {
		t.Errorf("error: %v", err)
	}
}

type countingReader struct {
	r   io.Reader
	max int
	n   int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.n++
	return c.r.Read(p[:min(len(p), c.max)])
}

// A large file out of the page cache that is cut short while the cold
// reader's pieces are being chunked (the pieces are the segments) ends
// the region at the cut: the point holds the bytes up to it, and the
// backup ends. Also with the cut inside a piece and with a limit (the
// reader path).
func TestShrankWhileReadCold(t *testing.T) {
	for _, c := range []struct {
		name    string
		cut     int64
		limited bool
	}{
		{"inside a piece", 3*coldPiece + 777, false},
		{"at a piece's end", 2 * coldPiece, false},
		{"limited", 3*coldPiece + 777, true},
		{"while read", 5*coldPiece + 99, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestStore(t)
			src := t.TempDir()
			f := filepath.Join(src, "big")
			data := make([]byte, 3*coldMinSize+4321)
			rand.New(rand.NewSource(7)).Read(data)
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			dropCache(t, f)
			readers := coldReaders.Load()
			var once sync.Once // the read after the cut sees the file as it is
			opts := BackupOptions{Path: src, Source: "cut", hooks: &backupHooks{afterRegions: func(string) {
				once.Do(func() {
					if err := os.Truncate(f, c.cut); err != nil {
						t.Error(err)
					}
				})
			}}}
			if c.limited {
				opts.Limiter = countingLimiter{new(atomic.Int64)}
			}
			stop := make(chan struct{})
			if c.name == "while read" {
				// Cut once the chunker has had two pieces: the pieces
				// read ahead hold bytes past the cut, which the stat
				// comparison after the read finds and reads again.
				opts.hooks = nil
				opts.Progress = &Progress{}
				go func() {
					for opts.Progress.Status().BytesDone < 2*coldPiece {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Microsecond):
						}
					}
					if err := os.Truncate(f, c.cut); err != nil {
						t.Error(err)
					}
				}()
			}
			defer close(stop)
			p, err := backupWithin(t, ts, opts, "backup of a cold file cut short while read")
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if coldReaders.Load() == readers {
				t.Fatal("the file was not read by the cold reader")
			}
			if got := ts.content(p, "big"); !bytes.Equal(got, data[:c.cut]) {
				t.Errorf("point holds %d bytes (first difference at %d), want the %d the file was cut to", len(got), firstDiff(got, data), c.cut)
			}
		})
	}
}

// countingLimiter is a Limiter that never waits; it counts the bytes
// asked for.
type countingLimiter struct{ n *atomic.Int64 }

func (l countingLimiter) WaitN(_ context.Context, n int) error {
	l.n.Add(int64(n))
	return nil
}

// TestHintsReadCold: the hints bring files the page cache does not hold
// into it, through the io_uring and through posix_fadvise where there is
// none; hintOpen passes over what is cached already, a FIFO, an empty
// file and a name that is gone.
func TestHintsReadCold(t *testing.T) {
	for _, ring := range []bool{true, false} {
		t.Run(fmt.Sprintf("ring=%v", ring), func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for i := 0; i < 3*hintBatch; i++ {
				p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
				if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 1000+i*300), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			big := filepath.Join(dir, "big")
			if err := os.WriteFile(big, make([]byte, 2*hintBytes), 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, big)
			state := func(p string) (cached bool) {
				fd, err := unix.Open(p, unix.O_RDONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				c, known := cacheState(fd, 0, 4096)
				if !known {
					testskip.Skip(t, "no cachestat on this kernel (before 6.5)")
				}
				return c
			}
			for _, p := range paths {
				fd, err := unix.Open(p, unix.O_RDONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_ = unix.Fsync(fd)
				_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
				unix.Close(fd)
				if state(p) {
					testskip.Skip(t, "the file system keeps %s in the page cache (tmpfs?)", p)
				}
			}
			if _, _, ok := hintOpen(paths[0]); !ok {
				t.Fatalf("hintOpen passes over a file that is not cached")
			}
			fifo := filepath.Join(dir, "fifo")
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			empty := filepath.Join(dir, "empty")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{fifo, empty, filepath.Join(dir, "gone")} {
				if fd, _, ok := hintOpen(p); ok {
					unix.Close(fd)
					t.Errorf("hintOpen takes %s", p)
				}
			}

			noRing.Store(!ring)
			defer noRing.Store(false)
			h := startHinter()
			h.q <- fifo // neither blocks the hints
			h.q <- empty
			for _, p := range paths {
				h.q <- p
			}
			done := make(chan struct{})
			go func() {
				h.stop()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the hints did not end")
			}
			// posix_fadvise only starts the reads: give them a moment.
			deadline := time.Now().Add(10 * time.Second)
			for _, p := range paths {
				for !state(p) {
					if time.Now().After(deadline) {
						t.Fatalf("%s is not in the page cache after its hint", p)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			if fd, _, ok := hintOpen(paths[0]); ok {
				unix.Close(fd)
				t.Errorf("hintOpen takes a file the page cache holds")
			}
		})
	}
}

// A reader of a file whose hint is queued waits until the hint is with
// the kernel, and no longer: not for a path never queued, not for one
// the full queue turned away, not past its context. With the ring, every
// path queued is passed on whether its file is read, cached, empty or
// gone, so no reader waits for ever.
func TestHintWait(t *testing.T) {
	waited := func(h *hinter, ctx context.Context, p string) <-chan struct{} {
		c := make(chan struct{})
		go func() { h.wait(ctx, p); close(c) }()
		return c
	}
	ctx := context.Background()
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for _, p := range []string{a, b, c} {
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A hinter whose worker has not started: the waits hold.
	h := newHinter(2)
	h.queue(a)
	h.queue(b)
	h.queue(a) // queued already: not twice
	h.queue(c) // the queue is full: turned away
	select {
	case <-waited(h, ctx, c):
	case <-time.After(10 * time.Second):
		t.Fatal("a reader waits for a hint the full queue turned away")
	}
	select {
	case <-waited(h, ctx, filepath.Join(dir, "never")):
	case <-time.After(10 * time.Second):
		t.Fatal("a reader waits for a path never queued")
	}
	wa := waited(h, ctx, a)
	cctx, cancel := context.WithCancel(ctx)
	wb := waited(h, cctx, b)
	select {
	case <-wa:
		t.Fatal("a reader did not wait for its file's queued hint")
	case <-wb:
		t.Fatal("a reader did not wait for its file's queued hint")
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case <-wb:
	case <-time.After(10 * time.Second):
		t.Fatal("a reader waits for its hint past its context")
	}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.adviseEach() }()
	select {
	case <-wa:
	case <-time.After(10 * time.Second):
		t.Fatal("the hint was given and its reader still waits")
	}
	h.stop()
	if len(h.pending) != 0 {
		t.Errorf("%d hints left pending after stop", len(h.pending))
	}

	for _, ring := range []bool{true, false} {
		t.Run(fmt.Sprintf("ring=%v", ring), func(t *testing.T) {
			noRing.Store(!ring)
			defer noRing.Store(false)
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			empty := filepath.Join(t.TempDir(), "empty")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			paths := []string{fifo, empty, filepath.Join(dir, "gone")}
			for i := range 3 * hintBatch {
				p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
				if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 1000+i*300), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			h := startHinter()
			var waits []<-chan struct{}
			for _, p := range paths {
				h.queue(p)
				waits = append(waits, waited(h, ctx, p))
			}
			for i, w := range waits {
				select {
				case <-w:
				case <-time.After(30 * time.Second):
					t.Fatalf("the reader of %s waits for its hint for ever", paths[i])
				}
			}
			h.stop()
			if len(h.pending) != 0 {
				t.Errorf("%d hints left pending after stop", len(h.pending))
			}
		})
	}
}
