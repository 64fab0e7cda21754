// Package holder tells, for certain, that a process of this machine that
// held a lock is gone, by the kernel's own flock: each process that takes
// locks keeps a file of its own locked for as long as it lives, and the
// kernel drops that flock the moment the process exits, however it dies.
// A lock kept where it does not die with its holder (an object store)
// can then be freed at once when its holder's file is found unlocked.
//
// # Files
//
// A process that asks for its token (Token) creates, once, in a per-host
// runtime directory (Default: /run/recall/holders when it can be created
// there, else $XDG_RUNTIME_DIR/recall/holders, else
// <os.TempDir()>/recall-<uid>/holders; each 0700, owned by the process's
// user and on a local file system, or not used; RECALL_HOLDER_DIR, for
// tests and debugging, replaces the list with the one directory it names):
//
//	<dir>/<token>.lock   token: 16 random lower-case hex digits; mode
//	                     0600, flocked (LOCK_EX) by its process until it
//	                     exits; empty, or the one byte "x" once found
//	                     gone (below)
//
// and writes the token into the infos of the locks it takes, with the
// kernel's boot id (BootID).
//
// A file found no longer flocked (its holder gone) is marked with one
// byte: its modification time is then when its holder was first found
// gone. It stays a day after that (Retain), so that every lock its holder
// left (a server killed with several backups running holds several) can
// be judged by every process that meets one, and is removed by the next
// process that opens the directory after that (the directory does not
// grow). Removing a file early is never unsafe: a holder whose file is
// missing is alive to the judge, so its locks free when stale, as a
// remote holder's do.
//
// # The judgement
//
// A token is dead (Dir.Dead) only when <dir>/<token>.lock, in this
// process's own directory, exists, is a regular file of our user, and
// flock(LOCK_SH|LOCK_NB) on it succeeds: no process holds it exclusively,
// so its holder exited (a process never lets go of its file while it
// runs, and a token is never used again). Judges take the flock shared so
// that they do not take each other for the holder; only a sweep's removal
// takes it exclusively. Anything else (a token of another form, a missing
// file, a file held, any error) is alive.
//
// The rule the caller adds (chunkstore.HolderDead): the holder's info
// names the same host name and the same boot as the judge's, and the
// token's file is in the judge's holder directory. The flock is then the
// one the holder's kernel kept. A disk clone, an image or a restore of
// the machine boots with another boot id; a holder whose directory is
// another (another container's /run or /tmp) has no file in the judge's.
// The directory must be on a local file system: on a network or
// user-space one (NFS, SMB, FUSE, Ceph...) flock is emulated, or local to
// one client, so Open refuses it (ErrUnsafe).
//
// What nothing host-local can tell: a virtual machine cloned from a
// memory snapshot runs on with the same host name, boot id, holder
// directory, processes and tokens as its original, each copy's kernel
// keeping its own flock. When a holder dies in one copy, a judge there
// finds it dead and frees its lock, which the other copy's holder still
// holds (the same lock object, refreshed by both), and a session of the
// same source may start beside that holder. The damage is bounded: the
// other holder's next refresh (at most LockRefresh later) finds its lock
// object removed, and it stops with chunkstore.ErrLockLost; until then
// two sessions of one source run at once.
//
// Tokens come from lock infos on a server: hostile input. A path is only
// ever this directory joined with a token validated as 16 hex digits,
// opened relative to the directory's descriptor with O_NOFOLLOW.
package holder

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is a directory of holder files, with this process's own file in it,
// flocked while the Dir is open.
type Dir struct {
	path  string
	fd    int // the directory, opened O_DIRECTORY|O_NOFOLLOW
	token string
	own   int  // our file, flocked
	kept  bool // Default's: never closed
}

const suffix = ".lock"

