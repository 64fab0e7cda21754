package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/dustin/go-humanize"
	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/procs"
	"golang.org/x/sys/unix"
)

// RestoreOptions configure a restore.
type RestoreOptions struct {
	Target    string // directory to fill, or a block device for a device image
	Path      string // sub-path inside the point; "" = all of it
	Overwrite bool   // allow a non-empty target
	// Resume goes on with a restore of the same point into Target that
	// stopped (killed, a power cut): Overwrite, but a regular file
	// already there with the point's size, modification time, mode (and,
	// as root, owner) is kept, not written again. A file is given its
	// time last, after its content and its other metadata, so one cut
	// short has another and is written again.
	Resume  bool
	Workers int // packs read at once; 0 = 2 per CPU (internal/procs), or the store's connections if more
	// Protect names directories the restore never merges into: recall's
	// home (its catalog, its keys). The store's own directory is always
	// protected. A target that is a protected directory or inside one is
	// refused. Where a restore over a tree that holds one (a rollback of /
	// in place) would merge into it, it is left as it is and reported,
	// with all it holds.
	Protect []string
	Log     func(format string, args ...any)
	// Progress, if set, counts the restore as it runs (see Progress).
	Progress *Progress
}

// RestoreResult counts what was restored and lists what was not.
type RestoreResult struct {
	Root                       string // what was restored: the target, or <target>/<name> for one entry
	Target                     string // the target, absolute
	Files, Dirs, Others, Bytes int64
	// Kept, KeptBytes: with Resume, the files found in place whole and
	// kept (counted in Files and Bytes too).
	Kept, KeptBytes int64
	// TargetKept: the target held entries before the restore and is not
	// the point's own directory restored over in place, so it kept its
	// own owner, mode, times, attributes and flags; the point's root's
	// were not applied to it (a new or empty target gets them).
	TargetKept bool
	Damaged    []PathError // files whose content could not be read
	Skipped    []PathError // entries not restored: a non-empty directory or an immutable entry is in the way, or their directory was replaced by a symlink
	Warnings   []PathError // metadata that could not be applied
	// Unreadable: every file of Damaged is there because the store's
	// packs could not be read (permission, the disk under them), not
	// for damage of their bytes: no repair applies.
	Unreadable bool `json:"-"`
	// With Resume: the entries a restore that was killed had moved aside
	// (".recall-old-*", moveAside) and could not remove, found in the
	// directories of the point. AsidesRemoved counts those removed, as
	// that restore would have once its files were whole: this one
	// restored every file whole. AsidesKept names (relative to the
	// target) those kept because it did not.
	AsidesRemoved int64
	AsidesKept    []string
}

// notDamage says whether err, met reading the store, is no sign of damage
// of its bytes: a file recall may not read, or a disk that fails to.
func notDamage(err error) bool {
	return errors.Is(err, os.ErrPermission) || chunkstore.IOError(err)
}

// errInTheWay: with --overwrite, a non-directory would replace a directory
// that is not empty. Restore never removes what it did not write, so the
// entry is skipped (or, restoring one entry, the restore fails).
var errInTheWay = errors.New("a non-empty directory is in the way (restore never removes what it does not write: move it away, or restore into another directory)")

// ErrDamaged marks a restore that restored everything it could but some
// files have unreadable content.
var ErrDamaged = errors.New("damaged data")

// ErrTargetNotEmpty: the restore target has content and --overwrite was not given.
var ErrTargetNotEmpty = errors.New("restore target is not empty")

// TargetFullError stops a restore whose target's file system has no
// space (or quota) left: the first create, allocation or write that
// failed for it. The files restored whole before it stay; those it cut
// short are removed (dropCut).
type TargetFullError struct {
	Target string // the restore's target
	Path   string // the entry that did not fit
	Files  int64  // files left in the target, restored whole
	Bytes  int64  // their bytes
	Needs  int64  // the bytes the point's files hold, restoring a whole point (0 otherwise)
	Err    error  // ENOSPC or EDQUOT, as the system call gave it
}

func (e *TargetFullError) Error() string {
	what, fix := "is full", "free space (or inodes) there"
	if errors.Is(e.Err, unix.EDQUOT) {
		what, fix = "is over its quota", "raise the quota"
	}
	part := "a smaller part of the point" // --path was given
	if e.Needs > 0 {
		fix += fmt.Sprintf(" (the point's files hold %s)", humanize.IBytes(uint64(e.Needs)))
		part = "part of the point (--path)"
	}
	return fmt.Sprintf("restore target %s %s (%v at %s); %d files restored whole (%s) are left there, files cut short were removed: %s, restore elsewhere, or restore %s",
		e.Target, what, e.Err, e.Path, e.Files, humanize.IBytes(uint64(max(e.Bytes, 0))), fix, part)
}

func (e *TargetFullError) Unwrap() error { return e.Err }

// noSpace reports whether err says the target's file system is full.
func noSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

type restorer struct {
	r          *Reader
	opts       RestoreOptions
	protect    map[devIno]string // directories never written in (RestoreOptions.Protect), by identity
	store      devIno            // the store's own directory among them (zero when not local)
	ctx        context.Context
	isRoot     bool
	plan       readPlan       // chunks to read, by pack (plan.go)
	reading    planReader     // reads the batches of the plan
	reach      *packReach     // where the walk will need packs again (plan.go); nil: not known
	walkPlaces int64          // places planned so far (planFile, planChunk)
	stopReach  func()         // stops the walk beside when only scanReach wants it; nil: none
	wg         sync.WaitGroup // outstanding files

	mu      sync.Mutex
	res     RestoreResult
	damaged map[string]*damageNote
	// someDamage: a file of damaged is there for damage of the store's
	// bytes, not only for packs that could not be read (notDamage).
	someDamage bool
	links      map[uint64]*linkLeader
	leaders    map[string]*linkLeader // the same leaders by rel, for markDamagedLocked
	dirMetas   []dirMeta
	flagged    []flaggedFile // files with inode flags, set at the end (applyFileFlags); under mu
	bytes      atomic.Int64
	// createErr: a file createLate could not create; it stops the
	// restore as the walk's own failed creates do.
	createErr error
	// stop cancels ctx, with the cause run returns: a full target
	// (stopFull).
	stop context.CancelCauseFunc
	// needs is the bytes a whole point's files hold (TargetFullError), or
	// 0 for part of one.
	needs int64
	// leftAside: with Resume, the paths of the entries an earlier,
	// killed restore moved aside (findAsides); under mu.
	leftAside []string

	// cleanXattrs: restored entries may carry attributes they did not
	// have (a default ACL inherited from a directory that existed before
	// the restore), so applyMeta removes extras.
	cleanXattrs bool
	euid, egid  uint32
	// umask, when known (umaskOK), lets a file be created with its final
	// mode (createMode).
	umask   uint32
	umaskOK bool
	zero    []byte // zeroes for a device's holes, made on first need
	// holdMax: at most this many files are kept open from their
	// creation until they are finished; the others are opened again to
	// be written (fileCache).
	holdMax int64
	creates creates // restore_create.go
	// tgt is the target, open: every entry is reached from it
	// (restore_beneath.go); nil restoring onto a device.
	tgt *targetDirs
	// createStopErr: the first failed create that stops the restore,
	// which lateErr does not give when a create skipped before it
	// (createStop).
	createStopErr error
	// single: the point is restored in part, one entry that is not a
	// directory (RestoreOptions.Path): what keeps it from being
	// restored fails the restore.
	single bool
}

// dirMeta is a directory whose metadata is applied at the end, and the
// directory the restore made (or merged into) there, which must still be
// the one there.
type dirMeta struct {
	path, rel string
	n         *Node
	dev, ino  uint64
	merged    bool // it was in the target before the restore
}

// openFile is a file being filled from the plan; whoever handles its last
// planned chunk finishes it: applies its metadata, or syncs and closes a
// device.
type openFile struct {
	f        *os.File // a device, open throughout
	fd       int      // a descriptor open throughout (a device's, or a held file's), or -1
	path     string
	rel      string
	n        *Node  // the node's metadata, without its chunk list
	dev, ino uint64 // the file as created, which a reopen must find
	left     atomic.Int64
	started  atomic.Bool // counted as in work (Progress)
	device   bool
	// A file the walk does not create is created by whoever comes first
	// (restore_create.go).
	late    bool
	size    int64        // to truncate to after the create (it ends in a hole), or 0
	stored  int          // its stored extents
	alloc   int64        // bytes to allocate at create (create), or 0
	wrote   atomic.Int64 // stored extents written
	written atomic.Int64 // their bytes
	modeSet bool         // created with its final mode (createMode)
	aside   string       // what was in its way, moved beside it (moveAside), or ""
	held    bool         // fd counts against holdMax
	// mu guards the create of a late file: created (or it failed), and
	// fd, dev and ino as the create left them.
	mu      sync.Mutex
	created bool
	failed  bool // the create failed: nothing at path is the restore's
}

