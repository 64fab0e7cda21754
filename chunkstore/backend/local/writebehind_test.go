package local

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/recall-backup/recall/chunkstore/backend"
	"golang.org/x/sys/unix"
)

// The pack writer's write-behind (create.go): with O_DIRECT, a full
// staging buffer is written on a goroutine of its own while the caller
// fills the other one; the write's error comes back from the next Write,
// Sync or Commit. These tests drive the real backend in a temp directory.
// Where its file system refuses O_DIRECT (tmpfs) they test the ordinary
// writes and say so; where it takes O_DIRECT, a writer that does not use
// it fails them, so they never pass without the write-behind.

var errWriteFault = errors.New("injected write fault")

// packName is the name the tests commit packs under.
var packName = strings.Repeat("5a", 32)

// newPackWriter returns a backend in a temp directory, a pack writer of
// unknown size in it (the writer O_DIRECT is for) and whether its writes
// are direct.
func newPackWriter(t *testing.T) (*Backend, *fileWriter, bool) {
	t.Helper()
	dir := t.TempDir()
	b, err := Create(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := b.Create(context.Background(), backend.Packs)
	if err != nil {
		t.Fatalf("create a pack in %s: %v", dir, err)
	}
	w := fw.(*fileWriter)
	t.Cleanup(func() { w.Abort() })
	direct := directWorks(t, dir)
	switch {
	case direct && w.direct == nil:
		t.Fatalf("%s takes O_DIRECT, but the pack writer writes through the page cache", dir)
	case !direct && w.direct != nil:
		t.Fatalf("%s refuses O_DIRECT, but the pack writer has a direct descriptor", dir)
	case !direct:
		t.Logf("%s refuses O_DIRECT: testing ordinary writes, which have no write-behind", dir)
	}
	return b, w, direct
}

// directWorks reports whether the file system of dir takes O_DIRECT, by
// opening a file there with it: the writer's own answer is what is tested.
func directWorks(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "direct-probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatalf("probe O_DIRECT: %v", err)
	}
	f.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	return true
}

// hookSteps calls fn for every durable step of the files under dir, from
// whichever goroutine does the step, until the test ends.
func hookSteps(t *testing.T, dir string, fn func(Step) error) {
	t.Helper()
	restore := SetFaultHook(func(s Step) error {
		if !strings.HasPrefix(s.Path, dir+string(filepath.Separator)) {
			return nil
		}
		return fn(s)
	})
	t.Cleanup(restore)
}

// stepCounter counts the durable steps of each kind.
type stepCounter struct {
	mu sync.Mutex
	n  map[StepKind]int
}

func (c *stepCounter) step(s Step) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[StepKind]int{}
	}
	c.n[s.Kind]++
	return c.n[s.Kind]
}

func (c *stepCounter) count(k StepKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	rand.NewChaCha8(s).Read(b)
	return b
}

