package engine

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// Progress counts the work of one backup, restore or verify while it runs,
// for a display that polls it (Status). The engine updates it on the
// goroutines doing the work with atomic adds, so a run pays a few
// uncontended atomic operations per chunk and a short lock per file;
// nothing waits for the display. The zero value is ready; a nil *Progress
// counts nothing. One Progress serves one run.
//
// What is counted:
//   - backup: files and bytes of the source as they are read, bytes after
//     each chunk (so a large file or a block device moves too); unchanged
//     files count whole when reused; holes count as done when found.
//     The totals come from a scan of the source that runs beside the walk
//     with the same exclusions; until it ends (Status.TotalsFinal) they
//     only grow.
//   - restore: files and bytes as written; the totals come from the
//     point's trees, read beside the restore.
//   - verify with ReadData: packs (as files) and their bytes as read back.
type Progress struct {
	filesDone, filesTotal atomic.Int64
	bytesDone, bytesTotal atomic.Int64
	errors                atomic.Int64
	totalsFinal           atomic.Bool

	mu      sync.Mutex
	current []string // paths in work, oldest first

	// Item, if set, is called with each file's path as it is finished
	// (saved, restored, or a pack read back), on the goroutine that
	// finished it; it must be safe for concurrent calls. Set it before
	// the run starts.
	Item func(path string)
	// Saved, if set, is called by a backup for each file finished, in
	// place of Item, with how it was found: "new" (not in the parent
	// point), "modified", "unchanged" (its content taken from the parent
	// point unread), or "skipped" (not read: its warning says why).
	Saved func(path, how string)
}

// Status is a snapshot of a Progress.
type Status struct {
	FilesDone, FilesTotal int64
	BytesDone, BytesTotal int64
	// Errors counts entries skipped or flagged so far.
	Errors int64
	// TotalsFinal: the totals are complete (the backup's scan ended).
	TotalsFinal bool
	// Current lists the paths being worked on, oldest first, at most
	// maxCurrent of them.
	Current []string
}

// Status returns the counts so far; it may be called from any goroutine.
func (p *Progress) Status() Status {
	s := Status{
		FilesDone: p.filesDone.Load(), FilesTotal: p.filesTotal.Load(),
		BytesDone: p.bytesDone.Load(), BytesTotal: p.bytesTotal.Load(),
		Errors: p.errors.Load(), TotalsFinal: p.totalsFinal.Load(),
	}
	// The totals come from a scan beside the work; a file that grew
	// after it, or was read again because it changed while read, makes
	// more done than the scan counted. The total is at least what is
	// done: never "209 MiB of 88 MiB".
	s.BytesTotal = max(s.BytesTotal, s.BytesDone)
	s.FilesTotal = max(s.FilesTotal, s.FilesDone)
	p.mu.Lock()
	s.Current = slices.Clone(p.current[:min(len(p.current), maxCurrent)])
	p.mu.Unlock()
	return s
}

// maxCurrent is the most paths Status lists: a restore has as many files
// in work as its queue holds.
const maxCurrent = 8

func (p *Progress) addBytes(n int64) {
	if p != nil {
		p.bytesDone.Add(n)
	}
}

func (p *Progress) addError() {
	if p != nil {
		p.errors.Add(1)
	}
}

func (p *Progress) addTotal(files, bytes int64) {
	if p != nil {
		p.filesTotal.Add(files)
		p.bytesTotal.Add(bytes)
	}
}

// begin marks path as in work; fileDone ends it.
func (p *Progress) begin(path string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.current = append(p.current, path)
	p.mu.Unlock()
}

// fileDone counts a file finished, and takes it off the current list if
// it is there.
func (p *Progress) fileDone(path string) { p.fileSaved(path, "") }

// fileSaved is fileDone for a backup, saying how the file was found
// (Saved); how is "" for a restore's or verify's file.
func (p *Progress) fileSaved(path, how string) {
	if p == nil {
		return
	}
	p.fileDropped(path)
	p.filesDone.Add(1)
	switch {
	case p.Saved != nil && how != "":
		p.Saved(path, how)
	case p.Item != nil && how != "skipped":
		p.Item(path)
	}
}

// linkSaved lists (Saved) a further name of a file with hard links, read
// once under its first name: the totals (the scan's) count the file once.
func (p *Progress) linkSaved(path, how string) {
	if p != nil && p.Saved != nil {
		p.Saved(path, how)
	}
}

