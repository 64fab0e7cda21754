package engine

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/tapefs"
)

// tapeHomeFixture is a home with a store holding one point of a source of
// size bytes, and an emulated library of slots cartridges of capacity
// bytes with an early-warning zone of 20 MiB.
type tapeHomeFixture struct {
	home, src, lib string
	s              *Store
	p              *Point
}

func newTapeHome(t *testing.T, size int, slots int, capacity int64) *tapeHomeFixture {
	return newTapeHomeEW(t, size, slots, capacity, 20<<20)
}

func newTapeHomeEW(t *testing.T, size int, slots int, capacity, earlyWarning int64) *tapeHomeFixture {
	t.Helper()
	dir := t.TempDir()
	f := &tapeHomeFixture{home: filepath.Join(dir, "home"), src: filepath.Join(dir, "src"), lib: filepath.Join(dir, "lib")}
	if _, err := chunkstore.Init(StoreDir(f.home), chunkstore.InitOptions{Compression: chunkstore.CompressionOff}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(f.src, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(b)
	if err := os.WriteFile(filepath.Join(f.src, "data"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(StoreDir(f.home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.s = s
	ctx := context.Background()
	ss, err := s.Session(ctx, SessionOptions{Purpose: "test", Source: "src"})
	if err != nil {
		t.Fatal(err)
	}
	f.p, err = Backup(ctx, ss, BackupOptions{Path: f.src, Source: "src"})
	ss.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddTapeLibrary(ctx, f.home, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: slots, Drives: 1, Capacity: capacity, EarlyWarning: earlyWarning}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// watchedLibrary records every Locate and which cartridge it was on.
type watchedLibrary struct {
	tapefs.Library
	mu      sync.Mutex
	slot    int   // loaded last
	locates []int // slot*1e9 + position, in call order
}

type watchedDrive struct {
	tapefs.Drive
	l *watchedLibrary
}

func (l *watchedLibrary) Load(ctx context.Context, slot, drive int) error {
	l.mu.Lock()
	l.slot = slot
	l.mu.Unlock()
	return l.Library.Load(ctx, slot, drive)
}

func (l *watchedLibrary) Drive(n int) (tapefs.Drive, error) {
	d, err := l.Library.Drive(n)
	if err != nil {
		return nil, err
	}
	return watchedDrive{d, l}, nil
}

func (d watchedDrive) Locate(ctx context.Context, pos uint64) error {
	d.l.mu.Lock()
	d.l.locates = append(d.l.locates, d.l.slot*1e9+int(pos))
	d.l.mu.Unlock()
	return d.Drive.Locate(ctx, pos)
}

// A restore of a point spanning cartridges loads each cartridge once and
// reads it in one forward pass: its locates only go forward.
func TestTapeRestoreForwardPass(t *testing.T) {
	f := newTapeHome(t, 100<<20, 4, 48<<20)
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tapes) < 3 {
		t.Fatalf("written to %v, want three cartridges or more", rep.Tapes)
	}
	var watched *watchedLibrary
	openLibrary = func(l TapeLibrary) (tapefs.Library, error) {
		lib, err := openRecordedLibrary(l)
		if err != nil {
			return nil, err
		}
		watched = &watchedLibrary{Library: lib}
		return watched, nil
	}
	t.Cleanup(func() { openLibrary = openRecordedLibrary })
	out := filepath.Join(t.TempDir(), "out")
	res, err := RestoreFromTape(context.Background(), f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: out, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tapes, rep.Tapes) {
		t.Errorf("read %v, want each of %v once, in order", res.Tapes, rep.Tapes)
	}
	if len(watched.locates) == 0 || !slices.IsSorted(watched.locates) {
		t.Errorf("locates (slot*1e9 + position): %v, want only forward", watched.locates)
	}
	got, err := os.ReadFile(filepath.Join(out, "data"))
	if want, _ := os.ReadFile(filepath.Join(f.src, "data")); err != nil || !slices.Equal(got, want) {
		t.Errorf("restored data differs (%v)", err)
	}
}

// A set whose expiry passed: its cartridges are marked expired and the
// pool's next write reuses them for a new set; the old set's points are no
// longer listed.
func TestTapeExpiryReuse(t *testing.T) {
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d"}, t0, t.Logf); err != nil {
		t.Fatal(err)
	}
	now := t0
	clock := func() time.Time { return now }
	first, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Now: clock, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	now = t0.AddDate(0, 0, 29)
	if exp, err := ExpireTapes(f.home, now, t.Logf); err != nil || len(exp) != 0 {
		t.Fatalf("expired on day 29: %v %v", exp, err)
	}
	now = t0.AddDate(0, 0, 31)
	if exp, err := ExpireTapes(f.home, now, t.Logf); err != nil || !slices.Equal(exp, first.Tapes) {
		t.Fatalf("expired on day 31: %v %v, want %v", exp, err, first.Tapes)
	}
	second, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Now: clock, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if second.Set == first.Set || !slices.Equal(second.Tapes, first.Tapes) || second.PacksSkipped != 0 {
		t.Errorf("second write %+v, first %+v: want a new set on the expired cartridge, every pack written again", second, first)
	}
	ls, err := ListTapes(f.home, "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Set != second.Set || ls[0].Expiry.Sub(now) != 30*24*time.Hour {
		t.Errorf("list: %+v", ls)
	}
}

// An early-warning zone smaller than a pack: packs meet the end of the
// medium mid-entry, and each such pack is written whole on the next
// cartridge. A fresh home reads the cartridges (their last files cut, so
// by a full scan) and restores the point.
func TestTapeEndOfMediumMidPack(t *testing.T) {
	f := newTapeHomeEW(t, 60<<20, 4, 40<<20, 1<<20)
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tapes) < 2 {
		t.Fatalf("written to %v, want two cartridges or more", rep.Tapes)
	}
	// Every pack is on the set once, whole: the catalog's entries are the
	// packs the point needs, each listed once.
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, file := range st.Sets[0].Catalog.Files {
		if file.Kind == tapefs.KindPacks {
			for _, e := range file.Entries {
				seen[e.Name]++
			}
		}
	}
	for _, pk := range st.Sets[0].Catalog.Points[0].Packs {
		if seen[pk] != 1 {
			t.Errorf("pack %s is on the set %d times", pk, seen[pk])
		}
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	if _, err := AddTapeLibrary(context.Background(), fresh, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	scanned, err := CatalogTapes(context.Background(), fresh, TapeCatalogOptions{Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	torn := 0
	for _, sc := range scanned {
		if sc.Torn {
			torn++
		}
	}
	if torn != len(rep.Tapes)-1 {
		t.Errorf("scanned %+v: want each cartridge but the last cut by the end of medium", scanned)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := RestoreFromTape(context.Background(), fresh, TapeRestoreOptions{Point: f.p.ID.String(), Target: out, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "data"))
	if want, _ := os.ReadFile(filepath.Join(f.src, "data")); err != nil || !slices.Equal(got, want) {
		t.Errorf("restored data differs (%v)", err)
	}
}
