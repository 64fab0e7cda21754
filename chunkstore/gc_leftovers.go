package chunkstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// What interrupted write sessions left, collected.
//
// A backup or copy that stops (a full store, a lost connection, kill -9)
// keeps the packs it finished: they are in packs/, named in its source's
// journal (journal.go), and no index file covers them until the next
// session of that source adopts them. Garbage collection counts only
// indexed packs, so if that source is never backed up again (dropped
// because it did not fit) its packs would stay for good, and "nothing to
// collect" would be all a collection said about them.
//
// So a collection adopts them itself, as the next session would, for
// journals whose session is not running: it takes the source's lock
// (journal tags are source lock names, sessionTag) without waiting, and
// holds it while it indexes the packs, so no session of that source runs
// meanwhile or starts before they are indexed; a session that holds it
// is running and its journal is left alone. The exclusive lock's journal
// needs no lock: the collection holds the store lock shared, which no
// exclusive holder shares. Once indexed, the packs are like any others:
// deduplicated against, and hidden and deleted by the steps of gc.go when
// no point needs them, after every session that could have seen them has
// ended.
//
// Not at once, though: the next run of the source reuses them, which is
// the point of keeping them. A collection that first finds an entry of a
// journal whose session is not running records when (gc/leftovers), and
// adopts the journal once every entry in it was first found longer ago
// than the grace period (GCOptions.IndexGrace: the same hour superseded
// index files wait; none, at once). The record is JSON:
//
//	{"version": 1,
//	 "seen": {"<journal entry name>": "RFC 3339", ...}}
//
// A key is a journal entry's name, or "temp:<tag>/<file>" for a file in
// the temp area of session tag (a pack it was building): the temp area
// goes with the journal, after the same grace.
//
// Entries that are gone (adopted, by a session or a collection) leave it
// when it is next written; a version other than 1 is read as no record
// (the grace starts again: later, never sooner).

// gcLeftoversName is the name of the record of journal entries found.
const gcLeftoversName = "leftovers"

type gcLeftovers struct {
	Version int                  `json:"version"`
	Seen    map[string]time.Time `json:"seen"`
}

func encodeLeftovers(r *gcLeftovers) []byte {
	b, _ := json.MarshalIndent(r, "", " ")
	return append(b, '\n')
}

func (s *Store) loadLeftovers(g *gcRun) map[string]time.Time {
	b, err := s.be.Load(g.ctx, gcHandle(gcLeftoversName), 0, -1, nil)
	var r gcLeftovers
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil || r.Version != 1 || r.Seen == nil {
		if !errors.Is(err, backend.ErrNotExist) {
			g.log("record of interrupted writers' packs unreadable: found anew")
		}
		return map[string]time.Time{}
	}
	return r.Seen
}

// tempSeenName is the name under which the record keeps when a temp file
// of session tag was first found: no journal entry has such a name.
func tempSeenName(tag, name string) string { return "temp:" + tag + "/" + name }

// adoptSession adopts what a stopped write session left, as its next run
// would: the finished packs in its temp area first (journal_temp.go),
// then its journal; and then removes its temp area, whose files temp
// lists with their sizes (none: it has no temp area; only sessions of a
// source have one). The caller holds the session's lock, so the area is
// as listed. It returns how many packs it indexed.
func (g *gcRun) adoptSession(tag string, temp map[string]int64) (int, error) {
	s := g.s
	if err := s.Refresh(); err != nil {
		return 0, err
	}
	var n int
	var copied int64 // finished temp packs copied into packs/, counted when collected
	if len(temp) > 0 {
		var err error
		if n, copied, err = s.adoptTemp(g.ctx, tag, tag); err != nil {
			return n, err
		}
	}
	m, _, err := s.adoptJournal(tag, false)
	n += m
	if err != nil {
		return n, err
	}
	tc, ok := s.be.(backend.TempCleaner)
	if !ok || len(temp) == 0 {
		return n, nil
	}
	if err := tc.CleanTemp(g.ctx, tag); err != nil {
		return n, fmt.Errorf("remove the temp files of %s in store %s: %w", tag, s.Dir(), err)
	}
	g.rep.TempRemoved += sizeSum(temp) - copied
	return n, nil
}

func sizeSum(files map[string]int64) (n int64) {
	for _, size := range files {
		n += size
	}
	return n
}

