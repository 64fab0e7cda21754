package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Pack files under another pack's name.
//
// A pack is named by the hash of its header and trailer. A file in pack
// N's place that holds another pack T whole (its header decodes and is
// the one T is the hash of) is T moved or copied over the wrong name by
// hand; two packs swapped hold each other's. Salvaging such a file as the
// damaged pack N would read N's blob places in T's bytes, find nothing,
// and delete a whole pack. Repair sets it aside instead, as a misplaced
// file of T (backend.PackRenamer: local, .putback-T in its folder), and
// PutBackPacks then moves it to T's place where that is free; where T's
// place holds a file already, the set-aside file stays, named, for a
// person to compare. Each step leaves the file where a later repair
// finds it again, so a crash between them loses nothing.

// MisnamedPack is a file in pack Name's place that holds pack Holds.
type MisnamedPack struct {
	Name, Holds ID
	// SetAside: SetAsideMisnamed moved it out of Name's place, to be put
	// in Holds'. Otherwise Why says why it stays ("" in a dry run).
	SetAside bool
	Why      string
}

// holdsPack returns the pack whose header and trailer ends b (the whole
// file of pack id) holds when that is a pack other than id, whole: its
// header decodes with this store's keys and places every blob inside b.
func (s *Store) holdsPack(id ID, b []byte) (ID, bool) {
	if len(b) < packTrailerLen {
		return ID{}, false
	}
	tr := b[len(b)-packTrailerLen:]
	hl, err := packHeaderLength(tr)
	if err != nil || hl > len(b)-packTrailerLen {
		return ID{}, false
	}
	hdr := b[len(b)-packTrailerLen-hl : len(b)-packTrailerLen]
	name := packName(slices.Concat(hdr, tr))
	if name == id {
		return ID{}, false
	}
	if _, err := decodePackHeader(hdr, s.keys, int64(len(b))); err != nil {
		return ID{}, false
	}
	return name, true
}

// misnamed returns the pack files present whose header is not the one
// their name says but another pack's, whole.
func (s *Store) misnamed() ([]MisnamedPack, error) {
	sizes := map[ID]int64{}
	if err := s.ListPacks(func(id ID, size int64) error {
		sizes[id] = size
		return nil
	}); err != nil {
		return nil, err
	}
	holds := map[ID]ID{}
	for id, size := range sizes {
		_, err := s.readPackHeaderSized(id, size)
		if err == nil || !strings.Contains(err.Error(), errHeaderNotName) {
			continue // its own, or damage (salvage's), or unreadable
		}
		b, err := s.be.Load(bg, packHandle(id), 0, -1, nil)
		if err != nil {
			continue // the repair after names it
		}
		if t, ok := s.holdsPack(id, b); ok {
			holds[id] = t
		}
	}
	var out []MisnamedPack
	for id, t := range holds {
		// Set aside only what can go to its place: a free one, or one
		// that is itself set aside now (packs swapped). A copy of a
		// pack that is whole in its place is no more than that copy;
		// salvage takes it for the damaged pack of its name.
		if _, there := sizes[t]; there && holds[t].IsZero() {
			continue
		}
		out = append(out, MisnamedPack{Name: id, Holds: t})
	}
	slices.SortFunc(out, func(a, b MisnamedPack) int { return strings.Compare(a.Name.String(), b.Name.String()) })
	return out, nil
}

// packWhole says whether the file in pack id's place holds its own
// header.
func (s *Store) packWhole(id ID) bool {
	_, err := s.ReadPackHeader(id)
	return err == nil
}

// SetAsideMisnamed moves every pack file that holds another pack whole
// out of the place of the pack its name says, as a misplaced file of the
// pack it holds (see above); PutBackPacks, called next, puts each in its
// place. With dryRun it lists them and moves nothing. A backend that
// cannot set files aside (object stores) lists them with Why said. It
// needs the store exclusively.
func (l *Lock) SetAsideMisnamed(dryRun bool) ([]MisnamedPack, error) {
	if err := l.needExclusive("setting aside pack files under another pack's name"); err != nil {
		return nil, err
	}
	s := l.s
	out, err := s.misnamed()
	if err != nil || len(out) == 0 || dryRun {
		return out, err
	}
	pr, ok := s.be.(backend.PackRenamer)
	for i := range out {
		m := &out[i]
		if !ok {
			m.Why = "this store's backend cannot rename it: copy it to the name " + m.Holds.String() + " by hand, then run the repair again"
			continue
		}
		err := pr.SetAside(context.Background(), m.Name.String(), m.Holds.String())
		switch {
		case err == nil:
			m.SetAside = true
			s.fmu.Lock()
			if s.placed == nil {
				s.placed = map[ID]bool{}
			}
			s.placed[m.Name], s.placed[m.Holds] = true, true
			s.fmu.Unlock()
		case errors.Is(err, fs.ErrExist):
			m.Why = fmt.Sprintf("a file set aside as pack %s is there already: %v; compare the two and remove one by hand", m.Holds, err)
		default:
			m.Why = fmt.Sprintf("%v: move it by hand", err)
		}
	}
	s.fmu.Lock()
	s.walkWanted = true
	s.fmu.Unlock()
	return out, nil
}
