package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// Copying recovery points to another store (recall copy): the off-site
// copy of the 3-2-1 rule, and the transport of a secondary server later.
//
// Blob level, not pack level: the selected points' trees are walked, the
// blobs they need that the destination lacks (by its index) are read from
// the source's packs as stored (compressed, sealed when encrypted), one
// ranged read per run of nearby blobs, checked, and appended unchanged to
// new packs of the destination (chunkstore.LoadStoredBlobs,
// Writer.SaveStored). So a copy deduplicates against what the destination
// holds already (its own backups, an earlier copy), and nothing is
// compressed or sealed again.
//
// Order at the destination: packs, then index files (the session's
// Flush), then point manifests, copied as stored so their ids stay. A
// point is never visible at the destination before everything it needs
// is durable and indexed. A copy killed at any moment leaves packs its
// session journaled, which the next copy (the same session name,
// copySession) adopts and indexes before it decides what is missing, so
// it only copies the rest.
//
// Locks: at the destination, a write session (shared) of copySession: a
// backup to the destination, of any source, runs beside a copy, and
// garbage collection there sees the copy as a registered session, so
// it deletes nothing the copy deduplicated against; a second copy into
// the same destination waits for the first. The source is read without a
// lock, as a mount reads it.
//
// Keys: blobs, pack headers, index files and sealed manifests mean
// something only under the keys that made them, so both stores must share
// them (chunkstore.Store.SameKeys). A destination that does not exist is
// made with the source's config files, byte for byte (as the tape tier's
// staging store is made from the config files in a set label): the same
// keys, the same store id, and for an encrypted store the same
// passphrase. A destination with other keys is refused before anything
// is written.
//
// Blob-level copy needs the key of an encrypted store: its trees are
// sealed (the blobs a point needs are known only by reading them), and so
// are the pack headers and index files written at the destination. Without
// the passphrase an encrypted store is copied sealed, file by file
// (copySealed): every pack, index file and manifest the destination lacks,
// in the same order, into a destination whose config is the source's.

// copySession is the write session a copy holds at the destination:
// never a data source's name (those have no spaces).
const copySession = "recall copy"

// CopyOptions configure Copy.
type CopyOptions struct {
	// Source, when set, copies only the points of this data source.
	Source string
	// Since, when set, copies only points made at or after it.
	Since time.Time
	// Password opens an encrypted source, and the destination, which has
	// the same key (a copy's config is the source's). Without it an
	// encrypted store is copied sealed, all of it (see the comment above).
	Password string
	// Progress, if set, counts the source packs read (files) and the
	// stored bytes copied.
	Progress *Progress
	// Log, if set, is told of each file a sealed copy could not copy
	// other than a manifest (the points not copied are in
	// CopyReport.Failed), and why, as it happens.
	Log func(format string, args ...any)
	// Remote says how to reach a store on an object store, on either side.
	// A destination bucket that is missing is made.
	Remote RemoteOptions
	LockOptions
}

// CopyReport is what a copy did.
type CopyReport struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Created: the destination was made by this copy.
	Created bool `json:"created"`
	// Sealed: an encrypted store copied without its passphrase, as files.
	Sealed bool `json:"sealed"`
	// Points are the points copied by this run, oldest first.
	Points []CopiedPoint `json:"points"`
	// Present counts the points selected that the destination had.
	Present int `json:"points_present"`
	// Failed are the points not copied, with why.
	Failed []CopyFailure `json:"failed"`
	// Forgotten are the points selected that were forgotten at the
	// source while the copy ran, and so not copied (not damage).
	Forgotten []CopiedPoint `json:"forgotten,omitempty"`
	// Blobs and Bytes count the blobs copied and their stored bytes;
	// Packs the packs written at the destination (sealed: the files).
	Blobs int64 `json:"blobs_copied"`
	Bytes int64 `json:"bytes_copied"`
	Packs int64 `json:"packs_written"`
	// SkippedBlobs and SkippedBytes count the blobs the points need that
	// the destination had already (stored bytes, as the source stores them).
	SkippedBlobs int64   `json:"blobs_skipped"`
	SkippedBytes int64   `json:"bytes_skipped"`
	Seconds      float64 `json:"seconds"`
}

