package server

import (
	"context"
	"strings"
	"testing"
	"time"
)

// clockAlerts returns the active alerts of job "clock", by group.
func clockAlerts(s *Server) map[string]Alert {
	out := map[string]Alert{}
	for _, a := range s.Alerts() {
		if a.Job == "clock" {
			out[a.Group] = a
		}
	}
	return out
}

// TestClockSetBackFarAtStart: a server started with its schedule's state
// months ahead of the clock (it ran while the clock was wrong) resumes
// every group's schedule from the clock at once, with an alert per group
// naming the recorded time and the clock, instead of waiting silently for
// the clock to catch up; garbage collection resumes too. The group's next
// good backup clears its alert.
func TestClockSetBackFarAtStart(t *testing.T) {
	f := newFixture(t)
	now := week0.Add(24*time.Hour + 10*time.Hour + 7*time.Minute)
	ahead := now.Add(150 * 24 * time.Hour).Truncate(15 * time.Minute)
	st := &state{Version: stateVersion, Groups: map[string]*groupState{"a": {Covered: ahead}, "b": {Covered: ahead}}, GC: ahead}
	must(t, st.save(f.home))

	r := start(t, f.home, NewFakeClock(now), nil)
	defer r.stop()
	r.srv.WaitIdle()
	alerts := clockAlerts(r.srv)
	for _, g := range []string{"a", "b"} {
		a, ok := alerts[g]
		if !ok {
			t.Fatalf("group %s: no clock alert; alerts: %+v", g, r.srv.Alerts())
		}
		for _, want := range []string{"group " + g, ahead.Format(time.RFC3339), now.Format(time.RFC3339), "resumed"} {
			if !strings.Contains(a.Error, want) {
				t.Errorf("group %s's clock alert %q does not say %q", g, a.Error, want)
			}
		}
		if !strings.Contains(a.Action, "timedatectl") {
			t.Errorf("group %s's clock alert's action %q says nothing of checking the clock", g, a.Action)
		}
	}
	next := map[string]time.Time{}
	for _, run := range r.srv.Status(context.Background()).Schedule {
		next[run.Group] = run.NextRun
	}
	if want := now.Truncate(15 * time.Minute).Add(15 * time.Minute); !next["a"].Equal(want) {
		t.Errorf("group a's next run %s, want %s: the schedule from the clock", next["a"], want)
	}
	if want := now.Truncate(24 * time.Hour).Add(21 * time.Hour); !next["b"].Equal(want) {
		t.Errorf("group b's next run %s, want %s", next["b"], want)
	}
	r.srv.mu.Lock()
	gcAt := r.srv.state.GC
	r.srv.mu.Unlock()
	if aheadOf(gcAt, now) {
		t.Errorf("last garbage collection still recorded at %s, ahead of the clock", gcAt)
	}

	r.until(now.Add(25 * time.Minute))
	if n := count(jobsOf(t, f.home), "backup", "a", "ok"); n != 2 {
		t.Errorf("group a: %d backups in the 25 minutes after the start, want 2 (10:15, 10:30)", n)
	}
	alerts = clockAlerts(r.srv)
	if _, ok := alerts["a"]; ok {
		t.Errorf("group a's clock alert still open after its backups resumed")
	}
	if _, ok := alerts["b"]; !ok {
		t.Errorf("group b's clock alert cleared before any backup of b")
	}
}

// TestClockSetBackFarWhileRunning: the clock stepped back by months under
// a running server (NTP after a boot with the clock ahead) is noticed at
// the scheduler's next look: the schedule resumes from the clock, with
// an alert, and no backup waits for the clock to catch up.
func TestClockSetBackFarWhileRunning(t *testing.T) {
	f := newFixture(t)
	right := week0.Add(24*time.Hour + 10*time.Hour + 7*time.Minute)
	wrong := right.Add(200 * 24 * time.Hour)
	clock := NewFakeClock(wrong)
	r := start(t, f.home, clock, nil)
	defer r.stop()
	r.until(wrong.Add(20 * time.Minute))
	before := count(jobsOf(t, f.home), "backup", "a", "ok")

	clock.Set(right)
	// What the scheduler's bounded sleep (MaxWait) does on a wall clock;
	// its next sleep says it has looked.
	looked := clock.Waited()
	r.srv.wake <- struct{}{}
	<-looked
	r.srv.WaitIdle()
	if a, ok := clockAlerts(r.srv)["a"]; !ok || !strings.Contains(a.Error, right.Format(time.RFC3339)) {
		t.Fatalf("after the clock went back: clock alert of group a %+v, want one naming the clock; alerts %+v", a, r.srv.Alerts())
	}
	r.until(right.Add(25 * time.Minute))
	if n := count(jobsOf(t, f.home), "backup", "a", "ok") - before; n != 2 {
		t.Errorf("group a: %d backups in the 25 minutes after the clock went back, want 2", n)
	}
}
