package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/internal/procs"
	"github.com/recall-backup/recall/tapefs"
)

// Writing points to tape.
//
// For each point: its data packs (in the order its trees first need
// them), then its tree packs, into one KindPacks tape file (a new one
// every packsFileLimit bytes), leaving out the packs the set holds
// already; then its KindPoint file ("manifest": the manifest as the store
// holds it, "point.json": id, source, time, packs). The job ends with a
// KindCatalog file. Packs are read from the store ahead of the drive
// (packReadAhead of them, by two readers) so the drive streams instead
// of stopping and starting.
//
// At early warning the current file is finished (the entry that reached
// the zone is whole on tape), a catalog file written, the cartridge marked
// full and unloaded, and the next one loaded: the pool's free or expired
// cartridge, else a blank one, labelled into the set with the next
// sequence number. A write that meets the end of medium (no early warning,
// or a zone too small) cuts the file: the set's catalog lists only the
// entries the drive has whole (the FileWriter's Entries, with the block
// and offset a restore resumes at), and every other entry of the file,
// including one whose tail was still in the refused block, goes whole to
// the next cartridge, so a pack never straddles cartridges. A point file
// or a catalog file that is cut goes again whole: the point names the one
// file holding both its manifest and its record.
//
// A set is written with the key (or none) and the compression its labels
// name, from its first cartridge to its last: a set whose policy differs
// from its pool's now (a key imported, compression changed) takes no more
// points, and the pool's next write starts a new set.
//
// A set takes appends (allocation continue) within its pool's append
// window, and its expiry, written in its labels when it is made, is the
// pool's retention after the window closes: the point appended last is
// kept the whole retention, also by a server that knows the set only from
// its labels. A write after the window starts a new set.
//
// Packs are read without the store's lock: a garbage collection running
// meanwhile (another process; the server never runs both at once) may
// rewrite a pack the point needs, and the write then fails naming it, to
// be run again; it never writes a pack other than the one it listed.

// packsFileLimit is the size at which a packs file is finished and the
// next one begun: a restore locates to a file, so smaller files mean less
// read past what it needs, at the cost of a filemark each.
const packsFileLimit = 8 << 30

// packReadAhead is how many packs are read from the store ahead of the
// drive: with 16 MiB packs, 128 MiB in flight, a third of a second of an
// LTO-9 drive.
const packReadAhead = 8

// TapeWriteOptions configure WriteTape.
type TapeWriteOptions struct {
	Pool   string
	Points []*Point
	Log    func(format string, args ...any)
	Now    func() time.Time // the clock (nil: time.Now)
	Group  string           // the protection group whose goal this write is ("" for none)
	// Set: "" follows the pool's allocation, "new" starts a new set, a set
	// id appends to that set of the pool.
	Set string
	// goal, when set, is the policy of Group, whose tape goal this write
	// is: a pool that keeps its sets a shorter time than the goal asks is
	// told to Log (tapeGoalShortfall).
	goal *Policy
}

// TapeWriteReport says what a tape write did.
type TapeWriteReport struct {
	Pool         string   `json:"pool"`
	Set          string   `json:"set"`
	Points       []string `json:"points"`
	Packs        int      `json:"packs"`         // written
	PacksSkipped int      `json:"packs_skipped"` // already on the set
	Bytes        int64    `json:"bytes"`
	Tapes        []string `json:"tapes"` // barcodes written to, in order
	Seconds      float64  `json:"seconds"`
	// StreamSeconds is the time spent streaming packs to the drive (from
	// the first pack asked of the store to the last one written), without
	// loading, labelling and the catalog: the drive's share of the job.
	StreamSeconds float64 `json:"stream_seconds"`
	// Refused lists the points not written because they need blobs the
	// store records damaged (verify --read-data, or a read, found them
	// bad): tape takes packs as they are, so it would keep the damage
	// for years and show it only at a restore.
	Refused []TapeRefusal `json:"refused,omitempty"`
}

// TapeRefusal is a point a tape write did not write, and why.
type TapeRefusal struct {
	Point  string `json:"point"`
	Source string `json:"source"`
	Error  string `json:"error"`
}

// WriteTape writes points to the pool's media set. It records a job in
// the catalog of home.
func (s *Store) WriteTape(ctx context.Context, home string, o TapeWriteOptions) (rep *TapeWriteReport, err error) {
	j := &Job{Kind: "tape-write", Path: o.Pool, Group: o.Group}
	err = RunTapeJob(home, j, o.Log, func() error {
		rep, err = s.writeTape(ctx, home, o)
		return err
	})
	return rep, err
}

func (s *Store) writeTape(ctx context.Context, home string, o TapeWriteOptions) (*TapeWriteReport, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	start := time.Now()
	if _, err := ExpireTapes(home, o.Now(), o.Log); err != nil {
		return nil, err
	}
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return nil, err
	}
	pool, err := st.pool(o.Pool)
	if err != nil {
		return nil, err
	}
	if o.goal != nil {
		if msg := o.goal.tapeGoalShortfall(o.Group, pool, o.Now()); msg != "" {
			o.Log("%s", msg)
		}
	}
	libRec, err := st.library(pool.Library)
	if err != nil {
		return nil, err
	}
	storeConfig, err := s.configFiles(ctx)
	if err != nil {
		return nil, err
	}
	lib, err := openLibrary(libRec)
	if err != nil {
		return nil, err
	}
	defer lib.Close()

	w := &tapeWriter{ctx: ctx, home: home, lib: lib, libName: libRec.Name, pool: pool,
		st: st, log: o.Log, now: o.Now, storeID: s.Config().ID, storeConfig: storeConfig,
		media: map[string]*TapeMedium{}, others: map[string]*TapeSet{}}
	if w.set, err = w.openSet(o.Set); err != nil {
		return nil, err
	}
	// The set's label decides how its files are written, not the pool:
	// a set is plain or encrypted with one key, compressed or not, from
	// its first cartridge to its last (openSet takes no set whose policy
	// differs from the pool's now).
	if w.set.KeyFingerprint != "" {
		if w.setKey, err = loadPoolKey(home, pool.Name, w.set.KeyFingerprint); err != nil {
			return nil, err
		}
		w.setKey = tapefs.SetKey(w.setKey, w.set.ID)
	}
	w.have = w.set.Catalog.PackIndex()
	rep := &TapeWriteReport{Pool: pool.Name, Set: w.set.ID, Points: []string{}}
	w.rep = rep
	err = w.run(s, o.Points)
	if ferr := w.finish(); err == nil {
		err = ferr
	}
	if serr := w.save(); err == nil {
		err = serr
	}
	rep.Seconds = milliRound(time.Since(start).Seconds())
	rep.StreamSeconds = milliRound(rep.StreamSeconds)
	if n := len(rep.Refused); err == nil && n > 0 {
		f := rep.Refused[0]
		err = fmt.Errorf("%w: %d point(s) not written to tape (the first: %s of %s: %s); run 'recall repair packs' (it keeps every readable blob), back up the source again, then 'recall repair points', and write to tape again",
			ErrDamaged, n, f.Point[:min(12, len(f.Point))], f.Source, f.Error)
	}
	return rep, err
}

// configFiles returns the store's config files by name, for the set
// label: a fresh server opens what it restores with them.
func (s *Store) configFiles(ctx context.Context) (map[string][]byte, error) {
	return configFilesOf(ctx, s.st.Backend())
}

