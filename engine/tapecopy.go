package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/tapefs"
)

// Copying a set: a second copy for another site, as a new set of another
// pool. A point the store still holds is read from the store; the others
// are read from the set's cartridges into a staging store first (so a copy
// of a set whose points were pruned from disk long ago still works). The
// copy is one new set holding the same points and packs.

// TapeCopyOptions configure CopyTapeSet.
type TapeCopyOptions struct {
	Set  string // set id or unique prefix
	Pool string // the pool of the copy
	// Password gives the passphrase of the store the points were written
	// from, asked only when a staged store is encrypted.
	Password func() (string, error)
	Log      func(format string, args ...any)
	Now      func() time.Time
	// ToSet (an id or unique prefix) continues a copy that stopped: a
	// set of Pool that an earlier copy of Set began. Packs already on it
	// are not written again; "" starts a new set.
	ToSet string
}

// CopyTapeSet writes the points of a set as a new set of another pool. s
// may be nil (a home with no store): then every point is read from tape.
func CopyTapeSet(ctx context.Context, s *Store, home string, o TapeCopyOptions) (rep *TapeWriteReport, err error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	j := &Job{Kind: "tape-copy", Path: o.Pool}
	err = RunTapeJob(home, j, o.Log, func() error {
		rep, err = copyTapeSet(ctx, s, home, o)
		if err != nil && rep != nil && rep.Set != "" {
			// What was written stays a set of the pool: say how to go on
			// from there rather than start over on more cartridges.
			err = fmt.Errorf("%w; the copy so far is set %s of pool %s: 'recall tape copy --set %s --pool %s --to-set %s' continues it, writing only what it lacks",
				err, rep.Set, rep.Pool, o.Set, rep.Pool, rep.Set)
		}
		return err
	})
	return rep, err
}

// setByPrefix is the set of st whose id is or starts with id.
func setByPrefix(st *TapeState, id string) (*TapeSet, error) {
	var set *TapeSet
	for i := range st.Sets {
		if id != "" && strings.HasPrefix(st.Sets[i].ID, id) {
			if set != nil {
				return nil, fmt.Errorf("set %s: the prefix names several sets; give more of its id", id)
			}
			set = &st.Sets[i]
		}
	}
	if set == nil || set.Catalog == nil {
		return nil, fmt.Errorf("set %s: %w (see 'recall tape list')", id, ErrTapeNotFound)
	}
	return set, nil
}

func copyTapeSet(ctx context.Context, s *Store, home string, o TapeCopyOptions) (*TapeWriteReport, error) {
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return nil, err
	}
	set, err := setByPrefix(st, o.Set)
	if err != nil {
		return nil, err
	}
	pool, err := st.pool(o.Pool)
	if err != nil {
		return nil, err
	}
	if pool.Name == set.Pool {
		return nil, fmt.Errorf("set %s is pool %s's already: copy it to another pool", set.ID, set.Pool)
	}
	wo := TapeWriteOptions{Pool: pool.Name, Log: o.Log, Now: o.Now, Set: "new"}
	if o.ToSet != "" {
		to, err := setByPrefix(st, o.ToSet)
		if err != nil {
			return nil, fmt.Errorf("--to-set: %w", err)
		}
		switch {
		case to.Pool != pool.Name:
			return nil, fmt.Errorf("--to-set %s: set %s is pool %s's, not %s's: give the set the stopped copy began in pool %s (see 'recall tape list')", o.ToSet, to.ID, to.Pool, pool.Name, pool.Name)
		case to.Closed:
			return nil, fmt.Errorf("--to-set %s: set %s is closed (expired, or its pool allocates a set per write): copy without --to-set to a new set", o.ToSet, to.ID)
		}
		wo.Set = to.ID
	}
	var fromStore []*Point
	var fromTape []tapefs.CatalogPoint
	for _, cp := range set.Catalog.Points {
		if s != nil {
			if id, err := chunkstore.ParseID(cp.ID); err == nil {
				if p, err := s.r.LoadPoint(id); err == nil {
					fromStore = append(fromStore, p)
					continue
				}
			}
		}
		fromTape = append(fromTape, cp)
	}
	if len(fromStore)+len(fromTape) == 0 {
		return nil, fmt.Errorf("set %s holds no point", set.ID)
	}
	total := &TapeWriteReport{Pool: pool.Name}
	add := func(r *TapeWriteReport) {
		total.Set = r.Set
		total.Points = append(total.Points, r.Points...)
		total.Packs += r.Packs
		total.PacksSkipped += r.PacksSkipped
		total.Bytes += r.Bytes
		total.Seconds += r.Seconds
		for _, t := range r.Tapes {
			if !strings.Contains(strings.Join(total.Tapes, " "), t) {
				total.Tapes = append(total.Tapes, t)
			}
		}
	}
	if len(fromStore) > 0 {
		o.Log("copying %d point(s) of set %s from the store", len(fromStore), set.ID)
		wo.Points = fromStore
		r, err := s.writeTape(ctx, home, wo)
		if r != nil {
			add(r)
		}
		if err != nil {
			return total, err
		}
		wo.Set = r.Set
		if st, err = readTapeState(home, o.Log); err != nil {
			return total, err
		}
	}
	if len(fromTape) > 0 {
		o.Log("copying %d point(s) of set %s from its cartridges", len(fromTape), set.ID)
		sg, err := stageFromTape(ctx, home, st, *set, fromTape, o.Log, nil)
		if sg != nil {
			defer os.RemoveAll(sg.dir)
		}
		if err != nil {
			return total, err
		}
		if len(sg.lost) > 0 {
			sg.fillLost(ctx, home, st, o.Log)
		}
		if len(sg.lost) > 0 {
			return total, fmt.Errorf("set %s: %d pack(s) could not be read from its cartridges (%s): the copy would lack them; nothing more was written", set.ID, len(sg.lost), strings.Join(sg.lost, ", "))
		}
		staged, err := openStaged(ctx, sg.dir, o.Password)
		if err != nil {
			return total, err
		}
		defer staged.Close()
		var pts []*Point
		for _, id := range sg.points {
			p, err := staged.r.LoadPoint(id)
			if err != nil {
				return total, err
			}
			pts = append(pts, p)
		}
		wo.Points = pts
		r, err := staged.writeTape(ctx, home, wo)
		if r != nil {
			add(r)
		}
		if err != nil {
			return total, err
		}
	}
	if total.Set == "" {
		return total, errors.New("nothing was written")
	}
	return total, nil
}
