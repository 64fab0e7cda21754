package engine

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// packReads records the pack reads of restores while a test runs.
type packReads struct {
	mu     sync.Mutex
	visits map[chunkstore.ID]int
	asked  map[chunkstore.ID]int // chunk -> times asked for
	calls  int
}

func countPackReads(t *testing.T) *packReads {
	pr := &packReads{visits: map[chunkstore.ID]int{}, asked: map[chunkstore.ID]int{}}
	// Visits are counted: a walk slowed by a busy machine (or -race) must
	// not be cut into batches by idle readers (handOverIfIdle).
	oldPatience := planPatience
	planPatience = time.Hour
	t.Cleanup(func() { planPatience = oldPatience })
	old := packReader
	packReader = func(ctx context.Context, r *Reader, pack chunkstore.ID, ids []chunkstore.ID, fn func(chunkstore.ID, []byte, error)) error {
		pr.mu.Lock()
		pr.visits[pack]++
		pr.calls++
		for _, id := range ids {
			pr.asked[id]++
		}
		pr.mu.Unlock()
		return old(ctx, r, pack, ids, fn)
	}
	t.Cleanup(func() { packReader = old })
	return pr
}

// manyFiles makes n files of least to least+spread random bytes, the
// i-th named name(i).
func manyFiles(seed int64, n, least, spread int, name func(int) string) map[string][]byte {
	rng := rand.New(rand.NewSource(seed))
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		b := make([]byte, least+rng.Intn(spread))
		rng.Read(b)
		files[name(i)] = b
	}
	return files
}

// askedOnce checks that every chunk asked for was asked for once, and as
// many as the point has.
func (pr *packReads) askedOnce(t *testing.T, chunks map[chunkstore.ID]bool) {
	t.Helper()
	for id, n := range pr.asked {
		if n != 1 {
			t.Errorf("chunk %s asked for %d times", id.Short(), n)
		}
	}
	if len(pr.asked) != len(chunks) {
		t.Errorf("%d chunks asked for, the point has %d", len(pr.asked), len(chunks))
	}
}

// addFiles adds files to the damage store's source and backs it up again.
func (ds *damageStore) addFiles(files map[string][]byte) {
	ds.t.Helper()
	for rel, b := range files {
		os.MkdirAll(filepath.Join(ds.src, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(ds.src, rel), b, 0o644); err != nil {
			ds.t.Fatal(err)
		}
		ds.files[rel] = b
	}
	ds.point = ds.backup().ID
}

// pointChunks returns the distinct data chunks of the first point and the
// packs they are in.
func (ds *damageStore) pointChunks() (chunks, packs map[chunkstore.ID]bool) {
	ds.t.Helper()
	chunks, packs = map[chunkstore.ID]bool{}, map[chunkstore.ID]bool{}
	r := ds.open()
	for rel := range ds.files {
		for _, e := range ds.node(rel).Extents {
			if !e.Hole {
				chunks[e.ID] = true
				packs[packOf(r, e.ID)] = true
			}
		}
	}
	return chunks, packs
}

// A restore reads each pack once and each chunk once, however many files
// (or places in one file) need it.
func TestRestoreReadsEachPackOnce(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			ds := newDamageStore(t, enc)
			extra := map[string][]byte{}
			for rel, b := range ds.files {
				if rel[0] == 'd' && rel[len(rel)-1] < '3' {
					extra["copies/"+rel] = b // the same chunks, elsewhere in the tree
				}
			}
			ds.addFiles(extra)
			chunks, packs := ds.pointChunks()
			if len(packs) < 3 {
				t.Fatalf("the point's chunks are in %d packs; the test needs several", len(packs))
			}
			pr := countPackReads(t)
			if failed := ds.restore(ds.point); len(failed) > 0 {
				t.Fatalf("damage reported: %v", keys(failed))
			}
			for pack, n := range pr.visits {
				if n != 1 || !packs[pack] {
					t.Errorf("pack %s read %d times (in the point: %v)", pack.Short(), n, packs[pack])
				}
			}
			if len(pr.visits) != len(packs) {
				t.Errorf("%d packs read, the point's chunks are in %d", len(pr.visits), len(packs))
			}
			for id := range chunks {
				if pr.asked[id] != 1 {
					t.Errorf("chunk %s asked for %d times", id.Short(), pr.asked[id])
				}
			}
			if len(pr.asked) != len(chunks) {
				t.Errorf("%d chunks asked for, the point has %d", len(pr.asked), len(chunks))
			}
		})
	}
}

