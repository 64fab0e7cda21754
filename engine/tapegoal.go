package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A group's long-term goal (Policy.TapeRetention, TapeFrequency, TapePool)
// writes the latest point of each member to the pool at the start of
// every period of TapeFrequency, in the clock's time zone:
//
//	daily        every midnight
//	weekly       Monday 00:00
//	bi-weekly    Monday 00:00 of even ISO weeks
//	monthly      the 1st, 00:00
//	quarterly    1 January, April, July, October
//	half-yearly  1 January and July
//	yearly       1 January
//
// The pool's retention, not the goal's, decides when its sets expire: a
// goal of 7y belongs in a pool created with --retention 7y. A set takes
// appends for its pool's append window (7 days unless the pool says): a
// goal whose period is longer starts a new set at every run unless the
// pool's window spans the period (a monthly goal: --append-window 5w),
// and then each set is kept the window longer than the retention.

// tapeGoalShortfall says, when pool keeps its sets a shorter time than
// the goal of policy p asks, how to mend it ("" when it keeps them long
// enough, or either span does not read: other checks say so). The pool's
// retention decides the expiry, so a shorter one loses the goal's copies
// years early, with no error anywhere.
func (p Policy) tapeGoalShortfall(group string, pool TapePool, now time.Time) string {
	goal, gerr := retentionExpiry(p.TapeRetention, now)
	kept, perr := retentionExpiry(pool.Retention, now)
	if gerr != nil || perr != nil || !kept.Before(goal) {
		return ""
	}
	return fmt.Sprintf("tape pool %s keeps its sets %s, less than group %s's tape goal of %s: its copies expire early; give the pool the goal's retention with 'recall tape pool set %s --retention %s' (sets written already keep their expiry), or name a pool of that retention with 'recall group edit %s --tape-pool POOL'",
		pool.Name, pool.Retention, group, p.TapeRetention, pool.Name, p.TapeRetention, group)
}

// CheckTapeGoalPool refuses a tape goal whose pool exists in the media
// catalog st and keeps its sets a shorter time than the goal asks; a
// pool not created yet is not refused ('recall status' says to create
// it). For group create, edit and apply, with the state read before the
// catalog's group transaction (Catalog.TapeState).
func CheckTapeGoalPool(st *TapeState, group string, p Policy, now time.Time) error {
	if p.TapePool == "" || p.TapeRetention == "" || st == nil {
		return nil
	}
	pool, err := st.pool(p.TapePool)
	if err != nil {
		return nil
	}
	if msg := p.tapeGoalShortfall(group, pool, now); msg != "" {
		return fmt.Errorf("%w: %s", ErrBadPolicy, msg)
	}
	return nil
}

// TapeGoalPoolMissing is the warning for a tape goal whose pool the media
// catalog does not have (yet): the group is kept, as status keeps
// warning, but whoever declares it hears so at once. "" otherwise.
func TapeGoalPoolMissing(st *TapeState, group string, p Policy) string {
	if p.TapePool == "" || st == nil {
		return ""
	}
	if _, err := st.pool(p.TapePool); err == nil {
		return ""
	}
	ret := p.TapeRetention
	if ret == "" {
		ret = "SPAN"
	}
	return fmt.Sprintf("group %s writes to tape pool %s, which does not exist: create it with 'recall tape pool create %s --retention %s'", group, p.TapePool, p.TapePool, ret)
}

// NextTapeRun is the first time after after at which the group's tape goal
// is due; false when the policy has none.
func (p Policy) NextTapeRun(after time.Time) (time.Time, bool) {
	if p.TapeFrequency == "" || p.TapePool == "" {
		return time.Time{}, false
	}
	y, m, d := after.Date()
	loc := after.Location()
	day := time.Date(y, m, d, 0, 0, 0, 0, loc)
	month := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	nextMonth := func(step int) time.Time {
		// The next 1st of a month whose number (0-based) is a multiple of step.
		t := month.AddDate(0, 1, 0)
		for (int(t.Month())-1)%step != 0 {
			t = t.AddDate(0, 1, 0)
		}
		return t
	}
	switch p.TapeFrequency {
	case "daily":
		return day.AddDate(0, 0, 1), true
	case "weekly", "bi-weekly":
		t := day.AddDate(0, 0, 1)
		for t.Weekday() != time.Monday {
			t = t.AddDate(0, 0, 1)
		}
		if p.TapeFrequency == "bi-weekly" {
			if _, w := t.ISOWeek(); w%2 != 0 {
				t = t.AddDate(0, 0, 7)
			}
		}
		return t, true
	case "monthly":
		return nextMonth(1), true
	case "quarterly":
		return nextMonth(3), true
	case "half-yearly":
		return nextMonth(6), true
	case "yearly":
		return nextMonth(12), true
	}
	return time.Time{}, false
}

// WriteGroupToTape writes the latest point of each member of g to its
// goal's pool; members with no point yet are reported to log and left
// out.
func (s *Store) WriteGroupToTape(ctx context.Context, home string, g *Group, now func() time.Time, log func(string, ...any)) (*TapeWriteReport, error) {
	if g.Policy.TapePool == "" {
		return nil, fmt.Errorf("group %s has no tape pool (--tape-pool)", g.Name)
	}
	if err := s.r.Refresh(); err != nil {
		return nil, err
	}
	var points []*Point
	for _, src := range g.Sources() {
		p, err := s.r.FindPoint("latest", src)
		if err != nil {
			if log != nil {
				log("group %s: member source %s: %v; not written to tape", g.Name, src, err)
			}
			continue
		}
		points = append(points, p)
	}
	if len(points) == 0 {
		return nil, errors.New("no member has a recovery point yet")
	}
	o := TapeWriteOptions{Pool: g.Policy.TapePool, Points: points, Log: log, Now: now, Group: g.Name}
	if log != nil && now != nil {
		// Checked by the write, in the media catalog it reads anyway.
		o.goal = &g.Policy
	}
	return s.WriteTape(ctx, home, o)
}
