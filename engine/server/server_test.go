package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// week0 is a Monday midnight; the simulations run in UTC so that the
// expectations do not depend on the machine's time zone.
var week0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// The two groups of the simulations: one syncing every 15 minutes with
// five recovery points a day, one making a point once a day.
var (
	pointsA = []string{"09:00", "12:00", "15:00", "18:00", "21:00"}
	polA    = engine.Policy{Sync: "15m", At: pointsA, Retention: "2d", SyncWindow: "24h"}
	polB    = engine.Policy{Sync: engine.SyncBeforePoint, At: []string{"21:00"}, Retention: "3d"}
)

// crashEnv names the home of the child process of TestServerKilledAndRestarted.
const crashEnv = "RECALL_SERVER_TEST_CRASH_HOME"

func TestMain(m *testing.M) {
	flag.Parse()
	if v := os.Getenv(crashEnv); v != "" {
		what, home, _ := strings.Cut(v, ":")
		crashChild(what, home)
		os.Exit(3) // not reached: the child kills itself
	}
	os.Exit(m.Run())
}

type fixture struct {
	home       string
	memA, memB string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := simDir(t)
	f := &fixture{home: filepath.Join(dir, "home"), memA: filepath.Join(dir, "a"), memB: filepath.Join(dir, "b")}
	for _, m := range []string{f.memA, f.memB} {
		must(t, os.MkdirAll(filepath.Join(m, "sub"), 0o755))
		must(t, os.WriteFile(filepath.Join(m, "f"), []byte("content of "+m), 0o644))
		must(t, os.WriteFile(filepath.Join(m, "sub", "g"), []byte(strings.Repeat("x", 5000)), 0o644))
	}
	must(t, os.MkdirAll(f.home, 0o755))
	if _, err := chunkstore.Init(engine.StoreDir(f.home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		if _, err := cat.CreateGroup(engine.Group{Name: "a", Members: []string{f.memA}, Policy: polA}, week0); err != nil {
			return err
		}
		_, err := cat.CreateGroup(engine.Group{Name: "b", Members: []string{f.memB}, Policy: polB}, week0)
		return err
	}))
	return f
}

// simDir is the directory of a simulation: in memory (tmpfs) where the
// system has one, as a week of backups is a few thousand fsyncs, which
// on a disk take ten times as long as the rest. What is simulated is the
// schedule, and a kill -9 loses nothing in the page cache.
func simDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "recall-server-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// running is a server started by start.
type running struct {
	srv   *Server
	clock *FakeClock
	stop  func()
}

func start(t testing.TB, home string, clock *FakeClock, observe func(Event)) *running {
	t.Helper()
	return startLogged(t, home, clock, observe, testLog(t))
}

func startLogged(t testing.TB, home string, clock *FakeClock, observe func(Event), log *slog.Logger) *running {
	t.Helper()
	return startOptions(t, clock, Options{Home: home, Concurrency: 2, Observe: observe, MaxWait: 48 * time.Hour, Log: log})
}

// startOptions starts a server with o on clock, its store opened for it.
func startOptions(t testing.TB, clock *FakeClock, o Options) *running {
	t.Helper()
	home := o.Home
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	must(t, err)
	o.Store, o.Clock = st, clock
	srv, err := New(o)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return &running{srv: srv, clock: clock, stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		srv.Close()
		st.Close()
	}}
}

// until lets the server work through its schedule up to end (exclusive):
// each time it is idle the clock moves to the next time it waits for.
func (r *running) until(end time.Time) {
	for {
		r.srv.WaitIdle()
		next, ok := r.clock.Next()
		if !ok || !next.Before(end) {
			return
		}
		r.clock.Set(next)
	}
}

// run is one backup the schedule makes, computed from the policies
// alone: the time it runs and whether it is a recovery point.
type run struct {
	at        time.Time
	scheduled bool
}