// pointPacks lists the packs a point needs: those holding its data
// chunks, in the order its trees first need them, then those holding its
// trees (so a restore reads a point's trees after its data is in place).
// hurt lists the blobs it needs that damaged records as damaged in the
// pack they are read from.
func (s *Store) pointPacks(ctx context.Context, p *Point, damaged map[[2]chunkstore.ID]string) (data, trees []chunkstore.ID, hurt []chunkstore.DamagedBlob, err error) {
	seenTree := map[chunkstore.ID]bool{}
	seenPack := map[chunkstore.ID]bool{}
	treePack := map[chunkstore.ID]bool{}
	var treeOrder []chunkstore.ID
	packOf := func(id chunkstore.ID) (chunkstore.ID, error) {
		pk, ok := s.st.PackOf(id)
		if !ok {
			return pk, fmt.Errorf("point %s: blob %s is in no pack (run 'recall verify')", p.ID.Short(), id.Short())
		}
		if why, bad := damaged[[2]chunkstore.ID{id, pk}]; bad && !slices.ContainsFunc(hurt, func(d chunkstore.DamagedBlob) bool { return d.Blob == id }) {
			hurt = append(hurt, chunkstore.DamagedBlob{Blob: id, Pack: pk, Reason: why})
		}
		return pk, nil
	}
	var walk func(tree chunkstore.ID) error
	walk = func(tree chunkstore.ID) error {
		if seenTree[tree] {
			return nil
		}
		seenTree[tree] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		pk, err := packOf(tree)
		if err != nil {
			return err
		}
		if !treePack[pk] {
			treePack[pk] = true
			treeOrder = append(treeOrder, pk)
		}
		t, err := s.r.LoadTree(tree)
		if err != nil {
			return err
		}
		for _, n := range t.Nodes {
			switch {
			case n.Type == TypeDir:
				if err := walk(n.Subtree); err != nil {
					return err
				}
			case n.Type.HasContent():
				for _, e := range n.Extents {
					if e.Hole {
						continue
					}
					pk, err := packOf(e.ID)
					if err != nil {
						return err
					}
					if !seenPack[pk] {
						seenPack[pk] = true
						data = append(data, pk)
					}
				}
			}
		}
		return nil
	}
	if err := walk(p.Tree); err != nil {
		return nil, nil, nil, err
	}
	for _, pk := range treeOrder {
		if !seenPack[pk] {
			trees = append(trees, pk)
		}
	}
	return data, trees, hurt, nil
}

// pointRecord is the "point.json" entry of a point file; ScanTape reads
// these names.
type pointRecord struct {
	ID     string    `json:"id"`
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	Packs  []string  `json:"packs"`
}

// tapeWriter is one write job's state: the set, the cartridge in the
// drive, the file being written.
type tapeWriter struct {
	ctx         context.Context
	home        string
	lib         tapefs.Library
	libName     string
	pool        TapePool
	setKey      []byte // the set's key (nil: a plain set)
	st          *TapeState
	log         func(string, ...any)
	now         func() time.Time
	storeID     string
	storeConfig map[string][]byte
	rep         *TapeWriteReport

	set    *TapeSet
	newSet bool
	// others are the other sets this job changed (a reused cartridge
	// dropped from its old set), saved with the set.
	others map[string]*TapeSet
	media  map[string]*TapeMedium // changed, saved with the set
	have   map[string]int         // pack name -> index in the set catalog's Files

	drive tapefs.Drive
	cur   *TapeMedium
	fw    *tapefs.FileWriter
	file  *tapefs.CatalogFile // the open file; its entries come from fw at its end
	queue []tapeEntry         // entries of the open file to write again if it is cut
	// settled counts the entries of the open file dropped from queue.
	settled int
	bytes   int64 // in the current packs file
	// catalogDone: the last tape file written is a catalog file listing
	// all the job wrote.
	catalogDone bool
	// undescribed: the job left tape files on the set's cartridges (or
	// one full) since its last catalog file.
	undescribed bool
	// refused are cartridges found unusable in this job, by barcode.
	refused map[string]bool
	// tooBigOn: an entry met the end of an empty cartridge (tooBig).
	tooBigOn *tooBigAt
}

const tapeDrive = 0

// setExpiry is when a new set of the pool, created at created, expires
// (TapePool.SetExpiry), with an error that says how to mend the pool.
func (w *tapeWriter) setExpiry(created time.Time) (time.Time, error) {
	exp, err := w.pool.SetExpiry(created)
	if err != nil {
		return exp, fmt.Errorf("tape pool %s: %w: mend it with 'recall tape pool set %s --retention 7y --append-window 7d'", w.pool.Name, err, w.pool.Name)
	}
	return exp, nil
}

// inWindow says whether set s may still take points at now: within the
// pool's append window, and never once a point written now would expire
// before the pool's retention is up, as the set's expiry is fixed in its
// labels (a window widened after the set was made does not move it).
func (w *tapeWriter) inWindow(s TapeSet, now time.Time) (bool, error) {
	end, err := w.pool.AppendEnd(s.Created)
	if err == nil {
		var keep time.Time
		if keep, err = retentionExpiry(w.pool.Retention, now); err == nil {
			return now.Before(end) && !keep.After(s.Expiry), nil
		}
	}
	return false, fmt.Errorf("tape pool %s: %w: mend it with 'recall tape pool set %s --retention 7y --append-window 7d'", w.pool.Name, err, w.pool.Name)
}

// openSet returns the set the job appends to: the one asked for, the
// pool's newest set that still takes appends with allocation continue,
// else a new one.
func (w *tapeWriter) openSet(want string) (*TapeSet, error) {
	now := w.now().UTC()
	if want != "" && want != "new" {
		s, ok := w.st.set(want)
		if !ok || s.Pool != w.pool.Name {
			return nil, fmt.Errorf("set %s of pool %s: %w", want, w.pool.Name, ErrTapeNotFound)
		}
		// A set named is appended to though closed (a copy writes its
		// set in two jobs into a pool of allocation always), but only
		// within its window, and never once it lost a cartridge.
		if len(s.Dropped) > 0 {
			var lost []string
			for _, q := range s.Dropped {
				if q >= 1 && q <= len(s.Tapes) {
					lost = append(lost, fmt.Sprintf("%s (sequence %d)", s.Tapes[q-1], q))
				}
			}
			return nil, fmt.Errorf("set %s of pool %s lost %s to an erase or relabel and takes no more points; write to a new set (--set new)", s.ID, w.pool.Name, strings.Join(lost, ", "))
		}
		if !w.samePolicy(s) {
			return nil, fmt.Errorf("set %s of pool %s is %s; the pool now writes %s: a set keeps one policy, so it takes no more points; write to a new set (--set new)",
				s.ID, w.pool.Name, policyOf(s.KeyFingerprint, s.Compressed), policyOf(w.poolFingerprint(), w.pool.Compress))
		}
		ok, err := w.inWindow(s, now)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("set %s of pool %s (made %s, expires %s) takes no more points: it takes them for %s after it is made, and none that would expire before the pool's retention of %s; write to a new set (--set new)",
				s.ID, w.pool.Name, s.Created.Format(time.DateOnly), s.Expiry.Format(time.DateOnly), w.pool.Window(), w.pool.Retention)
		}
		return &s, nil
	}
	if w.pool.Allocation != AllocAlways && want != "new" {
		var open []TapeSet
		for _, s := range w.st.Sets {
			if s.Pool != w.pool.Name {
				continue
			}
			ok, err := w.inWindow(s, now)
			if err != nil {
				return nil, err
			}
			if ok && !s.Closed && len(s.Dropped) == 0 && w.samePolicy(s) {
				open = append(open, s)
			}
		}
		sort.Slice(open, func(i, j int) bool { return open[i].Created.Before(open[j].Created) })
		if len(open) > 0 {
			s := open[len(open)-1]
			return &s, nil
		}
	}
	exp, err := w.setExpiry(now)
	if err != nil {
		return nil, err
	}
	id := tapefs.NewUUID()
	w.newSet = true
	return &TapeSet{ID: id, Pool: w.pool.Name, Created: now, Expiry: exp, Tapes: []string{},
		KeyFingerprint: w.poolFingerprint(), Compressed: w.pool.Compress,
		Catalog: &tapefs.MediaCatalog{Version: tapefs.CatalogVersion, Pool: w.pool.Name, SetID: id}}, nil
}

