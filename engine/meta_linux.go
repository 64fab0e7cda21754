package engine

import (
	"errors"
	"math"
	"os"
	"sort"
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
const (
	maxTimeSec = math.MaxInt64/1_000_000_000 - 1
	minTimeSec = math.MinInt64/1_000_000_000 + 1
)

func fitsNS(ts unix.Timespec) bool { return ts.Sec <= maxTimeSec && ts.Sec >= minTimeSec }

// timeNS is ts in nanoseconds, clamped to what an int64 holds.
func timeNS(ts unix.Timespec) int64 {
	switch {
	case ts.Sec > maxTimeSec:
		return maxTimeSec * 1_000_000_000
	case ts.Sec < minTimeSec:
		return minTimeSec * 1_000_000_000
	}
	return ts.Nano()
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
