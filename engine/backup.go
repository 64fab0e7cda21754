package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/procs"
	"golang.org/x/sys/unix"
)

// RootMeta is the metadata of the backed-up directory itself (for a file or
// device source: of the directory holding it), applied to the restore
// target and shown as the point's root directory.
type RootMeta struct {
	Mode    uint32  `json:"mode"`
	UID     uint32  `json:"uid"`
	GID     uint32  `json:"gid"`
	MtimeNS int64   `json:"mtime_ns"`
	CtimeNS int64   `json:"ctime_ns,omitempty"`
	AtimeNS int64   `json:"atime_ns"`
	Nlink   uint64  `json:"nlink,omitempty"`
	Xattrs  []Xattr `json:"xattrs,omitempty"`
	// Flags are the root directory's inode flags (Node.Flags).
	Flags uint32 `json:"flags,omitempty"`
}

// BackupOptions configure one backup.
type BackupOptions struct {
	Path   string // what to back up: directory, regular file or block device
	Source string // data source name; "" derives it from Path
	// SourceDerived says Source is the name derived from Path (as ""
	// does): a source whose latest point is of another path is then
	// refused (ErrSourcePathClash), since two paths can derive one name
	// ("/a/x-y" and "/a/x/y").
	SourceDerived bool
	Host          string
	Now           func() time.Time // clock; nil = time.Now
	// Files is how many files larger than one chunk are read at once
	// (0: 4); files of one chunk are read 8x as many at once, since they
	// wait on the disk, not on a CPU (readahead.go). It is also how many
	// directories are walked at once (subDir); with 1 the walk is one, in
	// order.
	Files int
	// Log receives progress and warning lines; nil discards them.
	Log func(format string, args ...any)
	// Info receives the lines that say what the backup does, not what
	// went wrong (a file read again, the store left out), which --quiet
	// drops; nil: Log.
	Info func(format string, args ...any)

	// Progress, if set, counts the backup as it runs (see Progress).
	Progress *Progress

	// Exclude says what to leave out; it is recorded in the point.
	// Pseudo file systems and recall recovery trees are left out always.
	Exclude Exclude
	// Compression is the codec of new blobs ("": the store's default);
	// the point records the one used.
	Compression chunkstore.Compression

	// Group and PolicyVersion name the protection group the backup runs
	// for; Scheduled is the recovery point time it is made for (zero: a
	// sync). The point records all three.
	Group         string
	PolicyVersion uint64
	Scheduled     time.Time

	// Limiter, if set, holds back the reads from the source: it is
	// told every byte read (a group's Limit, backup --limit).
	Limiter Limiter

	// Flagged are entries the caller found wrong before the backup (an
	// ingested image that is not a valid VHDX): they are read as any
	// other and recorded among the point's errors, so the job ends with
	// warnings. Paths are relative to Path, as the point's errors are.
	Flagged []PathError

	hooks *backupHooks // tests only
	// beforeCommit, if set, is the last word once everything is read
	// (Ingest's last look at the tree): an error aborts the point.
	beforeCommit func() error
}

// backupHooks let tests change the file system at exact moments.
type backupHooks struct {
	afterReadDir  func(dir string)           // after a directory was listed
	beforeReadDir func(dir string)           // after its lstat, before a directory is opened to be listed
	afterRead     func(path string, try int) // after a file was read, before the second stat
	afterRegions  func(path string)          // a large file's data regions are known, before they are read
	beforeOpen    func(path string)          // a file's content is about to be opened (after its lstat)
}

// clockSkew is how far a point's time may be ahead of a backup's start
// before the backup says the clock was ahead when it was made.
const clockSkew = time.Minute

// optionError is an ErrBadOption whose message is its own.
type optionError struct{ msg string }

func (e *optionError) Error() string { return e.msg }
func (e *optionError) Unwrap() error { return ErrBadOption }

// SourceName derives a data source name from a path: "/srv/www" ->
// "srv-www", "/" -> "root". The result always passes ValidSourceName:
// '/' becomes '-'; ':' and control characters become '_'; a name the
// recovery tree reserves gets a leading '_'; a name longer than
// maxSourceName is cut and ends in a hash of the whole, so two long paths
// still give two names.
func SourceName(path string) string {
	p := strings.Trim(filepath.Clean(path), "/")
	if p == "" || p == "." {
		return "root"
	}
	// Bytes that are not UTF-8 become _xHH: as U+FFFD, which is what
	// ranging over them gives, two directories whose names differ only
	// there were one source.
	var b strings.Builder
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRuneInString(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "_x%02x", p[i])
		case r == '/':
			b.WriteByte('-')
		case r == ':' || r < 0x20 || r == 0x7f:
			b.WriteByte('_')
		default:
			b.WriteString(p[i : i+n])
		}
		i += n
	}
	name := b.String()
	if name == "latest" || strings.HasPrefix(name, "@GMT-") {
		name = "_" + name
	}
	if len(name) > maxSourceName {
		sum := fnv.New32a()
		sum.Write([]byte(name))
		cut := maxSourceName - 9
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = fmt.Sprintf("%s-%08x", name[:cut], sum.Sum32())
	}
	return name
}

// asStored is s as a manifest's JSON gives it back: each byte that is not
// UTF-8 a U+FFFD. A point's path is stored so (its tree keeps names
// exactly); compared with the path as it is, a directory whose name is
// not UTF-8 was another path than its own last point's, and every backup
// of it after the first was refused as a clash of source names. The name
// derived from the path keeps those bytes (_xHH), so two such paths are
// still two sources.
func asStored(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b, _ := json.Marshal(s)
	var out string
	if json.Unmarshal(b, &out) != nil {
		return s
	}
	return out
}

// maxSourceName is the longest source name, in bytes.
const maxSourceName = 200

// ValidSourceName reports why name cannot be a source name, or nil. A
// name is one component of the recovery tree's paths and a line of
// listings and of Samba's configuration, so it holds no '/', no ':'
// (Samba's snapshot names forbid it) and no control characters; "latest"
// and "@GMT-..." are the tree's own names in a source's directory.
func ValidSourceName(name string) error {
	const allowed = "a source name is 1 to 200 bytes without '/', ':' or control characters, " +
		"and is not \".\", \"..\", \"latest\" or \"@GMT-...\""
	bad := func(why string) error {
		// ErrBadOption for the exit code, but not its words: a source
		// is named by 'source add' and groups too, not only by backup.
		return &optionError{fmt.Sprintf("invalid source name %q: %s; %s", name, why, allowed)}
	}
	switch {
	case name == "":
		return bad("empty")
	case name == "." || name == ".." || name == "latest":
		return bad("reserved")
	case strings.HasPrefix(name, "@GMT-"):
		return bad("the recovery tree names its points @GMT-...")
	case strings.ContainsAny(name, "/:"):
		return bad("'/' and ':' are not allowed")
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return bad("control characters are not allowed")
	case len(name) > maxSourceName:
		return bad(fmt.Sprintf("%d bytes long", len(name)))
	}
	return nil
}