// A restore of fewer places than a batch is planned whole and reads each
// pack once, however the backup mixed files in packs. A larger one is
// planned and read in batches while the walk goes on; every file comes
// out whole, each chunk is read once, and a pack at most once per batch.
func TestRestoreInBatches(t *testing.T) {
	const small = 512 // places of a batch, for the second part
	ds := newDamageStore(t, false)
	ds.addFiles(manyFiles(3, 3*small, 500, 3000, func(i int) string { return fmt.Sprintf("many/g%02d/f%04d", i/100, i) }))
	chunks, packs := ds.pointChunks()
	if len(chunks) <= 2*small {
		t.Fatalf("%d chunks: the test needs more batches", len(chunks))
	}
	pr := countPackReads(t)
	if failed := ds.restore(ds.point); len(failed) > 0 {
		t.Fatalf("damage reported: %v", keys(failed))
	}
	for pack, n := range pr.visits {
		if n != 1 {
			t.Errorf("one batch: pack %s read %d times", pack.Short(), n)
		}
	}
	old := batchPlaces
	batchPlaces = small
	t.Cleanup(func() { batchPlaces = old })
	// Again with few descriptors: most files are closed after they are
	// created and opened again to be written.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := rl
	low.Cur = uint64(len(fds)) + 200
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if holdLimit() >= int64(len(ds.files)) {
		t.Errorf("with %d descriptors a restore holds %d files open", low.Cur, holdLimit())
	}
	failed := ds.restore(ds.point)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if len(failed) > 0 {
		t.Fatalf("few descriptors: damage reported: %v", keys(failed))
	}
	clear(pr.visits)
	clear(pr.asked)
	// Without the scan of where packs are needed again (the next test
	// has it), each batch visits the packs it needs.
	reachScan = false
	t.Cleanup(func() { reachScan = true })
	if failed := ds.restore(ds.point); len(failed) > 0 {
		t.Fatalf("damage reported: %v", keys(failed))
	}
	places := len(chunks) + filePlaces*len(ds.files)
	batches := (places + batchPlaces - 1) / batchPlaces
	if batches < 3 {
		t.Fatalf("%d places: the test needs more batches", places)
	}
	visits := 0
	for pack, n := range pr.visits {
		visits += n
		if n > batches || !packs[pack] {
			t.Errorf("pack %s read %d times in %d batches (in the point: %v)", pack.Short(), n, batches, packs[pack])
		}
	}
	if visits <= len(packs) {
		t.Errorf("%d packs visited %d times in all: the restore was not read in batches", len(packs), visits)
	}
	pr.askedOnce(t, chunks)
}

// TestRestoreCarriesPacks: a point of several batches whose packs two
// batches need is read with each pack visited about once: the scan ahead of the
// walk tells which packs a later batch needs, and they are carried into
// it. Without the scan the same restore visits some packs twice.
func TestRestoreCarriesPacks(t *testing.T) {
	ds := newDamageStore(t, false)
	// Packs of some 15 files: a pack's places are a small part of a
	// batch's, as a real pack's 1,000 small files are of 2^18 places.
	withPackSize(t, 32<<10)
	ds.addFiles(manyFiles(5, 1500, 500, 3000, func(i int) string { return fmt.Sprintf("many/g%02d/f%04d", i/100, i) }))
	chunks, packs := ds.pointChunks()
	old := batchPlaces
	batchPlaces = 4096
	t.Cleanup(func() { batchPlaces = old })
	places := len(chunks) + filePlaces*len(ds.files)
	if places < 3*batchPlaces || len(packs) < 4 {
		t.Fatalf("%d places in %d packs: the test needs more batches and packs", places, len(packs))
	}
	pr := countPackReads(t)
	// The walk waits for the scan until it has seen far enough, not only
	// while the readers have work: how far the scan got when the readers
	// ran low would decide the visits, and the machine's load that.
	oldHungry := hungryAt
	hungryAt = func(int) int64 { return 0 }
	t.Cleanup(func() { hungryAt = oldHungry })
	restore := func(scan bool) (visits int, batches, carries int64) {
		reachScan = scan
		defer func() { reachScan = true }()
		clear(pr.visits)
		clear(pr.asked)
		h0, c0 := handedOver.Load(), carried.Load()
		if failed := ds.restore(ds.point); len(failed) > 0 {
			t.Fatalf("scan %v: damage reported: %v", scan, keys(failed))
		}
		for id, n := range pr.asked {
			if n != 1 || !chunks[id] {
				t.Errorf("scan %v: chunk %s asked for %d times (in the point: %v)", scan, id.Short(), n, chunks[id])
			}
		}
		if len(pr.asked) != len(chunks) {
			t.Errorf("scan %v: %d chunks asked for, the point has %d", scan, len(pr.asked), len(chunks))
		}
		for _, n := range pr.visits {
			visits += n
		}
		return visits, handedOver.Load() - h0, carried.Load() - c0
	}
	without, batches, _ := restore(false)
	if batches < 3 || without <= len(packs) {
		t.Fatalf("without the scan: %d packs visited %d times in %d batches; the test needs packs that batches share", len(packs), without, batches)
	}
	with, batches, carries := restore(true)
	t.Logf("%d packs: %d visits without the scan, %d with it (%d batches, %d packs carried)", len(packs), without, with, batches, carries)
	// Each pack once, mostly: a carry is bounded by a batch's places, and
	// how the savers filled the packs varies from run to run.
	if batches < 3 || carries == 0 || with < len(packs) || with-len(packs) > (without-len(packs))/4 {
		t.Errorf("with the scan: %d packs visited %d times in %d batches, %d carried into a next one; want about once each (%d visits without the scan)",
			len(packs), with, batches, carries, without)
	}
}

