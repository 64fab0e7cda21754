package engine

import (
	"fmt"
	"sync"

	"github.com/recall-backup/recall/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// pseudoFS names the file systems a backup never reads, by statfs magic:
// their files are the kernel's state, not data (reading /proc/kmsg blocks
// forever, /sys files change as they are read), and none of it can be
// restored. mountinfo names are checked too (pseudoNames), so a type whose
// magic is missing here is still caught by name.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEVPTS_SUPER_MAGIC:  "devpts",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.PSTOREFS_MAGIC:      "pstore",
	unix.BPF_FS_MAGIC:        "bpf",
	0x62656570:               "configfs",
	0x65735543:               "fusectl",
	0x19800202:               "mqueue",
	unix.HUGETLBFS_MAGIC:     "hugetlbfs",
	unix.AUTOFS_SUPER_MAGIC:  "autofs",
	unix.BINFMTFS_MAGIC:      "binfmt_misc",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	0x67596969:               "rpc_pipefs",
	unix.NSFS_MAGIC:          "nsfs",
}

var pseudoNames = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range pseudoFS {
		m[n] = true
	}
	return m
}()

// mountTable classifies the file systems a backup meets. A backup looks
// at it only where an entry's st_dev differs from its directory's (a
// mount point, or a btrfs subvolume), so the cost is one statfs per
// boundary and one read of mountinfo per backup (again only when a device
// turns up that was mounted after the first read). The answer for a
// device is kept: the backup also asks for every small file it reads
// (sizeTrusted), and a statfs per file was 12,000 path look-ups in the
// first backup of the small-file bench set.
type mountTable struct {
	mu    sync.Mutex
	byDev map[uint64]string // st_dev -> type in mountinfo; the topmost mount wins
	read  int               // how often mountinfo was read
	typed map[uint64]string // st_dev -> fsType's answer
}

// maxMountReads bounds the re-reads of mountinfo a backup does for
// devices it does not know (btrfs subvolumes never appear there).
const maxMountReads = 3

func (m *mountTable) load() {
	byDev := map[uint64]string{}
	if err := mountinfo.Each(func(e mountinfo.Entry) { byDev[e.Dev] = e.FSType }); err == nil {
		m.byDev = byDev
	}
	m.read++
}

// fsType names the file system of path, whose st_dev is dev: its type in
// mountinfo when listed there, else the statfs magic's name ("" when
// neither knows it).
func (m *mountTable) fsType(path string, dev uint64) string {
	m.mu.Lock()
	if typ, ok := m.typed[dev]; ok {
		m.mu.Unlock()
		return typ
	}
	m.mu.Unlock()
	typ, known := m.lookUp(path, dev)
	if known {
		m.mu.Lock()
		if m.typed == nil {
			m.typed = map[uint64]string{}
		}
		m.typed[dev] = typ
		m.mu.Unlock()
	}
	return typ
}

// lookUp is fsType without the answers kept; known says the answer is
// final (a device mountinfo does not list yet may turn up there at a
// later read, while reads are left).
func (m *mountTable) lookUp(path string, dev uint64) (typ string, known bool) {
	m.mu.Lock()
	if m.read == 0 {
		m.load()
	}
	typ, ok := m.byDev[dev]
	if !ok && m.read < maxMountReads {
		m.load()
		typ, ok = m.byDev[dev]
	}
	// Without more reads of mountinfo left, its answer is final too.
	final := ok || m.read >= maxMountReads
	m.mu.Unlock()
	if ok && (pseudoNames[typ] || typ == mountinfo.RecallFSType) {
		// Known from mountinfo alone: no statfs, which on autofs could
		// trigger a mount.
		return typ, true
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err == nil {
		if name, pseudo := pseudoFS[int64(sfs.Type)]; pseudo {
			return name, true
		}
		if !ok {
			return fmt.Sprintf("type %#x", sfs.Type), final
		}
		return typ, true
	}
	return typ, false
}

// neverRead says why a backup must not enter a file system of type typ,
// or "" when it may.
func neverRead(typ string) string {
	switch {
	case pseudoNames[typ]:
		return typ + " is a pseudo file system"
	case typ == mountinfo.RecallFSType:
		return "it is a recall recovery tree (" + typ + "); backing it up would copy earlier points again"
	}
	return ""
}