// dirID is the device and inode of path (a store's directory), or false
// when there is none ("" for a store on an object store) or it cannot be
// stat'ed.
func dirID(path string) (devIno, bool) {
	var st unix.Stat_t
	if path == "" || unix.Stat(path, &st) != nil {
		return devIno{}, false
	}
	return devIno{st.Dev, st.Ino}, true
}

// inside reports whether path, or a directory above it, is dir (by device
// and inode: a symlink or bind mount does not hide it).
func inside(path string, dir devIno) bool {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	for {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Dev == dir.dev && st.Ino == dir.ino {
			return true
		}
		up := filepath.Dir(path)
		if up == path {
			return false
		}
		path = up
	}
}

// ErrWarnings marks a backup or restore that finished but skipped or
// flagged some entries; the point (or restore) exists.
var ErrWarnings = errors.New("completed with warnings")

type devIno struct{ dev, ino uint64 }

type linkGroup struct {
	id     uint64
	leader *Node
	done   chan struct{}
}

type backuper struct {
	// prevFlags: the parent point recorded inode flags (Point.InodeFlags),
	// so an unchanged file's are its node's there.
	prevFlags bool
	root      string // the absolute path backed up
	r         *Reader
	st        StoreReader
	w         *chunkstore.Writer
	opts      BackupOptions
	cpus      int // procs.CPUs(): savers, and whether a file is cut in parallel
	ctx       context.Context
	fatal     func(error)

	fileSem  chan struct{}
	smallSem chan struct{} // files read in one piece (readahead.go)
	walkers  chan struct{} // directories walked beside the walk that found them
	hints    *hinter       // readahead.go; nil: no hints
	chunkQ   chan *chunkJob
	bufs     *budget
	chunkers *chunkerPool // for sequential and parallel chunking
	segs     *segPool     // the sequential chunkers' buffers, whose chunks are saved without a copy (segments.go)

	errMu  sync.Mutex
	errs   []PathError
	mounts []MountPoint // not entered because of Exclude.OneFileSystem

	ex      *excluder
	fsTypes *mountTable
	store   devIno // the store's directory, never backed up into itself

	hlMu    sync.Mutex
	links   map[devIno]*linkGroup
	linkIDs map[uint64]bool // the ids links holds: two groups never share one

	files, dirs, others, bytes, nUnchanged atomic.Int64

	// discarded are the blobs first stored by reads of a file that
	// changed under them and was read again, with their raw sizes: the
	// point does not use them (gc collects them), so its stats leave them
	// out, unless a later read uses one after all (keepUsed).
	// hasDiscarded spares the savers the lock while there are none.
	discMu       sync.Mutex
	discarded    map[chunkstore.ID]int64
	hasDiscarded atomic.Bool

	// reading counts files whose content is being read. A large file is
	// chunked in parallel only while it is the only one: with other files
	// in flight both cores are busy already, and parallel chunking reads
	// every byte twice.
	reading atomic.Int32
}

type chunkJob struct {
	buf   *chunkBuf
	ext   *Extent
	wg    *sync.WaitGroup
	err   *atomic.Pointer[error]
	fresh *freshBlobs // the blobs this read of the file stored first
}

// saversPerCPU: savers hash and compress (CPU work), and also wait: for
// a zstd encoder, the writer's lock, a pack buffer, the write behind.
const saversPerCPU = 2

// chunkBudget bounds the chunk bytes a backup holds in flight: room for
// two chunks of the largest size (8 MiB). 32 MiB before; with 20 MiB the
// bench set's first backup peaked 10-20 MiB lower (warm 131-141 MiB
// against 142-152 MiB, four runs each; cold 135-147 against 153-156, three
// interleaved pairs) and took no longer, warm or cold, as did the
// small-file set, one 2 GiB file and the set with s2. Since the chunks of
// a large file read in sequence are held in its segments (segments.go),
// not here, the budget holds small files and the parallel cuts of a file
// read alone: at 16 MiB the cold first backup peaked 119-134 MiB against
// 130-141 MiB at 20 (three interleaved pairs), in the same time.
const chunkBudget = 16 << 20

// info passes a line on to Info, else to Log.
func (b *backuper) info(format string, args ...any) {
	if f := infoOr(b.opts.Info, b.opts.Log); f != nil {
		f(format, args...)
	}
}

// infoOr is where the lines --quiet drops go: info, or log when info is
// nil (BackupOptions.Info).
func infoOr(info, log func(format string, args ...any)) func(format string, args ...any) {
	if info != nil {
		return info
	}
	return log
}

func (b *backuper) warn(path string, err error) {
	if b.ctx.Err() != nil {
		return // the backup is failing as a whole; that error is reported
	}
	b.errMu.Lock()
	b.errs = append(b.errs, PathError{Path: path, Error: err.Error()})
	b.errMu.Unlock()
	b.opts.Progress.addError()
	if b.opts.Log != nil {
		b.opts.Log("warning: %s: %v", path, err)
	}
}