// schedule lists the runs of a group from from (inclusive) to to
// (exclusive): syncs every step from midnight (none when step is 0)
// and the points at the given times of day.
func schedule(from, to time.Time, step time.Duration, points []string) []run {
	var out []run
	for d := from.Truncate(24 * time.Hour); d.Before(to); d = d.Add(24 * time.Hour) {
		seen := map[time.Time]bool{}
		var day []run
		for _, p := range points {
			c, _ := time.Parse("15:04", p)
			at := d.Add(time.Duration(c.Hour())*time.Hour + time.Duration(c.Minute())*time.Minute)
			day, seen[at] = append(day, run{at, true}), true
		}
		for at := d; step > 0 && at.Before(d.Add(24*time.Hour)); at = at.Add(step) {
			if !seen[at] {
				day = append(day, run{at, false})
			}
		}
		for _, r := range day {
			if !r.at.Before(from) && r.at.Before(to) {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b run) int { return a.at.Compare(b.at) })
	return out
}

// kept is what the policy's retention leaves of runs after its last
// prune, at the last recovery point run: the points made since, the
// newest, scheduled points within the retention range and every point
// within the sync window (ages up to and including the limits).
func kept(runs []run, retention, window time.Duration) []run {
	var last time.Time
	for _, r := range runs {
		if r.scheduled {
			last = r.at
		}
	}
	var out []run
	for i, r := range runs {
		age := last.Sub(r.at)
		if age < 0 || i == len(runs)-1 || (r.scheduled && age <= retention) || age <= window {
			out = append(out, r)
		}
	}
	return out
}

// pointsOf lists the points of source in the store as runs.
func pointsOf(t *testing.T, home, source string) []run {
	t.Helper()
	var out []run
	for _, p := range pointsMade(t, home, source) {
		out = append(out, run{p.Time.UTC(), !p.Scheduled.IsZero()})
	}
	slices.SortFunc(out, func(a, b run) int { return a.at.Compare(b.at) })
	return out
}

func jobsOf(t *testing.T, home string) []engine.Job {
	t.Helper()
	var jobs []engine.Job
	must(t, engine.WithCatalog(home, time.Second, t.Logf, func(cat *engine.Catalog) (err error) {
		jobs, err = cat.Jobs(0)
		return err
	}))
	return jobs
}

// count returns how many jobs of kind and group ended with status.
func count(jobs []engine.Job, kind, group, status string) int {
	n := 0
	for _, j := range jobs {
		if j.Kind == kind && j.Group == group && j.Status == status {
			n++
		}
	}
	return n
}

func equalRuns(t *testing.T, what string, got, want []run) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s: %d points, want %d", what, len(got), len(want))
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w run
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("  first difference at %d: got %v, want %v", i, g, w)
			return
		}
	}
}

// checkWeek asserts the outcome of a simulated week whose group a backups
// ran at runsA: the jobs, the points left by retention, and that prune
// and garbage collection ran.
func checkWeek(t *testing.T, f *fixture, runsA []run, end time.Time, killedPrunes int) {
	t.Helper()
	// Group b's first run time is at 21:00: a new group is backed up at
	// once all the same.
	runsB := append([]run{{week0, false}}, schedule(week0, end, 0, []string{"21:00"})...)
	jobs := jobsOf(t, f.home)
	if got, want := count(jobs, "backup", "a", "ok"), len(runsA); got != want {
		t.Errorf("group a: %d backups ok, want %d", got, want)
	}
	if got, want := count(jobs, "backup", "b", "ok"), len(runsB); got != want {
		t.Errorf("group b: %d backups ok, want %d", got, want)
	}
	days := int(end.Sub(week0) / (24 * time.Hour))
	if got, want := count(jobs, "prune", "a", "ok"), days*len(pointsA)-killedPrunes; got != want {
		t.Errorf("group a: %d prunes, want one after each recovery point time: %d", got, want)
	}
	if got, want := count(jobs, "prune", "b", "ok"), days; got != want {
		t.Errorf("group b: %d prunes, want %d", got, want)
	}
	if got := count(jobs, "gc", "", "ok"); got < days {
		t.Errorf("%d garbage collections, want at least one a day: %d", got, days)
	}
	for _, j := range jobs {
		if j.Status != "ok" && j.Status != "interrupted" {
			t.Errorf("job %d (%s of %q) %s: %s", j.Number, j.Kind, j.Group, j.Status, j.Error)
		}
	}
	equalRuns(t, "group a", pointsOf(t, f.home, engine.SourceName(f.memA)), kept(runsA, 48*time.Hour, 24*time.Hour))
	equalRuns(t, "group b", pointsOf(t, f.home, engine.SourceName(f.memB)), kept(runsB, 72*time.Hour, 48*time.Hour))
}

