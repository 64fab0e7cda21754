package fs

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"golang.org/x/sys/unix"
)

// This file is the go-fuse adapter: one node type per kind of directory
// (the mount root, a source, a point's content), the "latest" symlink, and
// file and directory handles. It translates; all decisions live in the
// tree. Every write-type operation answers EROFS (the mount is also made
// read-only, so the kernel refuses most of them before they get here).

// Kernel cache lifetimes. Point content never changes, so its entries,
// attributes and negative lookups are cached for long. The root and the
// source directories change as points come and go: their attributes are
// kept briefly and their failed lookups not at all; entries that vanish
// are invalidated by Server.apply.
const (
	contentTimeout = time.Hour
	dynamicTimeout = time.Second
	noCache        = time.Nanosecond
	// syncAge: listings of the root or a source re-list the points when
	// the last full update is older than this, even with an unchanged stamp.
	syncAge = 2 * time.Second
)

const blockSize = 1 << 20 // st_blksize: makes cp, cat & co read 1 MiB at a time

func fillAttr(out *fuse.Attr, a Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = uint32(min(a.Nlink, 1<<32-1))
	out.Uid, out.Gid = a.UID, a.GID
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Blksize = blockSize
	out.Rdev = fuseRdev(a.Rdev)
	out.Atime, out.Atimensec = splitNS(a.AtimeNS)
	out.Mtime, out.Mtimensec = splitNS(a.MtimeNS)
	out.Ctime, out.Ctimensec = splitNS(a.CtimeNS)
}

func splitNS(ns int64) (uint64, uint32) {
	s, r := ns/1e9, ns%1e9
	if r < 0 {
		s, r = s-1, r+1e9
	}
	return uint64(s), uint32(r)
}

// splitTime is splitNS of t, from its seconds: UnixNano overflows past
// 2262, and a point dated 9999 (a clock far off, a crafted manifest)
// showed as 1816.
func splitTime(t time.Time) (uint64, uint32) {
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// fuseRdev converts a stat st_rdev to the kernel's 32-bit "new" encoding
// that FUSE carries.
func fuseRdev(rdev uint64) uint32 {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12
}

func dirAttr(out *fuse.Attr, ino uint64, nlink uint32, mtime time.Time) {
	out.Ino = ino
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = nlink
	out.Blksize = blockSize
	out.Mtime, out.Mtimensec = splitTime(mtime)
	out.Ctime, out.Ctimensec = out.Mtime, out.Mtimensec
	out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
}

// readOnly answers every write-type operation of a node with EROFS.
type readOnly struct{}

func (readOnly) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (readOnly) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (readOnly) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (readOnly) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }
func (readOnly) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) Setxattr(context.Context, string, []byte, uint32) syscall.Errno { return syscall.EROFS }
func (readOnly) Removexattr(context.Context, string) syscall.Errno              { return syscall.EROFS }
func (readOnly) Write(context.Context, gofs.FileHandle, []byte, int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}
func (readOnly) Allocate(context.Context, gofs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.EROFS
}
func (readOnly) CopyFileRange(context.Context, gofs.FileHandle, uint64, *gofs.Inode, gofs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

// Every node type refuses writes.
var (
	_ = (gofs.NodeSetattrer)((*rootNode)(nil))
	_ = (gofs.NodeMkdirer)((*rootNode)(nil))
	_ = (gofs.NodeCreater)((*sourceNode)(nil))
	_ = (gofs.NodeUnlinker)((*entryNode)(nil))
	_ = (gofs.NodeRenamer)((*entryNode)(nil))
	_ = (gofs.NodeSetxattrer)((*entryNode)(nil))
	_ = (gofs.NodeWriter)((*entryNode)(nil))
	_ = (gofs.NodeSetattrer)((*latestNode)(nil))
)

// rootNode is the mount root: one directory per source.
type rootNode struct {
	gofs.Inode
	readOnly
	a *adapter
	t *Tree
}

var (
	_ = (gofs.NodeLookuper)((*rootNode)(nil))
	_ = (gofs.NodeReaddirer)((*rootNode)(nil))
	_ = (gofs.NodeGetattrer)((*rootNode)(nil))
	_ = (gofs.NodeStatfser)((*rootNode)(nil))
)

func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, 1, uint32(2+len(r.t.Sources())), r.t.ModTime())
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: blockSize, Frsize: blockSize, NameLen: 255}
	return 0
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	s := r.t.Source(name)
	if s == nil {
		r.t.Sync(syncAge)
		if s = r.t.Source(name); s == nil {
			out.SetEntryTimeout(noCache)
			return nil, syscall.ENOENT
		}
	}
	sourceAttr(&out.Attr, s)
	out.SetEntryTimeout(contentTimeout)
	out.SetAttrTimeout(dynamicTimeout)
	return r.NewInode(ctx, &sourceNode{a: r.a, t: r.t, name: name}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: s.Ino()}), 0
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	r.t.Sync(syncAge)
	srcs := r.t.Sources()
	list := make([]fuse.DirEntry, 0, len(srcs)+2)
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: 1}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: 1})
	for _, s := range srcs {
		list = append(list, fuse.DirEntry{Name: s.Name, Mode: syscall.S_IFDIR, Ino: s.Ino()})
	}
	return gofs.NewListDirStream(list), 0
}

