package server

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/atomicfile"
	"github.com/recall-backup/recall/internal/golden"
)

// setPolicy changes group name's policy in f's catalog.
func (f *fixture) setPolicy(t *testing.T, name string, fn func(*engine.Policy)) {
	t.Helper()
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		_, err := cat.EditGroup(name, week0, func(g *engine.Group) error { fn(&g.Policy); return nil })
		return err
	}))
}

// jobLog records, on the fake clock, the jobs a server starts and ends.
type jobLog struct {
	clock *FakeClock
	mu    sync.Mutex
	// checks are the times each group's checks started.
	checks map[string][]time.Time
	// running counts each group's backups and prunes under way; pruned
	// is when each group's latest prune ended.
	running map[string]int
	pruned  map[string]time.Time
	bad     []string // checks started while the group had a job under way
}

func newJobLog(clock *FakeClock) *jobLog {
	return &jobLog{clock: clock, checks: map[string][]time.Time{}, running: map[string]int{}, pruned: map[string]time.Time{}}
}

func (l *jobLog) observe(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	switch {
	case e.Job == "check" && e.Kind == "started":
		l.checks[e.Group] = append(l.checks[e.Group], now)
		if l.running[e.Group] != 0 {
			l.bad = append(l.bad, e.Group+" at "+now.String())
		}
	case e.Job == "backup" || e.Job == "prune":
		switch e.Kind {
		case "started":
			l.running[e.Group]++
		case "finished":
			l.running[e.Group]--
			if e.Job == "prune" {
				l.pruned[e.Group] = now
			}
		}
	}
}

func readCheckState(t *testing.T, home string) *checkState {
	t.Helper()
	st, err := loadCheckState(home)
	must(t, err)
	return st
}

// TestChecksScheduled: a daily check runs every day, a weekly one on the
// last of the group's days, each at the group's last recovery point time
// once that time's backup and prune have ended; each check is the next
// run of the group's rotation.
func TestChecksScheduled(t *testing.T) {
	f := newFixture(t)
	f.setPolicy(t, "a", func(p *engine.Policy) {
		*p = engine.Policy{Sync: engine.SyncBeforePoint, At: []string{"21:00", "09:00"}, Days: []string{"wed", "mon"}, Retention: "3d", CheckSchedule: engine.CheckWeekly}
	})
	f.setPolicy(t, "b", func(p *engine.Policy) { p.CheckSchedule, p.CheckReadShare = engine.CheckDaily, "30%" })
	clock := NewFakeClock(week0)
	l := newJobLog(clock)
	r := start(t, f.home, clock, l.observe)
	end := week0.Add(10 * 24 * time.Hour)
	r.until(end)
	r.stop()

	at := func(d int) time.Time { return week0.Add(time.Duration(d)*24*time.Hour + 21*time.Hour) }
	wantA := []time.Time{at(2), at(9)} // Wednesdays
	var wantB []time.Time
	for d := range 10 {
		wantB = append(wantB, at(d))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.EqualFunc(l.checks["a"], wantA, time.Time.Equal) {
		t.Errorf("group a (weekly, days mon,wed): checks at %v, want %v", l.checks["a"], wantA)
	}
	if !slices.EqualFunc(l.checks["b"], wantB, time.Time.Equal) {
		t.Errorf("group b (daily): checks at %v, want %v", l.checks["b"], wantB)
	}
	if len(l.bad) > 0 {
		t.Errorf("checks started while a backup or prune of the group ran: %v", l.bad)
	}
	if !l.pruned["b"].Equal(at(9)) {
		t.Errorf("group b last pruned at %v, want %v: the check ran before the day's prune?", l.pruned["b"], at(9))
	}
	st := readCheckState(t, f.home)
	if a, b := st.Groups["a"], st.Groups["b"]; a.Runs != 2 || b.Runs != 10 || !a.Covered.Equal(at(9)) || !b.Covered.Equal(at(9)) {
		t.Errorf("check state: a %+v, b %+v; want 2 and 10 runs covering %v", a, b, at(9))
	}
	if n := count(jobsOf(t, f.home), "check", "b", "ok"); n != 10 {
		t.Errorf("catalog: %d checks of b ok, want 10", n)
	}

	// Down over two check times: one check makes up for both.
	clock = NewFakeClock(end.Add(2*24*time.Hour + 22*time.Hour))
	l = newJobLog(clock)
	r = start(t, f.home, clock, l.observe)
	r.srv.WaitIdle()
	r.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.checks["b"]) != 1 || len(l.checks["a"]) != 0 {
		t.Errorf("after downtime: checks %v, want one of b", l.checks)
	}
}