func (w *tapeWriter) fileOptions() tapefs.FileOptions {
	return tapefs.FileOptions{Compress: w.set.Compressed, Key: w.setKey}
}

// poolFingerprint is the key fingerprint a new set of the pool gets.
func (w *tapeWriter) poolFingerprint() string {
	if !w.pool.Encrypt {
		return ""
	}
	return w.pool.KeyFingerprint
}

// samePolicy says whether set s is written as the pool writes now (its
// key and compression): a set never changes them midway, so a set that
// differs takes no more points.
func (w *tapeWriter) samePolicy(s TapeSet) bool {
	return s.KeyFingerprint == w.poolFingerprint() && s.Compressed == w.pool.Compress
}

// policyOf says how set s is written, for a message.
func policyOf(fingerprint string, compressed bool) string {
	out := "plain"
	if fingerprint != "" {
		out = "encrypted with key " + fingerprint
	}
	if compressed {
		return out + ", compressed"
	}
	return out + ", not compressed"
}

// run writes the points.
func (w *tapeWriter) run(s *Store, points []*Point) error {
	if w.cur == nil && len(points) > 0 {
		// The cartridge first: appending to the set's open one checks
		// its labels, and one found to hold another set drops what the
		// catalog records on it (appendTo), before any pack is taken as
		// already on the set. Every run writes a point file, so a
		// cartridge is mounted anyway.
		if err := w.mount(); err != nil {
			return err
		}
	}
	damaged := map[[2]chunkstore.ID]string{} // (blob, pack) -> why, as recorded
	for _, d := range s.st.DamagedBlobs() {
		damaged[[2]chunkstore.ID{d.Blob, d.Pack}] = d.Reason
	}
	refuse := func(p *Point, why string) {
		w.rep.Refused = append(w.rep.Refused, TapeRefusal{Point: p.ID.String(), Source: p.Source, Error: why})
		w.log("point %s of %s not written: %s", p.ID.Short(), p.Source, why)
	}
	hurtWhy := func(hurt []chunkstore.DamagedBlob, how string) string {
		h := hurt[0]
		return fmt.Sprintf("it needs %d blob(s) %s (the first: %s in pack %s: %s)", len(hurt), how, h.Blob.Short(), h.Pack, h.Reason)
	}
	// Every pack is checked as it streams (writePacks): damage found
	// there joins damaged, and a pack whose header is bad stays off tape
	// (a server restoring from the tape alone reads the headers).
	badHeader := map[chunkstore.ID]string{}
	accepted := map[chunkstore.ID]bool{} // damaged, but in no blob a point written needs
points:
	for _, p := range points {
		data, trees, hurt, err := s.pointPacks(w.ctx, p, damaged)
		if err != nil {
			return err
		}
		if len(hurt) > 0 {
			refuse(p, hurtWhy(hurt, "recorded damaged"))
			continue
		}
		names := make([]string, 0, len(data)+len(trees))
		var todo []chunkstore.ID
		for _, pk := range append(data, trees...) {
			if why, bad := badHeader[pk]; bad {
				refuse(p, fmt.Sprintf("pack %s, which it needs, failed its check when read for tape: %s", pk, why))
				continue points
			}
			names = append(names, pk.String())
			if _, ok := w.have[pk.String()]; ok {
				w.rep.PacksSkipped++
				continue
			}
			todo = append(todo, pk)
		}
		for rest := todo; ; {
			err := w.writePacks(s, rest, accepted)
			var pd *packDamage
			if !errors.As(err, &pd) {
				if err != nil {
					return err
				}
				break
			}
			if pd.check.Header != nil {
				badHeader[pd.pack] = pd.check.Header.Error()
				refuse(p, fmt.Sprintf("pack %s, which it needs, failed its check when read for tape: %s", pd.pack, pd.check.Header))
				continue points
			}
			for _, d := range pd.check.Bad {
				damaged[[2]chunkstore.ID{d.Blob, d.Pack}] = d.Reason
			}
			w.log("pack %s: %d blob(s) failed their check when read for tape (recorded as damaged)", pd.pack, len(pd.check.Bad))
			if _, _, hurt, err := s.pointPacks(w.ctx, p, damaged); err != nil {
				return err
			} else if len(hurt) > 0 {
				refuse(p, hurtWhy(hurt, "that failed their check when read for tape"))
				continue points
			}
			accepted[pd.pack] = true // its bad blobs are of no point written
			rest = rest[pd.at:]
		}
		if err := w.writePointFile(s, p, names); err != nil {
			return err
		}
		w.rep.Points = append(w.rep.Points, p.ID.String())
		w.log("point %s of %s: %d packs on tape (%d already on set %s)", p.ID.Short(), p.Source, len(todo), len(names)-len(todo), w.set.ID)
	}
	return nil
}

// packDamage: writePacks found packs[at] damaged as it read it, and wrote
// it and what follows not.
type packDamage struct {
	at    int
	pack  chunkstore.ID
	check *chunkstore.PackCheck
}

func (e *packDamage) Error() string {
	return fmt.Sprintf("pack %s failed its check when read for tape", e.pack)
}

// packRead is one pack read ahead of the drive.
type packRead struct {
	at    int // in the packs asked for
	id    chunkstore.ID
	check *chunkstore.PackCheck
	data  []byte
	err   error
	done  chan struct{}
}

