package engine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// PointFS is the point's tree as a read-only file system (fs.FS,
// fs.ReadDirFS, fs.StatFS, fs.ReadLinkFS; files are io.ReaderAt and
// io.Seeker too), for code that reads a point the way it reads a
// directory on disk: engine/wsb inspects a Windows image in a point with
// the code that inspects the staging share. Sizes, modes and times come
// from the tree: listing reads no file data. A file's bytes are read a
// chunk at a time as asked; a chunk that is missing or fails its check
// fails the read with an error wrapping ErrDamaged, never wrong bytes.
//
// Open follows symbolic links whose target is relative and stays inside
// the point; any other link opens as not existing (its target is on the
// machine that was backed up, not here). Entries no restore would write
// (see Walk) are not listed, nor are names that are not UTF-8, which
// io/fs cannot name (restore and the mount have them). The file system and its files may be used
// from many goroutines at once.
func (r *Reader) PointFS(p *Point) fs.FS {
	root := &Node{Name: ".", Type: TypeDir, Mode: p.Root.Mode, UID: p.Root.UID, GID: p.Root.GID,
		MtimeNS: p.Root.MtimeNS, CtimeNS: p.Root.CtimeNS, AtimeNS: p.Root.AtimeNS, Nlink: p.Root.Nlink, Subtree: p.Tree}
	return &pointFS{r: r, root: root, trees: map[chunkstore.ID]*Tree{}}
}

var (
	_ fs.ReadDirFS   = (*pointFS)(nil)
	_ fs.StatFS      = (*pointFS)(nil)
	_ fs.ReadLinkFS  = (*pointFS)(nil)
	_ io.ReaderAt    = (*pointFile)(nil)
	_ io.Seeker      = (*pointFile)(nil)
	_ fs.ReadDirFile = (*pointDir)(nil)
)

// maxCachedTrees bounds pointFS's cache of decoded directories: enough
// for the directories a reader walks at once, not a whole large point.
const maxCachedTrees = 4096

// maxLinks is how many symbolic links one lookup follows, as Linux's
// limit of 40.
const maxLinks = 40

type pointFS struct {
	r    *Reader
	root *Node

	mu    sync.Mutex
	trees map[chunkstore.ID]*Tree // trees never change: an id is its content
}

// tree loads a directory's tree, through the cache.
func (f *pointFS) tree(n *Node) (*Tree, error) {
	f.mu.Lock()
	t := f.trees[n.Subtree]
	f.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := f.r.LoadTree(n.Subtree)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.trees) >= maxCachedTrees {
		clear(f.trees)
	}
	f.trees[n.Subtree] = t
	f.mu.Unlock()
	return t, nil
}

// lookup finds the node at name, following symbolic links on the way
// and, with follow, at the end.
func (f *pointFS) lookup(op, name string, follow bool) (*Node, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	links := 0
	todo := strings.Split(name, "/")
	if name == "." {
		todo = nil
	}
	var dir []string // the path of n, resolved
	n := f.root
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		if n.Type != TypeDir {
			return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		t, err := f.tree(n)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		c := t.Find(elem)
		if c == nil || !safeName(elem) {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if c.Type == TypeSymlink && (len(todo) > 0 || follow) {
			if links++; links > maxLinks {
				return nil, &fs.PathError{Op: op, Path: name, Err: syscall.ELOOP}
			}
			target := path.Join(append(dir, c.Target)...)
			if c.Target == "" || path.IsAbs(c.Target) || target == ".." || strings.HasPrefix(target, "../") {
				return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
			// Start again from the root with the link replaced by its
			// target.
			if target != "." {
				todo = append(strings.Split(target, "/"), todo...)
			}
			n, dir = f.root, nil
			continue
		}
		n, dir = c, append(dir, elem)
	}
	return n, nil
}

func (f *pointFS) Open(name string) (fs.File, error) {
	n, err := f.lookup("open", name, true)
	if err != nil {
		return nil, err
	}
	info := &nodeInfo{n: n, name: path.Base(name)}
	if n.Type == TypeDir {
		t, err := f.tree(n)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &pointDir{info: info, ents: entries(t)}, nil
	}
	return &pointFile{r: f.r, info: info, path: name}, nil
}

func (f *pointFS) Stat(name string) (fs.FileInfo, error) {
	n, err := f.lookup("stat", name, true)
	if err != nil {
		return nil, err
	}
	return &nodeInfo{n: n, name: path.Base(name)}, nil
}

func (f *pointFS) Lstat(name string) (fs.FileInfo, error) {
	n, err := f.lookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return &nodeInfo{n: n, name: path.Base(name)}, nil
}

func (f *pointFS) ReadLink(name string) (string, error) {
	n, err := f.lookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.Type != TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return n.Target, nil
}

func (f *pointFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.lookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if n.Type != TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	t, err := f.tree(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return entries(t), nil
}

// entries lists a tree as fs.ReadDir does: sorted by name (a tree is),
// without the names no restore would write or io/fs cannot open.
func entries(t *Tree) []fs.DirEntry {
	out := make([]fs.DirEntry, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		if safeName(n.Name) && fs.ValidPath(n.Name) {
			out = append(out, &nodeInfo{n: n, name: n.Name})
		}
	}
	return out
}

// nodeInfo is a node as fs.FileInfo and fs.DirEntry. Sys returns the
// *Node.
type nodeInfo struct {
	n    *Node
	name string
}

func (i *nodeInfo) Name() string               { return i.name }
func (i *nodeInfo) Size() int64                { return int64(i.n.Size) }
func (i *nodeInfo) ModTime() time.Time         { return time.Unix(0, i.n.MtimeNS) }
func (i *nodeInfo) IsDir() bool                { return i.n.Type == TypeDir }
func (i *nodeInfo) Sys() any                   { return i.n }
func (i *nodeInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i *nodeInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i *nodeInfo) String() string             { return fs.FormatFileInfo(i) }

// Mode maps the tree's type and permission bits to io/fs's.
func (i *nodeInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.n.Mode & 0o777)
	for _, b := range []struct {
		unix uint32
		mode fs.FileMode
	}{{syscall.S_ISUID, fs.ModeSetuid}, {syscall.S_ISGID, fs.ModeSetgid}, {syscall.S_ISVTX, fs.ModeSticky}} {
		if i.n.Mode&b.unix != 0 {
			m |= b.mode
		}
	}
	switch i.n.Type.ModeType() {
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	return m
}

// pointDir is an open directory.
type pointDir struct {
	info *nodeInfo
	mu   sync.Mutex
	ents []fs.DirEntry // what ReadDir has not returned yet
}

func (d *pointDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *pointDir) Close() error               { return nil }
func (d *pointDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: syscall.EISDIR}
}

func (d *pointDir) ReadDir(n int) ([]fs.DirEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.ents))
	out := d.ents[:n:n]
	d.ents = d.ents[n:]
	return out, nil
}

