package engine

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Where a restore writes: beneath its target, never through a symlink.
//
// A restore runs as root into directories others may write to (a home
// restored with --overwrite), and a directory it made can be renamed and
// replaced by a symlink while it runs. So no entry is reached by its
// absolute path: the target is opened once (targetDirs), and each entry
// is created, removed or changed by an *at call on a descriptor of its
// directory with its own name, one path element that is never followed
// (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, unlinkat, linkat without
// AT_SYMLINK_FOLLOW).
//
// A directory's descriptor is the one the walk opened from its parent's
// as it made it, or, for the files the creators and readers create later
// and for the metadata pass at the end, one opened again from the target
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), or element by
// element with O_NOFOLLOW where the kernel has no openat2 (before 5.6).
// A descriptor held goes on reaching the directory the restore made even
// if it was moved: what is created there stays in the restore's own
// directory, wherever that is now. A directory found again as a symlink
// is not followed: what was to be restored in it is listed as not
// restored, and its metadata as not applied (replacedError).
//
// Metadata is applied through a descriptor of the entry itself, checked
// to be the entry the restore made (meta, metaAt): a file's or a
// directory's own, or for a symlink, fifo, device or socket an O_PATH
// one, used through /proc/self/fd/N, which reaches that entry and never
// what a symlink names.
//
// The descriptors of directories opened again are kept in a small LRU
// (dirCacheSize): the files of a pack come from a few directories, so a
// restore of many small files opens each directory again about once.

// errReplaced: a directory the restore made or merges into is a symlink
// by the time the restore uses it again.
var errReplaced = errors.New("replaced by a symlink during the restore; not followed")

// errStuck: with --overwrite, what is in the way cannot be unlinked
// (EPERM: chattr +i or +a, on it or on its directory). Like errInTheWay,
// the entry is skipped (or, restoring one entry, the restore fails).
var errStuck = errors.New("immutable or append-only, or in such a directory: 'chattr -i -a' it (and its directory), or restore elsewhere")

// errBusy: with --overwrite, what is in the way is a mount point (a
// bind-mounted file, as a container's /etc/hosts, or a file system
// mounted on a directory): it cannot be unlinked (EBUSY). Like
// errStuck, the entry is skipped (or, restoring one entry, the restore
// fails).
var errBusy = errors.New("a mount point: unmount it, or restore elsewhere")

// replacedError names the directory that was replaced by a symlink.
type replacedError struct {
	Path  string
	Moved bool // another directory, not a symlink, is at its name now
}

func (e *replacedError) Error() string {
	if e.Moved {
		return e.Path + ": moved during the restore and another directory put in its place; not followed"
	}
	return e.Path + ": " + errReplaced.Error()
}

func (e *replacedError) Is(target error) bool { return target == errReplaced }

// dirCacheSize is how many descriptors of directories opened again are
// kept (a variable for tests).
var dirCacheSize = 128

// targetDirs holds the restore's target, open, and descriptors of its
// directories. Safe for concurrent use.
type targetDirs struct {
	path    string  // the target, cleaned: the restore's paths start with it
	root    *dirRef // never closed before close
	openat2 bool    // the kernel has openat2 (and a sandbox allows it)

	mu    sync.Mutex
	byRel map[string]*dirRef
	// made: the identity of each directory the walk made or merged into.
	// One opened again must be that one, not another directory a user
	// put at its name after moving the restore's away (its files would
	// go where that user can read them).
	made map[string]devIno
	lru  list.List // of *dirRef, most recently used first
}

// dirRef is a descriptor of a directory of the target. refs counts the
// users that got it from targetDirs and have not put it back; it is
// closed once neither they nor the cache hold it.
type dirRef struct {
	fd   int
	rel  string
	refs int
	elem *list.Element // in targetDirs.lru, or nil once out of the cache
	// gid is the directory's group when it was opened, which a file
	// created in it may take instead of the creator's (a set-group-ID
	// directory, a file system mounted grpid); -1 when unknown.
	gid int64
}

// dirGid returns the group of the directory open as fd, or -1.
func dirGid(fd int) int64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return -1
	}
	return int64(st.Gid)
}

// walkOnly, set by tests, resolves as without openat2.
var walkOnly bool

// beneathHow resolves a directory under the target without following
// any symlink, nor "..", out of it.
var beneathHow = unix.OpenHow{
	Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
}

// openTarget opens the restore target, a directory. The target's own
// path is the administrator's and is followed as given.
func openTarget(target string) (*targetDirs, error) {
	clean := filepath.Clean(target)
	fd, err := unix.Open(clean, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("restore target %s: %w", target, &os.PathError{Op: "open", Path: target, Err: err})
	}
	t := &targetDirs{path: clean, root: &dirRef{fd: fd, gid: dirGid(fd)}, byRel: map[string]*dirRef{}, made: map[string]devIno{}}
	// ENOSYS before Linux 5.6; EPERM from some container sandboxes.
	how := beneathHow
	if probe, err := unix.Openat2(fd, ".", &how); err == nil {
		unix.Close(probe)
		t.openat2 = !walkOnly
	}
	return t, nil
}