// adoptLeftovers adopts the journals of write sessions that are not
// running once their grace has passed (see above), and reports the packs
// it keeps for now. A dry run adopts nothing and records nothing: it
// counts the packs it would adopt (PacksAdopted) and keep, and on a
// file system that takes no lock (read-only: nothing runs there) counts
// every session as stopped.
func (g *gcRun) adoptLeftovers() error {
	dry := g.o.DryRun
	s := g.s
	byTag, err := s.journalList("")
	if err != nil {
		return err
	}
	// A session's temp area (packs it was building, and finished ones
	// it had not committed) goes with its journal, and makes a
	// stopped session by itself too: one stopped before it finished a
	// pack has only that.
	temps := map[string]map[string]int64{} // tag -> temp file -> size
	if tr, ok := s.be.(backend.TempReader); ok {
		err := tr.ListTemp(g.ctx, "", backend.Packs, func(tag, name string, size int64) error {
			if strings.HasPrefix(tag, sourceLockPrefix) {
				if temps[tag] == nil {
					temps[tag] = map[string]int64{}
				}
				temps[tag][name] = size
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list what interrupted writers left in store %s: %w", s.Dir(), err)
		}
	}
	seen := s.loadLeftovers(g)
	now := time.Now().UTC()
	next := map[string]time.Time{}
	tags := slices.Sorted(maps.Keys(byTag))
	for tag := range temps {
		if _, ok := byTag[tag]; !ok {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	for _, tag := range tags {
		if tag == gcTempTag || tag != journalExclusive && !strings.HasPrefix(tag, sourceLockPrefix) {
			continue // the collection's own (adopted already), or not a session's
		}
		ids := byTag[tag]
		temp := temps[tag]
		var unlock func()
		if tag != journalExclusive {
			info := s.lockInfo("garbage collection: adopting the packs an interrupted write session left", "exclusive", "")
			u, err := s.be.Lock(g.ctx, tag, backend.Exclusive, info)
			switch {
			case errors.Is(err, backend.ErrLocked):
				g.keepJournaled(ids) // its session runs: its journal is its own
				continue
			case dry && readOnlyFS(err):
				unlock = func() {}
			case err != nil:
				return fmt.Errorf("lock %s of store %s: %w", tag, s.Dir(), err)
			default:
				unlock = func() { u.Unlock() }
			}
		}
		ripe, from := true, time.Time{}
		found := func(name string) {
			at, ok := seen[name]
			if !ok || at.After(now) {
				at = now
			}
			next[name] = at
			if g.o.IndexGrace > 0 && now.Sub(at) < g.o.IndexGrace {
				ripe = false
				from = later(from, at.Add(g.o.IndexGrace))
			}
		}
		for _, id := range ids {
			found(journalName(tag, id))
		}
		for name := range temp {
			found(tempSeenName(tag, name))
		}
		tempBytes := sizeSum(temp)
		if !ripe {
			g.keepJournaled(ids)
			if unlock != nil {
				unlock()
			}
			for _, id := range ids {
				if size, err := s.be.Stat(g.ctx, packHandle(id)); err == nil {
					g.rep.LeftoverPacks++
					g.rep.LeftoverBytes += size
				}
			}
			g.rep.LeftoverBytes += tempBytes
			g.rep.LeftoverUntil = later(g.rep.LeftoverUntil, from)
			continue
		}
		if dry {
			if unlock != nil {
				unlock()
			}
			g.rep.PacksAdopted += len(ids)
			g.rep.TempRemoved += tempBytes
			continue
		}
		n, err := g.adoptSession(tag, temp)
		if unlock != nil {
			unlock()
		}
		if err != nil {
			return err
		}
		g.rep.PacksAdopted += n
		for _, id := range ids {
			delete(next, journalName(tag, id))
		}
		for name := range temp {
			delete(next, tempSeenName(tag, name))
		}
	}
	if g.rep.PacksAdopted > 0 {
		g.log("indexed %d packs interrupted write sessions left: collected like any others", g.rep.PacksAdopted)
	}
	if g.rep.LeftoverPacks > 0 {
		g.log("kept %d packs interrupted write sessions left, for their next run, until %s", g.rep.LeftoverPacks, g.rep.LeftoverUntil.Format(time.RFC3339))
	}
	if dry || maps.EqualFunc(seen, next, time.Time.Equal) {
		return nil
	}
	// The record only delays: one not written (a full store, which is
	// when a collection matters most) starts the grace again later, and
	// is no reason to collect nothing else.
	if len(next) == 0 {
		if err := s.be.Remove(g.ctx, gcHandle(gcLeftoversName)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			g.log("remove garbage collection record %s: %v", gcLeftoversName, err)
		}
		return nil
	}
	if err := s.be.Save(g.ctx, gcHandle(gcLeftoversName), encodeLeftovers(&gcLeftovers{Version: 1, Seen: next})); err != nil {
		g.log("save garbage collection record %s: %v (the grace of the packs kept starts again at the next gc)", gcLeftoversName, err)
	}
	return nil
}

// keepJournaled keeps the packs ids, named in a journal that stays, out
// of this collection's candidates: a session adopting them keeps their
// entries until it commits a point (adoptJournal), so they may be indexed
// already.
func (g *gcRun) keepJournaled(ids []ID) {
	if g.journaled == nil {
		g.journaled = map[ID]bool{}
	}
	for _, id := range ids {
		g.journaled[id] = true
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