// Restore writes point p (or p's sub-path opts.Path) into opts.Target. It
// restores every file it can; files with unreadable content are listed in
// the result and the error wraps ErrDamaged, as it does when the root
// directory itself cannot be read.
//
// The target is a directory (created if missing) that receives:
//   - the point's root, or the directory opts.Path names: its entries
//     become the target's entries and its metadata the target's, when
//     the target is new or empty, or is that directory itself (a
//     rollback in place); another that held entries keeps its own
//     (RestoreResult.TargetKept);
//   - the one entry opts.Path names when it is not a directory (file,
//     symlink, device image, ...): it becomes <target>/<name>.
//
// A target that holds anything is refused unless opts.Overwrite, and then
// only the entries the restore writes are replaced: a file, symlink or
// empty directory in the way is unlinked (never followed, never written
// through), a directory is merged into, and a non-empty directory in the
// way of a non-directory, or an entry that cannot be unlinked (chattr +i),
// is left alone and the entry listed in Skipped. Nothing else under the
// target is removed.
//
// Every entry is created and changed beneath the target without
// following a symlink (restore_beneath.go): a directory replaced by a
// symlink while the restore runs is not followed, and is listed in
// Warnings (and what could not be created in it in Skipped).
//
// An error other than ErrDamaged means the restore stopped: the
// directories it created that are still empty are removed, and the error
// names any that hold a partial restore. A nil result means nothing was
// written.
func Restore(ctx context.Context, r *Reader, p *Point, opts RestoreOptions) (*RestoreResult, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2 * procs.CPUs()
		// An object store's reads wait on round trips, not on the CPU:
		// as many packs at once as it has connections keep it busy.
		if c, ok := r.st.(interface{ Connections() int }); ok {
			opts.Workers = max(opts.Workers, c.Connections())
		}
	}
	if opts.Target != "" {
		// Absolute, as the paths of the entries beneath it are taken
		// apart against it (targetDirs.relOf): "." would not prefix
		// "dir/f", which filepath.Join makes of "./dir/f".
		if abs, err := filepath.Abs(opts.Target); err == nil {
			opts.Target = abs
		}
	}
	if opts.Resume {
		opts.Overwrite = true
	}
	euid := uint32(os.Geteuid())
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	rs := &restorer{r: r, opts: opts, ctx: ctx, stop: stop, isRoot: euid == 0, euid: euid, egid: uint32(os.Getegid()),
		damaged: map[string]*damageNote{}, links: map[uint64]*linkLeader{}, leaders: map[string]*linkLeader{}, holdMax: holdLimit()}

	rs.protect = map[devIno]string{}
	for i, d := range append([]string{r.st.Dir()}, opts.Protect...) {
		var st unix.Stat_t
		if unix.Stat(d, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			rs.protect[devIno{st.Dev, st.Ino}] = d
			if i == 0 {
				rs.store = devIno{st.Dev, st.Ino}
			}
		}
	}
	if opts.Target != "" {
		if err := rs.checkProtected(opts.Target); err != nil {
			return nil, err
		}
	}

	// Find what to restore.
	tree, err := r.LoadTree(p.Tree)
	if err != nil {
		return nil, fmt.Errorf("point %s: root directory unreadable: %w: %w", p.ID.Short(), ErrDamaged, err)
	}
	rootNode := &Node{Type: TypeDir, Mode: p.Root.Mode, UID: p.Root.UID, GID: p.Root.GID,
		MtimeNS: p.Root.MtimeNS, AtimeNS: p.Root.AtimeNS, Xattrs: p.Root.Xattrs, Flags: p.Root.Flags}
	var single *Node
	if slices.Contains(strings.Split(opts.Path, "/"), "..") {
		// Cleaned away, "a/../.." would be the whole point.
		return nil, fmt.Errorf("path %q: '..' is not allowed: give the path inside the point, from its top (as 'ls' of the mount shows it)", opts.Path)
	}
	if sub := strings.Trim(filepath.Clean("/"+opts.Path), "/"); sub != "" {
		parts := strings.Split(sub, "/")
		for i, part := range parts {
			n := tree.Find(part)
			if n == nil {
				err := fmt.Errorf("path %q: %w in point %s", opts.Path, chunkstore.ErrNotFound, p.ID.Short())
				if rel, ok := strings.CutPrefix(filepath.Clean(opts.Path), strings.TrimSuffix(p.Path, "/")+"/"); ok && filepath.IsAbs(opts.Path) && p.Path != "" {
					// restic takes the path the files had; here it is
					// inside the point.
					err = fmt.Errorf("%w: paths are inside the point, from the directory it was made of (%s): --path %s", err, p.Path, rel)
				}
				return nil, err
			}
			if n.Type != TypeDir {
				if i != len(parts)-1 || strings.HasSuffix(opts.Path, "/") {
					return nil, fmt.Errorf("path %q: %s is not a directory", opts.Path, strings.Join(parts[:i+1], "/"))
				}
				single = n
				break
			}
			rootNode = n
			if tree, err = r.LoadTree(n.Subtree); err != nil {
				return nil, fmt.Errorf("path %q: directory unreadable: %w: %w", opts.Path, ErrDamaged, err)
			}
		}
	}

	if single == nil && rootNode.Subtree.IsZero() {
		rs.needs = p.Stats.Bytes // the whole point
	}
	stopBeside := rs.walkBeside(p, tree, single)
	defer stopBeside()

	// A device image onto a block device.
	if st, err := os.Stat(opts.Target); err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		if single == nil && len(tree.Nodes) == 1 && tree.Nodes[0].Type.HasContent() {
			single = tree.Nodes[0]
		}
		if single == nil || !single.Type.HasContent() {
			return nil, fmt.Errorf("restore target %s is a block device: only a file or device image can be restored onto it (use --path to pick one file)", opts.Target)
		}
		rs.res.Root = opts.Target
		return rs.run(func() error { return rs.restoreToDevice(single, opts.Target) })
	}

	if single != nil && !safeName(single.Name) {
		return nil, fmt.Errorf("path %q: unsafe name %q in point %s", opts.Path, single.Name, p.ID.Short())
	}
	rs.single = single != nil
	created, held, err := prepareTarget(opts.Target, opts.Overwrite)
	if err != nil {
		return nil, err
	}
	if single == nil {
		// A new or empty target is this restore's: marked so, a --resume
		// after a kill gives it the point's metadata too (not held).
		// Where attributes cannot be set, a resumed one keeps its own.
		switch {
		case !held:
			_ = unix.Setxattr(opts.Target, restoreMark, []byte(p.ID.String()), 0)
		case restoresInPlace(opts.Target, p.Path, opts.Path):
			// Back over the directory the point was made of (a rollback
			// of /srv/www): it takes the point's metadata, as every
			// directory below it does.
			held = false
		case opts.Resume:
			b := make([]byte, 2*len(p.ID))
			n, err := unix.Getxattr(opts.Target, restoreMark, b)
			held = err != nil || string(b[:n]) != p.ID.String()
			var st unix.Stat_t
			if held && unix.Lstat(opts.Target, &st) == nil && st.Mode&0o7777 == rootNode.Mode&0o7777 && st.Mtim.Nano() == rootNode.MtimeNS &&
				st.Uid == rootNode.UID && st.Gid == rootNode.GID {
				// A restore of the point that went through (its mark
				// removed): the target has the point's metadata, and
				// keeps it; it did not hold entries of its own.
				held = false
			}
		}
	}
	if rs.tgt, err = openTarget(opts.Target); err != nil {
		return nil, removeCreated(created, opts.Target, false, err)
	}
	defer rs.tgt.close()
	_, aclErr := unix.Getxattr(opts.Target, "system.posix_acl_default", nil)
	rs.cleanXattrs = opts.Overwrite || aclErr == nil
	rs.umask, rs.umaskOK = processUmask()
	// oneEntry: the whole of a point of one file or device. Its root is
	// the directory the file was in (/tmp, /var/log), which was not
	// backed up: what is restored is the one entry, <target>/<name>, as
	// for --path, and the root's metadata goes nowhere.
	oneEntry := (p.Kind == KindFile || p.Kind == KindDevice) && opts.Path == ""
	rs.res.Root, rs.res.Target = opts.Target, opts.Target
	switch {
	case single != nil:
		rs.res.Root = filepath.Join(opts.Target, single.Name)
	case oneEntry && len(tree.Nodes) == 1:
		rs.res.Root = filepath.Join(opts.Target, tree.Nodes[0].Name)
	}
	res, err := rs.run(func() error {
		if single != nil {
			path := filepath.Join(opts.Target, single.Name)
			if err := rs.clearWay(rs.tgt.root, single.Name, path, single); err != nil {
				return fmt.Errorf("restore %s: %w", path, err)
			}
			return rs.restoreNode(single, rs.tgt.root, path, single.Name)
		}
		if err := rs.restoreTree(tree, rs.tgt.root, opts.Target, ""); err != nil {
			return err
		}
		if held {
			// A directory that held entries before (/tmp, a home)
			// keeps its own owner, mode, times, attributes and flags:
			// the point's are another directory's (its source), and
			// giving them to /tmp would break the system. Directories
			// merged into below it get theirs, and so does the point's
			// own directory restored over in place.
			rs.res.TargetKept = true
			return nil
		}
		if oneEntry {
			return nil // the root's mode (1777) and owner are not the new target's
		}
		rs.dirMetas = append(rs.dirMetas, dirMeta{path: opts.Target, n: rootNode})
		return nil
	})
	if err != nil && !errors.Is(err, ErrDamaged) {
		err = removeCreated(created, opts.Target, res.Files+res.Dirs+res.Others > 0, err)
	}
	if err == nil && single == nil && !held {
		// The point's own directory may carry an attribute of that
		// name: it is the point's, and stays.
		if i := slices.IndexFunc(rootNode.Xattrs, func(x Xattr) bool { return x.Name == restoreMark }); !oneEntry && i >= 0 {
			_ = unix.Setxattr(opts.Target, restoreMark, rootNode.Xattrs[i].Value, 0)
		} else {
			_ = unix.Removexattr(opts.Target, restoreMark)
		}
	}
	if err == nil || errors.Is(err, ErrDamaged) {
		rs.openCreated(created, opts.Target, single == nil && !oneEntry)
	}
	return res, err
}

// openCreated gives the directories the restore made above what it
// restored the mode 'mkdir -p' gives (0777 less the umask), once the
// restore is done: made 0700 so that nothing is reachable before its
// metadata is in place, they kept it. A file restored alone sat in a
// directory only root could enter, and so did a target's new parents.
// The target itself, when it took the point's directory's mode, keeps it.
func (rs *restorer) openCreated(created []string, target string, tookMeta bool) {
	mode := os.FileMode(0o755)
	if rs.umaskOK {
		mode = os.FileMode(0o777 &^ rs.umask)
	}
	for _, d := range created {
		if tookMeta && filepath.Clean(d) == filepath.Clean(target) {
			continue
		}
		_ = os.Chmod(d, mode)
	}
}

// restoresInPlace reports whether target is the directory the point's
// path (with sub, a --path in it) was on this machine: the same file,
// whatever the spelling.
func restoresInPlace(target, path, sub string) bool {
	if path == "" || !filepath.IsAbs(path) {
		return false
	}
	src := filepath.Join(path, strings.Trim(filepath.Clean("/"+sub), "/"))
	a, err := os.Stat(target)
	if err != nil {
		return false
	}
	b, err := os.Stat(src)
	return err == nil && os.SameFile(a, b)
}

// restoreMark marks a target a restore made (or found empty) until the
// restore is done, with the point's id: a --resume of that point finds
// it and gives the target the point's metadata, which a target that held
// entries before keeps its own of.
const restoreMark = "user.recall.restore"

// holdLimit is how many files a restore keeps open from their creation
// until they are written: a file written soon after it is created (most
// are, see plan.go) is then not opened twice. A quarter of the descriptors
// still free, at most 4096, leaves room for pack files, the readers' own
// descriptors (fileCache) and everything else.
var holdLimit = func() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	limit := int64(min(rl.Cur, 1<<30)) // RLIM_INFINITY is all ones
	free := limit / 2                  // when the open ones cannot be counted
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		free = limit - int64(len(ents))
	}
	return max(0, min(free/4, 4096))
}

