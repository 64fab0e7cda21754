package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// smallTapes lets a test make cartridges smaller than a real pack needs.
func smallTapes(t *testing.T) {
	old := minTapeCapacity
	minTapeCapacity = 1 << 20
	t.Cleanup(func() { minTapeCapacity = old })
}

// A pack larger than a cartridge stops the write on the second empty
// cartridge it meets the end of (the first may be a short one), naming
// the pack, its size and the cartridges, instead of going on to fill
// every cartridge of the library and leave them all full (locked for the
// pool's retention) holding nothing. The cartridges it met hold only
// their labels: they are left free for the pool, and the pool's next
// write of a point that fits uses them. (Fix: tapeWriter.cut and tooBig.)
func TestTapePackLargerThanCartridge(t *testing.T) {
	smallTapes(t)
	f := newTapeHomeEW(t, 6<<20, 3, 3<<20, 256<<10)
	ctx := context.Background()
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	t.Logf("write: %v", err)
	if err == nil {
		t.Fatal("a pack larger than every cartridge was written")
	}
	for _, want := range []string{"pack ", "(6.0 MiB)", "does not fit on cartridge RC0002L9 (slot 2), nor did it on RC0001L9", "--capacity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !slices.Equal(rep.Tapes, []string{"RC0001L9", "RC0002L9"}) {
		t.Errorf("the write loaded %v, want RC0001L9 and RC0002L9 only", rep.Tapes)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Media {
		if m.State == MediaFull {
			t.Errorf("cartridge %s left full", m.Barcode)
		}
	}
	for _, bc := range []string{"RC0001L9", "RC0002L9"} {
		if m, ok := st.medium(bc); !ok || m.State != MediaFree || m.Pool != "p" || m.Set != "" {
			t.Errorf("%s recorded as %+v (%v), want free for pool p", bc, m, ok)
		}
	}
	if ls, err := ListTapes(f.home, "", t.Logf); err != nil || len(ls) != 0 {
		t.Errorf("tape list after the stopped write: %+v (%v), want nothing", ls, err)
	}

	small, data := f.backupAgain(t, 100<<10, 7)
	rep, err = f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{small}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Tapes, []string{"RC0001L9"}) {
		t.Errorf("the next write used %v, want the freed RC0001L9", rep.Tapes)
	}
	if got, _ := restoreData(t, f.home, small.ID.String()); !slices.Equal(got, data) {
		t.Error("the point written on the freed cartridge restores different bytes")
	}
}

// A new emulated library's cartridges must take the largest pack whole:
// a smaller capacity is refused, naming the smallest one accepted, and
// nothing is recorded. (Fix: AddTapeLibrary, minTapeCapacity.)
func TestTapeLibraryMinCapacity(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ctx := context.Background()
	for _, c := range []int64{1, 3 << 20, minTapeCapacity - 1} {
		_, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
			Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: c, EarlyWarning: 1}})
		if err == nil || !strings.Contains(err.Error(), "--capacity 32MiB") {
			t.Errorf("capacity %d: %v, want a refusal naming --capacity 32MiB", c, err)
		}
	}
	if st, err := readTapeState(home, t.Logf); err != nil || len(st.Libraries) != 0 {
		t.Fatalf("after the refusals the catalog holds %+v (%v)", st, err)
	}
	if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: minTapeCapacity}}); err != nil {
		t.Errorf("capacity %d: %v", minTapeCapacity, err)
	}
}

// A library name that exists is refused, naming the directory it has,
// and so is a second name for a library the home has: either would have
// the catalog's cartridges point at other ones. (Fix: AddTapeLibrary.)
func TestTapeLibraryAddExisting(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ctx := context.Background()
	first, second := filepath.Join(t.TempDir(), "lib"), filepath.Join(t.TempDir(), "lib3")
	add := func(name, dir string) error {
		_, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: name, Dir: dir, Warn: t.Logf,
			Emulator: tapefs.EmulatorOptions{Slots: 2, Drives: 1, Capacity: 1 << 30}})
		return err
	}
	if err := add("lab", first); err != nil {
		t.Fatal(err)
	}
	if err := add("lab", second); err == nil || !strings.Contains(err.Error(), `"lab" exists`) || !strings.Contains(err.Error(), first) {
		t.Errorf("lab added again: %v, want a refusal naming %s", err, first)
	}
	if err := add("lab2", first); err == nil || !strings.Contains(err.Error(), "library lab ") {
		t.Errorf("lab's directory added as lab2: %v, want a refusal naming lab", err)
	}
	st, err := readTapeState(home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Libraries) != 1 || st.Libraries[0].Dir != first {
		t.Errorf("libraries %+v, want lab in %s only", st.Libraries, first)
	}
}

