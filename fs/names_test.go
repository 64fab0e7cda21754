package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// Hostile stores: points and trees no backup writes, made with the
// engine's own encoders (EncodeTree, Session.CommitPoint) as a crafted
// or damaged store would hold them.

// hostileStore is a testStore that also hashes blobs as the store does.
type hostileStore struct {
	*testStore
	cs *chunkstore.Store
}

func newHostileStore(t *testing.T) *hostileStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cs, err := chunkstore.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := engine.NewStore(cs)
	t.Cleanup(func() { st.Close() })
	return &hostileStore{testStore: &testStore{t: t, dir: dir, st: st, r: st.Reader()}, cs: cs}
}

// rawTree encodes nodes in the order given, duplicates and all:
// EncodeTree sorts, so each node is encoded alone by it and the bodies
// are joined under one header.
func rawTree(nodes ...*engine.Node) []byte {
	var b bytes.Buffer
	b.WriteString("RTRE")
	b.WriteByte(1)
	b.Write(binary.AppendUvarint(nil, uint64(len(nodes))))
	for _, n := range nodes {
		c := *n
		c.Flags = 0 // version 1 throughout
		one := engine.EncodeTree(&engine.Tree{Nodes: []*engine.Node{&c}})
		b.Write(one[6:]) // magic, version, count 1
	}
	return b.Bytes()
}

// saveTree stores a tree blob and returns its id.
func (hs *hostileStore) saveTree(blob []byte) chunkstore.ID {
	hs.t.Helper()
	s := hs.session()
	defer s.Close()
	id := hs.cs.Hash(blob)
	if _, err := s.SaveBlob(chunkstore.TreeBlob, id, blob); err != nil {
		hs.t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		hs.t.Fatal(err)
	}
	return id
}

// commit stores a copy of p as a new point of source with root tree root
// (p's own when zero) and time at.
func (hs *hostileStore) commit(p *engine.Point, source string, root chunkstore.ID, at time.Time) chunkstore.ID {
	hs.t.Helper()
	q := *p
	q.ID, q.Source, q.Time = chunkstore.ID{}, source, at
	if root != (chunkstore.ID{}) {
		q.Tree = root
	}
	s := hs.session()
	defer s.Close()
	id, err := s.CommitPoint(&q)
	if err != nil {
		hs.t.Fatal(err)
	}
	return id
}

// rootNodes returns copies of the nodes of p's root tree, by name.
func (hs *hostileStore) rootNodes(p *engine.Point) map[string]*engine.Node {
	hs.t.Helper()
	tr, err := hs.r.LoadTree(p.Tree)
	if err != nil {
		hs.t.Fatal(err)
	}
	out := map[string]*engine.Node{}
	for _, n := range tr.Nodes {
		c := *n
		out[n.Name] = &c
	}
	return out
}

func renamed(n *engine.Node, name string) *engine.Node {
	c := *n
	c.Name = name
	return &c
}