// safeName reports whether name is one path element that stays inside the
// directory it is restored into.
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// checkTarget says, changing nothing, whether a restore can go into
// target: none given, a directory holding entries without overwrite, or
// something other than a directory where one must be (the target, or the
// nearest of its parents that exists, which the restore would create it
// in) is refused. A block device (it takes a device image) is accepted.
// It reports whether the target exists and whether it holds entries.
// Restore checks with it before it creates anything, and a tape restore
// before it loads a cartridge, so both refuse the same targets.
func checkTarget(target string, overwrite bool) (exists, held bool, err error) {
	if target == "" {
		return false, false, errors.New("no restore target given (--target DIR)")
	}
	d := filepath.Clean(target)
	fi, err := os.Stat(d)
	if errors.Is(err, os.ErrNotExist) {
		if to, lerr := os.Readlink(d); lerr == nil {
			return false, false, fmt.Errorf("restore target %s is a symlink to %s, which does not exist: create that directory, or give another target", target, to)
		}
	}
	for (errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && filepath.Dir(d) != d {
		d = filepath.Dir(d)
		fi, err = os.Stat(d)
	}
	exists = d == filepath.Clean(target)
	switch {
	case err != nil:
		return false, false, fmt.Errorf("restore target %s: %w", target, err)
	case exists && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		return true, false, nil
	case !fi.IsDir():
		return false, false, fmt.Errorf("restore target %s: %s is not a directory: choose an empty or new directory", target, d)
	case !exists:
		return false, false, nil
	}
	f, err := os.Open(d)
	if err != nil {
		return true, false, fmt.Errorf("restore target %s: %w", target, err)
	}
	defer f.Close()
	if overwrite {
		// One entry tells held from empty.
		names, err := f.Readdirnames(1)
		if err != nil && err != io.EOF {
			return true, false, fmt.Errorf("restore target %s: %w", target, err)
		}
		return true, len(names) > 0, nil
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return true, false, fmt.Errorf("restore target %s: %w", target, err)
	}
	if len(names) > 0 {
		return true, true, fmt.Errorf("%s: %w (%d entries); choose an empty or new directory, or pass --overwrite", target, ErrTargetNotEmpty, len(names))
	}
	return true, false, nil
}

// prepareTarget checks the target and creates it if missing, returning the
// directories it created, outermost first, and whether it held entries.
func prepareTarget(target string, overwrite bool) ([]string, bool, error) {
	exists, held, err := checkTarget(target, overwrite)
	if errors.Is(err, ErrTargetNotEmpty) {
		return nil, true, fmt.Errorf("%w; if a restore of this point into it stopped, --resume goes on from where it stopped", err)
	}
	if err != nil || exists {
		return nil, held, err
	}
	var missing []string
	for d := filepath.Clean(target); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		missing = append([]string{d}, missing...)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, false, fmt.Errorf("create restore target: %w", err)
	}
	return missing, false, nil
}

// removeCreated undoes what a failed restore can undo without removing
// data: the directories it created that are still empty. Any left, or a
// target that existed, are named in the error.
func removeCreated(created []string, target string, wrote bool, err error) error {
	var left []string
	for i := len(created) - 1; i >= 0; i-- {
		if os.Remove(created[i]) != nil {
			left = append(left, created[i])
		}
	}
	switch {
	case len(created) == 0 && wrote:
		return fmt.Errorf("%w; entries restored before the error are left in %s: run the restore again with --resume to finish it", err, target)
	case len(left) > 0:
		return fmt.Errorf("%w; %s was created by this restore and holds a partial restore: run the restore again with --resume to finish it, or remove it", err, left[0])
	}
	return err
}

// run calls walk, which creates the entries and plans the reads of the
// files' content, reads what is planned, and applies directory metadata
// deepest first.
func (rs *restorer) run(walk func() error) (*RestoreResult, error) {
	rs.startReading()
	rs.startCreators(rs.opts.Workers)
	err := walk()
	if rs.stopReach != nil {
		// The scan's work is done: over an object store it would go on
		// loading trees beside the readers.
		rs.stopReach()
	}
	rs.finishReading()
	rs.closeCreateQueue() // the feeder is done
	rs.wg.Wait()
	rs.stopCreators()
	if err == nil {
		err = rs.createStop()
	}
	rs.applyFileFlags()
	rs.endAsides(err == nil && rs.ctx.Err() == nil && len(rs.res.Damaged) == 0 && len(rs.res.Skipped) == 0)
	replaced := map[string]bool{} // reported once, not once per directory under it
	for i := len(rs.dirMetas) - 1; i >= 0; i-- {
		if err != nil && rs.dirMetas[i].merged {
			// A restore that stopped leaves the directories it merged
			// into as they were (their mode, owner and flags): only a
			// restore that went through takes them to the point's.
			continue
		}
		rs.applyDirMeta(rs.dirMetas[i], replaced)
	}
	rs.res.Bytes = rs.bytes.Load()
	// A full target is why anything else failed after it: it is the
	// error, unless the walk had failed for something else first.
	var full *TargetFullError
	if cause := context.Cause(rs.ctx); errors.As(cause, &full) && (err == nil || noSpace(err) || errors.Is(err, cause)) {
		rs.mu.Lock()
		full.Files, full.Bytes = rs.res.Files, rs.res.Bytes
		rs.mu.Unlock()
		full.Needs = rs.needs
		return &rs.res, full
	}
	if err != nil {
		return &rs.res, err
	}
	if rs.ctx.Err() != nil {
		return &rs.res, context.Cause(rs.ctx)
	}
	if len(rs.res.Damaged) > 0 {
		if rs.res.Unreadable = !rs.someDamage; rs.res.Unreadable {
			return &rs.res, fmt.Errorf("%w: %d files could not be fully restored: the store's packs could not be read (permission denied, or the disk under them failed), which is no damage of their bytes: let recall read them (their owner and mode) or check the disk, then restore those files again", ErrDamaged, len(rs.res.Damaged))
		}
		return &rs.res, fmt.Errorf("%w: %d files could not be fully restored", ErrDamaged, len(rs.res.Damaged))
	}
	return &rs.res, nil
}

// restoreTree restores t's entries into d, the directory at dir (rel in
// the target).
func (rs *restorer) restoreTree(t *Tree, d *dirRef, dir, rel string) error {
	if rs.opts.Resume {
		rs.findAsides(d, dir, t)
	}
	for _, n := range t.Nodes {
		if rs.ctx.Err() != nil {
			return context.Cause(rs.ctx)
		}
		if err := rs.createStop(); err != nil {
			return err
		}
		if !safeName(n.Name) {
			where := rel
			if where == "" {
				where = "."
			}
			rs.skip(where, fmt.Errorf("entry with unsafe name %q not restored", n.Name))
			continue
		}
		path, nrel := filepath.Join(dir, n.Name), filepath.Join(rel, n.Name)
		if rs.opts.Resume && rs.inPlace(d, n) {
			continue
		}
		if err := rs.clearWay(d, n.Name, path, n); errors.Is(err, errInTheWay) || errors.Is(err, errStuck) || errors.Is(err, errBusy) {
			rs.skip(nrel, err)
			continue
		} else if err != nil {
			return fmt.Errorf("restore %s: %w", path, err)
		}
		if err := rs.restoreNode(n, d, path, nrel); err != nil {
			return err
		}
	}
	return nil
}

