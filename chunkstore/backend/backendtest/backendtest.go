// Package backendtest is the conformance suite of chunk store backends:
// every backend runs it in one line,
//
//	func TestConformance(t *testing.T) { backendtest.Run(t, newBackend) }
//
// with a function that returns a fresh, empty backend for each test. It
// checks the contract of the backend package comment: saves, ranged loads
// into the caller's buffer, listing, stat, removal, atomicity of saves and
// of streamed files, the lock modes, the not-exist errors and
// cancellation.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Run runs the suite; newBackend returns a fresh empty backend.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"SaveLoad", testSaveLoad},
		{"Ranges", testRanges},
		{"ListStat", testListStat},
		{"Remove", testRemove},
		{"NotExist", testNotExist},
		{"Replace", testReplace},
		{"AtomicSave", testAtomicSave},
		{"Create", testCreate},
		{"LockModes", testLockModes},
		{"LockRemove", testLockRemove},
		{"Canceled", testCanceled},
		{"InvalidHandle", testInvalidHandle},
		{"Capabilities", testCapabilities},
		{"TempArea", testTempArea},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			t.Cleanup(func() { be.Close() })
			tc.fn(t, be)
		})
	}
}

func data(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

var ctx = context.Background()

// names are plain file names of the kinds the store uses.
func name(i int) string { return fmt.Sprintf("%02x%062x", i%256, i) }

func mustSave(t *testing.T, be backend.Backend, h backend.Handle, b []byte) {
	t.Helper()
	if err := be.Save(ctx, h, b); err != nil {
		t.Fatalf("save %v: %v", h, err)
	}
}

func testSaveLoad(t *testing.T, be backend.Backend) {
	for i, typ := range []backend.FileType{backend.Packs, backend.Index, backend.Points, backend.Damaged, backend.Journal} {
		for j, n := range []int{0, 1, 4096, 100_000} {
			h := backend.Handle{Type: typ, Name: name(i*10 + j)}
			want := data(int64(i*10+j), n)
			mustSave(t, be, h, want)
			got, err := be.Load(ctx, h, 0, -1, nil)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%v (%d bytes): load whole: %d bytes, %v", h, n, len(got), err)
			}
			// Into the caller's buffer when it is large enough.
			buf := make([]byte, 0, n+10)
			got, err = be.Load(ctx, h, 0, n, buf)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%v: load into buffer: %v", h, err)
			}
			if n > 0 && &got[0] != &buf[:1][0] {
				t.Errorf("%v: a large enough buffer was not used", h)
			}
		}
	}
	cfg := backend.Handle{Type: backend.Config, Name: "config"}
	mustSave(t, be, cfg, []byte("{}\n"))
	if got, err := be.Load(ctx, cfg, 0, -1, nil); err != nil || string(got) != "{}\n" {
		t.Errorf("config: %q, %v", got, err)
	}
}

func testRanges(t *testing.T, be backend.Backend) {
	want := data(1, 50_000)
	h := backend.Handle{Type: backend.Packs, Name: name(1)}
	mustSave(t, be, h, want)
	for _, c := range []struct {
		off int64
		n   int
	}{{0, 1}, {1, 4095}, {4096, 4096}, {49_999, 1}, {12_345, 20_000}, {50_000, 0}, {100, -1}} {
		got, err := be.Load(ctx, h, c.off, c.n, make([]byte, 3))
		end := int64(len(want))
		if c.n >= 0 {
			end = c.off + int64(c.n)
		}
		if err != nil || !bytes.Equal(got, want[c.off:end]) {
			t.Errorf("load %d bytes at %d: %d bytes, %v", c.n, c.off, len(got), err)
		}
	}
	// Past the end: the bytes there are, and io.ErrUnexpectedEOF.
	for _, c := range []struct {
		off  int64
		n    int
		have int
	}{{49_990, 20, 10}, {50_000, 1, 0}, {60_000, 5, 0}} {
		got, err := be.Load(ctx, h, c.off, c.n, nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != c.have || c.have > 0 && !bytes.Equal(got, want[c.off:]) {
			t.Errorf("load %d bytes at %d of %d: %d bytes, %v; want %d and io.ErrUnexpectedEOF", c.n, c.off, len(want), len(got), err, c.have)
		}
	}
}

func listAll(t *testing.T, be backend.Backend, typ backend.FileType) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := be.List(ctx, typ, func(n string, size int64) error {
		if _, dup := got[n]; dup {
			t.Errorf("list %v: %s twice", typ, n)
		}
		got[n] = size
		return nil
	})
	if err != nil {
		t.Fatalf("list %v: %v", typ, err)
	}
	return got
}