// close closes the target and every cached descriptor; call it when no
// one uses them any more.
func (t *targetDirs) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.lru.Front(); e != nil; e = e.Next() {
		unix.Close(e.Value.(*dirRef).fd)
	}
	t.lru.Init()
	clear(t.byRel)
	unix.Close(t.root.fd)
}

// relOf is path, one of the restore's paths, relative to the target (""
// for the target itself).
func (t *targetDirs) relOf(path string) (string, error) {
	if path == t.path {
		return "", nil
	}
	prefix := t.path
	if prefix != "/" {
		prefix += "/"
	}
	if rel, ok := strings.CutPrefix(path, prefix); ok && rel != "" {
		return rel, nil
	}
	return "", fmt.Errorf("%s is not under the restore target %s", path, t.path)
}

// parentOf returns the directory that holds path, one of the restore's
// paths below the target, and path's name in it. The caller puts the
// directory back. An error names the directory that could not be
// reached; a *replacedError when it is a symlink by now.
func (t *targetDirs) parentOf(path string) (*dirRef, string, error) {
	rel, err := t.relOf(path)
	if err != nil {
		return nil, "", err
	}
	if rel == "" {
		return nil, "", fmt.Errorf("the restore target %s has no directory in the target", path)
	}
	dirRel, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dirRel, name = rel[:i], rel[i+1:]
	}
	d, err := t.dir(dirRel)
	if err != nil {
		return nil, "", err
	}
	return d, name, nil
}

// dir returns a descriptor of the directory rel under the target, from
// the cache or opened again; the caller puts it back.
func (t *targetDirs) dir(rel string) (*dirRef, error) {
	if rel == "" {
		return t.root, nil
	}
	t.mu.Lock()
	if d := t.byRel[rel]; d != nil {
		d.refs++
		t.lru.MoveToFront(d.elem)
		t.mu.Unlock()
		return d, nil
	}
	want, known := t.made[rel]
	t.mu.Unlock()
	fd, err := t.resolve(rel)
	if err != nil {
		return nil, t.explain(rel, err)
	}
	var st unix.Stat_t
	if known && (unix.Fstat(fd, &st) != nil || (devIno{st.Dev, st.Ino}) != want) {
		unix.Close(fd)
		return nil, &replacedError{Path: filepath.Join(t.path, rel), Moved: true}
	}
	return t.add(rel, fd, false), nil
}

// adopt caches fd, a descriptor of the directory rel the walk has just
// made (or merges into) and opened from its parent's, and returns it for
// the walk, which puts it back when it leaves the directory.
func (t *targetDirs) adopt(rel string, fd int) *dirRef {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		t.mu.Lock()
		t.made[rel] = devIno{st.Dev, st.Ino}
		t.mu.Unlock()
	}
	return t.add(rel, fd, true)
}

// add caches fd as rel's descriptor, taken once by the caller. Another
// one cached meanwhile is kept (and fd closed) unless replace.
func (t *targetDirs) add(rel string, fd int, replace bool) *dirRef {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.byRel[rel]; old != nil {
		if !replace {
			unix.Close(fd)
			old.refs++
			t.lru.MoveToFront(old.elem)
			return old
		}
		t.uncache(old)
	}
	d := &dirRef{fd: fd, rel: rel, refs: 1, gid: dirGid(fd)}
	d.elem = t.lru.PushFront(d)
	t.byRel[rel] = d
	for t.lru.Len() > max(dirCacheSize, 1) {
		t.uncache(t.lru.Back().Value.(*dirRef))
	}
	return d
}

// uncache takes d out of the cache, closing it unless in use (t.mu held).
func (t *targetDirs) uncache(d *dirRef) {
	t.lru.Remove(d.elem)
	d.elem = nil
	if t.byRel[d.rel] == d {
		delete(t.byRel, d.rel)
	}
	if d.refs == 0 {
		unix.Close(d.fd)
	}
}