// tempFiles lists the regular files left in the backend's temp area.
func tempFiles(t *testing.T, b *Backend) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(filepath.Join(b.Location(), "tmp"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			left = append(left, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// A file written in pieces of all sizes around the staging buffer's
// commits with exactly the bytes written, one direct write per full
// buffer and one for the tail.
func TestWriteBehindContent(t *testing.T) {
	const c = directChunk
	for _, tc := range []struct {
		name   string
		pieces []int
		sync   bool // Sync before Commit
	}{
		{"4 MiB+1 five times", []int{c + 1, c + 1, c + 1, c + 1, c + 1}, false},
		{"4 MiB+odd sizes", []int{c + 4095, c + 1, c + 12345, c + 511, 777}, false},
		{"whole buffers, no tail", []int{c, c, c}, false},
		{"pieces smaller than a buffer", []int{3<<20 + 7, 3<<20 + 7, 3<<20 + 7, 3<<20 + 7, 3<<20 + 7}, false},
		{"one write fills two buffers", []int{2*c + 3, c - 3, 5}, false},
		{"empty writes between", []int{0, c + 3, 0, c + 9, 0}, false},
		{"synced before commit", []int{c + 1, c + 4097, 100}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, w, direct := newPackWriter(t)
			var steps stepCounter
			hookSteps(t, b.Location(), func(s Step) error { steps.step(s); return nil })
			var want []byte
			for i, n := range tc.pieces {
				p := randomBytes(uint64(i+1), n)
				want = append(want, p...)
				if got, err := w.Write(p); got != n || err != nil {
					t.Fatalf("write %d of %d bytes: %d, %v", i+1, n, got, err)
				}
			}
			if tc.sync {
				if err := w.Sync(); err != nil {
					t.Fatalf("sync: %v", err)
				}
			}
			h := backend.Handle{Type: backend.Packs, Name: packName}
			if err := w.Commit(context.Background(), packName); err != nil {
				t.Fatalf("commit: %v", err)
			}
			got, err := os.ReadFile(b.Path(h))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("committed %d bytes, wrote %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("committed file differs from the bytes written at offset %d (buffer %d, byte %d of it)", i, i/c, i%c)
				}
			}
			wantWrites := len(tc.pieces)
			if direct {
				wantWrites = (len(want) + c - 1) / c
			}
			if n := steps.count(StepWrite); n != wantWrites {
				t.Errorf("%d write steps for %d bytes in %d pieces, want %d (direct: %v)", n, len(want), len(tc.pieces), wantWrites, direct)
			}
			if n := steps.count(StepSync); n != 1 {
				t.Errorf("%d fsyncs of the file, want 1", n)
			}
			if left := tempFiles(t, b); len(left) > 0 {
				t.Errorf("temp files left after commit: %v", left)
			}
		})
	}
}

// A failed direct write is returned by the next Write, Sync or Commit, and
// from then on by every one of them: the file has a hole, so it never
// reaches its final name, and Abort leaves no temp file.
func TestWriteBehindFault(t *testing.T) {
	const piece = directChunk + 4097 // each write fills one staging buffer
	for _, tc := range []struct {
		name   string
		pieces int
		failAt int    // the write step that fails: pieces+1 is the tail
		finish string // "sync" or "commit"
	}{
		{"first write, seen by the next Write", 3, 1, "commit"},
		{"second write, seen by the next Write", 4, 2, "commit"},
		{"last full buffer, seen by Commit", 2, 2, "commit"},
		{"last full buffer, seen by Sync", 2, 2, "sync"},
		{"the tail, at Commit", 2, 3, "commit"},
		{"the tail, at Sync", 2, 3, "sync"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, w, direct := newPackWriter(t)
			var steps stepCounter
			hookSteps(t, b.Location(), func(s Step) error {
				if s.Kind == StepWrite && steps.step(s) == tc.failAt {
					return errWriteFault
				}
				return nil
			})
			// The Write that sees the fault: a direct write's comes back
			// from the call after the Write that started it; an ordinary
			// write's from that Write. 0: the finishing call does.
			seenAt := tc.failAt
			if direct {
				seenAt = tc.failAt + 1
			}
			if seenAt > tc.pieces {
				seenAt = 0
			}
			if !direct && tc.failAt > tc.pieces {
				t.Logf("ordinary writes have no tail step: nothing fails")
			}
			failed := false
			for i := 1; i <= tc.pieces; i++ {
				_, err := w.Write(randomBytes(uint64(i), piece))
				switch {
				case i == seenAt && !errors.Is(err, errWriteFault):
					t.Fatalf("write %d: %v, want the fault of write step %d", i, err, tc.failAt)
				case i < seenAt || seenAt == 0:
					if err != nil {
						t.Fatalf("write %d, before the fault could be seen: %v", i, err)
					}
				}
				if err != nil {
					failed = true
					break
				}
			}
			if failed && !direct {
				// An ordinary write's error is not kept: the store aborts
				// such a file, as done here.
				if err := w.Abort(); err != nil {
					t.Fatalf("abort: %v", err)
				}
			} else {
				expectFault := direct || tc.failAt <= tc.pieces
				if failed {
					// The fault sticks: the file has a hole.
					if _, err := w.Write([]byte("more")); !errors.Is(err, errWriteFault) {
						t.Errorf("write after the fault: %v, want the fault", err)
					}
				}
				if tc.finish == "sync" {
					if err := w.Sync(); errors.Is(err, errWriteFault) != expectFault {
						t.Errorf("sync: %v (fault expected: %v)", err, expectFault)
					}
				}
				err := w.Commit(context.Background(), packName)
				if errors.Is(err, errWriteFault) != expectFault {
					t.Errorf("commit after the fault: %v (fault expected: %v)", err, expectFault)
				}
				if !expectFault {
					return // the ordinary path's tail case: committed whole
				}
				if err := w.Abort(); err != nil {
					t.Errorf("abort after the failed commit: %v", err)
				}
			}
			if _, err := os.Stat(b.Path(backend.Handle{Type: backend.Packs, Name: packName})); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file whose write failed is under its final name (stat: %v)", err)
			}
			if left := tempFiles(t, b); len(left) > 0 {
				t.Errorf("temp files left after abort: %v", left)
			}
		})
	}
}

// heldWrite holds the first write step of a file until release, on the
// goroutine doing it, and then fails it with err (nil: it goes ahead).
type heldWrite struct {
	entered, release chan struct{}
	once             sync.Once
	err              error
	// presentAfter: whether the file still existed when its held write was
	// let go (it must: Abort waits for the write in flight).
	presentAfter bool
}