// CopiedPoint names a point copied. A sealed copy (no passphrase for
// an encrypted source) cannot read the manifest: source and time are
// unknown, and left out of the JSON rather than given as "" and year 1.
type CopiedPoint struct {
	ID     string    `json:"id"`
	Source string    `json:"source,omitempty"`
	Time   time.Time `json:"time,omitzero"`
}

// CopyFailure is a point not copied, and why.
type CopyFailure struct {
	CopiedPoint
	Error string `json:"error"`
	// Unreadable: the source could not be read (permission, the disk
	// under it), which is no damage of its bytes: no repair applies.
	Unreadable bool `json:"unreadable,omitempty"`
}

// ErrSameStore: a copy whose source and destination are one store.
var ErrSameStore = errors.New("source and destination are the same store")

// ErrOtherKeys: a copy into a store made with other keys.
var ErrOtherKeys = errors.New("the stores have different keys")

// Copy copies the recovery points of the store at from (a recall home, a
// store directory or an s3: location, see resolveLocation) that o selects
// into the store at to, making it when it holds no store. The report is returned with an
// error too once copying started; points that could not be copied (a
// damaged blob, an unreadable manifest) are in it and make the error
// wrap ErrDamaged, the others are copied.
func Copy(ctx context.Context, from, to string, o CopyOptions) (*CopyReport, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	srcLoc, err := resolveLocation(ctx, from, o.Remote, false)
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", from, err)
	}
	dstLoc, err := resolveLocation(ctx, to, o.Remote, true)
	if err != nil {
		return nil, fmt.Errorf("copy to %s: %w", to, err)
	}
	defer func() { dstLoc.be.Close() }() // createCopy and the store replace it
	if srcLoc.canon == dstLoc.canon {
		srcLoc.be.Close()
		return nil, fmt.Errorf("copy from %s to %s: %w: give another destination", from, to, ErrSameStore)
	}
	if !srcLoc.exists {
		srcLoc.be.Close()
		return nil, fmt.Errorf("copy from %s: %w (give a recall home or a store directory)", from, chunkstore.ErrNoStore)
	}
	srcSt, err := chunkstore.OpenBackend(srcLoc.be, chunkstore.OpenOptions{Password: o.Password})
	if errors.Is(err, chunkstore.ErrNoPassword) {
		if o.Source != "" || !o.Since.IsZero() {
			srcLoc.be.Close()
			return nil, fmt.Errorf("copy from %s: %w; without it only the whole store can be copied (sealed, as files): which points belong to a source or a time is sealed too", from, err)
		}
		defer srcLoc.be.Close()
		return copySealed(ctx, srcLoc, dstLoc, o, start)
	}
	if err != nil {
		srcLoc.be.Close()
		return nil, fmt.Errorf("copy from %s: %w", from, err)
	}
	src := NewStore(srcSt)
	defer src.Close()
	rep := &CopyReport{From: src.Dir(), To: dstLoc.be.Location(), Points: []CopiedPoint{}, Failed: []CopyFailure{}}
	if !dstLoc.exists && o.Source != "" {
		// A source that names no point (a typo) makes no store either.
		if pts, _, err := selectPoints(src, o); err == nil && len(pts) == 0 {
			return nil, fmt.Errorf("copy from %s: no point of source %q%s: %w (list them with 'recall points'); nothing was made at %s", rep.From, o.Source, sinceText(o.Since), chunkstore.ErrNotFound, rep.To)
		}
	}
	if !dstLoc.exists {
		if err := createCopy(ctx, dstLoc, func(ctx context.Context) (map[string][]byte, error) { return configFilesOf(ctx, src.st.Backend()) }); err != nil {
			return nil, err
		}
		rep.Created = true
	}
	dstSt, err := chunkstore.OpenBackend(dstLoc.be, chunkstore.OpenOptions{Password: o.Password})
	if errors.Is(err, chunkstore.ErrWrongPassword) {
		return nil, fmt.Errorf("copy from %s to %s: %w: the destination does not open with the source's passphrase: it is another store (%w), or its passphrase was changed ('recall key passwd'); copy into a new directory, or give both stores the same passphrase",
			rep.From, rep.To, ErrOtherKeys, err)
	}
	if errors.Is(err, chunkstore.ErrNoPassword) && !src.Encrypted() {
		return nil, fmt.Errorf("copy from %s to %s: %w: the source is not encrypted and the destination is, nothing was written; copy into a new, empty directory (recall copy makes it with the source's keys)",
			rep.From, rep.To, ErrOtherKeys)
	}
	if err != nil {
		return nil, fmt.Errorf("copy to %s: %w", rep.To, err)
	}
	dstLoc.be = nopCloser{dstLoc.be} // the store closes it now
	dst := NewStore(dstSt)
	defer dst.Close()
	if !src.st.SameKeys(dst.st) {
		return nil, fmt.Errorf("copy from %s (store %s) to %s (store %s): %w (chunker polynomial, id key, encryption key): "+
			"the blobs of one mean nothing in the other, nothing was written; copy into a new, empty directory (recall copy makes it with the source's keys)",
			rep.From, src.Config().ID, rep.To, dst.Config().ID, ErrOtherKeys)
	}
	err = copyPoints(ctx, src, dst, o, rep)
	rep.Seconds = milliRound(time.Since(start).Seconds())
	return rep, err
}

