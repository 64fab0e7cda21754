package integration

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireFUSE skips (fails under RECALL_TEST_DISALLOW_SKIP=1) without root
// and /dev/fuse.
func requireFUSE(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		skip(t, "no /dev/fuse: %v", err)
	}
}

// mountInfo is a running `recall mount`.
type mountInfo struct {
	dir string
	pid int
}

var pidRE = regexp.MustCompile(`server pid (\d+)`)

// mount runs `recall mount ARGS... DIR` and unmounts at the end of the test.
func (e *env) mount(dir string, args ...string) *mountInfo {
	e.t.Helper()
	out := e.ok(append(append([]string{"mount"}, args...), dir)...)
	m := pidRE.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("mount printed no server pid: %q", out)
	}
	pid, _ := strconv.Atoi(m[1])
	mi := &mountInfo{dir: dir, pid: pid}
	e.t.Cleanup(func() { mi.stop(e) })
	return mi
}

// stop unmounts (lazily) and makes sure the server is gone.
func (m *mountInfo) stop(e *env) {
	e.run("umount", "--lazy", m.dir)
	for i := 0; i < 50 && alive(m.pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(m.pid) {
		syscall.Kill(m.pid, syscall.SIGKILL)
	}
	unix.Unmount(m.dir, unix.MNT_DETACH)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// mustWrite writes a file and gives it mode: raw chmod(2) bits, setuid
// (04000), setgid (02000) and sticky (01000) included.
func mustWrite(t *testing.T, path string, data []byte, mode uint32) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	setMode(t, path, mode)
}

// setMode sets raw mode bits and checks they hold. os.Chmod would drop
// the special bits of a raw 0o4755 (it wants os.ModeSetuid and kin), and
// a fixture that silently lacks them tests nothing.
func setMode(t *testing.T, path string, mode uint32) {
	t.Helper()
	if err := unix.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != mode {
		t.Fatalf("%s: mode %#o after chmod %#o", path, st.Mode&0o7777, mode)
	}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// pointDirs lists the @GMT directories of a source in a mount, oldest first.
func pointDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	check(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "@GMT-") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeRichTree fills dir with what a restore must get exactly right.
func makeRichTree(t *testing.T, dir string) {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "empty"), nil, 0o644)
	mustWrite(t, filepath.Join(dir, "small.txt"), []byte("hello, recall\n"), 0o644)
	mustWrite(t, filepath.Join(dir, "big.bin"), randBytes(1, 5<<20+12345), 0o640)
	mustWrite(t, filepath.Join(dir, "name with spaces ü.txt"), []byte("unicode"), 0o644)
	mustWrite(t, filepath.Join(dir, "setuid"), []byte("#!/bin/sh\n"), 0o4755)
	mustWrite(t, filepath.Join(dir, "setgid"), []byte("#!/bin/sh\n"), 0o2711)
	check(t, os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	setMode(t, filepath.Join(dir, "sticky"), 0o1777)
	check(t, os.Mkdir(filepath.Join(dir, "shared"), 0o755))
	setMode(t, filepath.Join(dir, "shared"), 0o2775)
	mustWrite(t, filepath.Join(dir, "private/secret"), []byte("only owner"), 0o600)
	check(t, os.Chmod(filepath.Join(dir, "private"), 0o700))
	check(t, os.Chown(filepath.Join(dir, "private"), 1234, 1234))
	check(t, os.Chown(filepath.Join(dir, "private/secret"), 1234, 5678))
	mustWrite(t, filepath.Join(dir, "deep/a/b/c/leaf"), []byte("leaf"), 0o444)
	check(t, os.Chmod(filepath.Join(dir, "deep/a"), 0o751))
	check(t, os.Link(filepath.Join(dir, "small.txt"), filepath.Join(dir, "deep/hardlink")))
	check(t, os.Link(filepath.Join(dir, "small.txt"), filepath.Join(dir, "deep/a/hardlink2")))
	check(t, os.Symlink("../small.txt", filepath.Join(dir, "deep/rel-link")))
	check(t, os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	check(t, unix.Lsetxattr(filepath.Join(dir, "small.txt"), "user.comment", []byte("kept"), 0))
	check(t, unix.Lsetxattr(filepath.Join(dir, "deep"), "user.dir", []byte("dir xattr"), 0))
	// POSIX ACLs, when the tools are there (make test installs them).
	if setfacl, err := exec.LookPath("setfacl"); err == nil {
		mustWrite(t, filepath.Join(dir, "acl.txt"), []byte("acl"), 0o640)
		if b, err := exec.Command(setfacl, "-m", "u:1234:rw,g:5678:r", filepath.Join(dir, "acl.txt")).CombinedOutput(); err != nil {
			t.Fatalf("setfacl: %v %s", err, b)
		}
		if b, err := exec.Command(setfacl, "-d", "-m", "u:1234:rwx", filepath.Join(dir, "deep")).CombinedOutput(); err != nil {
			t.Fatalf("setfacl -d: %v %s", err, b)
		}
	}
	// A sparse file.
	f, err := os.Create(filepath.Join(dir, "sparse.img"))
	check(t, err)
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("end"), 8<<20)
	f.Close()
	// Specials live in their own directory: diff -r would open a fifo.
	check(t, os.MkdirAll(filepath.Join(dir, "special"), 0o755))
	check(t, unix.Mkfifo(filepath.Join(dir, "special/fifo"), 0o640))
	check(t, unix.Mknod(filepath.Join(dir, "special/null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	// Times with nanoseconds, set last (children change directory mtimes).
	when := time.Date(2011, 3, 4, 5, 6, 7, 891011121, time.UTC)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		when = when.Add(time.Second + 7)
		return nil
	})
}

// fileMeta is what must match between a source and its copy.
type fileMeta struct {
	mode     uint32
	uid, gid uint32
	size     int64 // regular files and symlinks
	mtime    int64
	nlink    uint64 // non-directories
	rdev     uint64
	target   string
	xattrs   string
	linkPeer string // first path sharing this inode, for hard links
}

// walkMeta collects metadata of every entry under root, keyed by path.
func walkMeta(t *testing.T, root string) map[string]fileMeta {
	t.Helper()
	out := map[string]fileMeta{}
	inos := map[uint64]string{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		m := fileMeta{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), rdev: st.Rdev}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			m.target, _ = os.Readlink(p)
			m.size = st.Size
			m.nlink = uint64(st.Nlink)
		default:
			m.size = st.Size
			m.nlink = uint64(st.Nlink)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := inos[st.Ino]; ok {
				m.linkPeer = first
			} else {
				inos[st.Ino] = rel
				m.linkPeer = rel
			}
		}
		buf := make([]byte, 4096)
		n, _ := unix.Llistxattr(p, buf)
		var xs []string
		for _, name := range strings.Split(string(buf[:max(n, 0)]), "\x00") {
			if name == "" || strings.HasPrefix(name, "security.") {
				continue
			}
			v := make([]byte, 4096)
			k, _ := unix.Lgetxattr(p, name, v)
			xs = append(xs, name+"="+string(v[:max(k, 0)]))
		}
		sort.Strings(xs)
		m.xattrs = strings.Join(xs, ",")
		out[rel] = m
		return nil
	})
	check(t, err)
	return out
}

