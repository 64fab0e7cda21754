package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/iobuf"
	"github.com/recall-backup/recall/internal/uring"
	"golang.org/x/sys/unix"
)

// Reading from a cold disk.
//
// A backup of data that is not in the page cache is as fast as the warm
// one only if the disk is kept busy while the CPUs chunk, hash and
// compress. A small file is read with one synchronous read, and its slot is
// held until its chunk is stored: with a few slots, most of them wait for a
// saver while the disk has one request or none. So files read in one piece
// get slots of their own, many more than there are cores: their goroutines
// wait on the disk or on a saver, and the savers (one per core) already
// bound the CPU work. Large files keep opts.Files slots (their goroutines
// chunk, which is CPU work) and are opened with a hint that they are read
// once from start to end, which widens the kernel's read-ahead for them.

// smallSlotsPerFile is how many small files are read at once per unit of
// BackupOptions.Files: 32 at the default of 4, enough to keep a disk's
// queue full (a parallel cat of small files gains nothing past 16 or so)
// while holding at most 32 x MinChunk of chunk buffers.
const smallSlotsPerFile = 8

// readSlots returns the semaphore a file of the given size (from its
// lstat) is read under.
func (b *backuper) readSlots(size int64) chan struct{} {
	if size <= int64(b.st.MinChunk()) {
		return b.smallSem
	}
	return b.fileSem
}

// adviseSequential tells the kernel that fd is about to be read once from
// start to end. Only a hint: where it is not supported nothing changes.
func adviseSequential(fd int) {
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
}

// Files a directory listing names are hinted to the kernel (WILLNEED) a
// window of entries ahead of the walk, so their first blocks are on the
// way while the files before them are chunked: the walk itself stops at
// the slots above, far nearer the readers. Directories the parent point
// has are not hinted: most of their files are unchanged, and knowing which
// costs the walk's own lstat again (an incremental backup of an unchanged
// tree would pay it for every file and gain nothing).
//
// Measured on the development machine (2 vCPUs, shared): the cold first
// backup took a tenth to a fifth less CPU time with the hints, most of it
// system time (a reader finds its pages cached or on the way instead of
// starting the read itself and blocking, each block a thread handoff in
// the Go scheduler); the warm one no more than the noise (four system
// calls a file).
const (
	hintWindow  = 128       // entries of a directory hinted ahead of the walk
	hintBytes   = 256 << 10 // of each file: all of a small one, the start of a large one
	hintWorkers = 2         // without a ring: they only queue reads; two keep up with a disk
)

// hinter runs the goroutines that pass hints to the kernel.
type hinter struct {
	q  chan string
	wg sync.WaitGroup

	// pending holds the paths queued and not yet passed to the kernel.
	// A reader of one of them waits until it is (wait): a file read
	// before its hint is a request of its own, between the hint's
	// merged ones. On the small-file part of the bench set (20,000
	// files in directories of 50), cold, 2,900 of 11,800 read requests
	// came from readers that got to the first files of a directory
	// before its hints were submitted; with the wait, 3 of 10,200-10,500
	// (block:block_rq_insert traced by system call). The CPU time and
	// the wall time did not change beyond this machine's noise.
	mu      sync.Mutex
	pending map[string]chan struct{}
}

// newHinter returns a hinter with room for n paths queued and no
// workers yet.
func newHinter(n int) *hinter {
	return &hinter{q: make(chan string, n), pending: make(map[string]chan struct{})}
}

func startHinter() *hinter {
	h := newHinter(2 * hintWindow)
	if !noRing.Load() {
		if r, err := uring.New(2 * hintBatch); err == nil {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.ringWorker(r)
			}()
			return h
		}
	}
	for i := 0; i < hintWorkers; i++ {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.adviseEach()
		}()
	}
	return h
}

// adviseEach hints the paths queued, one posix_fadvise each, until the
// queue is closed: the workers without a ring, and a ring worker's
// fallback.
func (h *hinter) adviseEach() {
	for p := range h.q {
		h.willNeed(p)
		h.passed(p)
	}
}

// queue queues a hint of path unless the queue is full (the workers are
// behind: the disk has reads enough queued) or path is queued already.
func (h *hinter) queue(path string) {
	h.mu.Lock()
	if _, ok := h.pending[path]; ok {
		h.mu.Unlock()
		return
	}
	h.pending[path] = make(chan struct{})
	h.mu.Unlock()
	select {
	case h.q <- path:
	default:
		h.passed(path)
	}
}

