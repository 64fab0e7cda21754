package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
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
	LastGood  string    `json:"last_good_point,omitempty"` // newest readable point
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
	Warnings []string         `json:"warnings,omitempty"`
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
		if !p.Time.Before(st.LastTime) {
			st.LastGood, st.LastTime, st.Protected = p.ID.String(), p.Time, p.Stats.Bytes
		}
		if age := now.Sub(p.Time); age >= 0 && age <= growthDays*day {
			st.GrowthPerDay += p.Stats.StoredBytes
		}
	}
	// Members with no point yet are listed too: they need attention.
	for _, g := range groups {
		for _, src := range g.Sources() {
			if by[src] == nil {
				by[src] = &SourceStatus{Group: g.Name, Source: src}
			}
		}
	}
	out := &StoreStatus{Time: now.UTC(), Free: -1, DaysUntilFull: -1}
	for _, st := range by {
		st.GrowthPerDay /= growthDays
		if st.Stored > 0 {
			st.DedupRatio = math.Round(float64(bytesBySource[st.Source])/float64(st.Stored)*100) / 100
		}
		out.Protected += st.Protected
		out.GrowthPerDay += st.GrowthPerDay
		out.Sources = append(out.Sources, *st)
		if st.LastGood == "" {
			out.Warnings = append(out.Warnings, fmt.Sprintf("source %s (group %s) has no recovery point yet: run 'recall backup --group %s'", st.Source, st.Group, st.Group))
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