func compareMeta(t *testing.T, what string, want, got map[string]fileMeta, skipRoot bool) {
	t.Helper()
	for p, w := range want {
		if skipRoot && p == "." {
			continue
		}
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", what, p)
			continue
		}
		if g != w {
			t.Errorf("%s: %s differs:\n got  %+v\n want %+v", what, p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: extra %s", what, p)
		}
	}
}

// mountEnv is the start of most mount tests: FUSE is there, a store is
// initialised, and src is a path for the live data (not created yet).
func mountEnv(t *testing.T) (e *env, src string) {
	t.Helper()
	requireFUSE(t)
	e = newEnv(t)
	e.ok("init")
	return e, filepath.Join(t.TempDir(), "data")
}

func TestMountBrowseCopyDiff(t *testing.T) {
	e, src := mountEnv(t)
	makeRichTree(t, src)
	e.ok("backup", "--source", "data", src)
	mnt := t.TempDir()
	e.mount(mnt)

	// Browse.
	pts := pointDirs(t, filepath.Join(mnt, "data"))
	if len(pts) != 1 {
		t.Fatalf("points %v", pts)
	}
	latest := filepath.Join(mnt, "data", "latest")
	if target, err := os.Readlink(latest); err != nil || target != pts[0] {
		t.Fatalf("latest -> %q, %v", target, err)
	}
	// The mount shows the source exactly, metadata included (the root's
	// own nlink is not recorded; directory sizes are not kept).
	compareMeta(t, "mount", walkMeta(t, src), walkMeta(t, latest+"/"), false)

	// cp -a out, then diff -r and compare metadata again.
	out := filepath.Join(t.TempDir(), "copy")
	if b, err := exec.Command("cp", "-a", latest+"/.", out).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, b)
	}
	if b, err := exec.Command("diff", "-r", "--no-dereference", "-x", "special", src, out).CombinedOutput(); err != nil {
		t.Fatalf("diff -r: %v\n%s", err, b)
	}
	compareMeta(t, "cp -a copy", walkMeta(t, src), walkMeta(t, out), true)
	// Inode numbers differ from the live files'.
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(src, "small.txt"), &a)
	unix.Stat(filepath.Join(latest, "small.txt"), &b)
	if a.Ino == b.Ino {
		t.Error("mount reuses the live file's inode number")
	}
}