// put gives back a descriptor dir, parentOf or adopt returned.
func (t *targetDirs) put(d *dirRef) {
	if d == t.root {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d.refs--; d.refs == 0 && d.elem == nil {
		unix.Close(d.fd)
	}
}

// resolve opens the directory rel under the target (O_PATH) without
// following a symlink: ELOOP where one is in the way.
func (t *targetDirs) resolve(rel string) (int, error) {
	// A path past PATH_MAX (a tree deeper than 4,096 bytes, which a
	// restore makes directory by directory) is walked element by element:
	// openat2 refuses it whole with ENAMETOOLONG, which left every deep
	// directory without its metadata.
	if t.openat2 && len(rel) < unix.PathMax {
		// EAGAIN: a rename anywhere on the system raced the lookup,
		// which RESOLVE_BENEATH then refuses rather than risk it.
		for range 8 {
			how := beneathHow
			fd, err := unix.Openat2(t.root.fd, rel, &how)
			if err != unix.EAGAIN && err != unix.EINTR {
				return fd, err
			}
		}
	}
	fd, _, err := t.walk(rel)
	return fd, err
}

// walk opens the directory rel under the target element by element,
// never following a symlink. On failure it returns the path (relative
// to the target) of the element that failed, and ELOOP if that is a
// symlink.
func (t *targetDirs) walk(rel string) (int, string, error) {
	fd := t.root.fd
	done := ""
	for name := range strings.SplitSeq(rel, "/") {
		done = filepath.Join(done, name)
		var next int
		var err error
		if name == "" || name == "." || name == ".." {
			err = unix.EINVAL // not from a point: its names are checked (safeName)
		} else {
			next, err = openDirAt(fd, name, unix.O_PATH)
		}
		if fd != t.root.fd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, done, err
		}
		fd = next
	}
	if fd == t.root.fd {
		return -1, done, unix.EINVAL
	}
	return fd, "", nil
}

// explain turns the error of opening the directory rel into one naming
// the element in the way: a *replacedError for a symlink.
func (t *targetDirs) explain(rel string, err error) error {
	if err == unix.ELOOP || err == unix.ENOTDIR {
		if fd, at, werr := t.walk(rel); werr == nil {
			unix.Close(fd) // changed again since; name rel itself
		} else {
			rel, err = at, werr
		}
	}
	path := filepath.Join(t.path, rel)
	if err == unix.ELOOP {
		return &replacedError{Path: path}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// openDirAt opens the directory name in dfd with flags (O_PATH or
// O_RDONLY); ELOOP if name is a symlink, which is never followed.
func openDirAt(dfd int, name string, flags int) (int, error) {
	fd, err := unix.Openat(dfd, name, flags|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOTDIR || err == unix.ELOOP {
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		} else {
			err = unix.ENOTDIR
		}
	}
	return fd, err
}

// removeAt unlinks name in dfd, a directory (rmdir) or not; whatever it
// is, it is never followed.
func removeAt(dfd int, name string, isDir bool) error {
	for range 2 {
		flags := 0
		if isDir {
			flags = unix.AT_REMOVEDIR
		}
		err := unix.Unlinkat(dfd, name, flags)
		// It changed between the caller's look and the unlink.
		switch {
		case err == unix.EISDIR && !isDir:
			isDir = true
		case err == unix.ENOTDIR && isDir:
			isDir = false
		default:
			return err
		}
	}
	return unix.EBUSY
}

// unlinkSameAt removes name in dfd if it is still the file dev, ino.
func unlinkSameAt(dfd int, name string, dev, ino uint64) bool {
	var st unix.Stat_t
	if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Dev != dev || st.Ino != ino {
		return false
	}
	return unix.Unlinkat(dfd, name, 0) == nil
}

// typeBits is the S_IFMT bits of an entry of type t that is neither a
// directory nor a file's content (0 for those).
func typeBits(t NodeType) uint32 {
	switch t {
	case TypeSymlink:
		return unix.S_IFLNK
	case TypeFifo:
		return unix.S_IFIFO
	case TypeBlock:
		return unix.S_IFBLK
	case TypeChar:
		return unix.S_IFCHR
	case TypeSocket:
		return unix.S_IFSOCK
	}
	return 0
}

// madeAs reports whether st is what the restore just made for n, a
// symlink, fifo, device or socket: of n's type (a device of n's number),
// and no hard link of another entry put in its place.
func madeAs(st *unix.Stat_t, n *Node) bool {
	want := typeBits(n.Type)
	if want == 0 || st.Mode&unix.S_IFMT != want || st.Nlink > 1 {
		return false
	}
	// Owned by the restoring user, as what it just made is (its owner is
	// set after this check): one put in its place by another user is not
	// made the point's owner's, root's say.
	if st.Uid != uint32(os.Geteuid()) {
		return false
	}
	return (n.Type != TypeBlock && n.Type != TypeChar) || st.Rdev == n.Rdev
}

// errNoProc: an O_PATH descriptor's entry is changed through
// /proc/self/fd, which is not there.
var errNoProc = errors.New("/proc is not mounted: without it this cannot be set without risking following a symlink")

// procFDs reports whether /proc/self/fd is there (not in every chroot).
// (A variable: tests stand in for a system without it.)
var procFDs = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// proc is the path by which m.fd, an O_PATH descriptor, reaches its
// entry itself: following it ends at that entry, even a symlink.
func (m metaAt) proc() (string, error) {
	if !procFDs() {
		return "", errNoProc
	}
	return "/proc/self/fd/" + strconv.Itoa(m.fd), nil
}
