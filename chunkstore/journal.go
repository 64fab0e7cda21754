package chunkstore

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// The journal: which packs a write session made visible that no index file
// covers yet, so the next session of the same source finds what an
// interrupted one left by reading its journal, not by listing every pack.
// Garbage collection adopts the journal of a source whose session is not
// running once the source's next run has had its grace (gc_leftovers.go).
//
// An entry is an empty file of type backend.Journal named
//
//	<journal tag>.<pack id, 64 hex digits>
//
// where the journal tag is the session's temp tag ("source-" and 32 hex
// digits of the source's hash) or "exclusive" for writers of the
// exclusive lock. The name is all an entry says (version 1 of the
// format); a later version that needs to say more gives entries a body
// that starts with a magic, which version 1 entries, being empty, lack.
//
// One file per pack, not one record per session rewritten whole, because
// both of the record's changes are then single calls any backend has
// (Save, Remove), an object store with no append and no rename included,
// and their cost does not grow with the session: a record rewritten per
// pack would cost O(n^2) bytes over a session of n packs. The writer
// bounds the entries of a session to about indexEvery (it writes an index
// file every indexEvery packs), so listing the journal costs at most that
// per session running or interrupted, whatever the number of packs stored,
// plus the entries a session keeps of packs it adopted until it commits
// a point (adoptJournal): as many again per run of the source stopped in a
// row.
//
// Order, per pack (writer.go): header written to the temp file and the
// file synced; entry saved (durable); pack committed under packs/
// (durable); index file covering it saved (durable); entry removed. A
// crash between any two leaves one of: an entry whose pack is not there
// (its temp file, when whole and every blob verifies, is committed by the
// next session: journal_temp.go; else it is removed with the session's
// temp area) -> the entry is dropped; an entry
// whose pack is there but not indexed -> the pack is indexed from its
// header, then the entry dropped; an entry whose pack is indexed -> the
// entry is dropped. A pack is never visible without its entry, so the
// journal's adopter never misses one, and a pack is indexed from its own
// header, so a second index file of it holds the same places, which the
// index keeps once.

// journalExclusive is the journal tag of the exclusive lock's writers.
const journalExclusive = "exclusive"

// journalName is the name of the entry of pack in the journal of tag.
func journalName(tag string, pack ID) string { return tag + "." + pack.String() }

// parseJournalName splits an entry's name; ok is false for a name that is
// not an entry (left by something else: it is never touched).
func parseJournalName(name string) (tag string, pack ID, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", ID{}, false
	}
	id, err := ParseID(name[i+1:])
	if err != nil {
		return "", ID{}, false
	}
	return name[:i], id, true
}

func journalHandle(tag string, pack ID) backend.Handle {
	return backend.Handle{Type: backend.Journal, Name: journalName(tag, pack)}
}

// journalAdd durably records that pack, about to become visible, is not
// indexed yet.
func (s *Store) journalAdd(tag string, pack ID) error {
	if err := s.be.Save(bg, journalHandle(tag, pack), nil); err != nil {
		return fmt.Errorf("record pack %s in the journal: %w", pack, err)
	}
	return nil
}

// journalDrop removes the entries of packs an index file now covers. A
// removal that fails leaves an entry naming an indexed pack, which the
// next adoption drops: so failures are not errors. They run as many at
// once as packs upload (writer.go): on an object store each is a request
// or two, and one at a time they were a second of a 1 GiB backup's flush.
func (s *Store) journalDrop(tag string, packs []ID) {
	sem := make(chan struct{}, s.uploads())
	var wg sync.WaitGroup
	for _, id := range packs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.be.Remove(bg, journalHandle(tag, id))
			<-sem
		}()
	}
	wg.Wait()
}

