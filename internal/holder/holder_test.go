package holder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/internal/testchild"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/recall-backup/recall/internal/testskip"
	"golang.org/x/sys/unix"
)

const childEnv = "RECALL_HOLDER_TEST_DIR"

// TestMain points Default at a directory of the test's own, never the
// machine's.
func TestMain(m *testing.M) {
	if os.Getenv(DirEnv) != "" {
		// A holder process a test started (its parent's directory), or a
		// run told which to use.
		os.Exit(m.Run())
	}
	tmp, err := os.MkdirTemp("", "recall-holder-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv(DirEnv, filepath.Join(tmp, "holders"))
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// TestHolderChild is a holder in a process of its own, run by child: it
// opens the directory its environment names, prints its token and holds
// its file until its stdin closes or it is killed. It does nothing in a
// test run.
func TestHolderChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		return
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", d.Token())
	io.Copy(io.Discard, os.Stdin)
}

// child starts a holder of dir in another process and returns it with its
// token once its file is flocked.
func child(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd, line := testchild.Start(t, "TestHolderChild", childEnv+"="+dir)
	return cmd, string(line)
}

func open(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// A holder in another process is alive while it runs, dead once killed
// (waited for, or still a zombie), to every judge that asks, however
// often (a holder leaves several locks); this process is never dead to
// itself.
func TestDead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "recall", "holders")
	d := open(t, dir)
	if !validToken(d.Token()) {
		t.Fatalf("token %q is not 16 hex digits", d.Token())
	}
	if d.Dead(d.Token()) {
		t.Error("this process is dead to itself")
	}
	for _, reap := range []bool{true, false} {
		cmd, tok := child(t, dir)
		file := filepath.Join(dir, tok+suffix)
		if !exists(file) {
			t.Fatalf("the holder's file %s is missing", file)
		}
		if d.Dead(tok) {
			t.Fatalf("a running holder is dead")
		}
		if !exists(file) {
			t.Fatal("a running holder's file was removed")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		if reap {
			cmd.Wait()
		} else {
			// A zombie: exited, not waited for, as a recall killed with
			// -9 stays until its parent waits.
			var si unix.Siginfo
			if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
				t.Fatal(err)
			}
		}
		if !d.Dead(tok) {
			t.Fatalf("a killed holder (reaped: %v) is alive", reap)
		}
		if !d.Dead(tok) {
			t.Error("a dead holder is alive when asked again")
		}
		// Another process's judge, which opens the directory (and
		// sweeps it) after the first judged the holder.
		other := open(t, dir)
		if !other.Dead(tok) {
			t.Error("a dead holder is alive to a second judge")
		}
		if !exists(file) {
			t.Errorf("a dead holder's file %s went at once", file)
		}
	}
}