func TestMountNewPointAppearsAndLatestMoves(t *testing.T) {
	e, src := mountEnv(t)
	mustWrite(t, filepath.Join(src, "f.txt"), []byte("version 1"), 0o644)
	e.ok("backup", "--source", "data", src)
	mnt := t.TempDir()
	e.mount(mnt)
	dir := filepath.Join(mnt, "data")
	first := pointDirs(t, dir)
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f.txt")); string(b) != "version 1" {
		t.Fatalf("latest/f.txt = %q", b)
	}
	mustWrite(t, filepath.Join(src, "f.txt"), []byte("version two"), 0o644)
	e.ok("backup", "--source", "data", src)
	// Visible at once: `recall backup && cat <mnt>/<src>/latest/...` works.
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f.txt")); string(b) != "version two" {
		t.Fatalf("latest/f.txt after a new backup = %q", b)
	}
	pts := pointDirs(t, dir)
	if len(pts) != 2 || pts[0] != first[0] {
		t.Fatalf("points %v (before %v)", pts, first)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "latest")); target != pts[1] {
		t.Fatalf("latest -> %q, want %q", target, pts[1])
	}
	if b, _ := os.ReadFile(filepath.Join(dir, pts[0], "f.txt")); string(b) != "version 1" {
		t.Fatalf("old point's f.txt = %q", b)
	}
	// The same store under another spelling of its home (a symlink) is
	// recognised as the mounted one: latest moves at once too.
	link := filepath.Join(t.TempDir(), "home-link")
	check(t, os.Symlink(e.home, link))
	e2 := &env{t: t, home: link, vars: e.vars}
	mustWrite(t, filepath.Join(src, "f.txt"), []byte("version 3"), 0o644)
	e2.ok("backup", "--source", "data", src)
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f.txt")); string(b) != "version 3" {
		t.Fatalf("latest/f.txt after a backup through a symlinked home = %q", b)
	}
	// Forgetting the newest point moves latest back at once.
	e.ok("forget", "--source", "data", "latest")
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f.txt")); string(b) != "version two" {
		t.Fatalf("latest/f.txt after forgetting the newest point = %q", b)
	}
	// A backup of another source adds a directory to the root.
	e.ok("backup", "--source", "other", src)
	waitFor(t, "new source", func() bool { _, err := os.Stat(filepath.Join(mnt, "other", "latest", "f.txt")); return err == nil })
}