// sourceAttr is a source directory's: its owner, group and mode let in
// only who could reach the path of each of its points at backup time
// (engine.Reach), so no one reads through it what a directory above the
// path kept from them.
func sourceAttr(out *fuse.Attr, s *Source) {
	dirAttr(out, s.Ino(), uint32(2+len(s.Points())), s.Latest().Meta.Time)
	uid, gid, perm := s.reach.Dir()
	out.Uid, out.Gid = uid, gid
	out.Mode = syscall.S_IFDIR | perm
}

// sourceNode is <mnt>/<source>: one directory per point and "latest".
type sourceNode struct {
	gofs.Inode
	readOnly
	a    *adapter
	t    *Tree
	name string
}

var (
	_ = (gofs.NodeLookuper)((*sourceNode)(nil))
	_ = (gofs.NodeReaddirer)((*sourceNode)(nil))
	_ = (gofs.NodeGetattrer)((*sourceNode)(nil))
)

// source returns the current view of the source, nil once it has no points.
func (s *sourceNode) source() *Source { return s.t.Source(s.name) }

func (s *sourceNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	src := s.source()
	if src == nil {
		dirAttr(&out.Attr, sourceIno(s.name), 2, time.Time{})
	} else {
		sourceAttr(&out.Attr, src)
	}
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (s *sourceNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	src := s.source()
	if name == LatestName {
		if src == nil {
			out.SetEntryTimeout(noCache)
			return nil, syscall.ENOENT
		}
		latestAttr(&out.Attr, src)
		out.SetEntryTimeout(contentTimeout)
		out.SetAttrTimeout(dynamicTimeout)
		return s.NewInode(ctx, &latestNode{t: s.t, source: s.name}, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: src.LatestIno()}), 0
	}
	if id, err := chunkstore.ParseID(name); err == nil && name == id.String() {
		return s.lookupID(ctx, id, out)
	}
	var p *Point
	if src != nil {
		p = src.Point(name)
	}
	if p == nil {
		if _, ok := ParseSnapshotName(name); ok {
			s.t.Sync(syncAge)
			s.freshLatest()
			if src = s.source(); src != nil {
				p = src.Point(name)
			}
		}
		if p == nil {
			out.SetEntryTimeout(noCache)
			return nil, syscall.ENOENT
		}
	}
	e := p.Root()
	fillAttr(&out.Attr, e.Attr())
	return s.NewInode(ctx, &entryNode{a: s.a, e: e}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.Ino()}), 0
}