func newHeldWrite(t *testing.T, b *Backend, err error) *heldWrite {
	hw := &heldWrite{entered: make(chan struct{}), release: make(chan struct{}), err: err}
	var steps stepCounter
	hookSteps(t, b.Location(), func(s Step) error {
		if s.Kind != StepWrite || steps.step(s) != 1 {
			return nil
		}
		close(hw.entered)
		<-hw.release
		_, serr := os.Stat(s.Path)
		hw.presentAfter = serr == nil
		return hw.err
	})
	// A failed test must not leave the write held: the writer's cleanup
	// (Abort) waits for it.
	t.Cleanup(hw.letGo)
	return hw
}

func (hw *heldWrite) letGo() { hw.once.Do(func() { close(hw.release) }) }

// background runs fn on a goroutine and returns a channel that is closed
// when it returned.
func background(fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	return done
}

func returned(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Abort while a write is in flight waits for it, then removes the temp
// file and returns; the write's error is no longer anyone's. The bubble
// (synctest) tells when every goroutine waits, so a call that would
// return is seen to have returned, with no wall-clock wait.
func TestWriteBehindAbortInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error // what the held write does
	}{
		{"write succeeds", nil},
		{"write fails", errWriteFault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, w, direct := newPackWriter(t)
				temp := w.f.Name()
				if !direct {
					if _, err := w.Write(randomBytes(1, directChunk+5)); err != nil {
						t.Fatal(err)
					}
					if err := w.Abort(); err != nil {
						t.Fatalf("abort: %v", err)
					}
					if _, err := os.Stat(temp); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("temp file after abort: %v", err)
					}
					return
				}
				hw := newHeldWrite(t, b, tc.err)
				var werr error
				wrote := background(func() { _, werr = w.Write(randomBytes(1, directChunk+5)) })
				<-hw.entered
				synctest.Wait()
				if !returned(wrote) {
					hw.letGo()
					<-wrote
					t.Fatal("Write waited for the direct write it started: nothing is written behind")
				}
				if werr != nil {
					t.Fatalf("write: %v", werr)
				}
				var aerr error
				aborted := background(func() { aerr = w.Abort() })
				synctest.Wait()
				if returned(aborted) {
					t.Error("Abort returned while a write to the file was in flight")
				}
				hw.letGo()
				<-aborted
				if aerr != nil {
					t.Errorf("abort: %v", aerr)
				}
				if !hw.presentAfter {
					t.Error("the temp file was removed before its write in flight went ahead")
				}
				if _, err := os.Stat(temp); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("temp file after abort: %v", err)
				}
				if left := tempFiles(t, b); len(left) > 0 {
					t.Errorf("temp files left after abort: %v", left)
				}
			})
		})
	}
}

// While one buffer is written, Writes that fit in the other go ahead:
// the caller (the store's writer, holding its lock) waits for the disk
// only when both buffers are full. Sync waits for the write in flight
// before the tail goes, so the file commits whole.
func TestWriteBehindNextWriteDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, w, direct := newPackWriter(t)
		if !direct {
			t.Log("no write-behind without O_DIRECT: nothing to wait for")
			return
		}
		hw := newHeldWrite(t, b, nil)
		first := randomBytes(1, directChunk+5)
		if _, err := w.Write(first); err != nil { // starts the held write
			t.Fatal(err)
		}
		<-hw.entered
		small := randomBytes(2, 64<<10)
		var werr error
		wrote := background(func() { _, werr = w.Write(small) })
		synctest.Wait()
		var serr error
		if returned(wrote) {
			// A writer is one caller's: Sync only once Write returned.
			synced := background(func() { serr = w.Sync() })
			synctest.Wait()
			if returned(synced) {
				t.Error("Sync returned while a write to the file was in flight")
			}
			hw.letGo()
			<-synced
		} else {
			t.Errorf("a Write of %d bytes, which fits in the free staging buffer, waited for the write in flight", len(small))
			hw.letGo()
			<-wrote
			serr = w.Sync()
		}
		if werr != nil || serr != nil {
			t.Fatalf("write: %v; sync: %v", werr, serr)
		}
		if err := w.Commit(context.Background(), packName); err != nil {
			t.Fatalf("commit: %v", err)
		}
		got, err := os.ReadFile(b.Path(backend.Handle{Type: backend.Packs, Name: packName}))
		if err != nil {
			t.Fatal(err)
		}
		if want := append(first, small...); string(got) != string(want) {
			t.Errorf("committed %d bytes differing from the %d written", len(got), len(want))
		}
	})
}