// fileKept counts a file a resumed restore found in place whole, with
// its bytes: done, but not listed as restored (Item).
func (p *Progress) fileKept(size int64) {
	if p == nil {
		return
	}
	p.filesDone.Add(1)
	p.addBytes(size)
}

// fileDropped takes a file off the current list without counting it
// done: a restore stopped before it was written whole, and removed it.
func (p *Progress) fileDropped(path string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if i := slices.Index(p.current, path); i >= 0 {
		p.current = slices.Delete(p.current, i, i+1)
	}
	p.mu.Unlock()
}

// startScan counts the totals of a backup of abs (whose stat is st) in its
// own goroutine and returns the function that stops it and waits. The
// scan decides as saveDir does what the backup reads: the same exclusions,
// mount points, the store's own directory, and each hard-linked file once,
// so that at the end done equals total when nothing changed meanwhile.
// It only stats and lists, and never holds up the walk.
func (b *backuper) startScan(abs string, st *unix.Stat_t) func() {
	p := b.opts.Progress
	if p == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			s := scanner{b: b, ctx: ctx, p: p, links: map[devIno]bool{}}
			s.dir(abs, "", st.Dev)
		case unix.S_IFBLK:
			size := int64(0)
			if f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
				size, _ = blockDeviceSize(f)
				f.Close()
			}
			p.addTotal(1, size)
		default:
			p.addTotal(1, st.Size)
		}
		if ctx.Err() == nil {
			p.totalsFinal.Store(true)
		}
	}()
	return func() { cancel(); <-done }
}

type scanner struct {
	b     *backuper
	ctx   context.Context
	p     *Progress
	links map[devIno]bool
}

// dir mirrors saveDir's choices for the directory path (rel in the
// backup), whose st_dev is dev.
func (s *scanner) dir(path, rel string, dev uint64) {
	ex := s.b.ex
	var ents []dirEntry
	if m := ex.marker(path); m != "" {
		ents = []dirEntry{{name: m}}
	} else {
		var err error
		if ents, err = readDir(path); err != nil {
			return
		}
	}
	for _, ent := range ents {
		if s.ctx.Err() != nil {
			return
		}
		cpath, crel := filepath.Join(path, ent.name), filepath.Join(rel, ent.name)
		if ex.byName(crel, ent.name) || ent.isDir && ex.byType(crel, ent.name) {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(cpath, &st) != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if ex.largerThan > 0 && st.Size > ex.largerThan {
				continue
			}
			if st.Dev != dev && !s.enters(cpath, st.Dev) {
				continue
			}
			if st.Nlink > 1 {
				k := devIno{st.Dev, st.Ino}
				if s.links[k] {
					continue // the backup reads a hard link's content once
				}
				s.links[k] = true
			}
			s.p.addTotal(1, st.Size)
		case unix.S_IFDIR:
			if !ent.isDir && ex.byType(crel, ent.name) {
				continue
			}
			if st.Ino == s.b.store.ino && st.Dev == s.b.store.dev {
				continue
			}
			if st.Dev != dev && !s.enters(cpath, st.Dev) {
				continue
			}
			s.dir(cpath, crel, st.Dev)
		}
	}
}

// enters is crossMount without its records: whether the backup goes into
// the file system boundary at path.
func (s *scanner) enters(path string, dev uint64) bool {
	if s.b.ex.oneFS {
		return false
	}
	return neverRead(s.b.fsTypes.fsType(path, dev)) == ""
}

// restoreTotals is the part of the walk beside a restore (walkBeside)
// that counts its totals from the point's trees; nil without progress. A
// hard-link group's content is written once, so its bytes count once;
// every name counts as a file.
func (p *Progress) restoreTotals() *besideVisitor {
	if p == nil {
		return nil
	}
	return &besideVisitor{
		visit: func(n *Node, follower bool) {
			size := int64(n.Size)
			if follower {
				size = 0
			}
			p.addTotal(1, size)
		},
		end: func(complete bool) {
			if complete {
				p.totalsFinal.Store(true)
			}
		},
	}
}

// packTotals sets a verify's totals: every pack, whole.
func (p *Progress) packTotals(sizes map[chunkstore.ID]int64) {
	if p == nil {
		return
	}
	var bytes int64
	for _, n := range sizes {
		bytes += n
	}
	p.addTotal(int64(len(sizes)), bytes)
	p.totalsFinal.Store(true)
}

// milliRound rounds seconds to milliseconds, as the reports' JSON gives
// them (1.268, not 1.2678414390000001).
func milliRound(sec float64) float64 { return math.Round(sec*1000) / 1000 }
