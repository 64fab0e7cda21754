package engine

import (
	"context"
	"errors"
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
	p, err := s.r.FindPoint(spec, source)
	var dp *DamagedPointError
	if errors.As(err, &dp) {
		p, err = &Point{ID: dp.ID, Damaged: dp.Reason}, nil
	}
	if err != nil {
		return nil, err
	}
	f := &Forgotten{Point: p}
	if p.Damaged == "" {
		if f.Before, err = s.r.Points(); err != nil {
			return nil, err
		}
	}
	ss, err := s.Session(ctx, SessionOptions{Purpose: "forget point " + p.ID.Short(), Source: p.Source, LockOptions: lock})
	if err != nil {
		return nil, err
	}
	defer ss.Close()
	if err := ss.RemovePoint(p.ID); err != nil {
		return nil, err
	}
	return f, nil
}
