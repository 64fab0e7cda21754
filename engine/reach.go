package engine

import (
	"path/filepath"

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
// It is one of a few sets one directory's owner, group and mode bits can
// express, never more than the directories above let in: when their
// owners, groups or access ACLs do not combine into one of them exactly,
// it is the next smaller one, down to root alone. Root reaches all.
//
// In the point manifest (optional, omitted by points from before it was
// recorded, which the tree lets everyone reach, as before):
//
//	reach {"who": "everyone" | "user" | "group" | "user_or_group" | "root",
//	       "uid": N (user, user_or_group), "gid": N (group, user_or_group)}
type Reach struct {
	Who string `json:"who"`
	UID uint32 `json:"uid,omitempty"`
	GID uint32 `json:"gid,omitempty"`
}

// The sets of Reach.Who.
const (
	ReachEveryone    = "everyone"
	ReachUser        = "user"          // the user UID
	ReachGroup       = "group"         // the members of group GID
	ReachUserOrGroup = "user_or_group" // both of these
	ReachRoot        = "root"          // root alone
)

// reachOf returns who can reach path, from the directories above it:
// each one's search bits, its owner and group. path is absolute and
// clean; symbolic links in it are followed as the kernel would.
func reachOf(path string) *Reach {
	r := &Reach{Who: ReachEveryone}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &Reach{Who: ReachRoot} // unknown: let in no one else
		}
		r = r.Meet(dirReach(dir, st))
		if dir == "/" || dir == "." {
			return r
		}
	}
}

// dirReach is who may search one directory.
func dirReach(dir string, st unix.Stat_t) *Reach {
	u, g, o := st.Mode&0o100 != 0, st.Mode&0o010 != 0, st.Mode&0o001 != 0
	if hasAccessACL(dir) {
		// Named users and groups, and a mask over the group bits: the
		// owner is the one entry the mode bits still say exactly.
		g, o = false, false
	}
	switch {
	case u && g && o:
		return &Reach{Who: ReachEveryone}
	case u && g:
		return &Reach{Who: ReachUserOrGroup, UID: st.Uid, GID: st.Gid}
	case u:
		return &Reach{Who: ReachUser, UID: st.Uid}
	case g:
		// Not its owner (checked against the owner's bits alone).
		return &Reach{Who: ReachGroup, GID: st.Gid}
	}
	return &Reach{Who: ReachRoot}
}

func hasAccessACL(dir string) bool {
	n, err := unix.Getxattr(dir, "system.posix_acl_access", nil)
	return err == nil && n > 0
}

// Meet returns who is in both r and o (nil: everyone), or the next
// smaller set where that is not one of Reach's sets. A user is not taken
// for a member of a group: the kernel's group list of a process is not
// known here.
func (r *Reach) Meet(o *Reach) *Reach {
	switch {
	case r == nil || r.Who == ReachEveryone:
		return o
	case o == nil || o.Who == ReachEveryone:
		return r
	case r.Who == ReachRoot || o.Who == ReachRoot:
		return &Reach{Who: ReachRoot}
	}
	user := func(x *Reach) (uint32, bool) {
		return x.UID, x.Who == ReachUser || x.Who == ReachUserOrGroup
	}
	group := func(x *Reach) (uint32, bool) {
		return x.GID, x.Who == ReachGroup || x.Who == ReachUserOrGroup
	}
	ru, rok := user(r)
	ou, ook := user(o)
	rg, rgok := group(r)
	og, ogok := group(o)
	sameUser := rok && ook && ru == ou
	sameGroup := rgok && ogok && rg == og
	switch {
	case sameUser && sameGroup:
		return &Reach{Who: ReachUserOrGroup, UID: ru, GID: rg}
	case sameUser:
		return &Reach{Who: ReachUser, UID: ru}
	case sameGroup:
		return &Reach{Who: ReachGroup, GID: rg}
	}
	return &Reach{Who: ReachRoot}
}

// Dir returns the owner, group and permission bits of a directory that
// lets in exactly r's set (nil: everyone). Its read bits follow its
// search bits: listing the point names of a source is no more than
// reaching them.
func (r *Reach) Dir() (uid, gid, perm uint32) {
	if r == nil {
		return 0, 0, 0o755
	}
	switch r.Who {
	case ReachEveryone:
		return 0, 0, 0o755
	case ReachUser:
		return r.UID, 0, 0o500
	case ReachGroup:
		return 0, r.GID, 0o550
	case ReachUserOrGroup:
		return r.UID, r.GID, 0o550
	}
	return 0, 0, 0o500
}
