package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/engine"
	"github.com/urfave/cli/v2"
)

// What engine.Policy.Check lets pass but a group's policy should not
// say, checked where a policy is written (group create, group edit,
// apply), each problem naming its flag (a key in a groups file):
//
//   - a value given empty where empty means nothing: it would silently
//     be the default (--at "" for 20:00). Empty means "none" for the
//     scripts, the tape goal, --limit, --limit-window and
//     --exclude-larger-than, and "the store's" for --compression: those
//     are taken. Refused;
//   - values that contradict each other: a day list naming days and
//     "daily". Refused;
//   - values that are only odd (policyOddities). Warned of.

// noEmpty are the policy flags an empty value means nothing for.
var noEmpty = []string{"retention", "sync", "at", "days", "sync-window", "script-timeout", "end-user-recovery", "check", "check-read-share", "exclude-file"}

// splitList reads a comma-separated flag value (--at, --days).
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// emptyPolicyFlags refuses a noEmpty policy flag given empty on c's
// command line (--at "", --days ",", --exclude-file "").
func emptyPolicyFlags(c *cli.Context) error {
	for _, name := range noEmpty {
		if !c.IsSet(name) {
			continue
		}
		var empty bool
		switch name {
		case "at", "days":
			empty = len(splitList(c.String(name))) == 0
		case "exclude-file":
			// One "" alone is none (listOrNone); beside files it is a slip.
			l := c.Generic(name).(*repeated).list
			empty = len(l) > 1 && slices.ContainsFunc(l, func(f string) bool { return strings.TrimSpace(f) == "" })
		default:
			empty = strings.TrimSpace(c.String(name)) == ""
		}
		if empty {
			return usagef("invalid value %q for --%s: give --%s%s", c.String(name), name, name, emptyHint(name))
		}
	}
	return nil
}

// listOrNone is a repeatable policy flag's list, where a single "" is
// none: 'group edit G --exclude-file ""' empties the group's list (it
// could not be emptied but by applying a file without the key).
func listOrNone(c *cli.Context, name string) []string {
	l := c.Generic(name).(*repeated).list
	if len(l) == 1 && strings.TrimSpace(l[0]) == "" {
		return nil
	}
	return l
}

// emptyHint says what a noEmpty flag takes, from its usage: " TIMES:
// recovery point TIMES, HH:MM,... (default 20:00)".
func emptyHint(name string) string {
	for _, f := range policyFlags() {
		if d, ok := f.(cli.DocGenerationFlag); ok && f.Names()[0] == name {
			return fmt.Sprintf("%s: %s", placeholder(&cli.Command{Flags: []cli.Flag{f}}, name), strings.ReplaceAll(d.GetUsage(), "`", ""))
		}
	}
	return ""
}

// emptyKeys refuses a noEmpty key of a groups file's group given empty
// ("" or []), as emptyPolicyFlags refuses the flag; decl is the group as
// decoded into a map, which holds only the keys the file gives. It
// returns the key and the message.
func emptyKeys(decl map[string]any) (string, string) {
	for _, name := range noEmpty {
		key := strings.ReplaceAll(name, "-", "_")
		v, ok := decl[key]
		if !ok {
			continue
		}
		var empty bool
		switch v := v.(type) {
		case string:
			empty = strings.TrimSpace(v) == ""
		case []any:
			empty = len(v) == 0
		}
		if empty {
			return key, fmt.Sprintf("empty %s: it takes%s; leave the key out for its default", key, flagsAsKeys(emptyHint(name)))
		}
	}
	return "", ""
}

// policyProblem is a problem of a policy, and the flag it is about.
type policyProblem struct{ flag, msg string }

// policyConflict is the first contradiction of p as written (before
// Defaults, which would hide it), or nil.
func policyConflict(p engine.Policy) *policyProblem {
	var names []string
	daily := false
	for _, d := range p.Days {
		if d = strings.ToLower(strings.TrimSpace(d)); d == "daily" {
			daily = true
		} else {
			names = append(names, d)
		}
	}
	if daily && len(names) > 0 {
		return &policyProblem{"days", fmt.Sprintf("%q names days and daily, every day: which was meant is a guess; give daily, or the days only (%s)", strings.Join(p.Days, ","), strings.Join(names, ","))}
	}
	return nil
}

