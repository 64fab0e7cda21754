package server

import (
	"sync"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/engine"
)

// soloFixture is newFixture with its groups a and b replaced by one group,
// name, of members (paths of the fixture), under pol; the schedule state
// says the group was covered up to covered and collected at covered.
func soloFixture(t *testing.T, name string, pol engine.Policy, covered time.Time, members func(*fixture) []string) *fixture {
	t.Helper()
	f := newFixture(t)
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		for _, g := range []string{"a", "b"} {
			if err := cat.DeleteGroup(g); err != nil {
				return err
			}
		}
		_, err := cat.CreateGroup(engine.Group{Name: name, Members: members(f), Policy: pol}, week0)
		return err
	}))
	st := &state{Version: stateVersion, Groups: map[string]*groupState{name: {Covered: covered}}, GC: covered}
	must(t, st.save(f.home))
	return f
}

// pointsMade returns the points of source ("": of every source) in the
// store, oldest first.
func pointsMade(t *testing.T, home, source string) []engine.Point {
	t.Helper()
	st, err := engine.Open(engine.StoreDir(home), chunkstore.OpenOptions{})
	must(t, err)
	defer st.Close()
	pts, err := st.Reader().Points()
	must(t, err)
	var out []engine.Point
	for _, p := range pts {
		if source == "" || p.Source == source {
			out = append(out, *p)
		}
	}
	return out
}

// scheduledFor returns the points among pts made for the recovery point
// time slot.
func scheduledFor(pts []engine.Point, slot time.Time) []engine.Point {
	var out []engine.Point
	for _, p := range pts {
		if p.Scheduled.Equal(slot) {
			out = append(out, p)
		}
	}
	return out
}

// TestDowntimeMakesMissedRecoveryPoint: the server down across a group's
// only recovery point time (12:00, a 1h sync window, 1d retention)
// makes, at its restart 40 minutes later, the recovery point of 12:00,
// and the prune of the next day's 12:00 keeps it by the retention range
// instead of dropping the day's data as sync-expired.
func TestDowntimeMakesMissedRecoveryPoint(t *testing.T) {
	day1 := week0.Add(24 * time.Hour)
	noon := day1.Add(12 * time.Hour)
	pol := engine.Policy{Sync: "15m", At: []string{"12:00"}, Retention: "1d", SyncWindow: "1h"}
	f := soloFixture(t, "d", pol, day1.Add(10*time.Hour+45*time.Minute), func(f *fixture) []string { return []string{f.memA} })
	src := engine.SourceName(f.memA)

	r := start(t, f.home, NewFakeClock(day1.Add(11*time.Hour)), nil)
	r.until(day1.Add(11*time.Hour + 50*time.Minute))
	r.stop()
	restart := noon.Add(40 * time.Minute)
	r = start(t, f.home, NewFakeClock(restart), nil)
	r.srv.WaitIdle()
	got := scheduledFor(pointsMade(t, f.home, src), noon)
	if len(got) != 1 || !got[0].Time.Equal(restart) {
		t.Fatalf("after the restart at %s: points made for 12:00: %+v, want the run of the restart", restart.Format("15:04"), got)
	}
	if n := count(jobsOf(t, f.home), "prune", "d", "ok"); n != 1 {
		t.Errorf("%d prunes after the run that made the missed recovery point, want 1", n)
	}

	// The next day's recovery point and its prune: the day before is
	// older than the sync window and kept by the retention range.
	r.until(noon.Add(24*time.Hour + 5*time.Minute))
	r.stop()
	if got := scheduledFor(pointsMade(t, f.home, src), noon); len(got) != 1 {
		t.Errorf("after the next day's prune: %d points made for day 1's 12:00, want it kept (retention 1d)", len(got))
	}
}

// TestLongJobAcrossPolicyChange: a long backup of a two-member group
// runs across a recovery point time while the time is changed (19:34 to
// 19:30, policy version 2). The member that starts late in that backup
// is no recovery point of version 1's 19:34 (the run is the sync of
// 19:00); the run made when the long one ends makes version 2's 19:30
// for both members.
func TestLongJobAcrossPolicyChange(t *testing.T) {
	day1 := week0.Add(24 * time.Hour)
	at := func(h, m int) time.Time { return day1.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	v1 := engine.Policy{Sync: "15m", At: []string{"19:34"}, Retention: "1d", SyncWindow: "1h"}
	f := soloFixture(t, "l", v1, at(18, 45), func(f *fixture) []string { return []string{f.memA, f.memB} })
	clock := NewFakeClock(at(19, 0))

	inFirst, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := start(t, f.home, clock, func(e Event) {
		if e.Kind == "member" && e.Member == f.memA {
			once.Do(func() {
				close(inFirst)
				<-release
			})
		}
	})
	<-inFirst
	// While member a is backed up the time is changed and the clock
	// passes both times: member b starts at 19:40.
	must(t, engine.WithCatalog(f.home, time.Second, t.Logf, func(cat *engine.Catalog) error {
		_, err := cat.EditGroup("l", at(19, 20), func(g *engine.Group) error {
			g.Policy.At = []string{"19:30"}
			return nil
		})
		return err
	}))
	clock.Set(at(19, 40))
	close(release)
	r.srv.WaitIdle()
	r.stop()

	for _, m := range []string{f.memA, f.memB} {
		pts := pointsMade(t, f.home, engine.SourceName(m))
		if old := scheduledFor(pts, at(19, 34)); len(old) != 0 {
			t.Errorf("member %s: %d points made for version 1's 19:34 (policy version %d), want none", m, len(old), old[0].PolicyVersion)
		}
		got := scheduledFor(pts, at(19, 30))
		if len(got) != 1 || got[0].PolicyVersion != 2 || !got[0].Time.Equal(at(19, 40)) {
			t.Errorf("member %s: points made for 19:30: %+v, want one, of policy version 2, by the run at 19:40", m, got)
		}
	}
}
