package fs

import (
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
)

// SnapshotFormat is the Go layout of point names; ShadowFormat is the same
// for Samba's shadow:format (strftime).
const (
	SnapshotFormat = engine.SnapshotFormat
	ShadowFormat   = "@GMT-%Y.%m.%d-%H.%M.%S"
	// LatestName is the symlink to the newest point of a source.
	LatestName = "latest"
)

// SnapshotName is the name of a point that started at t, before any
// same-second adjustment (see the package comment).
func SnapshotName(t time.Time) string { return engine.SnapshotName(t) }

// ParseSnapshotName returns the time a point name stands for.
func ParseSnapshotName(name string) (time.Time, bool) { return engine.ParseSnapshotName(name) }

// PointNames gives the names points of one source that recorded none
// would get in a fresh mount, keyed like times: times must be sorted
// oldest first.
func PointNames(times []time.Time) []string {
	used := map[string]bool{}
	out := make([]string, len(times))
	for i, t := range times {
		out[i] = engine.FreeName(t, used)
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
