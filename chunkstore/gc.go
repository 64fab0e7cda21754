package chunkstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/recall-backup/recall/chunkstore/backend"
)

// Garbage collection runs beside write sessions: it never takes the store
// lock exclusively, so backups are never blocked by it. What was studied:
//
//   - restic's prune takes an exclusive lock for its whole run (restic
//     #2059): simple and safe, and backups wait for hours.
//   - Duplicacy's two-step fossil collection: chunks are first renamed to
//     fossils, and deleted only by a later collection after every client
//     has made a backup since, which proves none still refers to them.
//   - kopia's maintenance: contents are marked deleted in the index and
//     dropped only after time-based safety margins that are meant to
//     outlast any snapshot in progress.
//   - PBS: mark by touching atime, sweep chunks not touched since the
//     oldest running backup started, minus a 24 h grace.
//
// Chosen: Duplicacy's two steps, with kopia's "hidden from the index"
// instead of renaming (no backend has to rename), and, instead of clocks
// and margins, the write sessions themselves: each registers (sessions.go)
// and GC waits for exactly the ones that could have seen a hidden pack.
//
// # The steps
//
// First, the packs that write sessions no longer running left unindexed
// (journal.go) are indexed, once their source's next run has had its
// grace (gc_leftovers.go), and so are packs hidden with no plan
// (indexOrphanHides): from then on they are counted like any others.
//
//  1. Mark every blob reachable from the points present at the start
//     (each tree walked once, whatever the number of points sharing it).
//  2. Candidates, decided only from the index: indexed packs with no live
//     blob (deleted) and packs whose dead bytes reach the repack threshold
//     (their live blobs are copied to new packs, through a writer, which
//     are indexed before anything is hidden). Packs no index file covers,
//     temp areas and packs with a live blob recorded damaged are never
//     candidates.
//  3. Hide: record the plan (gc/plan: the candidates, the consolidated
//     index file about to hide them, the points marked), then write that
//     file durably: it supersedes every index file loaded and lists the
//     candidates with no places. A process adopting it keeps the places
//     of them it knows, and a pack walk reads the others from their
//     headers, for reads only: a point committed meanwhile still reads,
//     but Has, which deduplication asks, no longer answers from them, and
//     a writer never names a new pack like a hidden one (unlikeHidden).
//     Then list the write sessions running and record them in the plan.
//  4. Delete, once every session recorded has ended: re-mark the points
//     committed since step 1; a candidate holding a blob one of them
//     needs that no other pack holds is indexed again (a version 1 file
//     listing a hidden pack makes it usable again everywhere), as is any
//     candidate an index file lists again; every other candidate is
//     removed, then the plan. The next consolidated file drops the
//     deleted packs from its table once their files are gone.
//  5. Index files the newest consolidated file supersedes are removed
//     after a grace period (gc/retire-<file>), so a reader that listed
//     them before it was written still finds them.
//
// # Why it is safe
//
// The invariant: a blob is deduplicated against only by a write session,
// and only through Has on the index that session loaded; and a pack is
// deleted only after every session that may have loaded an index in which
// the pack was not hidden has ended, and every point committed since the
// mark has been marked. A session registered after the hide loads its
// index after registering (Lock.NewWriter refreshes it), so it sees the
// hiding file and never deduplicates against a candidate; a session
// registered before may, and may commit a point that needs a candidate,
// so nothing is deleted until it has ended and what it committed is
// marked. A session that ends without committing commits nothing. So every
// point, committed at any time, finds each of its blobs in a pack that
// stays: one GC kept, indexed again, or that a session wrote after the
// hide.
//
// Every step is durable before the next starts, and each is idempotent:
// after kill -9 at any moment the next run reads the plan and finishes
// it. A plan whose index file was never written hid nothing and is
// dropped. Readers (mounts, restore) are not registered and need not be:
// the packs GC deletes hold only blobs of points forgotten before it
// started, or blobs it copied elsewhere first (a reader that still has the
// old place finds the new one after its next refresh; until then such a
// read fails with the pack missing, never with other bytes).

// gcLock is the name of garbage collection's own lock: one GC at a time.
const gcLock = "gc"

// gcPlanName is the name of the plan in the backend's GC files.
const gcPlanName = "plan"

// gcRetirePrefix starts the name of a record of superseded index files.
const gcRetirePrefix = "retire-"

// gcTempTag is the temp tag of the packs a rewrite writes.
const gcTempTag = "gc"

// DefaultRepackThreshold is the share of dead bytes at which a pack is
// rewritten.
const DefaultRepackThreshold = 0.5

// DefaultMaxUnused is the share of dead bytes, relative to the live ones,
// a collection leaves at most in packs below the repack threshold: restic's
// --max-unused (5% there too). Without it, packs just under the threshold
// keep up to as many dead bytes as live ones; with it, the most-dead of
// them are rewritten until what stays dead is at most this share.
const DefaultMaxUnused = 0.05

// gcCompactBlobs is how many blobs a rewrite copies at least between
// sortings of the index's recent part.
const gcCompactBlobs = 1 << 11

// DefaultIndexGrace is how long superseded index files stay.
const DefaultIndexGrace = time.Hour

// BlobSet is what marking finds live: tree blobs exactly, chunks by the
// first 64 bits of their ids. Not safe for concurrent use.
//
// A store of 5·10^7 chunks cannot keep a map of whole ids (~100 B an
// entry with the map's overhead) to collect. Chunks are kept as a sorted
// array of 64-bit prefixes (8 B each) with an unsorted tail that is
// sorted into it as it grows, so the set costs at most ~18 B a chunk
// while it grows. Ids are uniform hashes, so two ids share a prefix with
// a chance of 2^-64 each; when they do, a dead chunk counts as live and is
// kept: the error is always on the safe side. Trees are kept whole,
// because Add reporting a tree as seen when it was not would skip its
// walk, and what it refers to would count as dead.
type BlobSet struct {
	trees  map[ID]struct{}
	chunks []uint64 // sorted and unique up to sorted; the rest, pending
	sorted int
}

// NewBlobSet returns an empty set.
func NewBlobSet() *BlobSet { return &BlobSet{trees: map[ID]struct{}{}} }

func idPrefix(id *ID) uint64 { return binary.BigEndian.Uint64(id[:8]) }

// AddTree adds a tree blob and reports whether it was not in the set yet:
// whether its walk is still to do.
func (b *BlobSet) AddTree(id ID) bool {
	if _, ok := b.trees[id]; ok {
		return false
	}
	b.trees[id] = struct{}{}
	return true
}

// Add adds a chunk (any blob no walk depends on).
func (b *BlobSet) Add(id ID) {
	if len(b.chunks) == cap(b.chunks) {
		b.settle()
		if len(b.chunks) > cap(b.chunks)*3/4 {
			// Grown by a quarter, not doubled: while the old array is
			// copied both are held.
			grown := make([]uint64, len(b.chunks), max(1024, cap(b.chunks)+cap(b.chunks)/4))
			copy(grown, b.chunks)
			b.chunks = grown
		}
	}
	b.chunks = append(b.chunks, idPrefix(&id))
}

