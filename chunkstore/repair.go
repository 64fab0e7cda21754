package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Repair: rebuilding index files from pack headers, and salvaging the
// readable blobs of damaged packs into new ones. Both run under the writer
// lock and change the store in two phases, new files durable before old
// ones are removed, so a crash at any moment leaves a consistent store.

// IndexRebuild is what RebuildIndex changed, or would change.
type IndexRebuild struct {
	// Written lists the index files written, each with the packs it covers.
	Written []IndexFileInfo
	// Removed maps each superseded index file to why it was replaced.
	Removed map[string]string
	// Unlocatable lists packs whose header is unreadable and that no
	// readable index file lists: none of their blobs can be found.
	Unlocatable []ID
	// BadHeaders maps each pack whose header is unreadable, or is not the
	// header its name is the hash of, but that an index file locates, to
	// why: its blobs are indexed from that file, and it needs salvaging
	// (SalvagePacks) all the same.
	BadHeaders map[ID]string
	// DamageDropped counts damage record entries of packs that are gone.
	DamageDropped int
	// StoreDir is the store's location, DamageDir where its damage
	// records are: for messages that name a file.
	StoreDir, DamageDir string
	// DamageUnreadable maps each damage record file that cannot be read
	// to why; it is removed. Whatever it recorded is forgotten: those
	// blobs count as good, for reads and for deduplication, until a
	// read or 'recall verify --read-data' finds them bad again.
	DamageUnreadable map[string]string
	// DamageReplaced lists the damage record files rewritten, without
	// the dropped entries, into DamageWritten ("" when no entry remains
	// or in a dry run).
	DamageReplaced []string
	DamageWritten  string
	// Foreign lists the files under a pack's name that are empty: recall
	// renames a pack into place only once it is whole, so such a file is
	// not a pack it wrote and holds no blob any point could need. They
	// are left alone (no command removes what it did not write), and are
	// not in Unlocatable.
	Foreign []ID
	// Lost lists the blobs those entries name that no pack present holds
	// a good copy of: a salvage removed their pack and was stopped
	// before it reported them (SalvagePacks records every blob it loses
	// before it removes a pack), or the pack was lost. The record of
	// them goes with this rebuild, so they are reported once, as the
	// salvage would have.
	Lost []DamagedBlob
	// Unreadable maps each pack that could not be read for a reason other
	// than its bytes (permissions, an I/O error of the disk under it) to
	// the message that says so and what to do. It is left as it is, and
	// the index files that list it are kept: nothing is known about it
	// that was not known before.
	Unreadable map[ID]string
}

// IndexFileInfo names one index file and the packs it covers.
type IndexFileInfo struct {
	Name  string
	Packs int
}

type indexFile struct {
	name  string
	packs []packRecord
	err   error
	// consolidated: a version 2 file, in which a pack listed with no
	// place is hidden by garbage collection (gc.go), not empty.
	consolidated bool
	supersedes   []ID // a consolidated file's: the files it replaces
}

