package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"golang.org/x/sys/unix"
)

func TestSnapshotNames(t *testing.T) {
	base := time.Date(2026, 11, 21, 23, 45, 10, 0, time.UTC)
	tests := []struct {
		name  string
		times []time.Time
		want  []string
	}{
		{"distinct seconds", []time.Time{base, base.Add(time.Second)},
			[]string{"@GMT-2026.11.21-23.45.10", "@GMT-2026.11.21-23.45.11"}},
		{"same second", []time.Time{base.Add(100 * time.Millisecond), base.Add(900 * time.Millisecond)},
			[]string{"@GMT-2026.11.21-23.45.10", "@GMT-2026.11.21-23.45.11"}},
		{"cascade", []time.Time{base, base.Add(500 * time.Millisecond), base.Add(1200 * time.Millisecond), base.Add(5 * time.Second)},
			[]string{"@GMT-2026.11.21-23.45.10", "@GMT-2026.11.21-23.45.11", "@GMT-2026.11.21-23.45.12", "@GMT-2026.11.21-23.45.15"}},
		{"local time is shown in UTC", []time.Time{base.In(time.FixedZone("X", 3600))},
			[]string{"@GMT-2026.11.21-23.45.10"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PointNames(tc.times)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i, n := range got {
				if strings.Contains(n, ":") {
					t.Errorf("name %q has a ':'", n)
				}
				pt, ok := ParseSnapshotName(n)
				if !ok || pt.Before(tc.times[i].Truncate(time.Second)) {
					t.Errorf("ParseSnapshotName(%q) = %v, %v", n, pt, ok)
				}
			}
		})
	}
	for _, bad := range []string{"latest", "@GMT-2026.11.21-23.45", "@GMT-2026.11.21-23.45.10-2", "GMT-2026.11.21-23.45.10"} {
		if _, ok := ParseSnapshotName(bad); ok {
			t.Errorf("ParseSnapshotName(%q) accepted", bad)
		}
	}
}

func TestTreeSourcesPointsAndUpdates(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("one"), 0o644)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p1 := ts.backup(src, "alpha", base)
	p2 := ts.backup(src, "alpha", base.Add(300*time.Millisecond)) // same second
	ts.backup(src, "beta", base)

	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(tr.Sources()); got != "alpha beta" {
		t.Fatalf("sources %q", got)
	}
	a := tr.Source("alpha")
	if got := pointNames(a); got != "@GMT-2026.01.02-03.04.05 @GMT-2026.01.02-03.04.06" {
		t.Fatalf("points %q", got)
	}
	if a.Latest().Meta.ID != p2.ID || a.Point("@GMT-2026.01.02-03.04.05").Meta.ID != p1.ID {
		t.Fatal("names map to the wrong points")
	}

	// A new point appears with the next free name; latest moves.
	writeFile(t, filepath.Join(src, "f"), []byte("two!"), 0o644)
	p3 := ts.backup(src, "alpha", base.Add(700*time.Millisecond))
	ch, err := tr.Update()
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Added) != 1 || ch.Added[0].Meta.ID != p3.ID || ch.Added[0].Name != "@GMT-2026.01.02-03.04.07" {
		t.Fatalf("changes %+v", ch)
	}
	a = tr.Source("alpha")
	if a.Latest().Meta.ID != p3.ID {
		t.Fatal("latest did not move")
	}
	got, err := readAll(t, lookupPath(t, a.Latest().Root(), "f"), 1<<20)
	if err != nil || string(got) != "two!" {
		t.Fatalf("latest/f = %q, %v", got, err)
	}

	// Forgetting keeps the other names; the point is marked gone.
	old := tr.Source("alpha").Point("@GMT-2026.01.02-03.04.05")
	if err := ts.forget(p1.ID); err != nil {
		t.Fatal(err)
	}
	ch, err = tr.Update()
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Removed) != 1 || !old.Gone() || strings.Join(ch.Sources, ",") != "alpha" {
		t.Fatalf("changes %+v", ch)
	}
	if got := pointNames(tr.Source("alpha")); got != "@GMT-2026.01.02-03.04.06 @GMT-2026.01.02-03.04.07" {
		t.Fatalf("points after forget %q", got)
	}
	// The forgotten point's files still read (their chunks are still there).
	if got, err := readAll(t, lookupPath(t, old.Root(), "f"), 7); err != nil || string(got) != "one" {
		t.Fatalf("forgotten point's file = %q, %v", got, err)
	}
	// The last point of a source goes: the source goes.
	for _, p := range tr.Source("beta").Points() {
		ts.forget(p.Meta.ID)
	}
	ch, _ = tr.Update()
	if strings.Join(ch.GoneSources, ",") != "beta" || tr.Source("beta") != nil {
		t.Fatalf("changes %+v", ch)
	}
	// Nothing changed: nothing reported.
	if ch, _ := tr.Update(); !ch.Empty() {
		t.Fatalf("spurious changes %+v", ch)
	}
}

