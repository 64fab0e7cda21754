package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
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

// A set takes appends within its pool's append window (7 days by
// default) and expires the pool's retention after the window ends, so a
// point appended last is kept the whole retention; a write after the
// window starts a new set. A set whose expiry passed: its cartridges are
// marked expired and the pool's next write reuses them for a new set; the
// old set's points are no longer listed.
func TestTapeExpiryReuse(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return t0.AddDate(0, 0, n) }
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d"}, t0, t.Logf); err != nil {
		t.Fatal(err)
	}
	now := t0
	clock := func() time.Time { return now }
	write := func(n int) *TapeWriteReport {
		t.Helper()
		now = day(n)
		rep, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Now: clock, Log: t.Logf})
		if err != nil {
			t.Fatalf("write on day %d: %v", n, err)
		}
		return rep
	}
	expire := func(n int, want []string) {
		t.Helper()
		exp, err := ExpireTapes(f.home, day(n), t.Logf)
		if err != nil || !slices.Equal(exp, want) {
			t.Fatalf("expired on day %d: %v %v, want %v", n, exp, err, want)
		}
	}
	first := write(0)
	appended := write(6) // inside the window: the same set
	if appended.Set != first.Set || !slices.Equal(appended.Tapes, first.Tapes) {
		t.Fatalf("write on day 6 went to set %s on %v, want set %s on %v", appended.Set, appended.Tapes, first.Set, first.Tapes)
	}
	late := write(8) // past the window: a new set, on the other cartridge
	if late.Set == first.Set || slices.Equal(late.Tapes, first.Tapes) {
		t.Fatalf("write on day 8 went to set %s on %v, want a new set beside %s on %v", late.Set, late.Tapes, first.Set, first.Tapes)
	}
	// The first set expires 30 days after its window (day 7), so never
	// before the point appended on day 6 is 30 days old; its labels say so.
	expire(36, nil)
	fresh := filepath.Join(t.TempDir(), "fresh")
	if _, err := AddTapeLibrary(context.Background(), fresh, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := CatalogTapes(context.Background(), fresh, TapeCatalogOptions{Log: t.Logf, Now: func() time.Time { return day(36) }}); err != nil {
		t.Fatal(err)
	}
	for _, home := range []string{f.home, fresh} {
		ls, err := ListTapes(home, "", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			want := day(37)
			if l.Set == late.Set {
				want = day(45)
			}
			if !l.Expiry.Equal(want) {
				t.Errorf("home %s: cartridge %s of set %s expires %s, want %s", filepath.Base(home), l.Barcode, l.Set, l.Expiry, want)
			}
		}
	}
	expire(37, first.Tapes)
	// Day 38: the second set takes no appends (created day 8, expires day
	// 45), the first's cartridge is expired: a third set reuses it.
	third := write(38)
	if third.Set == first.Set || third.Set == late.Set || !slices.Equal(third.Tapes, first.Tapes) || third.PacksSkipped != 0 {
		t.Errorf("write on day 38 %+v, first %+v: want a new set on the expired cartridge, every pack written again", third, first)
	}
	ls, err := ListTapes(f.home, "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]time.Time{}
	for _, l := range ls {
		sets[l.Set] = l.Expiry
	}
	if len(sets) != 2 || !sets[late.Set].Equal(day(45)) || !sets[third.Set].Equal(day(38+7+30)) {
		t.Errorf("list: %+v, want set %s expiring day 45 and set %s expiring day 75", ls, late.Set, third.Set)
	}
}

// A set named in the write is appended to though its pool's allocation
// closed it (a copy writes its set in two jobs), within its append window
// only: after it, the write is refused and says to write a new set.
func TestTapeWriteNamedSet(t *testing.T) {
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d", Allocation: AllocAlways}, t0, t.Logf); err != nil {
		t.Fatal(err)
	}
	write := func(day int, set string) (*TapeWriteReport, error) {
		now := t0.AddDate(0, 0, day)
		return f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Set: set, Log: t.Logf,
			Now: func() time.Time { return now }})
	}
	first, err := write(0, "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := write(1, first.Set)
	if err != nil || again.Set != first.Set || again.PacksSkipped == 0 {
		t.Fatalf("write on day 1 into set %s: %+v, %v; want the set appended to, its packs skipped", first.Set, again, err)
	}
	if _, err := write(7, first.Set); err == nil || !strings.Contains(err.Error(), "--set new") {
		t.Fatalf("write on day 7 into set %s: %v, want refused (the window of 7d closed), saying to write a new set", first.Set, err)
	}
}