// Open opens (creating it, and its parent, mode 0700 when missing) the
// directory path, refuses it unless it and its parent are directories
// (not symbolic links) owned by this process's user that no group or other
// may write, and it is on a local file system, creates this process's
// holder file in it, flocks it, and sweeps the files of holders gone (see
// the package comment).
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("holder directory %s: %w", path, err)
	}
	pfd, err := openDir(unix.AT_FDCWD, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	fd, err := openDir(pfd, filepath.Base(path))
	unix.Close(pfd)
	if err != nil {
		return nil, fmt.Errorf("holder directory %s: %w", path, err)
	}
	if err := localFS(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("holder directory %s: %w", path, err)
	}
	d := &Dir{path: path, fd: fd, own: -1}
	for range 8 {
		if err = d.create(); err == nil {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("holder file in %s: %w", path, err)
	}
	d.sweep()
	return d, nil
}

// openDir opens name (relative to dirfd) as a directory that must be
// ours and not writable by group or others.
func openDir(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", name, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w (owner uid %d, mode %#o): it must be owned by uid %d and not writable by group or others",
			name, ErrUnsafe, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	return fd, nil
}

// ErrUnsafe: a holder directory that others could write to, where they
// could plant or remove holder files, or one on a file system whose flock
// does not tell that a process of this kernel holds the file.
var ErrUnsafe = errors.New("unsafe holder directory")

// Magic numbers of shared file systems that x/sys/unix does not name.
const (
	gfs2Magic   = 0x01161970
	lustreMagic = 0x0bd00bd0
	gpfsMagic   = 0x47504653
)

// remoteFS names the file systems, by statfs magic number, where a flock
// is emulated by a server or a user-space daemon, or is seen by one
// client only, or is shared between machines: a file found unlocked there
// does not prove that no process of this kernel holds it.
var remoteFS = map[uint32]string{
	unix.NFS_SUPER_MAGIC:   "NFS",
	unix.SMB_SUPER_MAGIC:   "SMB",
	unix.SMB2_SUPER_MAGIC:  "SMB2",
	unix.CIFS_SUPER_MAGIC:  "CIFS",
	unix.FUSE_SUPER_MAGIC:  "FUSE",
	unix.V9FS_MAGIC:        "9p",
	unix.CEPH_SUPER_MAGIC:  "Ceph",
	unix.AFS_SUPER_MAGIC:   "AFS",
	unix.AFS_FS_MAGIC:      "AFS",
	unix.CODA_SUPER_MAGIC:  "Coda",
	unix.NCP_SUPER_MAGIC:   "NCP",
	unix.OCFS2_SUPER_MAGIC: "OCFS2",
	gfs2Magic:              "GFS2",
	lustreMagic:            "Lustre",
	gpfsMagic:              "GPFS",
}

// fsType returns the statfs magic number of the file system of fd; a
// variable so that tests can stand in for file systems they cannot mount.
var fsType = func(fd int) (uint32, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return 0, err
	}
	return uint32(st.Type), nil
}

// localFS refuses the directory fd unless it is on a local file system.
func localFS(fd int) error {
	t, err := fsType(fd)
	if err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if name, ok := remoteFS[t]; ok {
		return fmt.Errorf("%w: on a %s file system (magic %#x), where flock does not tell whether a process of this machine holds a file; use a directory on a local file system (/run, or set RECALL_HOLDER_DIR)", ErrUnsafe, name, t)
	}
	return nil
}

// create makes this process's file under a new token and flocks it. A
// sweeper of another process may flock and remove a file in the moment
// between its creation and the flock: then the file the name shows is not
// the one flocked, and another token is tried.
func (d *Dir) create() error {
	tok := make([]byte, 8)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	name := token + suffix
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		return err
	}
	if !sameFile(d.fd, name, fd) {
		unix.Close(fd)
		return errors.New("holder file removed while being created")
	}
	d.token, d.own = token, fd
	return nil
}

// sameFile reports whether name in dirfd is the file open as fd.
func sameFile(dirfd int, name string, fd int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstatat(dirfd, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// Retain is how long the file of a holder found gone stays: longer than
// any holder's lock goes without a refresh before others take it as
// stale, so that the file tells of its holder as long as a lock of it can
// be met.
const Retain = 24 * time.Hour

// sweep marks the files of holders gone, and removes those found gone
// longer than Retain ago.
func (d *Dir) sweep() {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return
	}
	for _, e := range ents {
		if tok, ok := strings.CutSuffix(e.Name(), suffix); ok && validToken(tok) && tok != d.token {
			d.gone(tok, true)
		}
	}
}

// validToken reports whether tok is 16 lower-case hex digits.
func validToken(tok string) bool {
	if len(tok) != 16 {
		return false
	}
	for _, c := range tok {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// gone flocks tok's file shared without waiting and, when it gets the
// flock (no process holds the file exclusively: its holder exited), marks
// the file as found gone (one byte; its time is then when) unless it is
// marked already, removes it when sweep is set and it was marked longer
// than Retain ago, and reports true. Anything else is false: a missing
// file, one held, one not a regular file of ours, any error.
//
// The flock is shared so that judges of one token, in this process or
// others, do not refuse each other: only the holder's exclusive flock
// makes a judge say alive. Marking twice writes the same byte. The
// removal takes the flock exclusively, so that it never happens while
// another judge looks at the file; one that cannot have it leaves the
// file to a later sweep.
func (d *Dir) gone(tok string, sweep bool) bool {
	name := tok + suffix
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd) // drops the flock
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return false
	}
	if unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) != nil {
		return false
	}
	// The name must still be the file flocked: one removed meanwhile (by
	// a sweep) and made again is another holder's.
	if !sameFile(d.fd, name, fd) {
		return false
	}
	if st.Size == 0 {
		if n, err := unix.Pwrite(fd, []byte{'x'}, 0); n != 1 || err != nil {
			return false
		}
	} else if sweep && time.Since(time.Unix(st.Mtim.Unix())) > Retain {
		// The conversion may drop the shared flock before it fails; the
		// holder is gone all the same.
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil && sameFile(d.fd, name, fd) {
			unix.Unlinkat(d.fd, name, 0)
		}
	}
	return true
}

