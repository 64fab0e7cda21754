package fs

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"golang.org/x/sys/unix"
)

// testStore is a real store in a temp dir, written through the engine.
type testStore struct {
	t   testing.TB
	dir string
	st  *engine.Store
	r   *engine.Reader
}

func newTestStore(t testing.TB) *testStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := engine.Open(dir, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testStore{t: t, dir: dir, st: st, r: st.Reader()}
}

// backup backs up path as source; at, if not zero, is the point's time.
func (ts *testStore) backup(path, source string, at time.Time) *engine.Point {
	ts.t.Helper()
	s := ts.session()
	defer s.Close()
	o := engine.BackupOptions{Path: path, Source: source}
	if !at.IsZero() {
		o.Now = func() time.Time { return at }
	}
	p, err := engine.Backup(context.Background(), s, o)
	if err != nil {
		ts.t.Fatalf("backup %s: %v", path, err)
	}
	return p
}

func (ts *testStore) session() *engine.Session {
	ts.t.Helper()
	s, err := ts.st.Session(context.Background(), engine.SessionOptions{Purpose: "test", LockOptions: engine.LockOptions{Wait: time.Minute}})
	if err != nil {
		ts.t.Fatal(err)
	}
	return s
}

// forget removes a point, as 'recall forget' does.
func (ts *testStore) forget(id chunkstore.ID) error {
	s := ts.session()
	defer s.Close()
	return s.RemovePoint(id)
}

func (ts *testStore) backend() Backend { return NewEngineBackend(ts.r) }

// faultyBackend wraps a Backend: chunks and trees listed in bad fail as
// corrupt, and loads are counted.
type faultyBackend struct {
	Backend
	mu         sync.Mutex
	badChunks  map[chunkstore.ID]bool
	badTrees   map[chunkstore.ID]bool
	chunkLoads atomic.Int64
	loaded     sync.Map // chunk id -> true
}

func newFaulty(b Backend) *faultyBackend {
	return &faultyBackend{Backend: b, badChunks: map[chunkstore.ID]bool{}, badTrees: map[chunkstore.ID]bool{}}
}

func (f *faultyBackend) ReadChunk(id chunkstore.ID, dst []byte) ([]byte, error) {
	f.chunkLoads.Add(1)
	f.loaded.Store(id, true)
	f.mu.Lock()
	bad := f.badChunks[id]
	f.mu.Unlock()
	if bad {
		return nil, &chunkstore.BlobError{ID: id, Err: chunkstore.ErrCorrupt}
	}
	return f.Backend.ReadChunk(id, dst)
}

func (f *faultyBackend) LoadTree(id chunkstore.ID) (*engine.Tree, error) {
	f.mu.Lock()
	bad := f.badTrees[id]
	f.mu.Unlock()
	if bad {
		return nil, &chunkstore.BlobError{ID: id, Err: chunkstore.ErrCorrupt}
	}
	return f.Backend.LoadTree(id)
}

// faultyTree makes a tree over ts through a faultyBackend, logging to a
// logSink unless o says where.
func (ts *testStore) faultyTree(t testing.TB, o Options) (*Tree, *faultyBackend, *logSink) {
	t.Helper()
	fb := newFaulty(ts.backend())
	log := &logSink{}
	if o.Log == nil {
		o.Log = log.log
	}
	tr, err := New(fb, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr, fb, log
}

// logSink collects log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, sprintf(format, args...))
}

func (l *logSink) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// writeFile writes a file and gives it mode, raw permission bits as
// chmod(2) takes them, setuid (04000), setgid (02000) and sticky (01000)
// included. (os.Chmod would drop those: it wants os.ModeSetuid and kin.)
func writeFile(t testing.TB, path string, data []byte, mode uint32) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}

// chmod sets raw mode bits (special bits included) and checks they hold:
// a fixture meant to have them must not silently lack them.
func chmod(t testing.TB, path string, mode uint32) {
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

// readAll reads a file of the tree through a handle in pieces of size n.
func readAll(t testing.TB, e *Entry, n int) ([]byte, error) {
	t.Helper()
	h, err := e.Open()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	buf := make([]byte, n)
	for off := int64(0); ; {
		k, err := h.ReadAt(buf, off)
		if err != nil {
			return nil, err
		}
		if k == 0 {
			return out.Bytes(), nil
		}
		out.Write(buf[:k])
		off += int64(k)
	}
}

// lookupPath walks a slash-separated path from e.
func lookupPath(t testing.TB, e *Entry, path string) *Entry {
	t.Helper()
	for _, name := range splitPath(path) {
		c, err := e.Lookup(name)
		if err != nil {
			t.Fatalf("lookup %q in %q: %v", name, e.Path(), err)
		}
		e = c
	}
	return e
}