// Tokens come from a server: anything but 16 hex digits naming a regular
// file of ours in the directory is alive, and nothing is opened or
// removed elsewhere.
func TestDeadHostileTokens(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "recall", "holders")
	d := open(t, dir)
	// Unlocked files a careless judge would find "dead", mark or remove.
	outside := filepath.Join(root, "recall", "0123456789abcdef.lock")
	target := filepath.Join(root, "target")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, p := range []string{outside, target, filepath.Join(root, "x.lock")} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		must(t, os.Chtimes(p, old, old))
	}
	link := "1111111111111111"
	if err := os.Symlink(target, filepath.Join(dir, link+suffix)); err != nil {
		t.Fatal(err)
	}
	// Another user's file (only root can give one away).
	notMine := "2222222222222222"
	if os.Geteuid() == 0 {
		if err := os.WriteFile(filepath.Join(dir, notMine+suffix), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, notMine+suffix), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	subdir := "3333333333333333"
	if err := os.Mkdir(filepath.Join(dir, subdir+suffix), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"../0123456789abcdef", "../../x", "..", "", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg",
		link, notMine, subdir, "4444444444444444"} {
		if d.Dead(tok) {
			t.Errorf("token %q is dead", tok)
		}
	}
	for _, p := range []string{outside, target, filepath.Join(root, "x.lock"), filepath.Join(dir, link+suffix), filepath.Join(dir, notMine+suffix), filepath.Join(dir, subdir+suffix)} {
		if p == filepath.Join(dir, notMine+suffix) && os.Geteuid() != 0 {
			continue
		}
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	for _, p := range []string{outside, target, filepath.Join(root, "x.lock")} {
		st, err := os.Stat(p)
		if err != nil || st.Size() != 0 || !st.ModTime().Equal(old) {
			t.Errorf("%s: %v, want left as it was (empty, modified %v)", p, err, old)
			continue
		}
	}
}

// A directory others could write to, or not ours, or a symbolic link, gives
// no token; Open of a fresh directory makes it 0700.
func TestOpenRefuses(t *testing.T) {
	root := t.TempDir()
	fresh := filepath.Join(root, "fresh", "holders")
	open(t, fresh)
	for _, p := range []string{fresh, filepath.Dir(fresh)} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v, want mode 0700", p, st.Mode(), err)
		}
	}
	mk := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(root, name, "holders")
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type refusal struct{ name, dir string }
	cases := []refusal{
		{"world-writable", mk("world", 0o777, os.Geteuid())},
		{"group-writable", mk("group", 0o770, os.Geteuid())},
		{"sticky and world-writable", mk("sticky", os.ModeSticky|0o777, os.Geteuid())},
		{"under a world-writable parent", func() string {
			p := filepath.Join(root, "parent", "holders")
			os.MkdirAll(p, 0o700)
			os.Chmod(filepath.Dir(p), 0o777)
			return p
		}()},
		{"a symbolic link", func() string {
			p := filepath.Join(root, "link")
			os.Mkdir(p, 0o700)
			os.Symlink(fresh, filepath.Join(p, "holders"))
			return filepath.Join(p, "holders")
		}()},
	}
	if os.Geteuid() == 0 { // only root can give a directory away
		cases = append(cases, refusal{"another user's", mk("other", 0o700, 65534)})
	}
	for _, tc := range cases {
		d, err := Open(tc.dir)
		if err == nil {
			d.Close()
			t.Errorf("%s directory: opened, token %s", tc.name, d.Token())
			continue
		}
		if tc.name != "a symbolic link" && !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s directory: %v, want %v", tc.name, err, ErrUnsafe)
		}
		ents, _ := os.ReadDir(tc.dir)
		if tc.name != "a symbolic link" && len(ents) != 0 {
			t.Errorf("%s directory: %d files made in it", tc.name, len(ents))
		}
	}
}