func TestTreeSyncSeesNewPointsAtOnce(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Changes
	tr.OnChanges(func(c Changes) { got = append(got, c) })
	tr.Sync(time.Hour) // nothing new
	writeFile(t, filepath.Join(src, "g"), []byte("y"), 0o644)
	ts.backup(src, "s", time.Now().Add(time.Hour))
	tr.Sync(time.Hour)
	if len(got) != 1 || len(got[0].Added) != 1 || len(tr.Source("s").Points()) != 2 {
		t.Fatalf("Sync found %+v", got)
	}
}

func TestTreeReadsMatchSource(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	big := randomBytes(1, 9<<20) // several chunks
	writeFile(t, filepath.Join(src, "big"), big, 0o644)
	writeFile(t, filepath.Join(src, "empty"), nil, 0o644)
	writeFile(t, filepath.Join(src, "d/small"), []byte("small file\n"), 0o600)
	// A sparse file: data, a 3 MiB hole, data, a hole at the end.
	sp, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	sp.WriteAt(randomBytes(2, 100000), 0)
	sp.WriteAt(randomBytes(3, 5000), 3<<20)
	sp.Truncate(5 << 20)
	sp.Close()
	ts.backup(src, "s", time.Time{})

	tr, err := New(ts.backend(), Options{CacheBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	root := tr.Source("s").Latest().Root()
	for _, name := range []string{"big", "empty", "d/small", "sparse"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		for _, bs := range []int{4096, 128 << 10, 1 << 20, 3<<20 + 17} {
			got, err := readAll(t, lookupPath(t, root, name), bs)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s read in %d-byte pieces differs from the source", name, bs)
			}
		}
	}
	// Random reads, including ones across chunk boundaries and past EOF.
	h, _ := lookupPath(t, root, "big").Open()
	r := randomBytes(4, 400)
	for i := 0; i < 200; i++ {
		off := (int64(r[2*i])<<16 | int64(r[2*i+1])<<8 | int64(r[i+1])) % int64(len(big)+1000)
		n := 1 + int(r[i])*1000
		buf := make([]byte, n)
		k, err := h.ReadAt(buf, off)
		if err != nil {
			t.Fatal(err)
		}
		end := max(min(off+int64(n), int64(len(big))), off)
		if int64(k) != end-off || (k > 0 && !bytes.Equal(buf[:k], big[off:end])) {
			t.Fatalf("ReadAt(%d, %d) wrong", off, n)
		}
	}
	if k, err := h.ReadAt(make([]byte, 10), int64(len(big))+5); k != 0 || err != nil {
		t.Fatalf("read past EOF: %d, %v", k, err)
	}
	// Sparse files report only what is stored.
	a := lookupPath(t, root, "sparse").Attr()
	if a.Size != 5<<20 || a.Blocks*512 >= 5<<20 {
		t.Fatalf("sparse attr %+v", a)
	}
}

func TestTreeMetadataAsBackedUp(t *testing.T) {
	if os.Geteuid() != 0 {
		skip(t, "needs root for owners and device nodes")
	}
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("hello"), 0o644)
	os.Chown(filepath.Join(src, "a"), 1234, 5678)
	chmod(t, filepath.Join(src, "a"), 0o4750) // after chown, which clears setuid
	os.Mkdir(filepath.Join(src, "d"), 0o710)
	// Every special bit, on files and directories; the root's own too.
	writeFile(t, filepath.Join(src, "sgid"), []byte("#!/bin/sh\n"), 0o2711)
	writeFile(t, filepath.Join(src, "all-bits"), nil, 0o7777)
	os.Mkdir(filepath.Join(src, "sticky"), 0o755)
	chmod(t, filepath.Join(src, "sticky"), 0o1777)
	os.Mkdir(filepath.Join(src, "sgid-dir"), 0o755)
	chmod(t, filepath.Join(src, "sgid-dir"), 0o2775)
	chmod(t, src, 0o3750)
	os.Link(filepath.Join(src, "a"), filepath.Join(src, "d/hard"))
	os.Symlink("../a", filepath.Join(src, "d/link"))
	unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 3)))
	unix.Mkfifo(filepath.Join(src, "fifo"), 0o600)
	unix.Lsetxattr(filepath.Join(src, "a"), "user.note", []byte("v1"), 0)
	when := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	os.Chtimes(filepath.Join(src, "a"), when, when)
	ts.backup(src, "s", time.Time{})

	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := tr.Source("s").Latest().Root()
	names := []string{".", "a", "d", "d/hard", "d/link", "null", "fifo", "sgid", "all-bits", "sticky", "sgid-dir"}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(src, name), &st); err != nil {
			t.Fatal(err)
		}
		if name == "." {
			a := root.Attr()
			// The root's attributes come from the point's manifest; only
			// its mode and owners are compared here.
			if a.Mode != st.Mode || a.UID != st.Uid || a.GID != st.Gid {
				t.Errorf("root: mode %#o uid %d gid %d, source mode %#o uid %d gid %d", a.Mode, a.UID, a.GID, st.Mode, st.Uid, st.Gid)
			}
			continue
		}
		a := lookupPath(t, root, name).Attr()
		if a.Mode != st.Mode || a.UID != st.Uid || a.GID != st.Gid || a.MtimeNS != st.Mtim.Nano() ||
			a.Nlink != st.Nlink || (st.Mode&unix.S_IFMT != unix.S_IFDIR && a.Size != uint64(st.Size)) || a.Rdev != st.Rdev {
			t.Errorf("%s: attr %+v, source mode %o uid %d gid %d mtime %d nlink %d size %d rdev %d",
				name, a, st.Mode, st.Uid, st.Gid, st.Mtim.Nano(), st.Nlink, st.Size, st.Rdev)
		}
	}
	a, h := lookupPath(t, root, "a"), lookupPath(t, root, "d/hard")
	if a.Ino() != h.Ino() {
		t.Error("hard links have different inode numbers")
	}
	if a.Ino() == lookupPath(t, root, "d/link").Ino() || a.Ino()&(1<<62) == 0 {
		t.Error("inode numbers not distinct or not in recall's range")
	}
	if got := lookupPath(t, root, "d/link").Target(); got != "../a" {
		t.Errorf("symlink target %q", got)
	}
	if x := a.Xattrs(); len(x) != 1 || x[0].Name != "user.note" || string(x[0].Value) != "v1" {
		t.Errorf("xattrs %+v", x)
	}
	// Stable: a second tree over the same store gives the same numbers.
	tr2, _ := New(ts.backend(), Options{})
	if lookupPath(t, tr2.Source("s").Latest().Root(), "d/hard").Ino() != h.Ino() {
		t.Error("inode numbers differ between two trees")
	}

	// Through the mount: the kernel shows the same modes, special bits
	// included.
	srv := mountTree(t, tr, MountOptions{})
	point := filepath.Join(srv.Dir(), "s", tr.Source("s").Latest().Name)
	for _, name := range names {
		var want, got unix.Stat_t
		unix.Lstat(filepath.Join(src, name), &want)
		if err := unix.Lstat(filepath.Join(point, name), &got); err != nil {
			t.Fatal(err)
		}
		if got.Mode != want.Mode {
			t.Errorf("%s through the mount: mode %#o, source %#o", name, got.Mode, want.Mode)
		}
	}
}