// policyOddities are what p allows but hardly means, each a warning: a
// retention (with the sync window) that keeps a recovery point less long
// than the time until the next one, and a sync window shorter than the
// time from a sync to the next point, so that a point is pruned by the
// time the next is made. The policy's own schedule (NextRun) and
// retention (Retention) decide it, for a week of UTC days. p must pass
// Check.
func policyOddities(p engine.Policy) []policyProblem {
	var out []policyProblem
	d := p.Defaults()
	pts := p
	pts.Sync = engine.SyncBeforePoint // the recovery point times alone
	sched := runs(pts)
	if gap, from := longestGap(sched, nil); gap > 0 && !keptUntilNext(p, gap, true) {
		out = append(out, policyProblem{"retention", fmt.Sprintf(
			"retention %s and sync window %s keep a recovery point less long than the %s from %s to the next one: it is pruned by the time the next is made (a retention of %dd keeps it until then)",
			d.Retention, d.SyncWindow, span(gap), from, (gap+24*time.Hour-1)/(24*time.Hour))})
	}
	if d.Sync != engine.SyncBeforePoint {
		if gap, from := longestGap(runs(p), sched); gap > 0 && !keptUntilNext(p, gap, false) {
			out = append(out, policyProblem{"sync-window", fmt.Sprintf(
				"sync window %s is shorter than the %s from the sync at %s to the next point (sync %s, at %s): that sync is pruned by the time the next point is made",
				d.SyncWindow, span(gap), from, d.Sync, strings.Join(d.At, ","))})
		}
	}
	return out
}

// weekStart is a Monday, where policyOddities looks at a policy's week.
var weekStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// runs are the times p runs in the week from weekStart, and the first
// after it (NextRun); none when p has no schedule.
func runs(p engine.Policy) []time.Time {
	var out []time.Time
	t := weekStart.Add(-time.Nanosecond)
	for end := weekStart.AddDate(0, 0, 7); len(out) == 0 || t.Before(end); {
		next, err := p.NextRun(t)
		if err != nil || next.IsZero() {
			return nil
		}
		out = append(out, next)
		t = next
	}
	return out
}

// longestGap is the longest time from one of ts, but those in not, to the
// next, and when it starts ("sat 20:00").
func longestGap(ts, not []time.Time) (time.Duration, string) {
	var gap time.Duration
	var from time.Time
	for i := 1; i < len(ts); i++ {
		if g := ts[i].Sub(ts[i-1]); g > gap && !slices.ContainsFunc(not, ts[i-1].Equal) {
			gap, from = g, ts[i-1]
		}
	}
	return gap, strings.ToLower(from.Format("Mon 15:04"))
}

// keptUntilNext reports whether p still keeps a point (a recovery point
// when scheduled, else a sync) when the next one is made gap later.
func keptUntilNext(p engine.Policy, gap time.Duration, scheduled bool) bool {
	old, next := &engine.Point{Time: weekStart}, &engine.Point{Time: weekStart.Add(gap)}
	if scheduled {
		old.Scheduled, next.Scheduled = old.Time, next.Time
	}
	ds, err := engine.Retention(p, []*engine.Point{old, next}, next.Time)
	return err != nil || ds[0].Keep
}

// span is a gap as a person reads it: 7d, 6d15h, 20h, 2h30m.
func span(d time.Duration) string {
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	s := strings.TrimSuffix(rest.String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	switch {
	case days == 0:
		return s
	case rest == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%s", days, s)
}

// checkGroupPolicy is the checks above for group create and edit: an
// error for a conflict, naming the flag; the oddities as warnings.
func checkGroupPolicy(name string, p engine.Policy) ([]string, error) {
	if c := policyConflict(p); c != nil {
		return nil, usagef("group %s: --%s %s", name, c.flag, c.msg)
	}
	if err := p.Check(); err != nil {
		return nil, nil // the engine's check says it, naming the flag
	}
	var warns []string
	for _, o := range policyOddities(p) {
		warns = append(warns, fmt.Sprintf("group %s: --%s: %s", name, o.flag, o.msg))
	}
	return warns, nil
}
