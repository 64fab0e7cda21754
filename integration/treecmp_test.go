package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is everything a restore must reproduce about one path.
type entry struct {
	Type    uint32
	Mode    uint32
	UID     uint32
	GID     uint32
	MtimeNS int64
	Size    int64
	Rdev    uint64
	Target  string
	Xattrs  string
	Content string // sha256
	Holes   string // data/hole map for regular files
	Link    string // first path of its hard-link group ("" for nlink 1)
}

// snapshot describes a tree: path -> entry. The root's own entry is "."
// (without content). Hard-link groups are named by their first path in
// lexical order, so two trees compare equal when the same paths are linked.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	groups := map[[2]uint64]string{}
	var paths []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		e := entry{Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MtimeNS: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Size = st.Size
			e.Content = fileHash(t, p)
			e.Holes = holeMap(t, p, st.Size)
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				if g, ok := groups[k]; ok {
					e.Link = g
				} else {
					groups[k] = rel
					e.Link = rel
				}
			}
		case unix.S_IFLNK:
			e.Target, _ = os.Readlink(p)
		case unix.S_IFBLK, unix.S_IFCHR:
			e.Rdev = st.Rdev
		}
		e.Xattrs = xattrs(t, p)
		out[rel] = e
	}
	return out
}

func fileHash(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// holeMap lists data regions as "start-end" (4 KiB granularity).
func holeMap(t *testing.T, p string, size int64) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var parts []string
	var off int64
	for off < size {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			h = size
		}
		parts = append(parts, fmt.Sprintf("%d-%d", d, h))
		off = h
	}
	return strings.Join(parts, ",")
}

func xattrs(t *testing.T, p string) string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return ""
	}
	buf := make([]byte, sz)
	sz, _ = unix.Llistxattr(p, buf)
	names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		v := make([]byte, 65536)
		vs, err := unix.Lgetxattr(p, n, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, n, err)
		}
		parts = append(parts, n+"="+hex.EncodeToString(v[:vs]))
	}
	return strings.Join(parts, ";")
}

// compareTrees reports every field that differs; root metadata (".")
// is compared too.
func compareTrees(t *testing.T, want, got map[string]entry) {
	t.Helper()
	diffs := 0
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("missing after restore: %q", p)
			diffs++
			continue
		}
		if !holesKept(w.Holes, g.Holes, w.Size) {
			t.Errorf("%q: sparse regions not kept: want data only within %s, got %s", p, w.Holes, g.Holes)
			diffs++
		}
		w.Holes, g.Holes = "", ""
		if w != g {
			t.Errorf("%q differs:\n want %+v\n  got %+v", p, w, g)
			diffs++
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("extra after restore: %q", p)
			diffs++
		}
	}
	if diffs > 0 {
		t.Errorf("%d differences", diffs)
	}
}

// holesKept reports whether every hole of want is a hole in got: restore
// may make a file sparser (runs of zeroes become holes), never denser.
func holesKept(want, got string, size int64) bool {
	covered := func(m string, a, b int64) bool { // is [a,b) inside a data region of m?
		for _, part := range strings.Split(m, ",") {
			var s, e int64
			if _, err := fmt.Sscanf(part, "%d-%d", &s, &e); err == nil && s <= a && b <= e {
				return true
			}
		}
		return false
	}
	if got == "" {
		return true
	}
	for _, part := range strings.Split(got, ",") {
		var s, e int64
		fmt.Sscanf(part, "%d-%d", &s, &e)
		// Data in got must lie within data of want (4 KiB block rounding aside).
		if !covered(want, s/4096*4096, min(e, size)) && !covered(want, s, min(e, size)) {
			return false
		}
	}
	return true
}