// settle sorts the pending tail into the sorted part, dropping
// duplicates: when the array is full (Add) and before a lookup.
func (b *BlobSet) settle() {
	if b.sorted == len(b.chunks) {
		return
	}
	slices.Sort(b.chunks)
	b.chunks = slices.Compact(b.chunks)
	b.sorted = len(b.chunks)
}

// Has reports whether id is in the set (a chunk sharing its first 64 bits
// with one in the set counts as in it).
func (b *BlobSet) Has(id ID) bool {
	if _, ok := b.trees[id]; ok {
		return true
	}
	b.settle()
	_, ok := slices.BinarySearch(b.chunks, idPrefix(&id))
	return ok
}

// Len is the number of blobs in the set (chunks sharing a prefix count
// once).
func (b *BlobSet) Len() int {
	b.settle()
	return len(b.trees) + len(b.chunks)
}

// Marker adds to live every blob reachable from the points given (tree
// blobs and the chunks they list). The store knows no tree format: the
// engine marks. An error stops the collection before anything is hidden:
// a point or tree that cannot be read might refer to any blob.
type Marker func(ctx context.Context, points []ID, live *BlobSet) error

// GCOptions configure a collection.
type GCOptions struct {
	// RepackThreshold is the share of dead bytes (0 to 1] at which a pack
	// with live blobs is rewritten; 0 means DefaultRepackThreshold, above
	// 1 never.
	RepackThreshold float64
	// MaxUnused is the share of dead bytes, relative to the live ones,
	// left at most in packs kept: packs below the threshold are rewritten,
	// most-dead first, until the rest holds no more. 0 means
	// DefaultMaxUnused; negative: no bound (the threshold alone decides).
	MaxUnused float64
	// DryRun marks and reports what would be done, and changes nothing.
	DryRun bool
	// Wait is how long to wait for the write sessions that keep a plan
	// from being finished (0: do not wait; the next collection finishes
	// it).
	Wait time.Duration
	// LockWait is how long to wait for the store lock and for another
	// collection.
	LockWait time.Duration
	// IndexGrace is how long index files stay once superseded, and how
	// long the journals of write sessions that stopped wait for their
	// next run before a collection adopts them (gc_leftovers.go); 0 means
	// DefaultIndexGrace, below 0 none.
	IndexGrace time.Duration
	// Log, if not nil, gets one line per step.
	Log func(format string, args ...any)
}

// GCReport is what a collection did (or, with DryRun, would do).
type GCReport struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Resumed: a plan left by an earlier collection was finished first.
	Resumed bool `json:"resumed,omitempty"`

	Points      int   `json:"points"`       // points marked
	LiveBlobs   int   `json:"live_blobs"`   // blobs they reach
	PacksMarked int   `json:"packs_marked"` // indexed packs examined
	BytesMarked int64 `json:"bytes_marked"` // their size

	PacksHidden    int   `json:"packs_hidden"`    // candidates hidden by this run
	PacksDeleted   int   `json:"packs_deleted"`   // pack files removed (any plan)
	BytesDeleted   int64 `json:"bytes_deleted"`   // their size
	PacksRewritten int   `json:"packs_rewritten"` // packs whose live blobs were copied
	BlobsCopied    int   `json:"blobs_copied"`
	BytesCopied    int64 `json:"bytes_copied"`  // stored bytes of the blobs copied
	BytesWritten   int64 `json:"bytes_written"` // size of the new packs they went to
	PacksRestored  int   `json:"packs_restored"`
	// Freed is the bytes removed (TempRemoved too) less the bytes
	// written.
	Freed int64 `json:"freed"`

	IndexFilesRemoved int `json:"index_files_removed"`
	// IndexConsolidated: with nothing to collect, this run merged the
	// index's recent part (the version 1 files backups write) into a new
	// consolidated file, as it grew past the thresholds of index.go.
	IndexConsolidated bool `json:"index_consolidated,omitempty"`
	// IndexUnreadable names the files in index/ that did not decode:
	// they are neither merged into a consolidated file nor removed as
	// superseded ('recall repair index' replaces them), sorted.
	IndexUnreadable []string `json:"index_unreadable,omitempty"`

	// PacksAdopted: packs write sessions that are not running left
	// unindexed (journal.go), indexed by this run and collected like any
	// others (gc_leftovers.go). LeftoverPacks and LeftoverBytes: such
	// packs kept for their session's next run until LeftoverUntil, when
	// a collection adopts them.
	PacksAdopted  int       `json:"packs_adopted,omitempty"`
	LeftoverPacks int       `json:"leftover_packs,omitempty"`
	LeftoverBytes int64     `json:"leftover_bytes,omitempty"`
	LeftoverUntil time.Time `json:"leftover_until,omitzero"`
	// TempRemoved is the bytes of temp files (packs being built when
	// their session stopped) removed with the packs adopted, less those
	// of finished packs among them, which were adopted first and are
	// counted with the packs (a dry run counts them too).
	TempRemoved int64 `json:"temp_removed,omitempty"`

	// Pending: a plan waits for the write sessions in WaitingFor to end;
	// the next collection (or this one with a longer Wait) finishes it.
	Pending    bool          `json:"pending,omitempty"`
	WaitingFor []SessionInfo `json:"waiting_for,omitempty"`

	// MarkTime and SweepTime are how long marking and the rest took.
	MarkTime  time.Duration `json:"mark_ns"`
	SweepTime time.Duration `json:"sweep_ns"`
}

// ErrGCRunning: another garbage collection holds the GC lock.
var ErrGCRunning = errors.New("another garbage collection is running")

// gcPlan is the durable plan of a collection (gc/plan), JSON:
//
//	{"version": 1,
//	 "index": "<hex>",            the consolidated index file that hides
//	 "hidden": ["<hex>", ...],    the candidate packs, sorted
//	 "marked": ["<hex>", ...],    the points marked, sorted
//	 "sessions": ["session-..."], the sessions running after the hide
//	 "sessions_known": true,      false until they are recorded
//	 "hidden_at": "RFC 3339"}
//
// A version other than 1 is refused: the collection stops and says so.
type gcPlan struct {
	Version       int       `json:"version"`
	Index         string    `json:"index"`
	Hidden        []string  `json:"hidden"`
	Marked        []string  `json:"marked"`
	Sessions      []string  `json:"sessions"`
	SessionsKnown bool      `json:"sessions_known"`
	HiddenAt      time.Time `json:"hidden_at"`
}

const gcPlanVersion = 1

// gcRetire records index files superseded by a consolidated one
// (gc/retire-<its name>), JSON: {"version": 1, "at": "RFC 3339",
// "files": ["<hex>", ...]}.
type gcRetire struct {
	Version int       `json:"version"`
	At      time.Time `json:"at"`
	Files   []string  `json:"files"`
}

