package engine

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// gcFixture is a store on disk that tests back up into, forget from and
// collect, each step through its own open of the store as separate
// processes would.
type gcFixture struct {
	t   *testing.T
	dir string
}

func newGCFixture(t *testing.T) *gcFixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := chunkstore.Init(dir, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return &gcFixture{t: t, dir: dir}
}

func (f *gcFixture) open() *Store {
	f.t.Helper()
	s, err := Open(f.dir, chunkstore.OpenOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

// backup backs src up as source in a shared session of its own.
func (f *gcFixture) backup(src, source string) *Point {
	f.t.Helper()
	s := f.open()
	ss, err := s.Session(context.Background(), SessionOptions{Purpose: "test backup", Source: source, Blobs: true})
	if err != nil {
		f.t.Fatal(err)
	}
	defer ss.Close()
	p, err := Backup(context.Background(), ss, BackupOptions{Path: src, Source: source})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *gcFixture) forget(p *Point) {
	f.t.Helper()
	if _, err := f.open().Forget(context.Background(), p.ID.String(), "", LockOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gcFixture) gc(o GCOptions) *GCReport {
	f.t.Helper()
	if o.IndexGrace == 0 {
		o.IndexGrace = -1
	}
	o.Log = f.t.Logf
	rep, err := GC(context.Background(), f.open(), o)
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

// check verifies every blob of the store and that each point restores to
// the files it was made of.
func (f *gcFixture) check(want map[chunkstore.ID]map[string][]byte) {
	f.t.Helper()
	s := f.open()
	rep, err := Verify(context.Background(), s.Reader(), VerifyOptions{ReadData: true})
	if err != nil {
		f.t.Fatalf("%v: bad packs %v, damage %v", err, rep.BadPacks, rep.Damage)
	}
	if len(rep.Damage) > 0 || len(rep.BadPacks) > 0 || len(rep.DamagedPoints) > 0 {
		f.t.Fatalf("verify after gc: damage %v, bad packs %v, damaged points %v", rep.Damage, rep.BadPacks, rep.DamagedPoints)
	}
	for id, files := range want {
		p, err := s.Reader().LoadPoint(id)
		if err != nil {
			f.t.Fatalf("point %s: %v", id.Short(), err)
		}
		target := f.t.TempDir()
		if _, err := Restore(context.Background(), s.Reader(), p, RestoreOptions{Target: target, Overwrite: true}); err != nil {
			f.t.Fatalf("restore %s: %v", id.Short(), err)
		}
		for name, data := range files {
			got, err := os.ReadFile(filepath.Join(target, name))
			if err != nil || !bytes.Equal(got, data) {
				f.t.Fatalf("point %s: %s restored wrong (%d bytes, %v), want %d bytes", id.Short(), name, len(got), err, len(data))
			}
		}
	}
}

// packBytes is the size of every pack file of the store.
func (f *gcFixture) packBytes() (n int, size int64) {
	f.t.Helper()
	err := filepath.Walk(filepath.Join(f.dir, "packs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
			size += fi.Size()
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return n, size
}

// randomFiles replaces the files of dir with random ones of the sizes given.
func randomFiles(t *testing.T, dir string, rnd *rand.ChaCha8, sizes map[string]int) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, n := range sizes {
		b := make([]byte, n)
		rnd.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

func withPackSize(t testing.TB, n int) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = n
	t.Cleanup(func() { chunkstore.PackTargetSize = old })
}

func TestGCCollects(t *testing.T) {
	cases := []struct {
		name string
		// first and second: files of the two backups; the first point is
		// forgotten.
		first, second map[string]int
		wantRewritten bool
	}{
		{"all dead", map[string]int{"a": 3 << 20}, map[string]int{"b": 3 << 20}, false},
		// One pack holds a (dead) and b (live, and small): rewritten.
		{"mostly dead", map[string]int{"a": 3 << 20, "b": 300 << 10}, map[string]int{"b": 0}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			withPackSize(t, 64<<20)
			f := newGCFixture(t)
			rnd := rand.NewChaCha8([32]byte{1})
			src := t.TempDir()
			files1 := randomFiles(t, src, rnd, c.first)
			p1 := f.backup(src, "s")
			keep := map[string][]byte{}
			for name, n := range c.second {
				if n == 0 {
					keep[name] = files1[name] // unchanged
					continue
				}
				for _, old := range []string{"a", "b"} {
					os.Remove(filepath.Join(src, old))
				}
				for k, v := range randomFiles(t, src, rnd, map[string]int{name: n}) {
					keep[k] = v
				}
			}
			for name := range files1 {
				if _, ok := keep[name]; !ok {
					os.Remove(filepath.Join(src, name))
				}
			}
			p2 := f.backup(src, "s")
			f.forget(p1)
			_, before := f.packBytes()
			rep := f.gc(GCOptions{})
			if rep.Pending || rep.PacksDeleted == 0 || rep.Freed <= 0 {
				t.Fatalf("gc freed nothing: %+v", rep)
			}
			if got := rep.PacksRewritten > 0; got != c.wantRewritten {
				t.Errorf("packs rewritten: %d, want some: %v", rep.PacksRewritten, c.wantRewritten)
			}
			_, after := f.packBytes()
			if before-after != rep.Freed {
				t.Errorf("pack bytes went from %d to %d, the report says %d freed", before, after, rep.Freed)
			}
			f.check(map[chunkstore.ID]map[string][]byte{p2.ID: keep})

			// The size a fresh store holding only the second point has.
			fresh := newGCFixture(t)
			fresh.backup(src, "s")
			_, want := fresh.packBytes()
			if after > want+want/10 {
				t.Errorf("after gc the packs hold %d bytes; a fresh store of the points kept holds %d", after, want)
			}
			// Nothing is left to collect.
			if rep := f.gc(GCOptions{}); rep.PacksDeleted != 0 || rep.PacksHidden != 0 {
				t.Errorf("second gc still collects: %+v", rep)
			}
		})
	}
}

// A session that started before the hide may deduplicate against a
// hidden pack and commit a point that needs it: the collection waits for
// it, then indexes that pack again instead of deleting it.
func TestGCRestoresWhatAnOlderSessionUsed(t *testing.T) {
	withPackSize(t, 64<<20)
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{2})
	src := t.TempDir()
	files := randomFiles(t, src, rnd, map[string]int{"a": 2 << 20})
	p1 := f.backup(src, "s")
	f.forget(p1)

	// A backup of another source starts (its index holds p1's blobs)...
	s := f.open()
	ss, err := s.Session(context.Background(), SessionOptions{Purpose: "test backup", Source: "t", Blobs: true})
	if err != nil {
		t.Fatal(err)
	}
	// ...the collection hides p1's packs and must wait for it (longer than
	// it may)...
	rep := f.gc(GCOptions{Wait: 50 * time.Millisecond})
	if !rep.Pending || len(rep.WaitingFor) != 1 || rep.PacksHidden == 0 || rep.PacksDeleted != 0 {
		t.Fatalf("gc beside a session: %+v", rep)
	}
	// ...which deduplicates against the hidden blobs and commits.
	p2, err := Backup(context.Background(), ss, BackupOptions{Path: src, Source: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Stats.NewBytes != 0 {
		t.Fatalf("the older session stored %d new bytes: it was meant to deduplicate", p2.Stats.NewBytes)
	}
	ss.Close()
	rep = f.gc(GCOptions{Wait: time.Hour}) // it has ended: no wait
	if rep.Pending || rep.PacksRestored == 0 {
		t.Fatalf("gc after the session ended: %+v", rep)
	}
	f.check(map[chunkstore.ID]map[string][]byte{p2.ID: files})
}

// A session that starts after the hide does not see the hidden packs: it
// stores what it needs anew, and the hidden packs go without waiting for
// it.
func TestGCLaterSessionStoresAnew(t *testing.T) {
	withPackSize(t, 64<<20)
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{3})
	src := t.TempDir()
	files := randomFiles(t, src, rnd, map[string]int{"a": 2 << 20})
	p1 := f.backup(src, "s")
	f.forget(p1)

	old := f.open() // opened before the hide: its index is stale
	old.Reader().LoadPoint(p1.ID)
	older, err := f.open().Session(context.Background(), SessionOptions{Purpose: "holds the plan", Source: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if rep := f.gc(GCOptions{}); !rep.Pending {
		t.Fatalf("gc beside a session: %+v", rep)
	}
	ss, err := old.Session(context.Background(), SessionOptions{Purpose: "test backup", Source: "t", Blobs: true})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Backup(context.Background(), ss, BackupOptions{Path: src, Source: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Stats.NewBytes == 0 {
		t.Fatal("a session registered after the hide deduplicated against hidden packs")
	}
	older.Close()
	rep := f.gc(GCOptions{})
	if rep.Pending || rep.PacksDeleted == 0 || rep.PacksRestored != 0 {
		t.Fatalf("gc after the older session ended: %+v", rep)
	}
	ss.Close()
	f.check(map[chunkstore.ID]map[string][]byte{p2.ID: files})
}

func TestGCDryRunChangesNothing(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{4})
	src := t.TempDir()
	randomFiles(t, src, rnd, map[string]int{"a": 1 << 20})
	p1 := f.backup(src, "s")
	f.forget(p1)
	n, size := f.packBytes()
	dry := f.gc(GCOptions{DryRun: true})
	if n2, size2 := f.packBytes(); n2 != n || size2 != size {
		t.Fatalf("dry run changed the packs: %d/%d bytes -> %d/%d", n, size, n2, size2)
	}
	real := f.gc(GCOptions{})
	if dry.PacksDeleted != real.PacksDeleted || dry.BytesDeleted != real.BytesDeleted {
		t.Errorf("dry run said %d packs/%d bytes, the collection deleted %d/%d", dry.PacksDeleted, dry.BytesDeleted, real.PacksDeleted, real.BytesDeleted)
	}
}

// GC and backups of changing data race for 50 rounds: after every round
// the store verifies clean, reading every blob, and every point committed
// while a collection ran restores exactly.
func TestGCRacesBackups(t *testing.T) {
	withPackSize(t, 1<<20) // many packs, so collections hide, rewrite and delete
	f := newGCFixture(t)
	sources := []string{"s0", "s1"}
	srcs := map[string]string{}
	rnd := rand.NewChaCha8([32]byte{5})
	for _, s := range sources {
		srcs[s] = t.TempDir()
		randomFiles(t, srcs[s], rnd, map[string]int{"a": 400 << 10, "b": 300 << 10, "c": 200 << 10})
	}
	type kept struct {
		p     *Point
		files map[string][]byte
	}
	points := map[string][]kept{}
	ctx := context.Background()
	var restored, collected, pending int
	for round := range 50 {
		// Each source changes a file, then is backed up while a
		// collection runs; the oldest points are forgotten first, so the
		// collection has work.
		for _, s := range sources {
			if len(points[s]) > 2 {
				f.forget(points[s][0].p)
				points[s] = points[s][1:]
			}
		}
		done := make(chan error, 1)
		var reps []*GCReport
		go func() {
			for range 2 {
				rep, err := GC(ctx, f.open(), GCOptions{LockOptions: LockOptions{Wait: time.Minute}})
				if err != nil {
					done <- err
					return
				}
				reps = append(reps, rep)
			}
			done <- nil
		}()
		var fresh []kept
		for i, s := range sources {
			// Contents recur (one of five per file), so backups need again
			// blobs of points forgotten earlier, hidden or not.
			name := []string{"a", "b", "c"}[(round+i)%3]
			v := rand.NewChaCha8([32]byte{byte(i), name[0], byte(round % 5)})
			randomFiles(t, srcs[s], v, map[string]int{name: (200 + 100*((round+i)%4)) << 10})
			files := map[string][]byte{}
			for _, n := range []string{"a", "b", "c"} {
				b, err := os.ReadFile(filepath.Join(srcs[s], n))
				if err != nil {
					t.Fatal(err)
				}
				files[n] = b
			}
			k := kept{f.backup(srcs[s], s), files}
			points[s] = append(points[s], k)
			fresh = append(fresh, k)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: gc: %v", round, err)
		}
		for _, r := range reps {
			restored += r.PacksRestored
			collected += r.PacksDeleted
			if r.Pending {
				pending++
			}
		}
		want := map[chunkstore.ID]map[string][]byte{}
		for _, k := range fresh {
			want[k.p.ID] = k.files
		}
		f.check(want)
	}
	// Nothing but the kept points' data is left once the last plan is
	// finished.
	f.gc(GCOptions{})
	all := map[chunkstore.ID]map[string][]byte{}
	for _, ks := range points {
		for _, k := range ks {
			all[k.p.ID] = k.files
		}
	}
	f.check(all)
	t.Logf("packs deleted %d, indexed again %d, collections left pending %d", collected, restored, pending)
	// Whether a backup commits a point needing a hidden pack depends on
	// timing (TestGCRestoresWhatAnOlderSessionUsed makes it happen).
	if collected == 0 || pending == 0 {
		t.Errorf("the race did not race: %d packs deleted, %d collections pending", collected, pending)
	}
}

// A point whose manifest or tree cannot be read might refer to any blob:
// the collection stops before hiding anything, and says what to do.
func TestGCStopsOnUnreadablePoint(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{6})
	src := t.TempDir()
	randomFiles(t, src, rnd, map[string]int{"a": 1 << 20})
	p1 := f.backup(src, "s")
	randomFiles(t, src, rnd, map[string]int{"a": 1 << 20})
	p2 := f.backup(src, "s")
	f.forget(p1)
	if err := os.WriteFile(filepath.Join(f.dir, "points", p2.ID.String()), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, size := f.packBytes()
	_, err := GC(context.Background(), f.open(), GCOptions{})
	if err == nil || !strings.Contains(err.Error(), p2.ID.Short()) || !strings.Contains(err.Error(), "forget the point") {
		t.Fatalf("gc with a damaged point: %v", err)
	}
	if n2, size2 := f.packBytes(); n2 != n || size2 != size {
		t.Errorf("gc changed the packs before it stopped: %d/%d -> %d/%d", n, size, n2, size2)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "gc", "plan")); err == nil {
		t.Error("gc left a plan")
	}
}

// A directory in the place of a manifest (or a manifest that cannot be
// opened) is a damaged point, not no point: it is listed as such, every
// other point stays listable and restorable, and the collection stops
// before deleting what only it might use.
func TestUnopenableManifestIsDamagedPoint(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{7})
	src := t.TempDir()
	randomFiles(t, src, rnd, map[string]int{"a": 1 << 20})
	p1 := f.backup(src, "s")
	randomFiles(t, src, rnd, map[string]int{"a": 1 << 20})
	p2 := f.backup(src, "s")
	manifest := filepath.Join(f.dir, "points", p2.ID.String())
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(manifest, 0o700); err != nil {
		t.Fatal(err)
	}
	r := f.open().Reader()
	pts, err := r.Points()
	if err != nil {
		t.Fatalf("points with a directory in a manifest's place: %v", err)
	}
	if len(pts) != 2 || pts[0].ID != p1.ID || pts[1].ID != p2.ID || !strings.Contains(pts[1].Damaged, "unreadable") {
		t.Fatalf("points: %+v", pts)
	}
	if latest, err := r.FindPoint("latest", "s"); err != nil || latest.ID != p1.ID {
		t.Fatalf("latest: %v, %v", latest, err)
	}
	n, size := f.packBytes()
	_, err = GC(context.Background(), f.open(), GCOptions{})
	if err == nil || !strings.Contains(err.Error(), p2.ID.Short()) {
		t.Fatalf("gc with an unopenable manifest: %v", err)
	}
	if n2, size2 := f.packBytes(); n2 != n || size2 != size {
		t.Errorf("gc changed the packs before it stopped: %d/%d -> %d/%d", n, size, n2, size2)
	}
}

// Packs moved to another disk with links left behind read through the
// links, so they are listed through them too: verify must not call them
// missing, nor repair drop them from the index.
func TestSymlinkedPacksListed(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{8})
	src := t.TempDir()
	files := randomFiles(t, src, rnd, map[string]int{"a": 3 << 20, "b": 100})
	p := f.backup(src, "s")
	var full []string // pack directories holding packs
	for try := 0; ; try++ {
		full = full[:0]
		for i := range 256 {
			d := filepath.Join(f.dir, "packs", fmt.Sprintf("%02x", i))
			if ents, _ := os.ReadDir(d); len(ents) > 0 {
				full = append(full, d)
			}
		}
		if len(full) >= 2 || try == 20 {
			break
		}
		// All packs in one directory (their names are hashes: about
		// one run in 256): a new time of the root makes a new tree,
		// in a new pack, with the same files.
		at := time.Unix(1_700_000_000+int64(try), 0)
		if err := os.Chtimes(src, at, at); err != nil {
			t.Fatal(err)
		}
		p = f.backup(src, "s")
	}
	if len(full) < 2 {
		t.Fatalf("want packs in two directories: %v", full)
	}
	elsewhere := t.TempDir()
	// One pack directory moved whole, one pack of another moved alone.
	dirA := full[0]
	if err := os.Rename(dirA, filepath.Join(elsewhere, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "a"), dirA); err != nil {
		t.Fatal(err)
	}
	packs, _ := os.ReadDir(full[1])
	pb := filepath.Join(full[1], packs[0].Name())
	if err := os.Rename(pb, filepath.Join(elsewhere, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "b"), pb); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), f.open().Reader(), VerifyOptions{ReadData: true})
	if err != nil || len(rep.BadPacks) != 0 || len(rep.Damage) != 0 || len(rep.DamagedBlobs) != 0 {
		t.Fatalf("verify of symlinked packs: %v, %+v", err, rep)
	}
	if rep.Packs < 2 {
		t.Errorf("verify read %d packs", rep.Packs)
	}
	f.check(map[chunkstore.ID]map[string][]byte{p.ID: files})
}

// A single file given through a symlink (as LVM names block devices) is
// backed up from where the link leads, under the name it was given.
func TestSingleSourceThroughSymlink(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{9})
	src := t.TempDir()
	files := randomFiles(t, src, rnd, map[string]int{"dm-3": 3<<20 + 5})
	links := t.TempDir()
	link := filepath.Join(links, "pgdata")
	if err := os.Symlink(filepath.Join(src, "dm-3"), link); err != nil {
		t.Fatal(err)
	}
	p := f.backup(link, "lv")
	f.check(map[chunkstore.ID]map[string][]byte{p.ID: {"pgdata": files["dm-3"]}})
}

// forget "latest" that waits for a backup of the source refuses, once it
// has the lock, when the backup made a newer point: "latest" no longer
// names the point it resolved to, and neither point is removed.
func TestForgetLatestChangedWhileWaiting(t *testing.T) {
	f := newGCFixture(t)
	src := t.TempDir()
	randomFiles(t, src, rand.NewChaCha8([32]byte{7}), map[string]int{"a": 1 << 10})
	p1 := f.backup(src, "s")
	held, err := f.open().Session(context.Background(), SessionOptions{Purpose: "test backup", Source: "s", Blobs: true})
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		var once sync.Once
		_, err := f.open().Forget(context.Background(), "latest", "s", LockOptions{Wait: time.Minute, OnWait: func(chunkstore.LockInfo) { once.Do(func() { close(waiting) }) }})
		errc <- err
	}()
	<-waiting
	p2, err := Backup(context.Background(), held, BackupOptions{Path: src, Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	held.Close()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "was made while it waited") {
		t.Fatalf("forget latest after a newer point was made: %v", err)
	}
	pts, err := f.open().Reader().Points()
	if err != nil || len(pts) != 2 || pts[0].ID != p1.ID || pts[1].ID != p2.ID {
		t.Fatalf("points after the refused forget: %v %v", pts, err)
	}
	// Asked again, "latest" is the new point, and it goes.
	if fg, err := f.open().Forget(context.Background(), "latest", "s", LockOptions{}); err != nil || fg.Point.ID != p2.ID {
		t.Fatalf("forget latest: %v %v", fg, err)
	}
}

// Fix (gc over a pack file gone): collection passed over a pack file
// that points still need and had gone, exit 0 and not a word. It says
// which, and what to do (repair index names the blobs), and changes
// nothing else for it.
func TestGCNamesMissingPackPointsNeed(t *testing.T) {
	f := newGCFixture(t)
	rnd := rand.NewChaCha8([32]byte{11})
	src := t.TempDir()
	randomFiles(t, src, rnd, map[string]int{"a": 3 << 20})
	f.backup(src, "s")
	old := f.backup(t.TempDir(), "other")
	var data string // the largest pack: the data of a
	var size int64
	packs, _ := filepath.Glob(filepath.Join(f.dir, "packs", "*", "*"))
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			data, size = p, fi.Size()
		}
	}
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	f.forget(old)
	var logged []string
	if _, err := GC(context.Background(), f.open(), GCOptions{IndexGrace: -1, Log: func(format string, a ...any) {
		logged = append(logged, fmt.Sprintf(format, a...))
	}}); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(logged, func(l string) bool {
		return strings.Contains(l, filepath.Base(data)+" is missing") && strings.Contains(l, "recall repair index")
	}) {
		t.Errorf("gc with a pack file gone that a point needs said:\n%s", strings.Join(logged, "\n"))
	}
}