// writePacks streams packs from the store to tape, reading ahead. Each
// pack is checked whole as it is read (header, and every blob against its
// id): the first one found damaged, unless accepted, ends the stream
// before it is written, with a *packDamage.
func (w *tapeWriter) writePacks(s *Store, packs []chunkstore.ID, accepted map[chunkstore.ID]bool) error {
	if len(packs) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { w.rep.StreamSeconds += time.Since(start).Seconds() }()
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	order := make(chan *packRead, packReadAhead)
	work := make(chan *packRead, packReadAhead)
	go func() {
		defer close(order)
		defer close(work)
		for i, id := range packs {
			pr := &packRead{at: i, id: id, done: make(chan struct{})}
			select {
			case order <- pr:
			case <-ctx.Done():
				return
			}
			work <- pr
		}
	}()
	var wg sync.WaitGroup
	be := s.st.Backend()
	// Each reader checks the packs it reads (CheckPackData): measured on
	// 617 MB written from two cores to an unthrottled emulated drive,
	// 1.7-1.9 s checked against 1.2 s unchecked for a plaintext store
	// (zstd and BLAKE3 per blob), 1.4-2.1 against 1.3-1.6 s for an
	// encrypted one (the AEAD tag only). More cores read and check more
	// packs at once, up to the read-ahead.
	for range min(max(2, procs.CPUs()), packReadAhead) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pr := range work {
				pr.data, pr.err = be.Load(ctx, backend.Handle{Type: backend.Packs, Name: pr.id.String()}, 0, -1, nil)
				if pr.err == nil {
					pr.check = s.st.CheckPackData(pr.id, pr.data)
				}
				close(pr.done)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	for pr := range order {
		select {
		case <-pr.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if pr.err != nil {
			return fmt.Errorf("read pack %s: %w", pr.id, pr.err)
		}
		if (pr.check.Header != nil || len(pr.check.Bad) > 0) && !accepted[pr.id] {
			return &packDamage{at: pr.at, pack: pr.id, check: pr.check}
		}
		if err := w.write(tapefs.KindPacks, tapeEntry{pr.id.String(), pr.data}); err != nil {
			return err
		}
		w.rep.Packs++
		w.rep.Bytes += int64(len(pr.data))
		pr.data = nil
		if w.fw != nil && w.bytes >= packsFileLimit {
			if _, err := w.closeFile(); err != nil {
				return err
			}
		}
	}
	if w.fw != nil {
		_, err := w.closeFile()
		return err
	}
	return nil
}

// writePointFile writes a point's manifest and record after its packs.
// The two entries are of use only together: a point file cut by the end
// of medium goes again, both entries, on the next cartridge, and the
// point names that file only.
func (w *tapeWriter) writePointFile(s *Store, p *Point, packs []string) error {
	manifest, err := s.st.Backend().Load(w.ctx, backend.Handle{Type: backend.Points, Name: p.ID.String()}, 0, -1, nil)
	if err != nil {
		return fmt.Errorf("read point %s: %w", p.ID.Short(), err)
	}
	rec, _ := json.Marshal(pointRecord{ID: p.ID.String(), Source: p.Source, Time: p.Time, Packs: packs})
	if err := w.write(tapefs.KindPoint, tapeEntry{"manifest", manifest}, tapeEntry{"point.json", rec}); err != nil {
		return err
	}
	at, err := w.closeFile()
	if err != nil {
		return err
	}
	files := []int{}
	for _, pk := range packs {
		if i, ok := w.have[pk]; ok && !slices.Contains(files, i) {
			files = append(files, i)
		}
	}
	files = append(files, at)
	w.set.Catalog.Points = append(w.set.Catalog.Points, tapefs.CatalogPoint{ID: p.ID.String(), Source: p.Source, Time: p.Time, Packs: packs, Files: files})
	return nil
}

// appendFile records a tape file in the set's catalog.
func (w *tapeWriter) appendFile(f tapefs.CatalogFile) int {
	w.undescribed = true
	w.set.Catalog.Files = append(w.set.Catalog.Files, f)
	i := len(w.set.Catalog.Files) - 1
	w.indexFile(i, f)
	return i
}

func (w *tapeWriter) indexFile(i int, f tapefs.CatalogFile) {
	if f.Kind != tapefs.KindPacks {
		return
	}
	for _, e := range f.Entries {
		w.have[e.Name] = i
	}
}

// tapeEntry is one entry on its way to tape. Its bytes are kept until the
// drive has the entry's last block: the FileWriter holds the tail of an
// entry in its block until the next entry fills that block, and the end
// of medium there loses it.
type tapeEntry struct {
	name string
	data []byte
}

// write adds entries to the open tape file of kind, mounting a cartridge
// and starting the file as needed. At early warning a packs file is
// finished and the cartridge left full; a point file is small and
// finished in the zone by its caller. At the end of medium the entries
// the drive does not have whole go again on the next cartridge.
func (w *tapeWriter) write(kind tapefs.FileKind, entries ...tapeEntry) error {
	for len(entries) > 0 {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if w.cur == nil {
			if err := w.mount(); err != nil {
				return err
			}
		}
		if w.fw != nil && w.file.Kind != kind {
			if _, err := w.closeFile(); err != nil {
				return err
			}
			continue // finishing it may have left the cartridge
		}
		if w.fw == nil {
			if err := w.startFile(kind); err != nil {
				return err
			}
		}
		e := entries[0]
		ew, err := w.fw.Add(w.ctx, e.name, e.data)
		switch {
		case errors.Is(err, tapefs.ErrEndOfMedium), errors.Is(err, tapefs.ErrWriteProtected):
			redo, cerr := w.cut(err, &e)
			if cerr != nil {
				return cerr
			}
			entries = append(redo, entries...)
			continue
		case err != nil:
			return fmt.Errorf("write %s to cartridge %s: %w", e.name, w.cur.Barcode, err)
		}
		entries = entries[1:]
		w.queue = append(w.queue, e)
		w.settle()
		w.bytes += int64(len(e.data))
		if ew && kind == tapefs.KindPacks {
			if _, err := w.closeFile(); err != nil {
				return err
			}
		}
	}
	return nil
}

// settle drops from the queue the entries of a packs file the drive has
// whole. A point file keeps all of its entries queued until it is
// finished, as a cut sends all of them again.
func (w *tapeWriter) settle() {
	if w.file.Kind != tapefs.KindPacks {
		return
	}
	n := len(w.fw.Entries()) - w.settled
	w.queue = slices.Delete(w.queue, 0, n)
	w.settled += n
}

// cut ends the open file where the drive stopped taking blocks (the end
// of medium, or a write-protected cartridge) and returns the entries to
// write again on the next cartridge, before failed (the entry being
// added when the drive stopped, nil in Close), which the caller still
// holds. The packs the drive has whole stand and are listed in the set's
// catalog; a point or catalog file is not listed at all. The cartridge is
// left full (a write-protected one, refused) without a catalog file:
// there is no room for one.
//
// An end of medium in the first file after the labels, with nothing of
// the file whole on tape, is an entry larger than the cartridge: going on
// from cartridge to cartridge would fill each in turn and leave them all
// full (locked for the pool's retention) holding nothing. tooBig decides
// instead: one more cartridge is tried, and a second that ends so stops
// the job.
func (w *tapeWriter) cut(err error, failed *tapeEntry) ([]tapeEntry, error) {
	w.settle()
	redo := w.queue
	alone := w.file.FileNo == firstDataFile
	if w.file.Kind == tapefs.KindPacks {
		if done := w.fw.Entries(); len(done) > 0 {
			alone = false
			f := *w.file
			f.Entries = slices.Clone(done)
			w.appendFile(f)
		}
	}
	var blocks uint64
	start := w.file.StartPos
	if pos, perr := w.drive.Position(w.ctx); perr == nil && pos > start {
		blocks = pos - start
	}
	fileNo, kind := w.file.FileNo, w.file.Kind
	w.fw, w.file, w.queue, w.settled = nil, nil, nil, 0
	if errors.Is(err, tapefs.ErrWriteProtected) {
		w.writeProtected()
		return redo, nil
	}
	w.markCut()
	if lost := redo; alone {
		if failed != nil {
			lost = append(slices.Clone(redo), *failed)
		}
		if len(lost) > 0 {
			if err := w.tooBig(kind, lost, start, blocks); err != nil || w.cur == nil {
				return redo, err
			}
			// Not labelled free again: left full as it is.
		}
	}
	w.log("cartridge %s full (end of medium) in tape file %d: %d entries go again, whole, on the next cartridge", w.cur.Barcode, fileNo, len(redo))
	w.cur.NextFile++
	w.undescribed = true
	w.leaveFull(false)
	return redo, nil
}

// markCut ends the file the end of medium cut with a filemark, which a
// power cut never leaves after a file without its end record: a scan of
// the cartridge (tapefs.ScanTape) tells by it a cartridge filled, its
// set going on on the next one, from a torn one. A drive that takes no
// filemark there either leaves the file as it is; a scan then goes by
// the drive's early-warning status.
func (w *tapeWriter) markCut() {
	if err := w.drive.WriteFilemarks(w.ctx, 1); err != nil {
		w.log("cartridge %s: no filemark after the file the end of medium cut (%v)", w.cur.Barcode, err)
	}
}

// firstDataFile is the number of the first tape file after a cartridge's
// volume and set labels (files 0 and 1).
const firstDataFile = 2

// tooBig deals with what the job writes (lost, of a file of kind) meeting
// the end of medium on the cartridge in the drive with nothing of the set
// before it there; the file began at start and took blocks blocks. The
// cartridge holds only its labels, so it is labelled free for the pool
// again (freeAgain), unloaded and not used again by the job, rather than
// left full. The first time, the entry goes on to the next cartridge: one
// cartridge may be short (worn, of another generation). The second time
// the same entry meets the end of an empty cartridge, it fits on no
// cartridge of the library, and tooBig returns the error that stops the
// job. When the cartridge cannot be relabelled, it stays in the drive, to
// be left full by the caller (or here, when the job stops).
//
// A job that stops so after it left anything on the set's cartridges
// since their last catalog file (files, or a cartridge the end of medium
// left full) ends as a job that finishes does, with the set's catalog
// file: written on this cartridge in place of the file it cut
// (stopCatalog), and the cartridge stays in the set, not full, so a
// fresh server reads the set from its catalog, and the set's next write
// goes on there.
func (w *tapeWriter) tooBig(kind tapefs.FileKind, lost []tapeEntry, start, blocks uint64) error {
	bc, slot := w.cur.Barcode, w.cur.Slot
	var size int64
	for _, e := range lost {
		size += int64(len(e.data))
	}
	what := fmt.Sprintf("pack %s (%s)", lost[0].name, mib(int64(len(lost[0].data))))
	switch {
	case kind == tapefs.KindPoint:
		what = fmt.Sprintf("the point file (manifest and record, %s)", mib(size))
	case len(lost) > 1:
		// The drive refused the block holding the first pack's tail and
		// the next pack's start: the two did not fit together.
		what = fmt.Sprintf("pack %s (%s) with the start of the next (%d packs, %s)", lost[0].name, mib(int64(len(lost[0].data))), len(lost), mib(size))
	}
	took := mib(int64(blocks) * tapefs.BlockSize)
	first := w.tooBigOn == nil || w.tooBigOn.entry != lost[0].name
	if !first && w.undescribed {
		err := w.stopCatalog(start)
		if err == nil {
			return fmt.Errorf("%s does not fit on cartridge %s (slot %d), nor did it on %s: each ended after about %s of it with nothing but its labels before, so no cartridge of that capacity takes it (%s holds the set's catalog file in its place, and takes the set's next points). Write to a library of larger cartridges (an emulated one: 'recall tape library add' with a larger --capacity)",
				what, bc, slot, w.tooBigOn.barcode, took, bc)
		}
		w.log("cartridge %s: the set's catalog file in place of the file that did not fit: %v", bc, err)
	}
	freeErr := w.freeAgain()
	left := "it was labelled free for pool " + w.pool.Name + " again"
	if freeErr == nil {
		w.refuse(bc)
		w.unload()
	} else {
		left = fmt.Sprintf("relabelling it free failed (%v), so it is left full", freeErr)
	}
	if first {
		w.tooBigOn = &tooBigAt{entry: lost[0].name, barcode: bc}
		w.log("cartridge %s (slot %d) ended after about %s of %s with nothing but its labels before: %s; trying the next cartridge (a second that ends so stops the write)", bc, slot, took, what, left)
		return nil
	}
	if freeErr != nil {
		w.cur.NextFile++
		w.leaveFull(false)
	} else {
		left = "both were labelled free for pool " + w.pool.Name + " again, not left full"
	}
	// No catalog file closes this job: it wrote nothing since the set's
	// last one, or that one could not be written (logged).
	w.catalogDone = true
	return fmt.Errorf("%s does not fit on cartridge %s (slot %d), nor did it on %s: each ended after about %s of it with nothing but its labels before, so no cartridge of that capacity takes it (%s). Write to a library of larger cartridges (an emulated one: 'recall tape library add' with a larger --capacity)",
		what, bc, slot, w.tooBigOn.barcode, took, left)
}

// stopCatalog writes the set's catalog file on the cartridge in the
// drive at start, where the file the end of medium cut began (numbered
// w.cur.NextFile): a drive writing there drops what follows.
func (w *tapeWriter) stopCatalog(start uint64) error {
	if err := w.drive.Locate(w.ctx, start); err != nil {
		return err
	}
	if err := w.writeCatalogFile(); err != nil {
		return err
	}
	return w.drive.Flush(w.ctx)
}

// tooBigAt is the entry that met the end of an empty cartridge, and the
// cartridge.
type tooBigAt struct{ entry, barcode string }

// freeAgain labels the cartridge in the drive as a free cartridge of the
// pool, as 'recall tape label' does, which ends its data after the labels,
// and takes it out of the set: it is the set's last cartridge, and holds
// nothing of it.
func (w *tapeWriter) freeAgain() error {
	now := w.now().UTC()
	vl := tapefs.VolumeLabel{FormatVersion: tapefs.FormatVersion, VolumeID: tapefs.NewUUID(), Barcode: w.cur.Barcode, BlockSize: tapefs.BlockSize, Created: now}
	free := tapefs.SetLabel{Pool: w.pool.Name, SetID: tapefs.NewUUID(), Sequence: 1, Created: now, Expiry: now}
	if err := tapefs.WriteLabels(w.ctx, w.drive, vl, free); err != nil {
		return err
	}
	if err := w.drive.Flush(w.ctx); err != nil {
		return err
	}
	if n := len(w.set.Tapes); n > 0 && w.set.Tapes[n-1] == w.cur.Barcode {
		w.set.Tapes = w.set.Tapes[:n-1]
	}
	*w.cur = TapeMedium{Barcode: w.cur.Barcode, VolumeID: vl.VolumeID, Pool: w.pool.Name, State: MediaFree, Library: w.libName, Slot: w.cur.Slot}
	w.media[w.cur.Barcode] = w.cur
	return nil
}

// mib says n bytes in MiB, for a message.
func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// writeProtected drops the cartridge in the drive from this job: clear
// error, then the next cartridge of the pool.
func (w *tapeWriter) writeProtected() {
	w.log("cartridge %s in slot %d is write-protected: skipped (clear its write-protect tab to use it); trying the next cartridge of pool %s", w.cur.Barcode, w.cur.Slot, w.pool.Name)
	w.refuse(w.cur.Barcode)
	if w.cur.Set == w.set.ID && w.cur.State == MediaWriting {
		w.cur.State = MediaFull
		w.media[w.cur.Barcode] = w.cur
	}
	w.unload()
}

func (w *tapeWriter) refuse(barcode string) {
	if w.refused == nil {
		w.refused = map[string]bool{}
	}
	w.refused[barcode] = true
}

func (w *tapeWriter) startFile(kind tapefs.FileKind) error {
	fw, err := tapefs.NewFileWriter(w.ctx, w.drive, kind, w.cur.NextFile, w.fileOptions())
	if err != nil {
		return fmt.Errorf("cartridge %s: start tape file %d: %w", w.cur.Barcode, w.cur.NextFile, err)
	}
	w.fw = fw
	w.file = &tapefs.CatalogFile{Sequence: w.cur.Sequence, FileNo: w.cur.NextFile, StartPos: fw.StartPos(), Kind: kind}
	w.bytes = 0
	w.catalogDone = false
	return nil
}

// closeFile finishes the open file and returns its index in the set's
// catalog, listing the entries as the FileWriter placed them. A file cut
// by the end of medium while finishing goes on, what the drive lacks of
// it, in a file on the next cartridge, which is finished instead. A file
// finished in the early-warning zone leaves the cartridge full.
func (w *tapeWriter) closeFile() (int, error) {
	for {
		err := w.fw.Close(w.ctx)
		if errors.Is(err, tapefs.ErrEndOfMedium) || errors.Is(err, tapefs.ErrWriteProtected) {
			kind := w.file.Kind
			redo, cerr := w.cut(err, nil)
			if cerr != nil {
				return -1, cerr
			}
			if len(redo) == 0 {
				// Every entry was whole before the cut: the file is listed.
				return len(w.set.Catalog.Files) - 1, nil
			}
			if err := w.write(kind, redo...); err != nil {
				return -1, err
			}
			if w.fw == nil {
				// Finished within write, at early warning.
				return len(w.set.Catalog.Files) - 1, nil
			}
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("cartridge %s: finish tape file %d: %w", w.cur.Barcode, w.file.FileNo, err)
		}
		f := *w.file
		f.Entries = slices.Clone(w.fw.Entries())
		i := w.appendFile(f)
		ew := w.fw.EarlyWarning()
		w.cur.NextFile++
		w.cur.Written = w.now().UTC()
		w.media[w.cur.Barcode] = w.cur
		w.fw, w.file, w.queue, w.settled = nil, nil, nil, 0
		if ew {
			w.leaveFull(true)
		}
		return i, nil
	}
}

// writeCatalogFile writes the set's catalog as it is now onto the
// cartridge in the drive.
func (w *tapeWriter) writeCatalogFile() error {
	w.syncCatalogTapes()
	w.set.Catalog.Written = w.now().UTC()
	if _, err := tapefs.WriteCatalogFile(w.ctx, w.drive, w.cur.NextFile, w.fileOptions(), w.set.Catalog); err != nil {
		return err
	}
	w.cur.NextFile++
	w.cur.Written = w.now().UTC()
	w.media[w.cur.Barcode] = w.cur
	w.catalogDone, w.undescribed = true, false
	return nil
}

// syncCatalogTapes brings the catalog's list of cartridges up to date.
func (w *tapeWriter) syncCatalogTapes() {
	c := w.set.Catalog
	c.Tapes = c.Tapes[:0]
	for i, bc := range w.set.Tapes {
		m := w.mediumRec(bc)
		c.Tapes = append(c.Tapes, tapefs.CatalogTape{Sequence: i + 1, Barcode: bc, VolumeID: m.VolumeID, Full: m.State == MediaFull})
	}
}

func (w *tapeWriter) mediumRec(bc string) TapeMedium {
	if m, ok := w.media[bc]; ok {
		return *m
	}
	m, _ := w.st.medium(bc)
	return m
}

// leaveFull ends the cartridge in the drive: a catalog file when there is
// room for one (withCatalog: the early-warning zone is for that), marked
// full, unloaded; and the media catalog saved, so a crash later loses no
// record of what is on it.
func (w *tapeWriter) leaveFull(withCatalog bool) {
	w.cur.State = MediaFull
	w.media[w.cur.Barcode] = w.cur
	if withCatalog {
		if err := w.writeCatalogFile(); err != nil {
			w.log("cartridge %s: no room for its catalog file (%v); the set's catalog is on its next cartridge", w.cur.Barcode, err)
			if errors.Is(err, tapefs.ErrEndOfMedium) {
				w.markCut()
			}
		}
	}
	if err := w.drive.Flush(w.ctx); err != nil {
		w.log("cartridge %s: flush: %v", w.cur.Barcode, err)
	}
	w.log("cartridge %s (slot %d) is full: sequence %d of set %s", w.cur.Barcode, w.cur.Slot, w.cur.Sequence, w.set.ID)
	w.unload()
	if err := w.save(); err != nil {
		w.log("%v", err)
	}
}

// finish ends the job: the open file finished, the catalog file written,
// the cartridge unloaded. A catalog file the end of medium cuts goes on
// the next cartridge: the job's last tape file is its catalog.
func (w *tapeWriter) finish() error {
	if w.fw != nil {
		if _, err := w.closeFile(); err != nil {
			w.unload()
			return err
		}
	}
	for !w.catalogDone && len(w.rep.Tapes) > 0 {
		if w.cur == nil {
			if err := w.mount(); err != nil {
				return fmt.Errorf("set %s: the job's catalog file: %w", w.set.ID, err)
			}
		}
		err := w.writeCatalogFile()
		switch {
		case errors.Is(err, tapefs.ErrEndOfMedium):
			w.log("cartridge %s full (end of medium) in the catalog file: it goes on the next cartridge", w.cur.Barcode)
			w.markCut()
			w.cur.NextFile++
			w.leaveFull(false)
			continue
		case errors.Is(err, tapefs.ErrWriteProtected):
			w.writeProtected()
			continue
		case err != nil:
			w.unload()
			return fmt.Errorf("cartridge %s: write the catalog file: %w", w.cur.Barcode, err)
		}
	}
	if w.cur == nil {
		return nil
	}
	var err error
	if ferr := w.drive.Flush(w.ctx); ferr != nil {
		err = fmt.Errorf("cartridge %s: flush: %w", w.cur.Barcode, ferr)
	}
	w.media[w.cur.Barcode] = w.cur
	w.unload()
	return err
}

// save records the set and the cartridges changed in the home catalog.
func (w *tapeWriter) save() error {
	// A new set that kept no cartridge (tooBig freed the only one) is not
	// recorded; the cartridges the job changed are.
	withSet := len(w.set.Tapes) > 0 || (!w.newSet && len(w.media) > 0)
	if !withSet && len(w.media) == 0 && len(w.others) == 0 {
		return nil // nothing was written
	}
	w.syncCatalogTapes()
	u := TapeUpdate{}
	if withSet {
		u.Sets = []TapeSet{*w.set}
		if w.pool.Allocation == AllocAlways {
			u.Sets[0].Closed = true
		}
	}
	for _, m := range w.media {
		u.Media = append(u.Media, *m)
	}
	var others []string
	for id, o := range w.others {
		others = append(others, id)
		u.Sets = append(u.Sets, *o)
	}
	if err := writeTapeState(w.home, w.log, u); err != nil {
		return fmt.Errorf("record set %s in the catalog: %w (run 'recall tape catalog' on its cartridges to read it back)", w.set.ID, err)
	}
	first := 0
	if withSet {
		w.set.Revision = u.Sets[0].Revision
		first = 1
	}
	for i, id := range others {
		w.others[id].Revision = u.Sets[first+i].Revision
	}
	return nil
}

// unload returns the cartridge in the drive to its slot.
func (w *tapeWriter) unload() {
	if w.cur == nil {
		return
	}
	if err := unloadDrive(w.ctx, w.lib, w.drive, tapeDrive, w.cur.Slot); err != nil {
		w.log("unload cartridge %s: %v", w.cur.Barcode, err)
	}
	w.drive.Close()
	w.drive, w.cur = nil, nil
}

// mount loads a cartridge to write on: the set's last one if it has room,
// else the next usable one, labelled into the set.
func (w *tapeWriter) mount() error {
	inv, err := readyLibrary(w.ctx, w.lib, w.libName)
	if err != nil {
		return err
	}
	if n := len(w.set.Tapes); n > 0 {
		last := w.mediumRec(w.set.Tapes[n-1])
		if last.State == MediaWriting && !w.refused[last.Barcode] {
			slot, ok := slotOf(inv, last.Barcode)
			if ok {
				if err := w.appendTo(last, slot); err == nil {
					return nil
				} else {
					w.log("cartridge %s: cannot append to it (%v); the set goes on on a new cartridge", last.Barcode, err)
					w.refuse(last.Barcode)
				}
			} else {
				w.log("cartridge %s, the last of set %s, is not in library %s: the set goes on on a new cartridge", last.Barcode, w.set.ID, w.libName)
			}
			last.State = MediaFull
			w.media[last.Barcode] = &last
		}
	}
	// Candidates: the pool's free or expired cartridges first, then ones
	// the catalog does not know (blank, it is hoped).
	var mine, unknown []tapefs.Element
	var others []string
	for _, e := range inv.Slots {
		if !e.Full || e.Cleaning || e.Barcode == "" || w.refused[e.Barcode] || e.Kind == tapefs.ImportExportElement {
			continue
		}
		m, known := w.st.medium(e.Barcode)
		if mm, ok := w.media[e.Barcode]; ok {
			m, known = *mm, true
		}
		switch {
		case !known:
			unknown = append(unknown, e)
		case (m.State == MediaFree || m.State == MediaExpired) && (m.Pool == w.pool.Name || m.Pool == ""):
			mine = append(mine, e)
		case m.Pool != w.pool.Name:
			others = append(others, fmt.Sprintf("%s (slot %d) is pool %s's", e.Barcode, e.Number, m.Pool))
		default:
			others = append(others, fmt.Sprintf("%s (slot %d) holds set %s, %s until %s", e.Barcode, e.Number, m.Set, m.State, m.Expiry.Format(time.DateOnly)))
		}
	}
	for _, e := range append(mine, unknown...) {
		err := w.labelInto(e)
		if err == nil {
			return nil
		}
		w.refuse(e.Barcode)
		w.log("cartridge %s in slot %d: %v", e.Barcode, e.Number, err)
		others = append(others, fmt.Sprintf("%s (slot %d): %v", e.Barcode, e.Number, err))
	}
	why := ""
	if len(others) > 0 {
		why = " (" + strings.Join(others, "; ") + ")"
	}
	return fmt.Errorf("pool %s: no usable cartridge in library %s for set %s%s: insert a blank cartridge (or one of the pool's expired ones) and run again", w.pool.Name, w.libName, w.set.ID, why)
}

// appendTo loads the set's last cartridge and positions at its end.
func (w *tapeWriter) appendTo(m TapeMedium, slot int) error {
	d, err := loadSlot(w.ctx, w.lib, slot, tapeDrive)
	if err != nil {
		return err
	}
	vl, sl, err := tapefs.ReadLabels(w.ctx, d)
	if err == nil && (sl.SetID != w.set.ID || vl.Barcode != m.Barcode) {
		err = fmt.Errorf("its labels say set %s, barcode %s; the catalog says set %s (the packs the catalog records on it are written again on the next cartridge)", sl.SetID, vl.Barcode, w.set.ID)
		// Not the cartridge the catalog records (swapped, relabelled
		// elsewhere): what the catalog says is on it is not, so a point
		// written now must not count on it. Before, its packs were
		// taken as already on the set, and the point's restore failed.
		w.forgetFilesFrom(m.Sequence, 0)
	}
	if err == nil {
		err = d.SeekEOD(w.ctx)
	}
	if err == nil {
		var status tapefs.Status
		if status, err = d.Status(w.ctx); err == nil && status.WriteProtected {
			err = tapefs.ErrWriteProtected
		}
		if err == nil && status.File >= 2 {
			// The drive counts the filemarks before the end of data: the
			// next file's number, whatever the catalog last recorded.
			next := int(status.File)
			last := w.lastFileOn(m.Sequence)
			switch {
			case next <= last:
				// Its data ends before the last file the catalog
				// records on it (a truncated copy, a lost tail):
				// appending would give files numbers the catalog has
				// given others, and the packs there are gone.
				err = fmt.Errorf("its data ends in file %d, but the catalog records file %d on it: its tail is lost (the packs there are written again on the next cartridge; 'recall tape catalog --slot %d' records what it still holds)", next, last, slot)
				w.forgetFilesFrom(m.Sequence, next)
			case status.Block > 0:
				// A file cut short (a write killed before its
				// filemark): ended here, so the next file has a number
				// of its own, and a scan of the cartridge reads it
				// whole instead of running into the cut one.
				if err = d.WriteFilemarks(w.ctx, 1); err == nil {
					next++
					w.log("cartridge %s: file %d was cut short (a write that stopped); ended it with a filemark", m.Barcode, next-1)
				}
			}
			m.NextFile = next
		}
	}
	if err != nil {
		unloadDrive(w.ctx, w.lib, d, tapeDrive, slot)
		d.Close()
		return err
	}
	m.Slot, m.Library = slot, w.libName
	w.drive, w.cur = d, &m
	w.media[m.Barcode] = w.cur
	w.rep.Tapes = append(w.rep.Tapes, m.Barcode)
	return nil
}

// lastFileOn is the number of the last tape file the set's catalog
// records on its cartridge seq, 0 for none.
func (w *tapeWriter) lastFileOn(seq int) int {
	last := 0
	for _, f := range w.set.Catalog.Files {
		if f.Sequence == seq {
			last = max(last, f.FileNo)
		}
	}
	return last
}

// forgetFilesFrom drops from what the set holds the packs of the files
// from file on its cartridge seq, which are lost: they are written again.
func (w *tapeWriter) forgetFilesFrom(seq, file int) {
	for name, i := range w.have {
		if f := w.set.Catalog.Files[i]; f.Sequence == seq && f.FileNo >= file {
			delete(w.have, name)
		}
	}
}

// labelInto loads the cartridge of e and labels it as the set's next
// cartridge, refusing one that holds another pool's or an unexpired
// set's data.
func (w *tapeWriter) labelInto(e tapefs.Element) error {
	d, err := loadSlot(w.ctx, w.lib, e.Number, tapeDrive)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		unloadDrive(w.ctx, w.lib, d, tapeDrive, e.Number)
		d.Close()
		return err
	}
	old, err := checkOverwrite(w.ctx, d, w.st, w.pool.Name, w.now(), false)
	if err != nil {
		return fail(err)
	}
	seq := len(w.set.Tapes) + 1
	vl := tapefs.VolumeLabel{FormatVersion: tapefs.FormatVersion, VolumeID: tapefs.NewUUID(), Barcode: e.Barcode, BlockSize: tapefs.BlockSize, Created: w.now().UTC()}
	sl := tapefs.SetLabel{Pool: w.pool.Name, SetID: w.set.ID, Sequence: seq, Created: w.set.Created, Expiry: w.set.Expiry,
		KeyFingerprint: w.set.KeyFingerprint, Compressed: w.set.Compressed, StoreID: w.storeID, StoreConfig: w.storeConfig}
	if err := tapefs.WriteLabels(w.ctx, d, vl, sl); err != nil {
		if errors.Is(err, tapefs.ErrWriteProtected) {
			return fail(fmt.Errorf("write-protected: skipped (clear its write-protect tab to use it)"))
		}
		return fail(fmt.Errorf("label: %w", err))
	}
	w.dropFromOldSet(e.Barcode, old)
	m := &TapeMedium{Barcode: e.Barcode, VolumeID: vl.VolumeID, Pool: w.pool.Name, Set: w.set.ID, Sequence: seq, State: MediaWriting,
		Written: w.now().UTC(), Expiry: w.set.Expiry, Library: w.libName, Slot: e.Number, NextFile: 2}
	w.set.Tapes = append(w.set.Tapes, e.Barcode)
	w.media[e.Barcode] = m
	w.drive, w.cur = d, m
	w.rep.Tapes = append(w.rep.Tapes, e.Barcode)
	w.log("cartridge %s (slot %d) labelled as sequence %d of set %s, pool %s", e.Barcode, e.Number, seq, w.set.ID, w.pool.Name)
	// Recorded at once: a job killed from here on leaves the cartridge
	// in its set as the home knows it, and the pool's next write goes on
	// on it (appendTo ends the cut file and numbers past it), instead of
	// meeting a label of a set it does not know, which it must refuse.
	if err := w.save(); err != nil {
		w.log("%v", err)
	}
	return nil
}

// dropFromOldSet drops a cartridge just labelled into the job's set from
// the set it held before (an expired one), as the catalog records it, or
// else as its set label (old, nil when blank) said: the old set's record
// must not name a cartridge that holds another set now, or a restore
// would take that set's points as there. The old set is saved with the
// job's.
func (w *tapeWriter) dropFromOldSet(barcode string, old *tapefs.SetLabel) {
	setID, seq := "", 0
	if m := w.mediumRec(barcode); m.Set != "" && m.Set != w.set.ID {
		setID, seq = m.Set, m.Sequence
	} else if old != nil && !freeLabel(old) && old.SetID != w.set.ID {
		setID, seq = old.SetID, old.Sequence
	}
	if setID == "" {
		return
	}
	s, ok := w.others[setID]
	if !ok {
		rec, known := w.st.set(setID)
		if !known {
			return
		}
		s = &rec
	}
	if seq < 1 || seq > len(s.Tapes) || s.Tapes[seq-1] != barcode {
		return
	}
	lost := dropCartridge(s, seq)
	w.others[setID] = s
	if len(lost) > 0 {
		w.log("cartridge %s was sequence %d of expired set %s: the set no longer holds points %s", barcode, seq, setID, strings.Join(lost, ", "))
	}
}

// checkOverwrite refuses to overwrite the cartridge in d unless force or
// mayOverwrite allows it, from the catalog and the labels on it; it
// returns the set label it read (nil for a blank cartridge).
func checkOverwrite(ctx context.Context, d tapefs.Drive, st *TapeState, pool string, now time.Time, force bool) (*tapefs.SetLabel, error) {
	if force {
		return nil, nil
	}
	vl, sl, err := tapefs.ReadLabels(ctx, d)
	if errors.Is(err, tapefs.ErrNotLabelled) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read its labels: %w (erase it with 'recall tape erase --force' if it holds nothing you need)", err)
	}
	return sl, mayOverwrite(st, vl.Barcode, true, sl, pool, now)
}