func TestServerWeek(t *testing.T) {
	f := newFixture(t)
	end := week0.Add(7 * 24 * time.Hour)
	r := start(t, f.home, NewFakeClock(week0), nil)
	r.until(end)
	r.stop()
	checkWeek(t, f, schedule(week0, end, 15*time.Minute, pointsA), end, 0)
}

// crashAt is the run of group a during which the child process of
// TestServerKilledAndRestarted kills itself, in the middle of the backup;
// the server restarts at restartAt.
var (
	crashAt   = week0.Add(3*24*time.Hour + 12*time.Hour)
	restartAt = crashAt.Add(2*time.Hour + 10*time.Minute)
)

// apiAt is when the child of TestServerKilledDuringAPIBackup is asked,
// through the API, for a backup of group b outside its schedule.
var apiAt = week0.Add(10*time.Hour + 5*time.Minute)

// crashChild runs the server of a simulated week on home and dies as
// kill -9 would in the middle of what: "backup", group a's backup of
// crashAt once it has its write session; "gc", the first garbage
// collection from crashAt on, once it has marked the live blobs and
// before it deletes anything; "api", a backup of group b asked for at
// apiAt, once it has its write session.
func crashChild(what, home string) {
	clock := NewFakeClock(week0)
	if what == "api" {
		clock = NewFakeClock(apiAt)
	}
	kill := func() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	log := slog.New(slog.NewTextHandler(syncWriter(func(l string) {
		if what == "gc" && strings.Contains(l, "msg=\"marked ") && !clock.Now().Before(crashAt) {
			kill()
		}
		// A prune forgetting several points, killed after the first.
		if what == "prune" && strings.Contains(l, "msg=\"point forgotten\"") && !clock.Now().Before(crashAt) {
			kill()
		}
	}), nil))
	r := startLogged(childTB{}, home, clock, func(e Event) {
		if what == "backup" && e.Kind == "member" && e.Group == "a" && clock.Now().Equal(crashAt) {
			kill()
		}
		if what == "api" && e.Kind == "member" && e.Group == "b" {
			kill()
		}
	}, log)
	if what == "api" {
		r.srv.WaitIdle()
		if _, err := r.srv.Backup("b"); err != nil {
			childTB{}.Fatal("backup of group b through the API:", err)
		}
		select {}
	}
	r.until(week0.Add(7 * 24 * time.Hour))
}

// killChild runs crashChild in a process of its own and waits for its
// death by SIGKILL.
func killChild(t *testing.T, what, home string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+what+":"+home)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child server: %v, want killed by SIGKILL; output:\n%s", err, out)
	}
}

// verifyClean reads back every blob of the store and fails on any damage.
func verifyClean(t *testing.T, home string) {
	t.Helper()
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	rep, err := engine.Verify(context.Background(), st.Reader(), engine.VerifyOptions{ReadData: true})
	if err != nil || len(rep.BadPacks) > 0 || len(rep.DamagedBlobs) > 0 || len(rep.Damage) > 0 || len(rep.DamagedPoints) > 0 {
		t.Fatalf("verify --read-data: %v, %+v", err, rep)
	}
}