// inPlace reports whether the file n is in d already as a resumed
// restore keeps it (RestoreOptions.Resume), and counts it. Files with
// hard links are written again: their links are made after their
// content, so being whole says nothing of those. A file with inode flags
// is kept only when it has them (flagsInPlace).
func (rs *restorer) inPlace(d *dirRef, n *Node) bool {
	if n.Type != TypeFile || n.LinkGroup != 0 {
		return false
	}
	var st unix.Stat_t
	if unix.Fstatat(d.fd, n.Name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	if !rs.metaInPlace(&st, n) || st.Nlink != 1 || st.Size != int64(n.Size) {
		return false
	}
	if n.Flags != 0 && !flagsInPlace(d.fd, n) {
		return false
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.res.Kept++
	rs.res.KeptBytes += int64(n.Size)
	rs.mu.Unlock()
	rs.bytes.Add(int64(n.Size))
	rs.opts.Progress.fileKept(int64(n.Size))
	if stored := int64(storedExtents(n)); stored > 0 {
		// Counted as fill counts the places it plans, so that where the
		// scan beside (scanReach) says a pack is needed again still
		// matches the walk.
		rs.walkPlaces += filePlaces + stored
	}
	return true
}

// flagsInPlace reports whether the file n in the directory open as dfd
// has the inode flags n records. A restore sets a file's flags last of
// all (applyFileFlags), after its content, metadata and time, so a file
// that has them was restored whole: a resume keeps it. It was written
// again, which an immutable one refuses, and a resume of a restore
// killed while it set flags reported whole files as not restored.
func flagsInPlace(dfd int, n *Node) bool {
	fd, err := unix.Openat(dfd, n.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return readFlags(fd) == n.Flags
}

// allocMin: files up to this size are not allocated ahead (create): for
// them the fallocate would cost about what it saves.
const allocMin = 1 << 20

// stopFull stops the restore when err says its target is full; the first
// such error is what the restore returns (a TargetFullError).
func (rs *restorer) stopFull(path string, err error) bool {
	if !noSpace(err) {
		return false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ctx.Err() == nil {
		errno := unix.ENOSPC
		if errors.Is(err, unix.EDQUOT) {
			errno = unix.EDQUOT
		}
		rs.stop(&TargetFullError{Target: rs.opts.Target, Path: path, Err: errno})
	}
	return true
}

func (rs *restorer) warn(rel string, err error) { rs.report(&rs.res.Warnings, "warning", rel, err) }

func (rs *restorer) skip(rel string, err error) { rs.report(&rs.res.Skipped, "not restored", rel, err) }

// report adds rel to one of the result's lists, counts it as an error in
// the progress and logs it.
func (rs *restorer) report(list *[]PathError, what, rel string, err error) {
	rs.mu.Lock()
	*list = append(*list, PathError{Path: rel, Error: err.Error()})
	rs.mu.Unlock()
	rs.opts.Progress.addError()
	if rs.opts.Log != nil {
		rs.opts.Log("%s: %s: %v", what, rel, err)
	}
}

func (rs *restorer) markDamaged(rel string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.markDamagedLocked(rel, err)
}

// markDamagedRange marks bytes [off, end) of the file at rel damaged.
// A file's report names its first damaged range and, when there are
// more, how many and how many bytes in all: on tape a lost pack takes
// every chunk of a file it held, and the first range alone made a file
// of zeroes look mostly whole.
func (rs *restorer) markDamagedRange(rel string, off, end int64, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if d := rs.damaged[rel]; d != nil && d.ranges > 0 {
		d.ranges++
		d.bytes += end - off
		rs.res.Damaged[d.idx].Error = fmt.Sprintf("%s; %d damaged ranges, %d bytes in all", d.first, d.ranges, d.bytes)
		return
	}
	rs.markDamagedLocked(rel, fmt.Errorf("bytes %d-%d: %w", off, end, err))
	if d := rs.damaged[rel]; d.ranges == 0 && d.idx >= 0 {
		d.ranges, d.bytes = 1, end-off
	}
}

// damageNote is what the report of a damaged file says so far.
type damageNote struct {
	idx    int    // in res.Damaged
	first  string // its first error
	ranges int    // damaged byte ranges counted (markDamagedRange)
	bytes  int64
}

func (rs *restorer) markDamagedLocked(rel string, err error) {
	if rs.damaged[rel] != nil {
		return
	}
	rs.damaged[rel] = &damageNote{idx: len(rs.res.Damaged), first: err.Error()}
	if !notDamage(err) && !strings.HasPrefix(err.Error(), "hard link of damaged ") {
		rs.someDamage = true
	}
	rs.opts.Progress.addError()
	rs.res.Damaged = append(rs.res.Damaged, PathError{Path: rel, Error: err.Error()})
	if l := rs.leaders[rel]; l != nil {
		for _, f := range l.followers {
			rs.markDamagedLocked(f, fmt.Errorf("hard link of damaged %s", rel))
		}
	}
}

// linkLeader is the first restored path of a hard-link group; the others
// are links to it.
type linkLeader struct {
	path, rel string
	dev, ino  uint64 // the leader's file, once created (restoreFile)
	followers []string
	reported  int  // followers counted done (fileFinished)
	finished  bool // the leader was finished whole: followers are done when made
	dropped   bool // the leader was cut short and removed: no more links to it
}

// clearWay makes room for n at name in d (path) when overwriting: a
// directory stays for a directory to merge into; anything else is
// unlinked itself (a symlink is never followed, a hard link's other names
// keep their data), and a directory only when empty (errInTheWay
// otherwise). What cannot be unlinked is errStuck (immutable) or errBusy
// (a mount point). Without
// overwrite the target was empty, and whatever is there is left for the
// create to fail on.
func (rs *restorer) clearWay(d *dirRef, name, path string, n *Node) error {
	return rs.clearWayAt(d, name, path, n, false)
}

// lateFile reports whether n is a file created by whoever comes first
// (restore_create.go), not by the walk.
func lateFile(n *Node) bool { return n.Type == TypeFile && n.LinkGroup == 0 }

// clearWayAt is clearWay, called by the walk (atCreate false) or at the
// create of a late file (atCreate true, moveAside: a directory put there
// since the walk looked). The walk leaves a non-directory in the way of a
// late file for its create to move aside: the walk runs far ahead of the
// creates, and a restore that stopped (a full target, an interrupt) had
// unlinked every file it had walked past, restored or not.
func (rs *restorer) clearWayAt(d *dirRef, name, path string, n *Node, atCreate bool) error {
	if !rs.opts.Overwrite {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && n.Type == TypeDir {
		return nil
	}
	if !isDir && !atCreate && lateFile(n) {
		return nil // moved aside by its create (moveAside)
	}
	switch err := removeAt(d.fd, name, isDir); {
	case err == nil:
		return nil
	case err == unix.ENOTEMPTY || err == unix.EEXIST:
		return errInTheWay
	default:
		return wayError("remove", path, err)
	}
}

// wayError is the error of op (remove, rename) on what is in the way at
// path: errStuck where it cannot be unlinked (EPERM: immutable or
// append-only), errBusy where it is a mount point (EBUSY), which skip
// the entry; else the plain error, which stops the restore.
func wayError(op, path string, err error) error {
	pe := &os.PathError{Op: op, Path: path, Err: err}
	switch err {
	case unix.EPERM:
		return fmt.Errorf("%w (%w)", pe, errStuck)
	case unix.EBUSY:
		return fmt.Errorf("%w (%w)", pe, errBusy)
	}
	return pe
}

// restoreNode restores n at path, n.Name in d, which clearWay has made
// room for.
func (rs *restorer) restoreNode(n *Node, d *dirRef, path, rel string) error {
	switch n.Type {
	case TypeDir:
		return rs.restoreDir(n, d, path, rel)
	case TypeFile, TypeDevice:
		if n.LinkGroup != 0 {
			rs.mu.Lock()
			first, ok := rs.links[n.LinkGroup]
			if !ok {
				l := &linkLeader{path: path, rel: rel}
				rs.links[n.LinkGroup] = l
				rs.leaders[rel] = l
			}
			rs.mu.Unlock()
			if ok && rs.link(first, d, n.Name) {
				rs.mu.Lock()
				if first.dropped {
					// Cut short and removed after the link was made.
					rs.mu.Unlock()
					unlinkSameAt(d.fd, n.Name, first.dev, first.ino)
					return nil
				}
				rs.res.Files++
				// A link shares its leader's content, and so its damage,
				// found before or after this link was made.
				first.followers = append(first.followers, rel)
				if rs.damaged[first.rel] != nil {
					rs.markDamagedLocked(rel, fmt.Errorf("hard link of damaged %s", first.rel))
				}
				done := first.finished
				if done {
					first.reported++
				}
				rs.mu.Unlock()
				if done {
					rs.opts.Progress.fileDone(rel)
				}
				return nil
			}
		}
		return rs.restoreFile(n, d, path, rel)
	}
	// Another name of a symlink, FIFO, device node or socket already
	// made is a link to it; the first one is made, and its metadata set
	// (while it has one name), below.
	var leader *linkLeader
	if n.LinkGroup != 0 {
		rs.mu.Lock()
		first, ok := rs.links[n.LinkGroup]
		if !ok {
			leader = &linkLeader{path: path, rel: rel}
			rs.links[n.LinkGroup] = leader
		}
		rs.mu.Unlock()
		if ok && rs.link(first, d, n.Name) {
			rs.mu.Lock()
			rs.res.Others++
			rs.mu.Unlock()
			return nil
		}
	}
	switch n.Type {
	case TypeSymlink:
		if n.Target == "" {
			// No file system makes one (ENOENT); before, it stopped the
			// whole restore.
			rs.skip(rel, errors.New("symlink not recreated: its target is empty"))
			return nil
		}
		if err := unix.Symlinkat(n.Target, d.fd, n.Name); err != nil {
			if cannotHold(err, true, n.Name) {
				rs.skip(rel, fmt.Errorf("symlink not recreated (to %s): the target's file system cannot hold it: %w", n.Target, err))
				return nil
			}
			rs.stopFull(path, err)
			return fmt.Errorf("restore %s: %w", path, &os.LinkError{Op: "symlink", Old: n.Target, New: path, Err: err})
		}
	case TypeFifo:
		if err := unix.Mknodat(d.fd, n.Name, unix.S_IFIFO|n.Mode&0o7777, 0); err != nil {
			if cannotHold(err, true, n.Name) {
				rs.skip(rel, fmt.Errorf("FIFO not recreated: the target's file system cannot hold it: %w", err))
				return nil
			}
			rs.stopFull(path, err)
			return fmt.Errorf("restore %s: %w", path, err)
		}
	case TypeBlock, TypeChar, TypeSocket:
		if err := unix.Mknodat(d.fd, n.Name, typeBits(n.Type)|n.Mode&0o7777, int(n.Rdev)); err != nil {
			// Not restored, not a warning about metadata: a script that
			// reads "skipped" must see the entry missing.
			rs.skip(rel, fmt.Errorf("%s not recreated: %w", n.Type, err))
			return nil
		}
	default:
		rs.skip(rel, fmt.Errorf("entry of unknown type %d not restored", n.Type))
		return nil
	}
	rs.mu.Lock()
	rs.res.Others++
	rs.mu.Unlock()
	dev, ino := rs.applyMetaMade(d, path, rel, n)
	if leader != nil && ino != 0 {
		// The identity checked before its metadata was set: only what
		// the restore made is linked to again.
		rs.mu.Lock()
		leader.dev, leader.ino = dev, ino
		rs.mu.Unlock()
	}
	return nil
}

// cannotHold reports whether err says the target's file system cannot
// hold an entry of this kind or name (vfat and exFAT: no symlinks or
// FIFOs, no ':' or '?' in names): the entry is listed as not restored
// and the restore goes on, as it does for device nodes, so that a
// restore onto a USB stick brings back every file it can hold. special
// is true for a symlink or FIFO, whose EPERM (vfat's answer) means the
// same; for a file or directory EPERM is an immutable or forbidding
// target, which stops the restore, unless name holds a character FAT
// forbids.
func cannotHold(err error, special bool, name string) bool {
	switch {
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL),
		errors.Is(err, unix.EILSEQ), errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.EFBIG):
		return true
	}
	// Some FAT drivers (fusefat) answer a name with a character FAT
	// forbids with EPERM too, and a FIFO with EIO; a symlink or FIFO not
	// made is listed with its error, and a disk that really fails stops
	// the restore at the next file it writes.
	if special && errors.Is(err, unix.EIO) {
		return true
	}
	return errors.Is(err, unix.EPERM) && (special || strings.ContainsAny(name, `"*:<>?\|`))
}

// cannotCreate lists the file rel (name in its directory) as not
// restored when err, its create's error, says the target's file system
// cannot hold it (cannotHold), and reports whether it did: that file
// only is given up, and the restore goes on.
func (rs *restorer) cannotCreate(rel, name string, err error) bool {
	if !cannotHold(err, false, name) {
		return false
	}
	rs.skip(rel, fmt.Errorf("not created: the target's file system cannot hold it: %w", err))
	return true
}

// restoreDir makes the directory n at path, n.Name in d, or merges into
// the directory there, and restores its entries through a descriptor
// of it opened from d's: a symlink put there meanwhile is not followed.
func (rs *restorer) restoreDir(n *Node, d *dirRef, path, rel string) error {
	err := unix.Mkdirat(d.fd, n.Name, 0o700)
	if err != nil && err != unix.EEXIST && cannotHold(err, false, n.Name) {
		rs.skip(rel+"/", fmt.Errorf("directory not created, nor what it holds: the target's file system cannot hold its name: %w", err))
		return nil
	}
	if err != nil && err != unix.EEXIST {
		rs.stopFull(path, err)
		return fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "mkdir", Path: path, Err: err})
	}
	made := err == nil
	fd, err := openDirAt(d.fd, n.Name, unix.O_PATH)
	switch {
	case err == unix.ELOOP:
		// Not followed: the directory and all it holds are not restored.
		rs.skip(rel+"/", &replacedError{Path: path})
		return nil
	case err != nil && !made:
		// Merge only into a real directory.
		return fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "mkdir", Path: path, Err: unix.EEXIST})
	case err != nil:
		return fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "stat", Path: path, Err: err})
	}
	if home, ok := rs.protect[devIno{st.Dev, st.Ino}]; ok && !made {
		// A rollback of / in place over a point that holds a recall
		// home (this one's, or another's at the same path): written
		// over, the live store would lose its config, and with it,
		// encrypted, every point.
		unix.Close(fd)
		rs.skip(rel+"/", fmt.Errorf("%s is recall's own home or store (%s), in use by this restore: it and what it holds were left as they are; restore the point's copy into another directory to look at it", path, home))
		return nil
	}
	if !made {
		if err := writableDir(fd); err != nil && rs.opts.Resume && rs.keptWhole(d.fd, fd, n) {
			// Restored whole by the restore this one resumes, then made
			// immutable: nothing to do in it.
			unix.Close(fd)
			return nil
		} else if err != nil {
			// A directory of the target's own that cannot be written in
			// (chattr +i, or no write permission for a restore that is
			// not root's): it is left as it is, with what it holds, and
			// the rest of the restore goes on. Its first entry would
			// have stopped the whole restore, after the entries before
			// it were changed.
			unix.Close(fd)
			rs.skip(rel+"/", fmt.Errorf("%w: the directory in the target cannot be written in, so it and what it holds were left as they are ('chattr -i' it or give write permission, or restore elsewhere)", &os.PathError{Op: "access", Path: path, Err: err}))
			return nil
		}
	}
	sub := rs.tgt.adopt(rel, fd)
	defer rs.tgt.put(sub)
	rs.mu.Lock()
	rs.res.Dirs++
	rs.dirMetas = append(rs.dirMetas, dirMeta{path: path, rel: rel, n: n, dev: st.Dev, ino: st.Ino, merged: !made})
	rs.mu.Unlock()
	t, err := rs.r.LoadTree(n.Subtree)
	if treeLoaded != nil {
		treeLoaded()
	}
	rs.handOverIfIdle()
	if err != nil {
		rs.markDamaged(rel+"/", fmt.Errorf("directory listing unreadable: %w", err))
		return nil
	}
	return rs.restoreTree(t, sub, path, rel)
}