// A drive the writer finds full with no slot to put its cartridge back,
// and a load the library refuses: the errors name the library, the
// cartridge and what to do.
func TestTapeLibraryMessages(t *testing.T) {
	ctx := context.Background()
	lib, err := tapefs.CreateEmulatedLibrary(filepath.Join(t.TempDir(), "lib"), tapefs.EmulatorOptions{Slots: 2, Drives: 1, Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	// Slot 1 emptied by the load takes a new cartridge: no slot is free.
	if _, err := lib.AddBlank("RC0009L9"); err != nil {
		t.Fatal(err)
	}
	inv, err := lib.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clearErr := clearDrive(ctx, lib, inv, 0)
	_, loadErr := loadSlot(ctx, lib, 2, 0)
	for _, tt := range []struct {
		what string
		err  error
		want []string
	}{
		{"clear the drive", clearErr, []string{lib.Name(), "drive 0 holds cartridge RC0001L9", "free a slot"}},
		{"load a full drive", loadErr, []string{lib.Name(), "cartridge RC0002L9 (slot 2)", "drive 0", "recall tape inventory"}},
	} {
		t.Logf("%s: %v", tt.what, tt.err)
		if tt.err == nil {
			t.Errorf("%s: no error", tt.what)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(tt.err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tt.what, tt.err, w)
			}
		}
	}
}

// A pool whose retention does not parse (a pool the catalog of a tape
// from elsewhere made up has none) gives no set: a write names the pool
// and how to set its retention.
func TestTapeWriteBadRetention(t *testing.T) {
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	pool := TapePool{Name: "q", Library: "lib", Allocation: AllocContinue, Created: time.Now().UTC()}
	if err := writeTapeState(f.home, t.Logf, TapeUpdate{Pools: []TapePool{pool}}); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.WriteTape(context.Background(), f.home, TapeWriteOptions{Pool: "q", Points: []*Point{f.p}, Log: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "tape pool q") || !strings.Contains(err.Error(), "--retention") {
		t.Fatalf("write to a pool with no retention: %v, want an error naming the pool and --retention", err)
	}
	ls, lerr := ListTapes(f.home, "", t.Logf)
	if lerr != nil || len(ls) != 0 {
		t.Errorf("after the refused write the catalog lists %+v (%v), want nothing", ls, lerr)
	}
}

// An early-warning zone smaller than a pack: packs meet the end of the
// medium mid-entry, and each such pack is written whole on the next
// cartridge. A fresh home reads the cartridges (their last files cut, so
// by a full scan; reported filled, not torn) and restores the point.
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
	filled := 0
	for _, sc := range scanned {
		if sc.Torn || len(sc.Damaged) > 0 {
			t.Errorf("cartridge %s reported torn or damaged: %+v", sc.Barcode, sc)
		}
		if sc.Filled {
			filled++
		}
	}
	if filled != len(rep.Tapes)-1 {
		t.Errorf("scanned %+v: want each cartridge but the last filled (cut by the end of medium)", scanned)
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

// cutLibrary is a library whose cartridge in the drive when the job has
// written limit blocks takes no more (each: every cartridge takes limit
// blocks): every later write to it, block or filemark, meets the end of
// medium, as on a drive that never reported the early-warning zone. The
// other cartridges take all. It counts the blocks the drive took.
type cutLibrary struct {
	tapefs.Library
	mu      sync.Mutex
	slot    int // loaded last
	limit   int // < 0: no cut
	each    bool
	blocks  int
	onSlot  map[int]int  // blocks written, by slot
	cutSlot int          // the slot of the first cartridge cut, 0 before a cut
	cut     map[int]bool // the slots of the cartridges cut
}

type cutDrive struct {
	tapefs.Drive
	l *cutLibrary
}

func (l *cutLibrary) Load(ctx context.Context, slot, drive int) error {
	l.mu.Lock()
	l.slot = slot
	l.mu.Unlock()
	return l.Library.Load(ctx, slot, drive)
}

func (l *cutLibrary) Drive(n int) (tapefs.Drive, error) {
	d, err := l.Library.Drive(n)
	if err != nil {
		return nil, err
	}
	return cutDrive{d, l}, nil
}

// full says whether the cartridge in the drive refuses the next write.
func (l *cutLibrary) full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.limit < 0:
		return false
	case l.each:
		if l.onSlot[l.slot] < l.limit {
			return false
		}
	case l.cutSlot == 0:
		if l.blocks < l.limit {
			return false
		}
	case l.slot != l.cutSlot:
		return false
	}
	if l.cutSlot == 0 {
		l.cutSlot = l.slot
		l.cut = map[int]bool{}
	}
	l.cut[l.slot] = true
	return true
}

func (d cutDrive) WriteBlock(ctx context.Context, p []byte) (bool, error) {
	if d.l.full() {
		return true, tapefs.ErrEndOfMedium
	}
	ew, err := d.Drive.WriteBlock(ctx, p)
	if err == nil {
		d.l.mu.Lock()
		d.l.blocks++
		if d.l.onSlot == nil {
			d.l.onSlot = map[int]int{}
		}
		d.l.onSlot[d.l.slot]++
		d.l.mu.Unlock()
	}
	return ew, err
}

func (d cutDrive) WriteFilemarks(ctx context.Context, n int) error {
	if d.l.full() {
		return tapefs.ErrEndOfMedium
	}
	return d.Drive.WriteFilemarks(ctx, n)
}

// sameRegularFiles reports how the regular files under got differ from those
// under want (content and mode).
func sameRegularFiles(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, path)
		w, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		g, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("restored %s: %v", rel, err)
			return nil
		}
		if !slices.Equal(g, w) {
			t.Errorf("restored %s differs from the source", rel)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("compare %s with %s: %v (%d files)", want, got, err, n)
	}
}