// journalList returns the packs in the journal of tag, or with tag "" in
// every journal, by tag.
func (s *Store) journalList(tag string) (map[string][]ID, error) {
	out := map[string][]ID{}
	err := backend.ListNames(bg, s.be, backend.Journal, func(name string) error {
		t, id, ok := parseJournalName(name)
		if ok && (tag == "" || t == tag) {
			out[t] = append(out[t], id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the journal: %w", err)
	}
	return out, nil
}

// adoptJournal indexes the packs the journal of tag names that no index
// file covers (an interrupted session of the same source left them), in
// index files, then drops the entries: of those packs, of packs indexed
// already and of packs that are not there. With keep (a session of the
// source adopting them, to reuse them) the entries of the packs that are
// there stay, and are returned: the session drops them once it has
// committed a point (Lock.SavePoint), which refers to what of them it
// reused. Until then garbage collection counts the packs as an
// interrupted session's and keeps them for the source's next run, as
// before this session adopted them: a session that stops too leaves them
// to the next one, not to a collection that deletes them as unreferenced
// (568 MiB sent again after two backups killed in a row, in a try).
// The caller holds tag's lock,
// and has refreshed the index, so "covered" is as of now: a pack the
// index knows is covered unless this process finished it or found it
// without writing its index file (unindexedPack). A pack whose
// header cannot be read keeps its entry (the exclusive lock's pack walk
// reports it, and repair salvages it). It returns how many packs it
// indexed.
func (s *Store) adoptJournal(tag string, keep bool) (int, []ID, error) {
	byTag, err := s.journalList(tag)
	if err != nil {
		return 0, nil, err
	}
	var adopt []packRecord
	var drop, there []ID // there: packs present, indexed now or by this call
	for _, id := range byTag[tag] {
		if entries, ok := s.unindexedPack(id); ok {
			// Finished by an earlier session of this process that
			// ended without its index file.
			adopt = append(adopt, packRecord{id: id, entries: entries})
			continue
		}
		if s.idx.hasPack(id) {
			there = append(there, id)
			continue
		}
		entries, size, err := s.readPackHeader(id)
		switch {
		case errors.Is(err, backend.ErrNotExist):
			// Recorded, then the crash came before the pack was
			// committed (or a power cut undid its rename).
			drop = append(drop, id)
		case err != nil:
			fmt.Fprintf(os.Stderr, "recall: pack %s: %v (an interrupted backup left it unindexed; run 'recall repair packs')\n", id, err)
		default:
			s.idx.addPack(id, entries, size)
			adopt = append(adopt, packRecord{id: id, entries: entries})
		}
	}
	s.idx.compact()
	for rest := adopt; len(rest) > 0; {
		n := min(len(rest), indexEvery)
		if _, err := s.writeIndexFile(rest[:n]); err != nil {
			return 0, nil, storeWriteError(s.Dir(), err)
		}
		for _, p := range rest[:n] {
			there = append(there, p.id)
		}
		rest = rest[n:]
	}
	if keep {
		s.journalDrop(tag, drop)
		return len(adopt), there, nil
	}
	s.journalDrop(tag, append(drop, there...))
	return len(adopt), nil, nil
}

// dropJournals removes every journal entry: for the exclusive lock, whose
// pack walk has found and indexed every pack no index file covered, so the
// entries say nothing any more. No session is running to add one.
func (s *Store) dropJournals() error {
	byTag, err := s.journalList("")
	if err != nil {
		return err
	}
	for tag, ids := range byTag {
		s.journalDrop(tag, ids)
	}
	return nil
}

// unindexedPack returns the entries of a pack the index knows but no index
// file covers yet: finished by a writer of this process, or indexed from
// its header by a pack walk.
func (s *Store) unindexedPack(id ID) ([]PackEntry, bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	es, ok := s.unindexed[id]
	return es, ok
}

// markUnindexed records packs the index knows that no index file covers.
func (s *Store) markUnindexed(packs ...packRecord) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for _, p := range packs {
		s.unindexed[p.id] = p.entries
	}
}

// Pack sizes learned one at a time. What a write session once learned from
// its pack walk (which packs are missing or truncated) it now learns per
// pack, when it first deduplicates against one (Store.Has): the sizes
// below sit beside the walk's in the index, and are forgotten when a
// session begins, as the walk's were renewed per lock, so a pack removed
// or cut since is noticed by the next session of a long-lived process. A
// read that finds a pack missing records it too (learnGone), so a blob
// stored again elsewhere is read from there, by a reader that never
// walked the packs.

// sizeOf returns what the index knows of pack number n's size.
func (x *index) sizeOf(n uint32) int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.size[n]
}

// learnSize records the size of pack number n (sizeGone: missing) unless
// a pack walk recorded one meanwhile.
func (x *index) learnSize(n uint32, size int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.size[n] == sizeUnknown {
		x.size[n] = size
	}
}

// learnGone records that a read found pack number n missing (LoadBlob
// then tries the blob wherever the index places it next).
func (x *index) learnGone(n uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.size[n] = sizeGone
}

// setPackSize records the size of a pack a writer just committed, which
// the index may know from before as missing (the same blobs stored again
// make a pack of the same name).
func (x *index) setPackSize(id ID, size int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n, ok := x.packNum[id]; ok {
		x.size[n] = size
	}
}

// forgetPackSizes makes every pack's size unknown again: a loop over the
// packs in memory (a few milliseconds for 10^6 packs), no call to the
// backend.
func (x *index) forgetPackSizes() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for n := range x.size {
		x.size[n] = sizeUnknown
	}
}