func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func countLines(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// Points whose source cannot be a directory name are left out, logged
// once each, and the other sources stay browsable. Before, a point of
// source "" panicked the root's READDIRPLUS in go-fuse ("tried to add an
// entry with no name") and one of "a/b" or "../../evil" made the kernel
// refuse the whole root listing: `ls MNT` gave EIO for every source.
func TestMountLeavesOutBadSourceNames(t *testing.T) {
	hs := newHostileStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("good data"), 0o644)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	p := hs.backup(src, "good", base)
	bad := []string{"", ".", "..", "a/b", "../../evil", "/", "x\x00y"}
	for i, name := range bad {
		hs.commit(p, name, chunkstore.ID{}, base.Add(time.Duration(i+1)*time.Minute))
	}
	log := &logSink{}
	tr, err := New(hs.backend(), Options{Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	mlog := &logSink{}
	srv := mountTree(t, tr, MountOptions{Log: mlog.log})
	for range 2 {
		if got := readDirNames(t, srv.Dir()); !slices.Equal(got, []string{"good"}) {
			t.Fatalf("mount root lists %q, want [good]", got)
		}
	}
	if b, err := os.ReadFile(filepath.Join(srv.Dir(), "good", LatestName, "f")); err != nil || string(b) != "good data" {
		t.Fatalf("good/latest/f = %q, %v", b, err)
	}
	for _, name := range []string{"a", "evil"} {
		if _, err := os.Stat(filepath.Join(srv.Dir(), name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s: %v, want not found", name, err)
		}
	}
	if got := names(tr.Sources()); got != "good" {
		t.Errorf("sources %q, want only good", got)
	}
	// Updates find the same points again: still one line each.
	if _, err := tr.Update(); err != nil {
		t.Fatal(err)
	}
	tr.Sync(0)
	lines := log.all()
	if n := countLines(lines, "cannot be a directory name"); n != len(bad) {
		t.Errorf("%d log lines about bad source names, want %d: %q", n, len(bad), lines)
	}
	for _, name := range bad {
		if countLines(lines, "source name "+strconv.Quote(name)) != 1 {
			t.Errorf("no single log line names source %q: %q", name, lines)
		}
	}
	if l := strings.Join(mlog.all(), "\n"); strings.Contains(l, "panic") {
		t.Errorf("mount log: %s", l)
	}
}

// Entries whose names cannot be directory entries are left out of the
// listing and of lookups, logged once per tree; the rest of the directory
// lists and reads. Before, one such entry failed the whole listing with
// EIO through the mount ("" also panicked go-fuse's READDIRPLUS), while
// restore skipped them and restored the rest.
func TestMountLeavesOutBadEntryNames(t *testing.T) {
	hs := newHostileStore(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("aaa"), 0o644)
	writeFile(t, filepath.Join(src, "z"), []byte("zzz"), 0o644)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	p := hs.backup(src, "s", base)
	ns := hs.rootNodes(p)
	a, z := ns["a"], ns["z"]
	long := strings.Repeat("l", maxNameLen+1)
	badNames := []string{"", ".", "..", "a/b", "/", "n\x00ul", long}
	nodes := []*engine.Node{a}
	for _, name := range badNames {
		nodes = append(nodes, renamed(z, name))
	}
	nodes = append(nodes, z)
	byName := func(x, y *engine.Node) int { return strings.Compare(x.Name, y.Name) }
	slices.SortFunc(nodes, byName) // sorted: only the names are bad
	root := hs.saveTree(rawTree(nodes...))
	// Two subdirectories holding that tree: one log line for both.
	sub := &engine.Node{Name: "sub", Type: engine.TypeDir, Mode: 0o755, Subtree: root}
	nodes = append(nodes, sub, renamed(sub, "sub2"))
	slices.SortFunc(nodes, byName)
	top := hs.saveTree(rawTree(nodes...))
	hs.commit(p, "s", top, base.Add(time.Minute))

	log := &logSink{}
	tr, err := New(hs.backend(), Options{Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	latest := filepath.Join(srv.Dir(), "s", LatestName)
	for _, dir := range []string{latest, filepath.Join(latest, "sub"), filepath.Join(latest, "sub2"), latest} {
		want := []string{"a", "z"}
		if dir == latest {
			want = []string{"a", "sub", "sub2", "z"}
		}
		if got := readDirNames(t, dir); !slices.Equal(got, want) {
			t.Fatalf("%s lists %q, want %q", dir, got, want)
		}
		for name, data := range map[string]string{"a": "aaa", "z": "zzz"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
				t.Errorf("%s/%s = %q, %v", dir, name, b, err)
			}
		}
	}
	// The tree API agrees with the mount: no lookup finds them.
	e := tr.Source("s").Latest().Root()
	for _, name := range badNames {
		if _, err := e.Lookup(name); err != os.ErrNotExist {
			t.Errorf("Lookup(%q): %v, want os.ErrNotExist", name, err)
		}
	}
	kids, err := e.Children()
	if err != nil || len(kids) != 4 {
		t.Errorf("Children: %d, %v; want a, sub, sub2, z", len(kids), err)
	}
	lines := log.all()
	if n := countLines(lines, "cannot be file names"); n != 2 || countLines(lines, "not sorted") != 0 {
		t.Errorf("want one log line for each of two trees with bad names: %q", lines)
	}
}

// A tree not sorted by name, or holding a name twice, lists every name
// once and every name listed looks up; of duplicates the first is shown.
// Before, lookups used binary search over the unsorted nodes: ls -l showed
// `-?????????` entries whose stat failed with ENOENT, and a name held
// twice was listed twice.
func TestMountUnsortedAndDuplicateEntries(t *testing.T) {
	hs := newHostileStore(t)
	src := t.TempDir()
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		writeFile(t, filepath.Join(src, name), []byte("data of "+name), 0o644)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	p := hs.backup(src, "s", base)
	ns := hs.rootNodes(p)
	// g f e d c b a, then "c" again with b's content, and "a" again.
	nodes := []*engine.Node{ns["g"], ns["f"], ns["e"], ns["d"], ns["c"], ns["b"], ns["a"], renamed(ns["b"], "c"), renamed(ns["d"], "a")}
	hs.commit(p, "s", hs.saveTree(rawTree(nodes...)), base.Add(time.Minute))
	// Sorted, with a duplicate only.
	dup := []*engine.Node{ns["a"], ns["b"], renamed(ns["e"], "b"), ns["c"]}
	hs.commit(p, "dup", hs.saveTree(rawTree(dup...)), base.Add(time.Minute))

	log := &logSink{}
	tr, err := New(hs.backend(), Options{Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	for _, tc := range []struct {
		source string
		want   map[string]string
	}{
		{"s", map[string]string{"a": "a", "b": "b", "c": "c", "d": "d", "e": "e", "f": "f", "g": "g"}},
		{"dup", map[string]string{"a": "a", "b": "b", "c": "c"}},
	} {
		dir := filepath.Join(srv.Dir(), tc.source, LatestName)
		got := readDirNames(t, dir)
		var want []string
		for name := range tc.want {
			want = append(want, name)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %q, want %q", dir, got, want)
		}
		for _, name := range got {
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
				t.Errorf("listed %s/%s does not stat: %v", tc.source, name, err)
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != "data of "+tc.want[name] {
				t.Errorf("%s/%s = %q, %v; want the first entry of that name", tc.source, name, b, err)
			}
		}
	}
	lines := log.all()
	if countLines(lines, "not sorted") != 1 || countLines(lines, "2 names held twice") != 1 || countLines(lines, "1 name held twice") != 1 {
		t.Errorf("log: %q", lines)
	}
}

// A time past 2262 (UnixNano's end) is shown as it is, not wrapped to
// 1816.
func TestSplitTimeFarFuture(t *testing.T) {
	at := time.Date(9999, 12, 31, 23, 59, 58, 5, time.UTC)
	s, ns := splitTime(at)
	if got := time.Unix(int64(s), int64(ns)).UTC(); !got.Equal(at) {
		t.Errorf("splitTime(%v) = %v", at, got)
	}
}

// A log line names the directory it is about by its path in the tree,
// which holds the names a backup found: a name with a newline or a
// terminal's escape sequence is quoted, so it cannot forge log lines or
// reach the terminal of whoever reads the log.
func TestMountLogQuotesPaths(t *testing.T) {
	hs := newHostileStore(t)
	src := t.TempDir()
	for _, name := range []string{"a", "b"} {
		writeFile(t, filepath.Join(src, name), []byte(name), 0o644)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	p := hs.backup(src, "s", base)
	ns := hs.rootNodes(p)
	flawed := hs.saveTree(rawTree(ns["b"], ns["a"])) // unsorted: logged when listed
	evil := "x\x1b[2J\nerror: forged line"
	top := hs.saveTree(rawTree(&engine.Node{Name: evil, Type: engine.TypeDir, Mode: 0o755, Subtree: flawed}))
	hs.commit(p, "s", top, base.Add(time.Minute))

	log := &logSink{}
	tr, err := New(hs.backend(), Options{Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := mountTree(t, tr, MountOptions{})
	if got := readDirNames(t, filepath.Join(srv.Dir(), "s", LatestName, evil)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("lists %q", got)
	}
	lines := log.all()
	if countLines(lines, "not as backups write it") != 1 {
		t.Fatalf("want one log line for the unsorted tree: %q", lines)
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\n\x1b") {
			t.Errorf("log line holds a raw control character: %q", l)
		}
		if strings.Contains(l, "not as backups write it") && !strings.Contains(l, strconv.Quote(evil)[1:]) {
			t.Errorf("log line does not name the directory, quoted: %q", l)
		}
	}
}

// <mnt>/<source>/<point id> is a symlink to that point's directory,
// found by lookup and never listed. A point's @GMT name is fixed only
// while a mount lives: after a forget and a remount, a name can belong to
// another point, so a share that must serve one point (a bare-metal
// recovery's image) names it by id, and serves that point or nothing.
// Before, such a share served another point's image after the remount.
func TestPointByIDLink(t *testing.T) {
	ts := newTestStore(t)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var pts []*engine.Point
	for i, data := range []string{"first", "second"} {
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "f"), []byte(data), 0o644)
		pts = append(pts, ts.backup(src, "s", base.Add(time.Duration(i)*300*time.Millisecond)))
	}
	mount := func() string {
		tr, err := New(ts.backend(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(mountTree(t, tr, MountOptions{}).Dir(), "s")
	}
	dir := mount()
	first, second := SnapshotName(base), SnapshotName(base.Add(time.Second))
	if got := readDirNames(t, dir); !slices.Equal(got, []string{first, second, LatestName}) {
		t.Fatalf("lists %q", got)
	}
	if target, err := os.Readlink(filepath.Join(dir, pts[1].ID.String())); err != nil || target != second {
		t.Fatalf("link of the second point: %q, %v; want %s", target, err, second)
	}
	if _, err := ts.st.Forget(context.Background(), pts[0].ID.String(), "", engine.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	// A fresh mount: the second point keeps the name its backup
	// recorded (a point from before names were recorded would take the
	// first one's; the link follows it either way).
	dir = mount()
	if target, err := os.Readlink(filepath.Join(dir, pts[1].ID.String())); err != nil || target != second {
		t.Errorf("link of the second point after the remount: %q, %v; want %s", target, err, second)
	}
	if b, err := os.ReadFile(filepath.Join(dir, pts[1].ID.String(), "f")); err != nil || string(b) != "second" {
		t.Errorf("through the link: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, pts[0].ID.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link of the forgotten point: %v, want it gone", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, strings.ToUpper(pts[1].ID.String()))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an id spelled in capitals: %v, want no such entry", err)
	}
}
