package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/recall-backup/recall/internal/testskip"
)

func TestReachMeet(t *testing.T) {
	every := &Reach{Search: "ugo"}
	alice := &Reach{UID: 1000, GID: 1000, Search: "u"}      // 0700 alice:alice
	aliceOpen := &Reach{UID: 1000, GID: 1000, Search: "uo"} // 0705 alice:alice
	bob := &Reach{UID: 1001, GID: 1001, Search: "u"}
	staff := &Reach{UID: 0, GID: 50, Search: "ug"}         // 0750 root:staff
	aliceStaff := &Reach{UID: 1000, GID: 50, Search: "ug"} // 0750 alice:staff
	staffOnly := &Reach{UID: 1000, GID: 50, Search: "g"}   // 0070 alice:staff: alice kept out
	for _, c := range []struct {
		a, b, want *Reach
	}{
		{nil, nil, nil},
		{nil, alice, alice},
		{every, alice, alice},
		{alice, every, alice},
		{alice, alice, alice},
		{alice, aliceOpen, alice},
		{aliceOpen, aliceOpen, aliceOpen},
		{alice, bob, &Reach{}},
		{aliceStaff, alice, &Reach{UID: 1000, Search: "u"}},
		{aliceStaff, staff, &Reach{GID: 50, Search: "g"}},
		{staffOnly, staff, &Reach{}}, // alice is out of one, maybe in the other
		{staff, &Reach{GID: 51, Search: "ug"}, &Reach{Search: "u"}},
		{&Reach{}, every, &Reach{}},
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
	mk("others", 0o705, 1000, 50)
	mk("others/x", 0o755, 0, 0)
	if err := os.Symlink(filepath.Join(base, "alice/www"), filepath.Join(base, "open/link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want Reach
	}{
		{"open/pub", everyone},
		{"alice/www/site", Reach{UID: 1000, GID: 1000, Search: "u"}},
		{"open/link/site", Reach{UID: 1000, GID: 1000, Search: "u"}}, // through the link, as the kernel goes
		{"team/share", Reach{UID: 1000, GID: 50, Search: "ug"}},
		{"staffonly/x", Reach{UID: 1000, GID: 50, Search: "g"}},
		{"others/x", Reach{UID: 1000, GID: 50, Search: "uo"}}, // staff's members kept out
	} {
		if got := reachOf(filepath.Join(base, c.path)); *got != c.want {
			t.Errorf("%s: %+v, want %+v", c.path, *got, c.want)
		}
	}
	// Below / and the temp directory (everyone's), the base is too.
	if got := reachOf(filepath.Join(base, "open")); *got != everyone {
		t.Errorf("base: %+v", got)
	}
	if out, err := exec.Command("setfacl", "-m", "u:1001:rx", filepath.Join(base, "team")).CombinedOutput(); err != nil {
		testskip.Skip(t, "setfacl: %v %s", err, out)
	}
	if got := reachOf(filepath.Join(base, "team/share")); *got != (Reach{UID: 1000, GID: 50, Search: "u"}) {
		t.Errorf("below a directory with an ACL: %+v", got)
	}
}

// A manifest with reach and inode_flags is version 2 still: both are
// optional, and manifests without them decode with none.
func TestPointReachGolden(t *testing.T) {
	p := samplePoint()
	p.InodeFlags = true
	p.Reach = &Reach{UID: 1000, GID: 50, Search: "ug"}
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
