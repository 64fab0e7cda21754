package fs

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/bufpool"
)

// Defaults for Options.
const (
	DefaultCacheBytes     = 256 << 20
	DefaultTreeCacheBytes = 64 << 20
	DefaultPrefetch       = 8
	// minChunkShard keeps every chunk cache shard able to hold the
	// largest chunks (the chunker's maximum is 8 MiB).
	minChunkShard = 16 << 20
)

// Options configure a Tree.
type Options struct {
	// CacheBytes bounds the cache of decoded chunks (0: DefaultCacheBytes).
	CacheBytes int64
	// TreeCacheBytes bounds the cache of decoded directory trees, by an
	// estimate of their memory (0: DefaultTreeCacheBytes).
	TreeCacheBytes int64
	// Prefetch is how many chunks past the current one a sequential reader
	// loads in parallel (0: DefaultPrefetch; negative: none).
	Prefetch int
	// Log receives error lines (damaged data, unreadable manifests); nil
	// discards them. Called from serving goroutines; must be safe for
	// concurrent use.
	Log func(format string, args ...any)
	// Withheld, if set, names the data sources the tree leaves out, each
	// with the reason shown in logs (the protection group whose end-user
	// recovery is off). The tree asks again on every Update and Sync, so
	// it must be cheap when nothing changed, and safe for concurrent use.
	// When it fails the tree keeps the set it had and logs why.
	Withheld func() (map[string]string, error)
}

// ErrGone: the point was forgotten while in use.
var ErrGone = errors.New("recovery point was forgotten")

// Tree is the recovery tree of one store: sources, their points, and the
// points' directories and files. It is safe for concurrent use. Reads of
// the source/point view go through one atomic pointer; Update replaces it.
type Tree struct {
	b    Backend
	opts Options
	made time.Time // when New made it: the root's mtime while no point exists

	chunks *cache[*chunk]
	bufs   *bufpool.Pool
	trees  *cache[*dirList]
	// prefetchSem bounds prefetch loads in flight across all handles.
	prefetchSem chan struct{}

	view atomic.Pointer[view]

	updMu     sync.Mutex // serialises Update
	stamp     string     // PointsStamp seen by the last Update
	lastFull  time.Time  // time of the last Update
	bad       map[chunkstore.ID]bool
	onChanges atomic.Pointer[func(Changes)]

	// withheld is the last set Options.Withheld gave (nil: none).
	withheld atomic.Pointer[map[string]string]
	whMu     sync.Mutex // serialises Options.Withheld calls
	whErr    string     // its last error, logged once
	// held keeps the manifests of withheld points (under updMu), so a
	// source shown again needs no reads.
	held map[chunkstore.ID]*engine.Point
	// flawed holds the ids of trees whose listing was logged as flawed
	// (dirList.flaw), so each is logged once, however often the cache
	// loads it again or however many directories share it.
	flawed sync.Map
}

// view is one immutable picture of the sources and points.
type view struct {
	sources map[string]*Source
	names   []string // sorted source names
	byID    map[chunkstore.ID]*Point
	mtime   time.Time // newest point time of all, for the root's mtime
}

// Source is one data source and its points, immutable once published.
type Source struct {
	Name   string
	points []*Point // oldest first
	byName map[string]*Point
	ino    uint64
	// reach is who may enter the source's directory: who could reach
	// the path of every one of its points at backup time
	// (engine.Reach; points that did not record it let in everyone).
	reach *engine.Reach
}

// Point is one recovery point in the tree.
type Point struct {
	Meta *engine.Point
	Name string // "@GMT-..." in its source directory
	t    *Tree
	gone atomic.Bool
	root *Entry
}

