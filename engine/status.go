package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/engine/wsb"
	"golang.org/x/sys/unix"
)

// SourceStatus is the state of one data source.
//
// Sizes, honestly defined:
//   - Protected is what the newest point holds (its files' bytes): what a
//     full restore of the source would write;
//   - Stored is what the source's remaining points added to the store when
//     they were made (their stored_bytes, compressed): cheap to know, but
//     a blob first stored by a point since forgotten, or by another
//     source, counts for that point, not for this source. The store-wide
//     figure (StoreStatus.Stored) is the real size on disk;
//   - DedupRatio is the bytes all remaining points hold over Stored.
type SourceStatus struct {
	Group     string    `json:"group,omitempty"` // "" for a source in no group
	Source    string    `json:"source"`
	LastGood  string    `json:"last_good_point,omitempty"` // newest point whose root directory can be read
	LastTime  time.Time `json:"last_good_time,omitzero"`
	Points    int       `json:"points"`
	Protected int64     `json:"protected_bytes"`
	Stored    int64     `json:"stored_bytes"`
	// DedupRatio is 0 when nothing is stored.
	DedupRatio float64 `json:"dedup_ratio"`
	// GrowthPerDay is the stored bytes of the points of the last 7 days,
	// over 7.
	GrowthPerDay int64 `json:"growth_per_day"`
	// For a registered source (AddSources): its kind and computer, its
	// reservation and the size of the images of the last Backup folder
	// ingested (0 before the first).
	Kind        string `json:"kind,omitempty"`
	Computer    string `json:"computer,omitempty"`
	Reservation int64  `json:"reservation,omitempty"`
	ImageSize   int64  `json:"image_size,omitempty"`
}

// StoreStatus is the state of the store and of every source in it.
type StoreStatus struct {
	Time    time.Time      `json:"time"`
	Sources []SourceStatus `json:"sources"`
	// Stored is the size of every file of the store (packs, index files,
	// manifests): what it takes on disk.
	Stored       int64 `json:"stored_bytes"`
	Protected    int64 `json:"protected_bytes"` // sum over sources
	GrowthPerDay int64 `json:"growth_per_day"`  // sum over sources
	// Free is what the store's file system has left for recall (-1 when
	// unknown: a store not on a local file system).
	Free int64 `json:"free_bytes"`
	// DaysUntilFull is Free over GrowthPerDay; -1 when there is no
	// growth or Free is unknown.
	DaysUntilFull float64 `json:"days_until_full"`
	// Tape is the media pools (see TapeStatus); absent with none.
	Tape     []TapePoolStatus `json:"tape,omitempty"`
	Warnings []string         `json:"warnings"` // [] when none (README)
}

// AddTape adds the media pools' state and their warnings to the status.
func (s *StoreStatus) AddTape(st *TapeState, groups []Group) {
	var w []string
	s.Tape, w = TapeStatus(st, groups, s.Time)
	s.Warnings = append(s.Warnings, w...)
}

