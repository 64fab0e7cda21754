package fs

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/recall-backup/recall/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// MountOptions configure Mount.
type MountOptions struct {
	// AllowOther lets users other than the one mounting use the mount
	// (needed for Samba). Access is still checked against the backed-up
	// owners and modes (default_permissions is always on).
	AllowOther bool
	// Point, if set, mounts this point's root directory at the mount
	// point instead of the whole tree.
	Point *Point
	// FsName is the "device" shown in /proc/mounts, e.g. the home.
	FsName string
	// Debug logs every FUSE request through Log.
	Debug bool
	// Log receives adapter messages; nil discards them.
	Log func(format string, args ...any)
}

// MaxRead is the largest read the kernel sends, and its readahead.
const MaxRead = 1 << 20

// FSType is the file system type shown in /proc/mounts.
const FSType = mountinfo.RecallFSType

// Server is a mounted tree.
type Server struct {
	t     *Tree
	a     *adapter
	srv   *fuse.Server
	dir   string
	root  *gofs.Inode
	point *Point

	mu      sync.Mutex
	pending []Changes // changes found by serving goroutines, applied by Watch
	kick    chan struct{}
}

// Mount mounts t (or one of its points) read-only at dir and starts
// serving. It returns when the kernel has the mount, so the tree can be
// used at once.
func Mount(dir string, t *Tree, o MountOptions) (*Server, error) {
	s := &Server{t: t, dir: dir, point: o.Point, kick: make(chan struct{}, 1)}
	a := newAdapter()
	var root gofs.InodeEmbedder
	if o.Point != nil {
		root = &entryNode{a: a, e: o.Point.Root()}
	} else {
		root = &rootNode{a: a, t: t}
	}
	ct, nt := contentTimeout, contentTimeout
	name := o.FsName
	if name == "" {
		name = "recall"
	}
	opts := &gofs.Options{
		EntryTimeout:    &ct,
		AttrTimeout:     &ct,
		NegativeTimeout: &nt,
		NullPermissions: true, // a mode 0 directory stays mode 0
		MountOptions: fuse.MountOptions{
			AllowOther:   o.AllowOther,
			Options:      []string{"ro", "default_permissions"},
			FsName:       name,
			Name:         "recall",
			MaxWrite:     MaxRead,
			MaxReadAhead: MaxRead,
			// Kernel readahead and prefetch overlap best with a few
			// reads in flight per file.
			MaxBackground: 64,
			DirectMount:   os.Geteuid() == 0,
			// Read-only in the kernel too; no set-uid programs or device
			// nodes from backups take effect.
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
			// POSIX ACLs (backed up as system.posix_acl_* xattrs) are
			// enforced by the kernel like the modes, and cached per inode.
			EnableAcl: true,
			// Symlink targets are cached by the kernel: a path through
			// latest costs no READLINK (ls -l of a directory through it
			// made three per entry). The one target that changes, latest's,
			// is dropped from the cache when it moves (see Refresh).
			EnableSymlinkCaching: true,
			Debug:                o.Debug,
		},
	}
	if o.Log != nil {
		opts.Logger = log.New(logWriter(o.Log), "", 0)
		opts.MountOptions.Logger = opts.Logger
	}
	srv, err := gofs.Mount(dir, root, opts)
	if err != nil {
		if hint := userMountHint(); hint != "" {
			return nil, fmt.Errorf("mount %s: %s%s", dir, strings.TrimSpace(err.Error()), hint)
		}
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	s.srv = srv
	s.a = a
	s.root = root.EmbeddedInode()
	a.noOpen.Store(srv.KernelSettings().Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0)
	raiseReadahead(dir)
	t.OnChanges(func(c Changes) {
		s.mu.Lock()
		s.pending = append(s.pending, c)
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	})
	return s, nil
}

// raiseReadahead lets the kernel read ahead MaxRead bytes per request on
// this mount (FUSE offers at most 128 KiB at INIT; the mount's bdi can be
// raised afterwards, by root). Best effort: without it reads still work,
// in smaller requests.
func raiseReadahead(dir string) {
	var st syscall.Stat_t
	if os.Geteuid() != 0 || syscall.Stat(dir, &st) != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	os.WriteFile(p, []byte(fmt.Sprint(MaxRead>>10)), 0)
}

type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() { s.srv.Wait() }

// Unmount unmounts; it fails (EBUSY) while files are open in the mount.
func (s *Server) Unmount() error { return s.srv.Unmount() }

// Watch polls the store for new and forgotten points every interval
// until ctx ends or the file system is unmounted, and tells the kernel
// what changed. It must run in its own goroutine, never in one that
// serves the mount (invalidating kernel entries waits for the kernel).
func (s *Server) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { s.srv.Wait(); close(done) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-s.kick:
		case <-tick.C:
			c, err := s.t.Update()
			if err != nil {
				s.t.opts.Log("error: %v", err)
			} else if !c.Empty() {
				s.mu.Lock()
				s.pending = append(s.pending, c)
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		pending := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, c := range pending {
			s.apply(c)
		}
	}
}

// apply invalidates what the kernel may hold for changed sources: names
// of forgotten points, negative entries of new ones, and the attributes of
// the directories that list them.
func (s *Server) apply(c Changes) {
	if s.point != nil {
		return // a single point's content never changes
	}
	root := s.root
	for _, p := range c.Removed {
		src := root.GetChild(p.Meta.Source)
		if src == nil {
			continue
		}
		if ch := src.GetChild(p.Name); ch != nil {
			src.RmChild(p.Name)
			src.NotifyDelete(p.Name, ch)
		} else {
			src.NotifyEntry(p.Name)
		}
	}
	for _, p := range c.Added {
		if src := root.GetChild(p.Meta.Source); src != nil {
			src.NotifyEntry(p.Name)
		}
	}
	for _, name := range c.Sources {
		if src := root.GetChild(name); src != nil {
			src.NotifyContent(0, 0)
			if sn, ok := src.Operations().(*sourceNode); ok {
				sn.freshLatest()
			}
		}
	}
	for _, name := range c.GoneSources {
		if src := root.GetChild(name); src != nil {
			root.RmChild(name)
			root.NotifyDelete(name, src)
		} else {
			root.NotifyEntry(name)
		}
	}
	for _, name := range c.NewSources {
		root.NotifyEntry(name)
	}
	if len(c.NewSources)+len(c.GoneSources) > 0 {
		root.NotifyContent(0, 0)
	}
}

// userMountHint says, for a mount that failed as a user other than root
// (through the set-uid fusermount3, whose own message went to stderr or
// the log), what such a mount needs, and which of it is missing here.
func userMountHint() string {
	if os.Geteuid() == 0 {
		return ""
	}
	var missing []string
	if unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) != nil {
		missing = append(missing, "/dev/fuse is not readable and writable by this user")
	}
	helper := false
	for _, p := range []string{"/usr/bin/fusermount3", "/bin/fusermount3", "/usr/bin/fusermount", "/bin/fusermount"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSetuid != 0 {
			helper = true
			break
		}
	}
	if !helper {
		missing = append(missing, "no set-uid fusermount3 (Debian's fuse3 package)")
	}
	if len(missing) == 0 {
		return "; a user's mount also needs the mount point to be the user's, and 'user_allow_other' in /etc/fuse.conf for --allow-other; or mount as root"
	}
	return "; mounting as a user other than root needs /dev/fuse and the set-uid fusermount3, and here " + strings.Join(missing, " and ") + ": mount as root, or fix that"
}