func gcHandle(name string) backend.Handle { return backend.Handle{Type: backend.GC, Name: name} }

func encodePlan(p *gcPlan) []byte {
	b, _ := json.MarshalIndent(p, "", " ")
	return append(b, '\n')
}

func decodePlan(b []byte) (*gcPlan, error) {
	var p gcPlan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: garbage collection plan: %v", ErrCorrupt, err)
	}
	if p.Version != gcPlanVersion {
		return nil, fmt.Errorf("garbage collection plan: version %d, this recall knows %d; use a newer recall", p.Version, gcPlanVersion)
	}
	return &p, nil
}

func (s *Store) loadPlan(ctx context.Context) (*gcPlan, error) {
	b, err := s.be.Load(ctx, gcHandle(gcPlanName), 0, -1, nil)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read garbage collection plan: %w", err)
	}
	return decodePlan(b)
}

func (s *Store) savePlan(ctx context.Context, p *gcPlan) error {
	if err := s.be.Save(ctx, gcHandle(gcPlanName), encodePlan(p)); err != nil {
		return storeWriteError(s.Dir(), fmt.Errorf("save garbage collection plan: %w", err))
	}
	return nil
}

// gcRun is one collection in progress.
type gcRun struct {
	s    *Store
	ctx  context.Context
	o    GCOptions
	mark Marker
	rep  *GCReport
	// journaled are the packs named in the journal of a session that is
	// running or whose grace is not over (adoptLeftovers): never
	// candidates, indexed or not, since that session or its source's
	// next run reuses them.
	journaled map[ID]bool
}

func (g *gcRun) log(format string, args ...any) {
	if g.o.Log != nil {
		g.o.Log(format, args...)
	}
}

// GC collects garbage: it finishes a plan an earlier collection left,
// then marks, hides and (when no session that could have seen the hidden
// packs runs, or they end within o.Wait) deletes. It holds the store lock
// shared, so write sessions go on, and the GC lock, so one collection runs
// at a time; an exclusive holder (repair) excludes it. The package-level
// comment of this file says why that is safe.
func (s *Store) GC(ctx context.Context, mark Marker, o GCOptions) (*GCReport, error) {
	if o.RepackThreshold == 0 {
		o.RepackThreshold = DefaultRepackThreshold
	}
	if o.MaxUnused == 0 {
		o.MaxUnused = DefaultMaxUnused
	}
	if o.RepackThreshold < 0 {
		return nil, fmt.Errorf("repack threshold %v: must be between 0 and 1 (above 1: never rewrite)", o.RepackThreshold)
	}
	if o.IndexGrace == 0 {
		o.IndexGrace = DefaultIndexGrace
	}
	release, err := s.lockGC(ctx, o.LockWait, o.DryRun)
	if err != nil && o.DryRun && readOnlyFS(err) {
		release, err = func() {}, nil
		if o.Log != nil {
			o.Log("%s", readOnlyNote(s.Dir()))
		}
	}
	if err != nil {
		return nil, err
	}
	defer release()
	g := &gcRun{s: s, ctx: ctx, o: o, mark: mark, rep: &GCReport{DryRun: o.DryRun}}
	defer g.noteUnreadable()
	start := time.Now()
	if !o.DryRun {
		// The reserve's room is this collection's to write its plan and
		// hiding index in, on a store full to the last block; it is set
		// aside again at the end, from what the collection freed.
		if r, ok := s.be.(backend.Reserver); ok {
			if err := r.Release(ctx); err != nil {
				return nil, fmt.Errorf("store %s: give up its reserve: %w", s.Dir(), err)
			}
			defer s.keepReserve()
		}
		// Sessions killed with -9 leave their registrations (and, with
		// the local backend, lock and holder files): probing them all
		// proves the dead ones dead and removes them, whether or not
		// this collection then hides anything.
		if _, err := s.liveSessions(ctx); err != nil {
			return nil, err
		}
		// The packs a killed collection's rewrite committed without
		// their index file (journaled under gcTempTag) are indexed now:
		// they hold copies of live blobs, so marking counts them, and the
		// copies nothing picks are dead and collected like any others.
		if _, _, err := s.adoptJournal(gcTempTag, false); err != nil {
			return nil, err
		}
	}
	// And those of write sessions that are not running, once the grace
	// given to their next run has passed (gc_leftovers.go); a dry run
	// counts them.
	if err := g.adoptLeftovers(); err != nil {
		return nil, err
	}
	plan, err := s.loadPlan(ctx)
	if err != nil {
		return nil, err
	}
	if plan != nil {
		done, err := g.finishPlan(plan)
		if err != nil || !done || o.DryRun {
			return g.rep, err
		}
		g.rep.Resumed = true
	}
	plan, err = g.markAndHide()
	if err != nil {
		return g.rep, err
	}
	if plan != nil {
		if _, err := g.finishPlan(plan); err != nil {
			return g.rep, err
		}
	}
	if !o.DryRun {
		if err := g.retireIndexFiles(); err != nil {
			return g.rep, err
		}
	}
	g.rep.SweepTime = time.Since(start) - g.rep.MarkTime
	g.rep.Freed += g.rep.TempRemoved
	return g.rep, nil
}

// noteUnreadable names, once per collection, the index files that did
// not decode: the store says so once per process (indexUnreadable), and
// a server runs many collections.
func (g *gcRun) noteUnreadable() {
	why := g.s.unreadableIndexFiles()
	names := slices.Sorted(maps.Keys(why))
	for _, name := range names {
		g.log("warning: index file %s does not decode (%s): left in place, neither merged nor removed; 'recall repair index' replaces it", name, why[name])
	}
	g.rep.IndexUnreadable = names
}

