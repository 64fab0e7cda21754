package engine

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// mayOverwrite is the one decision on reusing a cartridge: each case of
// what the catalog records and what the labels say.
func TestMayOverwrite(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.AddDate(0, -1, 0), now.AddDate(1, 0, 0)
	st := &TapeState{
		Media: []TapeMedium{
			{Barcode: "LIVE", Pool: "p", Set: "s-live", Sequence: 1, State: MediaWriting, Expiry: future},
			{Barcode: "OLD", Pool: "p", Set: "s-old", Sequence: 1, State: MediaExpired, Expiry: past},
			{Barcode: "ZERO", Pool: "p", Set: "s-zero", Sequence: 1, State: MediaFull},
			{Barcode: "FREEP", Pool: "p", State: MediaFree},
			{Barcode: "FREEQ", Pool: "q", State: MediaFree},
			{Barcode: "OLDQ", Pool: "q", Set: "s-oldq", Sequence: 1, State: MediaExpired, Expiry: past},
			// The medium record says expired; the set's own expiry, later
			// (as the catalog holds it), is what counts.
			{Barcode: "STALE", Pool: "p", Set: "s-ext", Sequence: 1, State: MediaExpired, Expiry: past},
		},
		Sets: []TapeSet{
			{ID: "s-live", Pool: "p", Expiry: future},
			{ID: "s-old", Pool: "p", Expiry: past},
			{ID: "s-zero", Pool: "p"},
			{ID: "s-ext", Pool: "p", Expiry: future},
		},
	}
	label := func(pool, set string, created, expiry time.Time) *tapefs.SetLabel {
		return &tapefs.SetLabel{Pool: pool, SetID: set, Sequence: 1, Created: created, Expiry: expiry}
	}
	for _, c := range []struct {
		name, barcode, pool string
		read                bool
		sl                  *tapefs.SetLabel
		refuse              string // "" when allowed, else a part of the reason
	}{
		{"unknown cartridge, not read", "NEW", "p", false, nil, ""},
		{"blank cartridge", "NEW", "p", true, nil, ""},
		{"unexpired set in the catalog", "LIVE", "p", false, nil, "holds set s-live"},
		{"unexpired set in the catalog, erase", "LIVE", "", false, nil, "holds set s-live"},
		{"expired set in the catalog", "OLD", "p", false, nil, ""},
		{"zero expiry in the catalog", "ZERO", "p", false, nil, "no expiry recorded"},
		{"zero expiry in the catalog, erase", "ZERO", "", false, nil, "no expiry recorded"},
		{"the set's expiry wins over the medium's", "STALE", "p", false, nil, "holds set s-ext"},
		{"free cartridge of the pool", "FREEP", "p", false, nil, ""},
		{"free cartridge of another pool", "FREEQ", "p", false, nil, "pool q's"},
		{"free cartridge of another pool, erase", "FREEQ", "", false, nil, ""},
		{"expired set of another pool", "OLDQ", "p", false, nil, "pool q's"},
		{"expired set of another pool, erase", "OLDQ", "", false, nil, ""},
		{"label: free label of the pool", "NEW", "p", true, label("p", "x", past, past), ""},
		{"label: free label of another pool", "NEW", "p", true, label("q", "x", past, past), "labelled for pool q"},
		{"label: free label of another pool, erase", "NEW", "", true, label("q", "x", past, past), ""},
		{"label: unexpired set", "NEW", "p", true, label("p", "x", past, future), "holds set x"},
		{"label: expired set", "NEW", "p", true, label("p", "x", past.AddDate(-1, 0, 0), past), ""},
		{"label: zero expiry", "NEW", "p", true, label("p", "x", past, time.Time{}), "no expiry recorded"},
		{"label: zero expiry, erase", "NEW", "", true, label("p", "x", past, time.Time{}), "no expiry recorded"},
		{"label: expired, but the catalog's set is not", "NEW", "p", true, label("p", "s-live", past.AddDate(-1, 0, 0), past), "holds set s-live"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := mayOverwrite(st, c.barcode, c.read, c.sl, c.pool, now)
			switch {
			case c.refuse == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.refuse != "" && (!errors.Is(err, ErrTapeRefused) || !strings.Contains(err.Error(), c.refuse) || !strings.Contains(err.Error(), "--force")):
				t.Errorf("got %v; want a refusal saying %q and naming --force", err, c.refuse)
			}
		})
	}
}

