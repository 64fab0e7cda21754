package engine

import (
	"errors"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nodeFromStat fills type and metadata from an lstat result.
func nodeFromStat(name string, st *unix.Stat_t) *Node {
	n := &Node{
		Name:    name,
		Mode:    st.Mode & 0o7777,
		UID:     st.Uid,
		GID:     st.Gid,
		MtimeNS: timeNS(st.Mtim),
		CtimeNS: timeNS(st.Ctim),
		AtimeNS: timeNS(st.Atim),
		Dev:     st.Dev,
		Inode:   st.Ino,
		Nlink:   uint64(st.Nlink),
	}
	n.timeClamped = !fitsNS(st.Mtim) || !fitsNS(st.Atim) || !fitsNS(st.Ctim)
	switch n.Type = NodeTypeOf(st.Mode); n.Type {
	case TypeFile, TypeSymlink:
		n.Size = uint64(st.Size)
	case TypeBlock, TypeChar:
		n.Rdev = st.Rdev
	}
	return n
}

// Times are kept in nanoseconds since 1970 in an int64 (the tree format),
// which reaches from 1677-09-21 to 2262-04-11. ext4 keeps times up to
// 2446 and XFS and btrfs further; Timespec.Nano wraps such a time around
// (a file of 2263 came back as 1901). Outside the range a time is saved
// as the nearest end of it, and the backup warns.
// The range is exact to the nanosecond: a time in the last second before
// either end fits (it was clamped a second or two short, and warned of).
const (
	maxTimeSec  = math.MaxInt64 / 1_000_000_000               // 2262-04-11T23:47:16
	maxTimeNsec = math.MaxInt64 % 1_000_000_000               // .854775807
	minTimeSec  = math.MinInt64/1_000_000_000 - 1             // 1677-09-21T00:12:43
	minTimeNsec = 1_000_000_000 + math.MinInt64%1_000_000_000 // .145224192
)

func fitsNS(ts unix.Timespec) bool {
	switch {
	case ts.Sec > maxTimeSec || ts.Sec == maxTimeSec && ts.Nsec > maxTimeNsec:
		return false
	case ts.Sec < minTimeSec || ts.Sec == minTimeSec && ts.Nsec < minTimeNsec:
		return false
	}
	return true
}

// timeNS is ts in nanoseconds, clamped to what an int64 holds.
func timeNS(ts unix.Timespec) int64 {
	switch {
	case fitsNS(ts):
		return ts.Sec*1_000_000_000 + ts.Nsec
	case ts.Sec > 0:
		return math.MaxInt64
	}
	return math.MinInt64
}

// errTimeClamped is the warning for a file whose times do not fit.
var errTimeClamped = errors.New("a time of it lies outside 1677-2262, the range a point records: saved as the nearest end of it")

// readXattrs lists the extended attributes of path without following a
// final symlink. File systems without xattr support give none.
func readXattrs(path string) ([]Xattr, error) {
	names, err := xattrNames(path)
	if err != nil {
		return nil, err
	}
	var out []Xattr
	for _, name := range names {
		vsz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, err
		}
		val := make([]byte, vsz)
		if vsz > 0 {
			vsz, err = unix.Lgetxattr(path, name, val)
			if err != nil {
				return nil, err
			}
		}
		out = append(out, Xattr{Name: name, Value: val[:vsz]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// xattrNames lists the names of path's extended attributes without
// following a final symlink; none where the file system has no xattrs.
func xattrNames(path string) ([]string, error) {
	return listXattrNames(func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) })
}

// listXattrNames lists the names list (llistxattr or flistxattr) returns;
// none where the file system has no xattrs.
func listXattrNames(list func(buf []byte) (int, error)) ([]string, error) {
	sz, err := list(nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, sz*2)
	sz, err = list(buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// blockDeviceSize returns the size of an open block device.
func blockDeviceSize(f *os.File) (int64, error) {
	var sz uint64
	// BLKGETSIZE64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&sz)))
	if e != 0 {
		end, err := f.Seek(0, 2)
		if err != nil {
			return 0, e
		}
		return end, nil
	}
	return int64(sz), nil
}

// Inode flags (chattr(1), lsattr(1)): the FS_IOC_GETFLAGS bits of
// linux/fs.h a point keeps, with chattr's letter for each. Their values
// are part of the tree format (tree.go). Left out: the ones a file system
// sets itself and no one can change (e extents, I indexed directory, N
// inline data, E encrypted, V verity, h huge file), and F (casefold),
// which only an empty directory takes, and a directory's flags are set
// once its entries are in.
var inodeFlags = []struct {
	bit    uint32
	letter byte
}{
	{0x00000001, 's'}, // secure deletion
	{0x00000002, 'u'}, // undeletable
	{0x00000004, 'c'}, // compressed
	{0x00000008, 'S'}, // synchronous updates
	{0x00000010, 'i'}, // immutable
	{0x00000020, 'a'}, // append only
	{0x00000040, 'd'}, // no dump
	{0x00000080, 'A'}, // no atime updates
	{0x00000400, 'm'}, // not compressed
	{0x00004000, 'j'}, // data journalling
	{0x00008000, 't'}, // no tail merging
	{0x00010000, 'D'}, // synchronous directory updates
	{0x00020000, 'T'}, // top of directory hierarchies
	{0x00800000, 'C'}, // no copy on write
	{0x02000000, 'x'}, // direct access
	{0x20000000, 'P'}, // project hierarchy
}

// keptFlags are the bits of inodeFlags.
var keptFlags = func() uint32 {
	var m uint32
	for _, f := range inodeFlags {
		m |= f.bit
	}
	return m
}()

// flagsImmutable are the flags that keep a file from being changed
// (immutable, append only): a restore sets them last.
const flagsImmutable = 0x10 | 0x20

// flagLetters renders flags as chattr's letters ("ia"), in lsattr's order.
func flagLetters(flags uint32) string {
	var b []byte
	for _, f := range inodeFlags {
		if flags&f.bit != 0 {
			b = append(b, f.letter)
		}
	}
	return string(b)
}

// readFlags returns the kept inode flags of the file or directory open
// at fd, 0 where its file system has none (tmpfs before Linux 6.0, FUSE,
// NFS: ENOTTY, EOPNOTSUPP, EINVAL).
func readFlags(fd int) uint32 {
	v, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return 0
	}
	return v & keptFlags
}

// openNoAtime opens path with flags and O_NOATIME, which a backup's
// reads use so that they leave access times as they were; O_NOATIME
// needs the file's owner or CAP_FOWNER, and without either (EPERM) the
// file is opened as before.
func openNoAtime(path string, flags int) (int, error) {
	fd, err := openRetry(path, flags|unix.O_NOATIME)
	if err == unix.EPERM {
		fd, err = openRetry(path, flags)
	}
	return fd, err
}

// openRetry opens path, again where a signal interrupted the open (the
// os package does the same: a FUSE or network file system may return
// EINTR).
func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// flagsOf reads the kept inode flags of the regular file at path, 0 when
// it cannot be opened. O_NONBLOCK: an entry replaced by a FIFO must not
// block the open.
func flagsOf(path string) uint32 {
	fd, err := openNoAtime(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	return readFlags(fd)
}

// setFlags gives the file or directory open at fd the kept inode flags
// flags, keeping the bits outside keptFlags it has (e: extents). Where
// its file system has no flags, clearing them is no error.
func setFlags(fd int, flags uint32) error {
	cur, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		if flags == 0 {
			return nil
		}
		return err
	}
	want := cur&^keptFlags | flags
	if want == cur {
		return nil
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want))
}

// Deep trees. A path passes PATH_MAX (4,096 bytes) long before a file
// system runs out of depth, and every call that takes one fails there
// with ENAMETOOLONG. A directory whose path is longer than aliasAfter
// (so that an entry's, with a name of up to 255 bytes, could pass the
// limit) is opened, and its entries are reached as
// /proc/self/fd/N/name: the kernel resolves that through the open
// directory, as openat(N, name) would, and the paths below it start short
// again. Without /proc such a directory fails as before.
const aliasAfter = 3072

// aliasDir opens the directory at path, if it is still the one with
// device dev and inode ino (ino 0: any), and returns a short path that
// reaches it, valid until done is called.
func aliasDir(path string, dev, ino uint64) (alias string, done func(), err error) {
	fd, err := openNoAtime(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err == unix.EACCES {
		// Not readable: it is listed as not readable by the caller.
		fd, err = unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return "", nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if ino != 0 && (st.Dev != dev || st.Ino != ino) {
		unix.Close(fd)
		return "", nil, errDirReplaced
	}
	alias = "/proc/self/fd/" + strconv.Itoa(fd)
	var ast unix.Stat_t
	if err := unix.Stat(alias, &ast); err != nil || ast.Dev != st.Dev || ast.Ino != st.Ino {
		unix.Close(fd)
		return "", nil, &os.PathError{Op: "open", Path: path, Err: unix.ENAMETOOLONG}
	}
	return alias, func() { unix.Close(fd) }, nil
}
