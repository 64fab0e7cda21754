package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/engine/wsb"
	"github.com/recall-backup/recall/internal/atomicfile"
)

// Consistency checks. A group whose policy has --check daily or weekly
// is checked at its check times: every day (daily) or on the last of the
// group's days (weekly, engine.Policy.CheckWeekday) at the group's last
// recovery point time, once the group's backup and prune of that time
// have ended, so the check sees the day's recovery point. With
// --check on-failure a job of the group that fails (not a check, and not
// one the stop cancelled) owes a check, made as soon as the group is
// idle; a failure streak owes one check, and a later good job of the
// group ends the streak.
//
// A check is engine.Verify of the group's points with ReadData on the
// share --check-read-share of the store's packs: run number n (the
// checks of the group finished so far) reads the packs of bucket n of
// ceil(100/share) (engine.ReadShare), so any ceil(100/share) checks in a
// row read every pack. The share is of all the packs, not only the
// group's (see engine.ReadShare). Checks run one at a time and never
// beside garbage collection, which removes packs a check may have listed.
// A check that finds damage fails: its alert (job "check") says to run
// 'recall repair'. Damage found once is recorded in the store, so the
// following checks fail too until a repair, whatever share they read.
//
// Check times are kept like the backups' (a run time "covered" once its
// check ended): a clock set back runs no check twice, a server down over
// check times makes one check for them.
//
// CheckStateFile, version 1, replaced atomically (temp file, fsync,
// rename), pinned by testdata/check-state-v1.golden:
//
//	{
//	  "version": 1,                 format version; another one is refused
//	  "groups": {
//	    "<group>": {
//	      "covered": "<RFC 3339>",  latest check time whose check ended (absent: none yet)
//	      "runs": N,                checks ended: the next check's run number
//	      "owed": true,             on-failure: a failure owes a check (absent: false)
//	      "streak": true            on-failure: the current failure streak had its check (absent: false)
//	    }
//	  }
//	}
//
// Losing the file restarts the rotation at run 0 and forgets an owed
// check; nothing else.
const CheckStateFile = "check-state.json"

const checkStateVersion = 1

type checkState struct {
	Version int                    `json:"version"`
	Groups  map[string]*groupCheck `json:"groups"`
}

type groupCheck struct {
	Covered time.Time `json:"covered,omitzero"`
	Runs    uint64    `json:"runs"`
	Owed    bool      `json:"owed,omitempty"`
	Streak  bool      `json:"streak,omitempty"`
}

// checks is the server's side of consistency checks.
type checks struct {
	mu      sync.Mutex
	state   *checkState
	running map[string]bool // groups whose check is queued or running
}

