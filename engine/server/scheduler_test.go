package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/golden"
)

// TestClockJumps: a clock set back by hours makes no run twice; one set
// forward makes the missed runs once, as one, which is the recovery point
// of a point time it passed when within the tolerance.
func TestClockJumps(t *testing.T) {
	f := newFixture(t)
	day1 := week0.Add(24 * time.Hour)
	at := func(h, m int) time.Time { return day1.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	clock := NewFakeClock(week0)
	r := start(t, f.home, clock, nil)
	r.until(at(10, 1))
	clock.Set(at(7, 1)) // back 3 hours (NTP)
	r.until(at(11, 1))
	clock.Set(at(15, 7)) // forwards past 12:00 and 15:00
	r.until(at(16, 1))
	r.stop()

	want := schedule(week0, at(11, 1), 15*time.Minute, pointsA)
	want = append(want, run{at(15, 7), true}) // the recovery point of 15:00, 7 minutes late
	want = append(want, schedule(at(15, 8), at(16, 1), 15*time.Minute, pointsA)...)
	jobs := jobsOf(t, f.home)
	if got := count(jobs, "backup", "a", "ok"); got != len(want) {
		t.Errorf("group a: %d backups, want %d", got, len(want))
	}
	equalRuns(t, "group a", pointsOf(t, f.home, engine.SourceName(f.memA)), kept(want, 48*time.Hour, 24*time.Hour))
}

// TestTransientFailureRetried: a backup that finds its source's session
// held past the lock wait fails, is retried after the first back-off and
// succeeds; the scheduled runs go on as before.
func TestTransientFailureRetried(t *testing.T) {
	f := newFixture(t)
	other, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer other.Close()
	held, err := other.Session(context.Background(), engine.SessionOptions{Purpose: "test holds source a", Source: engine.SourceName(f.memA)})
	must(t, err)

	clock := NewFakeClock(week0.Add(time.Minute))
	st, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	var mu sync.Mutex
	var finished []Event
	srv, err := New(Options{Home: f.home, Store: st, Clock: clock, LockWait: time.Millisecond, MaxWait: 48 * time.Hour,
		Backoff: []time.Duration{5 * time.Minute}, Log: testLog(t),
		Observe: func(e Event) {
			if e.Kind == "finished" && e.Group == "a" {
				mu.Lock()
				finished = append(finished, e)
				mu.Unlock()
			}
		}})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r := &running{srv: srv, clock: clock}
	r.srv.WaitIdle()
	held.Close()
	r.until(week0.Add(16 * time.Minute))
	cancel()
	must(t, <-done)
	srv.Close()

	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 3 || !errors.Is(finished[0].Err, chunkstore.ErrLocked) || finished[1].Retry != 1 || finished[1].Err != nil || finished[2].Retry != 0 || finished[2].Err != nil {
		t.Fatalf("group a's jobs: %+v, want locked, the retry ok, then 00:15 ok", finished)
	}
	want := []run{{week0.Add(6 * time.Minute), false}, {week0.Add(15 * time.Minute), false}}
	equalRuns(t, "group a", pointsOf(t, f.home, engine.SourceName(f.memA)), want)
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("backup of /a: %w", chunkstore.ErrLocked), true},
		{fmt.Errorf("record: %w", engine.ErrCatalogBusy), true},
		{&os.PathError{Op: "write", Path: "/h/store/packs/x", Err: syscall.ENOSPC}, true},
		{errors.Join(errors.New("member /b: gone"), fmt.Errorf("member /a: %w", chunkstore.ErrLocked)), true},
		{&os.PathError{Op: "stat", Path: "/a", Err: syscall.ENOENT}, false},
		{fmt.Errorf("point: %w", engine.ErrDamaged), false},
		{chunkstore.ErrWrongPassword, false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestGroupsBackUpAtOnce: two groups due together back up at the same
// time, each in its own write session: group a's backup waits, inside its
// session, for group b's to have started.
func TestGroupsBackUpAtOnce(t *testing.T) {
	f := newFixture(t)
	bStarted := make(chan struct{})
	var once sync.Once
	clock := NewFakeClock(week0)
	r := start(t, f.home, clock, func(e Event) {
		if e.Kind != "member" {
			return
		}
		if e.Group == "b" {
			once.Do(func() { close(bStarted) })
			return
		}
		select {
		case <-bStarted:
		case <-time.After(time.Minute):
			t.Errorf("group b's backup did not start while group a's ran")
		}
	})
	r.srv.WaitIdle()
	r.stop()
	jobs := jobsOf(t, f.home)
	if count(jobs, "backup", "a", "ok") != 1 || count(jobs, "backup", "b", "ok") != 1 {
		t.Errorf("jobs: %+v", jobs)
	}
}

// syncWriter calls fn with each log line.
type syncWriter func(string)

func (w syncWriter) Write(p []byte) (int, error) { w(string(p)); return len(p), nil }

// TestStopCancelsAfterGrace: a stop lets a running backup go on for the
// grace period, then cancels it and records it as interrupted; its run
// is made at the next start.
func TestStopCancelsAfterGrace(t *testing.T) {
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error { return cat.DeleteGroup("b") }))
	release := make(chan struct{})
	var once sync.Once
	log := slog.New(slog.NewTextHandler(syncWriter(func(l string) {
		if strings.Contains(l, "cancelled running jobs") {
			once.Do(func() { close(release) })
		}
	}), nil))
	inBackup := make(chan struct{})
	st, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	srv, err := New(Options{Home: f.home, Store: st, Clock: NewFakeClock(week0), StopGrace: 10 * time.Millisecond, Log: log,
		Observe: func(e Event) {
			if e.Kind == "member" {
				close(inBackup)
				<-release // the backup goes on only once the stop cancelled it
			}
		}})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-inBackup
	cancel()
	must(t, <-done)
	srv.Close()
	jobs := jobsOf(t, f.home)
	if len(jobs) != 1 || jobs[0].Status != "interrupted" || !strings.Contains(jobs[0].Error, "recall serve stopped") {
		t.Fatalf("jobs after the stop: %+v, want one backup recorded as interrupted by the stop", jobs)
	}
	r := start(t, f.home, NewFakeClock(week0.Add(time.Minute)), nil)
	r.srv.WaitIdle()
	r.stop()
	after := jobsOf(t, f.home)
	if n := count(after, "backup", "a", "ok"); n != 1 {
		t.Errorf("after the restart: %d backups ok, want the run made once", n)
	}
	// The restart leaves what the stop recorded as it was.
	for _, j := range after {
		if j.Number == jobs[0].Number && !strings.Contains(j.Error, "recall serve stopped") {
			t.Errorf("after the restart the stopped job says %q, want what the stop recorded", j.Error)
		}
	}
}