// passed ends the wait for path's hint: it is with the kernel, or is not
// given at all.
func (h *hinter) passed(path string) {
	h.mu.Lock()
	c := h.pending[path]
	delete(h.pending, path)
	h.mu.Unlock()
	if c != nil {
		close(c)
	}
}

// wait returns once the hint of path, if one is queued, has been passed
// to the kernel: the reader's own read then finds the file's pages in
// the page cache or on their way there, in the hint's request. It never
// waits on the disk, only on the hint's workers, which wait on nothing
// a reader holds.
func (h *hinter) wait(ctx context.Context, path string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	c := h.pending[path]
	h.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case <-c:
	case <-ctx.Done():
	}
}

// Hints through an io_uring (internal/uring): where the kernel gives one,
// a single worker reads the start of up to hintBatch files in one system
// call, into a scratch buffer whose bytes nobody looks at (the reads are
// for the page cache), instead of a posix_fadvise each. Reads submitted
// together share a block plug, so neighbouring files go to the disk as
// merged requests and a virtual disk is notified once a batch. Measured
// on a 2-vCPU Firecracker VM, where a notification is an exit to the
// hypervisor (about 17 us: 5% of a cold backup's CPU samples), six
// interleaved cold first backups each way: the small-file bench set took
// 1.66-2.11 s (mean 1.85) instead of 1.84-2.20 s (1.95), with 8,200 read
// requests instead of 12,800 and 3.16 CPU-s instead of 3.39; the set
// (four each way) 5.36-5.63 s instead of 5.55-6.25 s, 12,300 requests
// instead of 21,500. A file the page cache holds is not read (hintOpen),
// so a warm backup pays a cachestat a file where it paid a fadvise: warm,
// 1.54-1.82 s against 1.54-1.83 s. See bench/README.md.
const hintBatch = 64

// noRing turns the io_uring hints off (tests compare both ways).
var noRing atomic.Bool

// ringWorker hints the paths queued, in batches of reads through r, and
// waits for the last of them before it returns.
func (h *hinter) ringWorker(r *uring.Ring) {
	scratch, err := unix.Mmap(-1, 0, hintBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		r.Close()
		h.adviseEach()
		return
	}
	defer func() {
		// Every read is reaped before its buffer goes.
		if r.Close() == nil {
			unix.Munmap(scratch)
		}
	}()
	fds := make([]int, 0, hintBatch)
	paths := make([]string, 0, hintBatch)
	add := func(p string) {
		paths = append(paths, p)
		fd, n, ok := hintOpen(p)
		if !ok {
			return
		}
		if r.Read(fd, scratch[:n], 0) {
			fds = append(fds, fd)
		} else {
			unix.Close(fd)
		}
	}
	for p := range h.q {
		add(p)
	drain:
		for len(fds) < hintBatch {
			select {
			case p, ok := <-h.q:
				if !ok {
					break drain
				}
				add(p)
			default:
				break drain
			}
		}
		err := r.Submit()
		for _, fd := range fds {
			unix.Close(fd) // a submitted read holds its file
		}
		fds = fds[:0]
		for _, p := range paths {
			h.passed(p)
		}
		paths = paths[:0]
		if err == nil {
			_, err = r.Wait(hintBatch)
		}
		if err != nil {
			// The ring failed (it should not): what is left is hinted
			// one file at a time.
			h.adviseEach()
			return
		}
	}
}

// stop waits for the hints queued so far; no hint may be queued after.
func (h *hinter) stop() {
	close(h.q)
	h.wg.Wait()
}

// hintOpen opens the file at path for a hint read through the ring: a
// regular file, not empty, whose first n bytes (hintBytes at most) the
// page cache does not hold already (a read of a warm file would only copy
// it). The caller closes fd. A warm file costs the system calls a
// posix_fadvise hint did (lstat, open, cachestat, close).
func hintOpen(path string) (fd int, n int64, ok bool) {
	size, ok := wants(path)
	if !ok {
		return -1, 0, false
	}
	fd, err := openNoAtime(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		return -1, 0, false
	}
	if c, _ := cacheState(fd, 0, int(min(size, hintBytes))); c {
		unix.Close(fd)
		return -1, 0, false
	}
	// Only a regular file goes to the ring: a read of a FIFO there waits
	// for a writer even on a non-blocking descriptor, and the path may
	// name one since its lstat.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		unix.Close(fd)
		return -1, 0, false
	}
	return fd, min(st.Size, hintBytes), true
}

