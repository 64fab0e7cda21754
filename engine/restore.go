package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// RestoreOptions configure a restore.
type RestoreOptions struct {
	Target    string // directory to fill, or a block device for a device image
	Path      string // sub-path inside the point; "" = all of it
	Overwrite bool   // allow a non-empty target
	Workers   int    // chunk readers; 0 = 2*GOMAXPROCS
	Log       func(format string, args ...any)
}

// RestoreResult counts what was restored and lists what was not.
type RestoreResult struct {
	Files, Dirs, Others, Bytes int64
	Damaged                    []PathError // files whose content could not be read
	Warnings                   []PathError // metadata that could not be applied
}

// ErrDamaged marks a restore that restored everything it could but some
// files have unreadable content.
var ErrDamaged = errors.New("damaged data")

// ErrTargetNotEmpty: the restore target has content and --overwrite was not given.
var ErrTargetNotEmpty = errors.New("restore target is not empty")

type restorer struct {
	r      *Reader
	opts   RestoreOptions
	ctx    context.Context
	isRoot bool
	jobs   chan restoreJob
	wg     sync.WaitGroup // outstanding files

	mu       sync.Mutex
	res      RestoreResult
	damaged  map[string]bool
	links    map[uint64]string
	linked   map[uint64][]string // hard-link group -> rel written, then rels linked to it (they share its damage)
	dirMetas []dirMeta
	bytes    atomic.Int64

	// cleanXattrs: restored entries may carry attributes they did not
	// have (a default ACL inherited from a directory that existed before
	// the restore), so applyMeta removes extras.
	cleanXattrs bool
	euid, egid  uint32
}

type dirMeta struct {
	path string
	n    *Node
}

// openFile is a file being filled by the chunk workers; the last chunk
// written closes it and applies its metadata.
type openFile struct {
	f      *os.File
	path   string
	rel    string
	n      *Node
	left   atomic.Int64
	device bool
}

type restoreJob struct {
	of  *openFile
	off int64
	ext Extent
	end int64
}

// Restore writes point p (or p's sub-path opts.Path) into opts.Target. It
// restores every file it can; files with unreadable content are listed in
// the result and the error wraps ErrDamaged.
func Restore(ctx context.Context, r *Reader, p *Point, opts RestoreOptions) (*RestoreResult, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	euid := uint32(os.Geteuid())
	rs := &restorer{r: r, opts: opts, ctx: ctx, isRoot: euid == 0, euid: euid, egid: uint32(os.Getegid()),
		jobs: make(chan restoreJob, 64), damaged: map[string]bool{}, links: map[uint64]string{}, linked: map[uint64][]string{}}

	// Find what to restore.
	tree, err := r.LoadTree(p.Tree)
	if err != nil {
		return nil, fmt.Errorf("point %s: root directory: %w", p.ID.Short(), err)
	}
	rootNode := &Node{Type: TypeDir, Mode: p.Root.Mode, UID: p.Root.UID, GID: p.Root.GID,
		MtimeNS: p.Root.MtimeNS, AtimeNS: p.Root.AtimeNS, Xattrs: p.Root.Xattrs}
	var single *Node
	if sub := strings.Trim(filepath.Clean("/"+opts.Path), "/"); sub != "" {
		parts := strings.Split(sub, "/")
		for i, part := range parts {
			n := tree.Find(part)
			if n == nil {
				return nil, fmt.Errorf("path %q: %w in point %s", opts.Path, chunkstore.ErrNotFound, p.ID.Short())
			}
			if n.Type != TypeDir {
				if i != len(parts)-1 {
					return nil, fmt.Errorf("path %q: %s is not a directory", opts.Path, strings.Join(parts[:i+1], "/"))
				}
				single = n
				break
			}
			rootNode = n
			if tree, err = r.LoadTree(n.Subtree); err != nil {
				return nil, fmt.Errorf("path %q: %w", opts.Path, err)
			}
		}
	}

	// A device image onto a block device.
	if st, err := os.Stat(opts.Target); err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		if single == nil && len(tree.Nodes) == 1 && tree.Nodes[0].Type.HasContent() {
			single = tree.Nodes[0]
		}
		if single == nil || !single.Type.HasContent() {
			return nil, fmt.Errorf("restore target %s is a block device: only a file or device image can be restored onto it (use --path to pick one file)", opts.Target)
		}
		return rs.run(func() error { return rs.restoreToDevice(single, opts.Target) })
	}

	if err := prepareTarget(opts.Target, opts.Overwrite); err != nil {
		return nil, err
	}
	_, aclErr := unix.Getxattr(opts.Target, "system.posix_acl_default", nil)
	rs.cleanXattrs = opts.Overwrite || aclErr == nil
	return rs.run(func() error {
		if single != nil {
			return rs.restoreNode(single, opts.Target, single.Name)
		}
		if err := rs.restoreTree(tree, opts.Target, ""); err != nil {
			return err
		}
		rs.dirMetas = append(rs.dirMetas, dirMeta{opts.Target, rootNode})
		return nil
	})
}