// childTB is the testing.TB of the child process: it has no test to
// fail, so it says what went wrong and exits, which the parent reports.
type childTB struct{ testing.TB }

func (childTB) Helper() {}
func (childTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(4)
}
func (c childTB) Errorf(format string, args ...any) { c.Fatal(fmt.Sprintf(format, args...)) }

func TestServerKilledAndRestarted(t *testing.T) {
	f := newFixture(t)
	end := week0.Add(7 * 24 * time.Hour)
	killChild(t, "backup", f.home)
	verifyClean(t, f.home)
	jobs := jobsOf(t, f.home)
	if n := count(jobs, "backup", "a", "interrupted"); n != 1 {
		t.Fatalf("after the kill: %d interrupted backups of group a, want 1", n)
	}

	r := start(t, f.home, NewFakeClock(restartAt), nil)
	r.until(end)
	r.stop()

	jobs = jobsOf(t, f.home)
	var interrupted []engine.Job
	for _, j := range jobs {
		if j.Status == "interrupted" {
			interrupted = append(interrupted, j)
		}
	}
	if len(interrupted) != 1 || interrupted[0].Group != "a" || !strings.Contains(interrupted[0].Error, "ended before the job did") {
		t.Fatalf("interrupted jobs after the restart: %+v, want group a's backup, recorded as interrupted by the server", interrupted)
	}
	// When the killed process stopped is not known: the record says when
	// the restart found it, and no end (which made its duration run up
	// to the restart). A later start leaves the record as it is.
	found := interrupted[0].FoundInterrupted
	if !interrupted[0].Finished.IsZero() || found.IsZero() || found.Before(interrupted[0].Started) {
		t.Fatalf("interrupted job: finished %v, found %v (started %v): want no end and when it was found", interrupted[0].Finished, found, interrupted[0].Started)
	}
	again := &Server{o: Options{Home: f.home, Log: slog.New(slog.DiscardHandler)}}
	must(t, again.recordInterrupted(nil))
	for _, j := range jobsOf(t, f.home) {
		if j.Number == interrupted[0].Number && (!j.FoundInterrupted.Equal(found) || !j.Finished.IsZero()) {
			t.Fatalf("a later start rewrote the record: %+v", j)
		}
	}
	// Before the kill every run up to crashAt, which was cut short; after
	// the restart the missed runs made once, as one at restartAt, which
	// makes the recovery point of crashAt (12:00) the kill cut short; then
	// the schedule again.
	runsA := schedule(week0, crashAt, 15*time.Minute, pointsA)
	runsA = append(runsA, run{restartAt, true})
	runsA = append(runsA, schedule(restartAt.Add(time.Nanosecond), end, 15*time.Minute, pointsA)...)
	checkWeek(t, f, runsA, end, 0)
}