// emulatedInventory opens the emulated library in dir and reads its
// inventory; the caller closes it.
func emulatedInventory(t *testing.T, dir string) (*tapefs.EmulatedLibrary, *tapefs.Inventory) {
	t.Helper()
	lib, err := tapefs.OpenEmulatedLibrary(dir)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := lib.Inventory(context.Background())
	if err != nil {
		lib.Close()
		t.Fatal(err)
	}
	return lib, inv
}

// packsOnTape reads every pack set's catalog lists from where it says
// (OpenEntry at the entry's block and offset) and compares it with the
// store's.
func packsOnTape(t *testing.T, s *Store, libDir string, set TapeSet) {
	t.Helper()
	ctx := context.Background()
	lib, inv := emulatedInventory(t, libDir)
	defer lib.Close()
	n := 0
	for _, f := range set.Catalog.Files {
		if f.Kind != tapefs.KindPacks {
			continue
		}
		slot, ok := slotOf(inv, set.Tapes[f.Sequence-1])
		if !ok {
			t.Fatalf("cartridge %s of the set is in no slot", set.Tapes[f.Sequence-1])
		}
		d, err := loadSlot(ctx, lib, slot, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range f.Entries {
			r, err := tapefs.OpenEntry(ctx, d, tapefs.FileOptions{}, f.StartPos, e)
			if err != nil {
				t.Errorf("pack %s, listed in file %d of cartridge %d at block %d offset %d: %v", e.Name[:12], f.FileNo, f.Sequence, e.Block, e.Offset, err)
				continue
			}
			got, err := io.ReadAll(r)
			want, lerr := s.st.Backend().Load(ctx, backend.Handle{Type: backend.Packs, Name: e.Name}, 0, -1, nil)
			if err != nil || lerr != nil || !slices.Equal(got, want) {
				t.Errorf("pack %s in file %d of cartridge %d: %d bytes on tape (%v), %d in the store (%v)", e.Name[:12], f.FileNo, f.Sequence, len(got), err, len(want), lerr)
			}
			n++
		}
		if err := unloadDrive(ctx, lib, d, 0, slot); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
	if n == 0 {
		t.Fatal("the set lists no pack")
	}
}

// The end of medium met at every block of a job, the drive never having
// reported early warning: inside a pack, just after a pack ended in the
// block before (whose tail the refused block held), in a point file, in
// the catalog file. Whatever the cut, every pack the catalog lists is
// whole on tape, what was cut goes whole on the next cartridge, each
// point names one point file holding its manifest and record, and every
// point restores exactly, on the writing home and on a fresh home that
// only reads the cartridges.
func TestTapeEndOfMediumEveryBlock(t *testing.T) {
	old := chunkstore.PackTargetSize
	chunkstore.PackTargetSize = 600 << 10 // packs of one or two chunks: several per block, several blocks per pack
	t.Cleanup(func() { chunkstore.PackTargetSize = old })
	dir := t.TempDir()
	storeHome := filepath.Join(dir, "store")
	if _, err := chunkstore.Init(StoreDir(storeHome), chunkstore.InitOptions{Compression: chunkstore.CompressionOff}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(StoreDir(storeHome), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Point b shares point a's file, so its data packs are on the set
	// already when it is written, and adds one of its own.
	rnd := rand.New(rand.NewSource(2))
	shared := make([]byte, 6<<20)
	rnd.Read(shared)
	own := make([]byte, 3<<20)
	rnd.Read(own)
	srcs := map[string]map[string][]byte{"a": {"x": shared}, "b": {"x": shared, "sub/y": own}}
	var points []*Point
	for _, src := range []string{"a", "b"} {
		root := filepath.Join(dir, "src", src)
		for name, b := range srcs[src] {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, name), b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		ss, err := s.Session(context.Background(), SessionOptions{Purpose: "test", Source: src})
		if err != nil {
			t.Fatal(err)
		}
		p, err := Backup(context.Background(), ss, BackupOptions{Path: root, Source: src})
		ss.Close()
		if err != nil {
			t.Fatal(err)
		}
		points = append(points, p)
	}
	srcRoot := filepath.Join(dir, "src")
	t.Cleanup(func() { openLibrary = openRecordedLibrary })

	// run writes both points with the cut after limit blocks (each: on
	// every cartridge), checks the set and the restores, and returns the
	// library that cut.
	run := func(t *testing.T, limit int, each bool) *cutLibrary {
		dir := t.TempDir()
		home, libDir := filepath.Join(dir, "home"), filepath.Join(dir, "lib")
		ctx := context.Background()
		slots := 4
		if each {
			slots = 12
		}
		if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: libDir, Warn: t.Logf,
			Emulator: tapefs.EmulatorOptions{Slots: slots, Drives: 1, Capacity: 1 << 30}}); err != nil {
			t.Fatal(err)
		}
		if _, err := CreateTapePool(home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
			t.Fatal(err)
		}
		cut := &cutLibrary{limit: limit, each: each}
		openLibrary = func(l TapeLibrary) (tapefs.Library, error) {
			lib, err := openRecordedLibrary(l)
			if err != nil {
				return nil, err
			}
			cut.Library = lib
			return cut, nil
		}
		rep, err := s.WriteTape(ctx, home, TapeWriteOptions{Pool: "p", Points: points, Log: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if limit >= 0 && cut.cutSlot == 0 {
			t.Fatalf("no cut after %d blocks: the job wrote %d", limit, cut.blocks)
		}
		// Up to 2 blocks the cut is in the labels: that cartridge is
		// refused and another labelled in its stead.
		if limit > 2 && len(rep.Tapes) < 2 {
			t.Errorf("cut after %d blocks, the job wrote to %v: want a second cartridge", limit, rep.Tapes)
		}

		st, err := readTapeState(home, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Sets) != 1 {
			t.Fatalf("%d sets, want 1", len(st.Sets))
		}
		c := st.Sets[0].Catalog
		packs := map[string]int{}
		for _, f := range c.Files {
			if f.Kind == tapefs.KindPacks {
				for _, e := range f.Entries {
					packs[e.Name]++
				}
			}
		}
		if len(c.Points) != len(points) {
			t.Fatalf("the set lists %d points, want %d", len(c.Points), len(points))
		}
		for _, p := range c.Points {
			for _, pk := range p.Packs {
				if packs[pk] != 1 {
					t.Errorf("point %s: pack %s is listed %d times on the set, want once", p.ID[:12], pk[:12], packs[pk])
				}
			}
			var pointFiles []tapefs.CatalogFile
			for _, i := range p.Files {
				if c.Files[i].Kind == tapefs.KindPoint {
					pointFiles = append(pointFiles, c.Files[i])
				}
			}
			if len(pointFiles) != 1 || len(pointFiles[0].Entries) != 2 ||
				pointFiles[0].Entries[0].Name != "manifest" || pointFiles[0].Entries[1].Name != "point.json" {
				t.Errorf("point %s names point files %+v, want one holding manifest and point.json", p.ID[:12], pointFiles)
			}
		}

		packsOnTape(t, s, libDir, st.Sets[0])

		fresh := filepath.Join(dir, "fresh")
		if _, err := AddTapeLibrary(ctx, fresh, AddLibraryOptions{Name: "lib", Dir: libDir, Warn: t.Logf}); err != nil {
			t.Fatal(err)
		}
		if _, err := CatalogTapes(ctx, fresh, TapeCatalogOptions{Log: t.Logf}); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{home, fresh} {
			for _, p := range points {
				out := filepath.Join(dir, "out", filepath.Base(h), p.Source)
				if _, err := RestoreFromTape(ctx, h, TapeRestoreOptions{Point: p.ID.String(), Target: out, Log: t.Logf}); err != nil {
					t.Fatalf("home %s: restore point %s of %s: %v", filepath.Base(h), p.ID.Short(), p.Source, err)
				}
				sameRegularFiles(t, filepath.Join(srcRoot, p.Source), out)
			}
		}
		return cut
	}

	var total int
	t.Run("whole", func(t *testing.T) { total = run(t, -1, false).blocks })
	if total < 8 {
		t.Fatalf("the job wrote %d blocks: too few to cut", total)
	}
	// From the set label's filemark to the catalog file's.
	for n := 2; n <= total; n++ {
		t.Run(fmt.Sprintf("cut%02d", n), func(t *testing.T) { run(t, n, false) })
	}
	// Every cartridge cut, so a file that goes on to the next cartridge is
	// cut again there, from the smallest cartridge that holds the labels
	// and the largest pack up.
	largest := int64(0)
	if err := s.st.Backend().List(context.Background(), backend.Packs, func(_ string, size int64) error {
		largest = max(largest, size)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	least := 2 + int(largest/(tapefs.BlockSize-4096)) + 1
	for n := least; n < least+4; n++ {
		t.Run(fmt.Sprintf("each%02d", n), func(t *testing.T) {
			if c := run(t, n, true); len(c.cut) < 2 {
				t.Errorf("%d blocks a cartridge: cut %d cartridges, want two or more", n, len(c.cut))
			}
		})
	}
}

// A point that needs a blob the store records damaged is not written to
// tape: tape takes packs as they are, so the damage would be kept for
// years and found only at a restore. The others are written; the write
// ends with ErrDamaged naming the point.
func TestTapeWriteRefusesDamagedPoint(t *testing.T) {
	f, good := twoPointTapeHome(t)
	ctx := context.Background()
	// A byte of the first point's data flipped, found by a verify.
	data := flipInPack(t, f, f.p, false)
	if _, err := Verify(ctx, f.s.Reader(), VerifyOptions{ReadData: true}); !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify of the flipped pack: %v, want the damage found", err)
	}

	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p, good}, Log: t.Logf})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), f.p.ID.String()[:12]) {
		t.Fatalf("tape write of a damaged point: %v, want ErrDamaged naming it", err)
	}
	if len(rep.Refused) != 1 || rep.Refused[0].Point != f.p.ID.String() || !slices.Equal(rep.Points, []string{good.ID.String()}) {
		t.Fatalf("report %+v: want the damaged point refused and the other written", rep)
	}
	gd, gt, _, err := f.s.pointPacks(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gd) + len(gt); rep.Packs != n || slices.Contains(gd, data) || slices.Contains(gt, data) {
		t.Fatalf("%d packs written, want the %d of the point written, and not the damaged one", rep.Packs, n)
	}
}

