package engine

import (
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Each rule decides the points it is for, first rule first.
func TestRetentionRules(t *testing.T) {
	asOf := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return asOf.Add(-d) }
	type pt struct {
		age       time.Duration
		scheduled bool
	}
	for _, c := range []struct {
		name  string
		pol   Policy
		pts   []pt // oldest first
		rules []string
	}{
		{"newest kept however old", Policy{Retention: "1d", SyncWindow: "1h"},
			[]pt{{400 * day, false}, {300 * day, false}},
			[]string{RuleSyncAged, RuleNewest}},
		{"scheduled within range, sync within window", Policy{Retention: "14d", SyncWindow: "48h"},
			[]pt{{15 * day, true}, {14 * day, true}, {3 * day, false}, {3 * day, true}, {47 * time.Hour, false}, {time.Hour, false}},
			[]string{RuleExpired, RuleRange, RuleSyncAged, RuleRange, RuleWindow, RuleNewest}},
		{"a future point is kept and is not the newest", Policy{Retention: "1d", SyncWindow: "1h"},
			[]pt{{3 * day, false}, {2 * day, false}, {-time.Hour, false}},
			[]string{RuleSyncAged, RuleNewest, RuleFuture}},
		{"window longer than range keeps old scheduled points too", Policy{Retention: "1d", SyncWindow: "3d"},
			[]pt{{4 * day, true}, {2 * day, true}, {time.Hour, false}},
			[]string{RuleExpired, RuleWindow, RuleNewest}},
		{"keep-daily beyond the range: newest of each day, N days", Policy{Retention: "2d", SyncWindow: "1h", KeepDaily: 2},
			[]pt{{5*day + 2*time.Hour, true}, {4*day + 3*time.Hour, true}, {4*day + 1*time.Hour, true}, {3*day + 2*time.Hour, true}, {3 * day, true}, {day, true}},
			[]string{RuleExpired, RuleExpired, RuleDaily, RuleExpired, RuleDaily, RuleNewest}},
		{"keep-weekly and keep-monthly", Policy{Retention: "1d", SyncWindow: "1h", KeepWeekly: 1, KeepMonthly: 2},
			// 2026-11-30 is a Monday; 40 and 45 days back are in October
			// (different ISO weeks), 70 days back in September.
			[]pt{{70 * day, true}, {45 * day, true}, {40 * day, true}, {3 * day, true}, {0, true}},
			[]string{RuleExpired, RuleExpired, RuleMonthly, RuleWeekly, RuleNewest}},
		{"keep-daily leaves a day the newest point holds", Policy{Retention: "1d", SyncWindow: "1h", KeepDaily: 3},
			[]pt{{365*day + 30*time.Second, false}, {365*day + 20*time.Second, false}, {365*day + 10*time.Second, false}, {365 * day, false}},
			[]string{RuleSyncAged, RuleSyncAged, RuleSyncAged, RuleNewest}},
		{"keep-daily counts, and leaves, a day a point within the range holds", Policy{Retention: "1d", SyncWindow: "1h", KeepDaily: 2},
			// 11-28 10:00, 11-29 00:00 (beyond the range), 11-29 13:00 (within).
			[]pt{{2*day + 2*time.Hour, true}, {36 * time.Hour, true}, {23 * time.Hour, true}, {0, true}},
			[]string{RuleDaily, RuleExpired, RuleRange, RuleNewest}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var pts []*Point
			for i, p := range c.pts {
				q := &Point{ID: id(byte(i + 1)), Source: "s", Time: ago(p.age)}
				if p.scheduled {
					q.Scheduled = q.Time
				}
				pts = append(pts, q)
			}
			ds, err := Retention(c.pol, pts, asOf)
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range ds {
				keep := map[string]bool{RuleExpired: false, RuleSyncAged: false}
				wantKeep, isDrop := keep[c.rules[i]]
				if !isDrop {
					wantKeep = true
				}
				if d.Rule != c.rules[i] || d.Keep != wantKeep || d.Point != pts[i] || d.Why == "" {
					t.Errorf("point %d (%s old): %s keep=%v (%s), want %s", i, c.pts[i].age, d.Rule, d.Keep, d.Why, c.rules[i])
				}
			}
		})
	}
}

// The tester's case: 30 syncs seconds apart, a year old, keep one: the
// newest. No keep-* rule keeps a second point of its day.
func TestRetentionOneDayOnePoint(t *testing.T) {
	asOf := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var pts []*Point
	for i := range 30 {
		pts = append(pts, &Point{ID: id(byte(i + 1)), Source: "s", Time: asOf.Add(-365*day + time.Duration(i)*time.Second)})
	}
	ds, err := Retention(Policy{Retention: "1d", SyncWindow: "1h", KeepDaily: 3}, pts, asOf)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if d.Keep != (i == len(pts)-1) {
			t.Errorf("point %d: keep=%v by %s (%s); want only the newest kept", i, d.Keep, d.Rule, d.Why)
		}
	}
}

// A damaged manifest is never dropped by policy: only forget removes it.
func TestRetentionKeepsDamaged(t *testing.T) {
	asOf := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	pts := []*Point{{ID: id(1), Time: asOf.Add(-time.Hour)}, {ID: id(2), Damaged: "does not decode"}}
	ds, err := Retention(Policy{}, pts, asOf)
	if err != nil {
		t.Fatal(err)
	}
	if !ds[1].Keep || ds[1].Rule != RuleDamaged || ds[0].Rule != RuleNewest {
		t.Errorf("%+v", ds)
	}
	if _, err := Retention(Policy{Retention: "0d"}, pts, asOf); err == nil {
		t.Error("an invalid policy decided")
	}
}

// The keep-* periods are the local ones whatever zone the as-of time is
// written in: the same instant, spelt in UTC or in another offset, keeps
// the same points.
func TestRetentionPeriodsLocalWhateverAsOfZone(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("test", 11*3600+27*60)
	defer func() { time.Local = saved }()
	// Two syncs either side of local midnight (12:33 UTC), days ago.
	base := time.Date(2026, 12, 3, 12, 33, 0, 0, time.UTC)
	var pts []*Point
	for i, d := range []time.Duration{-2 * time.Hour, -time.Hour, time.Hour, 2 * time.Hour} {
		var id chunkstore.ID
		id[0] = byte(i + 1)
		pts = append(pts, &Point{ID: id, Source: "s", Time: base.Add(d)})
	}
	pol := Policy{KeepDaily: 3}.Defaults()
	asOf := base.Add(20 * 24 * time.Hour)
	kept := func(at time.Time) int {
		ds, err := Retention(pol, pts, at)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range ds {
			if d.Keep {
				n++
			}
		}
		return n
	}
	utc, other := kept(asOf.UTC()), kept(asOf.In(time.FixedZone("x", -7*3600)))
	if utc != other || utc != 2 {
		t.Errorf("kept %d as of a UTC time, %d as of the same instant elsewhere; want 2 both (one a local day)", utc, other)
	}
}