// testLog sends the server's log to the test's, when -v asks for it.
func testLog(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestServerKilledDuringGC: the server killed with -9 in the middle of a
// garbage collection leaves a store that verifies clean and the job
// recorded as interrupted at the restart; the week goes on as scheduled.
func TestServerKilledDuringGC(t *testing.T) { testServerKilledDuring(t, "gc") }

// TestServerKilledDuringPrune: a prune killed after forgetting its first
// point leaves the store clean; the restart records it interrupted, and
// the next prunes forget what it left, so the week ends as if it had not
// been killed.
func TestServerKilledDuringPrune(t *testing.T) { testServerKilledDuring(t, "prune") }

func testServerKilledDuring(t *testing.T, kind string) {
	f := newFixture(t)
	end := week0.Add(7 * 24 * time.Hour)
	killChild(t, kind, f.home)
	verifyClean(t, f.home)

	r := start(t, f.home, NewFakeClock(restartAt), nil)
	r.until(end)
	r.stop()
	var interrupted []engine.Job
	for _, j := range jobsOf(t, f.home) {
		if j.Status == "interrupted" {
			interrupted = append(interrupted, j)
		}
	}
	if len(interrupted) != 1 || interrupted[0].Kind != kind || !strings.Contains(interrupted[0].Error, "ended before the job did") {
		t.Fatalf("interrupted jobs after the restart: %+v, want the %s", interrupted, kind)
	}
	// Group a's run of crashAt was made (the collection followed its
	// prune); the runs after it until the restart are made as one.
	runsA := schedule(week0, crashAt.Add(time.Nanosecond), 15*time.Minute, pointsA)
	runsA = append(runsA, run{restartAt, false})
	runsA = append(runsA, schedule(restartAt.Add(time.Nanosecond), end, 15*time.Minute, pointsA)...)
	// A killed prune is not made again: the next one, at the next
	// recovery point time, forgets what it left.
	killed := 0
	if kind == "prune" {
		killed = 1
	}
	checkWeek(t, f, runsA, end, killed)
	verifyClean(t, f.home)
}

// TestServerKilledDuringAPIBackup: a backup asked for through the API
// (recall backup --group), cut short by a kill -9 of the server, is made
// at the next start, as a scheduled run cut short is; it covers no run
// time of the schedule.
func TestServerKilledDuringAPIBackup(t *testing.T) {
	f := newFixture(t)
	// Nothing of the schedule is due at apiAt: a ran at 10:00, b at 21:00
	// the day before.
	coveredA, coveredB := apiAt.Add(-5*time.Minute), week0.Add(-3*time.Hour)
	st := &state{Version: stateVersion, Groups: map[string]*groupState{"a": {Covered: coveredA}, "b": {Covered: coveredB}}, GC: apiAt}
	must(t, st.save(f.home))
	killChild(t, "api", f.home)
	jobs := jobsOf(t, f.home)
	if len(jobs) != 1 || count(jobs, "backup", "b", "interrupted") != 1 {
		t.Fatalf("jobs after the kill: %+v, want group b's backup interrupted", jobs)
	}

	r := start(t, f.home, NewFakeClock(apiAt.Add(time.Minute)), nil)
	r.srv.WaitIdle()
	r.stop()
	jobs = jobsOf(t, f.home)
	if count(jobs, "backup", "b", "ok") != 1 || count(jobs, "backup", "a", "ok") != 0 || len(jobs) != 2 {
		t.Fatalf("jobs after the restart: %+v, want the backup of b asked for made once, and nothing else", jobs)
	}
	back, err := loadState(f.home)
	must(t, err)
	if b := back.Groups["b"]; !b.Requested.IsZero() || !b.Covered.Equal(coveredB) || !back.Groups["a"].Covered.Equal(coveredA) {
		t.Errorf("state after the restart: a %+v, b %+v; want the request made and the schedule's runs as they were", back.Groups["a"], b)
	}
	verifyClean(t, f.home)
}

// A group deleted and made again under its name is backed up at once, as
// any new group: the server kept the old group's state, and the new one
// waited for the old one's next run (a day, for a point made at 21:00).
func TestGroupMadeAgainBackedUpAtOnce(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.home, NewFakeClock(week0), nil)
	r.until(week0.Add(time.Hour))
	r.stop()
	if n := count(jobsOf(t, f.home), "backup", "b", "ok"); n != 1 {
		t.Fatalf("group b: %d backups in its first hour, want its first one", n)
	}
	again := week0.Add(time.Hour)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		if err := cat.DeleteGroup("b"); err != nil {
			return err
		}
		_, err := cat.CreateGroup(engine.Group{Name: "b", Members: []string{f.memB}, Policy: polB}, again)
		return err
	}))
	r = start(t, f.home, NewFakeClock(again), nil)
	r.srv.WaitIdle()
	r.stop()
	if n := count(jobsOf(t, f.home), "backup", "b", "ok"); n != 2 {
		t.Errorf("group b made again: %d backups, want a second one at once", n)
	}
}
