package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/recall-backup/recall/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Errors of the mount helpers, checked with errors.Is.
var (
	// ErrBusy: unmount refused because files or directories in the mount
	// are in use.
	ErrBusy = errors.New("mount is busy")
	// ErrNotMounted: nothing is mounted there.
	ErrNotMounted = errors.New("not mounted")
	// ErrMounted: a live mount is already there.
	ErrMounted = errors.New("already mounted")
)

// MountPath makes dir absolute and resolves symlinks in its parent, and
// in dir itself when it is a symlink, as /proc/mounts shows it. (A path
// whose lstat fails, as on a dead mount, is taken as it is.) A mount
// made through a link was on its target, and 'umount LINK' found nothing
// mounted at the link's own path.
func MountPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	p := filepath.Join(parent, filepath.Base(abs))
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
	}
	return p, nil
}

// MountEntry is one line of /proc/self/mountinfo.
type MountEntry = mountinfo.Entry

// FindMount returns the topmost mount at dir (an absolute, clean path).
func FindMount(dir string) (MountEntry, bool, error) {
	var found MountEntry
	ok := false
	err := mountinfo.Each(func(m MountEntry) {
		if m.Dir == dir {
			found, ok = m, true // later lines are mounted on top: keep the last
		}
	})
	return found, ok, err
}

// MountsUnder returns the mount points below dir (an absolute, clean
// path), not dir itself, in the order they were mounted: a mount inside
// a mount keeps it busy, whatever files are open.
func MountsUnder(dir string) ([]string, error) {
	var out []string
	err := mountinfo.Each(func(m MountEntry) {
		if strings.HasPrefix(m.Dir, strings.TrimSuffix(dir, "/")+"/") && !slices.Contains(out, m.Dir) {
			out = append(out, m.Dir)
		}
	})
	return out, err
}

// StoreMounts returns the mount points of the recall mounts (of this
// mount namespace) that serve the store at home. A mount shows its home
// directory as its source; it is compared as a file, so another spelling
// of the same directory matches too.
//
// A mount's home is looked at for at most homeStatWait in all: the home
// of another store's mount may be reached through a mount whose server
// hangs (a server stuck on its own mount, a network file system gone),
// and a stat of it then never returns. Such a mount is not this store's
// as far as this call can tell; its stat is left to finish on its own,
// one per path at most however often this runs (a server calls it after
// every backup).
func StoreMounts(home string) ([]string, error) {
	hst, err := os.Stat(home)
	if err != nil {
		return nil, err
	}
	type answer struct {
		dir string
		st  os.FileInfo
	}
	var entries []MountEntry
	err = mountinfo.Each(func(m MountEntry) {
		if m.FSType == FSType {
			entries = append(entries, m)
		}
	})
	answers := make(chan answer, len(entries))
	asked := 0
	for _, m := range entries {
		if _, busy := homeStats.LoadOrStore(m.Source, true); busy {
			continue // an earlier stat of it has not returned
		}
		asked++
		go func() {
			st, err := os.Stat(m.Source)
			homeStats.Delete(m.Source)
			if err != nil {
				st = nil
			}
			answers <- answer{m.Dir, st}
		}()
	}
	ours := map[string]bool{}
	timeout := time.After(homeStatWait)
wait:
	for ; asked > 0; asked-- {
		select {
		case a := <-answers:
			if a.st != nil && os.SameFile(a.st, hst) {
				ours[a.dir] = true
			}
		case <-timeout:
			break wait
		}
	}
	var dirs []string // in mountinfo's order
	for _, m := range entries {
		if ours[m.Dir] && !slices.Contains(dirs, m.Dir) {
			dirs = append(dirs, m.Dir)
		}
	}
	return dirs, err
}

// homeStatWait bounds StoreMounts' wait for the homes of the recall
// mounts; homeStats holds the homes whose stat has not returned.
var (
	homeStatWait = 2 * time.Second
	homeStats    sync.Map
)

// syncName is a point name no store has (year 9999). Looking it up in a
// source directory always reaches the server, which re-reads the points
// first: see Refresh.
var syncName = SnapshotName(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))

// Refresh makes the recall mounts of the store at home show source's
// points as they are now before it returns: latest points at the newest,
// a new point is there, and listings no longer show a forgotten one (the
// kernel lets go of its cached name a moment later). The kernel caches the
// target of latest (so that paths through it cost no round trip); a
// lookup of a point name the source lacks makes the server re-read the
// points and drop that cached target if it changed. Call it after
// committing or forgetting a point. Best effort: mounts this process may
// not enter catch up on their own within about a second, and a mount
// whose server does not answer within refreshWait is left to do so (the
// lookup stays behind; the caller is about to exit anyway).
func Refresh(home, source string) {
	dirs, err := StoreMounts(home)
	if err != nil || len(dirs) == 0 {
		return
	}
	done := make(chan struct{}, len(dirs))
	for _, d := range dirs {
		go func() {
			refreshMount(d, source)
			done <- struct{}{}
		}()
	}
	timeout := time.After(refreshWait)
	for range dirs {
		select {
		case <-done:
		case <-timeout:
			return
		}
	}
}

const refreshWait = 5 * time.Second

// refreshMount is Refresh for the mount at dir.
func refreshMount(dir, source string) {
	var st unix.Stat_t
	unix.Lstat(filepath.Join(dir, source, syncName), &st)
}

// IsDeadMount reports whether dir is a FUSE mount whose server is gone:
// every access fails with "transport endpoint is not connected". statfs
// is asked first: unlike stat it is never answered from the kernel's
// attribute cache.
func IsDeadMount(dir string) bool { return mountinfo.Dead(dir) }

// CleanDeadMount detaches a dead FUSE mount at dir (see IsDeadMount) and
// reports whether there was one. A live mount is left alone.
func CleanDeadMount(dir string) (bool, error) {
	if !IsDeadMount(dir) {
		return false, nil
	}
	if err := unmount(dir, true); err != nil {
		return true, fmt.Errorf("clean up the dead mount at %s: %w", dir, err)
	}
	return true, nil
}

// Unmount unmounts the recall mount at dir. lazy detaches it at once even
// while in use; the kernel finishes when the last file is closed. A busy
// mount without lazy gives an error wrapping ErrBusy. Only recall mounts
// (FSType) are touched, except dead FUSE mounts, which are detached.
func Unmount(dir string, lazy bool) error {
	m, ok, err := FindMount(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %w", dir, ErrNotMounted)
	}
	if m.FSType != FSType && !(strings.HasPrefix(m.FSType, "fuse") && IsDeadMount(dir)) {
		return fmt.Errorf("%s is a %s mount, not a recall mount; use umount(8)", dir, m.FSType)
	}
	return unmount(dir, lazy)
}

func unmount(dir string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		err := unix.Unmount(dir, flags)
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%s: %w", dir, ErrBusy)
		}
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%s: %w", dir, ErrNotMounted)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return nil
	}
	// Not root: the set-uid helper unmounts FUSE mounts of this user.
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	args = append(args, dir)
	var last error
	for _, bin := range []string{"fusermount3", "fusermount"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			last = err
			continue
		}
		out, err := exec.Command(path, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("%s: %w", dir, ErrBusy)
		}
		return fmt.Errorf("unmount %s: %s: %v", dir, msg, err)
	}
	return fmt.Errorf("unmount %s: no fusermount helper: %w", dir, last)
}