// Backup backs up opts.Path as a new recovery point of its source, reusing
// unchanged files from the source's latest point, in the write session s
// (see BackupSource for the source to open it for). On success the point
// is committed; if entries were skipped the error wraps ErrWarnings and
// the point is still returned.
func Backup(ctx context.Context, s *Session, opts BackupOptions) (*Point, error) {
	defer procs.Raise()()
	r := s.Reader()
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	start := now().UTC()
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, err
	}
	derived := opts.SourceDerived || opts.Source == ""
	if opts.Source, err = BackupSource(abs, opts.Source); err != nil {
		return nil, err
	}
	if s.source != "" && s.source != opts.Source {
		return nil, fmt.Errorf("backup of source %q in a session opened for source %q: open the session with BackupSource", opts.Source, s.source)
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Files <= 0 {
		opts.Files = 4
	}
	ex, err := opts.Exclude.compile()
	if err != nil {
		return nil, err
	}
	if opts.Log != nil {
		// Patterns are matched from the backed-up directory, as
		// .gitignore's: the file system path of something in it, a
		// common slip, matches nothing, and nothing else would say so.
		pats := slices.Clone(opts.Exclude.Patterns)
		for _, f := range opts.Exclude.Files {
			pats = append(pats, f.Patterns...)
		}
		for _, pat := range pats {
			if rest, ok := strings.CutPrefix(pat, abs+"/"); ok && abs != "/" {
				opts.Log("warning: exclude pattern %q is matched from the backed-up directory %s, so it leaves out %s/%s, which is likely not there; to leave out %s write %q", pat, abs, abs, strings.TrimPrefix(pat, "/"), pat, "/"+rest)
			}
		}
	}
	storeAt, ok := dirID(r.st.Dir())
	if ok && inside(abs, storeAt) {
		return nil, fmt.Errorf("backup source %s is the store this backup writes to (%s) or inside it: it would grow with every backup of itself; protect the store with 'recall copy' or tape", abs, r.st.Dir())
	}
	w, err := s.writer()
	if err != nil {
		return nil, err
	}
	if err := setCompression(w, opts.Compression); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return nil, fmt.Errorf("backup source %s: %w", abs, err)
	}
	fsTypes := &mountTable{}
	if why := neverRead(fsTypes.fsType(abs, st.Dev)); why != "" {
		return nil, fmt.Errorf("backup source %s: %s, which recall never reads; back up the files you want to keep", abs, why)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := &backuper{
		r: r, st: r.st, w: w, opts: opts, cpus: procs.CPUs(), ctx: ctx,
		fatal:   func(err error) { cancel(err) },
		fileSem: make(chan struct{}, opts.Files),
		chunkQ:  make(chan *chunkJob),
		bufs:    newBudget(chunkBudget),
		links:   map[devIno]*linkGroup{},
		linkIDs: map[uint64]bool{},
		ex:      ex,
		fsTypes: fsTypes,
	}
	b.smallSem = make(chan struct{}, smallSlotsPerFile*opts.Files)
	b.walkers = make(chan struct{}, opts.Files-1)
	for _, f := range opts.Flagged {
		b.warn(f.Path, errors.New(f.Error))
	}
	b.hints = startHinter()
	defer b.hints.stop()
	b.store = storeAt
	b.chunkers = newChunkerPool(b.st)
	b.segs = &segPool{}
	stopWake := context.AfterFunc(ctx, b.bufs.wake)
	defer stopWake()
	var savers sync.WaitGroup
	for range saversPerCPU * b.cpus {
		savers.Add(1)
		go func() { defer savers.Done(); b.saver() }()
	}
	defer func() { close(b.chunkQ); savers.Wait() }()

	parent := r.latestOf(opts.Source)
	if parent != nil && derived && parent.Path != abs && parent.Path != asStored(abs) {
		return nil, fmt.Errorf("%w: source %s, the name derived from %s, is the source of %s (its latest point %s): under one name the two would be one source, "+
			"each path's points the other's older versions; give --source NAME to back %s up as a source of its own, or --source %s if it is that data, moved",
			ErrSourcePathClash, opts.Source, seenPath(abs), seenPath(parent.Path), parent.ID.Short(), seenPath(abs), opts.Source)
	}
	var parentRoot *Tree
	if parent != nil {
		if t, err := r.LoadTree(parent.Tree); err == nil {
			parentRoot = t
		}
		if parent.Time.After(start.Add(clockSkew)) && opts.Log != nil {
			// Made while the clock was ahead (a boot before NTP set it):
			// it stays the source's newest, "latest" to restore and to
			// the mount, until its time comes, and every point made
			// meanwhile sorts before it. Logged, not a warning of this
			// point: nothing is wrong with it, and a server already
			// raises a clock alert (each backup "with warnings" for
			// months would hide real ones).
			opts.Log("warning: the newest point of source %s, %s, is dated %s, after this backup's %s: it was made while the clock was ahead, and 'latest' names it, not this point, until then; if its time is wrong, 'recall forget --source %q %s' once this point is made",
				opts.Source, parent.ID.Short(), parent.Time.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339), opts.Source, parent.ID.Short())
		}
	}

	b.prevFlags = parent != nil && parent.InodeFlags
	b.root = abs
	p := &Point{Source: opts.Source, Path: abs, Host: opts.Host, Time: start, Exclude: opts.Exclude, Compression: w.Compression(),
		Group: opts.Group, PolicyVersion: opts.PolicyVersion, Scheduled: opts.Scheduled.UTC(), InodeFlags: true, Reach: reachOf(abs)}
	if parent != nil {
		p.Parent = parent.ID.String()
	}
	stopScan := b.startScan(abs, &st)
	defer stopScan()
	var root *dirFuture
	var meta RootMeta
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		p.Kind = KindTree
		meta = rootMeta(abs, &st)
		root = b.saveDir(abs, "", parentRoot, st.Dev, 0)
	case unix.S_IFREG, unix.S_IFBLK:
		p.Kind = KindFile
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			p.Kind = KindDevice
		}
		var dst unix.Stat_t
		dir := filepath.Dir(abs)
		if err := unix.Stat(dir, &dst); err == nil {
			meta = rootMeta(dir, &dst)
			meta.Xattrs = nil
		}
		root = b.saveSingle(abs, parentRoot)
	default:
		return nil, fmt.Errorf("backup source %s: not a directory, regular file or block device", abs)
	}
	<-root.done
	if cause := context.Cause(ctx); cause != nil {
		s.Abort()
		return nil, cause
	}
	if root.err != nil {
		s.Abort()
		return nil, root.err
	}
	if opts.beforeCommit != nil {
		if err := opts.beforeCommit(); err != nil {
			s.Abort()
			return nil, err
		}
	}
	if err := s.Flush(); err != nil {
		return nil, err
	}
	p.Tree = root.id
	blobs, stored, raw := w.Stats()
	// Less what reads of files that changed under them stored and the
	// point does not use: a file rewritten while read three times
	// counted three times "new" (75 MiB for 30).
	dBlobs, dStored, dRaw := b.discardedStats()
	blobs, stored, raw = blobs-dBlobs, stored-dStored, raw-dRaw
	p.Stats = Stats{Files: b.files.Load(), Dirs: b.dirs.Load(), Others: b.others.Load(), Bytes: b.bytes.Load(),
		Unchanged: b.nUnchanged.Load(), NewBlobs: blobs, NewBytes: raw, StoredBytes: stored,
		DurationNano: int64(now().Sub(start))}
	sort.Slice(b.errs, func(i, j int) bool { return b.errs[i].Path < b.errs[j].Path })
	p.Errors = b.errs
	sort.Slice(b.mounts, func(i, j int) bool { return b.mounts[i].Path < b.mounts[j].Path })
	p.MountPoints = b.mounts
	if p.Kind == KindTree {
		meta.Flags = root.flags
	}
	p.Root = meta
	// The name is given last, among the points there are now (another
	// backup of the source may have committed meanwhile).
	if pts, err := r.knownPoints(); err == nil {
		p.Name = nameFor(p, pts)
	}
	if _, err := s.CommitPoint(p); err != nil {
		return nil, err
	}
	if len(p.Errors) > 0 {
		return p, fmt.Errorf("%w: %d entries skipped or flagged", ErrWarnings, len(p.Errors))
	}
	return p, nil
}

func rootMeta(path string, st *unix.Stat_t) RootMeta {
	m := RootMeta{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MtimeNS: timeNS(st.Mtim), CtimeNS: timeNS(st.Ctim),
		AtimeNS: timeNS(st.Atim), Nlink: uint64(st.Nlink)}
	m.Xattrs, _ = readXattrs(path)
	return m
}

// ErrSourcePathClash: a backup whose source name was derived from its
// path found that source holding points of another path.
var ErrSourcePathClash = errors.New("source name taken by another path")

