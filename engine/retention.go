package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// Retention rules, as Decision.Rule names them; scripts rely on these
// names. The first that applies to a point decides it, in this order:
const (
	RuleDamaged  = "damaged"         // keep: the manifest is unreadable; only forget removes it
	RuleFuture   = "future"          // keep: made after the as-of time
	RuleNewest   = "newest"          // keep: a source's newest point is always kept
	RuleRange    = "retention-range" // keep: a scheduled point within the retention range
	RuleWindow   = "sync-window"     // keep: any point within the sync window
	RuleDaily    = "keep-daily"      // keep: beyond the range, newest of one of the last N days with points
	RuleWeekly   = "keep-weekly"     // keep: likewise per ISO week
	RuleMonthly  = "keep-monthly"    // keep: likewise per month
	RuleYearly   = "keep-yearly"     // keep: likewise per year
	RuleExpired  = "expired"         // drop: a scheduled point beyond the retention range
	RuleSyncAged = "sync-expired"    // drop: a sync (not scheduled) beyond the sync window
	// RuleHeld is Prune's, not Retention's: a point the policy drops is
	// kept while PruneOptions.Held holds it (a recovery share serves it).
	RuleHeld = "recovery-share" // keep: a recovery share serves it
)

// Decision is what retention decides for one point.
type Decision struct {
	Point *Point
	Keep  bool
	Rule  string
	// Why says it for a person: "scheduled point of 2026-11-02T09:00Z,
	// 3d old, within the 14d retention range".
	Why string
}

// Retention decides, as of asOf, which of one source's points pol keeps
// and which it drops, and by which rule. It is a pure function of its
// arguments: the clock is asOf, so a test or a dry run can ask about any
// moment. The decisions come in the order of points.
//
// Ages count from the point's time. A point is scheduled when its manifest
// says so (Point.Scheduled, set by the backup made for a recovery point
// time); every other point is a sync. The keep-* rules apply to points
// beyond the retention range only, restic's way: from the newest down,
// each rule keeps the newest point of each of its N most recent periods
// (day, ISO week, month, year in asOf's location) that has points. A
// period that holds a point kept by another rule (newest, range, window)
// counts among the N when it has points beyond the range, and gets no
// second point: one day never keeps two points for keep-daily.
func Retention(pol Policy, points []*Point, asOf time.Time) ([]Decision, error) {
	return retention(pol, points, asOf, nil)
}

