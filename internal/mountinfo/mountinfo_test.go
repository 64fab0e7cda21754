package mountinfo

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Entry
		ok   bool
	}{
		{"22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
			Entry{Dev: unix.Mkdev(0, 21), Dir: "/proc", FSType: "proc", Source: "proc", Options: "rw,nosuid,nodev,noexec,relatime"}, true},
		{"95 30 0:52 / /srv/my\\040mnt ro,nosuid,nodev,relatime - fuse.recall /var/lib/recall ro,user_id=0",
			Entry{Dev: unix.Mkdev(0, 52), Dir: "/srv/my mnt", FSType: "fuse.recall", Source: "/var/lib/recall", Options: "ro,nosuid,nodev,relatime"}, true},
		// No optional fields at all, a device with a large minor.
		{"30 1 259:65538 / / rw - ext4 /dev/nvme0n1p2 rw",
			Entry{Dev: unix.Mkdev(259, 65538), Dir: "/", FSType: "ext4", Source: "/dev/nvme0n1p2", Options: "rw"}, true},
		{"garbage", Entry{}, false},
		{"1 2 0:3 / /x rw - ", Entry{}, false},
	} {
		got, ok := parseLine(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// The table of this process has its root and, where proc is mounted (it
// must be for Each to work), proc with the device stat reports.
func TestEachMatchesStat(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc", &st); err != nil {
		t.Fatal(err)
	}
	found := false
	if err := Each(func(e Entry) {
		if e.Dir == "/proc" && e.FSType == "proc" && e.Dev == st.Dev {
			found = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("no proc entry with st_dev %d in mountinfo", st.Dev)
	}
}
