package engine

import (
	"fmt"
	"slices"
	"time"
)

// TapePoolStatus is one media pool as 'recall status' shows it: what its
// cartridges hold and whether the next tape write has a cartridge to use.
type TapePoolStatus struct {
	Pool    string `json:"pool"`
	Library string `json:"library"`
	Sets    int    `json:"sets"`
	// Points counts the recovery points on the pool's unexpired sets
	// (a point on two sets counts once).
	Points int `json:"points"`
	// Media counts the pool's cartridges by state (free, writing, full,
	// expired).
	Media map[string]int `json:"media"`
	// Usable counts the cartridges the next write can use as the catalog
	// knows them: the pool's writing, free and expired ones, and blank
	// ones of its library that belong to no pool.
	Usable      int       `json:"usable"`
	LastWritten time.Time `json:"last_written,omitzero"`
	// NextExpiry is when the pool's next set expires (its cartridges then
	// become reusable).
	NextExpiry time.Time `json:"next_expiry,omitzero"`
}

// TapeStatus sums the media catalog per pool for the status report, and
// warns about what needs an operator: a pool that a group's tape goal
// writes to with no cartridge known to be usable (a cartridge must be
// inserted), a goal naming a pool that does not exist, and one whose pool
// keeps its sets a shorter time than the goal asks. It reads only
// the catalog: asking the changer could take minutes on a real library,
// so a blank cartridge inserted since the last inventory is not known yet,
// and the warning says to take one.
func TapeStatus(st *TapeState, groups []Group, now time.Time) ([]TapePoolStatus, []string) {
	if st == nil {
		st = &TapeState{}
	}
	var out []TapePoolStatus
	byPool := map[string]int{}
	for _, p := range st.Pools {
		byPool[p.Name] = len(out)
		out = append(out, TapePoolStatus{Pool: p.Name, Library: p.Library, Media: map[string]int{}})
	}
	for _, m := range st.Media {
		if i, ok := byPool[m.Pool]; ok {
			ps := &out[i]
			ps.Media[m.State]++
			if m.State != MediaFull {
				ps.Usable++
			}
			if m.Written.After(ps.LastWritten) {
				ps.LastWritten = m.Written
			}
			continue
		}
		if m.Pool == "" && (m.State == MediaFree || m.State == MediaExpired) {
			for i := range out {
				if out[i].Library == m.Library {
					out[i].Usable++
				}
			}
		}
	}
	points := map[string]map[string]bool{}
	for _, set := range st.Sets {
		i, ok := byPool[set.Pool]
		if !ok || (!set.Expiry.IsZero() && !now.Before(set.Expiry)) {
			continue
		}
		ps := &out[i]
		ps.Sets++
		if ps.NextExpiry.IsZero() || set.Expiry.Before(ps.NextExpiry) {
			ps.NextExpiry = set.Expiry
		}
		if set.Catalog == nil {
			continue
		}
		if points[set.Pool] == nil {
			points[set.Pool] = map[string]bool{}
		}
		for _, p := range set.Catalog.Points {
			points[set.Pool][p.ID] = true
		}
	}
	for i := range out {
		out[i].Points = len(points[out[i].Pool])
	}
	var warnings []string
	for _, g := range groups {
		pool := g.Policy.TapePool
		if g.Policy.TapeRetention == "" {
			continue
		}
		i, ok := byPool[pool]
		switch {
		case pool == "":
			warnings = append(warnings, fmt.Sprintf("group %s has a tape goal but no tape pool, so it writes nothing: name one with 'recall group edit %s --tape-pool POOL'", g.Name, g.Name))
		case !ok:
			warnings = append(warnings, fmt.Sprintf("group %s writes to tape pool %s, which does not exist: create it with 'recall tape pool create %s --retention %s'", g.Name, pool, pool, g.Policy.TapeRetention))
		case out[i].Usable == 0:
			warnings = append(warnings, fmt.Sprintf("tape pool %s (group %s's tape goal) has no cartridge known to be usable: insert a blank cartridge into library %s and run 'recall tape inventory --library %s'", pool, g.Name, out[i].Library, out[i].Library))
		}
		if ok {
			if msg := g.Policy.tapeGoalShortfall(g.Name, st.Pools[i], now); msg != "" {
				warnings = append(warnings, msg)
			}
		}
	}
	slices.Sort(warnings)
	return out, slices.Compact(warnings)
}