func TestTreeDamagedChunkFailsOnlyThatRead(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	bad := randomBytes(5, 9<<20) // over the 8 MiB maximum chunk: at least two chunks
	good := randomBytes(6, 3<<20)
	writeFile(t, filepath.Join(src, "bad"), bad, 0o644)
	writeFile(t, filepath.Join(src, "good"), good, 0o644)
	ts.backup(src, "s", time.Time{})
	tr, fb, log := ts.faultyTree(t, Options{})
	p := tr.Source("s").Latest()
	badEntry := lookupPath(t, p.Root(), "bad")
	n := badEntry.Node()
	fb.badChunks[n.Extents[len(n.Extents)-1].ID] = true

	// Reads before the damaged chunk succeed, the read touching it fails.
	h, _ := badEntry.Open()
	buf := make([]byte, 4096)
	if k, err := h.ReadAt(buf, 0); err != nil || !bytes.Equal(buf[:k], bad[:4096]) {
		t.Fatalf("read before the damage: %d, %v", k, err)
	}
	_, err := readAll(t, badEntry, 1<<20)
	if !errors.Is(err, ErrDamaged) || errno(err) != syscall.EIO {
		t.Fatalf("damaged file read: %v (errno %v)", err, errno(err))
	}
	got, err := readAll(t, lookupPath(t, p.Root(), "good"), 1<<20)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("good file: %v", err)
	}
	lines := strings.Join(log.all(), "\n")
	if !strings.Contains(lines, "s/"+p.Name+"/bad") || !strings.Contains(lines, p.Meta.ID.Short()) {
		t.Fatalf("log does not name point and path:\n%s", lines)
	}
}