// retention is Retention where the newest rule also keeps the newest
// point that check says can be restored whole (nil: no check), when the
// newest cannot: a damaged newest point must not leave its source with
// nothing whole to restore (its other files may still be read, so it is
// kept too). When none can be restored whole, only the newest is kept by
// the rule, as by Retention.
func retention(pol Policy, points []*Point, asOf time.Time, check func(*Point) error) ([]Decision, error) {
	pol = pol.Defaults()
	r, err := pol.compile()
	if err != nil {
		return nil, err
	}
	out := make([]Decision, len(points))
	order := make([]int, 0, len(points))
	for i, p := range points {
		out[i].Point = p
		if p.Damaged == "" {
			order = append(order, i)
		}
	}
	// Newest first: "newest" and the keep-* counts go from the top.
	sort.SliceStable(order, func(a, b int) bool {
		pa, pb := points[order[a]], points[order[b]]
		if !pa.Time.Equal(pb.Time) {
			return pa.Time.After(pb.Time)
		}
		return pa.ID.String() > pb.ID.String()
	})
	// newest: the source's newest point (not after asOf); whole: the
	// newest that can be restored whole, when that is an older one.
	newest, whole := -1, -1
	var passed []string // newer points that cannot be restored whole, and why
	for _, i := range order {
		if points[i].Time.After(asOf) {
			continue
		}
		if newest < 0 {
			newest = i
		}
		if check == nil {
			break
		}
		err := check(points[i])
		if err == nil {
			if i != newest {
				whole = i
			}
			break
		}
		passed = append(passed, fmt.Sprintf("%s: %v", pointShort(points[i].ID), err))
	}
	keepLeft := r.keep
	// last: the period each keep-* rule counted last; held: the periods
	// of the last point kept by another rule (newest, range, window).
	// Newest first, each rule meets its periods in order.
	var last, held [4]string
	for i, p := range points {
		if p.Damaged != "" {
			out[i].Keep, out[i].Rule, out[i].Why = true, RuleDamaged, "manifest unreadable ("+p.Damaged+"); remove it with 'recall forget'"
		}
	}
	for _, i := range order {
		p, d := points[i], &out[i]
		age := asOf.Sub(p.Time)
		kind := "sync"
		if !p.Scheduled.IsZero() {
			kind = "scheduled point of " + p.Scheduled.UTC().Format(time.RFC3339)
		}
		switch {
		case age < 0:
			d.Keep, d.Rule, d.Why = true, RuleFuture, "made after the as-of time"
		case i == newest:
			d.Keep, d.Rule, d.Why = true, RuleNewest, "the source's newest point is always kept"
		case i == whole:
			d.Keep, d.Rule, d.Why = true, RuleNewest, "the source's newest point that can be restored whole is always kept (newer: "+strings.Join(passed, "; ")+")"
		case !p.Scheduled.IsZero() && age <= r.retention:
			d.Keep, d.Rule, d.Why = true, RuleRange, fmt.Sprintf("%s, %s old, within the %s retention range", kind, span(age), pol.Retention)
		case age <= r.window:
			d.Keep, d.Rule, d.Why = true, RuleWindow, fmt.Sprintf("%s, %s old, within the %s sync window", kind, span(age), pol.SyncWindow)
		}
		if d.Rule == RuleFuture {
			continue
		}
		// Days, weeks, months and years are the server's local ones,
		// as the recovery point times (--at) are, however the as-of
		// time is written: a dry run --as-of ...Z on a server not on
		// UTC drew the days elsewhere than the real run, and kept
		// other points than it.
		keys := periodKeys(p.Time, time.Local)
		if d.Keep {
			// Its periods have a point kept: a keep-* rule keeping
			// another in one of them would keep two points of a day,
			// the older one called its newest.
			held = keys
		}
		// Beyond the range (or an old sync): the thinning rules count
		// the point's periods, kept for them or not, as restic's do; a
		// period is filled only when no point holds it yet.
		if age > r.retention {
			names := [4]string{RuleDaily, RuleWeekly, RuleMonthly, RuleYearly}
			for k := range keys {
				if keepLeft[k] > 0 && keys[k] != last[k] {
					keepLeft[k]--
					last[k] = keys[k]
					if !d.Keep && keys[k] != held[k] {
						d.Keep, d.Rule, d.Why = true, names[k], fmt.Sprintf("%s, newest of %s, one of the last %d kept by --%s", kind, keys[k], r.keep[k], names[k])
					}
				}
			}
		}
		if d.Keep {
			continue
		}
		if p.Scheduled.IsZero() {
			d.Rule, d.Why = RuleSyncAged, fmt.Sprintf("sync, %s old, beyond the %s sync window", span(age), pol.SyncWindow)
		} else {
			d.Rule, d.Why = RuleExpired, fmt.Sprintf("%s, %s old, beyond the %s retention range", kind, span(age), pol.Retention)
		}
	}
	return out, nil
}

// periodKeys names the day, ISO week, month and year of t in loc, the
// periods of the keep-daily, -weekly, -monthly and -yearly rules.
func periodKeys(t time.Time, loc *time.Location) [4]string {
	lt := t.In(loc)
	yr, wk := lt.ISOWeek()
	return [4]string{lt.Format("2006-01-02"), fmt.Sprintf("%d-W%02d", yr, wk), lt.Format("2006-01"), lt.Format("2006")}
}

