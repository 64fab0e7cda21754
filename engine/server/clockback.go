package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/recall-backup/recall/engine"
)

// A clock set back. The schedule's state records times of the server's
// clock: how far each group's schedule ran (covered), the tape goals' and
// the checks' runs, the last garbage collection. A clock stepped back a
// little (NTP correcting a drift) leaves them a little ahead of it, and
// the server waits for the clock to pass them again, so that no run is
// made twice. A clock stepped back far (a machine booted with its clock
// months ahead, then corrected) would leave the server waiting for those
// months, silently. So a recorded time ahead of the clock by more than
// clockBackMargin is taken as a clock set back: the schedule resumes from
// the clock (the group's latest run time at or before it counts as made:
// the backups made under the wrong clock were made in real time, just
// labelled ahead), the server logs it and opens an alert (job "clock")
// naming the group, the recorded time and the clock; the group's next
// backup that makes its points clears it.

// clockBackMargin is how far a recorded time may lie ahead of the clock
// before the clock is taken as set back rather than corrected: more than
// an NTP correction, less than a silence worth an alert.
const clockBackMargin = time.Hour

// ErrClockBehind: a time the server recorded lies ahead of its clock by
// more than clockBackMargin.
var ErrClockBehind = errors.New("the clock is behind the time the schedule had run to")

// aheadOf reports whether recorded lies ahead of now by more than the
// margin.
func aheadOf(recorded, now time.Time) bool { return recorded.Sub(now) > clockBackMargin }

// clockWentBack resumes group g's schedule from now, its covered time
// lying ahead of the clock (aheadOf), and returns the new covered time:
// the latest run time at or before now, so the next run is the next run
// time. The group's tape goal restarts its period at now if it too lies
// ahead. On an invalid policy it returns covered unchanged (tick says
// why the group is not scheduled).
func (s *Server) clockWentBack(g engine.Group, covered, now time.Time) time.Time {
	fresh, _, err := latestRun(g.Policy, now.Add(-8*24*time.Hour), now)
	if err != nil {
		return covered
	}
	next, _ := g.Policy.NextRun(fresh)
	s.mu.Lock()
	gs := s.state.Groups[g.Name]
	gs.Covered = fresh
	if aheadOf(gs.Tape, now) {
		gs.Tape = now
	}
	if aheadOf(gs.TapeRetry, now.Add(tapeRetryDelay)) {
		gs.TapeRetry = now
	}
	s.mu.Unlock()
	s.saveState()
	s.o.Log.Warn("clock set back: resuming the group's schedule from the clock", "group", g.Name, "recorded", covered, "now", now,
		"ahead", covered.Sub(now).Round(time.Second), "next_run", next)
	why := fmt.Errorf("group %s: %w: the clock shows %s, the schedule had run to %s (%s ahead); the schedule resumed from the clock, next run %s",
		g.Name, ErrClockBehind, now.Format(time.RFC3339), covered.Format(time.RFC3339), covered.Sub(now).Round(time.Second), next.Format(time.RFC3339))
	s.sendAlertEvent(s.alerts.fail(Alert{Job: "clock", Group: g.Name}, why, now))
	return fresh
}

// gcClockBack resets the time of the last garbage collection when it lies
// ahead of the clock (s.mu held): else none would run until the clock
// passed it by a day. It reports whether it changed it.
func (s *Server) gcClockBack(now time.Time) bool {
	if !aheadOf(s.state.GC, now) {
		return false
	}
	s.o.Log.Warn("clock set back: garbage collection resumes from the clock", "recorded", s.state.GC, "now", now)
	s.state.GC = now
	return true
}