// Opening marks the files of holders gone and removes those found gone
// longer than Retain ago; it leaves those of holders alive, however old.
func TestOpenSweeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "holders")
	_, live := child(t, dir)
	cmd, longGone := child(t, dir)
	cmd.Process.Kill()
	cmd.Wait()
	// The last to open the directory: nothing has found it gone yet.
	cmd, gone := child(t, dir)
	cmd.Process.Kill()
	cmd.Wait()
	file := func(tok string) string { return filepath.Join(dir, tok+suffix) }
	// Old files all: a holder's file keeps the time it was made until it
	// is found gone, so age alone says nothing of a holder.
	long := time.Now().Add(-2 * Retain)
	for _, tok := range []string{live, gone, longGone} {
		must(t, os.Chtimes(file(tok), long, long))
	}
	// longGone was found gone long ago: marked then.
	must(t, os.WriteFile(file(longGone), []byte{'x'}, 0o600))
	must(t, os.Chtimes(file(longGone), long, long))

	d := open(t, dir)
	if !exists(file(live)) {
		t.Error("a live holder's file was swept")
	}
	if !exists(file(gone)) {
		t.Error("the file of a holder just found gone was swept")
	}
	if exists(file(longGone)) {
		t.Errorf("the file of a holder found gone more than %v ago stays", Retain)
	}
	if !exists(file(d.Token())) {
		t.Error("our own file is missing")
	}
	if !d.Dead(gone) || d.Dead(live) || d.Dead(longGone) {
		t.Errorf("after the sweep: dead %v, %v, %v; want true (gone), false (live), false (its file removed)", d.Dead(gone), d.Dead(live), d.Dead(longGone))
	}
	// Found gone now, so the next sweep keeps it.
	open(t, dir)
	if !exists(file(gone)) {
		t.Error("the file of a holder found gone a moment ago was swept by a later open")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The runtime directory is the first candidate that can be made and is
// safe; with none, no token (the process's locks are judged by staleness
// alone). The default is one of the candidates and keeps its token.
func TestFirst(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	must(t, os.WriteFile(file, nil, 0o600))
	open := filepath.Join(root, "open")
	must(t, os.Mkdir(open, 0o777))
	must(t, os.Chmod(open, 0o777))
	good := filepath.Join(root, "good", "holders")
	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"the first", []string{good, filepath.Join(root, "second", "holders")}, good},
		{"past one that cannot be made", []string{filepath.Join(file, "holders"), good}, good},
		{"past one others may write", []string{filepath.Join(open, "holders"), good}, good},
		{"none safe", []string{filepath.Join(open, "holders"), filepath.Join(file, "holders")}, ""},
	} {
		d := first(tc.paths)
		got := ""
		if d != nil {
			got = d.Path()
			if !validToken(d.Token()) {
				t.Errorf("%s: token %q", tc.name, d.Token())
			}
			d.Close()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	d := Default()
	if d == nil || Default() != d || Token() != d.Token() || !slices.Contains(candidates(), d.Path()) {
		t.Errorf("default %v, want one directory of %q, kept", d, candidates())
	}
}

// RECALL_HOLDER_DIR, absolute, is the only candidate; else the runtime
// directories are tried.
func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"/srv/holders", []string{"/srv/holders"}},
		{"relative/holders", nil},
		{"", nil},
	} {
		t.Setenv(DirEnv, tc.env)
		t.Setenv("XDG_RUNTIME_DIR", "")
		got := candidates()
		if tc.want == nil {
			if len(got) != 2 || got[0] != "/run/recall/holders" {
				t.Errorf("%s=%q: %q, want /run/recall/holders and the temp directory", DirEnv, tc.env, got)
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s=%q: %q, want %q", DirEnv, tc.env, got, tc.want)
		}
	}
}

// Judges of one dead holder, at once, in this process and another
// directory's, all find it dead: none takes another judge for the holder.
func TestDeadConcurrentJudges(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "holders")
	judges := []*Dir{open(t, dir), open(t, dir)}
	cmd, tok := child(t, dir)
	cmd.Process.Kill()
	cmd.Wait()
	const goroutines, rounds = 8, 100
	var alive atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if !judges[g%len(judges)].Dead(tok) {
					alive.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := alive.Load(); n != 0 {
		t.Errorf("a dead holder judged alive %d times of %d", n, goroutines*rounds)
	}
	if !exists(filepath.Join(dir, tok+suffix)) {
		t.Error("the dead holder's file went at once")
	}
}

// The token is "" once the process no longer holds its file: its
// descriptor closed behind the Dir's back, or the file at its name
// removed or replaced.
func TestTokenHeld(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(d *Dir, file string)
	}{
		{"descriptor closed", func(d *Dir, _ string) { unix.Close(d.own) }},
		{"file removed", func(_ *Dir, file string) { must(t, os.Remove(file)) }},
		{"file replaced", func(_ *Dir, file string) {
			must(t, os.Remove(file))
			must(t, os.WriteFile(file, nil, 0o600))
		}},
	} {
		dir := filepath.Join(t.TempDir(), "holders")
		d, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		tok := d.Token()
		if !validToken(tok) {
			t.Fatalf("%s: token %q before", tc.name, tok)
		}
		tc.spoil(d, filepath.Join(dir, tok+suffix))
		if got := d.Token(); got != "" {
			t.Errorf("%s: token %q, want none", tc.name, got)
		}
		if tc.name != "descriptor closed" {
			d.Close()
		}
	}
}