// Token returns this process's token: what its lock infos carry; "" when
// its file is no longer held by its descriptor (the descriptor was closed,
// or the file at its name is another, or none): a token whose file this
// process does not hold would be judged dead while it runs.
func (d *Dir) Token() string {
	if d == nil || d.own < 0 {
		return ""
	}
	if _, err := unix.FcntlInt(uintptr(d.own), unix.F_GETFD, 0); err != nil {
		return ""
	}
	if !sameFile(d.fd, d.token+suffix, d.own) {
		return ""
	}
	return d.token
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Dead reports whether the holder of token is known to be gone (see the
// package comment), marking its file so. Our own token, a token not of
// 16 hex digits and one whose file is missing, held or not ours are
// alive.
func (d *Dir) Dead(token string) bool {
	if d == nil || !validToken(token) || token == d.token {
		return false
	}
	return d.gone(token, false)
}

// Close releases this process's file, whose holder is then gone to
// others, and the directory. It does nothing to the Dir of Default, which
// is the process's for as long as it lives: the infos of the locks it
// took carry its token.
func (d *Dir) Close() error {
	if d == nil || d.kept {
		return nil
	}
	if d.own >= 0 {
		unix.Close(d.own)
		d.own = -1
	}
	return unix.Close(d.fd)
}

var (
	defOnce sync.Once
	def     *Dir
)

// Default returns this process's Dir in the per-host runtime directory,
// opened at the first call and kept open for the life of the process;
// nil when none of the candidates (see the package comment) could be
// used: then this process has no token, and its locks are judged by their
// staleness alone.
func Default() *Dir {
	defOnce.Do(func() {
		if def = first(candidates()); def != nil {
			def.kept = true
		}
	})
	return def
}

// first returns the first of paths that Open takes, or nil. One it
// refuses, as one it cannot create, is passed over: a directory others
// could write to is never used, whatever comes after it.
func first(paths []string) *Dir {
	for _, p := range paths {
		if d, err := Open(p); err == nil {
			return d
		}
	}
	return nil
}

// DirEnv names the environment variable that, set to an absolute path,
// makes that directory the only one Default tries: for tests, which must
// not use the machine's holder directory, and for debugging. Processes
// that judge each other's tokens must share it.
const DirEnv = "RECALL_HOLDER_DIR"

// candidates are the directories Default tries, in order.
func candidates() []string {
	if x := os.Getenv(DirEnv); filepath.IsAbs(x) {
		return []string{x}
	}
	c := []string{"/run/recall/holders"}
	if x := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		c = append(c, filepath.Join(x, "recall", "holders"))
	}
	return append(c, filepath.Join(os.TempDir(), "recall-"+strconv.Itoa(os.Geteuid()), "holders"))
}

// Token is Default's token, or "" when there is no Dir.
func Token() string { return Default().Token() }

var (
	bootOnce sync.Once
	bootID   string
)

// BootID returns this kernel's boot id (/proc/sys/kernel/random/boot_id,
// trimmed), or "" when it cannot be read. A holder's info carries it with
// its token: a clone of this machine's disk, an image or a restore of it
// boots with another, and a holder file seen there belongs to no process
// of the boot that wrote the info.
func BootID() string {
	bootOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err == nil {
			bootID = strings.TrimSpace(string(b))
		}
	})
	return bootID
}

// Dead is Default's Dead: false when there is no Dir.
func Dead(token string) bool { return Default().Dead(token) }
