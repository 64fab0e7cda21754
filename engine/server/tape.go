package server

import (
	"context"
	"fmt"
	"time"

	"github.com/recall-backup/recall/engine"
)

// tapeRetryDelay is how long a failed tape write waits before it is tried
// again: long enough for an operator to insert a cartridge.
const tapeRetryDelay = time.Hour

// tickTape marks expired cartridges and queues the tape goals due (see
// the package comment).
func (s *Server) tickTape(now time.Time, groups []engine.Group, wakeAt func(time.Time)) {
	if _, err := engine.ExpireTapes(s.o.Home, now, s.warn); err != nil {
		s.o.Log.Error("expired cartridges not marked", "err", err)
	}
	for _, g := range groups {
		if len(g.Members) == 0 {
			continue
		}
		if _, ok := g.Policy.NextTapeRun(now); !ok {
			continue
		}
		s.mu.Lock()
		gs := s.state.Groups[g.Name]
		if gs == nil {
			s.mu.Unlock()
			continue
		}
		dirty := false
		if gs.Tape.IsZero() {
			// The goal's first period starts now.
			gs.Tape, dirty = now, true
		}
		covered, retryAt := gs.Tape, gs.TapeRetry
		backingUp := s.busy["group:"+g.Name]
		for _, q := range s.queue {
			backingUp = backingUp || (q.kind == "backup" && q.group.Name == g.Name)
		}
		s.mu.Unlock()
		if dirty {
			s.saveState()
		}
		due, _ := g.Policy.NextTapeRun(covered)
		if !retryAt.IsZero() {
			due = retryAt
		}
		if due.After(now) {
			wakeAt(due)
			continue
		}
		if backingUp {
			// The write waits for the group's backup of this moment; its
			// end wakes the scheduler.
			continue
		}
		covers := covered
		for {
			t, _ := g.Policy.NextTapeRun(covers)
			if t.After(now) {
				break
			}
			covers = t
		}
		if covers.Equal(covered) {
			covers = now // a retry of a run whose time is covered already: stands for now
		}
		s.enqueue(&task{kind: "tape", group: g, covers: covers})
	}
}

// tape runs a group's tape goal.
func (s *Server) tape(ctx context.Context, t *task) error {
	g := t.group
	s.mu.Lock()
	gs := s.state.Groups[g.Name]
	done := gs == nil || (!t.covers.After(gs.Tape) && gs.TapeRetry.IsZero())
	s.mu.Unlock()
	if done {
		return nil // a run queued twice: the first covered it
	}
	log := s.o.Log.With("job", "tape", "group", g.Name, "pool", g.Policy.TapePool)
	log.Info("tape write started", timeAttrs("run", t.covers)...)
	rep, err := s.o.Store.WriteGroupToTape(ctx, s.o.Home, &g, s.o.Clock.Now, func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) })
	if ctx.Err() != nil {
		return err
	}
	s.mu.Lock()
	if err != nil {
		gs.TapeRetry = s.o.Clock.Now().Add(tapeRetryDelay)
		log.Error("tape write failed", "err", err, "retry_at", gs.TapeRetry)
	} else {
		if t.covers.After(gs.Tape) {
			gs.Tape = t.covers
		}
		gs.TapeRetry = time.Time{}
		log.Info("tape write finished", "set", rep.Set, "points", len(rep.Points), "packs", rep.Packs, "tapes", rep.Tapes)
	}
	s.mu.Unlock()
	s.saveState()
	return err
}