// createCopy makes a new store at l with the config files config gives
// (the source's): the copy first and the config last, so a store there
// is complete once it shows. What a local directory must hold before is
// nothing, or only what an interrupted createCopy left.
func createCopy(ctx context.Context, l *location, config func(context.Context) (map[string][]byte, error)) error {
	files, err := config(ctx)
	if err != nil {
		return err
	}
	if lb, ok := l.be.(*local.Backend); ok {
		dir := lb.Location()
		// Only what an interrupted createCopy, or a command run on the
		// new home, leaves: never a directory of other files.
		for d, allowed := range map[string][]string{
			l.home: {"store", "catalog.db"},
			dir:    {"packs", "index", "points", "locks", "tmp", "config.copy"},
		} {
			ents, err := os.ReadDir(d)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("copy to %s: %w", d, err)
			}
			for _, e := range ents {
				// A config file's temp file, left by a copy killed
				// before its rename (writeFileAtomic's name).
				tmpConfig := d == dir && (strings.HasPrefix(e.Name(), ".tmp-config-") || strings.HasPrefix(e.Name(), ".tmp-config.copy-"))
				if !slices.Contains(allowed, e.Name()) && !tmpConfig {
					return fmt.Errorf("copy to %s: the directory holds no store and is not empty (%s): give a store, a recall home, or a new directory", d, e.Name())
				}
			}
		}
		nb, err := local.Create(dir)
		if err != nil {
			return fmt.Errorf("copy to %s: make the store: %w", dir, err)
		}
		lb.Close()
		l.be = nb
	}
	// A store's files without its config (another store's, damaged) are
	// no place for a new one, on any backend.
	if err := checkNoStoreFiles(ctx, l.be); err != nil {
		return fmt.Errorf("copy to %s: %w: give a store, a recall home, or a new directory", l.be.Location(), err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[j] == "config" || (names[i] != "config" && names[i] < names[j]) })
	for _, n := range names {
		if err := l.be.Save(ctx, backend.Handle{Type: backend.Config, Name: n}, files[n]); err != nil {
			return fmt.Errorf("copy to %s: write the store's config file %s: %w", l.be.Location(), n, err)
		}
	}
	l.exists = true
	return nil
}

// nopCloser is a backend whose Close the store it was handed to does.
type nopCloser struct{ backend.Backend }

func (nopCloser) Close() error { return nil }

// selectPoints returns the points of src o selects, oldest first, and the
// damaged ones (which cannot be selected: their source and time are
// unknown) as failures when no selection was asked for.
func selectPoints(src *Store, o CopyOptions) ([]*Point, []CopyFailure, error) {
	pts, err := src.r.Points()
	if err != nil {
		return nil, nil, err
	}
	// A point committed since src was opened (a backup beside the copy)
	// has its blobs in index files written before it.
	if err := src.r.Refresh(); err != nil {
		return nil, nil, err
	}
	var sel []*Point
	var bad []CopyFailure
	for _, p := range pts {
		switch {
		case p.Damaged != "":
			if o.Source == "" && o.Since.IsZero() {
				bad = append(bad, CopyFailure{CopiedPoint: CopiedPoint{ID: p.ID.String()}, Error: "its manifest cannot be read: " + p.Damaged})
			}
		case o.Source != "" && p.Source != o.Source:
		case !o.Since.IsZero() && p.Time.Before(o.Since):
		default:
			sel = append(sel, p)
		}
	}
	return sel, bad, nil
}

