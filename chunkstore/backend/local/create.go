package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/iobuf"
	"golang.org/x/sys/unix"
)

// directChunk is the unit of O_DIRECT writes: file bytes collect in an
// aligned buffer of this size and go to disk without the page-cache copy,
// which otherwise costs as much CPU as chunking. The unaligned tail is
// written through an ordinary descriptor at Commit. File systems without
// O_DIRECT (tmpfs before Linux 6.6) get ordinary writes. The staging
// buffers come from internal/iobuf, of huge pages where the kernel has
// them: a 2 MiB write from one is one request to the disk, not several;
// a writer that makes many small packs (garbage collection's rewrites)
// takes the same few again from its pool.
//
// 2 MiB, not 4: each pack being written holds two (one filling, one
// being written). The bench set's first backup peaked at 125-138 MiB
// against 142-151 MiB with 4 MiB, warm, three interleaved pairs, in the
// same time (4.80-5.07 s against 4.64-5.12 s; cold 5.39-5.75 s against
// 5.34-5.68 s).
const directChunk = 2 << 20

// Create starts a file in tmp/.
func (b *Backend) Create(ctx context.Context, t backend.FileType) (backend.FileWriter, error) {
	return b.create(ctx, t, "", -1)
}

// CreateTagged starts a file in tmp/<tag>/, which CleanTemp(tag) empties.
func (b *Backend) CreateTagged(ctx context.Context, t backend.FileType, tag string) (backend.FileWriter, error) {
	if err := (backend.Handle{Type: t, Name: tag}).Valid(); err != nil {
		return nil, fmt.Errorf("temp tag: %w", err)
	}
	return b.create(ctx, t, tag, -1)
}

// CreateSized is CreateTagged for a file expected to be about size bytes:
// one smaller than two staging buffers is written through the page cache.
func (b *Backend) CreateSized(ctx context.Context, t backend.FileType, tag string, size int64) (backend.FileWriter, error) {
	if err := (backend.Handle{Type: t, Name: tag}).Valid(); err != nil {
		return nil, fmt.Errorf("temp tag: %w", err)
	}
	return b.create(ctx, t, tag, size)
}

// create starts a file of about size bytes (below 0: not known).
func (b *Backend) create(ctx context.Context, t backend.FileType, tag string, size int64) (backend.FileWriter, error) {
	if err := (backend.Handle{Type: t, Name: "x"}).Valid(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, "tmp", tag)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, full(err)
	}
	f, err := os.CreateTemp(dir, t.String()+"-*")
	if err != nil {
		return nil, full(err)
	}
	if !isTempNameOf(t, filepath.Base(f.Name())) {
		// CleanTemp would never remove it: a Go whose CreateTemp names
		// files otherwise must fail here, not leave temp files that
		// pile up in tmp/ for good.
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("temp file %s: not named as CleanTemp expects (<type>-<digits>)", f.Name())
	}
	if err := fault(StepCreate, f.Name(), ""); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	p := &fileWriter{b: b, t: t, f: f}
	// O_DIRECT pays for large files not read back soon: packs. A small
	// file is not worth a staging buffer, and an index file is read as
	// soon as it is written (its summary when it is adopted, its blocks
	// by lookups), so the page cache is where it should be.
	if size >= 0 && size < 2*directChunk || t == backend.Index {
		return p, nil
	}
	d, err := os.OpenFile(f.Name(), os.O_WRONLY|unix.O_DIRECT, 0)
	if err == nil {
		p.direct = d
	}
	return p, nil
}

// fileWriter is a file being built in tmp/.
//
// With O_DIRECT, a full staging buffer is written by a goroutine of its own
// while the caller fills a second one: the caller (a chunk store writer,
// which holds its lock while it appends) would otherwise wait for the disk
// at every 2 MiB, and with it every saver of the backup. At most one write
// is in flight; its error is returned by the next Write, Sync or Commit.
type fileWriter struct {
	b       *Backend
	t       backend.FileType
	f       *os.File   // ordinary descriptor (tail, fsync)
	direct  *os.File   // O_DIRECT descriptor, or nil
	buf     []byte     // staging buffer being filled (direct only; iobuf's)
	spare   []byte     // the other buffer: in flight, or free
	writing chan error // the write in flight, or nil
	n       int        // bytes staged in buf
	flushed int64      // bytes handed to direct writes
	failed  error      // a write behind, or Sync, failed: Commit must not rename
	done    bool
	synced  bool // Sync was called: no more writes
}