// BackupSource is the source a backup of path is a point of: source
// when given, else the name derived from path (SourceName). A session for
// the backup is opened for it.
func BackupSource(path, source string) (string, error) {
	if source == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", err
		}
		source = SourceName(abs)
	}
	if err := ValidSourceName(source); err != nil {
		return "", err
	}
	return source, nil
}

// latestOf returns the newest point of a source, or nil.
func (r *Reader) latestOf(source string) *Point {
	pts, err := r.knownPoints()
	if err != nil {
		return nil
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].Source == source {
			return pts[i]
		}
	}
	return nil
}

type dirFuture struct {
	done    chan struct{}
	id      chunkstore.ID
	err     error  // set before done closes
	openErr error  // the directory could not be listed; set before saveDir returns
	flags   uint32 // the directory's inode flags (readFlags); set before done closes
}

// saveSingle backs up one regular file or block device as a root tree
// holding a single entry.
func (b *backuper) saveSingle(path string, parentRoot *Tree) *dirFuture {
	fut := &dirFuture{done: make(chan struct{})}
	go func() {
		defer close(fut.done)
		// A source given through a symlink (LVM's /dev/vg0/lv, the
		// names under /dev/disk/by-id) is read where it leads, under
		// the name it was given: the file is opened without following
		// links, as every file of a tree is.
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			fut.err = fmt.Errorf("backup source %s: %w", path, err)
			return
		}
		var st unix.Stat_t
		if err := unix.Stat(real, &st); err != nil {
			fut.err = fmt.Errorf("backup source %s: %w", path, err)
			return
		}
		n := nodeFromStat(filepath.Base(path), &st)
		n.Xattrs, _ = readXattrs(real)
		var prev *Node
		if parentRoot != nil {
			prev = parentRoot.Find(n.Name)
		}
		inUse := false
		if n.Type == TypeBlock {
			n.Type = TypeDevice
			n.Rdev = 0
			// O_EXCL on a block device fails with EBUSY while it is
			// mounted or held (md, LVM, swap), as mkfs checks.
			if fd, err := unix.Open(real, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err == nil {
				unix.Close(fd)
			} else {
				inUse = errors.Is(err, unix.EBUSY)
			}
		}
		if inUse {
			// Read all the same (a stopped file system's device can be
			// held too), but the image of one being written is what the
			// reads found as it changed, which no check here can see.
			defer b.warn(n.Name, errDeviceInUse)
		}
		if err := b.saveFileContent(real, path, n, prev); err != nil {
			if n.skipped || b.ctx.Err() != nil {
				fut.err = fmt.Errorf("backup source %s: %w", path, err)
				return
			}
			// Read, but changing all along (a busy log, a running VM's
			// image): kept and flagged, as a file of a tree is, so the
			// point holds the last copy read, not nothing at all.
			b.warn(n.Name, err)
		}
		b.files.Add(1)
		fut.id, fut.err = b.saveTree(&Tree{Nodes: []*Node{n}})
	}()
	return fut
}

// errDeviceInUse flags the image of a block device that was mounted or
// held while it was read.
var errDeviceInUse = errors.New("the device was in use (mounted, or held by md, LVM or swap) while it was read: if it was written meanwhile the image is not consistent; back up a snapshot of it (lvcreate --snapshot) or unmount it first")

func (b *backuper) saveTree(t *Tree) (chunkstore.ID, error) {
	blob := EncodeTree(t)
	id := b.st.Hash(blob)
	if _, err := b.w.SaveBlob(chunkstore.TreeBlob, id, blob); err != nil {
		b.fatal(err)
		return id, err
	}
	return id, nil
}

// saveDir walks one directory, whose st_dev is dev, and returns a future
// for its tree id. The walk continues into subdirectories at once; files
// are read by up to opts.Files goroutines; the tree blob is saved once all
// children are done.
func (b *backuper) saveDir(path, rel string, parent *Tree, dev, ino uint64) *dirFuture {
	fut := &dirFuture{done: make(chan struct{})}
	// A directory deep enough that its entries' paths could pass
	// PATH_MAX is walked by a short name of its own (aliasDir).
	dirPath := path // the path its entries are reached by
	closeAlias := func() {}
	if len(path) > aliasAfter {
		alias, done, err := aliasDir(path, dev, ino)
		if err != nil {
			fut.err, fut.openErr = err, err
			close(fut.done)
			return fut
		}
		dirPath, closeAlias = alias, done
	}
	var ents []dirEntry
	if m := b.ex.marker(dirPath); m != "" {
		// Only the marker is kept: the directory is not listed.
		ents = []dirEntry{{name: m}}
	} else {
		var err error
		if h := b.opts.hooks; h != nil && h.beforeReadDir != nil {
			h.beforeReadDir(path)
		}
		if ents, fut.flags, err = readDirSame(dirPath, dev, ino); err != nil {
			closeAlias()
			fut.err, fut.openErr = err, err
			close(fut.done)
			return fut
		}
		if h := b.opts.hooks; h != nil && h.afterReadDir != nil {
			h.afterReadDir(path)
		}
	}
	hints := b.hintsFor(dirPath, rel, ents, parent)
	var wg sync.WaitGroup
	var nodes []*Node
	type sub struct {
		n   *Node
		fut *dirFuture
	}
	var subs []sub
	for i, ent := range ents {
		if b.ctx.Err() != nil {
			break
		}
		hints.upTo(i)
		name := ent.name
		cpath := filepath.Join(dirPath, name)
		crel := filepath.Join(rel, name)
		// shown is the entry's path for progress and -v: its own, not
		// the short one of an aliased directory.
		shown := func() string { return filepath.Join(b.root, crel) }
		if b.ex.byName(crel, name) || ent.isDir && b.ex.byType(crel, name) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(cpath, &st); err != nil {
			b.warn(crel, fmt.Errorf("skipped: %w", err))
			continue
		}
		n := nodeFromStat(name, &st)
		if n.Type == TypeFile && b.ex.largerThan > 0 && st.Size > b.ex.largerThan {
			continue
		}
		if n.timeClamped {
			b.warn(crel, errTimeClamped)
		}
		if n.Type == TypeDir && !ent.isDir && b.ex.byType(crel, name) {
			continue // replaced by a directory since it was listed
		}
		if n.Type == TypeDir && st.Ino == b.store.ino && st.Dev == b.store.dev {
			// Left out, as an exclusion: it would grow with every backup
			// of itself. Not a warning: a nightly backup of / with the
			// home under /var/lib would end "with warnings" every night,
			// which teaches an administrator to read past them.
			b.info("left out %s: the store this backup writes to (protect it with 'recall copy' or tape)", shown())
			continue
		}
		enter := true
		if st.Dev != dev {
			if enter = b.crossMount(cpath, crel, st.Dev); !enter && n.Type != TypeDir {
				continue
			}
		}
		if xs, err := readXattrs(cpath); err != nil {
			b.warn(crel, fmt.Errorf("extended attributes not saved: %w", err))
		} else {
			n.Xattrs = xs
		}
		var prev *Node
		if parent != nil {
			prev = parent.Find(name)
		}
		switch n.Type {
		case TypeDir:
			if !enter {
				// A mount point not entered is kept as an empty
				// directory, as restic and tar do: a restore of the
				// whole system needs /proc and /sys to exist.
				b.dirs.Add(1)
				subs = append(subs, sub{n, b.emptyTree()})
				break
			}
			f := b.subDir(cpath, crel, prev, st.Dev, st.Ino)
			if f == nil {
				continue
			}
			subs = append(subs, sub{n, f})
		case TypeSymlink:
			target, err := os.Readlink(cpath)
			if err != nil {
				b.warn(crel, fmt.Errorf("skipped: %w", err))
				continue
			}
			n.Target = target
			b.others.Add(1)
			b.otherLinks(n)
		case TypeFile:
			b.files.Add(1)
			if n.Nlink > 1 {
				if g, leader := b.linkGroupFor(n); !leader {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-g.done
						// Listed (-v) and counted unchanged as a file of
						// its own: the summary's files count every name.
						how := "new"
						switch {
						case g.leader.skipped:
							how = "skipped"
						case b.unchanged(n, prev):
							how = "unchanged"
							b.nUnchanged.Add(1)
						case prev != nil:
							how = "modified"
						}
						n.Extents = g.leader.Extents
						n.Size = g.leader.Size
						n.Flags = g.leader.Flags
						n.skipped = g.leader.skipped
						b.opts.Progress.linkSaved(shown(), how)
					}()
					break
				} else {
					wg.Add(1)
					sem := b.readSlots(st.Size)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						defer close(g.done)
						if err := b.saveFileContent(cpath, shown(), n, prev); err != nil {
							b.warn(crel, err)
						}
					}()
					break
				}
			}
			wg.Add(1)
			sem := b.readSlots(st.Size)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := b.saveFileContent(cpath, shown(), n, prev); err != nil {
					b.warn(crel, err)
				}
			}()
		default:
			b.others.Add(1)
			b.otherLinks(n)
		}
		nodes = append(nodes, n)
	}
	go func() {
		defer close(fut.done)
		wg.Wait()
		var kept []*Node
		skip := map[*Node]bool{}
		// Every entry reached through the alias is done once the
		// files are read and the subdirectories walked.
		defer closeAlias()
		for _, s := range subs {
			<-s.fut.done
			if s.fut.err != nil {
				if fut.err == nil && !isSkippable(s.fut.err) {
					fut.err = s.fut.err
				}
				skip[s.n] = true
				continue
			}
			s.n.Subtree = s.fut.id
			s.n.Flags = s.fut.flags
		}
		for _, n := range nodes {
			if skip[n] || n.skipped {
				if n.skipped && n.Type == TypeFile {
					b.files.Add(-1) // counted when met; not in the point
				}
				continue
			}
			kept = append(kept, n)
		}
		if fut.err != nil {
			return
		}
		if err := context.Cause(b.ctx); err != nil {
			fut.err = err
			return
		}
		fut.id, fut.err = b.saveTree(&Tree{Nodes: kept})
	}()
	return fut
}