// copyPoints copies the points o selects from src to dst, which share
// their keys, oldest first, in batches of about copyBatch stored bytes:
// each batch's blobs, then its index files, then its manifests, so a long
// copy makes its points visible as it goes, not only at its end.
func copyPoints(ctx context.Context, src, dst *Store, o CopyOptions, rep *CopyReport) error {
	pts, bad, err := selectPoints(src, o)
	if err != nil {
		return err
	}
	rep.Failed = append(rep.Failed, bad...)
	if o.Source != "" && len(pts) == 0 {
		return fmt.Errorf("copy from %s: no point of source %q%s: %w (list them with 'recall points')", rep.From, o.Source, sinceText(o.Since), chunkstore.ErrNotFound)
	}
	ss, err := dst.Session(ctx, SessionOptions{Purpose: "copy from " + rep.From, Source: copySession, Blobs: true, LockOptions: o.LockOptions})
	if err != nil {
		return err
	}
	defer ss.Close()
	// The session's first writer (made with it) has adopted what a killed
	// copy left: those blobs are in the index now and are not copied again.
	have, err := dst.st.ListPoints()
	if err != nil {
		return err
	}
	var todo []*Point
	for _, p := range pts {
		if _, ok := slices.BinarySearchFunc(have, p.ID, func(a, b chunkstore.ID) int { return bytes.Compare(a[:], b[:]) }); ok {
			rep.Present++
			continue
		}
		todo = append(todo, p)
	}
	c := &copier{src: src, dst: dst, ss: ss, o: o, rep: rep, seen: map[chunkstore.ID]bool{}, failed: map[chunkstore.ID]error{}}
	for len(todo) > 0 {
		var batch []*Point
		c.works, c.total = map[chunkstore.ID]*packWork{}, 0
		for len(todo) > 0 && c.total < copyBatch {
			batch = append(batch, todo[0])
			if err := c.need(ctx, todo[0]); err != nil {
				return err
			}
			todo = todo[1:]
		}
		copyBatchHook(batch)
		if err := c.copyBatch(ctx, len(todo) == 0); err != nil {
			return err
		}
		if err := c.commit(ctx, batch); err != nil {
			return err
		}
	}
	if len(rep.Failed) > 0 {
		others := "the others were copied"
		switch n := len(rep.Points); {
		case n == 0 && rep.Present == 0:
			others = "no point was copied"
		case n == 0:
			others = fmt.Sprintf("no point was copied (the destination had %d already)", rep.Present)
		default:
			others = fmt.Sprintf("%d were copied", n)
		}
		if !slices.ContainsFunc(rep.Failed, func(f CopyFailure) bool { return !f.Unreadable }) {
			// Not damage: a repair would rewrite and delete packs that
			// are whole.
			return fmt.Errorf("%d point(s) not copied (the first: %s: %s); %s; the source's packs could not be read (permission denied, or the disk under them failed), which is no damage of their bytes: let recall read them (their owner and mode) or check the disk, then copy again",
				len(rep.Failed), rep.Failed[0].ID[:12], rep.Failed[0].Error, others)
		}
		return fmt.Errorf("%w: %d point(s) not copied (the first: %s: %s); %s; run 'recall verify --read-data' on %s and repair it ('repair packs', a new backup of the source, then 'repair points', which writes each damaged point again without what is lost), then copy again",
			ErrDamaged, len(rep.Failed), rep.Failed[0].ID[:12], rep.Failed[0].Error, others, rep.From)
	}
	return nil
}

// copyBatchHook runs before each batch is copied; tests change the
// source there.
var copyBatchHook = func([]*Point) {}

// copyBatch is about how many stored bytes a copy reads before it makes
// the points that need them visible at the destination.
var copyBatch int64 = 4 << 30