// Write appends p.
func (w *fileWriter) Write(p []byte) (int, error) {
	if w.failed != nil {
		return 0, w.failed
	}
	if w.done || w.synced {
		return 0, errors.New("write to a finished file")
	}
	if w.direct == nil {
		if err := fault(StepWrite, w.f.Name(), ""); err != nil {
			return 0, err
		}
		n, err := w.f.Write(p)
		return n, full(err)
	}
	// A failed write behind is seen here if it is over; one still in
	// flight is waited for only when its buffer is needed (below).
	select {
	case err := <-w.writing:
		if err := w.written(err); err != nil {
			return 0, err
		}
	default:
	}
	if w.buf == nil {
		// Taken at the first write: a file that is created and saved
		// at once (Save) holds a buffer only while it is written.
		w.buf = iobuf.Get(directChunk)
	}
	total := len(p)
	for len(p) > 0 {
		c := copy(w.buf[w.n:], p)
		w.n += c
		p = p[c:]
		if w.n == len(w.buf) {
			if err := w.wait(); err != nil {
				return 0, err
			}
			w.writeBehind()
		}
	}
	return total, nil
}

// writeBehind starts the write of the full staging buffer and makes the
// spare buffer the one being filled.
func (w *fileWriter) writeBehind() {
	buf, off, name := w.buf, w.flushed, w.f.Name()
	w.flushed += int64(w.n)
	w.n = 0
	if w.spare == nil {
		w.spare = iobuf.Get(directChunk)
	}
	w.buf, w.spare = w.spare, w.buf
	ch := make(chan error, 1)
	w.writing = ch
	direct := w.direct
	go func() {
		if err := fault(StepWrite, name, ""); err != nil {
			ch <- err
			return
		}
		_, err := direct.WriteAt(buf, off)
		ch <- full(err)
	}()
}

// wait waits for the write in flight, if any, and returns its error.
func (w *fileWriter) wait() error {
	if w.writing == nil {
		return nil
	}
	return w.written(<-w.writing)
}

// written records the end of the write in flight, with its error. The
// file has a hole where a write failed: nothing more may be written, and
// Commit fails.
func (w *fileWriter) written(err error) error {
	w.writing = nil
	if err != nil {
		w.failed = err
	}
	return err
}

// Commit writes the staged tail, fsyncs, renames the file into place and
// fsyncs its directory. On error the temp file is removed.
func (w *fileWriter) Commit(ctx context.Context, name string) error {
	if w.done {
		return errors.New("commit of a finished file")
	}
	h := backend.Handle{Type: w.t, Name: name}
	if err := h.Valid(); err != nil {
		w.Abort()
		return err
	}
	if err := w.commit(ctx, h); err != nil {
		w.Abort()
		return full(err)
	}
	return nil
}

// Sync writes the staged tail and fsyncs the temp file: killed after it,
// the writer leaves the whole file in tmp/<tag>/ (ListTemp, LoadTemp).
func (w *fileWriter) Sync() error {
	if w.done {
		return errors.New("sync of a finished file")
	}
	w.synced = true
	if err := w.sync(); err != nil {
		// The file may lack its tail or its fsync: Commit must not
		// rename it into place.
		w.failed = full(err)
		return w.failed
	}
	return nil
}

func (w *fileWriter) sync() error {
	if err := w.wait(); err != nil {
		return err
	}
	if w.failed != nil {
		return w.failed
	}
	if w.direct != nil && w.n > 0 {
		if err := fault(StepWrite, w.f.Name(), ""); err != nil {
			return err
		}
		if _, err := w.f.WriteAt(w.buf[:w.n], w.flushed); err != nil {
			return err
		}
		w.flushed += int64(w.n)
		w.n = 0
	}
	// Nothing more is written: the buffers go back before the fsync,
	// which can take long, so a pack being finished holds none (a
	// backup finishes up to two while filling the next).
	w.putBuffers()
	if err := fault(StepSync, w.f.Name(), ""); err != nil {
		return err
	}
	return w.f.Sync()
}

