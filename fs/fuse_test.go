package fs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTree mounts tr in a temp dir for the test (root only: no
// fusermount needed) and unmounts it at the end.
func mountTree(t testing.TB, tr *Tree, o MountOptions) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		skip(t, "FUSE mount tests need root")
	}
	dir := t.TempDir()
	srv, err := Mount(dir, tr, o)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return srv
}

func TestMountIsReadOnlyEverywhere(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "d/f"), []byte("data"), 0o666)
	unix.Setxattr(filepath.Join(src, "d/f"), "user.x", []byte("1"), 0)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	mnt := srv.Dir()
	point := filepath.Join(mnt, "s", tr.Source("s").Latest().Name)
	dirs := []string{mnt, filepath.Join(mnt, "s"), point, filepath.Join(point, "d")}
	file := filepath.Join(point, "d/f")
	var ops []struct {
		what string
		err  error
	}
	add := func(what string, err error) {
		ops = append(ops, struct {
			what string
			err  error
		}{what, err})
	}
	for _, d := range dirs {
		add("create in "+d, func() error { _, err := os.Create(filepath.Join(d, "new")); return err }())
		add("mkdir in "+d, os.Mkdir(filepath.Join(d, "newdir"), 0o755))
		add("symlink in "+d, os.Symlink("x", filepath.Join(d, "sl")))
		add("link in "+d, os.Link(file, filepath.Join(d, "hl")))
		add("mknod in "+d, unix.Mknod(filepath.Join(d, "fifo"), unix.S_IFIFO|0o644, 0))
		add("chmod "+d, os.Chmod(d, 0o700))
		add("chown "+d, os.Chown(d, 1, 1))
		add("utimes "+d, os.Chtimes(d, time.Now(), time.Now()))
		add("setxattr "+d, unix.Setxattr(d, "user.y", []byte("1"), 0))
	}
	add("open for write", func() error { _, err := os.OpenFile(file, os.O_WRONLY, 0); return err }())
	add("open read-write", func() error { _, err := os.OpenFile(file, os.O_RDWR, 0); return err }())
	add("truncate", os.Truncate(file, 0))
	add("unlink", os.Remove(file))
	add("rmdir", os.Remove(filepath.Join(point, "d")))
	add("rename", os.Rename(file, filepath.Join(point, "g")))
	add("rename point", os.Rename(point, filepath.Join(mnt, "s", "x")))
	add("remove latest", os.Remove(filepath.Join(mnt, "s", LatestName)))
	add("removexattr", unix.Removexattr(file, "user.x"))
	for _, op := range ops {
		if !errors.Is(op.err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", op.what, op.err)
		}
	}
	// And nothing changed.
	if b, err := os.ReadFile(file); err != nil || string(b) != "data" {
		t.Fatalf("file after write attempts: %q, %v", b, err)
	}
}

func TestMountServesMetadataAndContent(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	big := randomBytes(11, 6<<20)
	writeFile(t, filepath.Join(src, "big"), big, 0o640)
	writeFile(t, filepath.Join(src, "a"), []byte("hello"), 0o600)
	os.Chown(filepath.Join(src, "a"), 4321, 8765)
	os.Mkdir(filepath.Join(src, "d"), 0o750)
	os.Link(filepath.Join(src, "a"), filepath.Join(src, "d/hard"))
	os.Symlink("/etc/passwd", filepath.Join(src, "d/abs"))
	unix.Lsetxattr(filepath.Join(src, "a"), "user.one", []byte("1"), 0)
	unix.Lsetxattr(filepath.Join(src, "a"), "user.two", bytes.Repeat([]byte("v"), 300), 0)
	unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 3)))
	when := time.Date(1999, 12, 31, 23, 59, 59, 987654321, time.UTC)
	os.Chtimes(filepath.Join(src, "d"), when, when)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	latest := filepath.Join(srv.Dir(), "s", LatestName)
	if target, err := os.Readlink(latest); err != nil || target != tr.Source("s").Latest().Name {
		t.Fatalf("latest -> %q, %v", target, err)
	}
	var inoA, inoHard uint64
	for _, name := range []string{"big", "a", "d", "d/hard", "d/abs", "null"} {
		var want, got unix.Stat_t
		unix.Lstat(filepath.Join(src, name), &want)
		if err := unix.Lstat(filepath.Join(latest, name), &got); err != nil {
			t.Fatal(err)
		}
		if got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid || got.Mtim != want.Mtim ||
			got.Nlink != want.Nlink || got.Rdev != want.Rdev || (want.Mode&unix.S_IFMT != unix.S_IFDIR && got.Size != want.Size) {
			t.Errorf("%s: stat %+v\nsource %+v", name, got, want)
		}
		if got.Ino == want.Ino {
			t.Errorf("%s: same inode number as the live file", name)
		}
		switch name {
		case "a":
			inoA = got.Ino
		case "d/hard":
			inoHard = got.Ino
		}
	}
	if inoA != inoHard {
		t.Error("hard links do not share an inode")
	}
	if b, err := os.ReadFile(filepath.Join(latest, "big")); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big through the mount: %v", err)
	}
	if target, _ := os.Readlink(filepath.Join(latest, "d/abs")); target != "/etc/passwd" {
		t.Errorf("symlink target %q", target)
	}
	buf := make([]byte, 1024)
	n, err := unix.Listxattr(filepath.Join(latest, "a"), buf)
	if err != nil || string(buf[:n]) != "user.one\x00user.two\x00" {
		t.Errorf("listxattr %q, %v", buf[:n], err)
	}
	n, err = unix.Getxattr(filepath.Join(latest, "a"), "user.two", buf)
	if err != nil || n != 300 {
		t.Errorf("getxattr: %d, %v", n, err)
	}
	if _, err := unix.Getxattr(filepath.Join(latest, "a"), "user.none", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("missing xattr: %v", err)
	}
	if _, err := unix.Getxattr(filepath.Join(latest, "a"), "user.two", make([]byte, 10)); !errors.Is(err, unix.ERANGE) {
		t.Errorf("small xattr buffer: %v", err)
	}
	ents, err := os.ReadDir(latest)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != "a big d null" {
		t.Errorf("listing %v", got)
	}
}