// keptWhole reports whether the directory n, open as fd (O_PATH) in the
// directory dfd, holds all the point has in it as the point has it, with
// the point's own flags, mode, owner (as root) and time, as a restore
// leaves it when it goes through: a resumed restore then keeps it,
// counted as kept, where it cannot write in it (chattr +i). It was
// reported not restored, exit 3, after a restore that had gone through.
// Nothing is counted unless all of it is in place.
func (rs *restorer) keptWhole(dfd, fd int, n *Node) bool {
	var files, dirs, others, bytes int64
	var places int64
	var inPlace func(dfd, fd int, n *Node) bool
	inPlace = func(dfd, fd int, n *Node) bool {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || !rs.metaInPlace(&st, n) || n.Flags != 0 && !flagsInPlace(dfd, n) {
			return false
		}
		t, err := rs.r.LoadTree(n.Subtree)
		if err != nil {
			return false
		}
		dirs++
		for _, c := range t.Nodes {
			if !safeName(c.Name) || unix.Fstatat(fd, c.Name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || !rs.metaInPlace(&st, c) {
				return false
			}
			switch c.Type {
			case TypeDir:
				sub, err := openDirAt(fd, c.Name, unix.O_PATH)
				if err != nil {
					return false
				}
				ok := inPlace(fd, sub, c)
				unix.Close(sub)
				if !ok {
					return false
				}
				continue
			case TypeFile, TypeDevice:
				if st.Size != int64(c.Size) || c.Flags != 0 && !flagsInPlace(fd, c) {
					return false
				}
				files++
				bytes += int64(c.Size)
				if stored := int64(storedExtents(c)); stored > 0 {
					places += filePlaces + stored
				}
			case TypeSymlink:
				b := make([]byte, len(c.Target)+1)
				if k, err := unix.Readlinkat(fd, c.Name, b); err != nil || string(b[:k]) != c.Target {
					return false
				}
				others++
			case TypeBlock, TypeChar:
				if st.Rdev != c.Rdev {
					return false
				}
				others++
			default:
				others++
			}
		}
		return true
	}
	if !inPlace(dfd, fd, n) {
		return false
	}
	rs.mu.Lock()
	rs.res.Files += files
	rs.res.Kept += files
	rs.res.KeptBytes += bytes
	rs.res.Dirs += dirs
	rs.res.Others += others
	rs.mu.Unlock()
	rs.bytes.Add(bytes)
	rs.walkPlaces += places
	for range files {
		rs.opts.Progress.fileKept(0)
	}
	rs.opts.Progress.addBytes(bytes)
	return true
}

// metaInPlace reports whether st, a stat of an entry in the target, has
// the type, mode, owner (as root) and, but for a symlink, modification
// time of n.
func (rs *restorer) metaInPlace(st *unix.Stat_t, n *Node) bool {
	return st.Mode&unix.S_IFMT == n.Type.ModeType() && (n.Type == TypeSymlink || st.Mode&0o7777 == n.Mode&0o7777 && st.Mtim.Nano() == n.MtimeNS) &&
		(!rs.isRoot || st.Uid == n.UID && st.Gid == n.GID)
}

// checkProtected refuses a target that is one of the protected
// directories or inside one: recall's home is never written in (README).
// Before, a target in the home but not in the store was taken, and with
// --overwrite a restore into its logs/ could replace recall's own files.
func (rs *restorer) checkProtected(target string) error {
	for d := filepath.Clean(target); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if unix.Stat(d, &st) == nil {
			id := devIno{st.Dev, st.Ino}
			if home, ok := rs.protect[id]; ok {
				return fmt.Errorf("restore target %s is inside recall's own home or store %s, which this restore reads: choose a directory outside it", target, home)
			}
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// writableDir reports why entries cannot be made or removed in the
// directory fd (an O_PATH descriptor), if they cannot: EPERM for an
// immutable one, EACCES without write and search permission (for the
// restore's effective user). A kernel that cannot tell (no faccessat2)
// says nothing, and the creates themselves find out.
func writableDir(fd int) error {
	err := unix.Faccessat2(fd, "", unix.W_OK|unix.X_OK, unix.AT_EACCESS|unix.AT_EMPTY_PATH)
	if err == unix.EPERM || err == unix.EACCES || err == unix.EROFS {
		return err
	}
	return nil
}

// link makes name in d a hard link of its group's first file, if the
// first file's name still holds the file the restore created; false
// otherwise, and the entry is restored as a file of its own.
func (rs *restorer) link(first *linkLeader, d *dirRef, name string) bool {
	rs.mu.Lock()
	dev, ino := first.dev, first.ino
	rs.mu.Unlock()
	if ino == 0 {
		return false
	}
	from, fromName, err := rs.tgt.parentOf(first.path)
	if err != nil {
		return false
	}
	defer rs.tgt.put(from)
	if unix.Linkat(from.fd, fromName, d.fd, name, 0) != nil {
		return false
	}
	// The link is checked once made: the first file's name may name
	// another file by now.
	var st unix.Stat_t
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == dev && st.Ino == ino {
		return true
	}
	unlinkSameAt(d.fd, name, st.Dev, st.Ino)
	return false
}

// besideVisitor is a part of the walk beside a restore: visit sees each
// entry with content, follower when an earlier name of its hard-link
// group has its content; end is called when the walk ends, complete
// unless it was stopped.
type besideVisitor struct {
	visit func(n *Node, follower bool)
	end   func(complete bool)
}

// besideVisit, when set (tests), runs for each entry the walk beside
// visits.
var besideVisit func()

// walkBeside walks the point's trees, the entries of t (or the one entry
// single), in its own goroutine ahead of the restore's walk, for the
// parts that want to know them early: the progress totals
// (restoreTotals) and the packs later batches need (scanReach). The
// returned function stops it and waits. When only the scan wants it,
// rs.stopReach stops it as the restore's walk ends.
func (rs *restorer) walkBeside(p *Point, t *Tree, single *Node) func() {
	var parts []*besideVisitor
	totals := rs.opts.Progress.restoreTotals()
	for _, v := range []*besideVisitor{totals, rs.scanReach(p)} {
		if v != nil {
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(rs.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		groups := map[uint64]bool{}
		visit := func(_ string, n *Node, err error) error {
			if besideVisit != nil {
				besideVisit()
			}
			if err != nil || !n.Type.HasContent() {
				return nil // an unreadable directory counts nothing
			}
			follower := n.LinkGroup != 0 && groups[n.LinkGroup]
			if n.LinkGroup != 0 {
				groups[n.LinkGroup] = true
			}
			for _, v := range parts {
				v.visit(n, follower)
			}
			return nil
		}
		if single != nil {
			rs.r.WalkNode(ctx, "", single, visit)
		} else {
			rs.r.walkTree(ctx, t, "", visit)
		}
		for _, v := range parts {
			v.end(ctx.Err() == nil)
		}
	}()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	if totals == nil {
		rs.stopReach = stop
	}
	return stop
}

// treeLoaded, when set (tests), runs after the walk loads a directory's
// tree.
var treeLoaded func()

// beforeCreate, when set (tests), runs just before restoreFile creates
// path: what another process could do at that moment.
var beforeCreate func(path string)

// restoreFile restores the file n at path, n.Name in d.
func (rs *restorer) restoreFile(n *Node, d *dirRef, path, rel string) error {
	// Writes give the file its size, except when it ends in a hole, or
	// when its last chunk is never written (finishFile sets it then).
	var size int64
	if k := len(n.Extents); n.Size > 0 && (k == 0 || n.Extents[k-1].Hole) {
		size = int64(n.Size)
	}
	stored := storedExtents(n)
	// Allocated at create: a file of stored extents only, whose writes
	// give it its size. A hole anywhere stays a hole.
	var alloc int64
	if size == 0 && n.Size > allocMin && stored == len(n.Extents) {
		alloc = int64(n.Size)
	}
	if n.LinkGroup == 0 {
		// Created by a creator running ahead, or by its first reader
		// (restore_create.go).
		of := &openFile{fd: -1, path: path, rel: rel, n: n, late: true, size: size, alloc: alloc, stored: stored}
		return rs.fill(of)
	}
	// A hard link's leader: its links are made by the walk.
	perm, final := rs.createMode(n)
	if beforeCreate != nil {
		beforeCreate(path)
	}
	fd, err := rs.createIn(d, n.Name, path, size, alloc, perm)
	if err != nil && rs.cannotCreate(rel, n.Name, err) {
		return nil // that file only (and the links the walk would make to it)
	}
	if err != nil {
		return err
	}
	of := &openFile{fd: fd, path: path, rel: rel, n: n, stored: stored, created: true, modeSet: final}
	// Its identity, which a link to it and its removal check (dropCut).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "stat", Path: path, Err: err})
	}
	of.dev, of.ino = st.Dev, st.Ino
	rs.mu.Lock()
	if l := rs.leaders[rel]; l != nil {
		l.dev, l.ino = st.Dev, st.Ino
	}
	rs.mu.Unlock()
	if stored > 0 && rs.hold() {
		of.held = true
		return rs.fill(of)
	}
	if stored > 0 {
		// The readers open it again as they need it (fileCache): a
		// restore may create more files than a process can hold open.
		of.fd = -1
		if err := unix.Close(fd); err != nil {
			rs.markDamaged(rel, fmt.Errorf("close: %w", err))
		}
	}
	return rs.fill(of)
}

// create creates the file at path for writing with permissions perm,
// truncated to size if size > 0, and counts it (createIn). Its directory
// is found again from the target, never through a symlink: where one
// has replaced it, the file is listed as not restored, and the error,
// which createOnce hands to createFailed, does not stop the restore
// (createStop).
func (rs *restorer) create(path string, n *Node, size, alloc int64, perm uint32) (fd int, aside string, err error) {
	if beforeCreate != nil {
		beforeCreate(path)
	}
	d, name, err := rs.tgt.parentOf(path)
	if err != nil {
		err = fmt.Errorf("restore %s: %w", path, err)
		if errors.Is(err, errReplaced) {
			rel, _ := rs.tgt.relOf(path)
			rs.skip(rel, errors.Unwrap(err))
		} else {
			rs.noteCreateStop(err)
		}
		return -1, "", err
	}
	defer rs.tgt.put(d)
	if aside, err = rs.moveAside(d, name, path, n); err != nil {
		return -1, "", fmt.Errorf("restore %s: %w", path, err)
	}
	fd, err = rs.createIn(d, name, path, size, alloc, perm)
	if err != nil {
		_ = putAsideBack(d.fd, aside, name) // the create failed: nothing is in its place
		rs.noteCreateStop(err)
		return -1, "", err
	}
	return fd, aside, nil
}

// asidePrefix starts the name an entry in the way of a file is moved to
// (moveAside) until the file is restored whole.
const asidePrefix = ".recall-old-"

// moveAside makes room for the late file n at name in d (path) when
// overwriting: what is there, unless a directory (clearWayAt), is moved
// to a hidden name beside it, returned, and removed only once the file
// is restored whole (dropAside); a restore that stops before puts it
// back (putAsideBack). So a restore stopped by a full target or an interrupt
// loses nothing of the target: the creates run a pack ahead of the
// writes, and before, every file created and not yet written when the
// restore stopped had lost the file it replaced. Only a kill -9 leaves
// one behind, under its hidden name.
func (rs *restorer) moveAside(d *dirRef, name, path string, n *Node) (string, error) {
	if !rs.opts.Overwrite {
		return "", nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return "", rs.clearWayAt(d, name, path, n, true) // put there since the walk looked
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	aside := asidePrefix + hex.EncodeToString(rnd[:])
	switch err := unix.Renameat2(d.fd, name, d.fd, aside, unix.RENAME_NOREPLACE); {
	case err == nil:
		return aside, nil
	case err == unix.EINVAL || err == unix.ENOSYS:
		// No RENAME_NOREPLACE on this file system: unlinked, as before.
		return "", rs.clearWayAt(d, name, path, n, true)
	default:
		return "", wayError("rename", path, err)
	}
}

// isAsideName reports whether name is one moveAside gives: asidePrefix
// and 12 lower-case hex digits.
func isAsideName(name string) bool {
	h, ok := strings.CutPrefix(name, asidePrefix)
	if !ok || len(h) != 12 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// findAsides notes the entries of d (dir) an earlier restore moved aside
// and, killed, could not remove nor put back: a resumed restore ends its
// work (endAsides). It runs before this restore creates anything in d,
// so what it finds is not its own. Directories are never taken, nor a
// name t, the point's listing of d, has: that is the point's own file.
func (rs *restorer) findAsides(d *dirRef, dir string, t *Tree) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			var st unix.Stat_t
			if !isAsideName(name) || t.Find(name) != nil || unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
				continue
			}
			rs.mu.Lock()
			rs.leftAside = append(rs.leftAside, filepath.Join(dir, name))
			rs.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// endAsides ends what findAsides found. With whole (every file of the
// restore restored whole, nothing skipped) they are removed, as the
// restore that moved them would have once it was done: each held what a
// file of this point replaced, and those files are whole now. Else they
// are kept and named, for the administrator to check.
func (rs *restorer) endAsides(whole bool) {
	rs.mu.Lock()
	left := rs.leftAside
	rs.leftAside = nil
	rs.mu.Unlock()
	for _, path := range left {
		rel, _ := rs.tgt.relOf(path)
		if !whole {
			rs.res.AsidesKept = append(rs.res.AsidesKept, rel)
			continue
		}
		d, name, err := rs.tgt.parentOf(path)
		if err != nil {
			rs.res.AsidesKept = append(rs.res.AsidesKept, rel)
			continue
		}
		var st unix.Stat_t
		switch {
		case unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil:
		case st.Mode&unix.S_IFMT == unix.S_IFDIR || unix.Unlinkat(d.fd, name, 0) != nil:
			rs.res.AsidesKept = append(rs.res.AsidesKept, rel)
		default:
			rs.res.AsidesRemoved++
		}
		rs.tgt.put(d)
	}
}

// putAsideBack moves what moveAside moved to aside in dfd back to name, where
// the file that was to replace it is not (never created, or cut short
// and removed); EEXIST where it is.
func putAsideBack(dfd int, aside, name string) error {
	if aside == "" {
		return nil
	}
	return unix.Renameat2(dfd, aside, dfd, name, unix.RENAME_NOREPLACE)
}

// dropAside ends what moveAside did for of: with whole (of is restored
// whole) what it moved aside is removed; else it is put back where of is
// not, and where of is (not whole: damaged, or not ours to remove) it is
// kept under its hidden name, and said where: it is never removed while
// the file that replaced it is not whole.
func (rs *restorer) dropAside(of *openFile, whole bool) {
	if of.aside == "" {
		return
	}
	d, name, err := rs.tgt.parentOf(of.path)
	if err != nil {
		return
	}
	defer rs.tgt.put(d)
	kept := filepath.Join(filepath.Dir(of.path), of.aside)
	switch {
	case whole:
		if err := removeAt(d.fd, of.aside, false); err != nil && err != unix.ENOENT {
			rs.warn(of.rel, fmt.Errorf("what it replaced, moved to %s, not removed: %w", kept, err))
		}
	default:
		if err := putAsideBack(d.fd, of.aside, name); err != nil && err != unix.ENOENT {
			rs.warn(of.rel, fmt.Errorf("not restored whole; what it was to replace is kept at %s", kept))
		}
	}
	of.aside = ""
}

// createIn creates name in d (path) as create does. With alloc > 0 (a
// file its writes give its size, restoreFile) its blocks are allocated at
// once: one allocation instead of one per block written, and a target
// too small for it stops the restore here rather than in the middle of
// its content.
func (rs *restorer) createIn(d *dirRef, name, path string, size, alloc int64, perm uint32) (int, error) {
	// O_EXCL|O_NOFOLLOW: never write through whatever might be at path. A
	// plain descriptor, not an os.File (see fileCache).
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	})
	if err != nil {
		err = fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
		rs.stopFull(path, err)
		return -1, err
	}
	if rs.isRoot && d.gid != int64(rs.egid) {
		// In a set-group-ID directory (or on a file system mounted
		// grpid) the file took the directory's group, not the creator's
		// that createMode and meta assume of a fresh file: a file of
		// root:root 0640 was left readable by that group. It gets the
		// creator's group at once, before any byte is written; meta
		// then gives it the point's.
		if err := unix.Fchown(fd, -1, int(rs.egid)); err != nil {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil {
				unlinkSameAt(d.fd, name, st.Dev, st.Ino) // created above, with O_EXCL
			}
			unix.Close(fd)
			return -1, fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "chown", Path: path, Err: err})
		}
	}
	if alloc > 0 {
		// FALLOC_FL_KEEP_SIZE: the writes give the size, as without it.
		// A file system without fallocate (EOPNOTSUPP) is written as it
		// is; only a full one stops the restore.
		_, err := retryEINTR(func() (int, error) { return 0, unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, alloc) })
		if noSpace(err) {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil {
				unlinkSameAt(d.fd, name, st.Dev, st.Ino) // created above, with O_EXCL
			}
			unix.Close(fd)
			err = fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "fallocate", Path: path, Err: err})
			rs.stopFull(path, err)
			return -1, err
		}
	}
	if size > 0 {
		if err := unix.Ftruncate(fd, size); err != nil {
			// Not left behind empty (a file larger than the target's
			// file system allows: EFBIG, listed as not restored).
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil {
				unlinkSameAt(d.fd, name, st.Dev, st.Ino) // created above, with O_EXCL
			}
			unix.Close(fd)
			return -1, fmt.Errorf("restore %s: %w", path, &os.PathError{Op: "truncate", Path: path, Err: err})
		}
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.mu.Unlock()
	return fd, nil
}

