package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"github.com/recall-backup/recall/chunkstore"
)

// RepairPointsOptions configure RepairPoints.
type RepairPointsOptions struct {
	RepairOptions
	// ForgetDamaged removes each damaged point once its repaired copy is
	// durable, each point whose root directory is lost, and each manifest
	// that cannot be read. Without it they all stay, and the report says so.
	ForgetDamaged bool
}

// RepairPoints writes, for each point with lost files, a new point of the
// same source, time, path, host, kind and root metadata whose trees leave
// out every file whose content is lost and every directory that cannot be
// read; each of those is listed in the new point's Errors ("lost in
// repair: ..."), after the old point's own errors, so nothing is dropped
// silently. Its stats count the entries of its new trees, as a restore of
// it does (treeStats); those of the backup's work (unchanged files, new
// blobs and bytes, duration) stay the old point's. A point is repaired
// once: a point of the same source and time with the repaired root tree
// already there is reused.
//
// Lost means what the store says it cannot serve: a data chunk for which
// Has is false (missing, in a missing pack, recorded damaged, or beyond
// the end of a truncated pack), and a tree blob for which Has is false or
// that fails to load. Data chunks are not read: run 'verify --read-data'
// first so that damage it finds is recorded.
//
// Blobs of repaired trees are written in session s and flushed
// before any manifest is saved; an old point is removed (ForgetDamaged)
// only after its replacement's manifest is durable. With DryRun nothing is
// written and the report lists what would be done.
//
// The error wraps ErrDamaged when damage stays in the store and is
// reported: a damaged point or manifest kept because ForgetDamaged was not
// given. Mounts are not told; the caller refreshes them.
func RepairPoints(ctx context.Context, s *Session, opts RepairPointsOptions) (*RepairReport, error) {
	if !s.exclusive {
		return nil, fmt.Errorf("repair points: %w", ErrNotExclusive)
	}
	r := s.Reader()
	if err := r.Refresh(); err != nil {
		return nil, err
	}
	rep := &RepairReport{DryRun: opts.DryRun, Actions: []string{}}
	// A pack file under another pack's name (two swapped, one moved over
	// another) reads as two packs lost, and their points' files as lost
	// with them; repair index and repair packs put them back whole. So
	// nothing is acted on here while one is: those points were removed,
	// whole. Looked for (every pack's header read) once a point is found
	// damaged, before anything is said or done of it: not in a store
	// with nothing to repair.
	looked := false
	noMisnamed := func() error {
		if looked {
			return nil
		}
		looked = true
		mn, err := s.lock.SetAsideMisnamed(true) // lists them, moves nothing
		if err != nil || len(mn) == 0 {
			return err
		}
		return fmt.Errorf("%w: %d pack file(s) hold another pack than their name says (the first, %s, holds pack %s: packs swapped or moved by hand), so their blobs read as lost though they are whole: run 'recall repair index' first, which puts them in their places, then 'recall verify --read-data'; nothing was changed",
			ErrDamaged, len(mn), mn[0].Name, mn[0].Holds)
	}
	would := func(now, dry string) string {
		if opts.DryRun {
			return dry
		}
		return now
	}
	act := func(format string, args ...any) {
		rep.Actions = append(rep.Actions, fmt.Sprintf(format, args...))
		if opts.Log != nil {
			opts.Log(format, args...)
		}
	}
	pts, err := r.Points()
	if err != nil {
		return nil, err
	}
	rw := &treeRewriter{r: r, s: s, dry: opts.DryRun, done: map[chunkstore.ID]*rewritten{}}
	defer s.Abort()

	type replacement struct {
		old *Point
		np  Point
		n   int // losses
	}
	var todo []replacement
	var kept []string // damage that stays, for the error
	forget := func(p *Point, what string) error {
		if !opts.ForgetDamaged {
			kept = append(kept, what)
			act("%s %s; 'recall repair points --forget-damaged' removes it", would("kept", "would keep"), what)
			return nil
		}
		if !opts.DryRun {
			if err := s.RemovePoint(p.ID); err != nil && !errors.Is(err, chunkstore.ErrNotFound) {
				return fmt.Errorf("remove %s: %w", what, err)
			}
		}
		act("%s %s", would("removed", "would remove"), what)
		return nil
	}
	for _, p := range pts {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if p.Damaged != "" {
			var dp *DamagedPointError
			switch _, err := r.LoadPoint(p.ID); {
			case errors.Is(err, chunkstore.ErrNotFound):
				continue // forgotten meanwhile
			case !errors.As(err, &dp):
				act("left point %s alone: %v", pointShort(p.ID), err) // not damage: a newer format
				continue
			}
			if err := noMisnamed(); err != nil {
				return rep, err
			}
			if err := forget(p, fmt.Sprintf("damaged manifest of point %s (%s)", pointShort(p.ID), p.Damaged)); err != nil {
				return rep, err
			}
			continue
		}
		res, err := rw.rewrite(p.Tree)
		if err != nil {
			return rep, fmt.Errorf("point %s: %w (nothing was changed for it; fix that and run the repair again)", pointShort(p.ID), err)
		}
		if res.lost != "" || len(res.losses) > 0 {
			if err := noMisnamed(); err != nil {
				return rep, err
			}
		}
		what := fmt.Sprintf("point %s of source %s from %s", pointShort(p.ID), p.Source, p.Time.Format("2006-01-02 15:04:05"))
		if res.lost != "" {
			act("%s cannot be repaired: its root directory is lost (%s)", what, res.lost)
			if err := forget(p, what); err != nil {
				return rep, err
			}
			continue
		}
		if len(res.losses) == 0 {
			continue
		}
		np := *p
		np.ID, np.Tree = chunkstore.ID{}, res.id
		np.Errors = append(append([]PathError(nil), p.Errors...), res.losses...)
		todo = append(todo, replacement{old: p, np: np, n: len(res.losses)})
	}

	if len(todo) > 0 {
		if err := s.Flush(); err != nil {
			return rep, fmt.Errorf("save repaired trees: %w", err)
		}
	}
	for _, t := range todo {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		p := t.old
		what := fmt.Sprintf("point %s of source %s from %s", pointShort(p.ID), p.Source, p.Time.Format("2006-01-02 15:04:05"))
		for _, e := range t.np.Errors[len(p.Errors):] {
			act("%s: %s %s (%s)", what, would("dropped", "would drop"), e.Path, e.Error)
		}
		if q := repairedAlready(pts, p, t.np.Tree); q != nil {
			act("%s: already repaired as point %s", what, pointShort(q.ID))
		} else if !opts.DryRun {
			if err := treeStats(ctx, r, t.np.Tree, &t.np.Stats); err != nil {
				return rep, fmt.Errorf("%s: count the repaired tree: %w", what, err)
			}
			newID, err := s.CommitPoint(&t.np)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", what, err)
			}
			act("%s: wrote point %s without %s (listed in its errors)", what, pointShort(newID), lostEntries(t.n))
		} else {
			act("%s: would write a point without %s (listed in its errors)", what, lostEntries(t.n))
		}
		if err := forget(p, what); err != nil {
			return rep, err
		}
	}
	if len(kept) > 0 {
		return rep, fmt.Errorf("%w: %d damaged points or manifests kept; 'recall repair points --forget-damaged' removes them", ErrDamaged, len(kept))
	}
	return rep, nil
}