// pointFile is an open file: a regular file or device image reads its
// content; any other kind (a device node, a fifo) reads as empty.
type pointFile struct {
	r    *Reader
	info *nodeInfo
	path string

	mu  sync.Mutex
	off int64
	// last is the chunk read last, so that reads smaller than a chunk
	// (io.Copy's 32 KiB) do not load it again each time.
	last   chunkstore.ID
	lastB  []byte
	closed bool
}

func (f *pointFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *pointFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.path, Err: fs.ErrClosed}
	}
	f.closed, f.lastB = true, nil
	return nil
}

func (f *pointFile) Read(b []byte) (int, error) {
	f.mu.Lock()
	off := f.off
	f.mu.Unlock()
	n, err := f.ReadAt(b, off)
	f.mu.Lock()
	f.off = off + int64(n)
	f.mu.Unlock()
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *pointFile) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

func (f *pointFile) size() int64 {
	if !f.info.n.Type.HasContent() {
		return 0
	}
	return int64(f.info.n.Size)
}

// ReadAt reads from the file's extents: holes and the part past the last
// extent read as zeroes, chunks are loaded and checked.
func (f *pointFile) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrClosed}
	}
	n := f.info.n
	end := min(off+int64(len(b)), f.size())
	done := 0
	for pos := off; pos < end; {
		i := n.ExtentAt(uint64(pos))
		stop := end
		if i < len(n.Extents) {
			stop = min(stop, int64(n.Extents[i].End))
		}
		dst := b[pos-off : stop-off]
		if i >= len(n.Extents) || n.Extents[i].Hole {
			clear(dst)
		} else {
			c, err := f.chunk(n, i)
			if err != nil {
				return done, &fs.PathError{Op: "read", Path: f.path, Err: fmt.Errorf("offset %d: %w", pos, err)}
			}
			copy(dst, c[pos-int64(n.ExtentStart(i)):])
		}
		done += len(dst)
		pos = stop
	}
	if done < len(b) {
		return done, io.EOF
	}
	return done, nil
}

// chunk returns the content of extent i, a stored chunk.
func (f *pointFile) chunk(n *Node, i int) ([]byte, error) {
	x := n.Extents[i]
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, fs.ErrClosed
	}
	if f.lastB != nil && f.last == x.ID {
		c := f.lastB
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	c, err := f.r.ReadChunk(x.ID, nil)
	if err == nil && uint64(len(c)) != x.End-n.ExtentStart(i) {
		err = fmt.Errorf("chunk %s holds %d bytes, the tree says %d", x.ID.Short(), len(c), x.End-n.ExtentStart(i))
	}
	if err != nil {
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("%w: %w", ErrDamaged, err)
		}
		return nil, err
	}
	f.mu.Lock()
	f.last, f.lastB = x.ID, c
	f.mu.Unlock()
	return c, nil
}