func prepareTarget(target string, overwrite bool) error {
	if target == "" {
		return fmt.Errorf("no restore target given (--target DIR)")
	}
	ents, err := os.ReadDir(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(target, 0o700); err != nil {
			return fmt.Errorf("create restore target: %w", err)
		}
	case err != nil:
		return fmt.Errorf("restore target %s: %w", target, err)
	case len(ents) > 0 && !overwrite:
		return fmt.Errorf("%s: %w (%d entries); choose an empty or new directory, or pass --overwrite", target, ErrTargetNotEmpty, len(ents))
	}
	return nil
}

// run starts the chunk workers, calls walk, waits for all content and
// applies directory metadata deepest first.
func (rs *restorer) run(walk func() error) (*RestoreResult, error) {
	var workers sync.WaitGroup
	for i := 0; i < rs.opts.Workers; i++ {
		workers.Add(1)
		go func() { defer workers.Done(); rs.worker() }()
	}
	err := walk()
	rs.wg.Wait()
	close(rs.jobs)
	workers.Wait()
	for _, rels := range rs.linked {
		if rs.damaged[rels[0]] {
			for _, rel := range rels[1:] {
				rs.markDamaged(rel, fmt.Errorf("hard link to %s, whose content is damaged", rels[0]))
			}
		}
	}
	for i := len(rs.dirMetas) - 1; i >= 0; i-- {
		d := rs.dirMetas[i]
		rs.applyMeta(d.path, d.path, d.n)
	}
	rs.res.Bytes = rs.bytes.Load()
	if err != nil {
		return &rs.res, err
	}
	if err := rs.ctx.Err(); err != nil {
		return &rs.res, err
	}
	if len(rs.res.Damaged) > 0 {
		return &rs.res, fmt.Errorf("%w: %d files could not be fully restored", ErrDamaged, len(rs.res.Damaged))
	}
	return &rs.res, nil
}

