// Package mountinfo reads the kernel's table of mounts
// (/proc/self/mountinfo) and names the file system type of recall's own
// recovery-tree mounts. It sits below both engine, which must never back up
// a recovery tree, and fs, which mounts one.
package mountinfo

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RecallFSType is the file system type a recall recovery-tree mount shows
// in /proc/mounts and mountinfo.
const RecallFSType = "fuse.recall"

// Dead reports whether dir is a FUSE mount whose server is gone: every
// access fails with "transport endpoint is not connected". statfs is asked
// first: unlike stat it is never answered from the kernel's attribute
// cache. The mount code (fs) and the server's mount supervisor both ask.
func Dead(dir string) bool {
	dead := func(err error) bool { return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) }
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); dead(err) {
		return true
	}
	var st unix.Stat_t
	return dead(unix.Stat(dir, &st))
}

// Entry is one line of /proc/self/mountinfo.
type Entry struct {
	// Dev is the device number (major:minor) that stat reports as st_dev
	// for files of this mount.
	Dev uint64
	// Dir is the mount point as this process sees it.
	Dir string
	// FSType is the type, with its subtype for FUSE ("fuse.recall").
	FSType  string
	Source  string
	Options string
}

// Each calls fn for every line of /proc/self/mountinfo, in order: a later
// line is mounted on top of an earlier one with the same Dir.
func Each(fn func(Entry)) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, ok := parseLine(sc.Text()); ok {
			fn(e)
		}
	}
	return sc.Err()
}

// parseLine parses "id parent maj:min root mountpoint options
// [optional...] - fstype source superoptions".
func parseLine(line string) (Entry, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, x := range fields {
		if x == "-" && i >= 6 {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(fields) {
		return Entry{}, false
	}
	var dev uint64
	if maj, min, ok := strings.Cut(fields[2], ":"); ok {
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if err1 == nil && err2 == nil {
			dev = unix.Mkdev(uint32(a), uint32(b))
		}
	}
	return Entry{Dev: dev, Dir: Unescape(fields[4]), Options: fields[5], FSType: fields[sep+1],
		Source: Unescape(fields[sep+2])}, true
}

// Unescape undoes the octal escapes (\040 for a space) of mountinfo.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