func TestMountFollowsNewAndForgottenPoints(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("v1"), 0o644)
	base := time.Now().UTC().Add(-time.Hour)
	p1 := ts.backup(src, "s", base)
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Watch(ctx, 50*time.Millisecond)
	dir := filepath.Join(srv.Dir(), "s")
	list := func() string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	name1 := SnapshotName(base)
	if got := list(); got != name1+" latest" {
		t.Fatalf("listing %q", got)
	}
	// Look at latest's content so the kernel caches it.
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f")); string(b) != "v1" {
		t.Fatalf("latest/f = %q", b)
	}
	writeFile(t, filepath.Join(src, "f"), []byte("v2!"), 0o644)
	ts.backup(src, "s", base.Add(time.Minute))
	name2 := SnapshotName(base.Add(time.Minute))
	// What recall backup does after committing: the kernel's cached
	// target of latest is dropped before it returns.
	refreshMount(srv.Dir(), "s")
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f")); string(b) != "v2!" {
		t.Fatalf("latest/f after a new point = %q", b)
	}
	if got := list(); got != name1+" "+name2+" latest" {
		t.Fatalf("listing %q", got)
	}
	// Without that, the watcher moves latest soon.
	writeFile(t, filepath.Join(src, "f"), []byte("v3"), 0o644)
	p3 := ts.backup(src, "s", base.Add(2*time.Minute))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(dir, "latest/f")); string(b) == "v3" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("latest/f long after a new point = %q", b)
		}
	}
	if err := ts.forget(p3.ID); err != nil {
		t.Fatal(err)
	}
	refreshMount(srv.Dir(), "s")
	if b, _ := os.ReadFile(filepath.Join(dir, "latest/f")); string(b) != "v2!" {
		t.Fatalf("latest/f after forgetting the newest point = %q", b)
	}
	// A new source appears in the root.
	ts.backup(src, "other", time.Time{})
	if _, err := os.Stat(filepath.Join(srv.Dir(), "other", LatestName)); err != nil {
		t.Fatalf("new source: %v", err)
	}
	// Forget the first point while a file of it is open: it leaves the
	// tree, the open file keeps reading.
	f, err := os.Open(filepath.Join(dir, name1, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ts.forget(p1.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for list() != name2+" latest" {
		if time.Now().After(deadline) {
			t.Fatalf("forgotten point still listed: %q", list())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The kernel cached the name; the watcher tells it to drop it.
	for {
		_, err := os.Stat(filepath.Join(dir, name1))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stat forgotten point: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := make([]byte, 10)
	if n, err := f.ReadAt(b, 0); string(b[:n]) != "v1" {
		t.Fatalf("open file of a forgotten point: %q, %v", b[:n], err)
	}
}

// The kernel keeps latest's target (paths through latest cost no
// READLINK) until the server drops it: here nothing runs Watch, so only
// refreshMount, what recall backup does after a commit, moves latest.
func TestMountLatestCachedUntilRefresh(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("v1"), 0o644)
	base := time.Now().UTC().Add(-time.Hour)
	ts.backup(src, "s", base)
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	f := filepath.Join(srv.Dir(), "s", LatestName, "f")
	if b, _ := os.ReadFile(f); string(b) != "v1" {
		t.Fatalf("latest/f = %q", b)
	}
	writeFile(t, filepath.Join(src, "f"), []byte("v2"), 0o644)
	ts.backup(src, "s", base.Add(time.Minute))
	if b, _ := os.ReadFile(f); string(b) != "v1" {
		t.Fatalf("latest/f before any refresh = %q: the kernel did not keep latest's target", b)
	}
	refreshMount(srv.Dir(), "s")
	if b, _ := os.ReadFile(f); string(b) != "v2" {
		t.Fatalf("latest/f after refresh = %q", b)
	}
	if got, _ := os.Readlink(filepath.Join(srv.Dir(), "s", LatestName)); got != SnapshotName(base.Add(time.Minute)) {
		t.Fatalf("latest -> %q", got)
	}
}

func TestMountSinglePoint(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("first"), 0o644)
	p1 := ts.backup(src, "s", time.Now().Add(-time.Hour))
	writeFile(t, filepath.Join(src, "f"), []byte("second"), 0o644)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{Point: tr.PointByID(p1.ID)})
	if b, err := os.ReadFile(filepath.Join(srv.Dir(), "f")); err != nil || string(b) != "first" {
		t.Fatalf("f = %q, %v", b, err)
	}
	var st unix.Stat_t
	unix.Stat(srv.Dir(), &st)
	var want unix.Stat_t
	unix.Stat(src, &want)
	if st.Mode != want.Mode || st.Uid != want.Uid {
		t.Errorf("root mode %o uid %d, source %o %d", st.Mode, st.Uid, want.Mode, want.Uid)
	}
}

func TestMountDamagedChunkIsEIO(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	bad, good := randomBytes(21, 2<<20), randomBytes(22, 2<<20)
	writeFile(t, filepath.Join(src, "bad"), bad, 0o644)
	writeFile(t, filepath.Join(src, "good"), good, 0o644)
	ts.backup(src, "s", time.Time{})
	tr, fb, log := ts.faultyTree(t, Options{})
	root := tr.Source("s").Latest().Root()
	for _, x := range lookupPath(t, root, "bad").Node().Extents {
		fb.badChunks[x.ID] = true
	}
	srv := mountTree(t, tr, MountOptions{})
	dir := filepath.Join(srv.Dir(), "s", LatestName)
	if _, err := os.ReadFile(filepath.Join(dir, "bad")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("damaged file: %v, want EIO", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "good")); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("good file: %v", err)
	}
	if !strings.Contains(strings.Join(log.all(), "\n"), "/bad") {
		t.Fatalf("no log line names the file: %q", log.all())
	}
}

// A tree walk gets the files after the one it reads stored in the kernel's
// cache, so it reads them without a request; a damaged one among them is
// left for its own read, which fails with EIO and is logged.
func TestMountTreeWalkStoresAhead(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	const files = 40
	want := make([][]byte, files)
	for i := range want {
		want[i] = randomBytes(int64(100+i), 1<<10+i*1531)
		writeFile(t, filepath.Join(src, "d", sprintf("f%02d", i)), want[i], 0o644)
	}
	ts.backup(src, "s", time.Time{})
	tr, fb, log := ts.faultyTree(t, Options{})
	const bad = 20
	for _, x := range lookupPath(t, tr.Source("s").Latest().Root(), sprintf("d/f%02d", bad)).Node().Extents {
		fb.badChunks[x.ID] = true
	}
	srv := mountTree(t, tr, MountOptions{})
	dir := filepath.Join(srv.Dir(), "s", LatestName, "d")
	if _, err := os.ReadDir(dir); err != nil { // as tar does: list, then read
		t.Fatal(err)
	}
	read := func(i int) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, sprintf("f%02d", i)))
		if i == bad {
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("damaged file: %v, want EIO", err)
			}
			return
		}
		if err != nil || !bytes.Equal(b, want[i]) {
			t.Errorf("f%02d: %v, content equal %v", i, err, bytes.Equal(b, want[i]))
		}
	}
	read(0)
	read(1) // the walk is seen: the files after it are stored
	for i := 0; len(srv.a.pushing) > 0; i++ {
		if i > 500 {
			t.Fatal("storing ahead did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What the kernel holds is not kept twice: the chunks of the stored
	// files have left the chunk cache.
	for i := 2; i < files; i++ {
		for _, x := range lookupPath(t, tr.Source("s").Latest().Root(), sprintf("d/f%02d", i)).Node().Extents {
			if tr.chunks.has(x.ID) {
				t.Errorf("f%02d: chunk %s still cached after it was stored in the kernel", i, x.ID.Short())
			}
		}
	}
	for i := 2; i < files; i++ {
		read(i)
	}
	d := srv.root.GetChild("s").GetChild(tr.Source("s").Latest().Name).GetChild("d")
	var requested []string
	for i := 2; i < files; i++ {
		if i == bad {
			continue
		}
		if n := d.GetChild(sprintf("f%02d", i)).Operations().(*entryNode); n.read.Load() {
			requested = append(requested, n.e.Path())
		}
	}
	if len(requested) > 0 {
		t.Errorf("read with a request although stored ahead: %v", requested)
	}
	var lines int
	for _, l := range log.all() {
		if strings.Contains(l, sprintf("/d/f%02d", bad)) {
			lines++
		}
	}
	if lines == 0 {
		t.Errorf("no log line names the damaged file: %q", log.all())
	}
}