// Each emulated library a home makes numbers its cartridges with its own
// prefix, the first keeping RC, so no two cartridges of the home share a
// barcode (the media catalog knows a cartridge by its barcode); one the
// catalog records from elsewhere is not given again either.
// (Fix: AddTapeLibrary, freeBarcodePrefix.)
func TestTapeLibraryBarcodesUnique(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	ctx := context.Background()
	if err := writeTapeState(home, t.Logf, TapeUpdate{Media: []TapeMedium{{Barcode: "RD0001L9", State: MediaFree}}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	var prefixes []string
	for _, name := range []string{"a", "b", "c"} {
		dir := filepath.Join(t.TempDir(), name)
		if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: name, Dir: dir, Warn: t.Logf,
			Emulator: tapefs.EmulatorOptions{Slots: 3, Drives: 1, Capacity: 1 << 30}}); err != nil {
			t.Fatal(err)
		}
		lib, inv := emulatedInventory(t, dir)
		p, err := lib.BarcodePrefix()
		lib.Close()
		if err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, p)
		for _, e := range inv.Slots {
			if !e.Full {
				continue
			}
			if other, dup := seen[e.Barcode]; dup {
				t.Errorf("barcode %s in library %s and %s", e.Barcode, other, name)
			}
			seen[e.Barcode] = name
		}
	}
	if !slices.Equal(prefixes, []string{"RC", "RE", "RF"}) {
		t.Errorf("prefixes %v, want RC, then RE and RF (RD0001L9 is in the catalog)", prefixes)
	}
}

// A pool keeps its sets 1 to 99 years: a longer retention or append
// window is refused at create and set, whatever its unit, saying the
// range (a set's expiry past year 9999 failed every write); spaces around
// a span are trimmed, not stored. (Fix: spanAfter, checkPoolPolicy.)
func TestTapePoolSpanLimits(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := AddTapeLibrary(context.Background(), home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i, span := range []string{"9000y", "1000y", "100y", "1189mo", "5200w", "36200d"} {
		name := fmt.Sprintf("p%d", i)
		if _, err := CreateTapePool(home, TapePool{Name: name, Retention: span}, now, t.Logf); err == nil || !strings.Contains(err.Error(), "99y") {
			t.Errorf("pool create --retention %s: %v, want a refusal saying 99y", span, err)
		}
		if _, err := CreateTapePool(home, TapePool{Name: name, Retention: "1y", AppendWindow: span}, now, t.Logf); err == nil || !strings.Contains(err.Error(), "99y") {
			t.Errorf("pool create --append-window %s: %v, want a refusal saying 99y", span, err)
		}
	}
	for _, span := range []string{"99y", "1188mo", "36159d"} {
		if _, err := spanAfter(span, now); err != nil {
			t.Errorf("span %s: %v", span, err)
		}
	}
	p, err := CreateTapePool(home, TapePool{Name: "vault", Retention: " 7y "}, now, t.Logf)
	if err != nil || p.Retention != "7y" {
		t.Fatalf("pool create --retention ' 7y ': %+v, %v; want retention 7y", p, err)
	}
	long := "9000y"
	if _, err := SetTapePool(home, "vault", TapePoolChange{Retention: &long}, now, t.Logf); err == nil || !strings.Contains(err.Error(), "99y") {
		t.Errorf("pool set --retention 9000y: %v, want a refusal saying 99y", err)
	}
	spaced := " 10y"
	if p, err := SetTapePool(home, "vault", TapePoolChange{Retention: &spaced}, now, t.Logf); err != nil || p.Retention != "10y" {
		t.Errorf("pool set --retention ' 10y': %+v, %v; want retention 10y", p, err)
	}
	pools, err := ListTapePools(home, t.Logf)
	if err != nil || len(pools) != 1 || pools[0].Retention != "10y" {
		t.Errorf("pools %+v (%v), want vault with 10y only", pools, err)
	}
}

// countingLibrary counts the cartridges moved into a drive.
type countingLibrary struct {
	tapefs.Library
	loads *int
}

func (l countingLibrary) Load(ctx context.Context, slot, drive int) error {
	*l.loads++
	return l.Library.Load(ctx, slot, drive)
}

// A tape restore into a target it would refuse (a directory with
// entries, without --overwrite; a file) is refused before any cartridge
// is loaded, not after all of them are read. (Fix: restoreFromTape,
// checkRestoreTarget.)
func TestTapeRestoreChecksTargetFirst(t *testing.T) {
	f := newTapeHome(t, 1<<20, 2, 1<<30)
	ctx := context.Background()
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	loads := 0
	openLibrary = func(l TapeLibrary) (tapefs.Library, error) {
		lib, err := openRecordedLibrary(l)
		return countingLibrary{lib, &loads}, err
	}
	t.Cleanup(func() { openLibrary = openRecordedLibrary })

	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "there"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(full, "there")
	for _, tt := range []struct {
		target string
		want   string
	}{
		{full, "restore target is not empty"},
		{file, "is not a directory"},
		{filepath.Join(file, "below"), "not a directory"},
		{"", "no restore target"},
	} {
		_, err := RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: tt.target, Log: t.Logf})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was read from tape") {
			t.Errorf("target %q: %v, want an error saying %q", tt.target, err, tt.want)
		}
		if loads != 0 {
			t.Errorf("target %q: %d cartridges loaded before the refusal, want none", tt.target, loads)
			loads = 0
		}
	}
	if _, err := RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: full, Overwrite: true, Log: t.Logf}); err != nil {
		t.Errorf("restore with --overwrite: %v", err)
	}
	if loads == 0 {
		t.Error("the restore with --overwrite loaded no cartridge")
	}
}