func (s *sourceNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	s.t.Sync(syncAge)
	s.freshLatest()
	src := s.source()
	self := sourceIno(s.name)
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: self}, {Name: "..", Mode: syscall.S_IFDIR, Ino: 1}}
	if src != nil {
		pts := src.Points()
		list = append(list, fuse.DirEntry{Name: LatestName, Mode: syscall.S_IFLNK, Ino: src.LatestIno()})
		// Newest first: what people look for.
		for i := len(pts) - 1; i >= 0; i-- {
			list = append(list, fuse.DirEntry{Name: pts[i].Name, Mode: syscall.S_IFDIR, Ino: pts[i].Root().Ino()})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// lookupID answers <mnt>/<source>/<point id>: a symlink to the point's
// @GMT-... directory, found by lookup only (never listed, so Previous
// Versions and ls see only the points' names). A point's name is its
// time to the second, moved to the next free second when another point
// of the source has it, oldest first, and fixed only while a mount
// lives: after a forget and a remount, a name can belong to another
// point. A share that must serve one point whatever happens (a
// bare-metal recovery's image) names it by id: through this link it
// serves that point, or, once the point is forgotten, nothing.
func (s *sourceNode) lookupID(ctx context.Context, id chunkstore.ID, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := s.t.sourcePoint(s.name, id)
	if p == nil {
		s.t.Sync(syncAge)
		if p = s.t.sourcePoint(s.name, id); p == nil {
			out.SetEntryTimeout(noCache)
			return nil, syscall.ENOENT
		}
	}
	idLinkAttr(&out.Attr, p)
	out.SetEntryTimeout(dynamicTimeout)
	out.SetAttrTimeout(dynamicTimeout)
	return s.NewInode(ctx, &idLinkNode{t: s.t, id: id, source: s.name}, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: out.Attr.Ino}), 0
}

// idLinkNode is <mnt>/<source>/<point id> (lookupID).
type idLinkNode struct {
	gofs.Inode
	readOnly
	t      *Tree
	id     chunkstore.ID
	source string
}

var (
	_ = (gofs.NodeReadlinker)((*idLinkNode)(nil))
	_ = (gofs.NodeGetattrer)((*idLinkNode)(nil))
)

func idLinkAttr(out *fuse.Attr, p *Point) {
	linkAttr(out, inoOf(fnvAdd(pointHash(p.Meta.ID), "\x00id-link")), p)
}

func (l *idLinkNode) point() *Point { return l.t.sourcePoint(l.source, l.id) }

func (l *idLinkNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	p := l.point()
	if p == nil {
		return syscall.ENOENT
	}
	idLinkAttr(&out.Attr, p)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (l *idLinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	p := l.point()
	if p == nil {
		return nil, syscall.ENOENT
	}
	return []byte(p.Name), 0
}

// freshLatest drops the kernel's cached target of latest when it is no
// longer the newest point, before the caller answers: what the kernel
// reads through latest after that is the newest point (see Refresh).
// Called from requests on the source directory and from Server.apply,
// never from a request on latest itself, whose pages the invalidation may
// wait for.
func (s *sourceNode) freshLatest() {
	c := s.GetChild(LatestName)
	if c == nil {
		return
	}
	l, ok := c.Operations().(*latestNode)
	if !ok {
		return
	}
	// Nothing given yet may still mean a READLINK in flight with the old
	// target: invalidate then too.
	gave, src := l.gave.Load(), s.source()
	if src == nil {
		c.NotifyContent(0, 0)
		return
	}
	name := src.Latest().Name
	if gave != nil && *gave == name {
		return
	}
	c.NotifyContent(0, 0)
	// The kernel holds no target now; the next READLINK gives name. (A
	// READLINK that gave an older one meanwhile has stored that instead,
	// and the next request invalidates again.)
	l.gave.CompareAndSwap(gave, &name)
}

// latestNode is <mnt>/<source>/latest, a symlink to the newest point. The
// kernel caches its target like any symlink's (no READLINK per path
// through it); when the newest point changes, freshLatest drops that
// cache: in the request that notices, or from Watch.
type latestNode struct {
	gofs.Inode
	readOnly
	t      *Tree
	source string
	gave   atomic.Pointer[string] // the target last given to the kernel
}

var (
	_ = (gofs.NodeReadlinker)((*latestNode)(nil))
	_ = (gofs.NodeGetattrer)((*latestNode)(nil))
)

func latestAttr(out *fuse.Attr, s *Source) { linkAttr(out, s.LatestIno(), s.Latest()) }

// linkAttr is the attributes of a symlink ino to point p's directory
// (latest, an id link): p's name, and p's time.
func linkAttr(out *fuse.Attr, ino uint64, p *Point) {
	out.Ino = ino
	out.Mode = syscall.S_IFLNK | 0o777
	out.Nlink = 1
	out.Size = uint64(len(p.Name))
	out.Blksize = blockSize
	out.Mtime, out.Mtimensec = splitTime(p.Meta.Time)
	out.Ctime, out.Ctimensec = out.Mtime, out.Mtimensec
	out.Atime, out.Atimensec = out.Mtime, out.Mtimensec
}

func (l *latestNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	src := l.t.Source(l.source)
	if src == nil {
		return syscall.ENOENT
	}
	latestAttr(&out.Attr, src)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (l *latestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	l.t.Sync(syncAge)
	src := l.t.Source(l.source)
	if src == nil {
		return nil, syscall.ENOENT
	}
	name := src.Latest().Name
	l.gave.Store(&name)
	return []byte(name), 0
}

// adapter is what the nodes of one mount share.
type adapter struct {
	// noOpen: the kernel can open files without asking us
	// (FUSE_NO_OPEN_SUPPORT). Open then answers ENOSYS once, after which
	// the kernel sends no OPEN and no RELEASE at all and keeps the page
	// cache of every file (what FOPEN_KEEP_CACHE asks for). That is two
	// of the four round trips a small file costs; with Flush answering
	// ENOSYS (no FLUSH on close from then on), reading a small file takes
	// one READ. The mount is read-only in the kernel, so opens for writing
	// are refused with EROFS before they could reach us.
	noOpen atomic.Bool
	// noPush: the kernel refused a cache store; stop trying.
	noPush atomic.Bool
	// pushing bounds the goroutines storing file content ahead.
	pushing chan struct{}
}

func newAdapter() *adapter { return &adapter{pushing: make(chan struct{}, 1)} }

// entryNode is anything inside a point, including the point's root.
type entryNode struct {
	gofs.Inode
	readOnly
	a *adapter
	e *Entry
	// h serves reads that come without a handle of ours (no-open mode);
	// made on the first one. Its sequential-read state is then per inode.
	h atomic.Pointer[Handle]
	// seen: the kernel has read this file, or we stored (or are storing)
	// its content in the kernel's cache; read: the kernel has read it.
	seen, read atomic.Bool
}

// handle returns the node's own handle, made on first use.
func (n *entryNode) handle() (*Handle, error) {
	if h := n.h.Load(); h != nil {
		return h, nil
	}
	h, err := n.e.Open()
	if err != nil {
		return nil, err
	}
	if !n.h.CompareAndSwap(nil, h) {
		h = n.h.Load()
	}
	return h, nil
}

var (
	_ = (gofs.NodeLookuper)((*entryNode)(nil))
	_ = (gofs.NodeOpendirHandler)((*entryNode)(nil))
	_ = (gofs.NodeGetattrer)((*entryNode)(nil))
	_ = (gofs.NodeOpener)((*entryNode)(nil))
	_ = (gofs.NodeReadlinker)((*entryNode)(nil))
	_ = (gofs.NodeGetxattrer)((*entryNode)(nil))
	_ = (gofs.NodeListxattrer)((*entryNode)(nil))
	_ = (gofs.NodeStatfser)((*entryNode)(nil))
	_ = (gofs.NodeFlusher)((*entryNode)(nil))
	_ = (gofs.NodeLseeker)((*entryNode)(nil))
)

func (n *entryNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, n.e.Attr())
	return 0
}

func (n *entryNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: blockSize, Frsize: blockSize, NameLen: 255}
	return 0
}

func (n *entryNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c, err := n.e.Lookup(name)
	if err != nil {
		return nil, errno(err)
	}
	a := c.Attr()
	fillAttr(&out.Attr, a)
	return n.NewInode(ctx, &entryNode{a: n.a, e: c}, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: c.Ino()}), 0
}