// subDir walks the subdirectory at path (rel in the backup; prev is its
// node in the parent point, or nil), beside the walk that found it when a
// walker is free, else in it. It returns nil for a directory skipped
// because it cannot be listed (warned about). A directory walked beside
// that cannot be listed is warned about the same way, and its future
// ends with the skippable error, which drops its node.
//
// Why beside: the walk waits for a free read slot at every file, so a
// single walk reaches the second of two sibling directories only when it
// has handed out the first one's files. On the bench set, a directory of
// 20,000 small files (the disk's work) came before one of large text
// files (the CPUs' work): those were compressed at the end, on their own,
// while earlier the disk was busy and the CPUs partly idle. With the
// large ones walked first the cold backup took 5.95-6.61 s against
// 6.86-7.19 s. Up to BackupOptions.Files-1 walks run beside the first;
// with Files 1 the walk is one, in order.
func (b *backuper) subDir(path, rel string, prev *Node, dev, ino uint64) *dirFuture {
	// walk walks the directory; ok is false when it could not be listed
	// and is skipped (warned about).
	walk := func() (f *dirFuture, ok bool) {
		var ptree *Tree
		if prev != nil && prev.Type == TypeDir {
			ptree, _ = b.r.LoadTree(prev.Subtree)
		}
		f = b.saveDir(path, rel, ptree, dev, ino)
		if f.openErr != nil && isSkippable(f.openErr) {
			b.warn(rel, fmt.Errorf("skipped: %w", f.openErr))
			return f, false
		}
		b.dirs.Add(1)
		return f, true
	}
	select {
	case b.walkers <- struct{}{}:
	default:
		if f, ok := walk(); ok {
			return f
		}
		return nil
	}
	fut := &dirFuture{done: make(chan struct{})}
	go func() {
		defer close(fut.done)
		f, _ := walk() // returns once the directory is walked; its files may still be read
		<-b.walkers
		<-f.done
		fut.id, fut.err, fut.flags = f.id, f.err, f.flags
	}()
	return fut
}

// crossMount decides whether the walk enters the mount point (or other
// file system boundary: a btrfs subvolume) at path, and records why not.
// Pseudo file systems and recovery trees are never entered; they are
// warned about unless Exclude.OneFileSystem asked to stay on one file
// system anyway, in which case every boundary is listed in the point's
// mount_points and none is a warning.
func (b *backuper) crossMount(path, rel string, dev uint64) bool {
	typ := b.fsTypes.fsType(path, dev)
	if b.ex.oneFS {
		b.errMu.Lock()
		b.mounts = append(b.mounts, MountPoint{Path: rel, FSType: typ})
		b.errMu.Unlock()
		return false
	}
	if why := neverRead(typ); why != "" {
		b.warn(rel, fmt.Errorf("skipped mount point: %s", why))
		return false
	}
	return true
}

// emptyTree returns a finished future for the tree of an empty directory.
func (b *backuper) emptyTree() *dirFuture {
	fut := &dirFuture{done: make(chan struct{})}
	fut.id, fut.err = b.saveTree(&Tree{})
	close(fut.done)
	return fut
}

func isSkippable(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EIO) || errors.Is(err, errDirReplaced)
}

// errDirReplaced: the directory opened to be listed is not the one the
// walk found (its lstat): it was renamed or replaced, by a symlink to
// somewhere else, say, in between. Listing it would put files from
// outside the source in the point.
var errDirReplaced = errors.New("replaced while the backup ran (not followed; it is backed up next time)")

// otherLinks puts a symlink, FIFO, device node or socket with more than
// one name in its hard-link group, so a restore links its names again
// instead of making separate entries. Nothing is read from them, so
// nothing waits for a leader.
func (b *backuper) otherLinks(n *Node) {
	if n.Nlink > 1 {
		b.linkGroupFor(n)
	}
}