// New loads the store's points and returns the tree.
func New(b Backend, o Options) (*Tree, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.TreeCacheBytes <= 0 {
		o.TreeCacheBytes = DefaultTreeCacheBytes
	}
	if o.Prefetch == 0 {
		o.Prefetch = DefaultPrefetch
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	t := &Tree{b: b, opts: o, bad: map[chunkstore.ID]bool{}, held: map[chunkstore.ID]*engine.Point{}, made: time.Now(),
		prefetchSem: make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))}
	// A chunk held by the cache wastes at most two classes (25%) of
	// buffer; the collector takes back idle ones.
	t.bufs = bufpool.New(1)
	sizer, _ := b.(LoadSizer)
	t.chunks = newCache(o.CacheBytes, minChunkShard, func(id chunkstore.ID) (*chunk, int64, error) {
		c := &chunk{pool: t.bufs}
		if sizer != nil {
			if n := sizer.LoadSize(id); n > 0 {
				c.mem = t.bufs.Get(n)
			}
		}
		d, err := b.ReadChunk(id, c.mem)
		if err != nil {
			if c.mem != nil {
				t.bufs.Put(c.mem)
			}
			return nil, 0, err
		}
		c.b = d
		return c, int64(max(cap(d), cap(c.mem))), nil
	})
	t.chunks.hold = (*chunk).hold
	t.chunks.drop = (*chunk).release
	t.trees = newCache(o.TreeCacheBytes, 8<<20, func(id chunkstore.ID) (*dirList, int64, error) {
		tr, err := b.LoadTree(id)
		if err != nil {
			return nil, 0, err
		}
		return newDirList(tr), treeWeight(tr), nil
	})
	t.trees.giants = true
	t.view.Store(&view{sources: map[string]*Source{}, byID: map[chunkstore.ID]*Point{}})
	if _, err := t.Update(); err != nil {
		return nil, err
	}
	return t, nil
}

// dirList is a decoded directory as the tree caches it: its nodes, sorted
// by name, and what holds for all of them.
type dirList struct {
	nodes []*engine.Node
	// labeled: a node carries an SELinux label (see Entry.Xattr).
	labeled bool
	// flaw says what was wrong with the tree as stored ("" if nothing):
	// see tidyNodes.
	flaw string
}

func newDirList(tr *engine.Tree) *dirList {
	d := &dirList{nodes: tr.Nodes}
	if !tidy(tr.Nodes) {
		d.nodes, d.flaw = tidyNodes(tr.Nodes)
	}
	for _, n := range d.nodes {
		for _, x := range n.Xattrs {
			d.labeled = d.labeled || x.Name == selinuxXattr
		}
	}
	return d
}

// tidy reports whether nodes are what every backup writes: sorted by
// name, each name once, and each a name the kernel takes (dirName).
func tidy(nodes []*engine.Node) bool {
	for i, n := range nodes {
		if !dirName(n.Name) || i > 0 && nodes[i-1].Name >= n.Name {
			return false
		}
	}
	return true
}