func (n *entryNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	nodes, err := n.e.Children()
	if err != nil {
		return nil, 0, errno(err)
	}
	parent := uint64(1)
	if _, p := n.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	list := make([]fuse.DirEntry, 0, len(nodes)+2)
	list = append(list, fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.e.Ino()}, fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: parent})
	for _, c := range nodes {
		list = append(list, fuse.DirEntry{Name: c.Name, Mode: c.Type.ModeType(), Ino: n.e.ChildIno(c)})
	}
	// Content never changes: let the kernel keep the listing.
	return &dirHandle{list: list}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

func (n *entryNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.a != nil && n.a.noOpen.Load() {
		if n.e.n == nil || !n.e.n.Type.HasContent() {
			return nil, 0, syscall.EISDIR
		}
		return nil, 0, syscall.ENOSYS // see adapter.noOpen
	}
	h, err := n.e.Open()
	if err != nil {
		return nil, 0, errno(err)
	}
	return &fileHandle{h: h}, fuse.FOPEN_KEEP_CACHE, 0
}

// Flush answers ENOSYS: nothing is ever written, and the kernel stops
// sending FLUSH on close for the whole mount.
func (n *entryNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

func (n *entryNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !n.read.Load() {
		n.read.Store(true)
		if !n.seen.Swap(true) {
			n.pushNext()
		}
	}
	if f, ok := fh.(*fileHandle); ok {
		return f.Read(ctx, dest, off)
	}
	if fh != nil {
		return nil, syscall.EBADF
	}
	h, err := n.handle()
	if err != nil {
		return nil, errno(err)
	}
	return (&fileHandle{h: h}).Read(ctx, dest, off)
}

// Storing ahead. A tree walk (tar, cp -r, rsync, diff -r) reads the files
// of a directory one after the other in listing order, each small file in
// one READ that waits for its reply. When the kernel reads a file whose
// previous file in the directory it read too (or we stored), the content
// of the next files, up to pushBytes, is stored in the kernel's page cache
// (FUSE_NOTIFY_STORE) from a goroutine of its own, so the walker finds
// them cached and sends no requests, while chunks are loaded and verified
// on the other CPU. The walker's first READ past the stored files starts
// the next batch. Content never changes, so a stored page is as good as a
// read one; a file that cannot be read is skipped and left for a READ to
// report.
const (
	pushBytes   = 4 << 20
	pushFileMax = 1 << 20 // larger files are read by the kernel's readahead
)

// pushNext starts storing the files after n when the walk pattern holds.
func (n *entryNode) pushNext() {
	a := n.a
	if a == nil || a.noPush.Load() {
		return
	}
	dir, idx := n.e.Siblings()
	if dir == nil {
		return
	}
	_, parent := n.Parent()
	if parent == nil || !prevSeen(parent, dir, idx) {
		return
	}
	select {
	case a.pushing <- struct{}{}:
	default:
		return // a push is running; the walker's next READ tries again
	}
	go func() {
		defer func() { <-a.pushing }()
		a.push(parent, dir, idx+1)
	}()
}

// prevSeen reports whether the file before index idx in dir was read or
// stored.
func prevSeen(parent *gofs.Inode, dir []*engine.Node, idx int) bool {
	for i := idx - 1; i >= 0 && i >= idx-64; i-- {
		if !dir[i].Type.HasContent() || dir[i].Size == 0 {
			continue
		}
		c := parent.GetChild(dir[i].Name)
		if c == nil {
			return false
		}
		en, ok := c.Operations().(*entryNode)
		return ok && en.seen.Load()
	}
	return false
}

// push stores the content of dir's files from index from on, up to
// pushBytes, in the kernel's cache, loading them on all CPUs. Files the
// kernel holds no inode for (not looked up) or has read already are
// skipped.
func (a *adapter) push(parent *gofs.Inode, dir []*engine.Node, from int) {
	type job struct {
		c  *gofs.Inode
		en *entryNode
	}
	var jobs []job
	var total uint64
	for i := from; i < len(dir) && total < pushBytes; i++ {
		nd := dir[i]
		if !nd.Type.HasContent() || nd.Size == 0 || nd.Size > pushFileMax {
			continue
		}
		c := parent.GetChild(nd.Name)
		if c == nil {
			continue
		}
		en, ok := c.Operations().(*entryNode)
		if !ok || en.seen.Swap(true) {
			continue
		}
		jobs = append(jobs, job{c, en})
		total += nd.Size
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= len(jobs) || a.noPush.Load() {
					return
				}
				if en := jobs[k].en; !a.store(jobs[k].c, en) {
					en.seen.Store(en.read.Load())
				}
			}
		}()
	}
	wg.Wait()
}

