package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/recall-backup/recall/chunkstore/backend/faulty"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

func testID(b byte) (i ID) {
	for k := range i {
		i[k] = b ^ byte(k)
	}
	return
}

func TestPackHeaderGolden(t *testing.T) {
	entries := []PackEntry{
		{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 100, RawLength: 4096, ID: testID(1)},
		{Type: DataBlob, Comp: compNone, Offset: 100, Length: 7, RawLength: 7, ID: testID(2)},
		{Type: TreeBlob, Comp: compNone, Offset: 107, Length: 50, RawLength: 50, ID: testID(3)},
	}
	hdr := encodePackHeader(entries, &keys{})
	golden.Check(t, "pack-header-v1.golden", hdr)
	hl, err := packHeaderLength(hdr[len(hdr)-packTrailerLen:])
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePackHeader(hdr[len(hdr)-packTrailerLen-hl:len(hdr)-packTrailerLen], &keys{}, 157+int64(len(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Errorf("entry %d: got %+v want %+v", i, got[i], entries[i])
		}
	}
	bad := append([]byte{}, hdr...)
	bad[10] ^= 1
	if _, err := decodePackHeader(bad[:len(bad)-packTrailerLen], &keys{}, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped header byte: %v, want ErrCorrupt", err)
	}
}

func TestIndexFileGolden(t *testing.T) {
	packs := []packRecord{
		{id: testID(7), entries: []PackEntry{{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 10, RawLength: 20, ID: testID(1)}}},
		{id: testID(8), entries: []PackEntry{{Type: TreeBlob, Offset: 0, Length: 5, RawLength: 5, ID: testID(2)},
			{Type: TreeBlob, Offset: 5, Length: 6, RawLength: 6, ID: testID(3)}}},
	}
	b := encodeIndexFile(packs, &keys{})
	golden.Check(t, "index-v1.golden", b)
	got, err := decodeIndexFile(b, &keys{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[1].entries) != 2 || got[1].entries[1] != packs[1].entries[1] || got[0].id != packs[0].id {
		t.Errorf("round trip: %+v", got)
	}
}

func newStore(t testing.TB, encrypt bool) (string, *Store) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Init(dir, InitOptions{Encrypt: encrypt, Password: "pw", KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	// The store's tests run over the fault-injecting wrapper, with no
	// fault set unless a test sets one (faultsOf).
	s, err := OpenBackend(faulty.New(local.Open(dir)), OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestStoreRoundTrip(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			old := PackTargetSize
			PackTargetSize = 1 << 20
			defer func() { PackTargetSize = old }()
			dir, s := newStore(t, enc)
			lock, w := openWriter(t, s)
			blobs := map[ID][]byte{}
			for i := 0; i < 40; i++ {
				var data []byte
				if i%2 == 0 {
					data = randBytes(int64(i), 100_000+i)
				} else {
					data = bytes.Repeat([]byte("compressible "), 10_000+i)
				}
				id := s.Hash(data)
				blobs[id] = data
				if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
					t.Fatal(err)
				}
				if fresh, _ := w.SaveBlob(DataBlob, id, data); fresh {
					t.Error("saving a blob twice stored it twice")
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			lock.Unlock()
			s.Close()
			s2, err := Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range blobs {
				got, err := s2.LoadBlob(id, nil)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("blob %s: err %v, equal %v", id.Short(), err, bytes.Equal(got, want))
				}
			}
			if s2.BlobCount() != len(blobs) {
				t.Errorf("index has %d blobs, want %d", s2.BlobCount(), len(blobs))
			}
			// Rebuild from pack headers alone.
			os.RemoveAll(filepath.Join(dir, "index"))
			os.Mkdir(filepath.Join(dir, "index"), 0o700)
			s3, err := Open(dir, OpenOptions{Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range blobs {
				if got, err := s3.LoadBlob(id, nil); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("after index rebuild, blob %s: %v", id.Short(), err)
				}
			}
			ids := 0
			s3.ListPacks(func(id ID, _ int64) error {
				if pc, err := s3.CheckPack(id); err != nil || pc.Header != nil || len(pc.Bad) > 0 {
					t.Errorf("pack %s: %v %+v", id, err, pc)
				}
				ids++
				return nil
			})
			if ids < 2 {
				t.Errorf("%d packs, want several", ids)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	dir, _ := newStore(t, true)
	before, _ := os.ReadFile(filepath.Join(dir, "config"))
	if _, err := Open(dir, OpenOptions{Password: "nope"}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := Open(dir, OpenOptions{}); !errors.Is(err, ErrNoPassword) {
		t.Errorf("no password: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "config"))
	if !bytes.Equal(before, after) {
		t.Error("config changed")
	}
}

// openWriter takes s's writer lock and opens a writer.
func openWriter(t testing.TB, s *Store) (*Lock, *Writer) {
	t.Helper()
	lock, err := s.LockWriter(context.Background(), "test", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := lock.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	return lock, w
}

// saveRandom takes s's writer lock and saves n random bytes from seed as
// one data blob.
func saveRandom(t *testing.T, s *Store, seed int64, n int) (*Lock, *Writer, []byte, ID) {
	t.Helper()
	lock, w := openWriter(t, s)
	data := randBytes(seed, n)
	id := s.Hash(data)
	if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	return lock, w, data, id
}

// A flipped byte is found in a small blob (read through the page cache)
// and in a large one (read with O_DIRECT in pieces hashed as they arrive,
// where the file system has it), the flip in its third piece.
func TestCorruptBlobDetected(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, c := range []struct{ size, flip int }{{50_000, 100}, {1_100_000, 2*directPiece + 1000}} {
			_, s := newStore(t, enc)
			_, w, _, id := saveRandom(t, s, 1, c.size)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			pack, _ := s.PackOf(id)
			p := s.packPath(pack)
			b, _ := os.ReadFile(p)
			b[c.flip] ^= 0x40
			os.WriteFile(p, b, 0o600)
			s.Close()
			if _, err := s.LoadBlob(id, nil); !errors.Is(err, ErrCorrupt) {
				t.Errorf("encrypted=%v, %d bytes: flipped byte read back with err %v", enc, c.size, err)
			}
			if pc, err := s.CheckPack(pack); err != nil || len(pc.Bad) != 1 {
				t.Errorf("encrypted=%v, %d bytes: CheckPack found %+v, %v; want 1 bad blob", enc, c.size, pc, err)
			}
		}
	}
}

func TestOrphanPackReused(t *testing.T) {
	dir, s := newStore(t, false)
	lock, w, data, id := saveRandom(t, s, 3, 70_000)
	// Finish the pack but "crash" before the index file.
	finishWithoutIndex(t, w)
	lock.Unlock()
	s2, _ := Open(dir, OpenOptions{})
	if !s2.Has(id) {
		t.Fatal("blob of an unindexed pack is not found")
	}
	l2, w2 := openWriter(t, s2)
	defer l2.Unlock()
	if fresh, _ := w2.SaveBlob(DataBlob, id, data); fresh {
		t.Error("blob of the orphan pack was stored again")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "index"))
	if len(ents) != 1 {
		t.Errorf("%d index files after adopting the orphan pack, want 1", len(ents))
	}
}

func TestLockNamesHolder(t *testing.T) {
	_, s := newStore(t, false)
	l, err := s.LockWriter(context.Background(), "backup of /srv", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	_, err = s.LockWriter(context.Background(), "other", 0, nil)
	if !errors.Is(err, ErrLocked) || !bytes.Contains([]byte(err.Error()), []byte("backup of /srv")) {
		t.Errorf("second lock: %v", err)
	}
}

func TestReadDirectWindows(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := randBytes(9, 3*directPiece+5*readAlign+123)
	os.WriteFile(p, data, 0o600)
	buffered, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer buffered.Close()
	files := []*os.File{buffered}
	if direct, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
		defer direct.Close()
		files = append(files, direct)
	}
	scratch := make([]byte, len(data)+3*readAlign)
	cases := []struct{ off, n int }{
		{0, 10}, {1, readAlign}, {readAlign - 1, 2}, {100, 2 * readAlign}, {len(data) - 7, 7},
		// Several pieces, read at once and hashed as they arrive.
		{0, len(data)}, {100, 2*directPiece + 7}, {directPiece - 1, directPiece + 2}, {len(data) - directPiece - 5, directPiece + 5},
	}
	for _, f := range files {
		for _, c := range cases {
			for i, dst := range [][]byte{nil, scratch, scratch[3:]} {
				got, sum, err := readDirect(f, int64(c.off), c.n, dst, i != 1)
				want := data[c.off : c.off+c.n]
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("off %d n %d: %v", c.off, c.n, err)
				}
				if sum != blake3.Sum256(want) {
					t.Fatalf("off %d n %d (split %v): wrong hash", c.off, c.n, i != 1)
				}
				if uintptr(unsafe.Pointer(&got[0]))%readAlign != uintptr(c.off%readAlign) {
					t.Errorf("off %d: window not aligned with the file", c.off)
				}
			}
		}
		for _, c := range []struct{ off, n int }{{len(data) - 3, 10}, {10, len(data)}} {
			for _, split := range []bool{false, true} {
				if _, _, err := readDirect(f, int64(c.off), c.n, nil, split); !errors.Is(err, ErrCorrupt) {
					t.Errorf("read of %d bytes at %d (split %v), past the end: %v", c.n, c.off, split, err)
				}
			}
		}
	}
	// The store reads plaintext blobs with O_DIRECT where the file system has it.
	_, s := newStore(t, false)
	if localOf(s).DirectRefused() {
		t.Log("O_DIRECT unsupported here; the buffered path was used")
	}
}

// Index files are caches: with the index directory gone the store opens,
// every blob reads from its pack's header, and the next writer recreates
// the directory and indexes the packs again.
func TestIndexDirectoryRemoved(t *testing.T) {
	dir, s := newStore(t, true)
	lock, w, data, id := saveRandom(t, s, 3, 70000)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatalf("open without index directory: %v", err)
	}
	defer s.Close()
	if got, err := s.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob without index directory: %v", err)
	}
	lock, _ = openWriter(t, s)
	lock.Unlock()
	ents, err := os.ReadDir(filepath.Join(dir, "index"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("writer did not index the packs again: %v, %d files", err, len(ents))
	}
}

// finishWithoutIndex finishes w's open data pack but writes no index file
// for it: what a writer killed between the two leaves.
func finishWithoutIndex(t *testing.T, w *Writer) {
	t.Helper()
	w.mu.Lock()
	p := w.open[DataBlob]
	w.open[DataBlob] = nil
	w.mu.Unlock()
	if _, err := w.finish(p); err != nil {
		t.Fatal(err)
	}
}

// Inits started together on one directory: exactly one makes the store,
// the others are refused, and the store is the one the winner made
// (its key opens it). Before, each found nothing, each wrote its config,
// and the last rename won, after the first store may have been used.
func TestInitRace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	const n = 6
	var wg sync.WaitGroup
	cfgs := make([]*Config, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfgs[i], errs[i] = Init(dir, InitOptions{Encrypt: true, Password: fmt.Sprintf("pw%d", i), KDFMemoryKB: 1024})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("inits %d and %d both made the store", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, ErrExists):
			t.Errorf("init %d: %v, want ErrExists", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no init made the store")
	}
	s, err := Open(dir, OpenOptions{Password: fmt.Sprintf("pw%d", won)})
	if err != nil {
		t.Fatalf("the winner's passphrase: %v", err)
	}
	if s.Config().ID != cfgs[won].ID {
		t.Errorf("store id %s, the winner made %s", s.Config().ID, cfgs[won].ID)
	}
	s.Close()
}

// A small compressed blob (a tree) is loaded through a buffer of its own
// size, not a 2 MiB one: the pool of stored-bytes buffers is emptied by
// every garbage collection, and an incremental backup loads a tree per
// directory with collections in between.
func TestLoadSmallBlobAllocatesItsSize(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			_, s := newStore(t, enc)
			lock, w := openWriter(t, s)
			data := bytes.Repeat([]byte("tree entry "), 300) // compressed: through the pool
			id := s.Hash(data)
			if _, err := w.SaveBlob(TreeBlob, id, data); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			lock.Unlock()
			dst := make([]byte, 0, 64<<10)
			var before, after runtime.MemStats
			const loads = 20
			runtime.ReadMemStats(&before)
			for range loads {
				runtime.GC() // twice: a pool keeps its buffers over one
				runtime.GC()
				got, err := s.LoadBlob(id, dst)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("load: %v", err)
				}
			}
			runtime.ReadMemStats(&after)
			if per := (after.TotalAlloc - before.TotalAlloc) / loads; per > 256<<10 {
				t.Errorf("loading a %d-byte tree blob allocated %d bytes per load after a collection", len(data), per)
			}
		})
	}
}

// CheckPackData checks a pack read whole and leaves its bytes as they
// were, encrypted or not: a tape write streams the same buffer to the
// drive. It opened encrypted blobs in place, and the tape got plaintext
// where the store's ciphertext belonged. Damage it finds is recorded.
func TestCheckPackDataKeepsBytes(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			dir, s := newStore(t, enc)
			lock, w := openWriter(t, s)
			for i := range 4 {
				data := randBytes(int64(i), 50_000)
				if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			lock.Unlock()
			var packs []ID
			if err := s.ListPacks(func(id ID, _ int64) error { packs = append(packs, id); return nil }); err != nil || len(packs) != 1 {
				t.Fatalf("packs %v, %v", packs, err)
			}
			path := filepath.Join(dir, "packs", packs[0].String()[:2], packs[0].String())
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			before := bytes.Clone(b)
			if pc := s.CheckPackData(packs[0], b); pc.Header != nil || len(pc.Bad) != 0 || len(pc.Entries) != 4 {
				t.Fatalf("a sound pack: %+v", pc)
			}
			if !bytes.Equal(b, before) {
				t.Fatal("the check changed the pack's bytes")
			}
			b[100] ^= 1
			if pc := s.CheckPackData(packs[0], b); len(pc.Bad) != 1 {
				t.Fatalf("a flipped bit: %+v, want one bad blob", pc)
			}
			if d := s.DamagedBlobs(); len(d) != 1 || d[0].Pack != packs[0] {
				t.Errorf("recorded damage %+v", d)
			}
		})
	}
}

// A pack whose place holds a directory or a link that cannot be followed
// is reported as such, not only as missing: an administrator sees what to
// move. (It said "pack file is missing" and nothing more.)
func TestPackPlaceNotAFile(t *testing.T) {
	dir, s := newStore(t, false)
	lock, w := openWriter(t, s)
	data := randBytes(1, 50_000)
	if _, err := w.SaveBlob(DataBlob, s.Hash(data), data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	var id ID
	if err := s.ListPacks(func(p ID, _ int64) error { id = p; return nil }); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "packs", id.String()[:2], id.String())
	if err := os.Rename(home, filepath.Join(t.TempDir(), "saved")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		make func() error
		want string
	}{
		{func() error { return os.Symlink(home, home) }, "is a symbolic link that cannot be followed"},
		{func() error { os.Remove(home); return os.Mkdir(home, 0o700) }, "is a directory"},
	} {
		if err := c.make(); err != nil {
			t.Fatal(err)
		}
		var got string
		for _, pi := range s.Packs() {
			if pi.ID == id {
				got = pi.Problem
			}
		}
		if !strings.Contains(got, c.want) || !strings.Contains(got, home) {
			t.Errorf("problem %q, want it to name %s and say it %s", got, home, c.want)
		}
	}
}
