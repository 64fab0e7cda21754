package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/recall-backup/recall/chunkstore/backend"
)

// Adopting finished packs from a temp area.
//
// A writer finishes a pack in its session's temp area (header written,
// the file synced: backend.Syncer), then records it in the journal and
// commits it under packs/. A session killed between the sync and the
// commit leaves a whole pack in the temp area, which the next session of
// the source used to remove with the rest of it: the blobs were lost and
// stored again. Now, before a temp area is cleaned, what is in it is
// read (backend.TempReader: only backends with a temp area that outlives
// its writer have one) and each pack that is finished is committed in the
// journal's order: entry saved, pack saved under its name, index file,
// entry removed. Finished means: its trailer and header parse, its blobs
// lie back to back from the start to the header, which ends the file, and
// every blob decodes and verifies against its id. Anything else (a pack
// cut short by the kill, a torn write, a file still being written when
// the kill came) is dropped with the temp area, as before.
//
// The session of a source adopts its own temp area when it takes its
// lock; the exclusive lock adopts every temp area (no session runs) but
// garbage collection's, whose packs are copies. A
// pack a garbage collection plan hides is not adopted: a collection may
// be about to delete a pack of that name, and the blobs are in the
// store's other packs or stored again by the next backup.

// adoptTemp commits the finished packs the writers tagged tag (every tag:
// "") left in their temp areas, recording them in the journal of journal
// first, and returns how many it committed and their bytes. The caller holds the lock
// that owns tag (for "", the exclusive lock), and cleans the temp area
// after. A pack that cannot be adopted is left to the clean-up; only a
// failure to write to the store is an error.
func (s *Store) adoptTemp(ctx context.Context, tag, journal string) (int, int64, error) {
	tr, ok := s.be.(backend.TempReader)
	if !ok {
		return 0, 0, nil
	}
	type tempFile struct{ tag, name string }
	var files []tempFile
	err := tr.ListTemp(ctx, tag, backend.Packs, func(tg, name string, _ int64) error {
		// A collection's rewrites copy blobs other packs hold: a copy
		// adopted would be a duplicate no later collection can tell from
		// the original, and the next collection copies again anyway.
		if tg != gcTempTag {
			files = append(files, tempFile{tg, name})
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list what interrupted writers left in store %s: %w", s.Dir(), err)
	}
	if len(files) == 0 {
		return 0, 0, nil
	}
	plan, err := s.loadPlan(ctx)
	if err != nil {
		return 0, 0, err
	}
	var adopted []packRecord
	var bytes int64
	var fromTags []string // the temp tag each adopted pack was found under
	var buf []byte
	for _, f := range files {
		b, err := tr.LoadTemp(ctx, f.tag, f.name, buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "recall: temp file %s of %s: %v (not adopted)\n", f.name, f.tag, err)
			continue
		}
		buf = b[:0]
		id, entries, err := s.finishedPack(b)
		if err != nil {
			continue // cut short or torn: dropped with the temp area
		}
		if plan != nil {
			if _, hidden := slices.BinarySearch(plan.Hidden, id.String()); hidden {
				continue
			}
		}
		if _, err := s.be.Stat(ctx, packHandle(id)); err == nil {
			continue // committed after all, or the same blobs stored again
		}
		if err := s.journalAdd(journal, id); err != nil {
			return len(adopted), bytes, storeWriteError(s.Dir(), err)
		}
		if err := s.commitAdopted(ctx, tag, id, b); err != nil {
			return len(adopted), bytes, storeWriteError(s.Dir(), fmt.Errorf("adopt pack %s: %w", id, err))
		}
		if !s.idx.addPack(id, entries, int64(len(b))) {
			s.idx.setPackSize(id, int64(len(b))) // known from before as missing
		}
		adopted = append(adopted, packRecord{id: id, entries: entries})
		bytes += int64(len(b))
		fromTags = append(fromTags, f.tag)
		if len(adopted)%indexEvery == 0 {
			from := len(adopted) - indexEvery
			if err := s.indexAdopted(journal, adopted[from:], fromTags[from:]); err != nil {
				return len(adopted), bytes, err
			}
		}
	}
	from := len(adopted) / indexEvery * indexEvery
	if err := s.indexAdopted(journal, adopted[from:], fromTags[from:]); err != nil {
		return len(adopted), bytes, err
	}
	return len(adopted), bytes, nil
}

// commitAdopted writes b, the finished pack id, under packs/ through a
// writer tagged tag (the adopter's), not Save: a Save killed part way
// leaves its temp file beside the packs (local: packs/xx/.tmp-*), where
// no session's clean-up looks, so every adopter killed while it copies a
// pack would leave that much dead weight for good. A tagged writer's
// remains are in the adopter's temp area, which CleanTemp(tag) empties
// (and which the next adopter reads as any other temp pack: a torn one is
// dropped, a whole one adopted).
func (s *Store) commitAdopted(ctx context.Context, tag string, id ID, b []byte) error {
	f, err := backend.CreateTagged(ctx, s.be, backend.Packs, tag)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Abort()
		return err
	}
	return f.Commit(ctx, id.String())
}

// indexAdopted writes the index file of adopted packs and drops their
// journal entries: the adopter's, and the one the killed session made
// under the tag the pack was found under.
func (s *Store) indexAdopted(journal string, packs []packRecord, tags []string) error {
	if len(packs) == 0 {
		return nil
	}
	if _, err := s.writeIndexFile(packs); err != nil {
		return storeWriteError(s.Dir(), err)
	}
	for i, p := range packs {
		s.journalDrop(journal, []ID{p.id})
		if tags[i] != "" && tags[i] != journal {
			s.journalDrop(tags[i], []ID{p.id})
		}
	}
	return nil
}

// errUnfinished: a temp file is not a finished pack.
var errUnfinished = errors.New("not a finished pack")

// finishedPack checks that b is a whole pack (see the comment at the top
// of this file) and returns its name and entries.
func (s *Store) finishedPack(b []byte) (ID, []PackEntry, error) {
	hdr, err := packHeaderBytes(b)
	if err != nil {
		return ID{}, nil, err
	}
	// Decoded on a copy: an encrypted header is opened in place, and the
	// name is the hash of the bytes as stored.
	entries, err := decodePackHeader(slices.Clone(hdr[:len(hdr)-packTrailerLen]), s.keys, int64(len(b)))
	if err != nil {
		return ID{}, nil, err
	}
	end := int64(0)
	for _, e := range entries {
		if int64(e.Offset) != end {
			return ID{}, nil, fmt.Errorf("%w: blob %s at %d, want %d", errUnfinished, e.ID.Short(), e.Offset, end)
		}
		end += int64(e.Length)
	}
	if len(entries) == 0 || end != int64(len(b)-len(hdr)) {
		return ID{}, nil, fmt.Errorf("%w: blobs end at %d, the header starts at %d", errUnfinished, end, len(b)-len(hdr))
	}
	var scratch, plain []byte
	for _, e := range entries {
		scratch = append(scratch[:0], b[e.Offset:e.Offset+e.Length]...)
		out, err := s.checkStored(e, scratch, plain[:0])
		if err != nil {
			return ID{}, nil, fmt.Errorf("%w: blob %s: %v", errUnfinished, e.ID.Short(), err)
		}
		if cap(out) > cap(plain) {
			plain = out[:0]
		}
	}
	return packName(hdr), entries, nil
}