// readIndexFiles reads and decodes every index file; the ones that do not
// decode carry their error.
func (s *Store) readIndexFiles() ([]indexFile, error) {
	var names []string
	err := backend.ListNames(bg, s.be, backend.Index, func(name string) error {
		// Only names recall writes (an index file is named by its
		// hash): a note an administrator left there is not an index
		// file to supersede.
		if _, err := ParseID(name); err == nil {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index: %w", err)
	}
	var out []indexFile
	for _, name := range names {
		f := indexFile{name: name}
		b, err := s.be.Load(bg, backend.Handle{Type: backend.Index, Name: name}, 0, -1, nil)
		if errors.Is(err, backend.ErrNotExist) {
			continue // superseded meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read index file %s: %w", f.name, err)
		}
		if f.consolidated = isIndex2(b); f.consolidated {
			f.packs, f.supersedes, f.err = decodeIndex2(b, s.keys)
		} else {
			f.packs, f.err = decodeIndexFile(b, s.keys)
		}
		out = append(out, f)
	}
	return out, nil
}

func sortedEntries(es []PackEntry) []PackEntry {
	es = slices.Clone(es)
	slices.SortFunc(es, func(a, b PackEntry) int {
		if a.Offset != b.Offset {
			return int(a.Offset) - int(b.Offset)
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	return es
}

// RebuildIndex makes the index files cover exactly the packs present, as
// their headers describe them. An index file is kept when it decodes,
// every pack it lists is present, and it agrees with every readable header
// of those packs; the others are superseded. A pack a consolidated file
// lists with no place is not in disagreement: garbage collection hid it
// there (gc.go), and a pending plan deletes it, or a collection indexes
// it again, once the write sessions that could have seen it have ended;
// the file keeps it hidden (no index file is written for it, which would
// make it usable again) or, when the pack is gone, records that it went.
// Packs no kept file covers are
// written into new index files: from their header, or, when the header is
// unreadable, from the entries a superseded but readable index file gives.
// The new files are durable before any old one is removed; a crash between
// leaves both, which is harmless (index files are caches). Damage record
// entries of packs that are gone are dropped. A pack that cannot be read
// for a reason other than its bytes (Unreadable) stops nothing: the index
// files that list it are kept, and no file is written for it. With dryRun
// nothing is changed and the result says what would be.
func (l *Lock) RebuildIndex(dryRun bool) (*IndexRebuild, error) {
	if err := l.needExclusive("rebuilding the index"); err != nil {
		return nil, err
	}
	return l.rebuildIndex(dryRun, nil, nil)
}

// rebuildIndex is RebuildIndex; the damage record entries of the packs in
// rewritten are dropped too (a salvaged pack whose every blob survived is
// written again under its own name: the same header names the same pack).
// The packs in gone are taken as removed (a dry run of SalvagePacks).
func (l *Lock) rebuildIndex(dryRun bool, rewritten, gone map[ID]bool) (*IndexRebuild, error) {
	s := l.s
	sizes := map[ID]int64{}
	if err := s.ListPacks(func(id ID, size int64) error {
		if !gone[id] {
			sizes[id] = size
		}
		return nil
	}); err != nil {
		return nil, err
	}
	headers := map[ID][]PackEntry{}
	badHeader := map[ID]bool{}
	badWhy := map[ID]string{}
	unreadable := map[ID]string{}
	for id, size := range sizes {
		// readPackHeaderSized checks the header against the pack's
		// name: a file holding another pack's bytes has a bad header
		// here, so its entries come from the index files (fromIndex)
		// and the file that lists its own blobs is kept.
		es, err := s.readPackHeaderSized(id, size)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				// One pack the disk fails to read stops no repair of
				// the others.
				unreadable[id] = packUnreadable("read header of", id, err).Error()
				continue
			}
			badHeader[id] = true
			badWhy[id] = err.Error()
			continue
		}
		headers[id] = es
	}
	files, err := s.readIndexFiles()
	if err != nil {
		return nil, err
	}
	res := &IndexRebuild{Removed: map[string]string{}, BadHeaders: map[ID]string{}, Unreadable: unreadable}
	// Packs missing because their place holds a directory or a dead link
	// (notPackFile): their index files stay, so nothing forgets what the
	// packs hold before the file is put back.
	blocked := map[ID]string{}
	for _, f := range files {
		for _, p := range f.packs {
			if _, ok := sizes[p.id]; ok || blocked[p.id] != "" {
				continue
			}
			if why := notPackFile(s, p.id); why != "" {
				blocked[p.id] = why
				// Not read, as a pack the disk fails to read: the repair
				// is not done until the file is back.
				unreadable[p.id] = fmt.Sprintf("pack %s: %s; its index entries are kept until it is there, then run the repair again", p.id, why)
			}
		}
	}
	// Packs a consolidated file lists with no place: hidden by garbage
	// collection, which deletes them.
	hidden := map[ID]bool{}
	for _, f := range files {
		for _, p := range f.packs {
			if f.consolidated && len(p.entries) == 0 {
				hidden[p.id] = true
			}
		}
	}
	missing := map[ID]bool{} // packs removed files list that are not there
	covered := map[ID]bool{}
	fromIndex := map[ID][]PackEntry{} // entries of bad-header packs from readable files
	kept := map[ID][]PackEntry{}      // entries of packs from the files kept
	for _, f := range files {
		why := ""
		if f.err != nil {
			why = f.err.Error()
		}
		for _, p := range f.packs {
			if f.consolidated && len(p.entries) == 0 {
				continue // hidden by garbage collection, or deleted by it
			}
			if _, ok := sizes[p.id]; !ok {
				missing[p.id] = true
			}
			if _, ok := fromIndex[p.id]; !ok && badHeader[p.id] {
				fromIndex[p.id] = p.entries
			}
			switch h, ok := headers[p.id]; {
			case why != "":
			case !ok && !badHeader[p.id] && (blocked[p.id] != "" || unreadable[p.id] != ""):
				// The file is kept: the pack is there to put back (or
				// to read once the disk or its mode lets recall), and
				// its entries say what it holds until it is.
			case !ok && !badHeader[p.id]:
				why = "lists pack " + p.id.String() + ", which is missing"
			case ok && !slices.Equal(sortedEntries(h), sortedEntries(p.entries)):
				why = "disagrees with the header of pack " + p.id.String()
			}
		}
		if why != "" {
			res.Removed[f.name] = why
			continue
		}
		for _, p := range f.packs {
			covered[p.id] = true
			if _, ok := kept[p.id]; !ok && len(p.entries) > 0 {
				kept[p.id] = p.entries
			}
		}
	}
	var todo []packRecord
	for id := range sizes {
		if _, ok := fromIndex[id]; badHeader[id] && (ok || covered[id]) {
			res.BadHeaders[id] = badWhy[id]
		}
		if covered[id] || unreadable[id] != "" {
			continue
		}
		if es, ok := headers[id]; ok {
			todo = append(todo, packRecord{id: id, entries: es})
		} else if es, ok := fromIndex[id]; ok {
			todo = append(todo, packRecord{id: id, entries: es})
		} else if sizes[id] == 0 {
			res.Foreign = append(res.Foreign, id)
		} else {
			res.Unlocatable = append(res.Unlocatable, id)
		}
	}
	slices.SortFunc(todo, func(a, b packRecord) int { return bytes.Compare(a.id[:], b.id[:]) })
	slices.SortFunc(res.Unlocatable, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	slices.SortFunc(res.Foreign, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	for rest := todo; len(rest) > 0; {
		n := min(len(rest), indexEvery)
		name := ""
		if !dryRun {
			if name, err = s.writeIndexFile(rest[:n]); err != nil {
				return nil, storeWriteError(s.Dir(), err)
			}
		}
		res.Written = append(res.Written, IndexFileInfo{Name: name, Packs: n})
		rest = rest[n:]
	}
	if !dryRun {
		// A consolidated file removed as wrong may be the index's base,
		// read in place: its packs' places come again from the files
		// kept and the ones just written (the files it superseded were
		// skipped when loading, so their places are not in memory).
		var dropped map[ID]bool
		if base := s.idx.baseName(); base != "" {
			if _, ok := res.Removed[base]; ok {
				dropped = s.idx.dropBase()
			}
		}
		for id, es := range kept {
			if dropped[id] {
				s.idx.addPlaces(id, es)
			}
		}
		for _, p := range todo {
			if dropped[p.id] {
				s.idx.addPlaces(p.id, p.entries)
			} else {
				s.idx.addPack(p.id, p.entries, sizes[p.id])
			}
		}
		s.idx.compact()
		for _, w := range res.Written {
			// An index file written again whole gets its old name back,
			// and has just replaced the damaged file of that name.
			if _, ok := res.Removed[w.Name]; ok {
				res.Removed[w.Name] = "replaced by a whole copy: " + res.Removed[w.Name]
			}
		}
		written := map[string]bool{}
		for _, w := range res.Written {
			written[w.Name] = true
		}
		for name := range res.Removed {
			if written[name] {
				continue
			}
			if err := s.be.Remove(bg, backend.Handle{Type: backend.Index, Name: name}); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return nil, fmt.Errorf("remove superseded index file %s: %w", name, err)
			}
		}
		s.fmu.Lock()
		for name := range res.Removed {
			if !written[name] {
				delete(s.loadedI, name)
			}
			delete(s.idxProblems, name)
		}
		s.orphans = nil // all covered now
		clear(s.unindexed)
		// The index is now without them: a consolidation must not
		// write their places back (from memory) into a file the next
		// rebuild would remove again.
		maps.Copy(s.missingPacks, missing)
		s.fmu.Unlock()
		s.idx.setSizes(sizes)
	}
	// Packs a repair put in their place from under another's name
	// (SetAsideMisnamed): what reads recorded damaged in them then was
	// the other pack's bytes, not theirs. Once whole they are as good as
	// rewritten.
	s.fmu.Lock()
	for id := range s.placed {
		if _, ok := headers[id]; ok {
			if rewritten == nil {
				rewritten = map[ID]bool{}
			}
			rewritten[id] = true
		}
	}
	if !dryRun {
		s.placed = nil // once: damage found in them later is theirs
	}
	s.fmu.Unlock()
	keep := sizes
	if len(rewritten) > 0 {
		keep = maps.Clone(sizes)
		for id := range rewritten {
			delete(keep, id)
		}
	}
	pr, err := s.pruneDamage(keep, dryRun)
	if err != nil {
		return nil, err
	}
	res.DamageDropped, res.DamageUnreadable, res.DamageReplaced, res.DamageWritten = pr.dropped, pr.unreadable, pr.replaced, pr.written
	res.StoreDir, res.DamageDir = s.Dir(), s.damageDir()
	reported := map[blobAt]bool{}
	for _, d := range pr.gone {
		if !s.idx.goodPlace(d.Blob, sizes, rewritten) {
			d.Reason = "its pack is gone, and no other holds a good copy (it was recorded damaged there: " + d.Reason + ")"
			res.Lost = append(res.Lost, d)
			reported[blobAt{d.Blob, d.Pack}] = true
		}
	}
	// The blobs of a pack file that went missing (deleted, lost with a
	// disk) that no pack present holds: the index files that list them
	// are removed above, so this rebuild is the last to know them, and
	// says so, as a salvage does for what it loses. A pack garbage
	// collection deleted is hidden by a consolidated file first (its
	// blobs were garbage or are stored again elsewhere), and one a dry
	// run of a salvage takes as removed is not missing.
	superseded := map[string]bool{}
	for _, f := range files {
		for _, id := range f.supersedes {
			superseded[id.String()] = true
		}
	}
	for _, f := range files {
		if f.err != nil || superseded[f.name] {
			continue // a file superseded lists what gc may have deleted since
		}
		for _, p := range f.packs {
			if _, ok := sizes[p.id]; ok || hidden[p.id] || blocked[p.id] != "" || gone[p.id] {
				continue
			}
			for _, e := range p.entries {
				if reported[blobAt{e.ID, p.id}] || s.idx.goodPlace(e.ID, sizes, rewritten) {
					continue
				}
				reported[blobAt{e.ID, p.id}] = true
				res.Lost = append(res.Lost, DamagedBlob{Blob: e.ID, Pack: p.id, Reason: "its pack file is missing, and no other pack holds it"})
			}
		}
	}
	return res, nil
}

// PackProblem names a pack that needs salvaging, and why; or, when
// Unreadable, a pack that could not be read to tell (Reason is the
// message of packUnreadable), which no repair touches.
type PackProblem struct {
	Pack       ID
	Reason     string
	Unreadable bool
}

// packUnreadable is the error of a repair that met pack id it could not
// read for a reason other than its bytes (what it was reading, err): the
// pack is left as it is (the repair goes on with the others), for what a
// repair does to a damaged pack (rewrite what it can read, delete it) is
// no cure for a disk that fails to read it or a file recall may not
// read. The step to take follows the cause.
func packUnreadable(what string, id ID, err error) error {
	next := "run the repair again once it can be read"
	switch {
	case errors.Is(err, fs.ErrPermission):
		next = "let recall read it (its owner and mode), then run the repair again"
	case IOError(err):
		next = "check the disk or file system that holds it (the kernel log names the device), then run the repair again"
	}
	return fmt.Errorf("%s pack %s: %w: the pack is left as it is, not repaired (this is not damage of its bytes); %s", what, id, err, next)
}

// DamagedPacks lists the packs that need salvaging: those whose header is
// unreadable, whose size is not what the index implies (truncated), or
// that hold blobs recorded damaged. It reads every pack's header, not the
// blobs: blobs that fail their check are known from the damage record,
// which verify --read-data and every read fill.
func (s *Store) DamagedPacks() ([]PackProblem, error) {
	var out []PackProblem
	for _, pi := range s.Packs() {
		if pi.Size == -1 && strings.HasPrefix(pi.Problem, "pack file is missing") {
			continue // nothing to salvage; RebuildIndex forgets it
		}
		if pi.Problem != "" {
			out = append(out, PackProblem{Pack: pi.ID, Reason: pi.Problem})
			continue
		}
		if _, err := s.ReadPackHeader(pi.ID); err != nil {
			if errors.Is(err, backend.ErrNotExist) {
				continue
			}
			if !errors.Is(err, ErrCorrupt) {
				out = append(out, PackProblem{Pack: pi.ID, Reason: packUnreadable("read header of", pi.ID, err).Error(), Unreadable: true})
				continue
			}
			out = append(out, PackProblem{Pack: pi.ID, Reason: "header unreadable: " + err.Error()})
		}
	}
	return out, nil
}

// Salvage is what SalvagePacks did (or would do) with one pack.
type Salvage struct {
	Pack   ID
	Reason string // why the pack was salvaged
	// Kept counts blobs copied into new packs; Elsewhere those that
	// already have a good copy in another pack.
	Kept, Elsewhere int
	Lost            []DamagedBlob // blobs no pack holds a good copy of any more
	Removed         bool
	// Rewritten: every blob survived in order, so the new pack has the
	// old one's name and replaced it.
	Rewritten bool
	// Unknown: nothing says what the file holds (its header is
	// unreadable and no index file lists it), so it was left in place.
	// It may be a pack whose only description was damaged with it, a
	// file of another store, or not recall's at all: removing it could
	// lose blobs that a later repair, or a person, could still read.
	Unknown bool
	// Unreadable: the pack could not be read for a reason other than
	// its bytes (Reason says which, and what to do); it is left as it
	// is, and the other packs are salvaged.
	Unreadable bool
	// Holds: the file holds this other pack whole, and is its only copy
	// (SetAsideMisnamed could not move it to its place); it is left as
	// it is.
	Holds ID
}

// salvageEntries returns every place the pack's header or the index files
// give for pack id (the header may be unreadable, the pack truncated).
func (s *Store) salvageEntries(id ID, files []indexFile) []PackEntry {
	var es []PackEntry
	if h, err := s.ReadPackHeader(id); err == nil {
		es = append(es, h...)
	}
	for _, f := range files {
		for _, p := range f.packs {
			if p.id == id {
				es = append(es, p.entries...)
			}
		}
	}
	es = sortedEntries(es)
	return slices.Compact(es)
}

// SalvagePacks reads every blob the header or the index files locate in
// each of packs, writes those that check out into new packs through an
// ordinary writer, and removes the old packs, then rebuilds the index
// (RebuildIndex) so nothing lists them. Blobs that fail their check and
// have no good copy elsewhere are lost and listed.
//
// The order makes a crash at any moment harmless:
//  1. the packs being replaced are retired in memory, so the writer
//     stores their good blobs again instead of deduplicating against them;
//  2. the writer's Flush makes the new packs and their index file
//     durable: from here every salvaged blob has a second, good place;
//     then every blob lost is recorded damaged at its old place, so a
//     crash after the next step still leaves the loss to report (the
//     next rebuild's IndexRebuild.Lost);
//  3. the old packs are removed (directory synced): a crash before this
//     leaves both copies, and a later repair finds the old pack damaged
//     again and removes it, its blobs deduplicating against the new ones;
//  4. the index is rebuilt: a crash before this leaves index files naming
//     removed packs, which readers skip (a missing pack is known from the
//     pack walk) and the next RebuildIndex supersedes.
//
// A pack that cannot be read for a reason other than its bytes (its
// mode, the disk under it) is left as it is and marked Unreadable; the
// others are salvaged all the same.
//
// With dryRun every pack is read and the result says what would happen,
// but nothing is written or removed.
func (l *Lock) SalvagePacks(packs []PackProblem, dryRun bool) ([]Salvage, *IndexRebuild, error) {
	if err := l.needExclusive("salvaging packs"); err != nil {
		return nil, nil, err
	}
	s := l.s
	files, err := s.readIndexFiles()
	if err != nil {
		return nil, nil, err
	}
	ids := make([]ID, len(packs))
	for i, p := range packs {
		ids[i] = p.Pack
	}
	s.idx.retire(ids, false)
	defer s.idx.retire(ids, true)
	var w *Writer
	if !dryRun {
		if w, err = l.NewWriter(); err != nil {
			return nil, nil, err
		}
		defer w.Abort()
	}
	out := make([]Salvage, 0, len(packs))
	var remove []ID
	for _, p := range packs {
		sv := Salvage{Pack: p.Pack, Reason: p.Reason, Unreadable: p.Unreadable}
		if p.Unreadable {
			out = append(out, sv)
			continue
		}
		b, err := s.be.Load(bg, packHandle(p.Pack), 0, -1, nil)
		if err != nil && !errors.Is(err, backend.ErrNotExist) {
			// Not its bytes (a pack cut short reads short, without an
			// error): a pack the disk under it fails to read would be
			// judged all lost, and deleted, here. It is left as it
			// is; the others are salvaged.
			sv.Reason, sv.Unreadable = packUnreadable("read", p.Pack, err).Error(), true
			out = append(out, sv)
			continue
		}
		if t, ok := s.holdsPack(p.Pack, b); ok && !s.packWhole(t) {
			// Another pack, whole, under this one's name, and the only
			// copy of it: salvaging it would find none of this pack's
			// blobs and delete it.
			sv.Holds = t
			out = append(out, sv)
			continue
		}
		entries := s.salvageEntries(p.Pack, files)
		if len(entries) == 0 && err == nil {
			sv.Unknown = true
			out = append(out, sv)
			continue
		}
		var buf []byte
		for _, e := range entries {
			lost := func(why string) {
				if s.Has(e.ID) {
					sv.Elsewhere++
				} else {
					sv.Lost = append(sv.Lost, DamagedBlob{Blob: e.ID, Pack: p.Pack, Reason: why})
				}
			}
			if int64(e.Offset)+int64(e.Length) > int64(len(b)) {
				lost("beyond the end of the pack")
				continue
			}
			data, err := s.checkStored(e, b[e.Offset:e.Offset+e.Length], buf)
			if err != nil {
				lost(err.Error())
				continue
			}
			buf = data
			switch {
			case s.Has(e.ID):
				sv.Elsewhere++
			case dryRun:
				sv.Kept++
			default:
				if _, err := w.SaveBlob(e.Type, e.ID, data); err != nil {
					return nil, nil, fmt.Errorf("salvage pack %s: %w (nothing was removed)", p.Pack, err)
				}
				sv.Kept++
			}
		}
		remove = append(remove, p.Pack)
		sv.Removed = true
		out = append(out, sv)
	}
	if dryRun {
		gone := map[ID]bool{}
		for _, id := range remove {
			gone[id] = true
		}
		rb, err := l.rebuildIndex(true, nil, gone)
		return out, rb, err
	}
	if err := w.Flush(); err != nil {
		return nil, nil, fmt.Errorf("salvage: %w (nothing was removed)", err)
	}
	// What is lost is recorded before any pack goes: a salvage stopped
	// after the removal leaves the record, from which the next rebuild
	// reports the loss (IndexRebuild.Lost) instead of finding nothing.
	var lost []DamagedBlob
	for _, sv := range out {
		lost = append(lost, sv.Lost...)
	}
	if err := s.saveDamage(lost); err != nil {
		return nil, nil, fmt.Errorf("salvage: record the blobs lost: %w (nothing was removed)", storeWriteError(s.Dir(), err))
	}
	w.mu.Lock()
	rewritten := map[ID]bool{}
	for _, id := range w.written {
		rewritten[id] = true
	}
	w.mu.Unlock()
	for _, id := range remove {
		if rewritten[id] {
			// Every blob survived, in the same order: the new pack is
			// the old one made whole, renamed over it.
			continue
		}
		if err := s.be.Remove(bg, packHandle(id)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove damaged pack %s: %w (its good blobs are stored again; run 'recall repair packs' again)", id, err)
		}
	}
	for i := range out {
		if rewritten[out[i].Pack] {
			out[i].Removed, out[i].Rewritten = false, true
		}
	}
	s.forgetPackFiles(remove, rewritten)
	rb, err := l.rebuildIndex(false, rewritten, nil)
	if err != nil {
		return nil, nil, err
	}
	return out, rb, nil
}

// forgetPackFiles marks replaced packs missing, except those rewritten
// under the same name. (The backend drops what it held open of them.)
func (s *Store) forgetPackFiles(ids []ID, rewritten map[ID]bool) {
	s.idx.mu.Lock()
	for _, id := range ids {
		if n, ok := s.idx.packNum[id]; ok && !rewritten[id] {
			s.idx.size[n] = sizeGone
		}
	}
	s.idx.mu.Unlock()
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for _, id := range ids {
		delete(s.unlocatable, id)
	}
}