func (b *backuper) linkGroupFor(n *Node) (*linkGroup, bool) {
	b.hlMu.Lock()
	defer b.hlMu.Unlock()
	k := devIno{n.Dev, n.Inode}
	if g, ok := b.links[k]; ok {
		n.LinkGroup = g.id
		return g, false
	}
	id := linkGroupID(k)
	for b.linkIDs[id] {
		id += 2 // another group's hash: the next odd id (never 0)
	}
	b.linkIDs[id] = true
	g := &linkGroup{id: id, leader: n, done: make(chan struct{})}
	n.LinkGroup = g.id
	b.links[k] = g
	return g, true
}

// linkGroupID names the hard-link group of the file k within a point: a
// hash of its device and inode, so that the ids do not depend on which
// walk met the group first (directories are walked in parallel) and an
// unchanged tree gets the same tree blobs again. Never 0 (no group). Two
// groups of one point whose hashes collide get different ids
// (linkGroupFor); only then do the ids depend on the order.
func linkGroupID(k devIno) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], k.dev)
	binary.LittleEndian.PutUint64(b[8:], k.ino)
	h.Write(b[:])
	return h.Sum64() | 1
}

// dirEntry is one name of a listed directory; isDir comes from the
// listing's d_type, so directory-only patterns need no stat.
type dirEntry struct {
	name  string
	isDir bool
	isReg bool // a regular file when listed: its file may be hinted
}

func readDir(path string) ([]dirEntry, error) {
	ents, _, err := readDirSame(path, 0, 0)
	return ents, err
}

// readDirSame lists the directory at path if it is still the one with
// device dev and inode ino (ino 0: any), and reads its inode flags.
func readDirSame(path string, dev, ino uint64) ([]dirEntry, uint32, error) {
	// Without touching its access time, as files are read: tools that
	// judge directories by it (tmp cleaners, "unused for N days"
	// reports) would see every backup as a use. O_NOATIME needs the
	// owner or CAP_FOWNER; without either it is read as before.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOATIME|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if ino != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return nil, 0, err
		}
		if st.Dev != dev || st.Ino != ino {
			return nil, 0, errDirReplaced
		}
	}
	flags := readFlags(int(f.Fd()))
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, 0, err
	}
	out := make([]dirEntry, len(des))
	for i, d := range des {
		out[i] = dirEntry{name: d.Name(), isDir: d.IsDir(), isReg: d.Type().IsRegular()}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, flags, nil
}

// unchanged reports whether prev describes the same file content as n.
func (b *backuper) unchanged(n, prev *Node) bool {
	if prev == nil || prev.Type != n.Type || prev.Size != n.Size || prev.MtimeNS != n.MtimeNS ||
		prev.CtimeNS != n.CtimeNS || prev.Inode != n.Inode {
		return false
	}
	for _, e := range prev.Extents {
		if !e.Hole && !b.st.Has(e.ID) {
			return false
		}
	}
	return true
}

const maxRereads = 3

// saveFileContent reads a file (or device) into n.Extents. A file that
// changes while read is read again; if it keeps changing, the last read is
// kept and flagged. A file that cannot be read marks n skipped.
func (b *backuper) saveFileContent(path, shown string, n *Node, prev *Node) error {
	b.opts.Progress.begin(shown)
	how := "new"
	if prev != nil {
		how = "modified"
	}
	defer func() {
		if n.skipped {
			how = "skipped"
		}
		b.opts.Progress.fileSaved(shown, how)
	}()
	if n.Type == TypeFile && b.unchanged(n, prev) {
		how = "unchanged"
		n.Extents = prev.Extents
		if b.prevFlags {
			n.Flags = prev.Flags // chattr changes the ctime unchanged compares
		} else {
			n.Flags = flagsOf(path) // a point from before flags were kept
		}
		b.nUnchanged.Add(1)
		b.bytes.Add(int64(n.Size))
		b.opts.Progress.addBytes(int64(n.Size))
		return nil
	}
	b.hints.wait(b.ctx, path)
	if h := b.opts.hooks; h != nil && h.beforeOpen != nil {
		h.beforeOpen(path)
	}
	// A descriptor, not an os.File: os.OpenFile offers every file to Go's
	// poller, an epoll_ctl the kernel refuses for a regular file, which
	// with the os.File itself was a tenth of the system calls of a small
	// file. Only what is read in more than one piece gets an os.File
	// (file), which then owns the descriptor. O_NONBLOCK: an entry
	// replaced by a FIFO since its lstat must not block the open; it is
	// caught by the type check below. The warning names the file
	// already, so the error is the bare errno, as the walk's lstat gives.
	fd, err := openNoAtime(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		n.skipped = true
		return fmt.Errorf("skipped: %w", err)
	}
	var f *os.File
	file := func() *os.File {
		if f == nil {
			f = os.NewFile(uintptr(fd), path)
		}
		return f
	}
	defer func() {
		if f != nil {
			f.Close()
		} else {
			unix.Close(fd)
		}
	}()
	var ost unix.Stat_t
	if err := unix.Fstat(fd, &ost); err != nil {
		n.skipped = true
		return fmt.Errorf("skipped: %w", err)
	}
	if t := ost.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFBLK {
		n.skipped = true
		return fmt.Errorf("skipped: no longer a regular file or block device")
	} else if t == unix.S_IFREG {
		n.Flags = readFlags(fd)
	}
	if ost.Size > int64(b.st.MinChunk()) {
		adviseSequential(fd)
	}
	before := ost
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := unix.Fstat(fd, &before); err != nil {
				n.skipped = true
				return fmt.Errorf("skipped: %w", err)
			}
		}
		size := before.Size
		isDev := before.Mode&unix.S_IFMT == unix.S_IFBLK
		if isDev {
			if size, err = blockDeviceSize(file()); err != nil {
				n.skipped = true
				return fmt.Errorf("skipped: size of device: %w", err)
			}
		}
		// Only a file read in one piece asks its file system's type. A
		// small file with fewer blocks than bytes may have holes: it is
		// read as a large one, region by region, so they are kept (a
		// compressing file system sends its small files that way too).
		sparse := !isDev && before.Blocks*512 < size
		oneRead := !isDev && !sparse && size <= int64(b.st.MinChunk())
		fresh := &freshBlobs{}
		ext, read, err := b.readContent(fd, file, size, isDev, sparse, oneRead && sizeTrusted(b.fsTypes.fsType(path, before.Dev)), fresh)
		if err != nil {
			if b.ctx.Err() != nil {
				return context.Cause(b.ctx)
			}
			n.skipped = true
			return fmt.Errorf("skipped: read: %w", err)
		}
		if h := b.opts.hooks; h != nil && h.afterRead != nil {
			h.afterRead(path, attempt)
		}
		var after unix.Stat_t
		if err := unix.Fstat(fd, &after); err != nil {
			n.skipped = true
			return fmt.Errorf("skipped: %w", err)
		}
		n.Extents = ext
		n.Size = uint64(read)
		if !isDev {
			n.MtimeNS, n.CtimeNS, n.AtimeNS = timeNS(after.Mtim), timeNS(after.Ctim), timeNS(after.Atim)
			n.Mode, n.UID, n.GID = after.Mode&0o7777, after.Uid, after.Gid
		}
		changed := !isDev && (before.Size != after.Size || before.Mtim != after.Mtim || before.Ctim != after.Ctim || read != after.Size)
		if changed && attempt < maxRereads {
			// Read again: what this read stored first goes unused, but
			// for the chunks a kept read finds stored (kept, keepUsed).
			b.discard(fresh)
		} else {
			b.kept(fresh)
		}
		if !changed {
			b.bytes.Add(read)
			return nil
		}
		if attempt >= maxRereads {
			b.bytes.Add(read)
			// Keep what was read, but never let the next backup trust it.
			n.CtimeNS = 0
			return fmt.Errorf("changed while being read %d times; the saved copy may be inconsistent", attempt)
		}
		b.opts.Progress.addBytes(-read) // read again: counted again
		b.info("%s changed while being read; reading it again", shown)
	}
}