// lockGC takes the store lock shared and the GC lock exclusively. Both
// free a dead holder's lock only when stale (no backend.FreeDeadHere): a
// killed collection's consolidated index file still in flight could land
// after the next collection dropped its plan as never written, hiding
// packs no plan names.
func (s *Store) lockGC(ctx context.Context, wait time.Duration, dryRun bool) (func(), error) {
	l := &Lock{s: s, mode: backend.Shared}
	if err := l.take(ctx, "garbage collection", wait, nil); err != nil {
		return nil, err
	}
	info := s.lockInfo("garbage collection", "exclusive", "")
	deadline := time.Now().Add(wait)
	for {
		u, err := s.be.Lock(ctx, gcLock, backend.Exclusive, info)
		if err == nil {
			l.held = append(l.held, u)
			break
		}
		var busy *backend.LockedError
		if !errors.As(err, &busy) {
			l.release()
			return nil, fmt.Errorf("lock store %s for garbage collection: %w", s.Dir(), err)
		}
		if time.Now().After(deadline) {
			l.release()
			who, _ := lockHolder(busy)
			return nil, fmt.Errorf("%w in store %s (%s); wait for it to finish: %w", ErrGCRunning, s.Dir(), who, ErrLocked)
		}
		select {
		case <-ctx.Done():
			l.release()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// What a collection that died left being written is garbage now;
	// a dry run leaves it, as it changes nothing.
	if tc, ok := s.be.(backend.TempCleaner); ok && !dryRun {
		tc.CleanTemp(ctx, gcTempTag)
	}
	return l.release, nil
}

// packUse is what marking found of one indexed pack. Kept in an array by
// pack number: no map, and no list of the live places (a rewrite finds
// them again in the pack's header, by the same rule).
type packUse struct {
	live, dead           int32 // places
	liveDamaged          bool  // a live place is recorded damaged
	counted              bool  // the pack is examined
	liveBytes, deadBytes int64 // stored bytes of those places
}

// packUses is what marking found of every indexed pack.
type packUses struct {
	ids  []ID      // pack number -> id, as the index numbered them
	uses []packUse // by pack number
	num  map[ID]uint32
}

func (p *packUses) of(id ID) *packUse { return &p.uses[p.num[id]] }

// markAndHide does steps 1 to 3 and returns the plan, or nil when there
// is nothing to collect (or DryRun).
func (g *gcRun) markAndHide() (*gcPlan, error) {
	s := g.s
	t0 := time.Now()
	points, err := s.ListPoints()
	if err != nil {
		return nil, err
	}
	// A point is committed after the index files of its blobs: loaded
	// after the listing, they are all known to the marking.
	if err := s.Refresh(); err != nil {
		return nil, err
	}
	live := NewBlobSet()
	if err := g.mark(g.ctx, points, live); err != nil {
		return nil, err
	}
	g.rep.Points, g.rep.LiveBlobs = len(points), live.Len()
	g.log("marked %d blobs reachable from %d points", live.Len(), len(points))

	sizes := map[ID]int64{}
	if err := s.ListPacks(func(id ID, size int64) error { sizes[id] = size; return nil }); err != nil {
		return nil, err
	}
	if err := g.indexOrphanHides(sizes); err != nil {
		return nil, err
	}
	use, err := g.packUses(live, sizes)
	if err != nil {
		return nil, err
	}
	g.rep.MarkTime = time.Since(t0) // the points walked and every place sorted into live or dead
	var drop, rewrite, below []ID
	var liveBytes, deadKept int64
	for n := range use.uses {
		u, id := &use.uses[n], use.ids[n]
		if !u.counted {
			continue
		}
		g.rep.PacksMarked++
		g.rep.BytesMarked += sizes[id]
		liveBytes += u.liveBytes
		switch {
		case u.live == 0:
			drop = append(drop, id)
		case !u.liveDamaged && float64(u.deadBytes) >= g.o.RepackThreshold*float64(u.liveBytes+u.deadBytes):
			rewrite = append(rewrite, id)
		case !u.liveDamaged && u.deadBytes > 0:
			below = append(below, id)
			deadKept += u.deadBytes
		}
	}
	if g.o.MaxUnused >= 0 && g.o.RepackThreshold <= 1 {
		// Most dead first (by share, then by bytes; then by id, so a dry
		// run and the real run pick the same).
		slices.SortFunc(below, func(a, b ID) int {
			ua, ub := use.of(a), use.of(b)
			sa := float64(ua.deadBytes) / float64(ua.liveBytes+ua.deadBytes)
			sb := float64(ub.deadBytes) / float64(ub.liveBytes+ub.deadBytes)
			switch {
			case sa != sb:
				if sa > sb {
					return -1
				}
				return 1
			case ua.deadBytes != ub.deadBytes:
				if ua.deadBytes > ub.deadBytes {
					return -1
				}
				return 1
			}
			return bytes.Compare(a[:], b[:])
		})
		limit := int64(g.o.MaxUnused * float64(liveBytes))
		for _, id := range below {
			if deadKept <= limit {
				break
			}
			rewrite = append(rewrite, id)
			deadKept -= use.of(id).deadBytes
		}
	}
	sortIDs(drop)
	sortIDs(rewrite)
	if len(drop)+len(rewrite) == 0 {
		g.log("nothing to collect")
		if !g.o.DryRun && s.idx.wantsConsolidation() {
			return nil, g.consolidate(sizes)
		}
		return nil, nil
	}
	if g.o.DryRun {
		g.rep.PacksHidden = len(drop) + len(rewrite)
		g.rep.PacksDeleted = len(drop) + len(rewrite)
		g.rep.PacksRewritten = len(rewrite)
		for _, id := range append(slices.Clone(drop), rewrite...) {
			g.rep.BytesDeleted += sizes[id]
		}
		for _, id := range rewrite {
			g.rep.BlobsCopied += int(use.of(id).live)
			g.rep.BytesCopied += use.of(id).liveBytes
		}
		g.rep.BytesWritten = g.rep.BytesCopied
		g.rep.Freed = g.rep.BytesDeleted - g.rep.BytesWritten
		return nil, nil
	}
	hidden, written, err := g.rewrite(rewrite, use, live)
	if errors.Is(err, backend.ErrNoSpace) {
		return nil, g.noRoomToRewrite(rewrite, drop, use, sizes)
	}
	if err != nil {
		return nil, err
	}
	hidden = append(hidden, drop...)
	// A pack the rewrite wrote can have the very bytes, so the name, of a
	// candidate: the copies a killed collection's rewrite had committed,
	// indexed since and counted dead because the lookup picks the
	// original, are written again byte for byte. That file now holds the
	// live copies: it is not hidden, let alone deleted.
	hidden = slices.DeleteFunc(hidden, func(id ID) bool { return slices.Contains(written, id) })
	sortIDs(hidden)
	plan := &gcPlan{Version: gcPlanVersion, HiddenAt: time.Now().UTC()}
	for _, id := range hidden {
		plan.Hidden = append(plan.Hidden, id.String())
	}
	for _, id := range points {
		plan.Marked = append(plan.Marked, id.String())
	}
	if err := g.hide(plan, sizes); err != nil {
		return nil, err
	}
	g.rep.PacksHidden = len(hidden)
	return plan, nil
}

// indexOrphanHides indexes again the packs present that the index
// hides while no plan is pending (markAndHide runs after any plan is
// finished), in version 1 files, so they are counted and collected like
// any other pack, or kept. No plan would ever delete or index them again:
// a consolidated file that hides packs no plan names (a killed
// collection's file landing after its plan was dropped; a repair of an
// older version that removed a pending plan's index file, then wrote its
// hides again) hides them for good, every later consolidation with them.
// Indexed again they are only usable again, which is always safe.
func (g *gcRun) indexOrphanHides(sizes map[ID]int64) error {
	s := g.s
	x := s.idx
	var orphans []ID
	x.mu.RLock()
	for n := range x.hidden {
		if _, present := sizes[x.packs[n]]; present {
			orphans = append(orphans, x.packs[n])
		}
	}
	x.mu.RUnlock()
	if len(orphans) == 0 {
		return nil
	}
	sortIDs(orphans)
	if g.o.DryRun {
		g.log("%d packs are hidden with no plan: a collection indexes them again, then collects them like any others", len(orphans))
		return nil
	}
	count, _ := x.packShapes()
	var recs []packRecord
	for _, id := range orphans {
		entries, err := s.readPackHeaderSized(id, sizes[id])
		if err != nil {
			g.log("pack %s, hidden with no plan: %v (left as it is; run 'recall verify')", id, err)
			continue
		}
		recs = append(recs, packRecord{id: id, entries: entries})
	}
	for rest := recs; len(rest) > 0; {
		n := min(len(rest), indexEvery)
		if _, err := s.writeIndexFile(rest[:n]); err != nil {
			return storeWriteError(s.Dir(), err)
		}
		for _, p := range rest[:n] {
			if num, ok := x.packNumOf(p.id); ok && count[num] == 0 {
				x.addPlaces(p.id, p.entries)
			}
			x.unhide(p.id)
		}
		rest = rest[n:]
	}
	x.compact()
	if len(recs) > 0 {
		g.log("indexed again %d packs hidden with no plan", len(recs))
	}
	return nil
}

// noRoomToRewrite is the error of a rewrite the store had no room for:
// run to free space, a collection must first write the live blobs of the
// packs it rewrites (their old packs go only after), so it says how much
// room that takes, and that a collection which rewrites nothing (a repack
// threshold above 100%: the max-unused bound then rewrites nothing
// either) deletes the packs with no live blob without it.
func (g *gcRun) noRoomToRewrite(rewrite, drop []ID, use *packUses, sizes map[ID]int64) error {
	var need, dead, freeable int64
	for _, id := range rewrite {
		need += use.of(id).liveBytes
		dead += use.of(id).deadBytes
	}
	for _, id := range drop {
		freeable += sizes[id]
	}
	now := "which frees nothing here: every pack with dead data also holds live data"
	if len(drop) > 0 {
		now = fmt.Sprintf("which frees %s now (%d packs)", humanize.IBytes(uint64(freeable)), len(drop))
	}
	return fmt.Errorf("store %s is full: %w: garbage collection copies the live data of the %d packs it rewrites (%s dead in them) before it deletes them, "+
		"which needs about %s free; free that much, or run 'recall gc --repack-threshold 101': it rewrites nothing and deletes only the packs with no live data, %s; nothing was deleted",
		g.s.Dir(), backend.ErrNoSpace, len(rewrite), humanize.IBytes(uint64(dead)), humanize.IBytes(uint64(need)), now)
}

func sortIDs(ids []ID) { slices.SortFunc(ids, func(a, b ID) int { return bytes.Compare(a[:], b[:]) }) }

// packUses sorts every place the index holds into live and dead, per
// pack. A live blob with places in several packs is live in the one a
// lookup picks and dead in the others. Packs no index file covers (found
// by a pack walk, not yet indexed), packs a journal kept names, packs
// whose file is missing and packs only known from an earlier plan (no
// places) are left out.
func (g *gcRun) packUses(live *BlobSet, sizes map[ID]int64) (*packUses, error) {
	s := g.s
	s.fmu.Lock()
	unindexed := map[ID]bool{}
	for _, o := range s.orphans {
		unindexed[o.id] = true
	}
	// Packs a writer of this process finished that no index file covers
	// yet (journal.go): their blobs belong to a point not committed yet.
	for id := range s.unindexed {
		unindexed[id] = true
	}
	s.fmu.Unlock()
	x := s.idx
	x.mu.Lock()
	x.compactLocked()
	recent, base, packs := x.sorted, x.base, slices.Clone(x.packs)
	skip := make([]bool, len(packs))
	gone := make([]bool, len(packs)) // missing files the index still places blobs in
	for n := range skip {
		_, present := sizes[packs[n]]
		skip[n] = !present || unindexed[packs[n]] || g.journaled[packs[n]] || x.hidden[uint32(n)]
		gone[n] = !present && !x.hidden[uint32(n)]
	}
	x.mu.Unlock()
	missingLive := map[uint32]int{}
	use := &packUses{ids: packs, uses: make([]packUse, len(packs)), num: make(map[ID]uint32, len(packs))}
	for n, id := range packs {
		use.num[id] = uint32(n)
	}
	add := func(pack uint32, e PackEntry) {
		if int(pack) < len(packs) && gone[pack] {
			if isLive, _ := s.livePlace(live, pack, packs[pack], e); isLive {
				missingLive[pack]++
			}
		}
		if int(pack) >= len(packs) || skip[pack] {
			return
		}
		u := &use.uses[pack]
		u.counted = true
		isLive, damaged := s.livePlace(live, pack, packs[pack], e)
		u.liveDamaged = u.liveDamaged || damaged
		if isLive {
			u.live++
			u.liveBytes += int64(e.Length)
		} else {
			u.dead++
			u.deadBytes += int64(e.Length)
		}
	}
	for _, e := range recent {
		add(e.pack, e.packEntry())
	}
	if base != nil {
		err := base.scan(func(r rec2) error {
			add(base.packMap[r.pack], r.e)
			return g.ctx.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("read consolidated index: %w", err)
		}
	}
	// A pack file gone that points still need: said, not passed over
	// (collection neither needs nor mends it).
	for _, n := range slices.Sorted(maps.Keys(missingLive)) {
		g.log("pack %s is missing: the index places %d blobs the points use in it; run 'recall repair index', which names them, then back up the affected sources again and run 'recall repair points'", packs[n], missingLive[n])
	}
	return use, nil
}

// livePlace reports whether the place e of a blob in pack (number n) is
// the live one: the blob is live and this is the place a lookup picks (a
// live blob with places in several packs is dead in the others); and
// whether that live place is recorded damaged or unusable.
func (s *Store) livePlace(live *BlobSet, n uint32, pack ID, e PackEntry) (isLive, damaged bool) {
	if !live.Has(e.ID) {
		return false, false
	}
	x := s.idx
	l, found, usable := x.lookup(e.ID)
	isLive = found && (!usable || l.pack == n && l.off == e.Offset)
	damaged = isLive && (!usable || x.damagedAt(e.ID, pack))
	return isLive, damaged
}

// damagedAt reports whether the place of blob in pack is recorded damaged.
func (x *index) damagedAt(blob, pack ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, bad := x.damaged[blobAt{blob, pack}]
	return bad
}

// rewrite copies the live blobs of packs to new packs, checked and as
// stored (no re-compression), and indexes them. It returns the packs
// copied whole (a pack with a blob that fails its check is left alone:
// the failure is recorded as damage) and the packs it wrote.
func (g *gcRun) rewrite(packs []ID, use *packUses, live *BlobSet) (done, written []ID, err error) {
	if len(packs) == 0 {
		return nil, nil, nil
	}
	s := g.s
	w := s.newWriter(gcTempTag)
	// Its packs are journaled as a session's are: a collection killed
	// between a pack's commit and its index file leaves an entry, and the
	// next collection indexes the pack (GC, below) instead of leaving a
	// pack no index file covers, which nothing but an exclusive lock's
	// pack walk would ever find, and no collection ever collect.
	w.journal = gcTempTag
	var buf, scratch, plain []byte
	pending := 0 // blobs copied since the last sorting
	var lpBufs livePlacesBufs
	for _, id := range packs {
		if err := g.ctx.Err(); err != nil {
			w.Abort()
			return nil, nil, err
		}
		b, err := s.loadPack(id, 0, -1, buf)
		if err != nil {
			g.log("pack %s: %v (not rewritten)", id, err)
			continue
		}
		buf = b[:0]
		keep, err := g.livePlaces(id, use, b, live, &lpBufs)
		if err != nil {
			g.log("pack %s: %v (not rewritten)", id, err)
			continue
		}
		var bad []DamagedBlob
		for _, e := range keep {
			if int64(e.Offset)+int64(e.Length) > int64(len(b)) {
				bad = append(bad, DamagedBlob{Blob: e.ID, Pack: id, Reason: "the pack ends before the blob"})
				continue
			}
			// Checked on a copy: decryption works in place, and the copy
			// that goes to the new pack is the stored bytes.
			scratch = append(scratch[:0], b[e.Offset:e.Offset+e.Length]...)
			out, err := s.checkStored(e, scratch, plain[:0])
			if err != nil {
				bad = append(bad, DamagedBlob{Blob: e.ID, Pack: id, Reason: damageReason(err)})
			} else if cap(out) > cap(plain) {
				plain = out[:0]
			}
		}
		if len(bad) > 0 {
			s.recordDamage(bad...)
			g.log("pack %s: %d live blobs fail their check (not rewritten)", id, len(bad))
			continue
		}
		for _, e := range keep {
			if err := w.appendBlob(e.Type, e.ID, e.Comp, b[e.Offset:e.Offset+e.Length], int(e.RawLength)); err != nil {
				w.Abort()
				return nil, nil, err
			}
			g.rep.BlobsCopied++
			g.rep.BytesCopied += int64(e.Length)
		}
		done = append(done, id)
		if pending += len(keep); pending >= max(gcCompactBlobs, s.idx.sortedLen()/8) {
			// The places copied go to the index's recent part, whose
			// map costs ~200 B a place; sorted, ~52. Sorted in steps
			// of an eighth, so that the copying stays linear.
			s.idx.compact()
			pending = 0
		}
	}
	if err := w.Flush(); err != nil {
		return nil, nil, err
	}
	w.mu.Lock()
	written = slices.Clone(w.written)
	w.mu.Unlock()
	for _, id := range written {
		if size, err := s.be.Stat(g.ctx, packHandle(id)); err == nil {
			g.rep.BytesWritten += size
		}
	}
	g.rep.PacksRewritten = len(done)
	g.log("rewrote %d packs: %d live blobs copied", len(done), g.rep.BlobsCopied)
	return done, written, nil
}

// livePlaces returns the live places of a pack from its header (b is the
// whole pack), by the rule marking counted them with. When the count
// differs from marking's (the index changed meanwhile), the pack is left
// alone: it stays whole, which is always safe.
func (g *gcRun) livePlaces(id ID, use *packUses, b []byte, live *BlobSet, scratch *livePlacesBufs) ([]PackEntry, error) {
	h, err := packHeaderBytes(b)
	if err != nil {
		return nil, err
	}
	// A copy: an encrypted header is opened in place.
	scratch.hdr = append(scratch.hdr[:0], h[:len(h)-packTrailerLen]...)
	hdr := scratch.hdr
	entries, err := decodePackHeader(hdr, g.s.keys, int64(len(b)))
	if err != nil {
		return nil, err
	}
	n := use.num[id]
	u := use.uses[n]
	keep := scratch.keep[:0]
	defer func() { scratch.keep = keep[:0] }()
	var liveBytes int64
	for _, e := range entries {
		if isLive, damaged := g.s.livePlace(live, n, id, e); isLive {
			if damaged {
				return nil, errors.New("a live blob is recorded damaged")
			}
			keep = append(keep, e)
			liveBytes += int64(e.Length)
		}
	}
	if int32(len(keep)) != u.live || liveBytes != u.liveBytes {
		return nil, fmt.Errorf("its live blobs changed since marking (%d, marked %d)", len(keep), u.live)
	}
	return keep, nil
}

// sortedLen is the number of places in the index's sorted recent part.
func (x *index) sortedLen() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted)
}

// livePlacesBufs are livePlaces' buffers, kept from pack to pack.
type livePlacesBufs struct {
	hdr  []byte
	keep []PackEntry
}

// hide writes the plan, then the consolidated index file without the
// hidden packs' places, then the sessions running.
func (g *gcRun) hide(plan *gcPlan, sizes map[ID]int64) error {
	hide := map[ID]bool{}
	for _, h := range plan.Hidden {
		id, _ := ParseID(h)
		hide[id] = true
	}
	name, err := g.writeBase(hide, sizes, plan)
	if err != nil {
		return err
	}
	g.log("hid %d packs in index file %s", len(plan.Hidden), name)
	return g.recordSessions(plan)
}

// consolidate merges the index's recent part into a new consolidated
// file when a collection hides nothing. Backups write version 1 index
// files, which every process opening the store reads whole into memory
// (52 bytes a place); only a consolidated file is read in place. Before,
// only the exclusive lock consolidated, so a store that backups, prune
// and gc alone ever touched kept growing its recent part: 'recall points'
// took 2.8-3.7 s and 230 MB after four backups of a million files, 0.46 s
// once consolidated. A collection may write a base under the shared lock
// as its hide does (gc.go's package comment: sessions adopt it and keep
// the places they added since), so it does so at the thresholds the
// exclusive lock uses (index.go).
func (g *gcRun) consolidate(sizes map[ID]int64) error {
	name, err := g.writeBase(nil, sizes, nil)
	if err != nil {
		return err
	}
	g.rep.IndexConsolidated = true
	g.log("consolidated the index into index file %s", name)
	return nil
}

// writeBase writes a consolidated index file without the places of the
// packs hide names, superseding every index file loaded, makes it the
// index's base and records the files it supersedes for removal after
// the grace (retireIndexFiles). With a plan, the plan names the file and
// is saved before the file is committed.
func (g *gcRun) writeBase(hide map[ID]bool, sizes map[ID]int64, plan *gcPlan) (ID, error) {
	s := g.s
	if err := s.Refresh(); err != nil {
		return ID{}, err
	}
	// Packs with no place whose file is gone were deleted by an earlier
	// plan: their entries have done their work (readers dropped their
	// places) and go now.
	out := &leaveOut{hide: hide, keepEmpty: func(id ID) bool { _, ok := sizes[id]; return ok }}
	sup := s.loadedIndexIDs()
	var salt [16]byte
	rand.Read(salt[:])
	w, err := backend.Create(g.ctx, s.be, backend.Index)
	if err != nil {
		return ID{}, storeWriteError(s.Dir(), err)
	}
	name, err := s.idx.consolidateWithout(w, s.keys, salt, sup, out)
	if err != nil {
		w.Abort()
		return ID{}, fmt.Errorf("garbage collection: %w", err)
	}
	if plan != nil {
		plan.Index = name.String()
		if err := s.savePlan(g.ctx, plan); err != nil {
			w.Abort()
			return ID{}, err
		}
	}
	if err := w.Commit(g.ctx, name.String()); err != nil {
		return ID{}, storeWriteError(s.Dir(), err)
	}
	if err := s.idx.openBase(s.be, name.String(), s.keys); err != nil {
		return ID{}, err
	}
	s.markIndexLoaded(name.String())
	if err := s.recordRetire(g.ctx, name, sup); err != nil {
		return ID{}, err
	}
	return name, nil
}

// recordRetire records that the consolidated index file name supersedes
// the files sup, which a collection removes once the grace is over
// (retireIndexFiles).
func (s *Store) recordRetire(ctx context.Context, name ID, sup []ID) error {
	retire := gcRetire{Version: 1, At: time.Now().UTC()}
	for _, id := range sup {
		retire.Files = append(retire.Files, id.String())
	}
	rb, _ := json.Marshal(retire)
	if err := s.be.Save(ctx, gcHandle(gcRetirePrefix+name.String()), rb); err != nil {
		return storeWriteError(s.Dir(), err)
	}
	return nil
}

// recordSessions records in the plan the sessions running now, after its
// index file is durable: they are the ones that may have loaded the index
// before it.
func (g *gcRun) recordSessions(plan *gcPlan) error {
	live, err := g.s.liveSessions(g.ctx)
	if err != nil {
		return err
	}
	plan.Sessions = []string{}
	for _, si := range live {
		plan.Sessions = append(plan.Sessions, si.Name)
	}
	plan.SessionsKnown = true
	return g.s.savePlan(g.ctx, plan)
}

// finishPlan does step 4 for plan, waiting up to o.Wait for its sessions;
// it reports whether the plan is done (false: still pending, in the
// report).
func (g *gcRun) finishPlan(plan *gcPlan) (bool, error) {
	s := g.s
	if _, err := s.be.Stat(g.ctx, backend.Handle{Type: backend.Index, Name: plan.Index}); errors.Is(err, backend.ErrNotExist) || plan.Index == "" {
		// Killed before its index file was written: nothing was hidden.
		if g.o.DryRun {
			return true, nil
		}
		g.log("dropping a plan whose index file was never written")
		return true, s.removePlan(g.ctx)
	} else if err != nil {
		return false, fmt.Errorf("garbage collection plan: index file %s: %w", plan.Index, err)
	}
	if !plan.SessionsKnown && !g.o.DryRun {
		if err := g.recordSessions(plan); err != nil {
			return false, err
		}
	}
	waiting, err := g.waitSessions(plan.Sessions)
	if err != nil {
		return false, err
	}
	if len(waiting) > 0 || g.o.DryRun {
		g.rep.Pending, g.rep.WaitingFor = len(waiting) > 0, waiting
		g.rep.PacksHidden = len(plan.Hidden)
		if len(waiting) > 0 {
			g.log("%d hidden packs wait for %d write sessions to end", len(plan.Hidden), len(waiting))
		}
		return false, nil
	}
	marked := map[string]bool{}
	for _, p := range plan.Marked {
		marked[p] = true
	}
	points, err := s.ListPoints()
	if err != nil {
		return false, err
	}
	// After the listing: the index files of every point listed are
	// durable, so they are loaded.
	if err := s.Refresh(); err != nil {
		return false, err
	}
	var fresh []ID
	for _, p := range points {
		if !marked[p.String()] {
			fresh = append(fresh, p)
		}
	}
	// The hidden packs still present, and what they hold. Those an index
	// file lists again (a pack walk of a session that started before the
	// hide) stay.
	count, _ := s.idx.packShapes()
	type hiddenPack struct {
		id      ID
		size    int64
		placed  bool // this process knows its places (hidden: for reads only)
		entries []PackEntry
	}
	var present []hiddenPack
	for _, h := range plan.Hidden {
		if err := g.ctx.Err(); err != nil {
			return false, err
		}
		id, err := ParseID(h)
		if err != nil {
			return false, fmt.Errorf("%w: garbage collection plan: pack %q", ErrCorrupt, h)
		}
		size, err := s.be.Stat(g.ctx, packHandle(id))
		if errors.Is(err, backend.ErrNotExist) {
			continue // removed before a kill
		}
		if err != nil {
			return false, fmt.Errorf("stat pack %s: %w", id, err)
		}
		n, known := s.idx.packNumOf(id)
		if known && !s.idx.isHidden(n) {
			// An index file lists it again (a session that started
			// before the hide indexed it from its header, or wrote a
			// pack of the same bytes).
			g.rep.PacksRestored++
			continue
		}
		hp := hiddenPack{id: id, size: size, placed: known && count[n] > 0}
		if len(fresh) > 0 {
			if hp.entries, err = s.readPackHeaderSized(id, size); err != nil {
				return false, fmt.Errorf("garbage collection: read header of hidden pack %s: %w (it stays; run 'recall verify')", id, err)
			}
		}
		present = append(present, hp)
	}
	live := NewBlobSet()
	if len(fresh) > 0 {
		// The new points may need trees and chunks only the hidden packs
		// hold: marking reads them there (their places stay hidden, so
		// Has below answers for the rest of the store).
		for _, hp := range present {
			if !hp.placed {
				s.idx.addPlaces(hp.id, hp.entries)
			}
		}
		if err := g.mark(g.ctx, fresh, live); err != nil {
			return false, err
		}
	}
	var deleted []ID
	defer func() { s.idx.dropPlaces(deleted) }() // what marking read them for
	for _, hp := range present {
		restore := false
		for _, e := range hp.entries {
			if live.Has(e.ID) && !s.Has(e.ID) {
				restore = true
				break
			}
		}
		if restore {
			if _, err := s.writeIndexFile([]packRecord{{id: hp.id, entries: hp.entries}}); err != nil {
				return false, storeWriteError(s.Dir(), err)
			}
			s.idx.unhide(hp.id)
			g.rep.PacksRestored++
			continue
		}
		if err := s.be.Remove(g.ctx, packHandle(hp.id)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return false, fmt.Errorf("remove pack %s: %w", hp.id, err)
		}
		deleted = append(deleted, hp.id)
		g.rep.PacksDeleted++
		g.rep.BytesDeleted += hp.size
	}
	g.rep.Freed = g.rep.BytesDeleted - g.rep.BytesWritten
	g.log("deleted %d packs (%d bytes), indexed %d again", g.rep.PacksDeleted, g.rep.BytesDeleted, g.rep.PacksRestored)
	return true, s.removePlan(g.ctx)
}

func (s *Store) removePlan(ctx context.Context) error {
	if err := s.be.Remove(ctx, gcHandle(gcPlanName)); err != nil && !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("remove garbage collection plan: %w", err)
	}
	return nil
}