func TestTreeDamagedDirectoryIsAnErrorNotEmpty(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "d/f"), []byte("x"), 0o644)
	ts.backup(src, "s", time.Time{})
	tr, fb, _ := ts.faultyTree(t, Options{})
	d := lookupPath(t, tr.Source("s").Latest().Root(), "d")
	fb.badTrees[d.Node().Subtree] = true
	if nodes, err := d.Children(); err == nil || errno(err) != syscall.EIO {
		t.Fatalf("Children = %d nodes, %v", len(nodes), err)
	}
	if _, err := d.Lookup("f"); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Lookup in a damaged directory: %v", err)
	}
}

func TestTreeSequentialReadPrefetches(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), randomBytes(7, 24<<20), 0o644)
	ts.backup(src, "s", time.Time{})
	tr, fb, _ := ts.faultyTree(t, Options{Prefetch: 3})
	e := lookupPath(t, tr.Source("s").Latest().Root(), "big")
	n := e.Node()
	if len(n.Extents) < 5 {
		skip(t, "only %d chunks", len(n.Extents))
	}
	h, _ := e.Open()
	buf := make([]byte, 4096)
	h.ReadAt(buf, 0)
	h.ReadAt(buf, 4096)
	// Chunks 1..3 are loaded without being read.
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := true
		for i := 1; i <= 3; i++ {
			if _, ok := fb.loaded.Load(n.Extents[i].ID); !ok {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("next chunks were not prefetched")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := fb.loaded.Load(n.Extents[4].ID); ok {
		t.Error("prefetched further than asked")
	}
}

func TestChunkCacheBoundedAndShared(t *testing.T) {
	var loads sync.Map
	var mu sync.Mutex
	count := 0
	release := make(chan struct{})
	c := newCache(4<<20, 1<<20, func(id chunkstore.ID) ([]byte, int64, error) {
		mu.Lock()
		count++
		mu.Unlock()
		loads.Store(id, true)
		if id[0] == 0xff {
			<-release
		}
		return make([]byte, 1<<20), 1 << 20, nil
	})
	// Concurrent gets of one id share a load.
	var wg sync.WaitGroup
	slow := chunkstore.ID{0xff}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.get(slow) }()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if count != 1 {
		t.Fatalf("%d loads for one id", count)
	}
	for i := 0; i < 100; i++ {
		c.get(chunkstore.ID{byte(i), 1, 2, 3, byte(i)})
	}
	if used := c.usedBytes(); used > 4<<20 {
		t.Fatalf("cache holds %d bytes, limit %d", used, 4<<20)
	}
}

