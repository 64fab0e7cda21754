package fs

import (
	"strings"
	"time"
)

// SnapshotFormat is the Go layout of point names; ShadowFormat is the same
// for Samba's shadow:format (strftime).
const (
	SnapshotFormat = "@GMT-2006.01.02-15.04.05"
	ShadowFormat   = "@GMT-%Y.%m.%d-%H.%M.%S"
	// LatestName is the symlink to the newest point of a source.
	LatestName = "latest"
)

// SnapshotName is the name of a point that started at t, before any
// same-second adjustment (see the package comment).
func SnapshotName(t time.Time) string { return t.UTC().Format(SnapshotFormat) }

// ParseSnapshotName returns the time a point name stands for.
func ParseSnapshotName(name string) (time.Time, bool) {
	if !strings.HasPrefix(name, "@GMT-") || len(name) != len(SnapshotFormat) {
		return time.Time{}, false
	}
	t, err := time.Parse(SnapshotFormat, name)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// freeName returns the name for a point that started at t: its own second
// or, when taken, the next second that is free in used.
func freeName(t time.Time, used map[string]bool) string {
	s := t.UTC().Truncate(time.Second)
	for {
		n := SnapshotName(s)
		if !used[n] {
			return n
		}
		s = s.Add(time.Second)
	}
}

// PointNames gives the names points of one source would get in a fresh
// mount, keyed like times: times must be sorted oldest first. Useful to
// print where a point is found in the mount.
func PointNames(times []time.Time) []string {
	used := map[string]bool{}
	out := make([]string, len(times))
	for i, t := range times {
		out[i] = freeName(t, used)
		used[out[i]] = true
	}
	return out
}

// maxNameLen is the longest name the tree serves. The kernel fails a
// whole directory listing (EIO) over one longer name than it takes:
// FUSE_NAME_MAX, 1024 bytes on older kernels (4095 on newer ones). No
// local file system makes names that long (255 bytes at most), so only a
// crafted or damaged tree has them.
const maxNameLen = 1024

// dirName reports whether name can be a directory entry of the mount:
// not empty, "." or "..", without '/' or NUL, and no longer than
// maxNameLen. Anything else the kernel refuses in a listing, failing the
// whole directory with EIO (go-fuse panics on ""), or it names another
// place than an entry of the directory. These are the names restore
// skips too (engine's safeName), besides the length.
func dirName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}
