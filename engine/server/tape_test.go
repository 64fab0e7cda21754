package server

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/recall-backup/recall/tapefs"
)

// tapeGoalHome is a home whose group "lt" backs up daily at 21:00 and has
// a monthly tape goal into pool "monthly" of an emulated library, whose
// sets take appends for five weeks.
func tapeGoalHome(t *testing.T, slots int) (home, libDir string) {
	dir := simDir(t)
	home, mem := filepath.Join(dir, "home"), filepath.Join(dir, "m")
	libDir = filepath.Join(dir, "lib")
	must(t, os.MkdirAll(mem, 0o755))
	must(t, os.WriteFile(filepath.Join(mem, "f"), []byte("long-term data"), 0o644))
	must(t, os.MkdirAll(home, 0o755))
	if _, err := chunkstore.Init(engine.StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	pol := engine.Policy{Sync: engine.SyncBeforePoint, At: []string{"21:00"}, Retention: "3d",
		TapeRetention: "1y", TapeFrequency: "monthly", TapePool: "monthly"}
	must(t, engine.WithCatalog(home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		_, err := cat.CreateGroup(engine.Group{Name: "lt", Members: []string{mem}, Policy: pol}, week0)
		return err
	}))
	if _, err := engine.AddTapeLibrary(context.Background(), home, engine.AddLibraryOptions{Name: "lib", Dir: libDir, Warn: t.Logf,
		Emulator: tapefs.EmulatorOptions{Slots: slots, Drives: 1, Capacity: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.CreateTapePool(home, engine.TapePool{Name: "monthly", Retention: "1y", AppendWindow: "5w"}, week0, t.Logf); err != nil {
		t.Fatal(err)
	}
	return home, libDir
}

// TestMonthlyTapeGoal: a group backed up daily at 21:00 with a monthly
// tape goal writes, on the injected clock, the latest point of its member
// at the start of each month: the points of 30 November and 31 December,
// into one set of the pool (allocation continue), with one job each.
func TestMonthlyTapeGoal(t *testing.T) {
	home, _ := tapeGoalHome(t, 2)

	clock := NewFakeClock(week0)
	r := start(t, home, clock, nil)
	r.until(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC))
	r.stop()

	var tapeJobs int
	for _, j := range jobsOf(t, home) {
		if j.Kind == "tape-write" {
			tapeJobs++
			if j.Status != "ok" || j.Group != "lt" {
				t.Errorf("tape job %+v", j)
			}
		}
	}
	var st *engine.TapeState
	must(t, engine.WithCatalog(home, time.Second, t.Logf, func(cat *engine.Catalog) (err error) {
		st, err = cat.TapeState()
		return err
	}))
	if len(st.Sets) != 1 {
		t.Fatalf("%d sets, want one (allocation continue, a window of five weeks)", len(st.Sets))
	}
	var written []time.Time
	for _, p := range st.Sets[0].Catalog.Points {
		written = append(written, p.Time.UTC())
	}
	want := []time.Time{time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC), time.Date(2026, 12, 31, 21, 0, 0, 0, time.UTC)}
	if tapeJobs != 2 || !slices.EqualFunc(written, want, time.Time.Equal) {
		t.Errorf("%d tape jobs wrote points of %v; want 2, of %v", tapeJobs, written, want)
	}
}

// A tape goal that cannot write (its only cartridge write-protected)
// opens an alert saying what to do, is tried again an hour later, and the
// write that succeeds clears the alert.
func TestTapeGoalFailureAlerts(t *testing.T) {
	home, libDir := tapeGoalHome(t, 1)
	setProtected := func(on bool) {
		l, err := tapefs.OpenEmulatedLibrary(libDir)
		must(t, err)
		defer l.Close()
		must(t, l.SetWriteProtected("RC0001L9", on))
	}
	setProtected(true)
	clock := NewFakeClock(week0)
	r := start(t, home, clock, nil)
	r.until(time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC))
	alerts, err := ReadAlerts(home)
	must(t, err)
	if len(alerts) != 1 || alerts[0].Job != "tape" || alerts[0].Group != "lt" || !strings.Contains(alerts[0].Action, "recall tape inventory") || !strings.Contains(alerts[0].Error, "write-protected") {
		t.Fatalf("alerts after the failed write: %+v", alerts)
	}
	setProtected(false)
	r.until(time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC))
	r.stop()
	alerts, err = ReadAlerts(home)
	must(t, err)
	if len(alerts) != 0 {
		t.Errorf("alerts after the retry: %+v", alerts)
	}
	var failed, ok int
	for _, j := range jobsOf(t, home) {
		if j.Kind == "tape-write" {
			switch j.Status {
			case "failed":
				failed++
			case "ok":
				ok++
			}
		}
	}
	if failed != 1 || ok != 1 {
		t.Errorf("tape jobs: %d failed, %d ok; want the first failed and the retry an hour later ok", failed, ok)
	}
}

// The tape goal's fields of the state file, pinned; a state without them
// (state-v1.golden) reads as a goal that has not run.
func TestStateFormatTape(t *testing.T) {
	st := &state{Version: stateVersion, Groups: map[string]*groupState{
		"lt": {Covered: time.Date(2026, 12, 31, 21, 0, 0, 0, time.UTC), Tape: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			TapeRetry: time.Date(2027, 1, 1, 1, 0, 0, 0, time.UTC)},
	}}
	golden.Check(t, "state-v1-tape.golden", st.encode())
	home := t.TempDir()
	must(t, st.save(home))
	back, err := loadState(home)
	must(t, err)
	if g := back.Groups["lt"]; !g.Tape.Equal(st.Groups["lt"].Tape) || !g.TapeRetry.Equal(st.Groups["lt"].TapeRetry) {
		t.Errorf("state read back: %+v", g)
	}
}