// store puts the whole content of file node en (inode c) in the kernel's
// cache. It reports false if it did not.
func (a *adapter) store(c *gofs.Inode, en *entryNode) bool {
	h, err := en.handle()
	if err != nil {
		return false
	}
	size := int(en.e.n.Size)
	v, err := h.readVec(0, size, false)
	if err != nil {
		return false
	}
	defer v.Release()
	if len(v.Bufs) == 0 {
		return false
	}
	if en.read.Load() {
		return true // the walker overtook us: its READ fills the cache
	}
	buf := v.Bufs[0]
	if len(v.Bufs) > 1 {
		buf = make([]byte, 0, size)
		for _, b := range v.Bufs {
			buf = append(buf, b...)
		}
	}
	if st := c.WriteCache(0, buf); st != 0 {
		if st == syscall.ENOSYS {
			a.noPush.Store(true)
		}
		return false
	}
	h.dropCached()
	return true
}

// Lseek answers SEEK_DATA and SEEK_HOLE (the kernel handles the other
// whences itself) with the holes the point recorded, so cp --sparse,
// tar -S and qemu-img skip them instead of reading zeroes.
func (n *entryNode) Lseek(ctx context.Context, fh gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	var pos uint64
	var err error
	switch int(whence) {
	case unix.SEEK_DATA:
		pos, err = n.e.NextData(off)
	case unix.SEEK_HOLE:
		pos, err = n.e.NextHole(off)
	default:
		return 0, syscall.EINVAL
	}
	if err != nil {
		return 0, errno(err)
	}
	return pos, 0
}