// noteCreateStop keeps the first error of a create that stops the
// restore (createStop).
func (rs *restorer) noteCreateStop(err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.createStopErr == nil {
		rs.createStopErr = err
	}
}

// createStop is the error of the first failed create of a file the walk
// did not create, which stops the restore (lateErr): a create whose
// directory was replaced by a symlink does not; it was skipped (create).
// Once one was skipped, lateErr keeps its error, and the first that
// stops the restore is the one create noted.
func (rs *restorer) createStop() error {
	err := rs.lateErr()
	if !errors.Is(err, errReplaced) {
		return err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.createStopErr
}

// reopen opens of again for writing, in its directory and never through
// a symlink, if it is still the file the restore created (a directory
// merged into may be writable by others). O_NONBLOCK: something put in
// its place (a fifo) must not keep the restore waiting.
func (rs *restorer) reopen(of *openFile) (int, error) {
	return rs.reopenAt(of.path, of.dev, of.ino, unix.O_WRONLY)
}

// reopenAt opens the file at path (mode: O_WRONLY or O_RDONLY) in its
// directory, never through a symlink, if it is still the file with
// device dev and inode ino that the restore created.
func (rs *restorer) reopenAt(path string, dev, ino uint64, mode int) (int, error) {
	d, name, err := rs.tgt.parentOf(path)
	if err != nil {
		return -1, err
	}
	defer rs.tgt.put(d)
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, name, mode|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != dev || st.Ino != ino {
		unix.Close(fd)
		return -1, fmt.Errorf("%s was replaced while it was restored", path)
	}
	return fd, nil
}

func storedExtents(n *Node) int {
	k := 0
	for _, e := range n.Extents {
		if !e.Hole {
			k++
		}
	}
	return k
}

// fill plans the reads of the file's stored extents (plan.go); the file is
// finished by whoever handles the last of them. A device's holes are
// written as zeroes here: they must read back as zeroes.
func (rs *restorer) fill(of *openFile) error {
	n := of.n
	meta := *n
	meta.Extents = nil // the plan holds what it needs of them
	of.n = &meta
	var start, holes int64
	data := int64(storedExtents(n))
	rs.wg.Add(1)
	of.left.Store(data + 1) // +1: not finished while it is being planned
	if data > 0 {
		rs.planFile()
	}
	for _, e := range n.Extents {
		end := int64(e.End)
		switch {
		case !e.Hole:
			rs.planChunk(of, e.ID, start, end)
		case of.device:
			rs.writeZeroes(of, start, end)
		default:
			holes += end - start
		}
		start = end
	}
	rs.opts.Progress.addBytes(holes) // a hole is done by not writing it
	if data == 0 {
		rs.opts.Progress.begin(of.rel)
	}
	rs.extentDone(nil, of)
	return nil
}

// writeZeroes fills bytes [off, end) of a device with zeroes.
func (rs *restorer) writeZeroes(of *openFile, off, end int64) {
	if rs.zero == nil {
		rs.zero = make([]byte, 1<<20)
	}
	zero := rs.zero
	for off < end {
		n := min(int64(len(zero)), end-off)
		if _, err := of.f.WriteAt(zero[:n], off); err != nil {
			rs.markDamaged(of.rel, fmt.Errorf("write: %w", err))
			return
		}
		rs.opts.Progress.addBytes(n)
		off += n
	}
}

func (rs *restorer) finishFile(of *openFile) {
	defer rs.wg.Done()
	if !of.device && of.stored > 0 && of.wrote.Load() < int64(of.stored) && rs.ctx.Err() != nil {
		rs.dropCut(of)
		rs.dropAside(of, false)
		rs.opts.Progress.fileDropped(of.rel)
		return
	}
	// -v and --json list a file as restored: only one that is in place
	// and whole may be. One never created (its create failed), skipped
	// at close, or damaged is listed as such instead.
	if rs.closeFile(of) && !rs.isDamaged(of.rel) {
		// Its holes are restored too, by its size: counted now, the
		// restore's bytes are the files' sizes, as a resume's kept
		// files, the progress (which counts holes as they are passed)
		// and its totals count them. They were the data bytes alone: a
		// 100 MiB sparse file restored "4.0 KiB", resumed "100 MiB".
		// A device's holes were written as zeroes (writeZeroes), which
		// count as well: they were left out, and 20 MiB restored onto
		// a device said 4.5 MiB.
		if holes := int64(of.n.Size) - of.written.Load(); holes > 0 {
			rs.bytes.Add(holes)
		}
		rs.dropAside(of, true)
		rs.fileFinished(of)
	} else {
		rs.dropAside(of, false)
		rs.opts.Progress.fileDropped(of.rel)
	}
}

// closeFile gives of its size and metadata and closes it; it reports
// whether the file is in the target, the restore's own.
func (rs *restorer) closeFile(of *openFile) bool {
	if of.device {
		if err := of.f.Sync(); err != nil {
			rs.markDamaged(of.rel, fmt.Errorf("sync: %w", err))
		}
		of.f.Close()
		return true
	}
	if of.late {
		rs.createLate(of, nil)
		if of.failed {
			return false // whatever is at path is not the restore's
		}
	}
	if of.wrote.Load() < int64(of.stored) {
		rs.fitSize(of)
	}
	rs.applyMetaFresh(of)
	if of.fd < 0 {
		return true
	}
	err := unix.Close(of.fd)
	if of.held {
		rs.release()
	}
	switch {
	case rs.stopFull(of.path, err):
		// A network file system may tell of a full disk only now.
		rs.skip(of.rel, fmt.Errorf("close: %w", err))
		return false
	case err != nil:
		rs.markDamaged(of.rel, fmt.Errorf("close: %w", err))
	}
	return true
}

// isDamaged reports whether rel was marked damaged.
func (rs *restorer) isDamaged(rel string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.damaged[rel] != nil
}

// fitSize gives a file whose stored extents were not all written (a
// chunk was damaged, a write failed) its recorded size before its times
// are set. The writes give a file its size, so a lost last chunk would
// leave it short where a lost one in the middle leaves a hole; a damaged
// file keeps its size, with holes where its data is missing, whichever
// chunk is lost. A file not held open is opened again for it, and must
// still be the file the restore created (reopen).
func (rs *restorer) fitSize(of *openFile) {
	fd, done, err := rs.fdOf(of)
	if err != nil {
		rs.warn(of.rel, fmt.Errorf("size not set: %w", err))
		return
	}
	defer done()
	if err := unix.Ftruncate(fd, int64(of.n.Size)); err != nil {
		rs.warn(of.rel, fmt.Errorf("size not set: %w", &os.PathError{Op: "truncate", Path: of.path, Err: err}))
	}
}

// fileFinished counts of done, and the hard links made to it so far;
// those made later are done when made.
func (rs *restorer) fileFinished(of *openFile) {
	rs.opts.Progress.fileDone(of.rel)
	rs.mu.Lock()
	var links []string
	if l := rs.leaders[of.rel]; l != nil {
		l.finished = true
		links = l.followers[l.reported:]
		l.reported = len(l.followers)
	}
	rs.mu.Unlock()
	for _, rel := range links {
		rs.opts.Progress.fileDone(rel)
	}
}

// dropCut removes a file the restore created but stopped before it was
// written whole, and the hard links the walk made to it: after a stopped
// restore, a file in the target is one restored whole. A late file not
// yet created is not created. Only the file created is removed: a path
// that names another file by now (a directory merged into may be
// writable by others) is left alone.
func (rs *restorer) dropCut(of *openFile) {
	of.mu.Lock()
	created, failed := of.created, of.failed
	of.created = true // createLate: nothing more to create
	of.mu.Unlock()
	dev, ino := of.dev, of.ino
	if of.fd >= 0 {
		var st unix.Stat_t
		if unix.Fstat(of.fd, &st) == nil {
			dev, ino = st.Dev, st.Ino
		}
		unix.Close(of.fd)
		if of.held {
			rs.release()
		}
	}
	if !created || failed {
		return
	}
	rs.bytes.Add(-of.written.Load())
	// A link made after dropped is set removes itself (restoreNode).
	paths := []string{of.path}
	rs.mu.Lock()
	if l := rs.leaders[of.rel]; l != nil {
		l.dropped = true
		for _, rel := range l.followers {
			paths = append(paths, filepath.Join(rs.opts.Target, rel))
		}
	}
	rs.mu.Unlock()
	if ino == 0 {
		return // never stat'ed: not known to be ours
	}
	var removed int64
	for _, p := range paths {
		if rs.unlinkSame(p, dev, ino) {
			removed++
		}
	}
	rs.mu.Lock()
	rs.res.Files -= removed
	rs.mu.Unlock()
}

// unlinkSame removes path, one of the restore's, if it is still the file
// dev, ino.
func (rs *restorer) unlinkSame(path string, dev, ino uint64) bool {
	d, name, err := rs.tgt.parentOf(path)
	if err != nil {
		return false
	}
	defer rs.tgt.put(d)
	return unlinkSameAt(d.fd, name, dev, ino)
}

func (rs *restorer) restoreToDevice(n *Node, dev string) error {
	// O_EXCL on a block device: refused (EBUSY) while it is mounted or
	// held by md, LVM, swap or another exclusive opener, as mkfs refuses.
	// Before, a restore onto a mounted device overwrote the file system
	// in use and exited 0.
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("device %s is in use (mounted, or part of a RAID, LVM volume or swap): nothing was written; unmount it or stop what holds it, then restore again", dev)
	}
	if err != nil {
		return fmt.Errorf("open device %s: %w", dev, err)
	}
	size, err := blockDeviceSize(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("device %s: %w", dev, err)
	}
	if size < int64(n.Size) {
		f.Close()
		return fmt.Errorf("device %s holds %d bytes, the image needs %d: choose a larger device", dev, size, n.Size)
	}
	if size > int64(n.Size) && rs.opts.Log != nil {
		// Normal for an image onto a larger disk; said, since a file
		// picked by mistake writes only its own start of the device.
		rs.opts.Log("%s (%d bytes) is written to the start of %s (%d bytes); the %d bytes after it are left as they are", n.Name, n.Size, dev, size, size-int64(n.Size))
	}
	rs.mu.Lock()
	rs.res.Files++
	rs.mu.Unlock()
	return rs.fill(&openFile{f: f, fd: int(f.Fd()), path: dev, rel: n.Name, n: n, device: true})
}

