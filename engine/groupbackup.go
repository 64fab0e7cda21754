package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// GroupBackupOptions configure BackupGroup.
type GroupBackupOptions struct {
	// Now is the clock (nil: time.Now). Unless Planned, it decides, by
	// the group's recovery point times, whether the points made are
	// scheduled ones.
	Now func() time.Time
	// Planned says that the caller decided the recovery point time the
	// backup makes: Slot (zero: none, every point is a sync), whatever
	// the clock shows when each member starts. recall serve plans each
	// run from the run times it stands for: the clock at a member's
	// start says nothing of those when the run is late (the server was
	// down over a recovery point time, or a long job of the group ran
	// across it), and a member that starts late in a long run would be
	// judged by the policy version the run was planned with against a
	// clock that policy no longer rules. A source that already has a
	// point for Slot makes a sync. Registered sources (images) keep
	// their own rule (the latest recovery point time before the image).
	Planned bool
	Slot    time.Time
	// Log receives progress and warning lines; nil discards them.
	Log func(format string, args ...any)
	// Info receives the lines --quiet drops (BackupOptions.Info); nil: Log.
	Info func(format string, args ...any)
	// Warn receives what the catalog did on its own (see WithCatalog).
	Warn func(format string, args ...any)
	Lock LockOptions
	// Progress, if set, returns the progress counter of one member's
	// backup, and Done is called when it ends.
	Progress func(member string) *Progress
	Done     func(member string, p *Point, err error)
	// Settle overrides the settle time of the registered sources among
	// the members (0: each source's own).
	Settle time.Duration
	// Skipped, if set, hears of each registered member left alone
	// because its staging tree holds nothing to ingest: err wraps
	// ErrNothingNew or ErrNotSettled. Such a member makes no job and is
	// not among the results: it did not fail, WSB has not written yet.
	// It hears too of a member whose tree changed during its ingestion
	// (ErrChanged, which wraps ErrNotSettled): that one's job is
	// recorded as skipped; it is not among the results either.
	Skipped func(member string, err error)
}

// MemberResult is how one member's job went.
type MemberResult struct {
	Member string
	Source string
	Job    uint64 // its job number in the catalog (0 when not recorded)
	Point  *Point // nil when the job failed
	Err    error
}

// ErrMembersFailed: BackupGroup ran every member and some failed.
var ErrMembersFailed = errors.New("backup of some group members failed")

// BackupGroup backs up every member of g now, each as its own job
// (RunJob), with the group's excludes, file system boundary and
// compression, between its pre- and post-scripts. A member that fails (a
// path that is gone, a script that fails or hangs) fails its own job; the
// others still run. The error wraps ErrMembersFailed and names each failed
// member, or wraps ErrWarnings when every member made a point and some
// skipped entries.
//
// Whether a point is a scheduled recovery point is decided once for the
// whole group when o.Planned (o.Slot), else from the clock
// (Policy.ScheduledSlot): the first backup of a source at or within one
// sync interval after a recovery point time makes that recovery point;
// later ones in the same interval are syncs.
//
// The group's Limit holds back the members' reads inside its LimitWindow
// (read on o.Now), one token bucket for all the group's backups running
// at once.
//
// Jobs are recorded in home's catalog; with home "" none is (a store
// outside a home, and tests that make thousands of points).
func (s *Store) BackupGroup(ctx context.Context, home string, g *Group, o GroupBackupOptions) ([]MemberResult, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.Warn == nil {
		o.Warn = func(string, ...any) {}
	}
	pol := g.Policy.Defaults()
	r, err := pol.compile()
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}
	var out []MemberResult
	var failed []error
	warnings := false
	srcs := g.Sources()
	registered, rerr := registeredSources(home, g, o.Warn)
	ran := 0
	for i, member := range g.Members {
		src := srcs[i]
		reg, isReg := registered[member]
		merr := rerr
		if g.SourceOf[member] != "" && !isReg && merr == nil {
			merr = fmt.Errorf("source %s of group %s is not registered in the catalog of %q: add it with 'recall source add %s', or take it out with 'recall group remove %s --member %s'",
				src, g.Name, home, src, g.Name, member)
		}
		if isReg {
			if _, err := InspectSource(reg, o.Settle, now()); errors.Is(err, ErrNothingNew) || errors.Is(err, ErrNotSettled) {
				if o.Skipped != nil {
					o.Skipped(member, err)
				} else if o.Log != nil {
					o.Log("%s: %v", member, err)
				}
				continue
			}
		}
		ran++
		res := MemberResult{Member: member, Source: src}
		j := &Job{Kind: "backup", Group: g.Name, Source: src, Path: member}
		res.Point, res.Err = RunJob(home, j, o.Warn, func() (*Point, error) {
			if g.SourceOf[member] != "" && !isReg {
				return nil, merr
			}
			var rp *Source
			if isReg {
				rp = &reg
			}
			return s.backupMember(ctx, home, g, pol, r, member, src, rp, j, now, o)
		})
		res.Job = j.Number
		if o.Done != nil {
			o.Done(member, res.Point, res.Err)
		}
		switch {
		case res.Err == nil:
		case errors.Is(res.Err, ErrWarnings) && res.Point != nil:
			warnings = true
		case errors.Is(res.Err, ErrNotSettled) && res.Point == nil:
			// WSB wrote while the image was ingested (ErrChanged): as
			// when it writes before, no failure and no result; the job
			// is recorded as skipped, and the next run takes the image
			// once it has settled.
			ran--
			if o.Skipped != nil {
				o.Skipped(member, res.Err)
			} else if o.Log != nil {
				o.Log("%s: %v", member, res.Err)
			}
			if ctx.Err() != nil {
				return out, context.Cause(ctx)
			}
			continue
		default:
			failed = append(failed, fmt.Errorf("member %s: %w", member, res.Err))
		}
		out = append(out, res)
		if ctx.Err() != nil {
			return out, context.Cause(ctx)
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("group %s: %w: %d of %d: %w", g.Name, ErrMembersFailed, len(failed), ran, errors.Join(failed...))
	}
	if warnings {
		return out, fmt.Errorf("group %s: %w", g.Name, ErrWarnings)
	}
	return out, nil
}