// TestRestoreSlowScan: a scan that lags far behind the walk (trees from
// an object store) holds no batch for good: the walk hands its batches
// over once the readers run low, the restore is exact, and it ends long
// before the scan would have.
func TestRestoreSlowScan(t *testing.T) {
	ds := newDamageStore(t, false)
	withPackSize(t, 32<<10)
	ds.addFiles(manyFiles(6, 600, 500, 3000, func(i int) string { return fmt.Sprintf("many/g%02d/f%04d", i/100, i) }))
	old, oldPatience := batchPlaces, planPatience
	batchPlaces, planPatience = 1024, 20*time.Millisecond
	t.Cleanup(func() { batchPlaces, planPatience = old, oldPatience })
	var visited atomic.Int64
	besideVisit = func() {
		visited.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { besideVisit = nil })
	h0 := handedOver.Load()
	if failed := ds.restore(ds.point); len(failed) > 0 {
		t.Fatalf("damage reported: %v", keys(failed))
	}
	batches := handedOver.Load() - h0
	t.Logf("%d batches, the scan visited %d entries of %d files", batches, visited.Load(), len(ds.files))
	if n := visited.Load(); batches < 3 || n >= int64(len(ds.files)) {
		t.Errorf("%d batches handed over, the scan visited %d entries of %d files: want several batches, and the restore done before the scan", batches, n, len(ds.files))
	}
}

// TestRestoreLargeFileInBatches: one file of more chunks than a batch
// has places (an image: the scan looks it up in pieces) is planned and
// read in several batches, each chunk asked for once, and comes back
// exact.
func TestRestoreLargeFileInBatches(t *testing.T) {
	ds := newDamageStore(t, false)
	ds.addFiles(manyFiles(7, 1, 40<<20, 1, func(int) string { return "big/image" }))
	chunks, _ := ds.pointChunks()
	old := batchPlaces
	batchPlaces = 16
	t.Cleanup(func() { batchPlaces = old })
	pr := countPackReads(t)
	h0 := handedOver.Load()
	if failed := ds.restore(ds.point); len(failed) > 0 {
		t.Fatalf("damage reported: %v", keys(failed))
	}
	if b := handedOver.Load() - h0; b < 3 {
		t.Errorf("%d batches handed over: the test needs several", b)
	}
	pr.askedOnce(t, chunks)
}

// A walk slow to plan (trees that take a round trip each) does not keep
// the readers idle until it ends: once they have waited planPatience,
// they get what is planned, and the restore is still exact.
func TestRestoreSlowWalkFeedsReaders(t *testing.T) {
	ds := newDamageStore(t, false)
	ds.addFiles(manyFiles(4, 200, 2000, 3000, func(i int) string { return fmt.Sprintf("slow/d%02d/f%03d", i/10, i) }))
	oldPatience := planPatience
	planPatience = 5 * time.Millisecond
	var mu sync.Mutex
	var firstRead, walkEnd time.Time
	treeLoaded = func() {
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		walkEnd = time.Now()
		mu.Unlock()
	}
	oldReader := packReader
	packReader = func(ctx context.Context, r *Reader, pack chunkstore.ID, ids []chunkstore.ID, fn func(chunkstore.ID, []byte, error)) error {
		mu.Lock()
		if firstRead.IsZero() {
			firstRead = time.Now()
		}
		mu.Unlock()
		return oldReader(ctx, r, pack, ids, fn)
	}
	t.Cleanup(func() { planPatience, treeLoaded, packReader = oldPatience, nil, oldReader })
	if failed := ds.restore(ds.point); len(failed) > 0 {
		t.Fatalf("damage reported: %v", keys(failed))
	}
	if firstRead.IsZero() || !firstRead.Before(walkEnd) {
		t.Errorf("first pack read at %v, the walk's last tree loaded at %v: the readers waited for the whole walk", firstRead, walkEnd)
	}
}

