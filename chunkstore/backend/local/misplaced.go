package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/recall-backup/recall/chunkstore/backend"
)

var _ backend.PackPlacer = (*Backend)(nil)

// Misplaced calls fn with the name and path of every file under packs/
// that lies outside the folder a pack of its name is read from
// (packs/<first two characters>/): moved into another folder, or to
// packs/ itself, by hand or by a copy tool that flattened or re-sorted
// the folders. List does not list them; PutBack moves one home.
func (b *Backend) Misplaced(ctx context.Context, fn func(name, path string) error) error {
	root := filepath.Join(b.dir, "packs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list packs: %w", notExist(err))
	}
	regular := func(p string, e os.DirEntry) bool {
		if e.Type()&os.ModeSymlink == 0 {
			return e.Type().IsRegular()
		}
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular()
	}
	for _, s := range subs {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, p := s.Name(), filepath.Join(root, s.Name())
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !s.IsDir() {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				if regular(p, s) {
					if err := fn(name, p); err != nil {
						return err
					}
				}
				continue
			}
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return fmt.Errorf("list packs: %w", err)
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, ".") || packDir(n) == name || !regular(filepath.Join(p, n), e) {
				continue
			}
			if err := fn(n, filepath.Join(p, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutBack moves the pack file at path, which Misplaced named, to where a
// pack of its name is read from. It never replaces a file: when one of
// the name is there already it returns an error wrapping fs.ErrExist and
// moves nothing. The caller holds the store exclusively, so no writer
// puts a pack there between the check and the rename.
func (b *Backend) PutBack(ctx context.Context, name, path string) error {
	h := backend.Handle{Type: backend.Packs, Name: name}
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	home := b.Path(h)
	if _, err := os.Lstat(home); err == nil {
		return fmt.Errorf("put back %s: %w: %s", path, fs.ErrExist, home)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(home), 0o700); err != nil {
		return err
	}
	if err := os.Rename(path, home); err != nil {
		return fmt.Errorf("put back %s: %w", path, err)
	}
	b.forget(h)
	if err := syncDir(filepath.Dir(home)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