func TestForgetWhileFileOpen(t *testing.T) {
	e, src := mountEnv(t)
	content := randBytes(3, 3<<20)
	mustWrite(t, filepath.Join(src, "f.bin"), content, 0o644)
	out := e.ok("backup", "--json", "--source", "data", src)
	id := regexp.MustCompile(`"id":"([0-9a-f]+)"`).FindStringSubmatch(out)[1]
	mustWrite(t, filepath.Join(src, "g"), []byte("x"), 0o644)
	e.ok("backup", "--source", "data", src)
	mnt := t.TempDir()
	e.mount(mnt)
	dir := filepath.Join(mnt, "data")
	pts := pointDirs(t, dir)
	f, err := os.Open(filepath.Join(dir, pts[0], "f.bin"))
	check(t, err)
	defer f.Close()
	head := make([]byte, 1000)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, content[:1000]) {
		t.Fatalf("read before forget: %v", err)
	}
	got := e.ok("forget", id[:12])
	if !strings.Contains(got, pts[0]) {
		t.Errorf("forget output does not say where the point was: %q", got)
	}
	waitFor(t, "forgotten point to leave the tree", func() bool { return len(pointDirs(t, dir)) == 1 })
	// The kernel may have cached the name; it is told to drop it.
	waitFor(t, "forgotten point to be gone", func() bool {
		_, err := os.Stat(filepath.Join(dir, pts[0]))
		return errors.Is(err, os.ErrNotExist)
	})
	// The open file keeps reading the exact bytes (or fails; never others).
	rest := make([]byte, len(content))
	n, err := f.ReadAt(rest, 0)
	if err != nil && n != len(content) {
		t.Fatalf("read after forget: %d bytes, %v", n, err)
	}
	if !bytes.Equal(rest[:n], content[:n]) {
		t.Fatal("open file of a forgotten point returned wrong bytes")
	}
	if r := e.run("forget", id[:12]); r.code == 0 {
		t.Fatal("forgetting a forgotten point succeeded")
	}
}

func TestMountCorruptChunkGivesEIO(t *testing.T) {
	e, src := mountEnv(t)
	bad := randBytes(4, 2<<20)
	mustWrite(t, filepath.Join(src, "bad.bin"), bad, 0o644)
	e.ok("backup", "--source", "data", src)
	// The data pack of the first backup holds only bad.bin's chunks.
	packs := map[string]int64{}
	filepath.Walk(filepath.Join(e.home, "store", "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			packs[p] = fi.Size()
		}
		return nil
	})
	var dataPack string
	for p, size := range packs {
		if size > 1<<20 {
			dataPack = p
		}
	}
	if dataPack == "" {
		t.Fatalf("no data pack among %v", packs)
	}
	good := randBytes(5, 2<<20)
	mustWrite(t, filepath.Join(src, "good.bin"), good, 0o644)
	e.ok("backup", "--source", "data", src)
	// Flip bytes in the middle of the first pack's blob data.
	pf, err := os.OpenFile(dataPack, os.O_RDWR, 0)
	check(t, err)
	b := make([]byte, 16)
	pf.ReadAt(b, 4096)
	for i := range b {
		b[i] ^= 0xff
	}
	pf.WriteAt(b, 4096)
	pf.Close()

	mnt := t.TempDir()
	e.mount(mnt)
	dir := filepath.Join(mnt, "data", "latest")
	_, err = os.ReadFile(filepath.Join(dir, "bad.bin"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the damaged file: %v, want EIO", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "good.bin")); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("other file: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(e.home, "logs", "mount.log"))
	pts := pointDirs(t, filepath.Join(mnt, "data"))
	if !strings.Contains(string(log), "data/"+pts[len(pts)-1]+"/bad.bin") {
		t.Fatalf("log does not name point and path:\n%s", log)
	}
}

func TestUmountBusyAndLazy(t *testing.T) {
	e, src := mountEnv(t)
	mustWrite(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	e.ok("backup", "--source", "data", src)
	mnt := t.TempDir()
	m := e.mount(mnt)
	f, err := os.Open(filepath.Join(mnt, "data", "latest", "f"))
	check(t, err)
	r := e.run("umount", mnt)
	if r.code != 7 || !strings.Contains(r.stderr, "busy") || !strings.Contains(r.stderr, "--lazy") {
		t.Fatalf("umount of a busy mount: exit %d, %q", r.code, r.stderr)
	}
	// A mount inside it keeps it busy too, and is named: the open-file
	// advice sent the administrator looking for processes.
	inner := filepath.Join(mnt, "data")
	check(t, syscall.Mount("none", inner, "tmpfs", 0, "size=1m"))
	r = e.run("umount", mnt)
	syscall.Unmount(inner, 0)
	if r.code != 7 || !strings.Contains(r.stderr, inner+" is mounted inside it") {
		t.Fatalf("umount of a mount with one inside it: exit %d, %q", r.code, r.stderr)
	}
	e.ok("umount", "--lazy", mnt)
	// Detached at once; the open file still reads; the server stops once
	// it is closed.
	if _, ok := mountedAt(t, mnt); ok {
		t.Fatal("still mounted after umount --lazy")
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 0); err != nil || b[0] != 'x' {
		t.Fatalf("open file after lazy umount: %v", err)
	}
	f.Close()
	waitFor(t, "server to exit", func() bool { return !alive(m.pid) })
	if r := e.run("umount", mnt); r.code != 7 || !strings.Contains(r.stderr, "nothing is mounted") {
		t.Fatalf("umount of nothing: exit %d, %q", r.code, r.stderr)
	}
}

func mountedAt(t *testing.T, dir string) (string, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	check(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return line, true
		}
	}
	return "", false
}