// TestCheckOnFailure: with --check on-failure a failure streak of the
// group's backups owes one check, a good backup ends the streak.
func TestCheckOnFailure(t *testing.T) {
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error { return cat.DeleteGroup("b") }))
	f.setPolicy(t, "a", func(p *engine.Policy) { p.CheckSchedule = engine.CheckOnFailure })
	hidden := f.memA + ".away"
	clock := NewFakeClock(week0)
	l := newJobLog(clock)
	r := start(t, f.home, clock, l.observe)
	defer func() {
		if r != nil {
			r.stop()
		}
	}()
	checks := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.checks["a"])
	}
	r.until(week0.Add(time.Hour)) // good backups
	if n := checks(); n != 0 {
		t.Fatalf("%d checks after good backups, want none", n)
	}
	must(t, os.Rename(f.memA, hidden))
	r.until(week0.Add(2 * time.Hour)) // four failed backups
	if n := checks(); n != 1 {
		t.Fatalf("%d checks after a streak of failures, want 1", n)
	}
	must(t, os.Rename(hidden, f.memA))
	r.until(week0.Add(3 * time.Hour))
	must(t, os.Rename(f.memA, hidden))
	r.until(week0.Add(4 * time.Hour))
	if n := checks(); n != 2 {
		t.Fatalf("%d checks after a second streak, want 2", n)
	}
	r.stop()
	r = nil
	jobs := jobsOf(t, f.home)
	if count(jobs, "backup", "a", "failed") != 8 || count(jobs, "check", "a", "ok") != 2 {
		t.Errorf("jobs: %d backups failed (want 8), %d checks ok (want 2)", count(jobs, "backup", "a", "failed"), count(jobs, "check", "a", "ok"))
	}
}

// TestCheckFindsDamage: a byte flipped in a pack that the check's share
// reads fails the check and opens an alert that says to repair.
func TestCheckFindsDamage(t *testing.T) {
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error { return cat.DeleteGroup("a") }))
	r := start(t, f.home, NewFakeClock(week0), nil)
	r.srv.WaitIdle() // the initial backup of b
	r.stop()

	// A pack b's backup wrote (all of them are), and a run of the
	// rotation that reads it.
	files, err := filepath.Glob(filepath.Join(engine.StoreDir(f.home), "packs", "*", "*"))
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no packs")
	}
	pack, err := chunkstore.ParseID(filepath.Base(files[0]))
	must(t, err)
	share := engine.ReadShare{Percent: 50}
	for !share.Reads(pack) {
		share.Run++
	}
	must(t, atomicfile.Write(filepath.Join(f.home, CheckStateFile), (&checkState{Version: checkStateVersion, Groups: map[string]*groupCheck{"b": {Runs: share.Run}}}).encode(), 0o644))
	h := pack.String()
	p := filepath.Join(engine.StoreDir(f.home), "packs", h[:2], h)
	b, err := os.ReadFile(p)
	must(t, err)
	b[0] ^= 0x20 // the first blob's first byte
	must(t, os.WriteFile(p, b, 0o600))
	f.setPolicy(t, "b", func(p *engine.Policy) { p.CheckSchedule, p.CheckReadShare = engine.CheckDaily, "50%" })

	clock := NewFakeClock(week0.Add(time.Minute))
	var mu sync.Mutex
	var opened []AlertEvent
	stp, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer stp.Close()
	srv, err := New(Options{Home: f.home, Store: stp, Clock: clock, MaxWait: 48 * time.Hour, Log: testLog(t), OnAlert: func(e AlertEvent) {
		mu.Lock()
		opened = append(opened, e)
		mu.Unlock()
	}})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r = &running{srv: srv, clock: clock, stop: func() {
		cancel()
		must(t, <-done)
		srv.Close()
	}}
	r.until(week0.Add(22 * time.Hour))
	r.stop()

	mu.Lock()
	defer mu.Unlock()
	if len(opened) != 1 || opened[0].Kind != "opened" || opened[0].Alert.Job != "check" || opened[0].Alert.Group != "b" ||
		!strings.Contains(opened[0].Alert.Error, h) && !strings.Contains(opened[0].Alert.Error, "damaged") || !strings.Contains(opened[0].Alert.Action, "recall repair") {
		t.Fatalf("alerts: %+v, want one opened by b's check, saying to run recall repair", opened)
	}
	if n := count(jobsOf(t, f.home), "check", "b", "failed"); n != 1 {
		t.Errorf("%d checks of b failed, want 1", n)
	}
}

func TestCheckStateFormat(t *testing.T) {
	st := &checkState{Version: checkStateVersion, Groups: map[string]*groupCheck{
		"web": {Covered: time.Date(2026, 11, 4, 21, 0, 0, 0, time.UTC), Runs: 12},
		"db":  {Runs: 3, Owed: true, Streak: true},
	}}
	golden.Check(t, "check-state-v1.golden", st.encode())
	home := t.TempDir()
	must(t, atomicfile.Write(filepath.Join(home, CheckStateFile), st.encode(), 0o644))
	back := readCheckState(t, home)
	if string(back.encode()) != string(st.encode()) {
		t.Errorf("read back:\n%s\nwant:\n%s", back.encode(), st.encode())
	}
	must(t, os.WriteFile(filepath.Join(home, CheckStateFile), []byte(`{"version":2}`), 0o644))
	if _, err := loadCheckState(home); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("a newer file: %v, want refused naming its version", err)
	}
}

// TestCheckClockSetBack: a clock set back over a check time makes no
// check twice.
func TestCheckClockSetBack(t *testing.T) {
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error { return cat.DeleteGroup("a") }))
	f.setPolicy(t, "b", func(p *engine.Policy) { p.CheckSchedule = engine.CheckDaily })
	clock := NewFakeClock(week0)
	l := newJobLog(clock)
	r := start(t, f.home, clock, l.observe)
	r.until(week0.Add(22 * time.Hour))
	clock.Set(week0.Add(20 * time.Hour)) // back 2 hours, before the check time
	r.until(week0.Add(23 * time.Hour))
	r.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if want := []time.Time{week0.Add(21 * time.Hour)}; !slices.EqualFunc(l.checks["b"], want, time.Time.Equal) {
		t.Errorf("checks at %v, want %v", l.checks["b"], want)
	}
}
