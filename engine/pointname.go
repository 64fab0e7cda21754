package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// SnapshotFormat is the Go layout of a point's name in the recovery tree:
// Samba's vfs_shadow_copy2 token (shadow:format = @GMT-%Y.%m.%d-%H.%M.%S).
const SnapshotFormat = "@GMT-2006.01.02-15.04.05"

// SnapshotName is the name of a point that started at t, before any
// same-second adjustment.
func SnapshotName(t time.Time) string { return t.UTC().Format(SnapshotFormat) }

// ParseSnapshotName returns the time a point name stands for.
func ParseSnapshotName(name string) (time.Time, bool) {
	if !strings.HasPrefix(name, "@GMT-") || len(name) != len(SnapshotFormat) {
		return time.Time{}, false
	}
	t, err := time.Parse(SnapshotFormat, name)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// FreeName returns the name for a point that started at t: its own second
// or, when taken, the next second that is free in used.
func FreeName(t time.Time, used map[string]bool) string {
	s := t.UTC().Truncate(time.Second)
	for {
		n := SnapshotName(s)
		if !used[n] {
			return n
		}
		s = s.Add(time.Second)
	}
}

// RecordedName is the name p's backup gave it (Point.Name), when it is
// one a recovery tree can show: a point name of a second no earlier than
// p's start. "" for points from before names were recorded, and for a
// name that is not a point name (a damaged or crafted manifest).
func RecordedName(p *Point) string {
	t, ok := ParseSnapshotName(p.Name)
	if !ok || t.Before(p.Time.UTC().Truncate(time.Second)) {
		return ""
	}
	return p.Name
}

// PointNames gives every point of pts the name a fresh recovery tree
// shows it under, by id: per source, the names the backups recorded
// first (oldest first; a name two points recorded goes to the older),
// then each other point, oldest first, its own second or the next one
// free. A point keeps its recorded name when others are forgotten; one
// from before names were recorded may move to a second a forgotten point
// freed.
func PointNames(pts []*Point) map[chunkstore.ID]string {
	bySource := map[string][]*Point{}
	for _, p := range pts {
		if p.Damaged == "" {
			bySource[p.Source] = append(bySource[p.Source], p)
		}
	}
	out := make(map[chunkstore.ID]string, len(pts))
	for _, ps := range bySource {
		slices.SortStableFunc(ps, func(a, b *Point) int {
			if c := a.Time.Compare(b.Time); c != 0 {
				return c
			}
			return strings.Compare(a.ID.String(), b.ID.String())
		})
		used := map[string]bool{}
		for _, p := range ps {
			if n := RecordedName(p); n != "" && !used[n] {
				used[n] = true
				out[p.ID] = n
			}
		}
		for _, p := range ps {
			if _, ok := out[p.ID]; !ok {
				n := FreeName(p.Time, used)
				used[n] = true
				out[p.ID] = n
			}
		}
	}
	return out
}

// nameFor is the name a new point p of its source gets among the points
// the store has (pts): the first second from its start that none of them
// shows (PointNames). It is recorded in p, so that forgetting another
// point never renames it.
func nameFor(p *Point, pts []*Point) string {
	used := map[string]bool{}
	for _, n := range PointNames(slices.DeleteFunc(slices.Clone(pts), func(q *Point) bool { return q.Source != p.Source })) {
		used[n] = true
	}
	return FreeName(p.Time, used)
}
