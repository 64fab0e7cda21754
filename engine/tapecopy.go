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
		return err
	})
	return rep, err
}

func copyTapeSet(ctx context.Context, s *Store, home string, o TapeCopyOptions) (*TapeWriteReport, error) {
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return nil, err
	}
	var set *TapeSet
	for i := range st.Sets {
		if o.Set != "" && strings.HasPrefix(st.Sets[i].ID, o.Set) {
			if set != nil {
				return nil, fmt.Errorf("set %s: the prefix names several sets; give more of its id", o.Set)
			}
			set = &st.Sets[i]
		}
	}
	if set == nil || set.Catalog == nil {
		return nil, fmt.Errorf("set %s: %w (see 'recall tape list')", o.Set, ErrTapeNotFound)
	}
	pool, err := st.pool(o.Pool)
	if err != nil {
		return nil, err
	}
	if pool.Name == set.Pool {
		return nil, fmt.Errorf("set %s is pool %s's already: copy it to another pool", set.ID, set.Pool)
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
	wo := TapeWriteOptions{Pool: pool.Name, Log: o.Log, Now: o.Now, Set: "new"}
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