// A group's tape goal kept longer than its pool keeps its sets loses its
// copies years early: 'recall status' warns, naming the pool, the group
// and both spans, and CheckTapeGoalPool refuses it; a pool that keeps
// them as long or longer, or one not created yet, is not refused.
// (Fix: tapeGoalShortfall, TapeStatus, CheckTapeGoalPool.)
func TestTapeGoalPoolRetention(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	st := &TapeState{Pools: []TapePool{
		{Name: "vault", Library: "lib", Retention: "1y"},
		{Name: "long", Library: "lib", Retention: "10y"},
		{Name: "months", Library: "lib", Retention: "18mo"},
	}, Media: []TapeMedium{{Barcode: "X1", State: MediaFree, Library: "lib"}}}
	goal := func(ret, pool string) Policy {
		return Policy{TapeRetention: ret, TapeFrequency: "yearly", TapePool: pool}
	}
	groups := []Group{
		{Name: "tg", Policy: goal("7y", "vault")},
		{Name: "ok", Policy: goal("7y", "long")},
		{Name: "same", Policy: goal("1y", "vault")},
		{Name: "mo", Policy: goal("2y", "months")},
	}
	_, warnings := TapeStatus(st, groups, now)
	want := []string{
		"tape pool months keeps its sets 18mo, less than group mo's tape goal of 2y",
		"tape pool vault keeps its sets 1y, less than group tg's tape goal of 7y",
	}
	if len(warnings) != len(want) {
		t.Fatalf("warnings %q, want %d", warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(warnings[i], w) || !strings.Contains(warnings[i], "recall tape pool set") {
			t.Errorf("warning %d: %q, want it to start %q and say how to mend it", i, warnings[i], w)
		}
	}

	f := newTapeHome(t, 1<<20, 1, 1<<30)
	if _, err := CreateTapePool(f.home, TapePool{Name: "vault", Retention: "1y"}, now, t.Logf); err != nil {
		t.Fatal(err)
	}
	tst, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckTapeGoalPool(tst, "tg", goal("7y", "vault"), now)
	if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), "tape pool vault keeps its sets 1y") {
		t.Errorf("7y goal on a 1y pool: %v, want ErrBadPolicy naming the pool", err)
	}
	for _, p := range []Policy{goal("1y", "vault"), goal("6mo", "vault"), goal("7y", "nosuch"), {}} {
		if err := CheckTapeGoalPool(tst, "tg", p, now); err != nil {
			t.Errorf("goal %+v: %v, want no refusal", p, err)
		}
	}
}

