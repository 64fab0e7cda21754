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
			return fmt.Errorf("list packs in %s: %w", p, err)
		}
		for _, e := range ents {
			n := e.Name()
			if rest, ok := strings.CutPrefix(n, putBackPrefix); ok && regular(filepath.Join(p, n), e) {
				// Left by a put back cut short (putBackOutOf).
				if err := fn(rest, filepath.Join(p, n)); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(n, ".") {
				continue
			}
			if e.IsDir() {
				// A folder one level down: a pack moved into a directory
				// made in its place (mv P x; mkdir P; mv x P/P), or a
				// pack folder moved into another one. Its files are read
				// from nowhere.
				inPlaceOf := ""
				if packDir(n) == name {
					inPlaceOf = n
				}
				if err := misplacedIn(filepath.Join(p, n), inPlaceOf, regular, fn); err != nil {
					return err
				}
				continue
			}
			if packDir(n) == name || !regular(filepath.Join(p, n), e) {
				continue
			}
			if err := fn(n, filepath.Join(p, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// misplacedIn calls fn for each regular file in dir (the store takes those
// named like a pack, as for the rest of Misplaced). A directory in the
// place of pack inPlaceOf that holds one file only holds that pack under
// another name (mv P x; mkdir P; mv x P/): it is named as inPlaceOf.
func misplacedIn(dir, inPlaceOf string, regular func(string, os.DirEntry) bool, fn func(name, path string) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list packs in %s: %w", dir, err)
	}
	if inPlaceOf != "" && len(ents) == 1 && regular(filepath.Join(dir, ents[0].Name()), ents[0]) {
		return fn(inPlaceOf, filepath.Join(dir, ents[0].Name()))
	}
	for _, e := range ents {
		n, p := e.Name(), filepath.Join(dir, e.Name())
		if strings.HasPrefix(n, ".") || !regular(p, e) {
			continue
		}
		if err := fn(n, p); err != nil {
			return err
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
	if fi, err := os.Lstat(home); err == nil {
		if fi.IsDir() && (filepath.Dir(path) == home || path == putBackAside(home)) {
			return b.putBackOutOf(h, path)
		}
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

// putBackPrefix starts the name a pack file has between leaving a
// directory made in its place and taking the directory's name; Misplaced
// names one a crash left there.
const putBackPrefix = ".putback-"

func putBackAside(home string) string {
	return filepath.Join(filepath.Dir(home), putBackPrefix+filepath.Base(home))
}

// putBackOutOf puts back a pack file that lies in a directory made in its
// place (home/name): the file goes beside the directory under a temporary
// name, the directory is removed only if that left it empty, and the file
// takes its name. A directory holding anything else stays, with the file
// moved back into it, and the error says so.
func (b *Backend) putBackOutOf(h backend.Handle, path string) error {
	home := b.Path(h)
	aside := putBackAside(home)
	if path != aside {
		if _, err := os.Lstat(aside); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("put back %s: %w: %s", path, fs.ErrExist, aside)
		}
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("put back %s: %w", path, err)
		}
	}
	if err := os.Remove(home); err != nil {
		if berr := os.Rename(aside, path); berr != nil {
			return fmt.Errorf("put back %s: the directory in its place, %s, holds other files too (%v), and moving the pack back into it failed: it lies at %s: %w", path, home, err, aside, berr)
		}
		return fmt.Errorf("put back %s: %w: the directory in its place, %s, holds other files too: move them out of it", path, fs.ErrExist, home)
	}
	if err := os.Rename(aside, home); err != nil {
		return fmt.Errorf("put back %s: it lies at %s: %w", path, aside, err)
	}
	b.forget(h)
	return syncDir(filepath.Dir(home))
}

var _ backend.PackRenamer = (*Backend)(nil)

// SetAside renames the file in pack name's place to .putback-<as> in its
// folder, where Misplaced names it as pack as.
func (b *Backend) SetAside(ctx context.Context, name, as string) error {
	h := backend.Handle{Type: backend.Packs, Name: name}
	if err := h.Valid(); err != nil {
		return err
	}
	if err := (backend.Handle{Type: backend.Packs, Name: as}).Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	from := b.Path(h)
	to := filepath.Join(filepath.Dir(from), putBackPrefix+as)
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("set aside %s: %w: %s", from, fs.ErrExist, to)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("set aside %s: %w", from, err)
	}
	b.forget(h)
	return syncDir(filepath.Dir(from))
}