// registeredSources reads from home's catalog the registered sources
// among g's members, by member path (none when g has none).
func registeredSources(home string, g *Group, warn func(string, ...any)) (map[string]Source, error) {
	if len(g.SourceOf) == 0 {
		return nil, nil
	}
	if home == "" {
		return nil, fmt.Errorf("group %s has registered sources, and the backup runs with no catalog to read them from", g.Name)
	}
	out := map[string]Source{}
	err := WithCatalog(home, time.Minute, warn, func(cat *Catalog) error {
		all, err := cat.Sources()
		for _, src := range all {
			if g.SourceOf[src.Staging] == src.Name {
				out[src.Staging] = src
			}
		}
		return err
	})
	return out, err
}

// backupMember runs one member's pre-script, backup (an ingestion for a
// registered source, reg) and post-script; the script runs go into j,
// which RunJob records when this returns.
func (s *Store) backupMember(ctx context.Context, home string, g *Group, pol Policy, r *rules, member, src string, reg *Source, j *Job, now func() time.Time, o GroupBackupOptions) (*Point, error) {
	env := []string{"RECALL_GROUP=" + g.Name, "RECALL_MEMBER=" + member, "RECALL_SOURCE=" + src,
		"RECALL_POLICY_VERSION=" + strconv.FormatUint(g.PolicyVersion, 10)}
	var p *Point
	var err error
	if pol.PreScript != "" {
		run, serr := runScript(ctx, "pre", pol.PreScript, r.timeout, append(env, "RECALL_PHASE=pre"))
		j.Scripts = append(j.Scripts, run)
		err = serr
	}
	if err == nil {
		p, err = s.backupMemberData(ctx, home, g, pol, r, member, src, reg, now, o)
	}
	if pol.PostScript != "" {
		outcome, id, msg := "ok", "", ""
		switch {
		case p != nil && err != nil:
			outcome, msg = "warnings", err.Error()
		case err != nil:
			outcome, msg = "failed", err.Error()
		}
		if p != nil {
			id = p.ID.String()
		}
		pctx, stop := postScriptContext(ctx)
		run, serr := runScript(pctx, "post", pol.PostScript, r.timeout,
			append(env, "RECALL_PHASE=post", "RECALL_OUTCOME="+outcome, "RECALL_POINT="+id, "RECALL_ERROR="+msg))
		stop()
		j.Scripts = append(j.Scripts, run)
		if serr != nil {
			if err == nil || errors.Is(err, ErrWarnings) {
				// The point exists; the job fails all the same, as the
				// script was part of it.
				return p, serr
			}
			err = fmt.Errorf("%w; then %w", err, serr)
		}
	}
	return p, err
}