// applyMetaMade applies n's metadata (meta) to the symlink, fifo, device
// or socket the restore has just made at path, n.Name in d, through an
// O_PATH descriptor of it, if it is still what the restore made.
// It returns the entry's identity, zero when it is not what was made.
func (rs *restorer) applyMetaMade(d *dirRef, path, rel string, n *Node) (dev, ino uint64) {
	fd, err := unix.Openat(d.fd, n.Name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		rs.warn(rel, fmt.Errorf("metadata not applied: %w", &os.PathError{Op: "open", Path: path, Err: err}))
		return 0, 0
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		rs.warn(rel, fmt.Errorf("metadata not applied: %w", &os.PathError{Op: "stat", Path: path, Err: err}))
		return 0, 0
	}
	if !madeAs(&st, n) {
		rs.warn(rel, errors.New("replaced during the restore; metadata not applied"))
		return 0, 0
	}
	rs.meta(metaAt{path: path, fd: fd, opath: true, dfd: d.fd, name: n.Name}, rel, n, false)
	return st.Dev, st.Ino
}

// fdOf returns a descriptor of of's file: the one held open, or one
// opened again (reopen), which done closes.
func (rs *restorer) fdOf(of *openFile) (fd int, done func(), err error) {
	if of.fd >= 0 {
		return of.fd, func() {}, nil
	}
	if fd, err = rs.reopen(of); err != nil {
		return -1, nil, err
	}
	return fd, func() { unix.Close(fd) }, nil
}

// applyMetaFresh applies the metadata of a file this restore created,
// which belongs to the restoring user, through its descriptor: the one
// open, or one opened again (reopen).
func (rs *restorer) applyMetaFresh(of *openFile) {
	fd, done, err := rs.fdOf(of)
	if err != nil {
		rs.warn(of.rel, fmt.Errorf("metadata not applied: %w", err))
		return
	}
	defer done()
	// A file with damaged ranges keeps the time of its restore, not the
	// point's: "restore --resume" keeps only files with the point's size
	// and time, and before, it kept such a file, zeroes and all, and
	// exited 0.
	rs.meta(metaAt{path: of.path, fd: fd, modeSet: of.modeSet, skipTimes: rs.isDamaged(of.rel)}, of.rel, of.n, true)
	if of.n.Flags != 0 && !of.device {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			rs.warn(of.rel, fmt.Errorf("inode flags +%s not set: %w", flagLetters(of.n.Flags), &os.PathError{Op: "stat", Path: of.path, Err: err}))
			return
		}
		rs.mu.Lock()
		rs.flagged = append(rs.flagged, flaggedFile{path: of.path, rel: of.rel, dev: st.Dev, ino: st.Ino, flags: of.n.Flags})
		rs.mu.Unlock()
	}
}

// flaggedFile is a file restored with inode flags, as created.
type flaggedFile struct {
	path, rel string
	dev, ino  uint64
	flags     uint32
}

// applyFileFlags gives the files restored with inode flags their flags,
// once every file is written and every hard link made: a link to an
// immutable or append-only file cannot be made, and such a file cannot
// be written or have its times set. Each is opened again in its
// directory, never through a symlink, and only if it is still the file
// the restore made (it is read-only: FS_IOC_SETFLAGS asks for ownership,
// not write access).
func (rs *restorer) applyFileFlags() {
	for _, of := range rs.flagged {
		if err := rs.setFileFlags(of); err != nil {
			rs.warn(of.rel, fmt.Errorf("inode flags +%s not set: %w", flagLetters(of.flags), err))
		}
	}
}