// wants reports whether path names a file the backup will read: a
// regular file, not empty. Lstat, not open: opening a device can have
// effects (a tape drive rewinds), and the listing's type is not enough,
// since it names the entry under a mount, not a device or pseudo-file
// bind-mounted over it.
func wants(path string) (size int64, ok bool) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		return 0, false
	}
	return st.Size, true
}

// willNeed hints the start of the file at path, which the listing gave as
// a regular file (entries it gave as anything else are not hinted: no
// system call at all for them).
func (h *hinter) willNeed(path string) {
	size, ok := wants(path)
	if !ok {
		return
	}
	fd, err := openNoAtime(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		return
	}
	_ = unix.Fadvise(fd, 0, min(size, hintBytes), unix.FADV_WILLNEED)
	unix.Close(fd)
}

// dirHints hints the entries of one listed directory as the walk goes
// through them.
type dirHints struct {
	h        *hinter // nil: no hints
	ex       *excluder
	dir, rel string
	ents     []dirEntry
	next     int // the first entry not yet hinted
}

// hintsFor returns the hints of the directory at path (rel in the
// backup), listed as ents; parent is its tree in the parent point, or nil.
func (b *backuper) hintsFor(path, rel string, ents []dirEntry, parent *Tree) *dirHints {
	if parent != nil {
		return &dirHints{}
	}
	return &dirHints{h: b.hints, ex: b.ex, dir: path, rel: rel, ents: ents}
}

// upTo hints the entries up to hintWindow past i, the entry the walk is at.
func (d *dirHints) upTo(i int) {
	if d.h == nil {
		return
	}
	for ; d.next < len(d.ents) && d.next < i+hintWindow; d.next++ {
		e := d.ents[d.next]
		if !e.isReg || d.ex != nil && d.ex.byName(filepath.Join(d.rel, e.name), e.name) {
			continue
		}
		d.h.queue(filepath.Join(d.dir, e.name))
	}
}

// Large files from a cold disk: O_DIRECT.
//
// A buffered read of data that is not cached costs the kernel far more
// than the copy itself: it allocates page-cache pages, fills them from the
// disk and copies them out. Measured on the development machine (a VM),
// reading 1.5 GiB of large files cold took 1.0-2.0 s of system time
// buffered and 0.13-0.15 s with O_DIRECT into reused buffers (warm,
// buffered: 0.15-0.2 s). So a regular file of coldMinSize or more is read
// in pieces of coldPiece: each piece the page cache holds whole is copied from it (a
// warm backup stays as it was), any other is read with
// O_DIRECT into an aligned buffer, one piece ahead of the chunker, so the
// disk works while the chunker cuts. It also keeps a backup from pushing
// the machine's working set out of the page cache. Where O_DIRECT is
// refused (tmpfs, some network and FUSE file systems: EINVAL) the pieces
// are read through the page cache, as before.
//
// Pieces of 2 MiB: with 4 MiB ones a first backup of the bench set
// peaked at 157-161 MiB, above restic's 148 MiB; the disk reads 2 MiB
// requests as fast (a few per file are in flight at once).
//
// The pieces are the chunker's segments (segments.go), so the bytes the
// disk put in memory are hashed and compressed where they are: each
// piece's buffer has coldRoom bytes in front of it, and the unfinished
// chunk at the end of the piece before is copied there (the chunker's
// keep). A longer one (a chunk running on over more than a piece: one
// fill in 40 with the store's chunk sizes) is copied with the piece into
// a new buffer. The copy of every piece into a segment this replaces was
// 0.5 of 9.5 CPU-seconds of a cold first backup of the bench set.
const (
	coldPiece   = 2 << 20
	coldRoom    = 2 << 20       // a multiple of coldAlign: the piece stays aligned
	coldMinSize = 4 * coldPiece // smaller files are read as they were
	coldAlign   = 4096          // O_DIRECT's alignment of buffers, offsets and lengths
)