// A value removed while it loads goes to the gets waiting for it but is
// not kept.
func TestChunkCacheRemoveDuringLoad(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	c := newCache(4<<20, 1<<20, func(id chunkstore.ID) ([]byte, int64, error) {
		close(started)
		<-release
		return []byte("chunk"), 5, nil
	})
	id := chunkstore.ID{1}
	got := make(chan []byte)
	go func() { v, _ := c.get(id); got <- v }()
	<-started
	c.remove(id)
	close(release)
	if v := <-got; string(v) != "chunk" {
		t.Fatalf("get during remove: %q", v)
	}
	if c.has(id) || c.usedBytes() != 0 {
		t.Fatalf("removed during its load, yet cached (%d bytes)", c.usedBytes())
	}
}

func names(ss []*Source) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return strings.Join(out, " ")
}

func pointNames(s *Source) string {
	var out []string
	for _, p := range s.Points() {
		out = append(out, p.Name)
	}
	return strings.Join(out, " ")
}

// A file read from start to end leaves only the chunks near its end in
// the cache (the kernel's page cache has the rest), and reads of many
// files through reused buffers still return exactly the backed-up bytes.
func TestSequentialReadDropsBehind(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	var files [][]byte
	for i := range 3 {
		b := randomBytes(int64(10+i), 24<<20) // ~24 chunks each
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), b, 0o644)
		files = append(files, b)
	}
	ts.backup(src, "s", time.Time{})
	tr, err := New(ts.backend(), Options{CacheBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	root := tr.Source("s").Latest().Root()
	for round := range 2 {
		for i, want := range files {
			got, err := readAll(t, lookupPath(t, root, fmt.Sprintf("f%d", i)), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d: f%d differs from the source", round, i)
			}
			// What stays of each file: the drop-behind margin and its
			// last chunks, far below the 24 MiB read. Seen: 5-9 MiB,
			// as buffers reused from the pool may be of the next size
			// class.
			if used, limit := tr.chunks.usedBytes(), int64(min(3*round+i+1, 3))*12<<20; used > limit {
				t.Fatalf("round %d: after reading f%d the cache holds %d MiB, want <= %d", round, i, used>>20, limit>>20)
			}
		}
	}
}

// The root of a store with no point has the tree's own time, not the zero
// time (shown as the year 1).
func TestModTimeEmptyStore(t *testing.T) {
	ts := newTestStore(t)
	before := time.Now()
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m := tr.ModTime(); m.Before(before.Add(-time.Second)) || m.After(time.Now().Add(time.Second)) {
		t.Fatalf("ModTime of an empty store: %v, want about now", m)
	}
}

// Fix (names moved after a forget): points that started in one second
// were named by the next free seconds, worked out again by every mount
// from the points there were; forgetting one moved the later ones' names
// down, so a name a user or script had seen opened another point after
// a remount. A backup now records its point's name, and every tree shows
// it under that name for its life.
func TestPointNamesSurviveForgetAndRemount(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var pts []*engine.Point
	for i := range 4 {
		writeFile(t, filepath.Join(src, "f"), []byte(fmt.Sprint(i)), 0o644)
		pts = append(pts, ts.backup(src, "s", base.Add(time.Duration(i)*100*time.Millisecond)))
	}
	want := map[chunkstore.ID]string{}
	for i, p := range pts {
		want[p.ID] = SnapshotName(base.Add(time.Duration(i) * time.Second))
		if p.Name != want[p.ID] {
			t.Errorf("point %d recorded name %q, want %q", i, p.Name, want[p.ID])
		}
	}
	if err := ts.forget(pts[1].ID); err != nil {
		t.Fatal(err)
	}
	tr, err := New(ts.backend(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*engine.Point{pts[0], pts[2], pts[3]} {
		if got := tr.Source("s").Point(want[p.ID]); got == nil || got.Meta.ID != p.ID {
			t.Errorf("after a forget and a fresh tree, %s is %v, want point %s", want[p.ID], got, p.ID.Short())
		}
	}
	if got := tr.Source("s").Point(want[pts[1].ID]); got != nil {
		t.Errorf("the forgotten point's name %s shows point %s", want[pts[1].ID], got.Meta.ID.Short())
	}
	// A new point of the burst goes after the names shown.
	p := ts.backup(src, "s", base.Add(2500*time.Millisecond))
	if p.Name != SnapshotName(base.Add(4*time.Second)) {
		t.Errorf("new point named %q", p.Name)
	}
}
