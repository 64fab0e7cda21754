package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/fs"
	"github.com/urfave/cli/v2"
)

// readyFDEnv names the descriptor on which a background server reports
// "ready" (or "error: ...") to the `recall mount` that started it.
const readyFDEnv = "RECALL_MOUNT_READY_FD"

func init() {
	register(&cli.Command{
		Name:      "mount",
		Usage:     "mount the recovery points as a read-only file tree (returns when it is ready; serves in the background)",
		ArgsUsage: "MOUNTPOINT",
		Description: `The tree is MOUNTPOINT/<source>/@GMT-YYYY.MM.DD-HH.MM.SS/... (UTC, one directory per
recovery point, Samba shadow_copy2 names) and MOUNTPOINT/<source>/latest, a symlink to
the newest point. New points appear and forgotten ones disappear while it stays mounted.
Owners, modes, times, hard links and xattrs are as backed up; access is checked against
them (default_permissions). Unmount with 'recall umount MOUNTPOINT'.

Sources of protection groups with end-user recovery off ('recall group edit NAME
--end-user-recovery off') are left out of the tree, and so out of its shares; a change
of that policy shows within a second or two, without a remount. A file already open
in a source that is then left out keeps reading until it is closed. --all-sources shows
every source (an administrator's mount: do not share it), and --point mounts the point
it names whatever its group's policy: both are acts of an administrator, not views
for end users.

A dead mount left by a killed server at MOUNTPOINT is cleaned up first. A MOUNTPOINT
that is not empty is refused (the tree would hide what it holds) unless --nonempty.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "point", Usage: "mount only this recovery point's root (`POINT`: id, unique id prefix or \"latest\")"},
			&cli.StringFlag{Name: "source", Usage: "data source `NAME` that --point belongs to"},
			&cli.BoolFlag{Name: "all-sources", Usage: "show the sources of groups with end-user recovery off too (an administrator's mount)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users (and Samba) use the mount; access still follows the backed-up owners and modes"},
			&cli.BoolFlag{Name: "foreground", Usage: "serve in this process until unmounted or interrupted"},
			&cli.BoolFlag{Name: "nonempty", Usage: "mount on a directory that is not empty, hiding what it holds until unmounted"},
			&cli.StringFlag{Name: "cache-size", Value: "256MiB", Usage: "memory for decoded chunks (`SIZE`, e.g. 1GiB)"},
			&cli.StringFlag{Name: "log-file", Usage: "where a background server logs (`FILE`; default HOME/logs/mount.log)"},
			&cli.BoolFlag{Name: "json", Usage: "print the running mount as JSON"},
			&cli.BoolFlag{Name: "debug", Hidden: true, Usage: "log every FUSE request"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("mount needs exactly one MOUNTPOINT")
			}
			cacheBytes, err := parseSize(c.String("cache-size"))
			if err != nil {
				return usagef("--cache-size: %v", err)
			}
			mnt, err := fs.MountPath(c.Args().First())
			if err != nil {
				return fmt.Errorf("mount point: %w", err)
			}
			if err := mountHidesHome(mnt, c.String("home"), storeDir(c)); err != nil {
				return err
			}
			if c.Bool("foreground") {
				return mountForeground(c, mnt, cacheBytes, readyReporter())
			}
			return mountBackground(c, mnt)
		},
	})
}

// prepareMountpoint cleans a dead mount left at mnt and checks that mnt
// is a directory with nothing live mounted on it, and empty unless
// nonempty: a tree mounted over files hides them, without a word, from
// whoever looks there next.
func prepareMountpoint(mnt string, nonempty bool, log func(string, ...any)) error {
	cleaned, err := fs.CleanDeadMount(mnt)
	if err != nil {
		return err
	}
	if cleaned {
		log("cleaned up the dead mount at %s (its server had stopped)", mnt)
	}
	if m, ok, err := fs.FindMount(mnt); err == nil && ok {
		if m.FSType == fs.FSType {
			return fmt.Errorf("%s: %w (recall mount of %s); run 'recall umount %s' first", mnt, fs.ErrMounted, m.Source, mnt)
		}
		return fmt.Errorf("%s: %w (%s); unmount it first", mnt, fs.ErrMounted, m.FSType)
	}
	st, err := os.Stat(mnt)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mount point %s does not exist: make it first ('mkdir -p %s'), an empty directory", mnt, mnt)
	}
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", mnt)
	}
	if nonempty {
		return nil
	}
	return checkEmpty(mnt)
}

// mountHidesHome refuses a mount point at or above the home or the
// store, or inside the store: the tree mounted there would hide them from its own server,
// whose next read of the store (or its log, under the home) would go
// through the mount it serves and wait on itself for good, with every
// process that looks there after it.
func mountHidesHome(mnt, home, store string) error {
	for _, d := range []struct{ what, path string }{{"home", home}, {"store", store}} {
		if strings.HasPrefix(d.path, "s3:") {
			continue
		}
		p, err := filepath.Abs(d.path)
		if err != nil {
			continue
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if rel, err := filepath.Rel(mnt, p); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
			return usagef("mount point %s holds the %s %s: the tree mounted there would hide it from the server that reads it; mount somewhere outside %s", mnt, d.what, p, p)
		}
		if rel, err := filepath.Rel(p, mnt); d.what == "store" && err == nil && !strings.HasPrefix(rel, "..") {
			return usagef("mount point %s is inside the store %s: the tree mounted there would hide the store's files from the server that reads them; mount somewhere outside %s", mnt, p, p)
		}
	}
	return nil
}

// checkEmpty refuses a mount point that holds entries, naming a few.
func checkEmpty(mnt string) error {
	d, err := os.Open(mnt)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("mount point %s: list it: %w", mnt, err)
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	shown := strings.Join(names[:min(len(names), 3)], ", ")
	if len(names) > 3 {
		shown += ", ..."
	}
	entries := "entries"
	if len(names) == 1 {
		entries = "entry"
	}
	return fmt.Errorf("mount point %s is not empty (%d %s: %s): the tree would hide them while mounted; empty it or mount elsewhere ('recall mount --nonempty' mounts over them)", mnt, len(names), entries, shown)
}

// resolvePoint finds --point, if given.
func resolvePoint(c *cli.Context, r *engine.Reader) (*engine.Point, error) {
	spec := c.String("point")
	if spec == "" {
		return nil, nil
	}
	return r.FindPoint(spec, c.String("source"))
}

// mountBackground checks what it can here (store, passphrase, --point,
// mount point) so errors keep their exit codes, then starts the server as
// a child in its own session and returns once the child reports the
// mount ready.
func mountBackground(c *cli.Context, mnt string) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	_, err = resolvePoint(c, st.Reader())
	st.Close()
	if err != nil {
		return err
	}
	if err := prepareMountpoint(mnt, c.Bool("nonempty"), logf); err != nil {
		return err
	}
	home, err := filepath.Abs(c.String("home"))
	if err != nil {
		return err
	}
	logPath := c.String("log-file")
	if logPath == "" {
		logPath = filepath.Join(home, "logs", "mount.log")
	}
	if logPath, err = filepath.Abs(logPath); err != nil {
		return err
	}
	// hint is for a home that cannot be written (a read-only mount of a
	// copy, another user's): the mount itself only reads.
	hint := func(err error) string {
		if c.IsSet("log-file") || !errors.Is(err, os.ErrPermission) && !errors.Is(err, syscall.EROFS) {
			return ""
		}
		return ": the home cannot be written; give --log-file FILE elsewhere, or run with --foreground"
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return fmt.Errorf("log directory: %w%s", err, hint(err))
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w%s", err, hint(err))
	}
	defer logFile.Close()
	args := append([]string{"--home", home}, storeArgs(c)...)
	if pf := c.String("password-file"); pf != "" {
		if pf, err = filepath.Abs(pf); err != nil {
			return err
		}
		args = append(args, "--password-file", pf)
	}
	args = append(args, "mount", "--foreground", "--cache-size", c.String("cache-size"), "--log-file", logPath)
	for _, f := range []string{"point", "source"} {
		if v := c.String(f); v != "" {
			args = append(args, "--"+f, v)
		}
	}
	for _, f := range []string{"all-sources", "allow-other", "nonempty", "debug"} {
		if c.Bool(f) {
			args = append(args, "--"+f)
		}
	}
	args = append(args, "--", mnt)

	cmd, err := startMountServer(c.Context, args, logFile, &syscall.SysProcAttr{Setsid: true}, resolved)
	if err != nil {
		if errors.Is(err, errMountServerEnded) {
			return fmt.Errorf("%w; see %s", err, logPath)
		}
		return err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if c.Bool("json") {
		return printJSON(c, mountJSON{Home: home, Mountpoint: mnt, PID: pid, Log: logPath})
	}
	if c.Bool("quiet") {
		return nil
	}
	fmt.Fprintf(c.App.Writer, "mounted %s at %s (server pid %d, log %s)\n", home, mnt, pid, logPath)
	return nil
}

// errMountServerEnded: the mount server exited before it said whether
// the mount is ready; its log says why.
var errMountServerEnded = errors.New("mount server exited before the mount was ready")

// startMountServer starts this program with args (a mount --foreground),
// its output to out, and returns once it reports the mount ready: the
// started command, which the caller waits for or releases. The
// passphrase, if not "", goes to it through a pipe. An error the
// server reports is a *mountServerError. When ctx ends first the server
// is told to stop.
func startMountServer(ctx context.Context, args []string, out *os.File, attr *syscall.SysProcAttr, passphrase string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(self, args...)
	cmd.Env = append(mountServerEnv(os.Environ()), readyFDEnv+"=3")
	cmd.Dir = "/"
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.ExtraFiles = []*os.File{pw}
	closePassword, err := handPassword(cmd, passphrase)
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer closePassword()
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start mount server: %w", err)
	}
	pw.Close()
	msg := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		msg <- strings.TrimSpace(line)
	}()
	var line string
	select {
	case line = <-msg:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		return nil, ctx.Err()
	}
	switch {
	case line == "ready":
		return cmd, nil
	case strings.HasPrefix(line, "error: "):
		return nil, newMountServerError(strings.TrimPrefix(line, "error: "), cmd.Wait())
	}
	cmd.Wait()
	return nil, errMountServerEnded
}

// secretEnv are the variables a mount server is started without. It
// gets the passphrase on a pipe (handPassword), and only at its start: a
// long-lived server holding the passphrase, or the command that prints
// it, in its environment would show it in /proc/PID/environ for as long as
// it runs. RECALL_PASSWORD_FILE goes too: the server reads no passphrase
// source of its own (the `recall serve` that restarts one reads its own
// again, mountPassphrase), and a relative file would be read from "/".
// RECALL_SMB_PASSWORD, the Samba user's, is no business of a mount.
var secretEnv = []string{"RECALL_PASSWORD", "RECALL_PASSWORD_COMMAND", "RECALL_PASSWORD_FILE", smbPasswordEnv}

// mountServerEnv is env less secretEnv: what a mount server needs of its
// parent's environment (the store's credentials, TMPDIR, the holder
// directory...) and nothing that holds or yields the passphrase.
func mountServerEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(secretEnv, name) {
			out = append(out, kv)
		}
	}
	return out
}

// mountServerError is an error a mount server reported on its pipe. Only
// its message crosses the pipe; its exit code (see exitCode) says what
// kind of error it was, so that errors.Is sees a passphrase that does
// not open the store, and the command exits as the server did.
type mountServerError struct {
	msg  string
	kind error // a sentinel, or nil
}

func (e *mountServerError) Error() string { return e.msg }
func (e *mountServerError) Unwrap() error { return e.kind }

// newMountServerError is the error msg of a mount server that ended with
// wait (what cmd.Wait returned).
func newMountServerError(msg string, wait error) error {
	e := &mountServerError{msg: msg}
	var ee *exec.ExitError
	if errors.As(wait, &ee) && ee.ExitCode() == exitAuth {
		e.kind = chunkstore.ErrWrongPassword
		if strings.Contains(msg, chunkstore.ErrNoPassword.Error()) {
			e.kind = chunkstore.ErrNoPassword
		}
	}
	return e
}

// mountJSON is what mount --json prints; scripts rely on these fields.
type mountJSON struct {
	Home       string `json:"home"`
	Mountpoint string `json:"mountpoint"`
	PID        int    `json:"server_pid"`
	Log        string `json:"log"`
}

// readyReporter returns how a foreground server reports readiness: to the
// parent's pipe when started by mountBackground, else nowhere.
func readyReporter() func(error) {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	os.Unsetenv(readyFDEnv)
	if err != nil || fd < 3 {
		return func(error) {}
	}
	f := os.NewFile(uintptr(fd), "ready")
	done := false
	return func(err error) {
		if done {
			return
		}
		done = true
		if err != nil {
			fmt.Fprintf(f, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			io.WriteString(f, "ready\n")
		}
		f.Close()
	}
}

// eurCatalogWait bounds how long the mount's poll waits for a writer of
// the catalog when it reads which sources to leave out; a busy catalog
// keeps the last known set and is read again at the next poll. A listing
// on the mount waits for it only when the catalog file changed since the
// last read, and only if no other request is reading it already.
const eurCatalogWait = time.Second

// mountForeground mounts and serves until the mount goes away or the
// process is told to stop.
func mountForeground(c *cli.Context, mnt string, cacheBytes int64, ready func(error)) (err error) {
	defer func() { ready(err) }()
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s recall mount %s: %s\n", time.Now().Format(time.RFC3339), mnt, fmt.Sprintf(format, args...))
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	r := st.Reader()
	ep, err := resolvePoint(c, r)
	if err != nil {
		return err
	}
	home, _ := filepath.Abs(c.String("home"))
	opts := fs.Options{CacheBytes: cacheBytes, Log: log}
	if ep == nil && !c.Bool("all-sources") {
		opts.Withheld = engine.NewEndUserRecoveryWatch(home, eurCatalogWait).Off
	}
	tree, err := fs.New(fs.NewEngineBackend(r), opts)
	if err != nil {
		return err
	}
	var pt *fs.Point
	if ep != nil {
		if pt = tree.PointByID(ep.ID); pt == nil {
			return fmt.Errorf("point %s: not readable (see %s)", ep.ID.Short(), c.String("log-file"))
		}
	}
	if err := prepareMountpoint(mnt, c.Bool("nonempty"), log); err != nil {
		return err
	}
	srv, err := fs.Mount(mnt, tree, fs.MountOptions{
		AllowOther: c.Bool("allow-other"), Point: pt, FsName: home, Debug: c.Bool("debug"), Log: log,
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || strings.Contains(err.Error(), "allow_other") {
			return fmt.Errorf("%w (as a user, --allow-other needs user_allow_other in /etc/fuse.conf)", err)
		}
		return err
	}
	what := "the recovery points of sources with end-user recovery on"
	if opts.Withheld == nil {
		what = "all recovery points"
	}
	if pt != nil {
		what = "point " + pt.String()
	}
	log("serving %s of %s (pid %d)", what, home, os.Getpid())
	ready(nil)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	go srv.Watch(c.Context, time.Second)
	select {
	case <-done:
		log("unmounted; exiting")
		return nil
	case <-c.Context.Done():
	}
	if err := srv.Unmount(); err != nil {
		// Busy: detach now and keep serving open files until they close.
		log("%s", busyUnmountLine(err))
		if err := fs.Unmount(mnt, true); err != nil {
			log("lazy unmount: %v", err)
		}
	}
	<-done
	log("unmounted; exiting")
	return nil
}

// busyUnmountLine is the log line of an unmount that failed, on one
// line: go-fuse's error holds fusermount's output with its newlines,
// which the server's log split into three entries.
func busyUnmountLine(err error) string {
	return "unmount: " + strings.Join(strings.Fields(err.Error()), " ") + "; detaching lazily and serving open files until they are closed"
}
