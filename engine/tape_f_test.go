package engine

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/tapefs"
)

// backupAgain gives the fixture's source new content (seed) and backs it
// up: a second point, and the bytes it holds.
func (f *tapeHomeFixture) backupAgain(t *testing.T, size int, seed int64) (*Point, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(b)
	if err := os.WriteFile(filepath.Join(f.src, "data"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ss, err := f.s.Session(ctx, SessionOptions{Purpose: "test", Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Backup(ctx, ss, BackupOptions{Path: f.src, Source: "src"})
	ss.Close()
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// restoreData restores point id from tape in home and returns the bytes
// of its "data" file.
func restoreData(t *testing.T, home, id string) ([]byte, *TapeRestoreResult) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	res, err := RestoreFromTape(context.Background(), home, TapeRestoreOptions{Point: id, Target: out, Log: t.Logf})
	if err != nil {
		t.Fatalf("restore %s from tape in %s: %v", id[:12], filepath.Base(home), err)
	}
	b, err := os.ReadFile(filepath.Join(out, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return b, res
}

// A key imported onto a plain pool closes the pool's open set: the next
// write starts a new, encrypted set, and the plain set stays plain, so
// both points restore, on this home and on a fresh one that reads the
// cartridges with 'tape catalog'.
func TestTapeKeyImportOnPlainPool(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	ctx := context.Background()
	p1data, _ := os.ReadFile(filepath.Join(f.src, "data"))
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	first, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	key, err := tapefs.NewPoolKey()
	if err != nil {
		t.Fatal(err)
	}
	file, err := tapefs.ExportKey("p", key, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportTapeKey(f.home, file, "secret", "", time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	p2, p2data := f.backupAgain(t, 1<<20, 2)
	second, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{p2}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if second.Set == first.Set || slices.Equal(second.Tapes, first.Tapes) {
		t.Fatalf("write after the key import went to set %s on %v; want a new set beside plain set %s on %v", second.Set, second.Tapes, first.Set, first.Tapes)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := st.set(first.Set)
	enc, _ := st.set(second.Set)
	if plain.KeyFingerprint != "" || !plain.Closed || enc.KeyFingerprint != tapefs.KeyFingerprint(key) {
		t.Errorf("sets: plain %q closed %v, new %q; want the plain set closed and plain, the new one with key %s",
			plain.KeyFingerprint, plain.Closed, enc.KeyFingerprint, tapefs.KeyFingerprint(key))
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	if _, err := AddTapeLibrary(ctx, fresh, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := ImportTapeKey(fresh, file, "secret", "1y", time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(ctx, fresh, TapeCatalogOptions{Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	for _, home := range []string{f.home, fresh} {
		for _, c := range []struct {
			id   string
			want []byte
		}{{f.p.ID.String(), p1data}, {p2.ID.String(), p2data}} {
			if got, _ := restoreData(t, home, c.id); !bytes.Equal(got, c.want) {
				t.Errorf("home %s: point %s restored other bytes", filepath.Base(home), c.id[:12])
			}
		}
	}
}

// hookLibrary runs hook once, at the first Inventory any job asks of
// the library: another job breaking in while a write is under way.
type hookLibrary struct {
	tapefs.Library
	fired *atomic.Bool
	hook  func()
}

func (l hookLibrary) Inventory(ctx context.Context) (*tapefs.Inventory, error) {
	if l.fired.CompareAndSwap(false, true) {
		l.hook()
	}
	return l.Library.Inventory(ctx)
}

func hookFirstInventory(t *testing.T, hook func()) {
	fired := &atomic.Bool{}
	openLibrary = func(l TapeLibrary) (tapefs.Library, error) {
		lib, err := openRecordedLibrary(l)
		if err != nil {
			return nil, err
		}
		return hookLibrary{lib, fired, hook}, nil
	}
	t.Cleanup(func() { openLibrary = openRecordedLibrary })
}

// One tape job at a time: an erase of the set's cartridge, or a second
// write to the set, started while a write runs, is refused naming the
// write; the write's set then holds what it wrote. And a job that took no
// lock (a bug) cannot save over the set: the write that read the set
// before the erase is refused at its save, and the erase stands.
func TestTapeOneJobAtATime(t *testing.T) {
	old := tapeLockWait
	tapeLockWait = 0
	t.Cleanup(func() { tapeLockWait = old })
	ctx := context.Background()
	for _, tc := range []string{"erase", "write", "unlocked erase"} {
		t.Run(tc, func(t *testing.T) {
			f := newTapeHome(t, 1<<20, 3, 1<<30)
			if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
				t.Fatal(err)
			}
			first, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			st, err := readTapeState(f.home, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := st.medium(first.Tapes[0])
			p2, _ := f.backupAgain(t, 1<<20, 2)
			p3, _ := f.backupAgain(t, 1<<20, 3)
			var hookErr error
			hookFirstInventory(t, func() {
				erase := TapeLabelOptions{Slot: m.Slot, Force: true, Now: time.Now(), Warn: t.Logf}
				switch tc {
				case "erase":
					_, hookErr = EraseTape(ctx, f.home, erase)
				case "write":
					_, hookErr = f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{p3}, Log: t.Logf})
				case "unlocked erase":
					st, err := readTapeState(f.home, t.Logf)
					if err != nil {
						t.Fatal(err)
					}
					_, hookErr = relabel(ctx, f.home, st, erase, "")
				}
			})
			rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{p2}, Log: t.Logf})
			st, serr := readTapeState(f.home, t.Logf)
			if serr != nil {
				t.Fatal(serr)
			}
			set, _ := st.set(first.Set)
			if tc == "unlocked erase" {
				if hookErr != nil {
					t.Fatalf("erase without the lock: %v", hookErr)
				}
				if !errors.Is(err, ErrTapeSetChanged) {
					t.Fatalf("write whose set was erased under it: %v, want %v", err, ErrTapeSetChanged)
				}
				if !slices.Equal(set.Dropped, []int{1}) || !set.Closed || len(set.Catalog.Points) != 0 {
					t.Errorf("set after the refused save: dropped %v, closed %v, points %d; want the erase to stand", set.Dropped, set.Closed, len(set.Catalog.Points))
				}
				return
			}
			if !errors.Is(hookErr, chunkstore.ErrLocked) {
				t.Fatalf("%s during a write: %v, want %v", tc, hookErr, chunkstore.ErrLocked)
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range set.Catalog.Points {
				ids = append(ids, p.ID)
			}
			if rep.Set != first.Set || len(set.Dropped) != 0 || !slices.Equal(ids, []string{f.p.ID.String(), p2.ID.String()}) {
				t.Errorf("set %s after the write: points %v, dropped %v; want points %s and %s, nothing dropped", set.ID, ids, set.Dropped, f.p.ID, p2.ID)
			}
		})
	}
}

// A save names the revision of the set it read: a second save from the
// same read is refused, and changes nothing.
func TestTapeSetRevision(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	s := TapeSet{ID: "s1", Pool: "p", Catalog: &tapefs.MediaCatalog{}}
	if err := writeTapeState(home, t.Logf, TapeUpdate{Sets: []TapeSet{s}}); err != nil {
		t.Fatal(err)
	}
	st, err := readTapeState(home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := st.set("s1")
	b := a
	a.Closed = true
	u := TapeUpdate{Sets: []TapeSet{a}}
	if err := writeTapeState(home, t.Logf, u); err != nil || u.Sets[0].Revision != 2 {
		t.Fatalf("first save: %v, revision %d; want saved at 2", err, u.Sets[0].Revision)
	}
	b.Dropped = []int{1}
	if err := writeTapeState(home, t.Logf, TapeUpdate{Sets: []TapeSet{b}}); !errors.Is(err, ErrTapeSetChanged) {
		t.Fatalf("second save from the same read: %v, want %v", err, ErrTapeSetChanged)
	}
	st, err = readTapeState(home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st.set("s1"); !got.Closed || len(got.Dropped) != 0 || got.Revision != 2 {
		t.Errorf("set after the refused save: %+v; want the first save's", got)
	}
}

// A point held by a long pool's set and by its copy in a short pool's:
// the copy expires and a later write to the short pool reuses its
// cartridge. The copy's record loses that cartridge, and the point
// restores from the long pool's set.
func TestTapeRestoreAfterCopyReused(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := func(n int) func() time.Time { return func() time.Time { return t0.AddDate(0, 0, n) } }
	want, _ := os.ReadFile(filepath.Join(f.src, "data"))
	for _, p := range []TapePool{{Name: "long", Retention: "10y"}, {Name: "short", Retention: "30d"}} {
		if _, err := CreateTapePool(f.home, p, t0, t.Logf); err != nil {
			t.Fatal(err)
		}
	}
	long, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "long", Points: []*Point{f.p}, Now: day(0), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := CopyTapeSet(ctx, f.s, f.home, TapeCopyOptions{Set: long.Set, Pool: "short", Now: day(1), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := f.backupAgain(t, 1<<20, 2)
	later, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "short", Points: []*Point{p2}, Now: day(40), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(later.Tapes, cp.Tapes) {
		t.Fatalf("the write on day 40 went to %v, want the copy's expired cartridge %v", later.Tapes, cp.Tapes)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := st.set(cp.Set); !slices.Equal(s.Dropped, []int{1}) || len(s.Catalog.Points) != 0 {
		t.Errorf("copy set %s after its cartridge was reused: dropped %v, points %d; want sequence 1 dropped, no point", cp.Set, s.Dropped, len(s.Catalog.Points))
	}
	got, res := restoreData(t, f.home, f.p.ID.String())
	if !bytes.Equal(got, want) || !slices.Equal(res.Tapes, long.Tapes) {
		t.Errorf("restore read %v (bytes equal: %v), want the long pool's %v", res.Tapes, bytes.Equal(got, want), long.Tapes)
	}
}

// A bad block in the newest set holding a point: the packs it cost are
// read from the older set, and the restore is whole.
func TestTapeRestoreBadBlockFromOtherSet(t *testing.T) {
	f := newTapeHome(t, 8<<20, 3, 1<<30)
	ctx := context.Background()
	want, _ := os.ReadFile(filepath.Join(f.src, "data"))
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	older, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Set: "new", Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := st.set(newer.Set)
	if set.Catalog.Files[0].Kind != tapefs.KindPacks {
		t.Fatalf("set %s: first file %+v, want a packs file", set.ID, set.Catalog.Files[0])
	}
	lib, err := tapefs.OpenEmulatedLibrary(f.lib)
	if err != nil {
		t.Fatal(err)
	}
	err = lib.InjectBadBlock(newer.Tapes[0], set.Catalog.Files[0].StartPos+2)
	lib.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, res := restoreData(t, f.home, f.p.ID.String())
	if !bytes.Equal(got, want) || len(res.LostPacks) != 0 || !slices.Equal(res.Tapes, []string{newer.Tapes[0], older.Tapes[0]}) {
		t.Errorf("restore: read %v, lost %v, bytes equal %v; want the newer set's cartridge then the older's, nothing lost", res.Tapes, res.LostPacks, bytes.Equal(got, want))
	}
}

// A home that read a cartridge in when it held one set learns, at its
// next 'tape catalog', that another server reused it for another set:
// the old set loses it and the points that needed it.
func TestTapeCatalogReusedCartridge(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := func(n int) func() time.Time { return func() time.Time { return t0.AddDate(0, 0, n) } }
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d"}, t0, t.Logf); err != nil {
		t.Fatal(err)
	}
	first, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Now: day(0), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := AddTapeLibrary(ctx, other, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(ctx, other, TapeCatalogOptions{Log: t.Logf, Now: day(0)}); err != nil {
		t.Fatal(err)
	}
	p2, _ := f.backupAgain(t, 1<<20, 2)
	later, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{p2}, Now: day(40), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(later.Tapes, first.Tapes) {
		t.Fatalf("the write on day 40 went to %v, want the expired %v", later.Tapes, first.Tapes)
	}
	if _, err := CatalogTapes(ctx, other, TapeCatalogOptions{Log: t.Logf, Now: day(40)}); err != nil {
		t.Fatal(err)
	}
	st, err := readTapeState(other, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := st.set(first.Set); !slices.Equal(s.Dropped, []int{1}) || len(s.Catalog.Points) != 0 {
		t.Errorf("set %s after its cartridge was read holding set %s: dropped %v, points %d; want sequence 1 dropped, no point", first.Set, later.Set, s.Dropped, len(s.Catalog.Points))
	}
	if _, err := ListTapes(other, f.p.ID.String(), t.Logf); !errors.Is(err, ErrTapeNotFound) {
		t.Errorf("list of point %s, on no cartridge now: %v, want %v", f.p.ID.Short(), err, ErrTapeNotFound)
	}
}

// A restore goes on to the next set holding the point whatever keeps the
// latest from being read (here its key is not on this server), and
// reports the latest set's error only when no set can be read.
func TestTapeRestoreNextSetOnAnyFailure(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	ctx := context.Background()
	want, _ := os.ReadFile(filepath.Join(f.src, "data"))
	for _, p := range []TapePool{{Name: "plain", Retention: "1y"}, {Name: "enc", Retention: "1y", Encrypt: true}} {
		if _, err := CreateTapePool(f.home, p, time.Now(), t.Logf); err != nil {
			t.Fatal(err)
		}
	}
	older, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "plain", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "enc", Points: []*Point{f.p}, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyPath(f.home, "enc")); err != nil {
		t.Fatal(err)
	}
	got, res := restoreData(t, f.home, f.p.ID.String())
	if !bytes.Equal(got, want) || !slices.Equal(res.Tapes, older.Tapes) {
		t.Errorf("restore read %v (bytes equal: %v), want the plain set's %v", res.Tapes, bytes.Equal(got, want), older.Tapes)
	}
	lib, err := tapefs.OpenEmulatedLibrary(f.lib)
	if err != nil {
		t.Fatal(err)
	}
	err = lib.Eject(older.Tapes[0])
	lib.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: filepath.Join(t.TempDir(), "out"), Log: t.Logf})
	if !errors.Is(err, ErrNoKey) {
		t.Errorf("restore with no set readable: %v, want the latest set's error (%v)", err, ErrNoKey)
	}
}