// PostScriptStopGrace is how long a post-script still runs once the job
// is cancelled (recall serve stopping, an interrupted command): it is the
// script that thaws a database the pre-script froze or releases a
// snapshot, which the stop must not leave undone. Started after the
// cancellation, or running when it comes, it is killed only this long
// after it (or at its script timeout, if sooner). Within the service
// unit's stop timeout (60 s) after the server's own grace (30 s).
var PostScriptStopGrace = 15 * time.Second

// postScriptContext is ctx for a post-script: not cancelled with ctx, but
// PostScriptStopGrace after it, with its cause.
func postScriptContext(ctx context.Context) (context.Context, func()) {
	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	grace := PostScriptStopGrace // as it is now: the goroutine may run after the caller changed it
	go func() {
		select {
		case <-ctx.Done():
		case <-pctx.Done():
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(context.Cause(ctx))
		case <-pctx.Done():
		}
	}()
	return pctx, func() { cancel(nil) }
}

// backupMemberData is the backup itself.
func (s *Store) backupMemberData(ctx context.Context, home string, g *Group, pol Policy, r *rules, member, src string, reg *Source, now func() time.Time, o GroupBackupOptions) (*Point, error) {
	if _, err := os.Stat(member); err != nil {
		how := "--member " + member
		if reg != nil {
			how = "--source " + src
		}
		return nil, fmt.Errorf("member %s of group %s is gone: %w (restore it, or take it out with 'recall group remove %s %s')",
			member, g.Name, err, g.Name, how)
	}
	var sess *Session
	if reg == nil {
		var err error
		sess, err = s.Session(ctx, SessionOptions{Purpose: "backup of " + member + " (group " + g.Name + ")", Source: src, Blobs: true, LockOptions: o.Lock})
		if err != nil {
			return nil, err
		}
		defer sess.Close()
	}
	t := now()
	x, err := pol.BackupExclude()
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}
	opts := BackupOptions{Path: member, Source: src, Now: now, Log: o.Log, Info: o.Info, Exclude: x,
		Compression: r.compression, Group: g.Name, PolicyVersion: g.PolicyVersion}
	slot, ok := r.slot(t)
	if o.Planned {
		slot, ok = o.Slot, !o.Slot.IsZero()
	}
	if reg != nil {
		// WSB makes an image when the Windows side schedules it, not at
		// a recovery point time: each new image is the recovery point of
		// the latest point time before it, once, so that the group's
		// retention keeps images as versions rather than as syncs.
		slot, ok = r.lastSlot(t)
	}
	if ok && !s.r.hasScheduled(src, slot) {
		opts.Scheduled = slot
	}
	if o.Progress != nil {
		opts.Progress = o.Progress(member)
	}
	lim, err := groupLimit(g.Name, pol, now)
	if err != nil {
		return nil, err
	}
	if lim != nil {
		opts.Limiter = lim
		if info := infoOr(o.Info, o.Log); info != nil {
			when := "always"
			if pol.LimitWindow != "" {
				when = "inside " + pol.LimitWindow
			}
			info("%s: reads limited to %s (%s), shared by group %s", member, pol.Limit, when, g.Name)
		}
	}
	if reg != nil {
		// An image is restored whole or not at all: the group's
		// exclusions are for its paths.
		opts.Exclude = Exclude{}
		p, _, err := s.Ingest(ctx, *reg, IngestOptions{Home: home, Settle: o.Settle, Backup: opts, Lock: o.Lock, Warn: o.Warn})
		return p, err
	}
	return Backup(ctx, sess, opts)
}

// lastSlot returns the latest recovery point time at or before now, within
// the last week (the days of the policy may skip six).
func (r *rules) lastSlot(now time.Time) (time.Time, bool) {
	for back := 0; back <= 7; back++ {
		y, mo, d := now.AddDate(0, 0, -back).Date()
		midnight := time.Date(y, mo, d, 0, 0, 0, 0, now.Location())
		if !r.days[midnight.Weekday()] {
			continue
		}
		for i := len(r.at) - 1; i >= 0; i-- {
			if t := time.Date(y, mo, d, r.at[i]/60, r.at[i]%60, 0, 0, now.Location()); !t.After(now) {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// hasScheduled reports whether source has a point made for the recovery
// point time slot.
func (r *Reader) hasScheduled(source string, slot time.Time) bool {
	pts, err := r.knownPoints()
	if err != nil {
		return false
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if p := pts[i]; p.Source == source && p.Scheduled.Equal(slot) {
			return true
		}
	}
	return false
}