func (n *entryNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.e.n == nil || n.e.n.Type != engine.TypeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(n.e.Target()), 0
}

func (n *entryNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, err := n.e.Xattr(attr)
	if err != nil {
		return 0, errno(err)
	}
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *entryNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var size int
	for _, x := range n.e.Xattrs() {
		size += len(x.Name) + 1
	}
	if len(dest) == 0 {
		return uint32(size), 0
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, x := range n.e.Xattrs() {
		off += copy(dest[off:], x.Name)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// fileHandle is an open file.
type fileHandle struct {
	h *Handle
}

var _ = (gofs.FileReader)((*fileHandle)(nil))

func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// Slices of cached chunks go to the kernel with one writev: no copy
	// here, and no splice attempt (which fails for 1 MiB replies).
	v, err := f.h.ReadVec(off, len(dest))
	if err != nil {
		return nil, errno(err)
	}
	return vecResult{v}, 0
}

// vecResult hands a Vec to go-fuse, which writes its slices to the kernel
// with one writev (it looks for the Slices method) and then calls Done:
// only then are the chunks let go.
type vecResult struct{ v *Vec }

func (r vecResult) Size() int {
	n := 0
	for _, b := range r.v.Bufs {
		n += len(b)
	}
	return n
}

func (r vecResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, b := range r.v.Bufs {
		buf = append(buf, b...)
	}
	return buf, fuse.OK
}

func (r vecResult) Slices() ([][]byte, fuse.Status) { return r.v.Bufs, fuse.OK }

func (r vecResult) Done() { r.v.Release() }

// dirHandle is an open directory of a point: a fixed listing.
type dirHandle struct {
	list []fuse.DirEntry
	idx  int // guarded by go-fuse's per-handle serialisation of readdir
}

var (
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileReleasedirer)((*dirHandle)(nil))
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.idx >= len(d.list) {
		return nil, 0
	}
	e := d.list[d.idx]
	d.idx++
	e.Off = uint64(d.idx)
	return &e, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(d.list)) {
		return syscall.EINVAL
	}
	d.idx = int(off)
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

// errno is the adapter's one error translation. Only the tree's own
// answers map to specific codes; anything from the store (a missing pack
// file included) is damage: EIO, never ENOENT, so a damaged directory does
// not look empty and a damaged file does not look absent.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case err == os.ErrNotExist:
		return syscall.ENOENT
	case err == syscall.ENOTDIR, err == syscall.EISDIR, err == syscall.EINVAL, err == syscall.ENXIO:
		return err.(syscall.Errno)
	case errors.Is(err, ErrNoXattr):
		return syscall.ENODATA
	case errors.Is(err, ErrNoLabels):
		return syscall.EOPNOTSUPP
	}
	return syscall.EIO
}