// readSmall reads r into buf until buf is full or r ends, or until a read
// leaves size bytes in, the size the file had at its fstat: the read that
// would only find the end is not made (a third of a small file's reads).
// A file that grew meanwhile is caught where its size is compared after.
func readSmall(r io.Reader, buf []byte, size int) (int, error) {
	got := 0
	for got < len(buf) {
		n, err := r.Read(buf[got:])
		got += n
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if got == size && size > 0 {
			break
		}
	}
	return got, nil
}

// sizeTrusted reports whether a file system of type typ (mountinfo's
// name) always has as many bytes in a regular file as its st_size says,
// so that readSmall may stop there: local disk and memory file systems.
// FUSE and network file systems, and pseudo files (a size of 4096 for any
// content), may say otherwise; their small files are read to the end.
func sizeTrusted(typ string) bool {
	switch typ {
	case "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "f2fs", "zfs", "jfs", "reiserfs", "bcachefs", "nilfs2":
		return true
	}
	return false
}

// preader reads a file from offset 0 with one pread per Read (an
// os.File's ReadAt goes on until its buffer is full or the file ends,
// which is the read readSmall saves).
type preader struct {
	fd  int
	off int64
}

func (r *preader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Pread(r.fd, p, r.off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		r.off += int64(n)
		return n, nil
	}
}

// readContent chunks a file's data regions, recording sparse regions and
// all-zero chunks as holes. Chunks are hashed, compressed and stored by the
// saver goroutines while this goroutine keeps chunking.
//
// fd is the open file; file returns it as an os.File, which only what is
// read in more than one piece asks for (it owns fd from then on). sparse
// sends a small file through the regions too.
func (b *backuper) readContent(fd int, file func() *os.File, size int64, isDev, sparse, trustSize bool, fresh *freshBlobs) ([]Extent, int64, error) {
	b.reading.Add(1)
	defer b.reading.Add(-1)
	var exts []*Extent
	var wg sync.WaitGroup
	var errp atomic.Pointer[error]
	var off int64
	fail := func(err error) ([]Extent, int64, error) {
		wg.Wait()
		return nil, 0, err
	}
	addHole := func(end int64) {
		exts = append(exts, &Extent{Hole: true, End: uint64(end)})
		b.opts.Progress.addBytes(end - off)
	}
	submit := func(cb *chunkBuf, end int64) error {
		e := &Extent{End: uint64(end)}
		exts = append(exts, e)
		wg.Add(1)
		select {
		case b.chunkQ <- &chunkJob{buf: cb, ext: e, wg: &wg, err: &errp, fresh: fresh}:
			return nil
		case <-b.ctx.Done():
			wg.Done()
			b.bufs.put(cb)
			return context.Cause(b.ctx)
		}
	}
	// Small files: one read, one chunk.
	if !isDev && !sparse && size <= int64(b.st.MinChunk()) {
		cb, err := b.bufs.get(b.ctx, int(max(size, 1)))
		if err != nil {
			return nil, 0, err
		}
		buf := cb.b[:cap(cb.b)]
		stopAt := 0 // read to the end
		if trustSize {
			stopAt = int(size)
		}
		nr, err := readSmall(b.limited(&preader{fd: fd}), buf, stopAt)
		if err != nil {
			b.bufs.put(cb)
			return nil, 0, err
		}
		if nr == 0 {
			b.bufs.put(cb)
			return nil, 0, nil
		}
		cb.b = buf[:nr]
		if b.opts.Limiter == nil {
			b.opts.Progress.addBytes(int64(nr)) // a limited read counted it
		}
		if err := submit(cb, int64(nr)); err != nil {
			return fail(err)
		}
		off = int64(nr)
	} else {
		f := file()
		regions := dataRegions(f, size, isDev)
		// A large region of a regular file that the page cache does not
		// hold whole is read cold: with O_DIRECT into the chunker's
		// segments. One the kernel says is not cached is never read by
		// the parallel cuts, which read it through the page cache, every
		// byte twice. Measured on a 2 GiB file read cold (three
		// interleaved pairs): about the same time, the disk being the
		// bound either way, but 1.4 against 2.7-5.3 s of system CPU and
		// 60-66 against 83-87 MiB of peak RSS. Where the kernel cannot
		// say (no cachestat, before 6.5) the parallel cuts stay, as
		// before. Decided when the regions are listed, as the file is then.
		type coldness struct{ cold, known bool }
		colds := make([]coldness, len(regions))
		for i, rg := range regions {
			if !isDev && rg.end-rg.start >= coldMinSize {
				c, known := cacheState(int(f.Fd()), rg.start, int(rg.end-rg.start))
				colds[i] = coldness{cold: !c, known: known}
			}
		}
		if h := b.opts.hooks; h != nil && h.afterRegions != nil {
			h.afterRegions(f.Name())
		}
		var chk *chunkstore.Chunker
		defer func() {
			if chk != nil {
				b.chunkers.Put(chk)
			}
		}()
		for i, rg := range regions {
			if rg.start > off {
				addHole(rg.start)
				off = rg.start
			}
			cold := colds[i].cold
			// A limited backup reads serially, through its limit: the
			// parallel cuts read whole segments ahead of it, and every
			// byte twice.
			if !(cold && colds[i].known) && rg.end-rg.start >= 2*parSegment && b.cpus > 1 && b.reading.Load() == 1 && b.opts.Limiter == nil {
				err := parallelCuts(f, b.chunkers, rg.start, rg.end, func(a, e int64) error {
					cb, err := b.bufs.get(b.ctx, int(e-a))
					if err != nil {
						return err
					}
					if _, err := f.ReadAt(cb.b, a); err != nil {
						b.bufs.put(cb)
						if err == io.EOF {
							return errShrank // short: cut off since it was chunked
						}
						return err
					}
					b.opts.Progress.addBytes(e - a)
					off = e
					return submit(cb, e)
				})
				if errors.Is(err, errShrank) {
					// As the sequential path below: keep what was read, and
					// the stat comparison reads the file again.
					break
				}
				if err != nil {
					return fail(err)
				}
				continue
			}
			if chk == nil {
				chk = b.chunkers.Get()
			}
			var cr *coldReader
			// A region the page cache holds whole (a file just written:
			// a dump, a log) is read straight into the chunker's
			// segments: the cold reader's pieces would only be one more
			// copy of it (0.46 of 6.4 CPU-seconds of a warm s2 backup of
			// the bench set).
			segs := newSegFile(b.segs)
			switch {
			case cold && b.opts.Limiter == nil:
				// The cold reader's pieces are the segments.
				cr = newColdReader(f, rg.start, rg.end, coldBufsSegments)
				chk.ResetSegments(cr.segments(segs))
			case cold:
				// Read through the limit, which counts every Read.
				cr = newColdReader(f, rg.start, rg.end, coldBufsReader)
				chk.ResetOwned(b.limited(cr), segs.give)
			default:
				chk.ResetOwned(b.limited(io.NewSectionReader(f, rg.start, rg.end-rg.start)), segs.give)
			}
			// endRegion ends the chunker's use of the segments and the
			// cold reader, on every way out of the region.
			endRegion := func() {
				chk.Reset(nil)
				segs.done()
				if cr != nil {
					cr.Close()
					cr = nil
				}
			}
			for {
				data, err := chk.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					endRegion()
					return fail(err)
				}
				cb := segs.chunk(data)
				if b.opts.Limiter == nil {
					b.opts.Progress.addBytes(int64(len(data))) // a limited read counted it
				}
				off += int64(len(data))
				if err := submit(cb, off); err != nil {
					endRegion()
					return fail(err)
				}
			}
			endRegion()
			if off < rg.end {
				break // file shrank while read
			}
		}
		if off < size && !isDev {
			// Trailing hole (sparse end) or a file that shrank: the
			// caller's stat comparison tells which.
			var st unix.Stat_t
			if unix.Fstat(int(f.Fd()), &st) == nil && st.Size == size {
				addHole(size)
				off = size
			}
		}
	}
	wg.Wait()
	if e := errp.Load(); e != nil {
		return nil, 0, *e
	}
	// Merge adjacent holes.
	out := make([]Extent, 0, len(exts))
	for _, e := range exts {
		if e.Hole && len(out) > 0 && out[len(out)-1].Hole {
			out[len(out)-1].End = e.End
			continue
		}
		out = append(out, *e)
	}
	return out, off, nil
}