// AddSources adds to the status what the registered sources say: each
// one's kind, reservation and last image size (a source with no point and
// in no group gets a line of its own), and a warning for each image that
// grew past its reservation.
func (s *StoreStatus) AddSources(srcs []Source) {
	for _, src := range srcs {
		i := slices.IndexFunc(s.Sources, func(x SourceStatus) bool { return x.Source == src.Name })
		if i < 0 {
			s.Sources = append(s.Sources, SourceStatus{Source: src.Name})
			i = len(s.Sources) - 1
		}
		x := &s.Sources[i]
		x.Kind, x.Computer, x.Reservation, x.ImageSize = src.Kind, src.Computer, src.Reservation, src.ImageSize
		if src.ImageSize > src.Reservation {
			s.Warnings = append(s.Warnings, fmt.Sprintf("image of %s is %s, past its reservation of %s: raise it with 'recall source edit %s --reservation SIZE'",
				src.Computer, gib(src.ImageSize), gib(src.Reservation), src.Name))
		}
	}
	sort.SliceStable(s.Sources, func(i, j int) bool {
		a, b := s.Sources[i], s.Sources[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Source < b.Source
	})
}

// noPointWarning is Status's warning about a member with no point.
func noPointWarning(source, group string) string {
	return fmt.Sprintf("source %s (group %s) has no recovery point yet: run 'recall backup --group %s'", source, group, group)
}

// AddJobs sharpens the warning of a source with no point yet when its
// last backup, among jobs (the catalog's, oldest first), failed: that
// backup's error is what to fix, where "run 'recall backup --group G'"
// only failed the same way again (a pre-script that fails, say).
func (s *StoreStatus) AddJobs(jobs []Job) {
	last := map[string]Job{}
	for _, j := range jobs {
		if j.Kind == "backup" && j.Source != "" && j.Status != "running" {
			last[j.Source] = j
		}
	}
	s.sharpenNoPoint(func(src SourceStatus) string {
		j, ok := last[src.Source]
		if !ok || j.Status != "failed" {
			return ""
		}
		return fmt.Sprintf("its last backup, job %d of %s, failed: %s; fix that ('recall jobs' has the job, with its scripts' output), then run 'recall backup --group %s'",
			j.Number, j.Started.UTC().Format(time.DateTime), j.Error, src.Group)
	})
}

// sharpenNoPoint replaces the warning of each source with no point yet
// (noPointWarning) by one that says why, where why has something to say.
func (s *StoreStatus) sharpenNoPoint(why func(SourceStatus) string) {
	for _, src := range s.Sources {
		i := slices.Index(s.Warnings, noPointWarning(src.Source, src.Group))
		if i < 0 {
			continue
		}
		if w := why(src); w != "" {
			s.Warnings[i] = fmt.Sprintf("source %s (group %s) has no recovery point yet: %s", src.Source, src.Group, w)
		}
	}
}

// AddRunning tells a source with no point yet whose group's backup the
// server runs now (running: the job of each such group) that it is
// running, where it was told to run the backup the server was running.
func (s *StoreStatus) AddRunning(running map[string]uint64) {
	s.sharpenNoPoint(func(src SourceStatus) string {
		id, ok := running[src.Group]
		if !ok {
			return ""
		}
		return fmt.Sprintf("the group's backup is running as server job %d ('recall jobs --follow %d')", id, id)
	})
}

// AddImageWarnings adds to the status what registered sources need
// beyond a path's: one with no point yet is told that WSB must write an
// image (a group backup does not make one), and one in a group whose
// newest image is older than the group's schedule allows gets a warning
// (ImageOverdue); so do names that differ only in case (CaseOnlyPairs).
func (s *StoreStatus) AddImageWarnings(srcs []Source, groups []Group) {
	s.Warnings = append(s.Warnings, CaseOnlyPairs(srcs, groups)...)
	for _, src := range srcs {
		var g *Group
		for i := range groups {
			if groups[i].SourceOf[src.Staging] == src.Name {
				g = &groups[i]
			}
		}
		if g == nil {
			continue // nothing is expected of a source in no group
		}
		i := slices.IndexFunc(s.Sources, func(x SourceStatus) bool { return x.Source == src.Name })
		if i >= 0 && s.Sources[i].LastGood == "" {
			if j := slices.Index(s.Warnings, noPointWarning(src.Name, g.Name)); j >= 0 {
				s.Warnings[j] = fmt.Sprintf("source %s (group %s) has no recovery point yet: no complete image of %s was ingested; run Windows Server Backup on %s to the source's share "+
					"('recall share bmr-target --source %s' sets it up; then wbadmin start backup -backupTarget:\\\\SERVER\\SHARE -allCritical -systemState -quiet), and the server ingests it ('recall backup --source %s' does it now)",
					src.Name, g.Name, src.Computer, src.Computer, src.Name, src.Name)
			}
			continue
		}
		if err := ImageOverdue(src, *g, s.Time); err != nil {
			s.Warnings = append(s.Warnings, err.Error())
		}
	}
}

// ErrNoNewImage: a registered source has had no new image for longer
// than its group's schedule allows (ImageOverdue).
var ErrNoNewImage = errors.New("no new image")

// ImageAllowance is how old the newest image of a source in a group of
// policy p may get: the longest gap between two of its recovery point
// times (a day for a daily schedule, three over a weekend for a weekday
// one) plus a day, for a WSB schedule that is not the group's and a run
// that failed once.
func ImageAllowance(p Policy) time.Duration {
	r, err := p.Defaults().compile()
	if err != nil {
		return 8 * day // a weekly schedule's, plus a day
	}
	var slots []int // minutes after Sunday 00:00
	for d, on := range r.days {
		for _, at := range r.at {
			if on {
				slots = append(slots, d*24*60+at)
			}
		}
	}
	if len(slots) == 0 {
		return 8 * day
	}
	slices.Sort(slots)
	gap := slots[0] + 7*24*60 - slots[len(slots)-1] // across the week's end
	for i := 1; i < len(slots); i++ {
		gap = max(gap, slots[i]-slots[i-1])
	}
	return time.Duration(gap)*time.Minute + day
}

// ImageOverdue returns an error wrapping ErrNoNewImage when registered
// source src, a member of group g, has had no new image for longer than
// ImageAllowance of g's policy at now: its newest image's time is in the
// name of the Backup folder ingested (WSB's clock), or, before the first,
// the time the source was added. nil when it is not overdue.
func ImageOverdue(src Source, g Group, now time.Time) error {
	allow := ImageAllowance(g.Policy)
	if src.Ingested == "" {
		if age := now.Sub(src.Created); !src.Created.IsZero() && age > allow {
			return fmt.Errorf("source %s (%s, group %s): %w: no image since the source was added %s ago, and group %s's schedule allows %s: "+
				"set up its share ('recall share bmr-target --source %s'), run the backup on %s (wbadmin start backup) and schedule it there",
				src.Name, src.Computer, g.Name, ErrNoNewImage, daySpan(age), g.Name, daySpan(allow), src.Name, src.Computer)
		}
		return nil
	}
	at, ok := wsb.BackupTime(src.Ingested)
	if !ok {
		return nil
	}
	if age := now.Sub(at); age > allow {
		return fmt.Errorf("source %s (%s, group %s): %w for %s: the last ingested is %s, and group %s's schedule allows %s: "+
			"check the backup scheduled on %s (wbadmin get versions, its task's history), the share's free space and the WSB user's password",
			src.Name, src.Computer, g.Name, ErrNoNewImage, daySpan(age), src.Ingested, g.Name, daySpan(allow), src.Computer)
	}
	return nil
}

// daySpan prints a long span as a person says it: "2 days", "1 day 12
// hours", "5 hours".
func daySpan(d time.Duration) string {
	d = max(d, 0).Truncate(time.Hour)
	days, hours := int(d/day), int(d%day/time.Hour)
	unit := func(n int, u string) string {
		if n == 1 {
			return "1 " + u
		}
		return fmt.Sprintf("%d %ss", n, u)
	}
	switch {
	case days == 0:
		return unit(hours, "hour")
	case hours == 0:
		return unit(days, "day")
	}
	return unit(days, "day") + " " + unit(hours, "hour")
}

// gib prints a size in GiB as the reservation is given: 30 GiB, 34.1 GiB.
func gib(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// Status thresholds: DPM's sizing rule, and two weeks of growth.
const (
	freeOverProtected = 1.5
	minDaysOfGrowth   = 14
	growthDays        = 7
)

// Status reports every source of the store (grouped as groups say) as of
// now. Reading only: no lock.
func (s *Store) Status(ctx context.Context, groups []Group, now time.Time) (*StoreStatus, error) {
	pts, err := s.r.knownPoints()
	if err != nil {
		return nil, err
	}
	groupOf := map[string]string{}
	for _, g := range groups {
		for _, src := range g.Sources() {
			groupOf[src] = g.Name
		}
	}
	by := map[string]*SourceStatus{}
	bytesBySource := map[string]int64{} // what the points hold, for the dedup ratio
	bySrc := map[string][]*Point{}
	for _, p := range pts {
		if p.Damaged != "" {
			continue
		}
		st := by[p.Source]
		if st == nil {
			st = &SourceStatus{Group: groupOf[p.Source], Source: p.Source}
			by[p.Source] = st
		}
		st.Points++
		st.Stored += p.Stats.StoredBytes
		bytesBySource[p.Source] += p.Stats.Bytes
		bySrc[p.Source] = append(bySrc[p.Source], p)
		if age := now.Sub(p.Time); age >= 0 && age <= growthDays*day {
			st.GrowthPerDay += p.Stats.StoredBytes
		}
	}
	// The last good point is the newest whose root directory can be read:
	// one tree load per source (prune checks more: pointWhole). A newer
	// one that cannot is a warning.
	var broken []string
	for src, ps := range bySrc {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Time.After(ps[j].Time) })
		st := by[src]
		for _, p := range ps {
			if _, err := s.r.LoadTree(p.Tree); err != nil {
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
				broken = append(broken, fmt.Sprintf("source %s: point %s of %s cannot be restored: its root directory cannot be read (%v); run 'recall verify --read-data', then 'recall repair packs'", src, pointShort(p.ID), p.Time.UTC().Format(time.RFC3339), err))
				continue
			}
			st.LastGood, st.LastTime, st.Protected = p.ID.String(), p.Time, p.Stats.Bytes
			break
		}
	}
	sort.Strings(broken)
	// Members with no point yet are listed too: they need attention.
	member := map[string]string{} // source: the path it backs up
	for _, g := range groups {
		for i, src := range g.Sources() {
			if by[src] == nil {
				by[src] = &SourceStatus{Group: g.Name, Source: src}
			}
			if i < len(g.Members) {
				member[src] = g.Members[i]
			}
		}
	}
	out := &StoreStatus{Time: now.UTC(), Free: -1, DaysUntilFull: -1, Warnings: broken}
	for _, st := range by {
		st.GrowthPerDay /= growthDays
		if st.Stored > 0 {
			st.DedupRatio = math.Round(float64(bytesBySource[st.Source])/float64(st.Stored)*100) / 100
		}
		out.Protected += st.Protected
		out.GrowthPerDay += st.GrowthPerDay
		out.Sources = append(out.Sources, *st)
		if st.LastGood == "" && st.Points == 0 { // with points but none readable: warned of above
			w := noPointWarning(st.Source, st.Group)
			if m := member[st.Source]; filepath.IsAbs(m) {
				if _, err := os.Lstat(m); err != nil {
					// A backup now would fail the same way: say why.
					w = fmt.Sprintf("source %s (group %s) has no recovery point yet: its member %s cannot be read (%v): restore it, or take it out with 'recall group remove %s --member %s'",
						st.Source, st.Group, m, errors.Unwrap(err), st.Group, m)
				}
			}
			out.Warnings = append(out.Warnings, w)
		}
	}
	sort.Slice(out.Sources, func(i, j int) bool {
		a, b := out.Sources[i], out.Sources[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Source < b.Source
	})
	if out.Stored, err = s.storedBytes(ctx); err != nil {
		return nil, err
	}
	var fs unix.Statfs_t
	if unix.Statfs(s.Dir(), &fs) == nil {
		out.Free = int64(fs.Bavail) * fs.Bsize
	}
	var w []string
	out.DaysUntilFull, w = spaceWarnings(out.Free, out.Protected, out.GrowthPerDay)
	out.Warnings = append(out.Warnings, w...)
	// A point whose manifest is damaged belongs to no source it can be
	// counted under, and no prune removes it: said here, not passed over.
	var damaged []string
	for _, p := range pts {
		if p.Damaged != "" {
			damaged = append(damaged, p.ID.String()[:12])
		}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	if len(damaged) > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("%d points whose manifest is damaged (%s; 'recall points' lists them as DAMAGED) are counted under no source, and nothing of them can be restored: remove them with 'recall forget ID' or 'recall repair points --forget-damaged'",
			len(damaged), strings.Join(damaged, ", ")))
	}
	return out, nil
}