// slotOf finds the storage slot of a barcode.
func slotOf(inv *tapefs.Inventory, barcode string) (int, bool) {
	for _, e := range inv.Slots {
		if e.Full && e.Barcode == barcode {
			return e.Number, true
		}
	}
	return 0, false
}

// clearDrive returns a cartridge a previous job left in drive to its slot.
func clearDrive(ctx context.Context, lib tapefs.Library, inv *tapefs.Inventory, drive int) error {
	for _, e := range inv.Drives {
		if e.Number != drive || !e.Full {
			continue
		}
		slot := e.From
		if slot == 0 || slices.ContainsFunc(inv.Slots, func(s tapefs.Element) bool { return s.Number == slot && s.Full }) {
			slot = 0
			for _, s := range inv.Slots {
				if !s.Full && s.Kind == tapefs.SlotElement {
					slot = s.Number
					break
				}
			}
		}
		if slot == 0 {
			return fmt.Errorf("%s: drive %d holds cartridge %s and no storage slot is free to put it back: free a slot (take a cartridge out through the import/export slot) and run again", lib.Name(), drive, e.Barcode)
		}
		d, err := lib.Drive(drive)
		if err != nil {
			return err
		}
		defer d.Close()
		return unloadDrive(ctx, lib, d, drive, slot)
	}
	return nil
}