// tidyNodes makes a tidy listing of a tree that is not (a crafted or
// damaged one), and says what it changed. Lookups search the listing by
// binary search and the kernel takes it whole or not at all, so:
//
//   - names that cannot be directory entries are left out: the kernel
//     failed the whole listing with EIO over one of them (go-fuse
//     panicked over ""), and restore skips them too;
//   - nodes out of order are sorted (a copy: the backend's trees are
//     shared): binary search missed names the listing showed, which ls
//     showed as -????????? entries that failed to stat;
//   - of a name held twice the first node in the tree is kept, the one a
//     restore writes first; the kernel would list both and find one.
func tidyNodes(in []*engine.Node) ([]*engine.Node, string) {
	out := make([]*engine.Node, 0, len(in))
	var bad []string
	sorted := true
	for _, n := range in {
		if !dirName(n.Name) {
			bad = append(bad, n.Name)
			continue
		}
		if len(out) > 0 && out[len(out)-1].Name > n.Name {
			sorted = false
		}
		out = append(out, n)
	}
	if !sorted {
		// Stable: of equal names, the first in the tree comes first.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	}
	var dups []string
	k := 0
	for _, n := range out {
		if k > 0 && out[k-1].Name == n.Name {
			if len(dups) == 0 || dups[len(dups)-1] != n.Name {
				dups = append(dups, n.Name)
			}
			continue
		}
		out[k] = n
		k++
	}
	clear(out[k:])
	out = out[:k]
	var what []string
	if len(bad) > 0 {
		what = append(what, fmt.Sprintf("%s whose names cannot be file names (%s) left out", plural(len(bad), "entry", "entries"), logNames(bad)))
	}
	if !sorted {
		what = append(what, "entries not sorted by name (sorted for lookups)")
	}
	if len(dups) > 0 {
		what = append(what, fmt.Sprintf("%s held twice (%s; the first entry of each is shown)", plural(len(dups), "name", "names"), logNames(dups)))
	}
	return out, strings.Join(what, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// logName quotes a name from the store for a log line: escaped, so a
// newline or a terminal's escape sequence in it cannot forge lines, and
// cut short, so a crafted name of any length cannot flood the log.
func logName(name string) string {
	const keep = 64
	if len(name) > keep {
		return strconv.Quote(name[:keep]) + fmt.Sprintf("... (%d bytes)", len(name))
	}
	return strconv.Quote(name)
}

// logNames is logName of the first few of names.
func logNames(names []string) string {
	const keep = 5
	q := make([]string, 0, keep+1)
	for i, n := range names {
		if i == keep {
			q = append(q, fmt.Sprintf("and %d more", len(names)-keep))
			break
		}
		q = append(q, logName(n))
	}
	return strings.Join(q, ", ")
}

// treeWeight estimates the memory of a decoded tree.
func treeWeight(tr *engine.Tree) int64 {
	w := int64(64)
	for _, n := range tr.Nodes {
		w += 200 + int64(len(n.Name)+len(n.Target)) + 56*int64(len(n.Extents))
		for _, x := range n.Xattrs {
			w += 40 + int64(len(x.Name)+len(x.Value))
		}
	}
	return w
}

// Changes is what one Update changed.
type Changes struct {
	Added, Removed []*Point
	// Sources lists sources whose point list changed; NewSources and
	// GoneSources those that appeared or vanished.
	Sources, NewSources, GoneSources []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added) == 0 && len(c.Removed) == 0 }

// OnChanges registers fn to be told of changes found by Update when it is
// called from Sync, i.e. from serving goroutines. fn must not block.
func (t *Tree) OnChanges(fn func(Changes)) { t.onChanges.Store(&fn) }

// Update re-reads the list of points, loads new manifests and publishes
// the new view. Points keep their names; new points get the next free
// name of their source. A manifest that cannot be read is logged once and
// left out.
func (t *Tree) Update() (Changes, error) {
	t.refreshWithheld(false)
	t.updMu.Lock()
	defer t.updMu.Unlock()
	return t.updateLocked()
}

func (t *Tree) updateLocked() (Changes, error) {
	var ch Changes
	stamp := ""
	if s, ok := t.b.(Stamper); ok {
		stamp, _ = s.PointsStamp()
	}
	ids, err := t.b.ListPoints()
	if err != nil {
		return ch, fmt.Errorf("list recovery points: %w", err)
	}
	t.lastFull = time.Now()
	old := t.view.Load()
	var withheld map[string]string
	if w := t.withheld.Load(); w != nil {
		withheld = *w
	}
	present := make(map[chunkstore.ID]bool, len(ids))
	var added []*Point
	for _, id := range ids {
		present[id] = true
		if t.bad[id] {
			continue
		}
		if p := old.byID[id]; p != nil {
			if _, ok := withheld[p.Meta.Source]; ok {
				t.held[id] = p.Meta
			}
			continue
		}
		m := t.held[id]
		if m == nil {
			var err error
			m, err = t.b.LoadPoint(id)
			if errors.Is(err, chunkstore.ErrNotFound) {
				delete(present, id) // forgotten meanwhile
				continue
			}
			if err != nil {
				t.bad[id] = true
				t.opts.Log("error: recovery point %s: %v (left out of the tree)", id.Short(), err)
				continue
			}
			if !dirName(m.Source) {
				// A source is a directory of the mount root: one name
				// the kernel cannot list ("", "a/b") failed the
				// listing of every source, and "" panicked go-fuse.
				// Backups check source names, so only a crafted or
				// damaged manifest has such a name; the point is
				// still restorable by its id.
				t.bad[id] = true
				t.opts.Log("error: recovery point %s: source name %s cannot be a directory name (left out of the tree; restore it by its id)",
					id.Short(), logName(m.Source))
				continue
			}
		}
		if _, ok := withheld[m.Source]; ok {
			t.held[id] = m
			continue
		}
		delete(t.held, id)
		added = append(added, &Point{Meta: m, t: t})
	}
	for id := range t.held {
		if !present[id] {
			delete(t.held, id)
		}
	}
	for id, p := range old.byID {
		if !present[id] {
			ch.Removed = append(ch.Removed, p)
			continue
		}
		if _, ok := withheld[p.Meta.Source]; ok {
			// Withheld, not forgotten: not marked gone. Files open in it
			// keep reading until closed; nothing new reaches it.
			delete(present, id)
			ch.Removed = append(ch.Removed, p)
		}
	}
	if len(added) == 0 && len(ch.Removed) == 0 {
		t.stamp = stamp
		return ch, nil
	}
	if len(added) > 0 {
		// Chunks of new points are only readable once their index files
		// are loaded; show the points only then.
		if err := t.b.Refresh(); err != nil {
			return Changes{}, fmt.Errorf("load the store index: %w", err)
		}
	}
	nv := &view{sources: map[string]*Source{}, byID: make(map[chunkstore.ID]*Point, len(present))}
	touched := map[string]bool{}
	for _, p := range ch.Removed {
		if t.held[p.Meta.ID] == nil {
			p.gone.Store(true)
		}
		touched[p.Meta.Source] = true
	}
	for _, p := range added {
		touched[p.Meta.Source] = true
	}
	group := map[string][]*Point{}
	for id, p := range old.byID {
		if present[id] {
			group[p.Meta.Source] = append(group[p.Meta.Source], p)
		}
	}
	sort.Slice(added, func(i, j int) bool { return pointLess(added[i], added[j]) })
	// The names backups recorded first, oldest first, so that a point
	// from before names were recorded cannot take one a newer point was
	// given; then the others, their own second or the next one free, as
	// engine.PointNames does for a fresh tree.
	for _, recorded := range []bool{true, false} {
		for _, p := range added {
			if p.Name != "" {
				continue
			}
			src := p.Meta.Source
			used := map[string]bool{}
			for _, q := range group[src] {
				used[q.Name] = true
			}
			if recorded {
				n := engine.RecordedName(p.Meta)
				if n == "" || used[n] {
					continue
				}
				p.Name = n
			} else {
				p.Name = engine.FreeName(p.Meta.Time, used)
			}
			p.root = &Entry{p: p, h: pointHash(p.Meta.ID)}
			p.root.ino = inoOf(p.root.h)
			group[src] = append(group[src], p)
			ch.Added = append(ch.Added, p)
		}
	}
	for name, pts := range group {
		sort.Slice(pts, func(i, j int) bool { return pointLess(pts[i], pts[j]) })
		s := &Source{Name: name, points: pts, byName: make(map[string]*Point, len(pts)), ino: sourceIno(name)}
		for i, p := range pts {
			s.byName[p.Name] = p
			if i == 0 {
				s.reach = p.Meta.Reach
			} else {
				s.reach = s.reach.Meet(p.Meta.Reach)
			}
			nv.byID[p.Meta.ID] = p
			if p.Meta.Time.After(nv.mtime) {
				nv.mtime = p.Meta.Time
			}
		}
		nv.sources[name] = s
		nv.names = append(nv.names, name)
		if old.sources[name] == nil {
			ch.NewSources = append(ch.NewSources, name)
		}
	}
	sort.Strings(nv.names)
	for name := range old.sources {
		if nv.sources[name] == nil {
			ch.GoneSources = append(ch.GoneSources, name)
		}
	}
	for name := range touched {
		ch.Sources = append(ch.Sources, name)
	}
	sort.Strings(ch.Sources)
	t.view.Store(nv)
	t.stamp = stamp
	return ch, nil
}

func pointLess(a, b *Point) bool {
	if !a.Meta.Time.Equal(b.Meta.Time) {
		return a.Meta.Time.Before(b.Meta.Time)
	}
	return a.Meta.ID.String() < b.Meta.ID.String()
}

// Sync runs Update when the backend's stamp says the points may have
// changed, or when the last update is older than maxAge. It is cheap
// enough (one stat) to call before answering a listing. Changes it finds
// go to the OnChanges callback.
func (t *Tree) Sync(maxAge time.Duration) {
	s, ok := t.b.(Stamper)
	if !ok {
		return
	}
	moved := t.refreshWithheld(true)
	stamp, err := s.PointsStamp()
	t.updMu.Lock()
	if !moved && err == nil && stamp == t.stamp && time.Since(t.lastFull) < maxAge {
		t.updMu.Unlock()
		return
	}
	ch, err := t.updateLocked()
	t.updMu.Unlock()
	if err != nil {
		t.opts.Log("error: %v", err)
		return
	}
	if fn := t.onChanges.Load(); fn != nil && !ch.Empty() {
		(*fn)(ch)
	}
}

// refreshWithheld asks Options.Withheld for the sources to leave out and
// reports whether the set changed. A failure keeps the last set: a
// catalog that cannot be read for a moment must not make sources flicker
// in and out of the tree. With try (serving goroutines) it gives up at
// once when another goroutine is asking: that one publishes the answer.
func (t *Tree) refreshWithheld(try bool) bool {
	if t.opts.Withheld == nil {
		return false
	}
	if try {
		if !t.whMu.TryLock() {
			return false
		}
	} else {
		t.whMu.Lock()
	}
	defer t.whMu.Unlock()
	w, err := t.opts.Withheld()
	if err != nil {
		if msg := err.Error(); msg != t.whErr {
			t.whErr = msg
			t.opts.Log("error: which sources to leave out of the tree: %v (keeping the last known set until it can be read)", err)
		}
		return false
	}
	if t.whErr != "" {
		t.whErr = ""
		t.opts.Log("which sources to leave out of the tree: readable again")
	}
	old := t.withheld.Load()
	if old != nil && maps.Equal(*old, w) || old == nil && len(w) == 0 {
		return false
	}
	for src, why := range w {
		if old == nil || (*old)[src] != why {
			t.opts.Log("leaving source %q out of the tree: protection group %q has end-user recovery off", src, why)
		}
	}
	if old != nil {
		for src := range *old {
			if _, ok := w[src]; !ok {
				t.opts.Log("showing source %q in the tree again: end-user recovery is on", src)
			}
		}
	}
	t.withheld.Store(&w)
	return true
}

// Sources returns the sources, sorted by name.
func (t *Tree) Sources() []*Source {
	v := t.view.Load()
	out := make([]*Source, len(v.names))
	for i, n := range v.names {
		out[i] = v.sources[n]
	}
	return out
}

// Source returns the named source, or nil.
func (t *Tree) Source(name string) *Source { return t.view.Load().sources[name] }

// PointByID returns a point by id, or nil.
func (t *Tree) PointByID(id chunkstore.ID) *Point { return t.view.Load().byID[id] }

// sourcePoint is the point id if it is one of source's, else nil.
func (t *Tree) sourcePoint(source string, id chunkstore.ID) *Point {
	if p := t.PointByID(id); p != nil && p.Meta.Source == source {
		return p
	}
	return nil
}

// ModTime is the start time of the newest point of any source.
//
// A store with no point yet gives the time the tree was made (the mount's
// time), not the zero time, which tools show as the year 1.
func (t *Tree) ModTime() time.Time {
	if m := t.view.Load().mtime; !m.IsZero() {
		return m
	}
	return t.made
}

// Points returns the source's points, oldest first. Do not modify.
func (s *Source) Points() []*Point { return s.points }

// Point returns the point named name ("@GMT-..."), or nil.
func (s *Source) Point(name string) *Point { return s.byName[name] }

// Latest returns the newest point.
func (s *Source) Latest() *Point { return s.points[len(s.points)-1] }

// Ino is the inode number of the source directory.
func (s *Source) Ino() uint64 { return s.ino }

// LatestIno is the inode number of the source's "latest" symlink.
func (s *Source) LatestIno() uint64 { return inoOf(fnvAdd(fnvOffset, "\x00latest\x00"+s.Name)) }

// Root returns the point's root directory.
func (p *Point) Root() *Entry { return p.root }

// Gone reports whether the point was forgotten.
func (p *Point) Gone() bool { return p.gone.Load() }

func (p *Point) String() string {
	return fmt.Sprintf("%s (point %s)", logPath(p.Meta.Source+"/"+p.Name), p.Meta.ID.Short())
}

// Inode numbers: FNV-1a over (point id, path), finished with a mixer, bit
// 62 set and bit 63 clear (go-fuse hands out automatic numbers from 2^63).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func inoOf(h uint64) uint64 {
	// splitmix64 finaliser
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h&(1<<62-1) | 1<<62
}

func pointHash(id chunkstore.ID) uint64 { return fnvAdd(fnvOffset, string(id[:])) }

func sourceIno(name string) uint64 { return inoOf(fnvAdd(fnvOffset, "\x00source\x00"+name)) }

// Entry is one directory, file, symlink or special file of a point, or
// the point's root (node nil). Entries are cheap values made on lookup.
type Entry struct {
	p    *Point
	n    *engine.Node
	path string // inside the point: "" for the root, else "a/b/c"
	h    uint64 // path hash state; children continue from it
	ino  uint64
	// dir and idx: the directory listing the entry was found in and its
	// place there (nil when not made by Lookup), so a tree walk can be
	// served ahead. The listing stays alive as long as an entry of it;
	// the kernel holds entries of a listed directory anyway.
	dir *dirList
	idx int
}

// Point returns the point the entry belongs to.
func (e *Entry) Point() *Point { return e.p }

// Node returns the tree node, nil for a point's root.
func (e *Entry) Node() *engine.Node { return e.n }

// Path returns the path inside the point ("" for its root).
func (e *Entry) Path() string { return e.path }

// Ino returns the inode number.
func (e *Entry) Ino() uint64 { return e.ino }

// IsDir reports whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.n == nil || e.n.Type == engine.TypeDir }

// where names the entry for log lines.
func (e *Entry) where() string {
	if e.path == "" {
		return e.p.String()
	}
	return fmt.Sprintf("%s (point %s)", logPath(e.p.Meta.Source+"/"+e.p.Name+"/"+e.path), e.p.Meta.ID.Short())
}

// logPath spells a path in the tree for a log line: as it is when it is
// printable, quoted when it holds a control character or bytes that are
// not UTF-8 (a name with a newline or a terminal's escape sequence, which
// a backup keeps as it found it, must not forge log lines).
func logPath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

func (e *Entry) childIno(n *engine.Node, h uint64) uint64 {
	if n.LinkGroup != 0 && n.Type != engine.TypeDir {
		return inoOf(fnvAdd(pointHash(e.p.Meta.ID), "\x00link\x00"+strconv.FormatUint(n.LinkGroup, 10)))
	}
	return inoOf(h)
}

func (e *Entry) childHash(name string) uint64 { return fnvAdd(fnvAdd(e.h, "/"), name) }

// ChildIno is the inode number the child n of this directory gets,
// without making an Entry (for directory listings).
func (e *Entry) ChildIno(n *engine.Node) uint64 { return e.childIno(n, e.childHash(n.Name)) }

// Child makes the entry for node n, a child of directory e.
func (e *Entry) Child(n *engine.Node) *Entry {
	c := &Entry{p: e.p, n: n, h: e.childHash(n.Name)}
	c.ino = e.childIno(n, c.h)
	if e.path == "" {
		c.path = n.Name
	} else {
		c.path = e.path + "/" + n.Name
	}
	return c
}

// Children returns the nodes of directory e, sorted by name. The slice is
// shared: do not modify. A tree that cannot be read is an error (logged),
// never an empty directory.
func (e *Entry) Children() ([]*engine.Node, error) {
	d, err := e.list()
	if err != nil {
		return nil, err
	}
	return d.nodes, nil
}

// list returns directory e as the tree caches it.
func (e *Entry) list() (*dirList, error) {
	if !e.IsDir() {
		return nil, syscall.ENOTDIR
	}
	id := e.p.Meta.Tree
	if e.n != nil {
		id = e.n.Subtree
	}
	d, err := e.p.t.trees.get(id)
	if err != nil {
		e.p.t.opts.Log("error: %s: read directory: %v", e.where(), err)
		return nil, fmt.Errorf("%s: %w", e.where(), err)
	}
	if d.flaw != "" {
		if _, seen := e.p.t.flawed.LoadOrStore(id, true); !seen {
			e.p.t.opts.Log("error: %s: directory tree %s is not as backups write it: %s", e.where(), id.Short(), d.flaw)
		}
	}
	return d, nil
}

// Lookup returns the child named name; os.ErrNotExist if there is none.
func (e *Entry) Lookup(name string) (*Entry, error) {
	d, err := e.list()
	if err != nil {
		return nil, err
	}
	nodes := d.nodes
	i := sort.Search(len(nodes), func(i int) bool { return nodes[i].Name >= name })
	if i < len(nodes) && nodes[i].Name == name {
		c := e.Child(nodes[i])
		c.dir, c.idx = d, i
		return c, nil
	}
	return nil, os.ErrNotExist
}

// Siblings returns the listing of the directory the entry was looked up
// in and the entry's index there; nil when it was not made by Lookup.
// The slice is shared: do not modify.
func (e *Entry) Siblings() ([]*engine.Node, int) {
	if e.dir == nil {
		return nil, 0
	}
	return e.dir.nodes, e.idx
}

// Target returns a symlink's target.
func (e *Entry) Target() string {
	if e.n == nil {
		return ""
	}
	return e.n.Target
}

// Xattrs returns the extended attributes, sorted by name.
func (e *Entry) Xattrs() []engine.Xattr {
	if e.n == nil {
		return e.p.Meta.Root.Xattrs
	}
	return e.n.Xattrs
}

// Errors of Entry.Xattr, checked with errors.Is.
var (
	// ErrNoXattr: the entry has no extended attribute of that name.
	ErrNoXattr = errors.New("no such extended attribute")
	// ErrNoLabels: the entry has no SELinux label, and neither has the
	// root of its point nor any other entry of its directory.
	ErrNoLabels = errors.New("no SELinux labels here")
)

// selinuxXattr is the extended attribute that holds an SELinux label.
const selinuxXattr = "security.selinux"

// Xattr returns the value of the extended attribute name as backed up
// (shared: do not modify), or ErrNoXattr.
//
// A missing SELinux label is ErrNoLabels instead when neither the root of
// the point nor any entry of the entry's directory has one: the adapter
// answers it as a file system without labels does (EOPNOTSUPP). ls -l
// asks for the label of every entry and stops asking on a file system
// that answers so; where no security module answers for the label itself
// (hosts without SELinux), each question would be a request to the
// server, half the requests of ls -l. A backup of a labeled file system
// has a labeled root, and then every entry answers exactly; so does every
// entry of a directory that holds a label, and an entry not found by
// Lookup.
func (e *Entry) Xattr(name string) ([]byte, error) {
	for _, x := range e.Xattrs() {
		if x.Name == name {
			return x.Value, nil
		}
	}
	if name == selinuxXattr && e.dir != nil && !e.dir.labeled && !e.p.labeled() {
		return nil, ErrNoLabels
	}
	return nil, ErrNoXattr
}

// labeled reports whether the point's root has an SELinux label.
func (p *Point) labeled() bool {
	for _, x := range p.Meta.Root.Xattrs {
		if x.Name == selinuxXattr {
			return true
		}
	}
	return false
}

// Attr is the stat(2) view of an entry.
type Attr struct {
	Ino                       uint64
	Mode                      uint32 // type and permission bits, as st_mode
	Nlink                     uint64
	UID, GID                  uint32
	Size                      uint64
	Blocks                    uint64 // 512-byte units actually stored (holes excluded)
	Rdev                      uint64 // as st_rdev
	AtimeNS, MtimeNS, CtimeNS int64
}

// Attr returns the entry's metadata as backed up.
func (e *Entry) Attr() Attr {
	if e.n == nil {
		r := e.p.Meta.Root
		mode := r.Mode & 0o7777
		if mode == 0 && r.UID == 0 && r.MtimeNS == 0 {
			mode = 0o755 // manifest without root metadata
		}
		ctime := r.CtimeNS
		if ctime == 0 {
			ctime = r.MtimeNS
		}
		return Attr{Ino: e.ino, Mode: syscall.S_IFDIR | mode, Nlink: max(r.Nlink, 1), UID: r.UID, GID: r.GID,
			AtimeNS: r.AtimeNS, MtimeNS: r.MtimeNS, CtimeNS: ctime}
	}
	n := e.n
	a := Attr{Ino: e.ino, Mode: n.Type.ModeType() | n.Mode&0o7777, Nlink: max(n.Nlink, 1), UID: n.UID, GID: n.GID,
		Size: n.Size, Rdev: n.Rdev, AtimeNS: n.AtimeNS, MtimeNS: n.MtimeNS, CtimeNS: n.CtimeNS}
	switch n.Type {
	case engine.TypeFile, engine.TypeDevice:
		var stored uint64
		for i, x := range n.Extents {
			if !x.Hole {
				stored += x.End - n.ExtentStart(i)
			}
		}
		a.Blocks = (stored + 511) / 512
	case engine.TypeSymlink:
		a.Size = uint64(len(n.Target))
	case engine.TypeDir:
		a.Size = 0
	}
	return a
}
