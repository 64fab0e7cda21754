package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/dustin/go-humanize"
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
// garbage collection's, whose packs are copies; a dry run's adopts
// nothing and tells what the next would (tempNote). A
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
	var adopted []packRecord
	var bytes int64
	var fromTags []string // the temp tag each adopted pack was found under
	err := s.eachAdoptable(ctx, tag, func(p tempPack) error {
		if err := s.journalAdd(journal, p.id); err != nil {
			return storeWriteError(s.Dir(), err)
		}
		if err := s.commitAdopted(ctx, tag, p.id, p.b); err != nil {
			return storeWriteError(s.Dir(), fmt.Errorf("adopt pack %s: %w", p.id, err))
		}
		if !s.idx.addPack(p.id, p.entries, int64(len(p.b))) {
			s.idx.setPackSize(p.id, int64(len(p.b))) // known from before as missing
		}
		adopted = append(adopted, packRecord{id: p.id, entries: p.entries})
		bytes += int64(len(p.b))
		fromTags = append(fromTags, p.tag)
		if len(adopted)%indexEvery == 0 {
			from := len(adopted) - indexEvery
			return s.indexAdopted(journal, adopted[from:], fromTags[from:])
		}
		return nil
	})
	if err != nil {
		return len(adopted), bytes, err
	}
	from := len(adopted) / indexEvery * indexEvery
	if err := s.indexAdopted(journal, adopted[from:], fromTags[from:]); err != nil {
		return len(adopted), bytes, err
	}
	return len(adopted), bytes, nil
}

// tempPack is a finished pack in a temp area that adoptTemp commits.
type tempPack struct {
	tag     string // the temp tag it was found under
	id      ID
	entries []PackEntry
	b       []byte // its bytes, valid until the callback returns
}

// eachAdoptable calls fn, one after the other, with each pack the
// writers tagged tag (every tag: "") left in their temp areas that
// adoption commits: finished, not one of a collection's (see above), not
// hidden by a collection's plan, not in packs/ already. It reads, and
// writes nothing; an error of fn stops it and is returned.
func (s *Store) eachAdoptable(ctx context.Context, tag string, fn func(tempPack) error) error {
	tr, ok := s.be.(backend.TempReader)
	if !ok {
		return nil
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
		return fmt.Errorf("list what interrupted writers left in store %s: %w", s.Dir(), err)
	}
	if len(files) == 0 {
		return nil
	}
	plan, err := s.loadPlan(ctx)
	if err != nil {
		return err
	}
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
		if err := fn(tempPack{tag: f.tag, id: id, entries: entries, b: b}); err != nil {
			return err
		}
	}
	return nil
}

// tempNote tells a dry run, whose exclusive lock adopts and cleans
// nothing (lockExclusive), what the lock of the same run without
// --dry-run would do first with what interrupted writers left in the
// temp areas: adopt the finished packs, which can change what the run
// finds (a pack missing from packs/ is there again), and remove the
// rest. "" when the temp areas hold nothing of theirs. It reads each
// temp pack whole, as adoption would: a few packs per interrupted
// writer, against the pack walk's every header.
func (s *Store) tempNote(ctx context.Context) string {
	tr, ok := s.be.(backend.TempReader)
	if !ok {
		return ""
	}
	files := 0
	var size int64
	for _, t := range backend.FileTypes {
		tr.ListTemp(ctx, "", t, func(_, _ string, n int64) error {
			files++
			size += n
			return nil
		})
	}
	if files == 0 {
		return ""
	}
	found, packs := 0, map[ID]int64{}
	err := s.eachAdoptable(ctx, "", func(p tempPack) error {
		found++
		packs[p.id] = int64(len(p.b))
		return nil
	})
	if err != nil {
		return fmt.Sprintf("%v: this dry run cannot tell what a run without --dry-run adopts first", err)
	}
	var packBytes int64
	for _, n := range packs {
		packBytes += n
	}
	rest := ""
	if n := files - found; n > 0 {
		rest = fmt.Sprintf(" and removes the %d other temp file(s) (%s)", n, humanize.IBytes(uint64(max(size-packBytes, 0))))
	}
	if len(packs) == 0 {
		return fmt.Sprintf("store %s: interrupted writers left %d temp file(s) (%s), none a finished pack; this dry run leaves them, a run without --dry-run removes them",
			s.Dir(), files, humanize.IBytes(uint64(size)))
	}
	return fmt.Sprintf("store %s: interrupted writers left %d finished pack(s) (%s) in its temp area that are not in packs/; this dry run leaves them and reports without them, while a run without --dry-run first adopts them into packs/ and the index%s",
		s.Dir(), len(packs), humanize.IBytes(uint64(packBytes)), rest)
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