func testListStat(t *testing.T, be backend.Backend) {
	want := map[backend.FileType]map[string]int64{}
	for i := range 300 { // more packs than one subdirectory holds
		typ := []backend.FileType{backend.Packs, backend.Index, backend.Points, backend.Journal}[i%4]
		if want[typ] == nil {
			want[typ] = map[string]int64{}
		}
		h := backend.Handle{Type: typ, Name: name(i)}
		mustSave(t, be, h, data(int64(i), i))
		want[typ][h.Name] = int64(i)
	}
	for typ, w := range want {
		if got := listAll(t, be, typ); !maps.Equal(got, w) {
			t.Errorf("list %v: %d files, want %d", typ, len(got), len(w))
		}
		var names []string
		if err := backend.ListNames(ctx, be, typ, func(n string) error { names = append(names, n); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(maps.Keys(w))) {
			t.Errorf("list names %v: %d names, want %d", typ, len(names), len(w))
		}
		for n, size := range w {
			if got, err := be.Stat(ctx, backend.Handle{Type: typ, Name: n}); err != nil || got != size {
				t.Errorf("stat %v/%s: %d, %v; want %d", typ, n, got, err, size)
			}
		}
	}
	if got := listAll(t, be, backend.Damaged); len(got) != 0 {
		t.Errorf("list of a type with no files: %v", got)
	}
	// An error from fn stops the listing and is returned.
	stop := errors.New("stop")
	calls := 0
	err := be.List(ctx, backend.Packs, func(string, int64) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("list stopped by fn: %v after %d calls", err, calls)
	}
}

func testRemove(t *testing.T, be backend.Backend) {
	h := backend.Handle{Type: backend.Packs, Name: name(7)}
	mustSave(t, be, h, data(7, 1000))
	// A descriptor a backend keeps for reads must not outlive the file.
	if _, err := be.Load(ctx, h, 0, 10, nil); err != nil {
		t.Fatal(err)
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Load(ctx, h, 0, 10, nil); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("load of a removed file: %v", err)
	}
	if got := listAll(t, be, backend.Packs); len(got) != 0 {
		t.Errorf("removed file listed: %v", got)
	}
	if err := be.Remove(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("second remove: %v, want ErrNotExist", err)
	}
}

func testNotExist(t *testing.T, be backend.Backend) {
	for _, typ := range backend.FileTypes {
		if typ == backend.Locks {
			continue
		}
		h := backend.Handle{Type: typ, Name: name(99)}
		if typ == backend.Config {
			h.Name = "config"
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("stat %v: %v, want ErrNotExist", h, err)
		}
		if _, err := be.Load(ctx, h, 0, -1, nil); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("load %v: %v, want ErrNotExist", h, err)
		}
		if _, err := be.Load(ctx, h, 0, 5, nil); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("ranged load %v: %v, want ErrNotExist", h, err)
		}
	}
}

// A pack read once, then replaced by a save of the same name (repair
// rewrites a damaged pack whole under its name), reads the new bytes.
func testReplace(t *testing.T, be backend.Backend) {
	h := backend.Handle{Type: backend.Packs, Name: name(3)}
	mustSave(t, be, h, []byte("old bytes"))
	if _, err := be.Load(ctx, h, 0, 3, nil); err != nil {
		t.Fatal(err)
	}
	mustSave(t, be, h, []byte("new bytes!"))
	if got, err := be.Load(ctx, h, 0, -1, nil); err != nil || string(got) != "new bytes!" {
		t.Errorf("after replace: %q, %v", got, err)
	}
	fw, err := backend.Create(ctx, be, backend.Packs)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("newer"))
	if err := fw.Commit(ctx, h.Name); err != nil {
		t.Fatal(err)
	}
	if got, err := be.Load(ctx, h, 0, -1, nil); err != nil || string(got) != "newer" {
		t.Errorf("after a commit over it: %q, %v", got, err)
	}
}

