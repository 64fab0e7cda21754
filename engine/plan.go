package engine

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"golang.org/x/sys/unix"
)

// Read planning: restore reads by pack, not by file.
//
// The walk of a point creates the directories and, instead of reading
// the files' chunks in tree order, notes for every chunk the places that
// need it (file, offset) under the pack that holds it (planEntry). The
// files are created ahead of the readers by creator goroutines, or by
// the first reader to need them (restore_create.go): a create costs the
// file system far more than noting a place. A plan is
// carried out pack by pack, in the order the walk first needed each pack,
// a few packs at a time: the packs about to be read are first announced
// to the store (warmPacks, for cold tiers), each pack is read once, front
// to back (chunkstore's LoadPackBlobs: sorted by offset, a few large
// ranged reads), and each chunk read is written to every place that needs
// it, a chunk shared by several files (or several times in one) read
// once. This is the order tape and object storage want, and on a disk it
// turns a restore into a few large sequential reads per pack. restic's
// restorer works the same way.
//
// The plan is handed over in batches of planLimit places, and the walk
// goes on (loading trees, planning) while they are read. A point of fewer
// places, some 29,000 small files or 2^18 chunks, is planned whole before
// its first read, and each pack is read once. A pack whose blobs two
// batches need is visited by both, each reading the blobs its batch needs
// and the gaps between them (chunkstore's packReadGap). Backups write the
// chunks of several files, from several directories, side by side in a
// pack (savers and walks run beside each other), so a small first batch
// would not start reading sooner for long: with batches of 512 places
// growing twice over, a restore of the bench's set visited its 110 packs
// 424 times and read 2.7 GiB of a 1.8 GiB store, and took 20% longer
// (bench/README.md). The readers are one pool fed batch after batch, so
// none waits at a batch's end; the walk waits only while two batches'
// places are handed over and not read yet. A walk that is slow to plan
// (trees loaded from an object store, one round trip each) does not keep
// the readers idle: when they have had nothing to read for planPatience,
// the batch being planned is handed over as it is.
//
// A point larger than one batch: a pack whose blobs two batches need
// would be visited by both, each reading the gaps between its blobs, the
// other batch's among them. A restore of the bench set in batches of 2^16
// places read 2,352 MiB where one batch reads 1,845 MiB (in batches of
// 2^14 2,748 MiB). So a scan runs ahead of the walk over the same trees
// (scanReach, a part of walkBeside), noting for each pack the last chunk
// of the walk that needs it. When a full batch is handed over, the walk first lets the scan get
// reachHorizon batches ahead, unless the readers are down to their last
// packs (readersHungry: over an object store the scan loads trees no
// faster than the walk does). Packs a later chunk needs are then held
// back and carried into the next batch with their places, the fewest
// first, within half a batch's places (holdBack). The scan costs a second
// load of each tree and an index lookup per chunk, so it runs only for a
// point whose statistics say it does not fit in one batch, and stops when
// the walk ends. bench/README.md has the bytes read with and without it.
//
// Memory: a planned chunk costs one planEntry of 56 bytes per place that
// needs it (its id, the file, its byte range), and a file in the plan its
// openFile, its path and the metadata of its node (not its chunk list),
// some 400 bytes, counted as filePlaces places. Places in flight are
// bounded (two batches, and what was carried into the last), and the
// batch being planned holds at most its own places and half a batch
// carried, so the plan holds at most four batches' places, about 56 MiB,
// however large the point: 2^18 places are 2^18 chunks (some 380 GiB at
// the mean chunk size) or 29,000 small files. The scan adds an entry per
// pack of the point (some 60 bytes; a 10 TB store of 16 MiB packs has
// 600,000).

// planLimit bounds the places of a batch.
const (
	planLimit  = 1 << 18
	filePlaces = 8
)

// batchPlaces is planLimit, lowered by tests.
var batchPlaces = planLimit

// planPatience is how long idle readers wait for a batch being planned
// (a variable for tests).
var planPatience = 500 * time.Millisecond

// planEntry is one place that needs a chunk: bytes [off, end) of a file.
type planEntry struct {
	id       chunkstore.ID
	of       *openFile
	off, end int64
}