func (w *fileWriter) commit(ctx context.Context, h backend.Handle) error {
	if w.failed != nil {
		return w.failed
	}
	if !w.synced { // else nothing was written since
		if err := w.sync(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := w.b.Path(h)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	if err := fault(StepRename, w.f.Name(), final); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return crossDevice(w.b.dir, final, err)
		}
		return err
	}
	w.done = true
	w.close()
	w.b.forget(h)
	return syncDir(filepath.Dir(final))
}

// crossDevice is the error of a commit whose rename from tmp/ to final
// crossed file systems: tmp/ (or final's directory) is a symlink to
// another disk. A file appears whole or not at all only because it is
// renamed into place, which cannot cross file systems (a copy would
// show it half-written), so tmp/ must be where the store's files are.
func crossDevice(dir, final string, err error) error {
	tmp, dst := filepath.Join(dir, "tmp"), filepath.Dir(final)
	return fmt.Errorf("%w: %s and %s are on different file systems (a symlink to another disk?), and recall builds each file in the one and renames it into the other: put %s on the file system of the store's files (a directory there, or a symlink to one)",
		err, tmp, dst, tmp)
}

func (w *fileWriter) close() {
	w.wait() // its error is the caller's no longer: the file is done
	w.putBuffers()
	if w.direct != nil {
		w.direct.Close()
		w.direct = nil
	}
	w.f.Close()
}

// putBuffers gives the staging buffers back; there is no write in flight.
func (w *fileWriter) putBuffers() {
	iobuf.Put(w.spare)
	iobuf.Put(w.buf)
	w.buf, w.spare = nil, nil
}

// Abort removes the temp file.
func (w *fileWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.close()
	return os.Remove(w.f.Name())
}

// ListTemp lists the files of type t in tmp/<tag>/ (every tag, and tmp/
// itself, for tag ""): those writers left that never committed them.
func (b *Backend) ListTemp(ctx context.Context, tag string, t backend.FileType, fn func(tag, name string, size int64) error) error {
	if err := (backend.Handle{Type: t, Name: "x"}).Valid(); err != nil {
		return err
	}
	tags := []string{tag}
	if tag == "" {
		ents, err := os.ReadDir(filepath.Join(b.dir, "tmp"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list temp files: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				tags = append(tags, e.Name())
			}
		}
	} else if err := (backend.Handle{Type: t, Name: tag}).Valid(); err != nil {
		return fmt.Errorf("temp tag: %w", err)
	}
	for _, tg := range tags {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(b.dir, "tmp", tg))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list temp files of %q: %w", tg, err)
		}
		for _, e := range ents {
			// Exactly what CleanTemp removes: garbage collection
			// counts what it lists as removed with the area.
			if !e.Type().IsRegular() || !isTempNameOf(t, e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if err := fn(tg, e.Name(), info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTempName reports whether name is one create gives a file it starts:
// "<type>-" and os.CreateTemp's digits (packs-123). CleanTemp removes
// those and nothing else from tmp/, which may hold what is not ours.
func isTempName(name string) bool {
	for _, t := range backend.FileTypes {
		if isTempNameOf(t, name) {
			return true
		}
	}
	return false
}

func isTempNameOf(t backend.FileType, name string) bool {
	rest, ok := strings.CutPrefix(name, t.String()+"-")
	return ok && allDigits(rest)
}

// LoadTemp reads a whole file ListTemp named.
func (b *Backend) LoadTemp(ctx context.Context, tag, name string, buf []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if tag != "" && (strings.ContainsAny(tag, `/\`) || strings.HasPrefix(tag, ".")) || name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("temp file %q of %q: not a temp file's name", name, tag)
	}
	f, err := os.Open(filepath.Join(b.dir, "tmp", tag, name))
	if err != nil {
		return nil, notExist(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if int64(cap(buf)) < st.Size() {
		buf = make([]byte, st.Size())
	}
	buf = buf[:st.Size()]
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), buf); err != nil {
		return nil, fmt.Errorf("read temp file %s: %w", f.Name(), err)
	}
	return buf, nil
}