// dropCartridge takes out of a set what one cartridge held: its files,
// the points needing any of them; the others keep their files, re-indexed.
func TestDropCartridge(t *testing.T) {
	files := []tapefs.CatalogFile{
		{Sequence: 1, FileNo: 2, Kind: tapefs.KindPacks, Entries: []tapefs.CatalogEntry{{Name: "a"}, {Name: "b"}}},
		{Sequence: 1, FileNo: 3, Kind: tapefs.KindPoint}, // point 1's
		{Sequence: 2, FileNo: 2, Kind: tapefs.KindPacks, Entries: []tapefs.CatalogEntry{{Name: "c"}}},
		{Sequence: 2, FileNo: 3, Kind: tapefs.KindPoint}, // point 2's: needs a (on 1) and c
		{Sequence: 3, FileNo: 2, Kind: tapefs.KindPacks, Entries: []tapefs.CatalogEntry{{Name: "d"}}},
		{Sequence: 3, FileNo: 3, Kind: tapefs.KindPoint}, // point 3's: needs d
		{Sequence: 3, FileNo: 4, Kind: tapefs.KindPoint}, // point 4's: needs c, d
	}
	s := TapeSet{ID: "s", Tapes: []string{"A", "B", "C"}, Catalog: &tapefs.MediaCatalog{Files: files, Points: []tapefs.CatalogPoint{
		{ID: "p1", Packs: []string{"a", "b"}, Files: []int{0, 1}},
		{ID: "p2", Packs: []string{"a", "c"}, Files: []int{0, 2, 3}},
		{ID: "p3", Packs: []string{"d"}, Files: []int{4, 5}},
		{ID: "p4", Packs: []string{"c", "d"}, Files: []int{2, 4, 6}},
	}}}
	lost := dropCartridge(&s, 1)
	if !slices.Equal(lost, []string{"p1", "p2"}) || !s.Closed {
		t.Fatalf("lost %v, closed %v; want p1 and p2 lost, the set closed", lost, s.Closed)
	}
	c := s.Catalog
	if len(c.Files) != 5 || len(c.Points) != 2 {
		t.Fatalf("files %+v, points %+v", c.Files, c.Points)
	}
	for _, p := range c.Points {
		for _, i := range p.Files {
			if c.Files[i].Sequence == 1 {
				t.Errorf("point %s still names a file of the erased cartridge", p.ID)
			}
		}
		if pf, ok := pointFileOf(c, p.ID); !ok || pf.Sequence != 3 {
			t.Errorf("point %s: point file %+v, %v", p.ID, pf, ok)
		}
	}
	if got := setPointsBySequence(&s); len(got[1]) != 0 || !slices.Equal(got[3], []string{"p3", "p4"}) {
		t.Errorf("points by sequence after the drop: %v", got)
	}
}