// The tape listings look and write nothing: a home that does not exist is
// refused by name and stays missing (an empty list would hide a slip in
// --home), and an empty one lists nothing and stays empty. Before, each
// look created the home and a catalog in it. (Fix: tapeHomeFresh,
// tapeHomeExists.)
func TestTapeLookCreatesNothing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-home")
	if _, err := ListTapes(missing, "", t.Logf); err == nil || !strings.Contains(err.Error(), missing+" does not exist") {
		t.Errorf("tape list of a missing home: %v, want a refusal naming it", err)
	}
	if _, err := ListTapePools(missing, t.Logf); err == nil || !strings.Contains(err.Error(), missing+" does not exist") {
		t.Errorf("tape pool list of a missing home: %v, want a refusal naming it", err)
	}
	if _, err := TapeInventory(context.Background(), missing, "", time.Now(), t.Logf); err == nil {
		t.Errorf("tape inventory of a missing home: no error")
	}
	if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the looks the missing home is there (%v)", err)
	}

	empty := t.TempDir()
	ls, err := ListTapes(empty, "", t.Logf)
	if err != nil || len(ls) != 0 {
		t.Errorf("tape list of an empty home: %v %v, want nothing", ls, err)
	}
	if ps, err := ListTapePools(empty, t.Logf); err != nil || len(ps) != 0 {
		t.Errorf("tape pool list of an empty home: %v %v, want nothing", ps, err)
	}
	if exp, err := ExpireTapes(empty, time.Now(), t.Logf); err != nil || len(exp) != 0 {
		t.Errorf("expiry in an empty home: %v %v", exp, err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("after the looks the empty home holds %v", ents)
	}

	// The first write still makes the home and its catalog.
	home := filepath.Join(empty, "home")
	if _, err := AddTapeLibrary(context.Background(), home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: minTapeCapacity}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(CatalogPath(home)); err != nil {
		t.Errorf("library added, catalog: %v", err)
	}
}

// A key imported first, into a fresh home (missing or empty), makes the
// pool; a library added after it is its pool's. Before, the import took
// the tape lock, whose file then made the home "not empty", refused the
// import, and every later tape command, until the file was removed.
// (Fix: tapeHomeFresh passes over tape.lock.)
func TestTapeKeyImportIntoFreshHome(t *testing.T) {
	key, err := tapefs.NewPoolKey()
	if err != nil {
		t.Fatal(err)
	}
	file, err := tapefs.ExportKey("vault", key, "secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, make := range []bool{false, true} {
		home := filepath.Join(t.TempDir(), "home")
		if make {
			if err := os.Mkdir(home, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ImportTapeKey(home, file, "secret", "1y", time.Now(), t.Logf); err != nil {
			t.Fatalf("key import into a fresh home (made first: %v): %v", make, err)
		}
		if _, err := AddTapeLibrary(context.Background(), home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
			Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: minTapeCapacity}}); err != nil {
			t.Fatalf("library added after the import: %v", err)
		}
		ps, err := ListTapePools(home, t.Logf)
		if err != nil || len(ps) != 1 || ps[0].Name != "vault" || ps[0].KeyFingerprint != tapefs.KeyFingerprint(key) {
			t.Fatalf("pools %+v, %v: want vault with the key", ps, err)
		}
	}
	// A failed import into a fresh home leaves it fresh.
	home := t.TempDir()
	if _, err := ImportTapeKey(home, file, "wrong", "1y", time.Now(), t.Logf); err == nil {
		t.Fatal("import with the wrong passphrase: no error")
	}
	if _, err := AddTapeLibrary(context.Background(), home, AddLibraryOptions{Name: "lib", Dir: filepath.Join(t.TempDir(), "lib"), Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: minTapeCapacity}}); err != nil {
		t.Fatalf("library added after a failed import: %v", err)
	}
}

// "latest" without --source restores the newest point of the one source
// the cartridges hold, as restore does in the store, and names the
// sources when there are several (it was "bad backup option ... give
// --source", exit 1, with one source on tape).
func TestLatestOnTapeWithoutSource(t *testing.T) {
	at := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	set := func(pts ...tapefs.CatalogPoint) TapeSet {
		return TapeSet{Catalog: &tapefs.MediaCatalog{Points: pts}}
	}
	st := &TapeState{Sets: []TapeSet{
		set(tapefs.CatalogPoint{ID: "aa", Source: "web", Time: at}),
		set(tapefs.CatalogPoint{ID: "bb", Source: "web", Time: at.Add(time.Hour)}),
	}}
	if id, err := latestOnTape(st, ""); err != nil || id != "bb" {
		t.Errorf("latest of one source on tape: %q, %v; want bb", id, err)
	}
	st.Sets = append(st.Sets, set(tapefs.CatalogPoint{ID: "cc", Source: "db", Time: at}))
	if _, err := latestOnTape(st, ""); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "db, web") || !strings.Contains(err.Error(), "--source") {
		t.Errorf("latest of two sources on tape: %v, want them named and --source asked for", err)
	}
	if id, err := latestOnTape(st, "db"); err != nil || id != "cc" {
		t.Errorf("latest --source db: %q, %v; want cc", id, err)
	}
	if _, err := latestOnTape(&TapeState{}, ""); !errors.Is(err, ErrTapeNotFound) {
		t.Errorf("latest with nothing on tape: %v, want ErrTapeNotFound", err)
	}
}