type region struct{ start, end int64 }

// dataRegions lists the data (non-hole) regions of a file using
// SEEK_DATA/SEEK_HOLE; file systems or devices without them yield one
// region covering everything.
func dataRegions(f *os.File, size int64, isDev bool) []region {
	if isDev || size == 0 {
		return []region{{0, size}}
	}
	fd := int(f.Fd())
	var out []region
	var off int64
	for off < size {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return append(out, region{off, size})
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h > size {
			h = size
		}
		if h <= d {
			h = size
		}
		out = append(out, region{d, h})
		off = h
	}
	return out
}

var zeroBlock = make([]byte, 64<<10)

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if string(b[:n]) != string(zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// freshBlobs are the blobs one read of a file stored first, with their
// raw sizes: if the file changed under the read, they are discarded.
type freshBlobs struct {
	mu   sync.Mutex
	blob []freshBlob
	// used are the blobs the read found stored: they are taken back
	// from the discarded ones (keepUsed) only if the read is kept. A
	// read itself discarded uses nothing of the point.
	used []chunkstore.ID
}

func (f *freshBlobs) use(id chunkstore.ID) {
	f.mu.Lock()
	f.used = append(f.used, id)
	f.mu.Unlock()
}

// kept takes back from the discarded blobs those the read of f, which
// the point keeps, uses.
func (b *backuper) kept(f *freshBlobs) {
	if !b.hasDiscarded.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range f.used {
		b.keepUsed(id)
	}
}

type freshBlob struct {
	id  chunkstore.ID
	raw int64
}

func (f *freshBlobs) add(id chunkstore.ID, raw int64) {
	f.mu.Lock()
	f.blob = append(f.blob, freshBlob{id, raw})
	f.mu.Unlock()
}

// discard notes the blobs of a read that is read again.
func (b *backuper) discard(f *freshBlobs) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.blob) == 0 {
		return
	}
	b.discMu.Lock()
	defer b.discMu.Unlock()
	if b.discarded == nil {
		b.discarded = map[chunkstore.ID]int64{}
	}
	for _, x := range f.blob {
		b.discarded[x.id] = x.raw
	}
	b.hasDiscarded.Store(true)
}

// keepUsed takes id back from the discarded blobs: a later read (the
// file's next, or another file's) found it stored and uses it.
func (b *backuper) keepUsed(id chunkstore.ID) {
	if !b.hasDiscarded.Load() {
		return
	}
	b.discMu.Lock()
	delete(b.discarded, id)
	b.discMu.Unlock()
}

// discardedStats are the counts of the discarded blobs, as the writer's
// Stats counts them: the part of those that no point uses.
func (b *backuper) discardedStats() (blobs, stored, raw int64) {
	b.discMu.Lock()
	defer b.discMu.Unlock()
	for id, n := range b.discarded {
		if l, ok := b.w.StoredLen(id); ok {
			blobs, stored, raw = blobs+1, stored+l, raw+n
		}
	}
	return blobs, stored, raw
}

// saver hashes and stores chunks until chunkQ closes.
func (b *backuper) saver() {
	for j := range b.chunkQ {
		if isZero(j.buf.b) {
			j.ext.Hole = true
		} else {
			id := b.st.Hash(j.buf.b)
			j.ext.ID = id
			isNew, err := b.w.SaveBlob(chunkstore.DataBlob, id, j.buf.b)
			switch {
			case err != nil:
				j.err.CompareAndSwap(nil, &err)
				b.fatal(err)
			case isNew && j.fresh != nil:
				j.fresh.add(id, int64(len(j.buf.b)))
			case !isNew && j.fresh != nil:
				j.fresh.use(id)
			case !isNew:
				b.keepUsed(id)
			}
		}
		b.bufs.put(j.buf)
		j.wg.Done()
	}
}

// seenPath is p for a message: quoted (%q) when it holds control
// characters (a newline would split the message into lines that read as
// recall's own), bytes that are not UTF-8, or U+FFFD (which a point's
// path has in their place), so that two paths a terminal shows alike
// read apart.
func seenPath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsRune(p, utf8.RuneError) || strings.ContainsFunc(p, unicode.IsControl) {
		return fmt.Sprintf("%q", p)
	}
	return p
}