// Closing the default Dir does nothing: the process keeps its token and
// holds its file, alive to every judge.
func TestDefaultCloseKeeps(t *testing.T) {
	d := Default()
	if d == nil {
		t.Fatalf("no default directory of %q", candidates())
	}
	tok := d.Token()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if Token() != tok || tok == "" {
		t.Errorf("token after Close of the default: %q, want %q", Token(), tok)
	}
	if open(t, d.Path()).Dead(tok) {
		t.Error("this process is dead to another judge after Close of the default")
	}
}

// A directory on a network or user-space file system is refused: flock
// there does not tell what this kernel's processes hold.
func TestOpenRefusesRemoteFS(t *testing.T) {
	real := fsType
	t.Cleanup(func() { fsType = real })
	for _, tc := range []struct {
		name  string
		magic uint32
		ok    bool
	}{
		{"ext4", unix.EXT4_SUPER_MAGIC, true},
		{"tmpfs", unix.TMPFS_MAGIC, true},
		{"xfs", unix.XFS_SUPER_MAGIC, true},
		{"btrfs", unix.BTRFS_SUPER_MAGIC, true},
		{"NFS", unix.NFS_SUPER_MAGIC, false},
		{"CIFS", unix.CIFS_SUPER_MAGIC, false},
		{"SMB2", unix.SMB2_SUPER_MAGIC, false},
		{"FUSE", unix.FUSE_SUPER_MAGIC, false},
		{"9p", unix.V9FS_MAGIC, false},
		{"Ceph", unix.CEPH_SUPER_MAGIC, false},
		{"AFS", unix.AFS_FS_MAGIC, false},
		{"Lustre", lustreMagic, false},
		{"GPFS", gpfsMagic, false},
	} {
		fsType = func(int) (uint32, error) { return tc.magic, nil }
		dir := filepath.Join(t.TempDir(), "holders")
		d, err := Open(dir)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else {
				d.Close()
			}
			continue
		}
		if err == nil {
			d.Close()
			t.Errorf("%s: opened, token %s", tc.name, d.Token())
			continue
		}
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: %v, want %v naming the file system", tc.name, err, ErrUnsafe)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: %d files made in it", tc.name, len(ents))
		}
	}
}

// The same on a real FUSE mount: a loopback of a local directory, whose
// files are ours and 0700, refused for its file system alone.
func TestOpenRefusesFUSE(t *testing.T) {
	if os.Geteuid() != 0 {
		testskip.Skip(t, "mounting FUSE needs root")
	}
	back, mnt := t.TempDir(), t.TempDir()
	must(t, os.Mkdir(filepath.Join(back, "holders"), 0o700))
	root, err := fusefs.NewLoopbackRoot(back)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(mnt, root, &fusefs.Options{MountOptions: fuse.MountOptions{DirectMount: true}})
	if err != nil {
		testskip.Skip(t, "mount FUSE: %v", err)
	}
	t.Cleanup(func() { srv.Unmount() })
	if st, err := os.Stat(filepath.Join(mnt, "holders")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("the loopback's directory: %v, %v", st, err)
	}
	d, err := Open(filepath.Join(mnt, "holders"))
	if err == nil {
		d.Close()
		t.Fatalf("a directory on FUSE: opened, token %s", d.Token())
	}
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "FUSE") {
		t.Errorf("a directory on FUSE: %v, want %v naming FUSE", err, ErrUnsafe)
	}
}