// packPlan is what one pack must give to one batch.
type packPlan struct {
	pack  chunkstore.ID
	ents  []planEntry
	batch *planBatch
}

// planBatch is a batch handed over to be read.
type planBatch struct {
	packs   []*packPlan
	n       int          // its places (planFile, planChunk)
	carried int          // of n, the places carried into it (holdBack)
	left    atomic.Int64 // its packs not read yet
}

// packReach is what scanReach knows of where the walk will need packs.
type packReach struct {
	mu     sync.Mutex
	last   map[chunkstore.ID]int64 // the place (as restorer.walkPlaces counts) of the last chunk known to need the pack
	places int64                   // places scanned (files and chunks, as the plan counts them)
	done   bool                    // the scan ended
}

// reachHorizon is how many batches' places the scan is let get ahead of
// the walk before a full batch is handed over: a pack needed again
// further on is read again.
const reachHorizon = 4

// waitAhead waits until the scan has got reachHorizon batches past
// places, or ended, or idle says the readers have waited long enough (a
// scan that loads trees from an object store is no faster than the walk).
func (pr *packReach) waitAhead(places int64, idle func() bool) {
	if pr == nil {
		return
	}
	for {
		pr.mu.Lock()
		ahead := pr.done || pr.places >= places+reachHorizon*int64(batchPlaces)
		pr.mu.Unlock()
		if ahead || idle() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reachScan, when false (tests), keeps the scan from running.
var reachScan = true

// scanReach is the part of the walk beside a restore (walkBeside) that
// tells handOver which packs later batches need (see above), for a point
// of more places than a batch; nil for a smaller one.
func (rs *restorer) scanReach(p *Point) *besideVisitor {
	est := p.Stats.Files*(filePlaces+1) + p.Stats.Bytes>>20 // a small file is one chunk, the mean chunk 1 MiB
	if !reachScan || est <= int64(batchPlaces) {
		return nil
	}
	pr := &packReach{last: map[chunkstore.ID]int64{}}
	rs.reach = pr
	var packs []chunkstore.ID
	return &besideVisitor{
		visit: func(n *Node, follower bool) {
			if follower {
				return // the restore plans a hard-link group's content once
			}
			// In pieces: an image's node can hold millions of extents,
			// and the walk is told of them as they are looked up. The
			// places are counted as the walk counts them: a file's
			// before its first chunk's (planFile, planChunk).
			ext, first := n.Extents, true
			for len(ext) > 0 {
				k := min(len(ext), 4096)
				packs = packs[:0]
				for _, e := range ext[:k] {
					if !e.Hole {
						packs = append(packs, packOf(rs.r, e.ID))
					}
				}
				ext = ext[k:]
				pr.mu.Lock()
				if first && len(packs) > 0 {
					pr.places += filePlaces
					first = false
				}
				for _, pack := range packs {
					pr.places++
					pr.last[pack] = pr.places
				}
				pr.mu.Unlock()
			}
		},
		end: func(bool) {
			pr.mu.Lock()
			pr.done = true
			pr.mu.Unlock()
		},
	}
}

// needsLater reports whether the walk, now at place pos, is known to
// need pack again.
func (pr *packReach) needsLater(pack chunkstore.ID, pos int64) bool {
	if pr == nil || pack.IsZero() {
		return false
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.last[pack] > pos
}

// readPlan is the batch being planned: the packs in the order the walk
// first needed them.
type readPlan struct {
	byPack map[chunkstore.ID]*packPlan
	batch  *planBatch
	limit  int
	// retryAt: an idle hand-over found every pack needed later; the next
	// one looks again when the batch has this many places.
	retryAt int
}

// planReader reads the batches handed over: a feeder queues their packs,
// batch after batch, for a pool of readers, so the readers go from one
// batch to the next without waiting, and the walk waits only while two
// batches' places are handed over and not yet read.
type planReader struct {
	batches  chan *planBatch
	work     chan *packPlan
	readers  sync.WaitGroup
	mu       sync.Mutex
	cond     sync.Cond
	inFlight int
	idle     time.Time // since when inFlight is 0 (handOverIfIdle)
	// packsLeft: packs handed over and not read yet.
	packsLeft atomic.Int64
}

func (p *readPlan) add(pack chunkstore.ID, e planEntry) {
	if p.byPack == nil {
		p.byPack = map[chunkstore.ID]*packPlan{}
	}
	if p.batch == nil {
		p.batch = &planBatch{}
	}
	pp := p.byPack[pack]
	if pp == nil {
		pp = &packPlan{pack: pack, batch: p.batch}
		p.byPack[pack] = pp
		p.batch.packs = append(p.batch.packs, pp)
	}
	pp.ents = append(pp.ents, e)
	p.batch.n++
}

// startReading starts the feeder and the readers.
func (rs *restorer) startReading() {
	pr := &rs.reading
	pr.cond.L = &pr.mu
	// At most two batches are handed over and not read (handOver), and
	// the feeder holds one: a hand-over never waits for the channel.
	pr.batches = make(chan *planBatch, 3)
	// A few packs queued ahead: the creators work on their files
	// (restore_create.go) before a reader takes them.
	pr.work = make(chan *packPlan, rs.opts.Workers)
	rs.plan.limit = batchPlaces
	pr.idle = time.Now()
	go func() {
		for b := range pr.batches {
			rs.feed(b)
		}
		close(pr.work)
	}()
	for range rs.opts.Workers {
		pr.readers.Add(1)
		go func() {
			defer pr.readers.Done()
			fc := &fileCache{rs: rs, fds: map[*openFile]int{}}
			for pp := range pr.work {
				rs.readPack(pp, fc)
				fc.closeAll()
				rs.packRead(pp)
			}
		}()
	}
}

// planFile counts a file whose chunks are about to be planned.
func (rs *restorer) planFile() {
	if rs.plan.batch == nil {
		rs.plan.batch = &planBatch{}
	}
	rs.plan.batch.n += filePlaces
	rs.walkPlaces += filePlaces
}

// planChunk adds one stored extent of a file to the plan, and hands the
// batch over when it is full.
func (rs *restorer) planChunk(of *openFile, id chunkstore.ID, off, end int64) {
	rs.walkPlaces++
	rs.plan.add(packOf(rs.r, id), planEntry{id: id, of: of, off: off, end: end})
	if rs.plan.batch.n >= rs.plan.limit {
		rs.handOver(false)
	} else if rs.plan.batch.n%64 == 0 {
		rs.handOverIfIdle()
	}
}

// handOverIfIdle hands the batch over before it is full when the readers
// have had nothing to read for planPatience: a walk slow to plan keeps
// them busy with what it has. Called as the walk goes (planChunk, and
// after each directory's tree is loaded).
func (rs *restorer) handOverIfIdle() {
	b := rs.plan.batch
	if b == nil || len(b.packs) == 0 || b.n < rs.plan.retryAt {
		return
	}
	if rs.readersIdle() {
		rs.handOver(false)
	}
}

// readersIdle reports whether the readers have had nothing to read for
// planPatience.
func (rs *restorer) readersIdle() bool {
	pr := &rs.reading
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.inFlight == 0 && time.Since(pr.idle) >= planPatience
}

// readersHungry reports whether the walk should stop waiting for the scan
// (waitAhead): the readers are down to their last packs, or have had
// nothing at all to read for planPatience.
func (rs *restorer) readersHungry() bool {
	left := rs.reading.packsLeft.Load()
	if left == 0 {
		return rs.readersIdle()
	}
	return left <= hungryAt(rs.opts.Workers)
}

// hungryAt is how few packs left the readers are down to when the walk
// stops waiting for the scan: a pack each (a variable for tests).
var hungryAt = func(workers int) int64 { return int64(workers) }

// handOver gives the batch planned so far to the readers, waiting while
// two batches' places are in flight, and starts the next batch. The
// packs a later chunk of the walk is known to need are carried into the
// next batch (holdBack) unless final; when that leaves nothing to read,
// the batch is handed over only if full.
func (rs *restorer) handOver(final bool) {
	b := rs.plan.batch
	next := readPlan{limit: batchPlaces}
	if b == nil || len(b.packs) == 0 {
		rs.plan = next
		return
	}
	if !final {
		if b.n >= rs.plan.limit {
			// What packs the batches after this one need decides what
			// it carries: with a full batch, the walk waits for the scan
			// to see that far (an idle hand-over feeds idle readers
			// now).
			rs.reach.waitAhead(rs.walkPlaces, rs.readersHungry)
		}
		carry, weight := rs.holdBack(b)
		if len(carry) == len(b.packs) && b.n < rs.plan.limit {
			// Nothing to read yet: the batch goes on, and an idle
			// hand-over looks again once it has grown.
			rs.plan.retryAt = b.n + max(64, batchPlaces/16)
			return
		}
		if len(carry) > 0 {
			// The next batch holds what is carried beside a batch's
			// places of its own.
			nb := &planBatch{n: weight, carried: weight}
			next.limit += weight
			next.batch, next.byPack = nb, make(map[chunkstore.ID]*packPlan, len(carry))
			kept := b.packs[:0]
			for _, pp := range b.packs {
				if carry[pp] {
					pp.batch = nb
					nb.packs = append(nb.packs, pp)
					next.byPack[pp.pack] = pp
				} else {
					kept = append(kept, pp)
				}
			}
			clear(b.packs[len(kept):])
			b.packs = kept
			// weight may count a file whose places an earlier batch
			// counted: a batch handed over is never counted as empty.
			b.n = max(len(b.packs), b.n-weight)
			carried.Add(int64(len(carry)))
		}
	}
	rs.plan = next
	if len(b.packs) == 0 {
		return
	}
	pr := &rs.reading
	pr.mu.Lock()
	// A batch ends with the place that fills it, and a file's places
	// come before its first chunk's: it may pass the limit by those, and
	// by what was carried into it.
	for pr.inFlight > 0 && pr.inFlight+b.n > 2*(batchPlaces+filePlaces)+b.carried {
		pr.cond.Wait()
	}
	pr.inFlight += b.n
	pr.mu.Unlock()
	b.left.Store(int64(len(b.packs)))
	pr.packsLeft.Add(int64(len(b.packs)))
	handedOver.Add(1)
	pr.batches <- b
}

// holdBack picks the packs of b that a later chunk of the walk is known
// to need, the ones of fewest places first, while what they hold stays
// within half a batch: their places, and filePlaces for each file they
// keep in memory. It returns them with that weight.
func (rs *restorer) holdBack(b *planBatch) (map[*packPlan]bool, int) {
	var later []*packPlan
	for _, pp := range b.packs {
		if rs.reach.needsLater(pp.pack, rs.walkPlaces) {
			later = append(later, pp)
		}
	}
	if len(later) == 0 {
		return nil, 0
	}
	slices.SortStableFunc(later, func(x, y *packPlan) int { return cmp.Compare(len(x.ents), len(y.ents)) })
	carry := map[*packPlan]bool{}
	files := map[*openFile]bool{}
	weight, room := 0, batchPlaces/2
	for _, pp := range later {
		w := len(pp.ents)
		for _, e := range pp.ents {
			if !files[e.of] {
				w += filePlaces
			}
		}
		if weight+w > room {
			break
		}
		for _, e := range pp.ents {
			files[e.of] = true
		}
		weight += w
		carry[pp] = true
	}
	return carry, weight
}

// carried and handedOver count the packs carried into a next batch and
// the batches handed over, so tests can tell.
var carried, handedOver atomic.Int64

// packRead counts a pack of a batch as read; the last one frees the
// batch's places.
func (rs *restorer) packRead(pp *packPlan) {
	b := pp.batch
	pp.ents = nil
	rs.reading.packsLeft.Add(-1)
	if b.left.Add(-1) != 0 {
		return
	}
	pr := &rs.reading
	pr.mu.Lock()
	pr.inFlight -= b.n
	if pr.inFlight == 0 {
		pr.idle = time.Now()
	}
	pr.mu.Unlock()
	pr.cond.Broadcast()
}

// finishReading hands over the last batch and waits until every batch is
// read. Every planned place is then accounted for (written, found
// damaged, or given up on when ctx is done), so every file is finished.
func (rs *restorer) finishReading() {
	rs.handOver(true)
	close(rs.reading.batches)
	rs.reading.readers.Wait()
}

// feed announces a batch's packs to the store and queues them for the
// readers in the planned order.
func (rs *restorer) feed(b *planBatch) {
	ids := make([]chunkstore.ID, 0, len(b.packs))
	for _, pp := range b.packs {
		if !pp.pack.IsZero() { // chunks the index has no place for
			ids = append(ids, pp.pack)
		}
	}
	if err := warmPacks(rs.ctx, rs.r, ids); err != nil {
		for _, pp := range b.packs {
			for _, e := range pp.ents {
				rs.markDamagedRange(e.of.rel, e.off, e.end, err)
				rs.extentDone(nil, e.of)
			}
			rs.packRead(pp)
		}
		return
	}
	// The largest first: the readers finish a batch together, and the
	// last one of a restore is not left with one large pack while the
	// other cores wait. A pack is still read once, front to back.
	slices.SortStableFunc(b.packs, func(x, y *packPlan) int { return cmp.Compare(y.bytes(), x.bytes()) })
	for _, pp := range b.packs {
		rs.createFilesOf(pp)
		rs.reading.work <- pp
	}
}

// bytes is what the pack gives to its places: the work of writing them.
func (pp *packPlan) bytes() int64 {
	var n int64
	for _, e := range pp.ents {
		n += e.end - e.off
	}
	return n
}

// readPack reads what the plan needs of one pack and writes each chunk to
// its places.
func (rs *restorer) readPack(pp *packPlan, fc *fileCache) {
	ents := pp.ents
	slices.SortFunc(ents, func(a, b planEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	ids := make([]chunkstore.ID, 0, len(ents))
	for i, e := range ents {
		if i == 0 || e.id != ents[i-1].id {
			ids = append(ids, e.id)
		}
	}
	if rs.ctx.Err() == nil {
		// Only a done ctx stops the pass; what it did not hand over is
		// given up on below.
		_ = packReader(rs.ctx, rs.r, pp.pack, ids, func(id chunkstore.ID, data []byte, err error) {
			if errors.Is(err, chunkstore.ErrNotFound) {
				// The pack went after the plan was made: garbage
				// collection rewrote it while the restore ran. The
				// chunk is read from wherever the index now places it
				// (ReadChunk refreshes the index); before, it was
				// reported damaged, and verify found nothing.
				if d, rerr := rs.r.ReadChunk(id, nil); rerr == nil {
					data, err = d, nil
				}
			}
			i, _ := slices.BinarySearchFunc(ents, id, func(e planEntry, id chunkstore.ID) int { return bytes.Compare(e.id[:], id[:]) })
			for ; i < len(ents) && ents[i].id == id; i++ {
				if ents[i].of != nil {
					rs.writeChunk(fc, &ents[i], data, err)
					ents[i].of = nil
				}
			}
		})
	}
	for _, e := range ents {
		if e.of != nil {
			rs.extentDone(fc, e.of)
		}
	}
}

// writeChunk writes one chunk (or records why it cannot) at one place.
func (rs *restorer) writeChunk(fc *fileCache, e *planEntry, data []byte, err error) {
	of := e.of
	if of.started.CompareAndSwap(false, true) {
		rs.opts.Progress.begin(of.rel)
	}
	if of.late {
		rs.createLate(of, fc)
	}
	switch {
	case of.failed:
		// Not created: the restore stops with the create's error.
	case err != nil:
		rs.markDamagedRange(of.rel, e.off, e.end, err)
	case int64(len(data)) != e.end-e.off:
		rs.markDamagedRange(of.rel, e.off, e.end, fmt.Errorf("chunk has %d bytes", len(data)))
	default:
		fd, err := fc.get(of)
		if err == nil {
			err = pwriteFull(fd, data, e.off)
		}
		switch {
		case rs.stopFull(of.path, err):
			// The restore stops, and the file, cut short, goes
			// (dropCut); the error names the first.
		case err != nil:
			rs.markDamaged(of.rel, fmt.Errorf("write: %w", err))
		default:
			of.wrote.Add(1)
			of.written.Add(int64(len(data)))
			rs.bytes.Add(int64(len(data)))
			rs.opts.Progress.addBytes(int64(len(data)))
		}
	}
	rs.extentDone(fc, of)
}

// extentDone counts one planned extent of of as handled; the last one
// finishes the file.
func (rs *restorer) extentDone(fc *fileCache, of *openFile) {
	if of.left.Add(-1) != 0 {
		return
	}
	if fc != nil {
		fc.release(of)
	}
	rs.finishFile(of)
}

// fileCache holds one reader's descriptors of the files it writes to. A
// restore may have more files in work than a process may open, so past
// restorer.holdMax a file is closed after it is created and opened again
// by each reader that writes to it, a few at a time; a pack's chunks
// mostly come in file order, so a few descriptors serve a pack.
//
// Descriptors are plain ones (unix.Open, not os.File): a restore of many
// small files may open each twice, and os.File's poller registration and
// blocking-mode switches cost more than the open itself.
type fileCache struct {
	rs    *restorer
	fds   map[*openFile]int
	order []*openFile // oldest first
}

const fileCacheSize = 16

// get returns a descriptor of of for writing. A device being restored to,
// and a file held open since its creation (restorer.held), are open
// throughout; another file is opened again by path, never through a
// symlink, and must still be the file the restore created (a directory
// merged into with --overwrite may be writable by others).
func (c *fileCache) get(of *openFile) (int, error) {
	if of.fd >= 0 {
		return of.fd, nil
	}
	if fd, ok := c.fds[of]; ok {
		return fd, nil
	}
	if len(c.order) >= fileCacheSize {
		c.release(c.order[0])
	}
	// Opened in its directory beneath the target, never through a
	// symlink (restore_beneath.go), and checked to be the file made.
	fd, err := c.rs.reopen(of)
	if err != nil {
		return -1, err
	}
	c.fds[of] = fd
	c.order = append(c.order, of)
	return fd, nil
}

// release closes this reader's descriptor of of, if it has one; an error
// of the close (a write the file system reports late) damages the file.
func (c *fileCache) release(of *openFile) {
	fd, ok := c.fds[of]
	if !ok {
		return
	}
	delete(c.fds, of)
	c.order = slices.DeleteFunc(c.order, func(o *openFile) bool { return o == of })
	if err := unix.Close(fd); err != nil {
		c.rs.markDamaged(of.rel, fmt.Errorf("close: %w", err))
	}
}

// retryEINTR calls fn until it is not interrupted (a signal, such as the
// Go runtime's preemption, on a network or FUSE file system).
func retryEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// pwriteFull writes all of b at off.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := retryEINTR(func() (int, error) { return unix.Pwrite(fd, b, off) })
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("write at %d: %w", off, io.ErrShortWrite)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func (c *fileCache) closeAll() {
	for len(c.order) > 0 {
		c.release(c.order[0])
	}
}

// The store seen from read planning: the few calls restore makes,
// kept here so that a change of the reader type touches only them.

// packOf names the pack a chunk is read from; the zero id when the index
// has no place for it (its read then says why).
func packOf(r *Reader, id chunkstore.ID) chunkstore.ID {
	pack, _ := r.st.PackOf(id)
	return pack
}

// loadPackBlobs reads the chunks ids of one pack in one pass (see
// chunkstore's LoadPackBlobs).
func loadPackBlobs(ctx context.Context, r *Reader, pack chunkstore.ID, ids []chunkstore.ID, fn func(id chunkstore.ID, data []byte, err error)) error {
	return r.st.LoadPackBlobs(ctx, pack, ids, fn)
}

// packReader is how readPack reads a pack; tests count the reads.
var packReader = loadPackBlobs

// warmPacks is called with the packs a restore or verify is about to
// read, before it reads any of them: the place where a cold storage tier
// (tape, an archive class of an object store) is asked to bring them
// online, so that reads do not block for minutes one pack at a time. A
// backend that is not cold (local) does nothing.
func warmPacks(ctx context.Context, r *Reader, packs []chunkstore.ID) error {
	if len(packs) == 0 {
		return nil
	}
	return r.st.WarmPacks(ctx, packs)
}
