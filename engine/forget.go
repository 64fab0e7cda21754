package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/recall-backup/recall/chunkstore"
)

// Forgotten is what Forget removed.
type Forgotten struct {
	// Point is the point removed. For a point whose manifest was damaged
	// only ID and Damaged are set.
	Point *Point
	// Before lists every point as it was before the removal (nil for a
	// damaged manifest, which no mount showed), so a caller can name the
	// point as a mount named it.
	Before []*Point
}

// Forget removes the point spec names ("latest", an id or a unique id
// prefix; see FindPoint), of source when source is not empty, in a write
// session of its own. A point whose manifest is damaged is removed too:
// forgetting is the way to be rid of it. The point's blobs stay until
// garbage collection. Mounts are not told; the caller refreshes them.
func (s *Store) Forget(ctx context.Context, spec, source string, lock LockOptions) (*Forgotten, error) {
	f, err := s.ForgetAll(ctx, []string{spec}, source, lock)
	if err != nil {
		return nil, err
	}
	return f[0], nil
}

// ForgetAll is Forget for several points: every spec is resolved before
// any point is removed, so a spec that names no point (or several)
// removes nothing; a point named twice is removed once. The points of one
// source are removed in one write session; sources in the order of their
// first point in specs. Before is the same list for each: every point as
// it was before the first removal, as a mount showed them. On an error
// part way (a source's lock not free in time), what was removed is
// returned with it.
func (s *Store) ForgetAll(ctx context.Context, specs []string, source string, lock LockOptions) ([]*Forgotten, error) {
	var out []*Forgotten
	seen := map[chunkstore.ID]bool{}
	latest := map[chunkstore.ID]bool{} // resolved from "latest"
	var sources []string
	bySource := map[string][]*Forgotten{}
	// Listed once: every spec is resolved among them, and they are what
	// a mount showed before the first removal (Forgotten.Before).
	before, err := s.r.Points()
	if err != nil {
		return nil, err
	}
	for _, spec := range specs {
		p, err := s.r.findPoint(before, spec, source)
		var dp *DamagedPointError
		if errors.As(err, &dp) {
			p, err = &Point{ID: dp.ID, Damaged: dp.Reason}, nil
		}
		if err != nil {
			if len(specs) > 1 {
				err = fmt.Errorf("%w; no point was forgotten", err)
			}
			return nil, err
		}
		if seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		if spec == "latest" {
			latest[p.ID] = true
		}
		f := &Forgotten{Point: p}
		if p.Damaged == "" {
			f.Before = before
		}
		if _, ok := bySource[p.Source]; !ok {
			sources = append(sources, p.Source)
		}
		bySource[p.Source] = append(bySource[p.Source], f)
	}
	for _, src := range sources {
		fs := bySource[src]
		what := "forget point " + fs[0].Point.ID.Short()
		if len(fs) > 1 {
			what = fmt.Sprintf("forget %d points", len(fs))
		}
		ss, err := s.Session(ctx, SessionOptions{Purpose: what, Source: src, LockOptions: lock})
		if err != nil {
			return out, err
		}
		if err := stillLatest(s.r, fs, latest); err != nil {
			ss.Close()
			return out, err
		}
		for _, f := range fs {
			if err := ss.RemovePoint(f.Point.ID); err != nil {
				ss.Close()
				return out, err
			}
			out = append(out, f)
		}
		ss.Close()
	}
	return out, nil
}

// stillLatest fails when a point "latest" named, resolved before the
// source's lock was taken, is no longer its source's newest once it is:
// a backup that held the lock made a newer one meanwhile. Forgetting the
// older point would not be what "latest" said when it was typed, and the
// newer one was never seen; neither is removed.
func stillLatest(r *Reader, fs []*Forgotten, latest map[chunkstore.ID]bool) error {
	for _, f := range fs {
		if !latest[f.Point.ID] {
			continue
		}
		now, err := r.FindPoint("latest", f.Point.Source)
		if err != nil {
			return err
		}
		if now.ID != f.Point.ID {
			return fmt.Errorf("\"latest\" of source %s was point %s when forget started; point %s was made while it waited for the source's lock, so neither was forgotten: give the id of the point to forget ('recall points --source %s' lists them)",
				f.Point.Source, f.Point.ID.String()[:12], now.ID.String()[:12], f.Point.Source)
		}
	}
	return nil
}
