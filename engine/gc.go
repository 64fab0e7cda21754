package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/recall-backup/recall/chunkstore"
)

// GCOptions configure garbage collection (see chunkstore.GCOptions, whose
// fields these are; the store's package comment of gc.go says how it runs
// beside backups and why that is safe).
type GCOptions struct {
	// RepackThreshold is the share of dead bytes at which a pack is
	// rewritten (0: chunkstore.DefaultRepackThreshold, 50%).
	RepackThreshold float64
	// MaxUnused bounds the dead bytes left in packs kept, as a share of
	// the live ones (0: chunkstore.DefaultMaxUnused, 5%; negative: none).
	MaxUnused float64
	// DryRun reports what would be done and changes nothing.
	DryRun bool
	// Wait is how long to wait for write sessions that started before the
	// packs were hidden (0: leave the deletion to the next collection).
	Wait time.Duration
	// IndexGrace is how long superseded index files stay, and how long
	// the packs of a stopped write session wait for its next run before
	// they are collected (0: an hour; below 0: none).
	IndexGrace time.Duration
	Log        func(format string, args ...any)
	LockOptions
}

// GCReport is what garbage collection did.
type GCReport = chunkstore.GCReport

// GC returns the space of forgotten points: it marks every blob the
// points reach, deletes packs with no live blob and rewrites packs mostly
// dead. Backups go on meanwhile; see chunkstore.(*Store).GC.
func GC(ctx context.Context, s *Store, o GCOptions) (*GCReport, error) {
	mark := func(ctx context.Context, points []chunkstore.ID, live *chunkstore.BlobSet) error {
		return s.r.markPoints(ctx, points, live)
	}
	return s.st.GC(ctx, mark, chunkstore.GCOptions{
		RepackThreshold: o.RepackThreshold,
		MaxUnused:       o.MaxUnused,
		DryRun:          o.DryRun,
		Wait:            o.Wait,
		LockWait:        o.LockOptions.Wait,
		IndexGrace:      o.IndexGrace,
		Log:             o.Log,
	})
}

// markPoints adds to live the trees and chunks of points, walking each
// tree once however many points share it (a tree in live was walked). A
// point forgotten meanwhile is skipped; any other point or tree that
// cannot be read stops the collection, since what it refers to is
// unknown.
func (r *Reader) markPoints(ctx context.Context, points []chunkstore.ID, live *chunkstore.BlobSet) error {
	var mark func(tree chunkstore.ID) error
	mark = func(tree chunkstore.ID) error {
		if !live.AddTree(tree) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := r.LoadTree(tree)
		if err != nil {
			return err
		}
		for _, n := range t.Nodes {
			switch {
			case n.Type == TypeDir:
				if err := mark(n.Subtree); err != nil {
					return err
				}
			case n.Type.HasContent():
				for _, e := range n.Extents {
					if !e.Hole {
						live.Add(e.ID)
					}
				}
			}
		}
		return nil
	}
	for _, id := range points {
		p, err := r.LoadPoint(id)
		if errors.Is(err, chunkstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("garbage collection stopped before deleting anything: point %s: %w (run 'recall verify'; forget the point or repair the store)", id.Short(), err)
		}
		if err := mark(p.Tree); err != nil {
			if damagedTree(err) {
				// Damaged data, as a damaged manifest is (exit 4): the
				// sentinel is what the command's exit code is told by.
				err = fmt.Errorf("%w: %w", ErrDamaged, err)
			}
			return fmt.Errorf("garbage collection stopped before deleting anything: point %s: %w (run 'recall verify'; forget the point or repair the store)", id.Short(), err)
		}
	}
	return nil
}

// damagedTree reports whether a tree could not be read because of what is
// stored: its blob fails its check, is in no pack, or does not decode. An
// I/O error or a cancelled walk is not damage.
func damagedTree(err error) bool {
	return errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, chunkstore.ErrNotFound) || errors.Is(err, ErrBadTree)
}