func (rs *restorer) setFileFlags(of flaggedFile) error {
	fd, err := rs.reopenAt(of.path, of.dev, of.ino, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setFlags(fd, of.flags); err != nil {
		return &os.PathError{Op: "set inode flags of", Path: of.path, Err: err}
	}
	return nil
}

// applyDirMeta applies a directory's metadata at the end of the restore,
// through a descriptor of it found again from the target, never through
// a symlink, and only if it is still the directory the restore made or
// merged into. A directory replaced by a symlink is reported once in
// replaced, however many directories below it had metadata to apply.
func (rs *restorer) applyDirMeta(dm dirMeta, replaced map[string]bool) {
	name := dm.rel // as every other warning names its entry
	if name == "" {
		name = dm.path // the target itself
	}
	at, err := rs.openDirMeta(dm)
	var re *replacedError
	switch {
	case errors.As(err, &re):
		if !replaced[re.Path] {
			replaced[re.Path] = true
			rs.warn(re.Path, errReplaced)
		}
		return
	case err != nil:
		rs.warn(name, fmt.Errorf("metadata not applied: %w", err))
		return
	}
	defer unix.Close(at.fd)
	// A directory's flags go last, once its entries are in, when they
	// hold immutable or append-only (the metadata could not be set
	// after them). Other flags go first: a directory merged into with
	// --overwrite that is +a or +i in the target, not in the point, is
	// freed by them before its owner, mode and times are set, which it
	// refused before. A directory merged into loses flags its point does
	// not have only with --overwrite.
	setFlags := dm.n.Flags != 0 || rs.opts.Overwrite
	last := dm.n.Flags&flagsImmutable != 0
	applyFlags := func() {
		if err := rs.dirFlags(at, dm.n.Flags); err != nil {
			rs.warn(name, fmt.Errorf("inode flags +%s not set: %w", flagLetters(dm.n.Flags), err))
		}
	}
	if setFlags && !last {
		applyFlags()
	}
	rs.meta(at, name, dm.n, false)
	if setFlags && last {
		applyFlags()
	}
}

// dirFlags sets a directory's inode flags through its descriptor.
func (rs *restorer) dirFlags(at metaAt, flags uint32) error {
	if at.opath {
		return errors.New("the directory cannot be opened for it (no read permission)")
	}
	return setFlags(at.fd, flags) // the warning names the directory
}

// openDirMeta opens the directory of dm for its metadata: for reading,
// or O_PATH where it cannot be read (a mode without r for its owner).
func (rs *restorer) openDirMeta(dm dirMeta) (metaAt, error) {
	d, name := rs.tgt.root, "."
	if dm.rel != "" {
		var err error
		if d, name, err = rs.tgt.parentOf(dm.path); err != nil {
			return metaAt{}, err
		}
		defer rs.tgt.put(d)
	}
	at := metaAt{path: dm.path}
	fd, err := openDirAt(d.fd, name, unix.O_RDONLY)
	if err == unix.EACCES {
		fd, err = openDirAt(d.fd, name, unix.O_PATH)
		at.opath = true
	}
	switch {
	case err == unix.ELOOP:
		return metaAt{}, &replacedError{Path: dm.path}
	case err != nil:
		return metaAt{}, &os.PathError{Op: "open", Path: dm.path, Err: err}
	}
	at.fd = fd
	if dm.rel == "" {
		return at, nil // the target itself
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != dm.dev || st.Ino != dm.ino {
		unix.Close(fd)
		return metaAt{}, errors.New("replaced by another directory during the restore; not changed")
	}
	return at, nil
}

// createMode is the mode to create a file for n with, and whether that is
// n's final mode, so that no chmod follows: when the file will belong to
// the restoring user anyway (no chown follows, which would have to come
// first), the umask keeps every bit, no default ACL decides instead, and
// the owner can write (a file of several chunks may be opened again to
// be written). Otherwise it is created readable and writable by its
// owner only until its metadata is applied.
func (rs *restorer) createMode(n *Node) (uint32, bool) {
	perm := n.Mode & 0o7777
	owned := !rs.isRoot || (n.UID == rs.euid && n.GID == rs.egid)
	if owned && rs.umaskOK && !rs.cleanXattrs && perm&^0o777 == 0 && perm&0o200 != 0 && perm&rs.umask == 0 {
		return perm, true
	}
	return 0o600, false
}

// processUmask reads the process's umask (Linux 4.7 and later show it in
// /proc/self/status; umask(2) itself cannot read it without setting it).
func processUmask() (uint32, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
}

func (rs *restorer) meta(at metaAt, rel string, n *Node, fresh bool) {
	// An entry the restore did not create (a directory merged into, one
	// made by an earlier restore) may have its owner, mode or times
	// already: those are not set again, so that a directory that
	// refuses changes ('chattr +a', +i) is warned about only for what
	// differs.
	var have unix.Stat_t
	known := !fresh && unix.Fstat(at.fd, &have) == nil
	if rs.isRoot && !(fresh && n.UID == rs.euid && n.GID == rs.egid) && !(known && have.Uid == n.UID && have.Gid == n.GID) {
		if err := at.chown(int(n.UID), int(n.GID)); err != nil {
			rs.warn(rel, fmt.Errorf("owner: %w", err))
		}
		known = false // a chown clears set-user-ID and set-group-ID bits: the mode is set again
	}
	if n.Type != TypeSymlink && !at.modeSet && !(known && have.Mode&0o7777 == n.Mode&0o7777) {
		if err := at.chmod(n.Mode & 0o7777); err != nil {
			rs.warn(rel, fmt.Errorf("mode: %w", err))
		}
	}
	if rs.cleanXattrs {
		at.dropExtraXattrs(n.Xattrs)
	}
	for _, x := range n.Xattrs {
		if err := at.setxattr(x.Name, x.Value); err != nil {
			if !rs.isRoot && (strings.HasPrefix(x.Name, "security.") || strings.HasPrefix(x.Name, "trusted.")) {
				continue
			}
			if g, ok := aclGroupObj(x); ok && n.Type != TypeSymlink && n.Mode&0o070 != g<<3 {
				// Without its ACL the mode's group bits, which held the
				// ACL's mask (what named users and groups may at most
				// have), would be the owning group's own: often more
				// than the ACL gave it.
				mode := n.Mode&0o7707 | g<<3
				if cerr := at.chmod(mode); cerr == nil {
					err = fmt.Errorf("%w; the owning group's permissions set to the ACL's group entry instead (mode %04o, not %04o), and its other entries are lost", err, mode, n.Mode&0o7777)
				}
			}
			rs.warn(rel, fmt.Errorf("xattr %s: %w", x.Name, err))
		}
	}
	if at.skipTimes {
		return
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.AtimeNS), unix.NsecToTimespec(n.MtimeNS)}
	if known && have.Atim == ts[0] && have.Mtim == ts[1] {
		return
	}
	if err := at.utimes(ts); err != nil {
		rs.warn(rel, fmt.Errorf("times: %w", err))
	}
}

// aclGroupObj returns the owning group's permissions (rwx as 0..7) from a
// system.posix_acl_access value: a version (2), then entries of tag,
// permissions (uint16 each) and id (uint32), little-endian; the owning
// group's entry has tag 0x04. ok is false for any other attribute, or an
// ACL without a mask (whose mode's group bits are the group's already).
func aclGroupObj(x Xattr) (perm uint32, ok bool) {
	const (
		groupObj = 0x04
		mask     = 0x10
	)
	v := x.Value
	if x.Name != "system.posix_acl_access" || len(v) < 4 || binary.LittleEndian.Uint32(v) != 2 {
		return 0, false
	}
	found, masked := false, false
	for e := v[4:]; len(e) >= 8; e = e[8:] {
		switch binary.LittleEndian.Uint16(e) {
		case groupObj:
			perm, found = uint32(binary.LittleEndian.Uint16(e[2:]))&7, true
		case mask:
			masked = true
		}
	}
	return perm, found && masked
}

// metaAt is the entry meta applies metadata to, through a descriptor of
// it, never by its path: its own descriptor (a file, a directory), or
// an O_PATH one (opath) for an entry that cannot be opened (a symlink),
// or should not be (a device, a fifo), changed through /proc/self/fd/N
// (proc), which reaches the entry itself, a symlink too, and never what
// a symlink names.
type metaAt struct {
	path    string // for messages
	fd      int
	opath   bool
	modeSet bool // the file was created with its final mode
	// skipTimes: the entry keeps the time it has (a file restored with
	// damaged ranges: see applyMetaFresh).
	skipTimes bool
	// dfd and name: the entry's directory and name, for times without
	// /proc (utimes); name "" when not known.
	dfd  int
	name string
}

func (m metaAt) chown(uid, gid int) error {
	if m.opath {
		if err := unix.Fchownat(m.fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return &os.PathError{Op: "lchown", Path: m.path, Err: err}
		}
		return nil
	}
	if err := unix.Fchown(m.fd, uid, gid); err != nil {
		return &os.PathError{Op: "fchown", Path: m.path, Err: err}
	}
	return nil
}

// chmod is never called for a symlink (meta).
func (m metaAt) chmod(mode uint32) error {
	if m.opath {
		p, err := m.proc()
		if err != nil {
			return err
		}
		return unix.Chmod(p, mode)
	}
	return unix.Fchmod(m.fd, mode)
}

func (m metaAt) setxattr(name string, value []byte) error {
	if m.opath {
		p, err := m.proc()
		if err != nil {
			return err
		}
		return unix.Setxattr(p, name, value, 0)
	}
	return unix.Fsetxattr(m.fd, name, value, 0)
}

// utimes sets access and modification times, as futimens(3) does for a
// descriptor (x/sys has no wrapper: utimensat with a NULL path).
func (m metaAt) utimes(ts []unix.Timespec) error {
	if m.opath {
		p, err := m.proc()
		if err == errNoProc && m.name != "" {
			// Without /proc: by name in its directory, never following
			// it. The entry was just checked to be the one made; what
			// a swap could put there instead is in the target too.
			return unix.UtimesNanoAt(m.dfd, m.name, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
	}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(m.fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// dropExtraXattrs removes the attributes of the entry that keep does not
// list: a default ACL inherited from a directory that existed before the
// restore, or the leftovers of an entry replaced with --overwrite.
func (m metaAt) dropExtraXattrs(keep []Xattr) {
	list := func(buf []byte) (int, error) { return unix.Flistxattr(m.fd, buf) }
	remove := func(name string) { unix.Fremovexattr(m.fd, name) }
	if m.opath {
		p, err := m.proc()
		if err != nil {
			return
		}
		list = func(buf []byte) (int, error) { return unix.Listxattr(p, buf) }
		remove = func(name string) { unix.Removexattr(p, name) }
	}
	names, err := listXattrNames(list)
	if err != nil {
		return
	}
	for _, name := range names {
		if !slices.ContainsFunc(keep, func(x Xattr) bool { return x.Name == name }) {
			remove(name)
		}
	}
}