// loadSlot moves the cartridge in slot into drive and loads it.
func loadSlot(ctx context.Context, lib tapefs.Library, slot, drive int) (tapefs.Drive, error) {
	if err := lib.Load(ctx, slot, drive); err != nil {
		return nil, fmt.Errorf("%s: move %s into drive %d: %w (see 'recall tape inventory'; a drive that holds a cartridge already, or a cartridge that is not where the library says, is cleared at the library's panel)", lib.Name(), slotName(ctx, lib, slot), drive, err)
	}
	d, err := lib.Drive(drive)
	if err != nil {
		return nil, fmt.Errorf("%s: drive %d: %w", lib.Name(), drive, err)
	}
	if err := d.Load(ctx); err != nil {
		d.Close()
		lib.Unload(ctx, drive, slot)
		return nil, fmt.Errorf("%s: drive %d does not load %s: %w (it was put back; if it fails again, clean the drive or try the cartridge in another drive)", lib.Name(), drive, slotName(ctx, lib, slot), err)
	}
	return d, nil
}

// slotName names the cartridge in slot for a message: its barcode and
// slot when the library says, else the slot.
func slotName(ctx context.Context, lib tapefs.Library, slot int) string {
	if inv, err := lib.Inventory(ctx); err == nil {
		for _, e := range inv.Slots {
			if e.Number == slot && e.Barcode != "" {
				return fmt.Sprintf("cartridge %s (slot %d)", e.Barcode, slot)
			}
		}
	}
	return fmt.Sprintf("the cartridge in slot %d", slot)
}

