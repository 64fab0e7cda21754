package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Pack files outside their folder.
//
// A local store reads pack <id> from packs/<first two characters of
// id>/<id>. A pack file moved elsewhere under packs/ (by hand, or by a
// copy tool that flattened or re-sorted the folders) is not read from
// there, so it is not listed as present either (backend.PackPlacer):
// verify calls its pack missing and says where the file is, and repair
// puts it back before it judges any pack missing. Putting a file back
// never replaces one: a second file of a pack's name, beside one in its
// place, is left where it is and named for a person to compare and
// remove.

// MisplacedPack is a pack file outside the folder it is read from.
type MisplacedPack struct {
	ID   ID
	Path string // where it lies
	Home string // where it is read from
	// Moved: PutBackPacks moved it home. Otherwise Why says why it stays
	// ("" in a dry run or a listing).
	Moved bool
	Why   string
}

// listMisplaced finds the pack files outside their folder, by id (a name
// that is not a pack id is no pack, misplaced or not).
func (s *Store) listMisplaced() (map[ID]string, error) {
	pp, ok := s.be.(backend.PackPlacer)
	if !ok {
		return nil, nil
	}
	out := map[ID]string{}
	err := pp.Misplaced(bg, func(name, path string) error {
		if id, err := ParseID(name); err == nil {
			if _, dup := out[id]; !dup {
				out[id] = path
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look for pack files outside their folder: %w", err)
	}
	return out, nil
}

// packHome is where a local store reads the pack from (for messages).
func (s *Store) packHome(id ID) string {
	h := id.String()
	return filepath.Join(s.Dir(), "packs", h[:2], h)
}

// MisplacedPacks lists the pack files outside their folder that the last
// pack walk found (Packs, Refresh walk), sorted by id.
func (s *Store) MisplacedPacks() []MisplacedPack {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	out := make([]MisplacedPack, 0, len(s.misplaced))
	for id, p := range s.misplaced {
		out = append(out, MisplacedPack{ID: id, Path: p, Home: s.packHome(id)})
	}
	slices.SortFunc(out, func(a, b MisplacedPack) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// PutBackPacks moves every pack file outside its folder back into it,
// where no file of its name is; with dryRun it moves nothing and lists
// them. It needs the store exclusively.
func (l *Lock) PutBackPacks(dryRun bool) ([]MisplacedPack, error) {
	if err := l.needExclusive("putting pack files back in their folders"); err != nil {
		return nil, err
	}
	s := l.s
	pp, ok := s.be.(backend.PackPlacer)
	if !ok {
		return nil, nil
	}
	found, err := s.listMisplaced()
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, nil
	}
	s.fmu.Lock()
	s.misplaced = found
	s.fmu.Unlock()
	out := s.MisplacedPacks()
	if dryRun {
		return out, nil
	}
	for i := range out {
		m := &out[i]
		err := pp.PutBack(bg, m.ID.String(), m.Path)
		switch {
		case err == nil:
			m.Moved = true
		case errors.Is(err, fs.ErrExist):
			m.Why = "a file of its name is in its place already: compare the two and remove one by hand"
		default:
			m.Why = fmt.Sprintf("%v: move it there by hand", err)
		}
	}
	s.fmu.Lock()
	s.walkWanted = true
	for _, m := range out {
		if m.Moved {
			delete(s.misplaced, m.ID)
		}
	}
	s.fmu.Unlock()
	return out, nil
}