// Damage no verify has found yet is found as the packs stream to tape:
// each pack is checked whole as it is read. A point needing a blob that
// fails is refused, the damage is recorded (repair packs sees it), and the
// damaged pack stays off tape; so does a pack whose header fails (a server
// restoring from the tape alone reads the headers). The other points are
// written. (Fix: writePacks checks each pack, CheckPackData.)
func TestTapeWriteChecksPacks(t *testing.T) {
	for _, header := range []bool{false, true} {
		t.Run(fmt.Sprintf("header=%v", header), func(t *testing.T) {
			f, good := twoPointTapeHome(t)
			ctx := context.Background()
			bad := flipInPack(t, f, f.p, header)
			if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "30d"}, time.Now(), t.Logf); err != nil {
				t.Fatal(err)
			}
			rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p, good}, Log: t.Logf})
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), f.p.ID.String()[:12]) || !strings.Contains(err.Error(), "when read for tape") {
				t.Fatalf("tape write of a point whose pack is damaged, unrecorded: %v, want ErrDamaged naming it", err)
			}
			if len(rep.Refused) != 1 || rep.Refused[0].Point != f.p.ID.String() || !slices.Equal(rep.Points, []string{good.ID.String()}) {
				t.Fatalf("report %+v: want the damaged point refused and the other written", rep)
			}
			gd, gt, _, err := f.s.pointPacks(ctx, good, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(gd) + len(gt); rep.Packs != n {
				t.Fatalf("%d packs written, want the %d of the good point", rep.Packs, n)
			}
			ls, err := ListTapes(f.home, "", t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			st, err := readTapeState(f.home, t.Logf)
			if err != nil || len(ls) == 0 {
				t.Fatal(ls, err)
			}
			for _, s := range st.Sets {
				if _, on := s.Catalog.PackIndex()[bad.String()]; on {
					t.Errorf("the damaged pack %s is on set %s", bad.Short(), s.ID)
				}
			}
			if !header {
				recorded := false
				for _, d := range f.s.st.DamagedBlobs() {
					recorded = recorded || d.Pack == bad
				}
				if !recorded {
					t.Errorf("the blob that failed is not recorded damaged")
				}
			}
			// Written again after the refusal, nothing new: the good
			// point is on the set, the damaged one refused again.
			rep, err = f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p, good}, Log: t.Logf})
			if !errors.Is(err, ErrDamaged) || len(rep.Refused) != 1 || rep.Packs != 0 {
				t.Fatalf("second write: %v, %+v", err, rep)
			}
		})
	}
}

