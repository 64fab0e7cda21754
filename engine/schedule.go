package engine

import "time"

// NextRun returns the first time after after that a backup of a group
// under p is due: a sync time (every Sync from midnight) or a recovery
// point time (At on Days), in after's location. With Sync "before-point"
// only the recovery point times. Whether a run makes a recovery point is
// ScheduledSlot's to say. Wall-clock times are generated day by day, so a
// server's schedule follows the local day through DST changes; a time the
// change skips is normalized by time.Date, and one it repeats is due once.
func (p Policy) NextRun(after time.Time) (time.Time, error) {
	r, err := p.Defaults().compile()
	if err != nil {
		return time.Time{}, err
	}
	return r.nextRun(after), nil
}

func (r *rules) nextRun(after time.Time) time.Time {
	loc := after.Location()
	// Eight days: a valid policy has a run on at least one weekday.
	for ahead := 0; ahead <= 8; ahead++ {
		y, mo, d := after.AddDate(0, 0, ahead).Date()
		var best time.Time
		consider := func(t time.Time) {
			if t.After(after) && (best.IsZero() || t.Before(best)) {
				best = t
			}
		}
		if r.sync > 0 {
			for s := time.Duration(0); s < day; s += r.sync {
				consider(time.Date(y, mo, d, 0, 0, int(s/time.Second), 0, loc))
			}
		}
		if r.days[time.Date(y, mo, d, 12, 0, 0, 0, loc).Weekday()] {
			for _, m := range r.at {
				consider(time.Date(y, mo, d, 0, m, 0, 0, loc))
			}
		}
		if !best.IsZero() {
			return best
		}
	}
	return time.Time{}
}