// A set whose label carries no expiry (written with no retention) is read
// in by 'tape catalog' as unexpired, and its cartridge is not reused.
func TestTapeCatalogZeroExpiry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	home, libDir := filepath.Join(dir, "home"), filepath.Join(dir, "lib")
	if _, err := AddTapeLibrary(ctx, home, AddLibraryOptions{Name: "lib", Dir: libDir, Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: 1, Drives: 1, Capacity: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	lib, err := tapefs.OpenEmulatedLibrary(libDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Load(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	d, err := lib.Drive(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	created := time.Now().AddDate(-2, 0, 0).UTC()
	sl := tapefs.SetLabel{Pool: "p", SetID: tapefs.NewUUID(), Sequence: 1, Created: created}
	vl := tapefs.VolumeLabel{FormatVersion: tapefs.FormatVersion, VolumeID: tapefs.NewUUID(), Barcode: "RC0001L9", BlockSize: tapefs.BlockSize, Created: created}
	if err := tapefs.WriteLabels(ctx, d, vl, sl); err != nil {
		t.Fatal(err)
	}
	fw, err := tapefs.NewFileWriter(ctx, d, tapefs.KindPacks, 2, tapefs.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Add(ctx, "0123", []byte("pack")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(ctx); err != nil {
		t.Fatal(err)
	}
	d.Unload(ctx)
	d.Close()
	if err := lib.Unload(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	lib.Close()

	if _, err := CatalogTapes(ctx, home, TapeCatalogOptions{Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if _, err := ExpireTapes(home, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	st, err := readTapeState(home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := st.medium("RC0001L9")
	if !ok || m.Set != sl.SetID || m.State == MediaExpired || m.State == MediaFree {
		t.Fatalf("cartridge after catalog: %+v (known %v); want it in set %s, not expired", m, ok, sl.SetID)
	}
	if p, err := st.pool("p"); err != nil || p.Retention != "" {
		t.Errorf("pool from the label: %+v, %v; want it recorded with no retention (none to derive)", p, err)
	}
	if _, err := LabelTape(ctx, home, TapeLabelOptions{Slot: 1, Pool: "p", Now: time.Now(), Warn: t.Logf}); !errors.Is(err, ErrTapeRefused) {
		t.Errorf("label over a set with no expiry: %v, want it refused", err)
	}
	if _, err := EraseTape(ctx, home, TapeLabelOptions{Slot: 1, Now: time.Now(), Warn: t.Logf}); !errors.Is(err, ErrTapeRefused) {
		t.Errorf("erase of a set with no expiry: %v, want it refused", err)
	}
}

// A restore reads only the cartridge the catalog names (its volume id),
// and counts a file that is not the one the catalog says as missing.
func TestTapeRestoreChecksCatalog(t *testing.T) {
	f := newTapeHome(t, 3<<20, 2, 1<<30)
	ctx := context.Background()
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := st.set(rep.Set)
	restore := func(change func(s *TapeSet)) (*TapeRestoreResult, error) {
		t.Helper()
		s, _ := readTapeState(f.home, t.Logf)
		set, _ := s.set(rep.Set)
		set.Catalog = cloneCatalog(t, orig.Catalog)
		change(&set)
		if err := writeTapeState(f.home, t.Logf, TapeUpdate{Sets: []TapeSet{set}}); err != nil {
			t.Fatal(err)
		}
		return RestoreFromTape(ctx, f.home, TapeRestoreOptions{Point: f.p.ID.String(), Target: filepath.Join(t.TempDir(), "out"), Log: t.Logf})
	}

	_, err = restore(func(s *TapeSet) { s.Catalog.Tapes[0].VolumeID = tapefs.NewUUID() })
	if err == nil || !strings.Contains(err.Error(), "volume id") || !strings.Contains(err.Error(), "tape catalog") {
		t.Errorf("restore from a cartridge with another volume id: %v", err)
	}
	// The catalog places the packs in a file of another number: each is
	// lost as missing, and the restore says the point is damaged.
	res, err := restore(func(s *TapeSet) {
		for i := range s.Catalog.Files {
			if s.Catalog.Files[i].Kind == tapefs.KindPacks {
				s.Catalog.Files[i].FileNo += 100
			}
		}
	})
	if !errors.Is(err, ErrDamaged) && err == nil {
		t.Errorf("restore with a wrong file number: %v", err)
	}
	if res == nil || len(res.Lost) == 0 {
		t.Fatalf("restore with a wrong file number: %+v, %v: want its packs lost", res, err)
	}
	for _, l := range res.Lost {
		if l.Cause != LostMissing || !strings.Contains(l.Error, "the catalog says file") {
			t.Errorf("lost %+v: want missing, the catalog's file number named", l)
		}
	}
	if _, err := restore(func(*TapeSet) {}); err != nil {
		t.Errorf("restore with the catalog as written: %v", err)
	}
}

func cloneCatalog(t *testing.T, c *tapefs.MediaCatalog) *tapefs.MediaCatalog {
	t.Helper()
	b, err := tapefs.EncodeCatalog(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tapefs.DecodeCatalog(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A cartridge erased with --force stays dropped from its set when another
// cartridge of the set is read in again: that one's catalog file still
// lists what the erased one held.
func TestTapeDroppedStaysDropped(t *testing.T) {
	f := newTapeHome(t, 60<<20, 4, 48<<20)
	ctx := context.Background()
	if _, err := CreateTapePool(f.home, TapePool{Name: "p", Retention: "1y"}, time.Now(), t.Logf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: "p", Points: []*Point{f.p}, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tapes) < 2 {
		t.Fatalf("write: %+v, want two cartridges or more", rep)
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := st.medium(rep.Tapes[0])
	last, _ := st.medium(rep.Tapes[len(rep.Tapes)-1])
	r, err := RelabelTape(ctx, f.home, TapeLabelOptions{Slot: first.Slot, Force: true, Now: time.Now(), Warn: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if r.Set != rep.Set || r.Sequence != 1 || !r.SetKnown || !slices.Equal(r.PointsLost, []string{f.p.ID.String()}) {
		t.Fatalf("erase --force: %+v; want sequence 1 of set %s, point %s lost", r, rep.Set, f.p.ID)
	}
	if _, err := CatalogTapes(ctx, f.home, TapeCatalogOptions{Slot: last.Slot, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	st, err = readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.set(rep.Set)
	if len(s.Catalog.Points) != 0 || !s.Closed || !slices.Equal(s.Dropped, []int{1}) {
		t.Errorf("set after catalog of sequence %d: points %+v, closed %v, dropped %v; want no point, closed, 1 dropped", last.Sequence, s.Catalog.Points, s.Closed, s.Dropped)
	}
	for _, fl := range s.Catalog.Files {
		if fl.Sequence == 1 {
			t.Errorf("file %+v of the erased cartridge is back", fl)
		}
	}
	if _, err := ListTapes(f.home, f.p.ID.String(), t.Logf); !errors.Is(err, ErrTapeNotFound) {
		t.Errorf("list of the lost point: %v, want not found", err)
	}
}

// Erasing a cartridge names the points its set can no longer give, and,
// of those, the ones another set still holds whole: before, a point
// copied to a second pool was reported lost with the first pool's
// cartridge.
func TestTapeEraseNamesPointsElsewhere(t *testing.T) {
	f := newTapeHome(t, 1<<20, 3, 1<<30)
	ctx := context.Background()
	reps := map[string]*TapeWriteReport{}
	for _, pool := range []string{"p", "q"} {
		if _, err := CreateTapePool(f.home, TapePool{Name: pool, Retention: "1y"}, time.Now(), t.Logf); err != nil {
			t.Fatal(err)
		}
		rep, err := f.s.WriteTape(ctx, f.home, TapeWriteOptions{Pool: pool, Points: []*Point{f.p}, Log: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		reps[pool] = rep
	}
	st, err := readTapeState(f.home, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := st.medium(reps["p"].Tapes[0])
	// Without --force the refusal says what is at stake. (Fix: it named
	// the set and its expiry only.)
	_, err = RelabelTape(ctx, f.home, TapeLabelOptions{Slot: m.Slot, Now: time.Now(), Warn: t.Logf})
	if !errors.Is(err, ErrTapeRefused) || !strings.Contains(err.Error(), "are all whole on other sets") {
		t.Errorf("erase of p's cartridge without --force: %v; want a refusal saying its point is whole elsewhere", err)
	}
	r, err := RelabelTape(ctx, f.home, TapeLabelOptions{Slot: m.Slot, Force: true, Now: time.Now(), Warn: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	id := f.p.ID.String()
	if !slices.Equal(r.PointsLost, []string{id}) || r.PointsElsewhere[id] != reps["q"].Set {
		t.Errorf("erase of p's cartridge: lost %v, elsewhere %v; want %s lost from p's set, whole on q's %s", r.PointsLost, r.PointsElsewhere, id[:12], reps["q"].Set)
	}
	// q's cartridge now holds the only copy: the refusal names the point.
	m, _ = st.medium(reps["q"].Tapes[0])
	_, err = RelabelTape(ctx, f.home, TapeLabelOptions{Slot: m.Slot, Now: time.Now(), Warn: t.Logf})
	if !errors.Is(err, ErrTapeRefused) || !strings.Contains(err.Error(), "takes point(s) "+id+" off every tape") {
		t.Errorf("erase of q's cartridge without --force: %v; want a refusal naming %s", err, id[:12])
	}
}