// Verify walks a tree shared by several points once, and still reports
// its damage in every point that has it, at that point's path.
func TestVerifyWalksSharedTreesOnce(t *testing.T) {
	for _, readData := range []bool{false, true} {
		t.Run(fmt.Sprintf("read-data=%v", readData), func(t *testing.T) {
			ds := newDamageStore(t, false)
			first := ds.point
			ds.addFiles(map[string][]byte{"d2/new": []byte("only in the second point")})
			second := ds.point
			var mu sync.Mutex
			loads := map[chunkstore.ID]int{}
			old := verifyLoadTree
			verifyLoadTree = func(r *Reader, id chunkstore.ID) (*Tree, error) {
				mu.Lock()
				loads[id]++
				mu.Unlock()
				return old(r, id)
			}
			t.Cleanup(func() { verifyLoadTree = old })

			// d0 is the same tree in both points; its file f1 is damaged.
			pack, off, _ := ds.packOf(ds.node("d0/f1").Extents[0].ID)
			flip(t, pack, off+5)
			if !readData {
				// Plain verify judges chunks by the record, as a restore
				// that read them would leave it.
				ds.restore(second)
			}
			rep, err := Verify(context.Background(), ds.open(), VerifyOptions{ReadData: readData})
			if rep == nil {
				t.Fatalf("verify: %v", err)
			}
			got := map[string][]string{}
			for _, d := range rep.Damage {
				got[d.Point] = append(got[d.Point], d.Path)
			}
			for _, p := range []chunkstore.ID{first, second} {
				if ps := got[p.String()]; len(ps) != 1 || ps[0] != "d0/f1" {
					t.Errorf("point %s: damage at %q, want [d0/f1]", p.Short(), ps)
				}
			}
			if failed := ds.restore(second); len(failed) != 1 || !failed["d0/f1"] {
				t.Errorf("restore of the second point fails on %v", keys(failed))
			}
			for id, n := range loads {
				if n != 1 {
					t.Errorf("tree %s read %d times", id.Short(), n)
				}
			}
			// Root, d0, d1, d2 of each point; d0 and d1 shared.
			if rep.Trees != 6 || len(loads) != 6 {
				t.Errorf("%d trees counted, %d read; want 6 distinct", rep.Trees, len(loads))
			}
		})
	}
}

// A file of one stored chunk is created by the reader that writes that
// chunk, not by the walk; one whose chunk never reaches a reader (a pass
// stopped early) is created when it is finished, so every file of the
// point is there, with its metadata, either way.
func TestRestoreCreatesOneChunkFilesLate(t *testing.T) {
	ts := newTestStore(t)
	src := t.TempDir()
	files := map[string][]byte{
		"a":        []byte("one chunk"),
		"dir/b":    make([]byte, 5000),
		"dir/c":    []byte("another"),
		"empty":    nil,
		"dir/more": []byte("and one more"),
	}
	for rel, b := range files {
		os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755)
		if err := os.WriteFile(filepath.Join(src, rel), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	files["dir/b"][0] = 1 // not all zeroes: stored, not a hole
	os.WriteFile(filepath.Join(src, "dir/b"), files["dir/b"], 0o640)
	p, err := ts.backup(BackupOptions{Path: src, Source: "late"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dropped := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunks dropped=%v", dropped), func(t *testing.T) {
			if dropped {
				old := packReader
				packReader = func(context.Context, *Reader, chunkstore.ID, []chunkstore.ID, func(chunkstore.ID, []byte, error)) error {
					return nil
				}
				t.Cleanup(func() { packReader = old })
			}
			target := filepath.Join(t.TempDir(), "t")
			res, err := Restore(context.Background(), ts.r, p, RestoreOptions{Target: target})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if res.Files != int64(len(files)) {
				t.Errorf("restored %d files, want %d", res.Files, len(files))
			}
			for rel, want := range files {
				path := filepath.Join(target, rel)
				st, err := os.Lstat(path)
				if err != nil {
					t.Errorf("%s: %v", rel, err)
					continue
				}
				if !st.Mode().IsRegular() || st.Mode().Perm() != 0o640 {
					t.Errorf("%s: mode %v, want a regular file of mode 0640", rel, st.Mode())
				}
				if got, _ := os.ReadFile(path); !dropped && string(got) != string(want) {
					t.Errorf("%s: %q, want %q", rel, got, want)
				}
			}
		})
	}
}