// Buffers of a cold reader: read as an io.Reader it hands each piece on
// before it takes the next, so one buffer is read into while the chunker
// copies out of the other. As the chunker's segments, one is read into
// while the other is cut; the next read waits until the savers have
// finished the chunks of the piece cut before. A third buffer, so that the
// read need not wait for them, cost 2 MiB more per large file in flight
// and gained no time: four interleaved pairs of cold first backups of the
// bench set peaked at 110-139 MiB with two against 125-145 MiB with three,
// in 4.15-4.92 s against 4.11-5.46 s.
const (
	coldBufsReader   = 2
	coldBufsSegments = 2
)

// coldDirect counts the pieces read with O_DIRECT, so tests can tell that
// path is taken (a fallback to buffered reads would hide it failing);
// coldReaders counts the cold readers started; coldMerged the segments
// copied whole because the chunker's keep did not fit in front.
var coldDirect, coldReaders, coldMerged atomic.Int64

// coldReader reads bytes [pos, end) of a regular file a piece ahead, as
// an io.Reader (Read) or as the chunker's segments (segment): one or the
// other, not both. Close must be called; it waits for the read in flight.
type coldReader struct {
	f    *os.File
	dfd  int // an O_DIRECT descriptor of the same file, or -1
	end  int64
	free chan []byte // buffers to read into
	full chan coldRead
	quit chan struct{}
	done chan struct{}

	mu     sync.Mutex
	closed bool         // set by Close: buffers given back after it are unmapped
	lent   atomic.Int64 // buffers segments hold (segments)

	cur    []byte // of the piece being handed out, what is left
	curRaw []byte // that piece's buffer
	err    error  // after cur: io.EOF or the read's error
}

// coldRead is a piece: raw[start:end] holds the file's bytes.
type coldRead struct {
	raw        []byte
	start, end int
	err        error
}

// newColdReader starts reading [start, end) of f into bufs buffers. The
// O_DIRECT descriptor is opened through /proc/self/fd, so it is the same
// file whatever happened to its path since f was opened.
func newColdReader(f *os.File, start, end int64, bufs int) *coldReader {
	r := &coldReader{f: f, dfd: -1, end: end,
		free: make(chan []byte, bufs), full: make(chan coldRead, bufs),
		quit: make(chan struct{}), done: make(chan struct{})}
	coldReaders.Add(1)
	p := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	fd, err := openNoAtime(p, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC)
	if err == nil {
		r.dfd = fd
	}
	for range bufs {
		r.free <- iobuf.Get(coldRoom + coldPiece) // aligned to at least coldAlign
	}
	go r.run(start)
	return r
}

// run reads the pieces in order until end, an error or Close.
func (r *coldReader) run(pos int64) {
	defer close(r.done)
	defer close(r.full)
	for pos < r.end {
		var raw []byte
		select {
		case raw = <-r.free:
		case <-r.quit:
			return
		}
		a := pos &^ (coldAlign - 1)
		w := raw[coldRoom:]                      // aligned, coldPiece long
		need := int(min(int64(len(w)), r.end-a)) // bytes of the region in this piece
		n, err := r.readPiece(w, need, a)
		lo, hi := int(pos-a), min(n, need)
		if hi < lo {
			hi = lo
		}
		if err == nil && hi < need {
			err = io.EOF // the file shrank: the caller's stat comparison tells
		}
		r.full <- coldRead{raw: raw, start: coldRoom + lo, end: coldRoom + hi, err: err} // never blocks: full has room for every buffer
		if err != nil {
			return
		}
		pos = a + int64(hi)
	}
}

// giveBack returns a buffer to be read into again, or unmaps it once the
// reader is closed. Savers call it as they finish a segment's chunks,
// which may be after Close.
func (r *coldReader) giveBack(raw []byte) {
	if raw == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		iobuf.Put(raw)
		return
	}
	r.free <- raw // never blocks: free has room for every buffer
}