// copier is one copy's state across its batches.
type copier struct {
	src, dst *Store
	ss       *Session
	o        CopyOptions
	rep      *CopyReport
	// seen holds the blobs met by the walks so far: each tree is walked
	// and each blob looked up once per copy.
	seen map[chunkstore.ID]bool
	// failed holds the blobs that could not be copied, with why.
	failMu sync.Mutex
	failed map[chunkstore.ID]error
	// The batch: what its points need and the destination lacks, by
	// source pack, and their stored bytes.
	works map[chunkstore.ID]*packWork
	total int64
}

// packWork is the blobs to copy from one source pack.
type packWork struct {
	pack chunkstore.ID
	t    chunkstore.BlobType
	ids  []chunkstore.ID
}

func (c *copier) fail(id chunkstore.ID, err error) {
	c.failMu.Lock()
	if c.failed[id] == nil {
		c.failed[id] = err
	}
	c.failMu.Unlock()
	c.o.Progress.addError()
}

// need walks p's trees and adds the blobs the destination lacks to the
// batch.
func (c *copier) need(ctx context.Context, p *Point) error {
	return c.src.r.treeBlobs(ctx, p.Tree, c.seen, c.fail, func(id chunkstore.ID, t chunkstore.BlobType) error {
		pack, n, ok := c.src.st.StoredPlace(id)
		if c.dst.st.Has(id) {
			c.rep.SkippedBlobs++
			c.rep.SkippedBytes += n
			return nil
		}
		if !ok {
			// Not usable where the index places it: LoadStoredBlobs
			// says why (or finds another place).
			if pack, ok = c.src.st.PackOf(id); !ok {
				c.fail(id, &chunkstore.BlobError{ID: id, Err: chunkstore.ErrNotFound})
				return nil
			}
		}
		pw := c.works[pack]
		if pw == nil {
			pw = &packWork{pack: pack, t: t}
			c.works[pack] = pw
		}
		pw.ids = append(pw.ids, id)
		c.total += n
		return nil
	})
}

// copyBatch copies the batch's blobs and flushes them: durable and
// indexed at the destination when it returns nil. last says no batch
// follows (the progress's totals are final).
func (c *copier) copyBatch(ctx context.Context, last bool) error {
	queue := make([]*packWork, 0, len(c.works))
	for _, pw := range c.works {
		queue = append(queue, pw)
	}
	// Data packs first, trees last, each in pack order: a restore from
	// the copy finds a point's trees together.
	sort.Slice(queue, func(i, j int) bool {
		if queue[i].t != queue[j].t {
			return queue[i].t == chunkstore.DataBlob
		}
		return bytes.Compare(queue[i].pack[:], queue[j].pack[:]) < 0
	})
	prog := c.o.Progress
	prog.addTotal(int64(len(queue)), c.total)
	if prog != nil && last {
		prog.totalsFinal.Store(true)
	}
	w, err := c.ss.writer()
	if err != nil {
		return err
	}
	// Two packs read at once: one is checked while the other's spans are
	// read and written. From an object store, as many as it has
	// connections: each read waits on a round trip. Not for one as the
	// destination: its uploads run on their own (Writer), and a reader
	// waiting for a pack buffer holds its own buffers from the budget the
	// uploads need (chunkstore.SetMemoryBudget); the budget also bounds
	// the readers of a remote source.
	workers := max(copyWorkers, c.src.st.Connections())
	var next atomic.Int64
	var blobs, stored atomic.Int64
	var wg sync.WaitGroup
	// The first worker's error is the copy's: the others' come after
	// the cancel it caused (context canceled), or are the same one (a
	// full store fails every writer), and joined they printed it twice.
	var errOnce sync.Once
	var firstErr error
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(queue) || cctx.Err() != nil {
					return
				}
				pw := queue[i]
				name := "pack " + pw.pack.String()
				prog.begin(name)
				var werr error
				err := c.src.st.LoadStoredBlobs(cctx, pw.pack, pw.t, pw.ids, func(b chunkstore.StoredBlob, err error) {
					if werr != nil {
						return
					}
					if err != nil {
						c.fail(b.ID, err)
						return
					}
					isNew, err := w.SaveStored(b)
					if err != nil {
						werr = err
						return
					}
					if isNew {
						blobs.Add(1)
						stored.Add(int64(len(b.Bytes)))
					}
					prog.addBytes(int64(len(b.Bytes)))
				})
				if err == nil {
					err = werr
				}
				if err != nil {
					prog.fileDropped(name)
					errOnce.Do(func() { firstErr = err })
					cancel()
					return
				}
				prog.fileDone(name)
			}
		}()
	}
	wg.Wait()
	c.rep.Blobs += blobs.Load()
	c.rep.Bytes += stored.Load()
	if firstErr != nil {
		return fmt.Errorf("copy to %s: %w", c.rep.To, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.ss.Flush(); err != nil {
		return fmt.Errorf("copy to %s: %w", c.rep.To, err)
	}
	c.rep.Packs += int64(w.Written())
	return nil
}

// commit writes the manifests of the batch's points that have everything
// they need at the destination, as stored, and lists the others with why.
func (c *copier) commit(ctx context.Context, batch []*Point) error {
	for _, p := range batch {
		cp := CopiedPoint{ID: p.ID.String(), Source: p.Source, Time: p.Time}
		if len(c.failed) > 0 {
			// A blob of an earlier batch counts too: the walks share
			// what they met, so only a walk of its own finds it.
			err := c.src.r.treeBlobs(ctx, p.Tree, map[chunkstore.ID]bool{}, func(chunkstore.ID, error) {}, func(id chunkstore.ID, _ chunkstore.BlobType) error {
				return c.failed[id]
			})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				c.notCopied(p, cp, err)
				continue
			}
		}
		b, err := c.src.st.LoadPointStored(p.ID)
		if err != nil {
			c.notCopied(p, cp, err)
			continue
		}
		if err := c.dst.st.SavePointStored(p.ID, b); err != nil {
			return fmt.Errorf("copy to %s: %w", c.rep.To, err)
		}
		c.rep.Points = append(c.rep.Points, cp)
	}
	return nil
}