// unloadDrive ejects the cartridge in d and moves it to slot.
func unloadDrive(ctx context.Context, lib tapefs.Library, d tapefs.Drive, drive, slot int) error {
	if err := d.Unload(ctx); err != nil && !errors.Is(err, tapefs.ErrNoMedium) {
		return err
	}
	return lib.Unload(ctx, drive, slot)
}

// RunTapeJob records fn as a job in the catalog of home, which need hold
// no store (a server restoring from tape alone has none), and runs it
// holding the tape lock of home (lockTape): one tape job at a time. The
// record is best-effort, as startJob's is.
func RunTapeJob(home string, j *Job, warn func(string, ...any), fn func() error) error {
	if warn == nil {
		warn = func(string, ...any) {}
	}
	j.Started = time.Now().UTC()
	recorded := WithTapeCatalog(home, warn, func(c *Catalog) error { return c.StartJob(j) }) == nil
	unlock, err := lockTape(context.Background(), home, j.Kind, warn)
	if err == nil {
		err = fn()
		unlock()
	}
	if !recorded {
		return err
	}
	j.end(err)
	if cerr := WithTapeCatalog(home, warn, func(c *Catalog) error { return c.FinishJob(j) }); cerr != nil {
		warn("job result not recorded in the catalog: %v", cerr)
	}
	return err
}
