package engine

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Reach is who could reach a point's path at backup time: a user reaches
// /a/b/c only with search permission on /, /a and /a/b, which the tree of
// the point (it holds c and below) does not record. The recovery tree
// (package fs) makes a point's source directory let in no one else, so
// that through the mount, or Samba's Previous Versions, a user reads only
// what the user could read at backup time, files below a private
// directory included.
//
// It is the set of users one directory lets search it: its owner, its
// group and its search bits (Search: which of the classes owner, group
// and others have x, as the letters "u", "g", "o"). Every directory above
// a path that restricts anyone (/home/alice, 0700) is usually one such
// directory, and the others let everyone through (0755, 0711, 1777), so
// the set is that directory's own, exactly. Where two directories
// restrict with different owners or groups the set is the next smaller
// one a single directory can say, down to root alone; a directory with
// an access ACL counts for its owner alone (its named entries and mask
// are not one directory's bits). Root reaches all.
//
// In the point manifest (optional, omitted by points from before it was
// recorded, which the tree lets everyone reach, as before):
//
//	reach {"uid": N, "gid": N, "search": "ugo" | "ug" | "u" | "uo" | "g" | ... | ""}
type Reach struct {
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Search string `json:"search"`
}

// everyone is the reach of a path every directory above lets through.
var everyone = Reach{Search: "ugo"}

func (r *Reach) has(class byte) bool { return r != nil && strings.IndexByte(r.Search, class) >= 0 }

func (r *Reach) all() bool { return r == nil || r.has('u') && r.has('g') && r.has('o') }

// reachOf returns who can reach path, from the directories above it:
// each one's search bits, its owner and group. path is absolute and
// clean; symbolic links in it are followed as the kernel would.
func reachOf(path string) *Reach {
	r := &everyone
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &Reach{} // unknown: let in no one else
		}
		r = r.Meet(dirReach(dir, st))
		if dir == "/" || dir == "." {
			out := *r
			return &out
		}
	}
}

// dirReach is who may search one directory.
func dirReach(dir string, st unix.Stat_t) *Reach {
	r := &Reach{UID: st.Uid, GID: st.Gid}
	for _, c := range []struct {
		bit   uint32
		class string
	}{{0o100, "u"}, {0o010, "g"}, {0o001, "o"}} {
		if st.Mode&c.bit != 0 {
			r.Search += c.class
		}
	}
	if hasAccessACL(dir) {
		// Named users and groups, and a mask over the group bits: the
		// owner is the one entry the mode bits still say exactly.
		r.Search = strings.Trim(r.Search, "go")
	}
	return r
}

func hasAccessACL(dir string) bool {
	n, err := unix.Getxattr(dir, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// Meet returns who is in both r and o (nil: everyone), or a smaller set
// where that is not one directory's. A user is not taken for a member of
// a group: the group list of a user's processes is not known here.
func (r *Reach) Meet(o *Reach) *Reach {
	switch {
	case r.all():
		return o
	case o.all():
		return r
	case r.UID == o.UID && r.GID == o.GID:
		var s string
		for _, c := range "ugo" {
			if r.has(byte(c)) && o.has(byte(c)) {
				s += string(c)
			}
		}
		return &Reach{UID: r.UID, GID: r.GID, Search: s}
	}
	// Owners and groups differ: what both let in for sure is an owner
	// both let in as owner, a group both let in as group; others (and an
	// owner let in only as another's "other") are not known to be in the
	// other set. A group let in by a directory whose owner is kept out
	// (mode 0050 of a user's) stays only where that owner is root, whom
	// nothing keeps out.
	out := &Reach{}
	if r.has('u') && o.has('u') && r.UID == o.UID {
		out.UID, out.Search = r.UID, "u"
	}
	groupOK := func(x *Reach) bool { return x.has('u') || x.UID == 0 }
	if r.has('g') && o.has('g') && r.GID == o.GID && groupOK(r) && groupOK(o) {
		out.GID, out.Search = r.GID, out.Search+"g"
	}
	return out
}

// Dir returns the owner, group and permission bits of a directory that
// lets in r's set (nil: everyone). Its read bits follow its search bits:
// listing the point names of a source is no more than reaching them.
func (r *Reach) Dir() (uid, gid, perm uint32) {
	if r.all() {
		return 0, 0, 0o755
	}
	if r.has('u') {
		perm |= 0o500
	}
	if r.has('g') {
		perm |= 0o050
	}
	if r.has('o') {
		perm |= 0o005
	}
	return r.UID, r.GID, perm
}
