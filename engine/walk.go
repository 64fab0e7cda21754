package engine

import (
	"context"
	"io/fs"
	"path"

	"github.com/recall-backup/recall/chunkstore"
)

// WalkFunc is called by Walk for each entry, with its path relative to
// the walk's root ('/'-separated). For a directory it is called before the
// walk goes into it and, if its tree cannot be loaded, once more with
// that error (err is nil otherwise). Returning fs.SkipDir (io/fs) for a
// directory keeps the walk out of it; any other non-nil return ends the
// walk with that error.
type WalkFunc func(rel string, n *Node, err error) error

// Walk visits every entry below the tree root, depth first, in name
// order. An error loading root itself comes to fn as ("", nil, err).
// Entries whose names no restore would write (empty, ".", "..", or
// holding '/' or NUL) are not visited: they are not part of the tree a
// person sees. A tree shared by several directories is loaded and walked
// for each. Walk stops early, returning ctx's error, when ctx is done.
func (r *Reader) Walk(ctx context.Context, root chunkstore.ID, fn WalkFunc) error {
	t, err := r.LoadTree(root)
	if err != nil {
		return noSkip(fn("", nil, err))
	}
	return r.walkTree(ctx, t, "", fn)
}

// WalkNode is Walk from one entry: n itself, then, for a directory,
// everything below it. rel is n's path.
func (r *Reader) WalkNode(ctx context.Context, rel string, n *Node, fn WalkFunc) error {
	return noSkip(r.walkNode(ctx, rel, n, fn))
}

func noSkip(err error) error {
	if err == fs.SkipDir {
		return nil
	}
	return err
}

func (r *Reader) walkTree(ctx context.Context, t *Tree, rel string, fn WalkFunc) error {
	for _, n := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !safeName(n.Name) {
			continue
		}
		if err := r.walkNode(ctx, path.Join(rel, n.Name), n, fn); err != nil && err != fs.SkipDir {
			return err
		}
	}
	return nil
}

func (r *Reader) walkNode(ctx context.Context, rel string, n *Node, fn WalkFunc) error {
	if err := fn(rel, n, nil); err != nil || n.Type != TypeDir {
		return err
	}
	t, err := r.LoadTree(n.Subtree)
	if err != nil {
		return fn(rel, n, err)
	}
	return r.walkTree(ctx, t, rel, fn)
}