func (rs *restorer) restoreTree(t *Tree, dir, rel string) error {
	for _, n := range t.Nodes {
		if err := rs.ctx.Err(); err != nil {
			return err
		}
		if strings.ContainsAny(n.Name, "/\x00") || n.Name == "." || n.Name == ".." || n.Name == "" {
			rs.warn(rel, fmt.Errorf("unsafe name %q skipped", n.Name))
			continue
		}
		if err := rs.restoreNode(n, filepath.Join(dir, n.Name), filepath.Join(rel, n.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (rs *restorer) warn(rel string, err error) {
	rs.mu.Lock()
	rs.res.Warnings = append(rs.res.Warnings, PathError{Path: rel, Error: err.Error()})
	rs.mu.Unlock()
	if rs.opts.Log != nil {
		rs.opts.Log("warning: %s: %v", rel, err)
	}
}

func (rs *restorer) markDamaged(rel string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.damaged[rel] {
		return
	}
	rs.damaged[rel] = true
	rs.res.Damaged = append(rs.res.Damaged, PathError{Path: rel, Error: err.Error()})
}

// removeExisting clears the way for a new entry when overwriting.
func (rs *restorer) removeExisting(path string, n *Node) {
	if !rs.opts.Overwrite {
		return
	}
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil {
		return
	}
	if n.Type == TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return
	}
	os.RemoveAll(path)
}

func (rs *restorer) restoreNode(n *Node, path, rel string) error {
	rs.removeExisting(path, n)
	switch n.Type {
	case TypeDir:
		if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("restore %s: %w", path, err)
		}
		rs.mu.Lock()
		rs.res.Dirs++
		rs.dirMetas = append(rs.dirMetas, dirMeta{path, n})
		rs.mu.Unlock()
		t, err := rs.r.LoadTree(n.Subtree)
		if err != nil {
			rs.markDamaged(rel+"/", fmt.Errorf("directory listing unreadable: %w", err))
			return nil
		}
		return rs.restoreTree(t, path, rel)
	case TypeFile, TypeDevice:
		if n.LinkGroup != 0 {
			rs.mu.Lock()
			first, ok := rs.links[n.LinkGroup]
			if !ok {
				rs.links[n.LinkGroup] = path
				rs.linked[n.LinkGroup] = []string{rel}
			}
			rs.mu.Unlock()
			if ok {
				if err := os.Link(first, path); err == nil {
					rs.mu.Lock()
					rs.res.Files++
					rs.linked[n.LinkGroup] = append(rs.linked[n.LinkGroup], rel)
					rs.mu.Unlock()
					return nil
				}
			}
		}
		return rs.restoreFile(n, path, rel)
	case TypeSymlink:
		if err := os.Symlink(n.Target, path); err != nil {
			return fmt.Errorf("restore %s: %w", path, err)
		}
	case TypeFifo:
		if err := unix.Mkfifo(path, n.Mode&0o7777); err != nil {
			return fmt.Errorf("restore %s: %w", path, err)
		}
	case TypeBlock, TypeChar, TypeSocket:
		t := map[NodeType]uint32{TypeBlock: unix.S_IFBLK, TypeChar: unix.S_IFCHR, TypeSocket: unix.S_IFSOCK}[n.Type]
		if err := unix.Mknod(path, t|n.Mode&0o7777, int(n.Rdev)); err != nil {
			rs.warn(rel, fmt.Errorf("%s not recreated: %w", n.Type, err))
			return nil
		}
	default:
		rs.warn(rel, fmt.Errorf("unknown entry type %d skipped", n.Type))
		return nil
	}
	rs.mu.Lock()
	rs.res.Others++
	rs.mu.Unlock()
	rs.applyMeta(path, rel, n)
	return nil
}

func (rs *restorer) restoreFile(n *Node, path, rel string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	// Writes give the file its size, except when it ends in a hole.
	if k := len(n.Extents); n.Size > 0 && (k == 0 || n.Extents[k-1].Hole) {
		if err := f.Truncate(int64(n.Size)); err != nil {
			f.Close()
			return fmt.Errorf("restore %s: %w", path, err)
		}
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.mu.Unlock()
	return rs.fill(&openFile{f: f, path: path, rel: rel, n: n})
}

// fill queues one job per stored extent; the file is finished by whoever
// writes its last extent.
func (rs *restorer) fill(of *openFile) error {
	var data []Extent
	var start int64
	var starts []int64
	for _, e := range of.n.Extents {
		if !e.Hole || of.device {
			data = append(data, e)
			starts = append(starts, start)
		}
		start = int64(e.End)
	}
	rs.wg.Add(1)
	if len(data) == 0 {
		rs.finishFile(of)
		return nil
	}
	of.left.Store(int64(len(data)))
	for i, e := range data {
		select {
		case rs.jobs <- restoreJob{of: of, off: starts[i], ext: e, end: int64(e.End)}:
		case <-rs.ctx.Done():
			// Workers drain what was queued; account for the rest.
			if of.left.Add(-int64(len(data)-i)) == 0 {
				rs.finishFile(of)
			}
			return rs.ctx.Err()
		}
	}
	return nil
}

func (rs *restorer) worker() {
	buf := rs.r.st.ChunkBuffer() // one per worker: reads never allocate
	zero := make([]byte, 1<<20)
	for j := range rs.jobs {
		if j.ext.Hole {
			// Only for devices: holes must read back as zeroes.
			for off := j.off; off < j.end; {
				n := min(int64(len(zero)), j.end-off)
				if _, err := j.of.f.WriteAt(zero[:n], off); err != nil {
					rs.markDamaged(j.of.rel, fmt.Errorf("write: %w", err))
					break
				}
				off += n
			}
		} else if data, err := rs.r.ReadChunk(j.ext.ID, buf); err != nil {
			rs.markDamaged(j.of.rel, fmt.Errorf("bytes %d-%d: %w", j.off, j.end, err))
		} else {
			if int64(len(data)) != j.end-j.off {
				rs.markDamaged(j.of.rel, fmt.Errorf("bytes %d-%d: chunk has %d bytes", j.off, j.end, len(data)))
			} else if _, err := j.of.f.WriteAt(data, j.off); err != nil {
				rs.markDamaged(j.of.rel, fmt.Errorf("write: %w", err))
			} else {
				rs.bytes.Add(int64(len(data)))
			}
		}
		if j.of.left.Add(-1) == 0 {
			rs.finishFile(j.of)
		}
	}
}

func (rs *restorer) finishFile(of *openFile) {
	defer rs.wg.Done()
	if of.device {
		if err := of.f.Sync(); err != nil {
			rs.markDamaged(of.rel, fmt.Errorf("sync: %w", err))
		}
		of.f.Close()
		return
	}
	if err := of.f.Close(); err != nil {
		rs.markDamaged(of.rel, fmt.Errorf("close: %w", err))
	}
	rs.applyMetaFresh(of.path, of.rel, of.n)
}

func (rs *restorer) restoreToDevice(n *Node, dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open device %s: %w", dev, err)
	}
	size, err := blockDeviceSize(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("device %s: %w", dev, err)
	}
	if size < int64(n.Size) {
		f.Close()
		return fmt.Errorf("device %s holds %d bytes, the image needs %d: choose a larger device", dev, size, n.Size)
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.mu.Unlock()
	return rs.fill(&openFile{f: f, path: dev, rel: n.Name, n: n, device: true})
}

// applyMeta sets owner, mode, xattrs and times. Owners are set only when
// running as root; other failures are warnings.
func (rs *restorer) applyMeta(path, rel string, n *Node) { rs.meta(path, rel, n, false) }

// applyMetaFresh is applyMeta for a file this restore just created, which
// already belongs to the restoring user.
func (rs *restorer) applyMetaFresh(path, rel string, n *Node) { rs.meta(path, rel, n, true) }

func (rs *restorer) meta(path, rel string, n *Node, fresh bool) {
	if rs.isRoot && !(fresh && n.UID == rs.euid && n.GID == rs.egid) {
		if err := os.Lchown(path, int(n.UID), int(n.GID)); err != nil {
			rs.warn(rel, fmt.Errorf("owner: %w", err))
		}
	}
	if n.Type != TypeSymlink {
		if err := unix.Chmod(path, n.Mode&0o7777); err != nil {
			rs.warn(rel, fmt.Errorf("mode: %w", err))
		}
	}
	if rs.cleanXattrs {
		dropExtraXattrs(path, n.Xattrs)
	}
	for _, x := range n.Xattrs {
		if err := unix.Lsetxattr(path, x.Name, x.Value, 0); err != nil {
			if !rs.isRoot && (strings.HasPrefix(x.Name, "security.") || strings.HasPrefix(x.Name, "trusted.")) {
				continue
			}
			rs.warn(rel, fmt.Errorf("xattr %s: %w", x.Name, err))
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.AtimeNS), unix.NsecToTimespec(n.MtimeNS)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		rs.warn(rel, fmt.Errorf("times: %w", err))
	}
}

// dropExtraXattrs removes the attributes of path that keep does not list:
// a default ACL inherited from a directory that existed before the restore,
// or the leftovers of an entry replaced with --overwrite.
func dropExtraXattrs(path string, keep []Xattr) {
	names, err := xattrNames(path)
	if err != nil {
		return
	}
	for _, name := range names {
		if !slices.ContainsFunc(keep, func(x Xattr) bool { return x.Name == name }) {
			unix.Lremovexattr(path, name)
		}
	}
}