// segment is the work of segments: the next piece, with keep in front.
// keep goes into the room in front of the next piece, whose buffer raw is
// the chunker's until release gives it back (adopt's segment release);
// where keep does not fit, it and the piece are copied into a new buffer,
// raw is nil and the piece's buffer goes back at once.
func (r *coldReader) segment(keep []byte) (raw, buf []byte, start, end int, err error) {
	if r.err != nil {
		return nil, nil, 0, 0, r.err
	}
	c, ok := <-r.full
	if !ok {
		r.err = io.EOF
		return nil, nil, 0, 0, r.err
	}
	r.err = c.err // after this piece's bytes
	if c.end == c.start {
		r.giveBack(c.raw)
		if r.err == nil {
			r.err = io.EOF
		}
		return nil, nil, 0, 0, r.err
	}
	if s := c.start - len(keep); s >= 0 {
		copy(c.raw[s:], keep)
		return c.raw, c.raw, s, c.end, nil
	}
	coldMerged.Add(1)
	merged := make([]byte, len(keep)+c.end-c.start)
	copy(merged[copy(merged, keep):], c.raw[c.start:c.end])
	r.giveBack(c.raw)
	return nil, merged, 0, len(merged), nil
}

// segments is the chunker's SegmentSource over the pieces, each buffer it
// returns adopted by segs, which gives it back to the reader once the
// chunker has moved past it and its chunks are saved.
func (r *coldReader) segments(segs *segFile) chunkstore.SegmentSource {
	return func(keep []byte) ([]byte, int, int, error) {
		raw, buf, start, end, err := r.segment(keep)
		if err != nil {
			return nil, 0, 0, err
		}
		release := func() {} // a merged buffer: the collector's
		if raw != nil {
			r.lent.Add(1)
			release = func() { r.lent.Add(-1); r.giveBack(raw) }
		}
		segs.adopt(buf, release)
		return buf, start, end, nil
	}
}

// readPiece fills w from the file's offset a (aligned) until need bytes
// are in or the file ends, and returns how many bytes are in.
func (r *coldReader) readPiece(w []byte, need int, a int64) (int, error) {
	fd := int(r.f.Fd())
	if r.dfd >= 0 && !cached(fd, a, need) {
		// O_DIRECT lengths are aligned too; past the end of the file the
		// read comes back short.
		n, err := readFull(r.dfd, w[:min(len(w), (need+coldAlign-1)&^(coldAlign-1))], a)
		if err != unix.EINVAL {
			coldDirect.Add(1)
			return n, err
		}
		unix.Close(r.dfd)
		r.dfd = -1
	}
	return readFull(fd, w[:need], a)
}

// cached reports whether the page cache holds all of bytes [off,
// off+n) of fd: then a buffered read only copies them. Not a read that
// would fail rather than block (RWF_NOWAIT): that starts the kernel's
// read-ahead of what is missing, which the O_DIRECT read would then read
// again. A kernel without cachestat (before 6.5) reads such a piece
// with O_DIRECT too.
func cached(fd int, off int64, n int) bool {
	c, _ := cacheState(fd, off, n)
	return c
}

// cacheState is cached, with known false where the kernel could not say
// (no cachestat): then cached is false too.
func cacheState(fd int, off int64, n int) (cached, known bool) {
	var st unix.Cachestat_t
	rg := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	if unix.Cachestat(uint(fd), &rg, &st, 0) != nil {
		return false, false
	}
	return int64(st.Cache)*int64(os.Getpagesize()) >= int64(n), true
}

// readFull reads into b from off until b is full or the file ends.
func readFull(fd int, b []byte, off int64) (int, error) {
	got := 0
	for got < len(b) {
		n, err := unix.Pread(fd, b[got:], off+int64(got))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			break
		}
		got += n
	}
	return got, nil
}

func (r *coldReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.curRaw != nil {
			r.giveBack(r.curRaw)
			r.curRaw = nil
		}
		if r.err != nil {
			return 0, r.err
		}
		c, ok := <-r.full
		if !ok {
			r.err = io.EOF
			continue
		}
		r.cur, r.curRaw, r.err = c.raw[c.start:c.end], c.raw, c.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the reading, waits for the read in flight and unmaps the
// buffers it holds; those the chunker's segments hold are unmapped as
// they are given back.
func (r *coldReader) Close() {
	close(r.quit)
	<-r.done
	if r.dfd >= 0 {
		unix.Close(r.dfd)
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for c := range r.full { // closed by run
		iobuf.Put(c.raw)
	}
	r.giveBack(r.curRaw)
	r.curRaw, r.cur = nil, nil
	for {
		select {
		case raw := <-r.free:
			iobuf.Put(raw)
		default:
			return
		}
	}
}