// spaceWarnings applies the sizing rules to the store's file system:
// free space under 1.5x the protected data (DPM's), or under 14 days of
// growth. free < 0 means unknown; days is -1 when there is no growth.
func spaceWarnings(free, protected, growthPerDay int64) (days float64, warnings []string) {
	days = -1
	if free >= 0 && growthPerDay > 0 {
		days = math.Round(float64(free)/float64(growthPerDay)*10) / 10
	}
	if free >= 0 && float64(free) < freeOverProtected*float64(protected) {
		warnings = append(warnings, fmt.Sprintf("free space %d bytes is under %.1fx the protected data (%d bytes): add disk space or protect less", free, freeOverProtected, protected))
	}
	if days >= 0 && days < minDaysOfGrowth {
		warnings = append(warnings, fmt.Sprintf("at %d bytes a day the store's file system is full in %.1f days (under %d): add disk space, shorten retention, prune and gc", growthPerDay, days, minDaysOfGrowth))
	}
	return days, warnings
}

// storedBytes is the size of the store's packs, index files and point
// manifests.
func (s *Store) storedBytes(ctx context.Context) (int64, error) {
	be := s.st.Backend()
	var n int64
	for _, t := range []backend.FileType{backend.Packs, backend.Index, backend.Points} {
		if err := be.List(ctx, t, func(_ string, size int64) error { n += size; return nil }); err != nil {
			return 0, fmt.Errorf("status: list %s of %s: %w", t, be.Location(), err)
		}
	}
	return n, nil
}