func loadCheckState(home string) (*checkState, error) {
	p := filepath.Join(home, CheckStateFile)
	st := &checkState{Version: checkStateVersion, Groups: map[string]*groupCheck{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read check state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("check state %s: %w (remove it: the checks' rotation of packs then starts again)", p, err)
	}
	if st.Version != checkStateVersion {
		return nil, fmt.Errorf("check state %s has version %d; this recall knows %d (run the recall that wrote it, or remove the file)", p, st.Version, checkStateVersion)
	}
	if st.Groups == nil {
		st.Groups = map[string]*groupCheck{}
	}
	return st, nil
}

func (st *checkState) encode() []byte {
	b, _ := json.MarshalIndent(st, "", "  ")
	return append(b, '\n')
}

// initChecks reads the checks' state (New).
func (s *Server) initChecks() error {
	st, err := loadCheckState(s.o.Home)
	if err != nil {
		return err
	}
	s.checks.state, s.checks.running = st, map[string]bool{}
	return nil
}

// saveChecks writes the checks' state; s.checks.mu is held.
func (s *Server) saveChecks() {
	if err := atomicfile.Write(filepath.Join(s.o.Home, CheckStateFile), s.checks.state.encode(), 0o644); err != nil {
		s.o.Log.Error("check state not saved; after a restart a check may be made again", "err", err)
	}
}

func (c *checks) group(name string) *groupCheck {
	gc := c.state.Groups[name]
	if gc == nil {
		gc = &groupCheck{}
		c.state.Groups[name] = gc
	}
	return gc
}

// tickChecks queues the checks that are due (tick); wakeAt hears when the
// next one is.
func (s *Server) tickChecks(now time.Time, groups []engine.Group, wakeAt func(time.Time)) {
	s.checks.mu.Lock()
	defer s.checks.mu.Unlock()
	dirty := false
	for _, g := range groups {
		if len(g.Members) == 0 {
			continue
		}
		p := g.Policy.Defaults()
		if p.Check() != nil {
			continue // tick has logged it
		}
		gc := s.checks.group(g.Name)
		var covers time.Time
		switch p.CheckSchedule {
		case engine.CheckDaily, engine.CheckWeekly:
			if gc.Covered.IsZero() {
				// Checks start at the first check time from now on:
				// the times before the policy asked for them are not
				// missed.
				gc.Covered, dirty = latestCheck(p, now), true
			}
			if aheadOf(gc.Covered, now) {
				// The clock was set back far (clockback.go): checks
				// resume from it, as the group's backups do.
				s.o.Log.Warn("clock set back: the group's checks resume from the clock", "group", g.Name, "recorded", gc.Covered, "now", now)
				gc.Covered, dirty = latestCheck(p, now), true
			}
			due := nextCheck(p, gc.Covered)
			if due.After(now) {
				wakeAt(due)
				continue
			}
			covers = latestCheck(p, now)
		case engine.CheckOnFailure:
			if !gc.Owed {
				continue
			}
		default:
			if gc.Owed {
				gc.Owed, dirty = false, true
			}
			continue
		}
		// A run of the group's backup or prune ending wakes the
		// scheduler: the check waits for it.
		if s.checks.running[g.Name] || !s.groupIdle(g.Name) {
			continue
		}
		if s.enqueue(&task{kind: "check", group: g, covers: covers}) {
			s.checks.running[g.Name] = true
		}
	}
	if dirty {
		s.saveChecks()
	}
}

// groupIdle reports whether no job of the group is queued or running.
func (s *Server) groupIdle(group string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.busy["group:"+group] && !slices.ContainsFunc(s.queue, func(t *task) bool { return t.group.Name == group })
}

// checkDay reports whether p checks on the day of t.
func checkDay(p engine.Policy, t time.Time) bool {
	return p.CheckSchedule == engine.CheckDaily || int(t.Weekday()) == p.CheckWeekday()
}

// checkTime is the check time of the day of t: the last recovery point
// time.
func checkTime(p engine.Policy, t time.Time) time.Time {
	var h, m int
	fmt.Sscanf(p.At[len(p.At)-1], "%d:%d", &h, &m)
	y, mo, d := t.Date()
	return time.Date(y, mo, d, h, m, 0, 0, t.Location())
}

// nextCheck is the first check time after t; p has its defaults and a
// daily or weekly check.
func nextCheck(p engine.Policy, t time.Time) time.Time {
	for i := 0; ; i++ {
		c := checkTime(p, t.AddDate(0, 0, i))
		if c.After(t) && checkDay(p, c) {
			return c
		}
	}
}

// latestCheck is the latest check time at or before t; p has its
// defaults and a daily or weekly check.
func latestCheck(p engine.Policy, t time.Time) time.Time {
	for i := 0; ; i++ {
		c := checkTime(p, t.AddDate(0, 0, -i))
		if !c.After(t) && checkDay(p, c) {
			return c
		}
	}
}

// check verifies the group's points and reads back the share of packs
// of its run.
func (s *Server) check(ctx context.Context, t *task) error {
	g := t.group
	defer func() {
		s.checks.mu.Lock()
		delete(s.checks.running, g.Name)
		s.checks.mu.Unlock()
	}()
	pct, err := engine.ParseReadShare(g.Policy.Defaults().CheckReadShare)
	if err != nil {
		return err
	}
	s.checks.mu.Lock()
	share := engine.ReadShare{Percent: pct, Run: s.checks.group(g.Name).Runs}
	s.checks.mu.Unlock()
	log := s.o.Log.With("job", "check", "group", g.Name)
	log.Info("check started", "run", share.Run, "share", fmt.Sprintf("%d%%", pct), "runs_to_read_every_pack", share.Buckets())
	var rep *engine.VerifyReport
	j := &engine.Job{Kind: "check", Group: g.Name}
	defer s.noteCancelled(ctx, j)
	_, err = engine.RunJob(s.o.Home, j, s.warn, func() (*engine.Point, error) {
		var err error
		rep, err = engine.Verify(ctx, s.o.Store.Reader(), engine.VerifyOptions{ReadData: true, Share: share, Sources: g.Sources()})
		return nil, err
	})
	if ctx.Err() != nil {
		return err // stopped: not a run of the rotation; an owed check stays owed
	}
	s.checks.mu.Lock()
	gc := s.checks.group(g.Name)
	gc.Runs++
	gc.Owed = false
	if t.covers.After(gc.Covered) {
		gc.Covered = t.covers
	}
	s.saveChecks()
	s.checks.mu.Unlock()
	if rep == nil {
		log.Error("check failed", "err", err)
		return fmt.Errorf("check of group %s: %w", g.Name, err)
	}
	if errors.Is(err, engine.ErrVerifyIncomplete) {
		log.Error("check could not read every pack (permissions, or read errors of the disk under the store): not verified", "points", rep.Points, "packs_read", rep.Packs, "unreadable_packs", len(rep.Unreadable), "err", err)
		return fmt.Errorf("check of group %s (run %d, %d packs read): %w", g.Name, share.Run, rep.Packs, err)
	}
	if err != nil {
		log.Error("check found damage", "points", rep.Points, "packs_read", rep.Packs, "bad_packs", len(rep.BadPacks), "damaged_files", len(rep.Damage), "err", err)
		return fmt.Errorf("check of group %s (run %d, %d packs read): %w", g.Name, share.Run, rep.Packs, err)
	}
	log.Info("check done: no damage", "points", rep.Points, "packs_read", rep.Packs, "chunks", rep.Chunks)
	return nil
}

// jobEnded notes, for on-failure checks, how a job of a group ended (run).
func (s *Server) jobEnded(t *task, err error) {
	if t.kind == "check" || t.kind == "gc" || t.kind == "tape" || stopped(err) || errors.Is(err, engine.ErrWarnings) || imageSide(err) {
		return
	}
	if t.group.Policy.Defaults().CheckSchedule != engine.CheckOnFailure {
		return
	}
	s.checks.mu.Lock()
	defer s.checks.mu.Unlock()
	gc := s.checks.group(t.group.Name)
	switch {
	case err == nil && gc.Streak:
		gc.Streak = false
	case err != nil && !gc.Streak:
		gc.Owed, gc.Streak = true, true
	default:
		return
	}
	s.saveChecks()
}

// imageSide reports whether err, a failed job's error, is only about
// images on the Windows side (incomplete, another computer's folder,
// written during the ingestion) in every member that failed: the store
// is not in question, so no check is owed, nor is a streak ended.
func imageSide(err error) bool {
	switch err {
	case nil:
		return false
	case wsb.ErrIncomplete, wsb.ErrNoImage, engine.ErrOtherComputer, engine.ErrNotSettled, engine.ErrMembersFailed:
		// ErrMembersFailed is judged by the members' errors beside it.
		return true
	}
	if x, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range x.Unwrap() {
			if !imageSide(e) {
				return false
			}
		}
		return true
	}
	return imageSide(errors.Unwrap(err))
}

// checkAction is what an alert of a check that found damage says to do.
func checkAction(f *Alert) string {
	return fmt.Sprintf("damage found in the store: see it with 'recall verify --read-data', restore what you can, run 'recall repair packs' "+
		"(it keeps every readable blob) and 'recall repair index', back up the group again with 'recall backup --group %s', "+
		"then run 'recall repair points' for points that keep lost files", f.Group)
}