// treeStats sets the counts of st (Files, Dirs, Others, Bytes) to those
// of the tree root, counted as backup counts what it saves and restore
// what it writes: the entries below the root (not the root), files and
// devices as files, the bytes of a hard-link group once. Backup counts
// as it reads the source, which a repair cannot, so the repaired tree is
// walked. Its trees were all loaded (or written) by the rewrite just
// before, so one that cannot be loaded now is an error, not a loss.
func treeStats(ctx context.Context, r *Reader, root chunkstore.ID, st *Stats) error {
	var files, dirs, others, bytes int64
	groups := map[uint64]bool{}
	err := r.Walk(ctx, root, func(_ string, n *Node, err error) error {
		switch {
		case err != nil:
			return err
		case n.Type == TypeDir:
			dirs++
		case n.Type.HasContent():
			files++
			if n.LinkGroup == 0 || !groups[n.LinkGroup] {
				bytes += int64(n.Size)
			}
			if n.LinkGroup != 0 {
				groups[n.LinkGroup] = true
			}
		default:
			others++
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.Files, st.Dirs, st.Others, st.Bytes = files, dirs, others, bytes
	return nil
}

func lostEntries(n int) string {
	if n == 1 {
		return "1 lost entry"
	}
	return fmt.Sprintf("%d lost entries", n)
}

// repairedAlready returns a point other than p of p's source and time
// whose root is root: p's replacement from an earlier run.
func repairedAlready(pts []*Point, p *Point, root chunkstore.ID) *Point {
	for _, q := range pts {
		if q.ID != p.ID && q.Damaged == "" && q.Source == p.Source && q.Time.Equal(p.Time) && q.Tree == root {
			return q
		}
	}
	return nil
}

// rewritten is a tree with its lost entries left out.
type rewritten struct {
	id     chunkstore.ID // the rewritten tree (the original when nothing was lost)
	lost   string        // why the tree itself cannot be read; then id is zero
	losses []PathError   // entries left out, paths relative to this tree
}

// treeRewriter rewrites trees bottom-up, once per tree id however many
// points share it.
type treeRewriter struct {
	r    *Reader
	s    *Session
	dry  bool
	done map[chunkstore.ID]*rewritten
}

func (rw *treeRewriter) rewrite(id chunkstore.ID) (*rewritten, error) {
	if res, ok := rw.done[id]; ok {
		return res, nil
	}
	res, err := rw.rewriteOnce(id)
	if err != nil {
		return nil, err
	}
	rw.done[id] = res
	return res, nil
}

func (rw *treeRewriter) rewriteOnce(id chunkstore.ID) (*rewritten, error) {
	st := rw.r.st
	if !st.Has(id) {
		return &rewritten{lost: "tree " + id.Short() + " is missing or recorded damaged"}, nil
	}
	t, err := rw.r.LoadTree(id)
	if err != nil {
		if lostBlob(err) {
			return &rewritten{lost: err.Error()}, nil
		}
		return nil, err
	}
	res := &rewritten{}
	var nodes []*Node
	changed := false
	for _, n := range t.Nodes {
		switch {
		case n.Type == TypeDir:
			sub, err := rw.rewrite(n.Subtree)
			if err != nil {
				return nil, err
			}
			if sub.lost != "" {
				res.losses = append(res.losses, PathError{Path: n.Name + "/", Error: "lost in repair: directory unreadable: " + sub.lost})
				changed = true
				continue
			}
			for _, l := range sub.losses {
				res.losses = append(res.losses, PathError{Path: n.Name + "/" + l.Path, Error: l.Error})
			}
			if sub.id != n.Subtree {
				c := *n
				c.Subtree = sub.id
				n, changed = &c, true
			}
		case n.Type.HasContent():
			if why := lostContent(st, n); why != "" {
				res.losses = append(res.losses, PathError{Path: n.Name, Error: "lost in repair: " + why})
				changed = true
				continue
			}
		}
		nodes = append(nodes, n)
	}
	if !changed {
		res.id = id
		return res, nil
	}
	blob := EncodeTree(&Tree{Nodes: nodes})
	res.id = st.Hash(blob)
	if rw.dry {
		return res, nil
	}
	if _, err := rw.s.SaveBlob(chunkstore.TreeBlob, res.id, blob); err != nil {
		return nil, fmt.Errorf("save repaired tree: %w", err)
	}
	return res, nil
}

// lostContent says why a file's content cannot be restored, or "".
func lostContent(st StoreReader, n *Node) string {
	for _, e := range n.Extents {
		if e.Hole || st.Has(e.ID) {
			continue
		}
		if pack, ok := st.PackOf(e.ID); ok {
			return fmt.Sprintf("chunk %s (pack %s) is missing or damaged", e.ID.Short(), pack.Short())
		}
		return fmt.Sprintf("chunk %s is missing or damaged", e.ID.Short())
	}
	return ""
}

// lostBlob tells a blob that is gone or bad from a read that failed for
// another reason (permissions, a full table of descriptors), which a repair
// must not take for loss.
func lostBlob(err error) bool {
	return errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, chunkstore.ErrNotFound) ||
		errors.Is(err, ErrBadTree) || errors.Is(err, fs.ErrNotExist) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EIO)
}
