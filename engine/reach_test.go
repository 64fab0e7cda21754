package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
)

func TestReachMeet(t *testing.T) {
	every := &Reach{Who: ReachEveryone}
	alice := &Reach{Who: ReachUser, UID: 1000}
	bob := &Reach{Who: ReachUser, UID: 1001}
	staff := &Reach{Who: ReachGroup, GID: 50}
	aliceStaff := &Reach{Who: ReachUserOrGroup, UID: 1000, GID: 50}
	aliceHers := &Reach{Who: ReachUserOrGroup, UID: 1000, GID: 1000}
	root := &Reach{Who: ReachRoot}
	for _, c := range []struct {
		a, b, want *Reach
	}{
		{nil, nil, nil},
		{nil, alice, alice},
		{every, alice, alice},
		{alice, every, alice},
		{alice, alice, alice},
		{alice, bob, root},
		{alice, staff, root}, // alice's groups are not known here
		{aliceStaff, alice, alice},
		{aliceStaff, staff, staff},
		{aliceStaff, aliceHers, alice},
		{aliceStaff, aliceStaff, aliceStaff},
		{staff, &Reach{Who: ReachGroup, GID: 51}, root},
		{root, every, root},
		{every, root, root},
	} {
		got := c.a.Meet(c.b)
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("%+v meet %+v = %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
}

// A path below a directory only its owner may enter is reached by that
// owner alone, whatever the modes below it; an ACL on a directory above
// leaves its owner alone too (its named entries are not one directory's
// bits); a path every directory above lets through is everyone's.
func TestReachOf(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "needs root to chown")
	}
	base, err := os.MkdirTemp("", "recall-reach-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	mk := func(rel string, mode os.FileMode, uid, gid int) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
		os.Chmod(p, mode)
		return p
	}
	mk("open/pub", 0o755, 0, 0)
	mk("alice", 0o700, 1000, 1000)
	mk("alice/www/site", 0o755, 1000, 1000)
	mk("team", 0o750, 1000, 50)
	mk("team/share", 0o755, 0, 0)
	mk("staffonly", 0o070, 1000, 50)
	mk("staffonly/x", 0o755, 0, 0)
	if err := os.Symlink(filepath.Join(base, "alice/www"), filepath.Join(base, "open/link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want Reach
	}{
		{"open/pub", Reach{Who: ReachEveryone}},
		{"alice/www/site", Reach{Who: ReachUser, UID: 1000}},
		{"open/link/site", Reach{Who: ReachUser, UID: 1000}}, // through the link, as the kernel goes
		{"team/share", Reach{Who: ReachUserOrGroup, UID: 1000, GID: 50}},
		{"staffonly/x", Reach{Who: ReachGroup, GID: 50}},
	} {
		if got := reachOf(filepath.Join(base, c.path)); *got != c.want {
			t.Errorf("%s: %+v, want %+v", c.path, *got, c.want)
		}
	}
	// Below / and the temp directory (everyone's), the base is too.
	if got := reachOf(filepath.Join(base, "open")); got.Who != ReachEveryone {
		t.Errorf("base: %+v", got)
	}
	if out, err := exec.Command("setfacl", "-m", "u:1001:rx", filepath.Join(base, "team")).CombinedOutput(); err != nil {
		testskip.Skip(t, "setfacl: %v %s", err, out)
	}
	if got := reachOf(filepath.Join(base, "team/share")); *got != (Reach{Who: ReachUser, UID: 1000}) {
		t.Errorf("below a directory with an ACL: %+v", got)
	}
}

// A manifest with reach and inode_flags is version 2 still: both are
// optional, and manifests without them decode with none.
func TestPointReachGolden(t *testing.T) {
	p := samplePoint()
	p.InodeFlags = true
	p.Reach = &Reach{Who: ReachUserOrGroup, UID: 1000, GID: 50}
	checkPointGolden(t, p, "point-v2-reach.golden")
	for _, name := range []string{"point-v2.golden", "point-v2-group.golden", "point-v1.golden"} {
		old, err := decodePoint(id(5), readGolden(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if old.Reach != nil || old.InodeFlags {
			t.Errorf("%s decodes with reach %+v, inode flags %v", name, old.Reach, old.InodeFlags)
		}
	}
}