// notCopied records a point of the batch that is not copied: forgotten
// at the source while the copy ran (its manifest is gone: the copy reads
// the source without a lock, so a forget and a collection may remove
// what it was about to read), or damaged there.
func (c *copier) notCopied(p *Point, cp CopiedPoint, err error) {
	if _, lerr := c.src.st.LoadPointStored(p.ID); errors.Is(lerr, chunkstore.ErrNotFound) {
		c.rep.Forgotten = append(c.rep.Forgotten, cp)
		return
	}
	c.rep.Failed = append(c.rep.Failed, CopyFailure{cp, err.Error(), notDamage(err)})
}

// copyWorkers is how many source packs a copy reads at once between
// local stores, and the least it reads at once.
const copyWorkers = 2

func sinceText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " made since " + t.UTC().Format(time.RFC3339)
}

// treeBlobs calls fn with every blob the tree root needs, itself first,
// then its entries' (subtrees, data chunks), once each across the calls
// that share seen. A tree that cannot be loaded goes to bad, and the walk
// goes on without what is below it. An error from fn stops the walk and is
// returned, as is ctx's.
func (r *Reader) treeBlobs(ctx context.Context, root chunkstore.ID, seen map[chunkstore.ID]bool, bad func(chunkstore.ID, error), fn func(chunkstore.ID, chunkstore.BlobType) error) error {
	if seen[root] {
		return nil
	}
	seen[root] = true
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fn(root, chunkstore.TreeBlob); err != nil {
		return err
	}
	t, err := r.LoadTree(root)
	if err != nil {
		bad(root, err)
		return nil
	}
	for _, n := range t.Nodes {
		switch {
		case n.Type == TypeDir:
			if err := r.treeBlobs(ctx, n.Subtree, seen, bad, fn); err != nil {
				return err
			}
		case n.Type.HasContent():
			for _, e := range n.Extents {
				if e.Hole || seen[e.ID] {
					continue
				}
				seen[e.ID] = true
				if err := fn(e.ID, chunkstore.DataBlob); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// copySealed copies an encrypted store without its key: every pack, then
// every index file and damage record, then every manifest the destination
// lacks, as files, each checked as far as the key is not needed
// (chunkstore.CheckPackName, CheckFileName). The destination must be new
// or hold the source's sealed key: without the key, that is the only way
// to know both have the same keys. A file is saved whole and atomically,
// so a copy killed at any moment leaves whole files, and the next one
// copies the rest.
func copySealed(ctx context.Context, srcLoc, dstLoc *location, o CopyOptions, start time.Time) (rep *CopyReport, err error) {
	rep = &CopyReport{From: srcLoc.be.Location(), To: dstLoc.be.Location(), Sealed: true, Points: []CopiedPoint{}, Failed: []CopyFailure{}}
	if dstLoc.exists {
		same, err := chunkstore.SameSealedKey(srcLoc.be, dstLoc.be)
		if err != nil {
			return nil, fmt.Errorf("copy from %s to %s: %w", rep.From, rep.To, err)
		}
		if !same {
			return nil, fmt.Errorf("copy from %s to %s: %w, or the same keys sealed apart (a passphrase changed on one side): without the passphrase that cannot be told, nothing was written; give the passphrase, or copy into a new, empty directory",
				rep.From, rep.To, ErrOtherKeys)
		}
	} else {
		if err := createCopy(ctx, dstLoc, func(ctx context.Context) (map[string][]byte, error) { return configFilesOf(ctx, srcLoc.be) }); err != nil {
			return nil, err
		}
		rep.Created = true
	}
	hold, err := chunkstore.HoldSession(ctx, dstLoc.be, copySession, "copy from "+rep.From+" (sealed)", o.Wait, o.OnWait)
	if err != nil {
		return nil, fmt.Errorf("copy to %s: %w", rep.To, err)
	}
	defer func() {
		// A lock lost while held is known for sure only here: what was
		// written may have run beside garbage collection.
		if uerr := hold.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("copy to %s: %w; run the copy again, then 'recall verify --read-data' on %s", rep.To, uerr, rep.To)
		}
	}()

	type file struct {
		t    backend.FileType
		name string
		size int64
	}
	// missing lists the files of the types ts the source has and the
	// destination lacks.
	missing := func(ts ...backend.FileType) ([]file, int64, error) {
		var todo []file
		var total int64
		for _, t := range ts {
			have := map[string]bool{}
			if err := backend.ListNames(ctx, dstLoc.be, t, func(name string) error { have[name] = true; return nil }); err != nil {
				return nil, 0, fmt.Errorf("copy to %s: list %s: %w", rep.To, t, err)
			}
			err := srcLoc.be.List(ctx, t, func(name string, size int64) error {
				if !have[name] {
					todo = append(todo, file{t, name, size})
					total += size
				} else if t == backend.Points {
					rep.Present++
				}
				return nil
			})
			if err != nil {
				return nil, 0, fmt.Errorf("copy from %s: list %s: %w", rep.From, t, err)
			}
		}
		return todo, total, nil
	}
	// Packs first, manifests last: the durability order.
	todo, total, err := missing(backend.Packs, backend.Index, backend.Damaged, backend.Points)
	if err != nil {
		return rep, err
	}
	o.Progress.addTotal(int64(len(todo)), total)
	if o.Progress != nil {
		o.Progress.totalsFinal.Store(true)
	}
	var buf []byte
	vanished := 0 // packs removed from the source since they were listed
	for i := 0; i < len(todo) || vanished > 0; i++ {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if vanished > 0 && (i == len(todo) || todo[i].t != backend.Packs) {
			// A pack removed since the listing was deleted by garbage
			// collection, which first wrote the live blobs it held to new
			// packs: those, listed now, are copied before any index file
			// or manifest that may need them, and so on until a listing
			// brings no new pack.
			for round := 0; vanished > 0; round++ {
				if round == 8 {
					return rep, fmt.Errorf("copy from %s: packs keep vanishing while they are copied (garbage collection running there?): nothing that needs them was copied; run the copy again once it is done", rep.From)
				}
				vanished = 0
				more, n, err := missing(backend.Packs)
				if err != nil {
					return rep, err
				}
				o.Progress.addTotal(int64(len(more)), n)
				for _, p := range more {
					v, err := copyOne(ctx, srcLoc, dstLoc, o, rep, hold, p.t, p.name, &buf)
					if err != nil {
						return rep, err
					}
					if v {
						vanished++
					}
				}
			}
			// The index files and manifests are listed again too: the
			// ones written with the new packs are copied with the rest.
			rep.Present = 0 // counted again by this listing
			rest, _, err := missing(backend.Index, backend.Damaged, backend.Points)
			if err != nil {
				return rep, err
			}
			if extra := len(rest) - (len(todo) - i); extra > 0 {
				o.Progress.addTotal(int64(extra), 0)
			}
			todo, i = rest, -1
			continue
		}
		f := todo[i]
		v, err := copyOne(ctx, srcLoc, dstLoc, o, rep, hold, f.t, f.name, &buf)
		if err != nil {
			return rep, err
		}
		if v && f.t == backend.Packs {
			vanished++
		}
	}
	rep.Seconds = milliRound(time.Since(start).Seconds())
	if len(rep.Failed) > 0 {
		return rep, fmt.Errorf("%w: %d point(s) not copied (the first: %s: %s); run 'recall verify' on %s",
			ErrDamaged, len(rep.Failed), rep.Failed[0].ID[:12], rep.Failed[0].Error, rep.From)
	}
	return rep, nil
}

// copyOne copies file t/name from src to dst for copySealed, checking its
// name against its content; vanished is set when the source no longer has
// it (removed since it was listed).
func copyOne(ctx context.Context, srcLoc, dstLoc *location, o CopyOptions, rep *CopyReport, hold *chunkstore.SessionHold, t backend.FileType, name string, buf *[]byte) (vanished bool, err error) {
	h := backend.Handle{Type: t, Name: name}
	o.Progress.begin(h.String())
	b, err := srcLoc.be.Load(ctx, h, 0, -1, *buf)
	if errors.Is(err, backend.ErrNotExist) {
		o.Progress.fileDone(h.String())
		return true, nil // removed meanwhile (garbage collection, a superseded index file)
	}
	if err != nil {
		return false, fmt.Errorf("copy from %s: read %s: %w", rep.From, h, err)
	}
	*buf = b[:0]
	switch t {
	case backend.Packs:
		var id chunkstore.ID
		if id, err = chunkstore.ParseID(name); err == nil {
			err = chunkstore.CheckPackName(id, b)
		}
	case backend.Index, backend.Points:
		err = chunkstore.CheckFileName(name, b)
	}
	if err != nil {
		o.Progress.addError()
		o.Progress.fileDone(h.String())
		if t == backend.Points {
			rep.Failed = append(rep.Failed, CopyFailure{CopiedPoint: CopiedPoint{ID: name}, Error: err.Error(), Unreadable: notDamage(err)})
		} else {
			o.Log("%s of %s not copied: %v", h, rep.From, err)
		}
		return false, nil
	}
	// A file written after the session's lock is lost could join a
	// store that garbage collection, alone by then, is sweeping: an
	// index or manifest naming packs it deletes.
	if err := hold.Lost(); err != nil {
		return false, fmt.Errorf("copy to %s: %w", rep.To, err)
	}
	if err := dstLoc.be.Save(ctx, h, b); err != nil {
		return false, fmt.Errorf("copy to %s: write %s: %w", rep.To, h, err)
	}
	o.Progress.addBytes(int64(len(b)))
	o.Progress.fileDone(h.String())
	switch t {
	case backend.Packs:
		rep.Packs++
		rep.Bytes += int64(len(b))
	case backend.Points:
		rep.Points = append(rep.Points, CopiedPoint{ID: name})
	}
	return false, nil
}

// configFilesOf returns the config files of the store kept in be by
// name: what a copy of the store, or a tape set's label, carries so that
// the store's keys open it.
func configFilesOf(ctx context.Context, be backend.Backend) (map[string][]byte, error) {
	out := map[string][]byte{}
	var names []string
	if err := be.List(ctx, backend.Config, func(name string, _ int64) error { names = append(names, name); return nil }); err != nil {
		return nil, fmt.Errorf("list the store's config files: %w", err)
	}
	for _, n := range names {
		b, err := be.Load(ctx, backend.Handle{Type: backend.Config, Name: n}, 0, -1, nil)
		if err != nil {
			return nil, fmt.Errorf("read the store's config file %s: %w", n, err)
		}
		out[n] = b
	}
	return out, nil
}