// span shows an age in days and hours (or minutes).
func span(d time.Duration) string {
	switch {
	case d >= day:
		return fmt.Sprintf("%dd%dh", d/day, (d%day)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

// PruneOptions configure Prune.
type PruneOptions struct {
	// Group limits pruning to one group ("" for all).
	Group string
	// AsOf is the time retention is decided at (zero: now).
	AsOf   time.Time
	DryRun bool
	Lock   LockOptions
	// Removed, if set, hears each point as it is forgotten (a server logs
	// them: a prune stopped part-way has said what it did).
	Removed func(PruneEntry)
	// Held, if set, says why a point the policy drops must stay for now
	// ("" when nothing holds it): a bare-metal recovery share serves it,
	// and a machine may be restoring from it. Such a point is kept by
	// rule RuleHeld, and counts for no keep-* period: once the hold ends,
	// the next prune decides it as if it had never been held.
	Held func(*Point) string
}

// PruneEntry is one point Prune decided about.
type PruneEntry struct {
	Group string
	Decision
	// Removed: the point was forgotten (never with DryRun).
	Removed bool
}

// Prune decides, for every point of every member source of groups (or of
// the group o.Group), whether its group's policy keeps it as of o.AsOf,
// and without DryRun forgets the dropped ones, one write session per
// source. The policy is the group's current one, whatever version a
// point was made under. Points of sources in no group are never pruned
// and not listed. A dry run decides exactly what the real run with the
// same as-of time removes, as long as no point is added or forgotten in
// between. The points' blobs stay until garbage collection.
func (s *Store) Prune(ctx context.Context, groups []Group, o PruneOptions) ([]PruneEntry, error) {
	if o.AsOf.IsZero() {
		o.AsOf = time.Now()
	}
	if o.Group != "" {
		var only []Group
		for _, g := range groups {
			if g.Name == o.Group {
				only = append(only, g)
			}
		}
		if len(only) == 0 {
			return nil, fmt.Errorf("group %q: %w (list them with 'recall group list')", o.Group, ErrNoGroup)
		}
		groups = only
	}
	all, err := s.r.knownPoints()
	if err != nil {
		return nil, err
	}
	bySource := map[string][]*Point{}
	for _, p := range all {
		if p.Damaged == "" {
			bySource[p.Source] = append(bySource[p.Source], p)
		}
	}
	// A walk of the packs first: a pack file gone since the store was
	// opened is then known missing, and pointWhole sees a point whose
	// trees load but whose data is in it. Without it, such a newest point
	// passed as whole and was kept alone.
	s.r.st.Packs()
	var out []PruneEntry
	for _, g := range groups {
		for _, src := range g.Sources() {
			ds, err := retention(g.Policy, bySource[src], o.AsOf, func(p *Point) error {
				if err := s.r.pointWhole(ctx, p); err != nil && ctx.Err() == nil {
					return err
				}
				return nil // stopped: forgetDropped stops too
			})
			if err != nil {
				return out, fmt.Errorf("group %s: %w", g.Name, err)
			}
			first := len(out)
			for _, d := range ds {
				if !d.Keep && o.Held != nil {
					if why := o.Held(d.Point); why != "" {
						d.Keep, d.Rule, d.Why = true, RuleHeld, why+"; the policy alone would drop it ("+d.Rule+": "+d.Why+")"
					}
				}
				out = append(out, PruneEntry{Group: g.Name, Decision: d})
			}
			if o.DryRun {
				continue
			}
			if err := s.forgetDropped(ctx, g.Name, src, out[first:], o); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// forgetDropped removes the dropped points of entries, all of source src,
// in one write session.
func (s *Store) forgetDropped(ctx context.Context, group, src string, entries []PruneEntry, o PruneOptions) error {
	n := 0
	for _, e := range entries {
		if !e.Keep {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	ss, err := s.Session(ctx, SessionOptions{Purpose: fmt.Sprintf("prune %d points of %s (group %s)", n, src, group), Source: src, LockOptions: o.Lock})
	if err != nil {
		return err
	}
	defer ss.Close()
	for i := range entries {
		e := &entries[i]
		if e.Keep {
			continue
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		err := ss.RemovePoint(e.Point.ID)
		if err != nil && !errors.Is(err, chunkstore.ErrNotFound) {
			return fmt.Errorf("prune point %s of %s: %w", pointShort(e.Point.ID), src, err)
		}
		e.Removed = err == nil
		if e.Removed && o.Removed != nil {
			o.Removed(*e)
		}
	}
	return nil
}

// pointWhole tells why the point p cannot be restored whole, or nil: each
// of its trees loads, and the index has every blob it needs in a usable
// place (not recorded damaged by verify, its pack not known missing or
// cut short). Prune asks it of a source's newest points before the newest
// rule keeps one: the work of loading one point's trees, once a night.
func (r *Reader) pointWhole(ctx context.Context, p *Point) error {
	var bad error
	err := r.treeBlobs(ctx, p.Tree, map[chunkstore.ID]bool{}, func(id chunkstore.ID, err error) {
		if bad == nil {
			bad = fmt.Errorf("tree %s cannot be read: %w", id.Short(), err)
		}
	}, func(id chunkstore.ID, t chunkstore.BlobType) error {
		if bad != nil {
			return bad
		}
		if _, err := r.st.BlobStatus(id); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bad
}