func TestMountAfterKill9(t *testing.T) {
	e, src := mountEnv(t)
	mustWrite(t, filepath.Join(src, "f"), []byte("still here"), 0o644)
	e.ok("backup", "--source", "data", src)
	mnt := t.TempDir()
	m := e.mount(mnt)
	if _, err := os.Stat(filepath.Join(mnt, "data", "latest", "f")); err != nil {
		t.Fatal(err)
	}
	check(t, syscall.Kill(m.pid, syscall.SIGKILL))
	waitFor(t, "server to die", func() bool { return !alive(m.pid) })
	var sfs unix.Statfs_t
	// Usually ENOTCONN; EIO when a request was in flight as the server died.
	if err := unix.Statfs(mnt, &sfs); err == nil {
		t.Fatal("statfs of the dead mount succeeded")
	}
	e.mount(mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "data", "latest", "f")); err != nil || string(b) != "still here" {
		t.Fatalf("after remount: %q, %v", b, err)
	}
}

func TestMountDuringBackup(t *testing.T) {
	e, src := mountEnv(t)
	mustWrite(t, filepath.Join(src, "f"), []byte("first"), 0o644)
	e.ok("backup", "--source", "data", src)
	for i := 0; i < 8; i++ {
		mustWrite(t, filepath.Join(src, fmt.Sprintf("big%d", i)), randBytes(int64(10+i), 8<<20), 0o644)
	}
	// Start a backup and freeze it while it holds the store's writer lock.
	cmd := e.command("backup", "--source", "data", src)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	check(t, cmd.Start())
	// A backup holds the store lock shared: its holder file is
	// locks/writer.<pid>-<token> (an exclusive holder writes locks/writer).
	waitFor(t, "backup to take the lock", func() bool {
		holders, _ := filepath.Glob(filepath.Join(e.home, "store", "locks", "writer*"))
		for _, h := range holders {
			if b, _ := os.ReadFile(h); bytes.Contains(b, []byte(fmt.Sprintf(`"pid":%d`, cmd.Process.Pid))) {
				return true
			}
		}
		return false
	})
	check(t, cmd.Process.Signal(syscall.SIGSTOP))
	stopped := true
	defer func() {
		if stopped {
			cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	// The mount does not wait for the backup.
	mnt := t.TempDir()
	start := time.Now()
	e.mount(mnt)
	if d := time.Since(start); d > 10*time.Second {
		// Seen once in CI (60 s, cause unknown): keep what the server
		// logged, with timestamps, for whoever meets it next.
		lg, _ := os.ReadFile(filepath.Join(e.home, "logs", "mount.log"))
		t.Fatalf("mount took %v during a backup; server log:\n%s", d, lg)
	}
	dir := filepath.Join(mnt, "data")
	if pts := pointDirs(t, dir); len(pts) != 1 {
		t.Fatalf("points during the backup: %v", pts)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "latest", "f")); err != nil || string(b) != "first" {
		t.Fatalf("reading during the backup: %q, %v", b, err)
	}
	check(t, cmd.Process.Signal(syscall.SIGCONT))
	stopped = false
	if err := cmd.Wait(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	waitFor(t, "the new point", func() bool { return len(pointDirs(t, dir)) == 2 })
	want, _ := os.ReadFile(filepath.Join(src, "big7"))
	if got, err := os.ReadFile(filepath.Join(dir, "latest", "big7")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file of the new point: %v", err)
	}
}

func TestMountSinglePointAndHelperScript(t *testing.T) {
	e, src := mountEnv(t)
	mustWrite(t, filepath.Join(src, "f"), []byte("one"), 0o644)
	out := e.ok("backup", "--json", "--source", "data", src)
	id := regexp.MustCompile(`"id":"([0-9a-f]+)"`).FindStringSubmatch(out)[1]
	mustWrite(t, filepath.Join(src, "f"), []byte("two"), 0o644)
	e.ok("backup", "--source", "data", src)

	// --point mounts one point's root directly.
	mnt := t.TempDir()
	e.mount(mnt, "--point", id[:10])
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "one" {
		t.Fatalf("--point mount: %q, %v", b, err)
	}
	if r := e.run("mount", mnt); r.code != 7 || !strings.Contains(r.stderr, "already mounted") {
		t.Fatalf("second mount on a live mount: exit %d, %q", r.code, r.stderr)
	}

	// mount(8) runs /sbin/mount.recall HOME DIR -o OPTIONS.
	script, err := filepath.Abs("../scripts/mount.recall")
	check(t, err)
	mnt2 := t.TempDir()
	cmd := exec.Command(script, e.home, mnt2, "-o", "rw,allow_other,point=latest,source=data,cache_size=64MiB,nofail,_netdev")
	cmd.Env = append(os.Environ(), "RECALL_BIN="+recallBin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mount.recall: %v\n%s", err, b)
	}
	m := pidRE.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("mount.recall output: %s", b)
	}
	pid, _ := strconv.Atoi(m[1])
	mi := &mountInfo{dir: mnt2, pid: pid}
	t.Cleanup(func() { mi.stop(e) })
	if b, err := os.ReadFile(filepath.Join(mnt2, "f")); err != nil || string(b) != "two" {
		t.Fatalf("mount.recall mount: %q, %v", b, err)
	}
	line, _ := mountedAt(t, mnt2)
	if !strings.Contains(line, "fuse.recall") || !strings.Contains(line, "allow_other") || !strings.Contains(line, " ro,") {
		t.Errorf("mountinfo: %s", line)
	}
}

// asNobody runs argv as uid/gid 65534 and returns its output and error.
func asNobody(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMountEnforcesBackedUpPermissions(t *testing.T) {
	requireFUSE(t)
	setfacl, err := exec.LookPath("setfacl")
	if err != nil {
		skip(t, "setfacl not installed (Debian package acl; `make test` installs it)")
	}
	e := newEnv(t)
	e.ok("init")
	src := filepath.Join(t.TempDir(), "data")
	mustWrite(t, filepath.Join(src, "public"), []byte("public"), 0o644)
	mustWrite(t, filepath.Join(src, "owner-only"), []byte("secret"), 0o600)
	check(t, os.Chown(filepath.Join(src, "owner-only"), 1234, 1234))
	mustWrite(t, filepath.Join(src, "acl-granted"), []byte("granted by acl"), 0o600)
	if b, err := exec.Command(setfacl, "-m", "u:65534:r", filepath.Join(src, "acl-granted")).CombinedOutput(); err != nil {
		skip(t, "setfacl on %s: %v %s", src, err, b)
	}
	mustWrite(t, filepath.Join(src, "closed/inside"), []byte("x"), 0o644)
	check(t, os.Chmod(filepath.Join(src, "closed"), 0o700))
	check(t, os.Chmod(src, 0o755))
	// Others could reach the source at backup time (t.TempDir's are
	// root's alone), so its directory in the tree lets them in.
	openUp(t, filepath.Dir(src))
	e.ok("backup", "--source", "data", src)
	mnt := filepath.Join(t.TempDir(), "mnt")
	check(t, os.Mkdir(mnt, 0o755))
	openUp(t, mnt)
	e.mount(mnt, "--allow-other")
	dir := filepath.Join(mnt, "data", "latest")
	tests := []struct {
		file string
		ok   bool
		want string
	}{
		{"public", true, "public"},
		{"owner-only", false, ""},
		{"acl-granted", true, "granted by acl"},
		{"closed/inside", false, ""},
	}
	for _, tc := range tests {
		out, err := asNobody("cat", filepath.Join(dir, tc.file))
		if tc.ok && (err != nil || out != tc.want) {
			t.Errorf("nobody reading %s: %q, %v", tc.file, out, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(out, "Permission denied")) {
			t.Errorf("nobody read %s: %q, %v", tc.file, out, err)
		}
	}
}