// flipInPack overwrites 8 bytes of the first data pack of p: inside its
// first blob, or in its header. It returns the pack.
func flipInPack(t *testing.T, f *tapeHomeFixture, p *Point, header bool) chunkstore.ID {
	t.Helper()
	data, _, _, err := f.s.pointPacks(context.Background(), p, nil)
	if err != nil || len(data) != 1 {
		t.Fatalf("the point's data packs: %v, %v", data, err)
	}
	pack := filepath.Join(StoreDir(f.home), "packs", data[0].String()[:2], data[0].String())
	fh, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	at := int64(4096)
	if header {
		fi, err := fh.Stat()
		if err != nil {
			t.Fatal(err)
		}
		at = fi.Size() - 60 // in the header, before the trailer
	}
	if _, err := fh.WriteAt([]byte("XXXXXXXX"), at); err != nil {
		t.Fatal(err)
	}
	return data[0]
}

// twoPointTapeHome is newTapeHome with a second point, of other data:
// packs of its own.
func twoPointTapeHome(t *testing.T) (*tapeHomeFixture, *Point) {
	t.Helper()
	f := newTapeHome(t, 1<<20, 1, 1<<30)
	ctx := context.Background()
	other := filepath.Join(t.TempDir(), "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1<<20)
	rand.New(rand.NewSource(2)).Read(b)
	if err := os.WriteFile(filepath.Join(other, "data"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ss, err := f.s.Session(ctx, SessionOptions{Purpose: "test", Source: "other"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := Backup(ctx, ss, BackupOptions{Path: other, Source: "other"})
	ss.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f, good
}

// A tape goal naming a pool the media catalog lacks is warned of when it
// is declared, naming the command that makes the pool.
func TestTapeGoalPoolMissing(t *testing.T) {
	p := Policy{TapePool: "vault", TapeRetention: "1y", TapeFrequency: "monthly"}
	st := &TapeState{}
	if w := TapeGoalPoolMissing(st, "g", p); !strings.Contains(w, "tape pool vault, which does not exist") || !strings.Contains(w, "recall tape pool create vault --retention 1y") {
		t.Fatalf("warning %q", w)
	}
	st.Pools = []TapePool{{Name: "vault"}}
	if w := TapeGoalPoolMissing(st, "g", p); w != "" {
		t.Fatalf("warning with the pool there: %q", w)
	}
	if w := TapeGoalPoolMissing(&TapeState{}, "g", Policy{}); w != "" {
		t.Fatalf("warning without a tape goal: %q", w)
	}
}
