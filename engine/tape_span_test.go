package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// spannedSet writes the fixture's point with an early-warning zone of one
// block, so the end of medium cuts its files and the set spans
// cartridges; it returns the barcodes written, their slots, and a fresh
// home on the same library that has read no cartridge.
func spannedSet(t *testing.T) (f *tapeHomeFixture, tapes []string, slots map[string]int, fresh string) {
	t.Helper()
	f = newTapeHomeEW(t, 60<<20, 4, 40<<20, 1<<20)
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
	lib, inv := emulatedInventory(t, f.lib)
	lib.Close()
	slots = map[string]int{}
	for _, e := range inv.Slots {
		slots[e.Barcode] = e.Number
	}
	fresh = filepath.Join(t.TempDir(), "fresh")
	if _, err := AddTapeLibrary(context.Background(), fresh, AddLibraryOptions{Name: "lib", Dir: f.lib, Warn: t.Logf}); err != nil {
		t.Fatal(err)
	}
	return f, rep.Tapes, slots, fresh
}

// logLines collects what a job logs.
type logLines struct {
	t  *testing.T
	mu sync.Mutex
	s  []string
}

func (l *logLines) log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = append(l.s, fmt.Sprintf(format, args...))
	l.t.Logf(format, args...)
}

func (l *logLines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.s {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// A cartridge the end of medium filled, read alone on a fresh home, is
// reported filled, its set going on on the next sequence: not torn, no
// damage; it is full, with a written time.
func TestTapeCatalogFilledNotTorn(t *testing.T) {
	_, tapes, slots, fresh := spannedSet(t)
	l := &logLines{t: t}
	scanned, err := CatalogTapes(context.Background(), fresh, TapeCatalogOptions{Slot: slots[tapes[0]], Log: l.log})
	if err != nil {
		t.Fatal(err)
	}
	if len(scanned) != 1 {
		t.Fatalf("scanned %+v", scanned)
	}
	sc := scanned[0]
	if sc.Torn || len(sc.Damaged) > 0 || !sc.Filled || sc.ContinuedOn != 2 {
		t.Errorf("scanned %+v: want filled, continued on sequence 2, not torn nor damaged", sc)
	}
	if !l.has("filled; continued on sequence 2 of set " + sc.Set) {
		t.Errorf("log %q: want it to say the cartridge was filled and the set continued", l.s)
	}
	list, err := ListTapes(fresh, "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != MediaFull || list[0].Written.IsZero() {
		t.Errorf("tape list %+v: want the cartridge full, with a written time", list)
	}
}

// A restore on a fresh home that read only sequence 2 of a set, its
// sequence 1 in the library but never catalogued here, reads nothing and
// says to catalogue sequence 1, naming its slot, with the error of a
// missing cartridge.
func TestTapeRestoreUncataloguedSequence(t *testing.T) {
	f, tapes, slots, fresh := spannedSet(t)
	if _, err := CatalogTapes(context.Background(), fresh, TapeCatalogOptions{Slot: slots[tapes[1]], Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	// What a full scan of sequence 2 gives when no catalog file on it
	// describes sequence 1 (its last catalog file cut by the end of
	// medium): sequence 1's files and barcode unknown.
	st, err := readTapeState(fresh, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	set := st.Sets[0]
	c := *set.Catalog
	c.Files, c.Tapes, c.Points = nil, nil, nil
	for _, f := range set.Catalog.Files {
		if f.Sequence != 1 {
			c.Files = append(c.Files, f)
		}
	}
	for _, p := range set.Catalog.Points {
		p.Files = nil
		for i, f := range c.Files {
			if f.Kind == tapefs.KindPoint {
				p.Files = append(p.Files, i)
			}
		}
		c.Points = append(c.Points, p)
	}
	for _, tp := range set.Catalog.Tapes {
		if tp.Sequence != 1 {
			c.Tapes = append(c.Tapes, tp)
		}
	}
	set.Catalog, set.Tapes = &c, []string{"", tapes[1]}
	if err := writeTapeState(fresh, t.Logf, TapeUpdate{Sets: []TapeSet{set}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	l := &logLines{t: t}
	_, err = RestoreFromTape(context.Background(), fresh, TapeRestoreOptions{Point: "latest", Source: "src", Target: out, Log: l.log})
	t.Logf("restore: %v", err)
	if !errors.Is(err, ErrCartridgeMissing) {
		t.Fatalf("restore: %v, want ErrCartridgeMissing", err)
	}
	want := fmt.Sprintf("slots this home has not read: %d", slots[tapes[0]])
	if msg := err.Error(); !strings.Contains(msg, "sequence 1 of set") || !strings.Contains(msg, "not catalogued") || !strings.Contains(msg, "recall tape catalog --slot") || !strings.Contains(msg, want) {
		t.Errorf("restore: %q: want it to say sequence 1 is not catalogued and %q", msg, want)
	}
	if l.has("reading cartridge") {
		t.Errorf("a cartridge was read: %q", l.s)
	}
	if _, err := os.Stat(filepath.Join(out, "data")); err == nil {
		t.Errorf("a file was restored")
	}
	_ = f
}