func TestSecondServerRefused(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.home, NewFakeClock(week0), nil)
	defer r.stop()
	st, err := engine.Open(engine.StoreDir(f.home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	_, err = New(Options{Home: f.home, Store: st})
	if !errors.Is(err, ErrHomeBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), filepath.Join(f.home, LockFile)) {
		t.Errorf("second server: %v, want ErrHomeBusy naming pid %d and the lock file", err, os.Getpid())
	}
}

func TestStateFormat(t *testing.T) {
	st := &state{Version: stateVersion, Groups: map[string]*groupState{
		"web": {Covered: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)},
		"db":  {Covered: time.Date(2026, 11, 2, 21, 0, 0, 0, time.FixedZone("CET", 3600))},
	}, GC: time.Date(2026, 11, 2, 3, 0, 0, 0, time.UTC)}
	golden.Check(t, "state-v1.golden", st.encode())

	home := t.TempDir()
	must(t, st.save(home))
	back, err := loadState(home)
	must(t, err)
	if !back.Groups["db"].Covered.Equal(st.Groups["db"].Covered) || !back.GC.Equal(st.GC) || len(back.Groups) != 2 {
		t.Errorf("state read back: %+v", back)
	}
	must(t, os.WriteFile(filepath.Join(home, StateFile), []byte(`{"version":2,"groups":{}}`), 0o644))
	if _, err := loadState(home); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("a newer state file: %v, want refused naming its version", err)
	}
}