// dropPlaces removes from the recent part every place of packs, which
// then count as listed with no place (as the base lists hidden packs).
func (x *index) dropPlaces(packs []ID) {
	if len(packs) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	drop := map[uint32]bool{}
	for _, id := range packs {
		if n, ok := x.packNum[id]; ok {
			drop[n] = true
			x.hidden[n], x.hiddenRead[n] = true, true
		}
	}
	x.compactLocked()
	x.sorted = slices.DeleteFunc(slices.Clone(x.sorted), func(e ientry) bool { return drop[e.pack] })
	x.count = len(x.sorted)
	if x.base != nil {
		x.count += x.base.count
	}
}

// packNumOf returns the number of a pack the index knows.
func (x *index) packNumOf(id ID) (uint32, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n, ok := x.packNum[id]
	return n, ok
}

// waitSessions returns the sessions of names still running after waiting
// up to o.Wait for them.
func (g *gcRun) waitSessions(names []string) ([]SessionInfo, error) {
	deadline := time.Now().Add(g.o.Wait)
	for {
		var running []SessionInfo
		for _, name := range names {
			info, alive, err := g.s.probeSession(g.ctx, name)
			if err != nil {
				return nil, err
			}
			if alive {
				running = append(running, SessionInfo{Name: name, LockInfo: info})
			}
		}
		if len(running) == 0 || time.Now().After(deadline) {
			return running, nil
		}
		names = names[:0]
		for _, r := range running {
			names = append(names, r.Name)
		}
		select {
		case <-g.ctx.Done():
			return nil, g.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retireIndexFiles removes the index files superseded longer ago than the
// grace period, and their records.
func (g *gcRun) retireIndexFiles() error {
	s := g.s
	var names []string
	err := backend.ListNames(g.ctx, s.be, backend.GC, func(name string) error {
		if strings.HasPrefix(name, gcRetirePrefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list garbage collection records: %w", err)
	}
	base := s.idx.baseName()
	unreadable := s.unreadableIndexFiles()
	for _, name := range names {
		b, err := s.be.Load(g.ctx, gcHandle(name), 0, -1, nil)
		if err != nil {
			return fmt.Errorf("read garbage collection record %s: %w", name, err)
		}
		var r gcRetire
		if err := json.Unmarshal(b, &r); err != nil || r.Version != 1 {
			g.log("record %s unreadable (left alone)", name)
			continue
		}
		if g.o.IndexGrace > 0 && time.Since(r.At) < g.o.IndexGrace {
			continue
		}
		for _, f := range r.Files {
			if f == base {
				continue // never the file in use
			}
			if _, bad := unreadable[f]; bad {
				// Not an index file this store could read: nothing of it
				// was merged (a record an older recall wrote may list
				// it), so it is not superseded; noteUnreadable names it.
				continue
			}
			err := s.be.Remove(g.ctx, backend.Handle{Type: backend.Index, Name: f})
			if err == nil {
				g.rep.IndexFilesRemoved++
			} else if !errors.Is(err, backend.ErrNotExist) {
				return fmt.Errorf("remove superseded index file %s: %w", f, err)
			}
		}
		if err := s.be.Remove(g.ctx, gcHandle(name)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("remove garbage collection record %s: %w", name, err)
		}
	}
	return nil
}

// unlikeHidden returns the header of p, first changing p when, as it is,
// it would be named like a pack a garbage collection plan hides.
//
// A plaintext pack is named by its header, so a backup that stores again
// exactly the blobs of a hidden pack (the same data, forgotten and backed
// up anew) would write a file of the same name: the collection, which
// cannot tell the two apart, would delete it under the new point. Such a
// pack gets one more blob, 32 random bytes that no point refers to, so its
// name differs. Encrypted headers carry a random nonce: their names never
// repeat. When the plan cannot be read the blob is added anyway.
func (w *Writer) unlikeHidden(p *packBuilder, hdr []byte) []byte {
	if w.s.keys.aead != nil || len(p.entries) == 0 {
		return hdr
	}
	plan, err := w.s.loadPlan(bg)
	if err == nil && plan == nil {
		return hdr
	}
	if err == nil {
		if _, hidden := slices.BinarySearch(plan.Hidden, packName(hdr).String()); !hidden {
			return hdr
		}
	}
	filler := make([]byte, 32)
	rand.Read(filler)
	if _, err := p.f.Write(filler); err != nil {
		return hdr // the header's write fails the same way and says why
	}
	p.entries = append(p.entries, PackEntry{Type: p.entries[0].Type, Comp: compNone, Offset: uint32(p.size), Length: 32, RawLength: 32, ID: w.s.Hash(filler)})
	p.size += 32
	return encodePackHeader(p.entries, w.s.keys)
}

// Hidden packs (see index.hidden). A reader keeps reading them (a point
// committed by a session that started before the hide may need them until
// the collection indexes them again); a writer never deduplicates against
// them.

// isHidden reports whether pack number n is hidden.
func (x *index) isHidden(n uint32) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.hidden[n]
}

// unhide makes a hidden pack's places usable for deduplication again.
func (x *index) unhide(id ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if n, ok := x.packNum[id]; ok {
		delete(x.hidden, n)
	}
}

// hiddenUnread reports whether a hidden pack's header is yet to be read
// by a pack walk: a reader that misses a blob walks the packs again.
func (x *index) hiddenUnread() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for n := range x.hidden {
		if !x.hiddenRead[n] {
			return true
		}
	}
	return false
}

// readHidden is the pack walk's part for hidden packs: those present
// whose places this process does not know are indexed from their headers
// (hidden still: for reads only), so a point that needs them reads.
func (s *Store) readHidden(sizes map[ID]int64) {
	x := s.idx
	x.mu.RLock()
	var todo []uint32
	for n := range x.hidden {
		if !x.hiddenRead[n] {
			todo = append(todo, n)
		}
	}
	x.mu.RUnlock()
	if len(todo) == 0 {
		return
	}
	count, _ := x.packShapes()
	for _, n := range todo {
		id := x.packID(n)
		if size, present := sizes[id]; present && count[n] == 0 {
			if entries, err := s.readPackHeaderSized(id, size); err == nil {
				x.addPlaces(id, entries)
			}
		}
		x.mu.Lock()
		x.hiddenRead[n] = true
		x.mu.Unlock()
	}
}