// Readers see a file whole or not at all, while it is saved again and
// again by another goroutine.
func testAtomicSave(t *testing.T, be backend.Backend) {
	versions := [][]byte{bytes.Repeat([]byte{'a'}, 300_000), bytes.Repeat([]byte{'b'}, 200_000)}
	h := backend.Handle{Type: backend.Index, Name: name(5)}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := be.Save(ctx, h, versions[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := 0
	for seen < 50 {
		got, err := be.Load(ctx, h, 0, -1, nil)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Error(err)
			break
		}
		if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
			t.Errorf("a reader saw %d bytes, not a whole version", len(got))
			break
		}
		seen++
	}
	close(stop)
	wg.Wait()
	if got := listAll(t, be, backend.Index); len(got) != 1 {
		t.Errorf("after concurrent saves of one name: %v", got)
	}
}

func testCreate(t *testing.T, be backend.Backend) {
	want := data(2, 9<<20+77) // more than one O_DIRECT staging unit
	fw, err := backend.Create(ctx, be, backend.Packs)
	if err != nil {
		t.Fatal(err)
	}
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 1<<20+3)
		if k, err := fw.Write(rest[:n]); err != nil || k != n {
			t.Fatalf("write: %d, %v", k, err)
		}
		rest = rest[n:]
	}
	if got := listAll(t, be, backend.Packs); len(got) != 0 {
		t.Errorf("a file being built is listed: %v", got)
	}
	if err := fw.Commit(ctx, name(1)); err != nil {
		t.Fatal(err)
	}
	if err := fw.Abort(); err != nil {
		t.Errorf("abort after commit: %v", err)
	}
	h := backend.Handle{Type: backend.Packs, Name: name(1)}
	if got, err := be.Load(ctx, h, 0, -1, nil); err != nil || !bytes.Equal(got, want) {
		t.Errorf("committed file: %d bytes, %v", len(got), err)
	}
	fw, err = backend.Create(ctx, be, backend.Packs)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("discarded"))
	if err := fw.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write([]byte("x")); err == nil {
		t.Error("write after abort succeeded")
	}
	if got := listAll(t, be, backend.Packs); len(got) != 1 {
		t.Errorf("after abort: %v", got)
	}
	if tc, ok := be.(backend.TempCleaner); ok {
		fw, err := backend.CreateTagged(ctx, be, backend.Packs, "sess1")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write([]byte("left by a crash"))
		if err := tc.CleanTemp(ctx, "sess1"); err != nil {
			t.Fatal(err)
		}
		if err := fw.Commit(ctx, name(2)); err == nil {
			t.Error("a file whose temp was cleaned was committed")
		}
		if err := tc.CleanTemp(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func lockInfos(err error) []string {
	var le *backend.LockedError
	if !errors.As(err, &le) {
		return nil
	}
	var out []string
	for _, h := range le.Holders {
		out = append(out, string(h))
	}
	slices.Sort(out)
	return out
}

func testLockModes(t *testing.T, be backend.Backend) {
	s1, err := be.Lock(ctx, "store", backend.Shared, []byte("s1"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := be.Lock(ctx, "store", backend.Shared, []byte("s2"))
	if err != nil {
		t.Fatalf("second shared holder: %v", err)
	}
	_, err = be.Lock(ctx, "store", backend.Exclusive, []byte("x"))
	if !errors.Is(err, backend.ErrLocked) {
		t.Fatalf("exclusive beside shared holders: %v, want ErrLocked", err)
	}
	if got := lockInfos(err); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("holders named: %q, want s1 and s2", got)
	}
	// Another name is another lock.
	other, err := be.Lock(ctx, "other", backend.Exclusive, []byte("o"))
	if err != nil {
		t.Fatalf("a second lock name: %v", err)
	}
	other.Unlock()
	s1.Unlock()
	if _, err := be.Lock(ctx, "store", backend.Exclusive, nil); !errors.Is(err, backend.ErrLocked) {
		t.Fatalf("exclusive beside one shared holder: %v", err)
	}
	if err := s2.Unlock(); err != nil {
		t.Fatal(err)
	}
	x, err := be.Lock(ctx, "store", backend.Exclusive, []byte("x"))
	if err != nil {
		t.Fatalf("exclusive once the shared holders left: %v", err)
	}
	for _, m := range []backend.LockMode{backend.Shared, backend.Exclusive} {
		_, err := be.Lock(ctx, "store", m, nil)
		if !errors.Is(err, backend.ErrLocked) {
			t.Errorf("%v beside an exclusive holder: %v", m, err)
		}
		if got := lockInfos(err); !slices.Equal(got, []string{"x"}) {
			t.Errorf("%v beside an exclusive holder: holders %q", m, got)
		}
	}
	x.Unlock()
	if err := x.Unlock(); err != nil {
		t.Errorf("second unlock: %v", err)
	}
	again, err := be.Lock(ctx, "store", backend.Exclusive, nil)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again.Unlock()
}

// A lock taken exclusively, removed and released is gone from the
// listing (garbage collection does this to the registration of a session
// it proved dead), and a released holder is never named again.
func testLockRemove(t *testing.T, be backend.Backend) {
	gone, err := be.Lock(ctx, "session-1", backend.Shared, []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	gone.Unlock()
	u, err := be.Lock(ctx, "session-1", backend.Exclusive, []byte("probe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Lock(ctx, "session-1", backend.Shared, nil); !slices.Equal(lockInfos(err), []string{"probe"}) {
		t.Errorf("holders named: %q, want the probe alone", lockInfos(err))
	}
	if err := be.Remove(ctx, backend.Handle{Type: backend.Locks, Name: "session-1"}); err != nil {
		t.Fatalf("remove a lock held exclusively: %v", err)
	}
	if err := u.Unlock(); err != nil {
		t.Fatal(err)
	}
	got := listAll(t, be, backend.Locks)
	if _, listed := got["session-1"]; listed {
		t.Errorf("a removed lock is listed: %v", got)
	}
}

func testCanceled(t *testing.T, be backend.Backend) {
	h := backend.Handle{Type: backend.Points, Name: name(1)}
	mustSave(t, be, h, []byte("point"))
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := be.Save(c, backend.Handle{Type: backend.Points, Name: name(2)}, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("save: %v", err)
	}
	if _, err := be.Load(c, h, 0, -1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("load: %v", err)
	}
	if _, err := be.Stat(c, h); !errors.Is(err, context.Canceled) {
		t.Errorf("stat: %v", err)
	}
	if err := be.List(c, backend.Points, func(string, int64) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("list: %v", err)
	}
	if err := be.Remove(c, h); !errors.Is(err, context.Canceled) {
		t.Errorf("remove: %v", err)
	}
	if _, err := be.Lock(c, "store", backend.Shared, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("lock: %v", err)
	}
	// Nothing of the canceled calls happened.
	if got := listAll(t, be, backend.Points); len(got) != 1 {
		t.Errorf("after canceled calls: %v", got)
	}
}

func testInvalidHandle(t *testing.T, be backend.Backend) {
	for _, h := range []backend.Handle{{Type: backend.Packs, Name: ""}, {Type: backend.Index, Name: "../config"}, {Type: backend.Points, Name: ".hidden"}, {Type: 0, Name: "x"}} {
		if err := be.Save(ctx, h, []byte("x")); err == nil {
			t.Errorf("save %#v succeeded", h)
		}
		if _, err := be.Load(ctx, h, 0, -1, nil); err == nil || errors.Is(err, backend.ErrNotExist) {
			t.Errorf("load %#v: %v, want an invalid-handle error", h, err)
		}
	}
}

// Optional capabilities keep to their own contracts where present.
func testCapabilities(t *testing.T, be backend.Backend) {
	if err := backend.Warm(ctx, be, []backend.Handle{{Type: backend.Packs, Name: name(1)}}); err != nil && !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("warm: %v", err)
	}
	dr, ok := be.(backend.DirectReader)
	if !ok {
		return
	}
	want := data(4, 3*backend.DirectAlign+100)
	h := backend.Handle{Type: backend.Packs, Name: name(4)}
	mustSave(t, be, h, want)
	ra, err := dr.OpenDirect(ctx, h)
	if errors.Is(err, backend.ErrNotSupported) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6*backend.DirectAlign)
	off := backend.DirectAlign - int(uintptrOf(buf)%backend.DirectAlign)
	win := buf[off%backend.DirectAlign:][:4*backend.DirectAlign]
	n, err := ra.ReadAt(win, backend.DirectAlign)
	if n != len(want)-backend.DirectAlign || !bytes.Equal(win[:n], want[backend.DirectAlign:]) {
		t.Errorf("direct read: %d bytes, %v", n, err)
	}
	if _, err := dr.OpenDirect(ctx, backend.Handle{Type: backend.Packs, Name: name(5)}); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("direct open of a missing file: %v", err)
	}
}

// A backend with a readable temp area (backend.TempReader) lists and reads
// what a tagged writer wrote and neither committed nor aborted, by tag and
// for every tag; a committed or aborted file is not listed.
func testTempArea(t *testing.T, be backend.Backend) {
	tr, ok := be.(backend.TempReader)
	if !ok {
		return // no temp area: an object store's uploads are invisible until complete
	}
	if _, ok := be.(backend.Tagger); !ok {
		t.Fatal("a backend with a temp area it can read must create tagged files")
	}
	write := func(tag string, seed int64) backend.FileWriter {
		w, err := backend.CreateTagged(ctx, be, backend.Packs, tag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data(seed, 5000)); err != nil {
			t.Fatal(err)
		}
		s, ok := w.(backend.Syncer)
		if !ok {
			t.Fatal("a backend with a temp area it can read must sync its files before Commit")
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("more")); err == nil {
			t.Error("a write after Sync was accepted")
		}
		return w
	}
	left := write("source-a", 10) // its writer "died"
	defer left.Abort()
	// Committed after Sync: it is whole under its name.
	committed := write("source-a", 11)
	if err := committed.Commit(ctx, name(11)); err != nil {
		t.Fatal(err)
	}
	if b, err := be.Load(ctx, backend.Handle{Type: backend.Packs, Name: name(11)}, 0, -1, nil); err != nil || !bytes.Equal(b, data(11, 5000)) {
		t.Errorf("a file committed after Sync: %d bytes, %v", len(b), err)
	}
	aborted := write("source-a", 12)
	aborted.Abort()
	other := write("source-b", 13)
	defer other.Abort()
	list := func(tag string) map[string]string { // name -> tag
		got := map[string]string{}
		err := tr.ListTemp(ctx, tag, backend.Packs, func(tg, n string, size int64) error {
			if size != 5000 {
				t.Errorf("temp file %s of %s: size %d, want 5000", n, tg, size)
			}
			got[n] = tg
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	a := list("source-a")
	if len(a) != 1 {
		t.Fatalf("temp files of source-a: %v, want the one neither committed nor aborted", a)
	}
	for n, tg := range a {
		b, err := tr.LoadTemp(ctx, tg, n, nil)
		if err != nil || !bytes.Equal(b, data(10, 5000)) {
			t.Errorf("load temp file %s: %d bytes, %v", n, len(b), err)
		}
	}
	if all := list(""); len(all) != 2 || !slices.Contains(slices.Collect(maps.Values(all)), "source-b") {
		t.Errorf("temp files of every tag: %v", all)
	}
	if got := list("source-c"); len(got) != 0 {
		t.Errorf("temp files of a tag nothing wrote: %v", got)
	}
	if err := tr.ListTemp(ctx, "source-a", backend.Index, func(_, n string, _ int64) error {
		t.Errorf("index temp files listed: %s", n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.LoadTemp(ctx, "source-a", "packs-missing", nil); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("load of a missing temp file: %v", err)
	}
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
