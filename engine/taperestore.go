package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend"
	"github.com/recall-backup/recall/chunkstore/backend/local"
	"github.com/recall-backup/recall/tapefs"
)

// Restoring from tape alone.
//
// The media catalog says which cartridges and tape files hold the point's
// packs and its point file. Every cartridge needed must be in the library
// before anything is read (the error lists the barcodes to insert). Each
// cartridge is read in one forward pass, its files in position order,
// into a staging store under the home: the store's config files from the
// set label, the packs, the manifest. Its index is rebuilt from the pack
// headers (RepairIndex), and the point restored from it by Restore, as a
// restore from disk is, so modes, owners, times, xattrs, hard links and
// holes come out the same. The staging store is removed at the end.
//
// A pack lost to a bad block, or not on the cartridge where the catalog
// says, leaves its files damaged (ErrDamaged): what the other packs hold
// is restored, those after a bad block in the same tape file too (the
// reader goes on at the next wanted pack, located by the block and offset
// the catalog records for it). A cartridge that is not the one the
// catalog says (set, sequence, volume id) is not read at all. A set read with no key or the wrong
// one is refused before anything is written to the target.
//
// A point held by several sets (a copy, or a write to two pools) is read
// from the latest set that can be read: any failure of one set (a
// cartridge not in the library, no key, a cartridge that is not what the
// catalog says, a point file lost) sends it to the next, and the latest
// set's error is the one reported if none can be read. A set whose
// cartridges the point needs were reused since is not tried. Packs lost
// to bad blocks in the set read are then read from the other sets
// holding them (fillLost): a pack's name is the hash of its bytes, the
// same in every set.

// maxPointEntry bounds a point file's entries held in memory.
const maxPointEntry = 64 << 20

// TapeRestoreOptions configure RestoreFromTape.
type TapeRestoreOptions struct {
	Point     string // id or unique prefix, or "latest" (of Source)
	Source    string // with Point "latest": the data source whose newest point on tape is restored
	Target    string
	Path      string
	Overwrite bool
	// Password gives the passphrase of the store the point was written
	// from, asked only when it was encrypted.
	Password func() (string, error)
	Log      func(format string, args ...any)
	Progress *Progress
}

// TapeRestoreResult is what a restore from tape did.
type TapeRestoreResult struct {
	Point *Point
	*RestoreResult
	// LostPacks are the packs that could not be read: bad blocks, or
	// not on tape where the catalog says (Lost has the cause of each).
	LostPacks []string
	Lost      []TapeLostPack
	Tapes     []string // barcodes read, in order
}

type pointOnTape struct {
	set   TapeSet
	point tapefs.CatalogPoint
}

// latestOnTape returns the id of the newest point of source the media
// catalog knows, as restore's "latest --source S" names it in the store.
func latestOnTape(st *TapeState, source string) (string, error) {
	if source == "" {
		// As restore's "latest" in the store: the one source there is,
		// else the sources to name one of.
		var srcs []string
		for _, s := range st.Sets {
			if s.Catalog != nil {
				for _, p := range s.Catalog.Points {
					srcs = append(srcs, p.Source)
				}
			}
		}
		slices.Sort(srcs)
		switch srcs = slices.Compact(srcs); len(srcs) {
		case 0:
			return "", fmt.Errorf("latest point: %w: no set on tape holds one (see 'recall tape list'; a cartridge from elsewhere is read in with 'recall tape catalog')", ErrTapeNotFound)
		case 1:
			source = srcs[0]
		default:
			return "", fmt.Errorf("%w: \"latest\" of %d sources on tape (%s); name one with --source", ErrAmbiguous, len(srcs), ListSome(srcs, 8))
		}
	}
	var id string
	var at time.Time
	for _, s := range st.Sets {
		if s.Catalog == nil {
			continue
		}
		for _, p := range s.Catalog.Points {
			if p.Source != source {
				continue
			}
			if _, gone := reusedCartridge(st, s, p.Files); gone {
				continue
			}
			if id == "" || p.Time.After(at) {
				id, at = p.ID, p.Time
			}
		}
	}
	if id == "" {
		return "", fmt.Errorf("latest point of source %s: %w: no set on tape holds one (see 'recall tape list'; a cartridge from elsewhere is read in with 'recall tape catalog')", source, ErrTapeNotFound)
	}
	return id, nil
}

// findTapePoint finds a point in the media catalog by id or unique
// prefix: every set holding it (a copy holds it too), the latest first.
func findTapePoint(st *TapeState, spec string) ([]pointOnTape, error) {
	var found []pointOnTape
	seen := map[string]bool{}
	var gone []string
	for _, s := range st.Sets {
		if s.Catalog == nil {
			continue
		}
		for _, p := range s.Catalog.Points {
			if !strings.HasPrefix(p.ID, spec) || spec == "" {
				continue
			}
			seen[p.ID] = true
			if bc, ok := reusedCartridge(st, s, p.Files); ok {
				// The record of s predates the reuse of bc (a catalog
				// written before reuses dropped cartridges from their
				// sets): what s says is on it is gone.
				gone = append(gone, fmt.Sprintf("set %s (cartridge %s holds another set now)", s.ID, bc))
				continue
			}
			found = append(found, pointOnTape{s, p})
		}
	}
	switch {
	case len(found) == 0 && len(gone) > 0 && len(seen) == 1:
		return nil, fmt.Errorf("point %s: %w: the sets that held it lost cartridges to reuse: %s", spec, ErrTapeNotFound, strings.Join(gone, "; "))
	case len(found) == 0 && len(seen) == 0:
		return nil, fmt.Errorf("point %s: %w: no set on tape holds it (see 'recall tape list'; a cartridge from elsewhere is read in with 'recall tape catalog')", spec, ErrTapeNotFound)
	case len(seen) > 1:
		return nil, fmt.Errorf("point %s: the prefix names %d points on tape; give more of its id", spec, len(seen))
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].set.Created.After(found[j].set.Created) })
	return found, nil
}

// reusedCartridge returns a cartridge that the catalog files of s at
// files (indexes into its Files) are on, and that the media catalog says
// holds another set now.
func reusedCartridge(st *TapeState, s TapeSet, files []int) (string, bool) {
	for _, i := range files {
		if i < 0 || i >= len(s.Catalog.Files) {
			continue
		}
		q := s.Catalog.Files[i].Sequence
		if q < 1 || q > len(s.Tapes) {
			continue
		}
		if m, ok := st.medium(s.Tapes[q-1]); ok && m.Set != "" && m.Set != s.ID {
			return m.Barcode, true
		}
	}
	return "", false
}

// pointFileOf finds the point file of a point in c.
func pointFileOf(c *tapefs.MediaCatalog, id string) (tapefs.CatalogFile, bool) {
	for _, p := range c.Points {
		if p.ID != id {
			continue
		}
		for _, i := range p.Files {
			if i >= 0 && i < len(c.Files) && c.Files[i].Kind == tapefs.KindPoint {
				return c.Files[i], true
			}
		}
	}
	return tapefs.CatalogFile{}, false
}

// setKey returns the key to read set s with (nil for a plain set).
func setKey(home string, st *TapeState, setID, pool, fingerprint string) ([]byte, error) {
	if fingerprint == "" {
		return nil, nil
	}
	key, err := loadPoolKey(home, pool, fingerprint)
	if err != nil {
		return nil, err
	}
	return tapefs.SetKey(key, setID), nil
}

// RestoreFromTape restores a point from its cartridges into o.Target.
func RestoreFromTape(ctx context.Context, home string, o TapeRestoreOptions) (res *TapeRestoreResult, err error) {
	if o.Password != nil {
		// Asked once (a prompt), whether for the early check of the
		// staged config or the store's open at the end.
		o.Password = sync.OnceValues(o.Password)
	}
	j := &Job{Kind: "tape-restore", Point: o.Point, Path: o.Target}
	err = RunTapeJob(home, j, o.Log, func() error {
		res, err = restoreFromTape(ctx, home, o)
		if err == nil && res != nil && res.RestoreResult != nil && (len(res.Skipped) > 0 || len(res.Warnings) > 0) {
			return fmt.Errorf("%w: restore left entries out", ErrWarnings)
		}
		return err
	})
	if errors.Is(err, ErrWarnings) && res != nil {
		err = nil // the caller reports the warnings from res
	}
	return res, err
}

func restoreFromTape(ctx context.Context, home string, o TapeRestoreOptions) (_ *TapeRestoreResult, err error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return nil, err
	}
	if o.Point == "latest" {
		if o.Point, err = latestOnTape(st, o.Source); err != nil {
			return nil, err
		}
	}
	found, err := findTapePoint(st, o.Point)
	if err != nil {
		return nil, err
	}
	if err := checkRestoreTarget(home, o.Target, o.Overwrite); err != nil {
		return nil, err
	}
	// The latest set that can be read: a copy serves as well as the
	// original. Whatever keeps one set from being read (a cartridge not
	// in the library, a key not on this server, a cartridge relabelled,
	// its point file damaged) sends the restore to the next set holding
	// the point; the latest set's error is the one reported if none can.
	var (
		sg    *staged
		first error
	)
	for _, pt := range found {
		sg, err = stageFromTape(ctx, home, st, pt.set, []tapefs.CatalogPoint{pt.point}, o.Log, func(dir string) error { return checkStagedKey(dir, pt.set.ID, o.Password) })
		if sg != nil {
			defer os.RemoveAll(sg.dir)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if first == nil {
			first = err
		}
		if len(found) > 1 {
			o.Log("set %s: %v; trying the next set holding point %s", pt.set.ID, err, pt.point.ID[:12])
		}
	}
	if err != nil {
		return nil, first
	}
	if len(sg.lost) > 0 {
		// Packs lost to bad blocks (or not where the catalog said) in
		// this set are read from the other sets holding them.
		sg.fillLost(ctx, home, st, o.Log)
	}
	s, err := openStaged(ctx, sg.dir, o.Password)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p, err := s.Reader().LoadPoint(sg.points[0])
	if err != nil {
		return nil, err
	}
	res := &TapeRestoreResult{LostPacks: sg.lost, Lost: sg.lostWhy, Tapes: sg.tapes, Point: p}
	rr, err := Restore(ctx, s.Reader(), p, RestoreOptions{Target: o.Target, Path: o.Path, Overwrite: o.Overwrite, Protect: []string{home}, Log: o.Log, Progress: o.Progress})
	res.RestoreResult = rr
	return res, err
}

// checkRestoreTarget refuses, before any cartridge is loaded, a target
// that Restore would refuse once every cartridge is read, hours later on
// LTO (see checkTarget). Whether --path names something in the point only
// its trees can tell, and they are read from tape last.
//
// A target that is, or is inside, a staging store's name in the home
// (tape-restore-*) is refused too: a later tape job would take it for a
// staging store a stopped restore left.
func checkRestoreTarget(home, target string, overwrite bool) error {
	if target != "" {
		abs, err := filepath.Abs(target)
		if err != nil {
			return fmt.Errorf("restore target %s: %w", target, err)
		}
		for d := range walkUp(abs, resolvedPath(abs)) {
			if isStagingName(home, d) {
				return fmt.Errorf("restore target %s: %s in the home is the name of a tape restore's staging store (%s*), which tape jobs remove: choose a directory outside the home, or another name; nothing was read from tape", target, d, stagingPrefix)
			}
		}
	}
	if _, _, err := checkTarget(target, overwrite); err != nil {
		return fmt.Errorf("%w; nothing was read from tape", err)
	}
	return nil
}

// resolvedPath is p with the symlinks of its longest existing prefix
// resolved.
func resolvedPath(p string) string {
	for d := p; ; d = filepath.Dir(d) {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			rel, _ := filepath.Rel(d, p)
			return filepath.Join(r, rel)
		}
		if filepath.Dir(d) == d {
			return p
		}
	}
}

// walkUp yields each of paths and every directory above it, the root
// not included.
func walkUp(paths ...string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, p := range paths {
			for d := filepath.Clean(p); filepath.Dir(d) != d; d = filepath.Dir(d) {
				if !yield(d) {
					return
				}
			}
		}
	}
}

// staged is a staging store read from tape.
type staged struct {
	dir    string
	set    string          // the set staged from (packs lost there may come from others)
	config bool            // the store's config files are staged
	points []chunkstore.ID // the points whose manifests it holds, as asked
	lost   []string        // packs not read (bad blocks), or not on the set
	// lostWhy is lost with the cause of each.
	lostWhy []TapeLostPack
	tapes   []string // barcodes read, in order
	// keyCheck, when set, is told the staging store's directory once its
	// config is staged, before any pack is read: a passphrase that does
	// not open it fails the restore then, not after every cartridge.
	keyCheck func(dir string) error
}

// stageFromTape reads the packs and manifests of points of set into a new
// staging store under home, each cartridge in one forward pass; every
// cartridge needed must be in the library first. The caller removes
// staged.dir (set also on error).
func stageFromTape(ctx context.Context, home string, st *TapeState, set TapeSet, points []tapefs.CatalogPoint, log func(string, ...any), keyCheck func(dir string) error) (*staged, error) {
	cat := set.Catalog
	key, err := setKey(home, st, set.ID, set.Pool, set.KeyFingerprint)
	if err != nil {
		return nil, err
	}
	// What to read: the last copy of each pack the points need, and their
	// point files, by cartridge.
	where := cat.PackIndex()
	sg := &staged{keyCheck: keyCheck}
	want := map[string]bool{}
	files := map[int]bool{}
	pointAt := map[fileKey]string{}
	var ids []string
	for _, pt := range points {
		for _, pk := range pt.Packs {
			i, ok := where[pk]
			if !ok {
				sg.lost = append(sg.lost, pk)
				sg.lostWhy = append(sg.lostWhy, TapeLostPack{Name: pk, Cause: LostMissing, Error: "no file of set " + set.ID + " holds it"})
				continue
			}
			want[pk] = true
			files[i] = true
		}
		pf, ok := pointFileOf(cat, pt.ID)
		if !ok {
			return nil, fmt.Errorf("point %s: set %s lists no point file for it: the point cannot be read from this set", pt.ID[:12], set.ID)
		}
		id, err := chunkstore.ParseID(pt.ID)
		if err != nil {
			return nil, fmt.Errorf("point %q in the media catalog: %w", pt.ID, err)
		}
		sg.points = append(sg.points, id)
		ids = append(ids, pt.ID[:12])
		pointAt[fileKey{pf.Sequence, pf.FileNo}] = id.String()
		for i, f := range cat.Files {
			if f.Sequence == pf.Sequence && f.FileNo == pf.FileNo {
				files[i] = true
			}
		}
	}
	sg.set = set.ID
	if len(sg.lost) > 0 {
		if err := uncatalogued(ctx, st, set, len(sg.lost), "point(s) "+strings.Join(ids, ", ")); err != nil {
			return sg, err
		}
	}
	manifests, err := sg.readSet(ctx, home, st, set, key, want, files, pointAt, "point(s) "+strings.Join(ids, ", "), log)
	if err != nil {
		return sg, err
	}
	for _, id := range sg.points {
		if !manifests[id.String()] {
			return sg, fmt.Errorf("point %s: its point file could not be read: the point cannot be read from set %s", id.String()[:12], set.ID)
		}
	}
	return sg, nil
}

// uncatalogued returns the error that sends the operator to 'recall tape
// catalog' when lost packs the catalog places on no file of set may be on
// a cartridge of the set this home has not read: a sequence below the
// set's last known one of which the catalog lists no file. Nothing is
// read first. The slot is named when the cartridge's barcode is known and
// it is in the library; else the full slots whose cartridges this home
// has not read. nil when every sequence is catalogued.
func uncatalogued(ctx context.Context, st *TapeState, set TapeSet, lost int, what string) error {
	cat := set.Catalog
	last := len(set.Tapes)
	has := map[int]bool{}
	for _, f := range cat.Files {
		has[f.Sequence] = true
		last = max(last, f.Sequence)
	}
	for _, t := range cat.Tapes {
		last = max(last, t.Sequence)
	}
	var seqs []int
	for q := 1; q < last; q++ {
		if !has[q] {
			seqs = append(seqs, q)
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	barcode := func(q int) string {
		for _, t := range cat.Tapes {
			if t.Sequence == q && t.Barcode != "" {
				return t.Barcode
			}
		}
		if q-1 < len(set.Tapes) {
			return set.Tapes[q-1]
		}
		return ""
	}
	var inv *tapefs.Inventory
	libName := ""
	for _, bc := range set.Tapes {
		if m, ok := st.medium(bc); ok && m.Library != "" {
			libName = m.Library
			break
		}
	}
	if libRec, err := st.library(libName); err == nil {
		if lib, err := openLibrary(libRec); err == nil {
			inv, _ = lib.Inventory(ctx)
			lib.Close()
		}
	}
	var how []string
	for _, q := range seqs {
		bc := barcode(q)
		if bc != "" && inv != nil {
			if slot, ok := slotOf(inv, bc); ok {
				how = append(how, fmt.Sprintf("sequence %d is cartridge %s: run 'recall tape catalog --slot %d'", q, bc, slot))
				continue
			}
		}
		if bc != "" {
			how = append(how, fmt.Sprintf("sequence %d is cartridge %s, not in the library: insert it and run 'recall tape catalog --slot N' with its slot", q, bc))
			continue
		}
		var unread []string
		if inv != nil {
			for _, e := range inv.Slots {
				if _, known := st.medium(e.Barcode); e.Full && !e.Cleaning && !known {
					unread = append(unread, fmt.Sprint(e.Number))
				}
			}
		}
		h := fmt.Sprintf("sequence %d: its barcode is not known here: run 'recall tape catalog --slot N' with the slot of the cartridge labelled so, or 'recall tape catalog' for every slot", q)
		if len(unread) > 0 {
			h += " (slots this home has not read: " + strings.Join(unread, ", ") + ")"
		}
		how = append(how, h)
	}
	qs := make([]string, len(seqs))
	for i, q := range seqs {
		qs[i] = fmt.Sprint(q)
	}
	return fmt.Errorf("%w: %s need %d pack(s) on no cartridge of set %s read into this home: sequence %s of set %s is not catalogued here; %s; then run the restore again (nothing was read)",
		ErrCartridgeMissing, what, lost, set.ID, strings.Join(qs, ", "), set.ID, strings.Join(how, "; "))
}

// readSet reads the wanted packs of the tape files files (indexes into
// set's catalog) and the manifests of the point files pointAt names into
// the staging store (made in a new directory under home if sg has none),
// each cartridge in one forward pass; every cartridge needed must be in
// the library first (else ErrCartridgeMissing, naming them and what
// needs them). Packs not read are added to sg.lost. It returns the points
// whose manifests were read.
func (sg *staged) readSet(ctx context.Context, home string, st *TapeState, set TapeSet, key []byte, want map[string]bool, files map[int]bool,
	pointAt map[fileKey]string, what string, log func(string, ...any)) (map[string]bool, error) {
	cat := set.Catalog
	byTape := map[int][]tapefs.CatalogFile{}
	for i := range files {
		byTape[cat.Files[i].Sequence] = append(byTape[cat.Files[i].Sequence], cat.Files[i])
	}
	var seqs []int
	for q := range byTape {
		seqs = append(seqs, q)
		sort.Slice(byTape[q], func(a, b int) bool { return byTape[q][a].StartPos < byTape[q][b].StartPos })
	}
	sort.Ints(seqs)
	barcode := func(seq int) string {
		for _, t := range cat.Tapes {
			if t.Sequence == seq {
				return t.Barcode
			}
		}
		if seq-1 < len(set.Tapes) {
			return set.Tapes[seq-1]
		}
		return ""
	}

	libName := ""
	for _, q := range seqs {
		if m, ok := st.medium(barcode(q)); ok && m.Library != "" {
			libName = m.Library
			break
		}
	}
	lib, libRec, inv, err := openReadyLibrary(ctx, st, libName)
	if err != nil {
		return nil, err
	}
	defer lib.Close()
	var missing []string
	slots := map[int]int{}
	for _, q := range seqs {
		bc := barcode(q)
		slot, ok := slotOf(inv, bc)
		if !ok {
			missing = append(missing, bc)
			continue
		}
		slots[q] = slot
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s need cartridge(s) %s of set %s, not in library %s: insert them and run again (nothing was read)",
			ErrCartridgeMissing, what, strings.Join(missing, ", "), set.ID, libRec.Name)
	}

	var be *local.Backend
	if sg.dir == "" {
		if sg.dir, err = newStagingDir(home); err != nil {
			return nil, fmt.Errorf("staging store: %w", err)
		}
		// The whole layout, so the staging store opens even when no pack
		// could be read (the restore then names every file damaged).
		if be, err = local.Create(sg.dir); err != nil {
			return nil, fmt.Errorf("staging store: %w", err)
		}
	} else {
		be = local.Open(sg.dir)
	}
	defer be.Close()
	manifests := map[string]bool{}
	fo := tapefs.FileOptions{Key: key}
	for _, q := range seqs {
		bc := barcode(q)
		log("reading cartridge %s (sequence %d of set %s, slot %d): %d tape files", bc, q, set.ID, slots[q], len(byTape[q]))
		tc := tapeCartridge{slot: slots[q], barcode: bc, sequence: q, setID: set.ID}
		for _, t := range cat.Tapes {
			if t.Sequence == q {
				tc.volumeID = t.VolumeID
			}
		}
		afterConfig := func() error {
			if sg.keyCheck == nil {
				return nil
			}
			return sg.keyCheck(sg.dir)
		}
		got, err := readCartridge(ctx, lib, tc, byTape[q], fo, want, pointAt, be, !sg.config, afterConfig)
		sg.tapes = append(sg.tapes, bc)
		if err != nil {
			return manifests, err
		}
		sg.config = sg.config || got.config
		for _, id := range got.manifests {
			manifests[id] = true
		}
		for _, l := range got.lost {
			log("cartridge %s: pack %s not read (%s): %v", bc, l.name, l.public().Cause, l.err)
			sg.lost = append(sg.lost, l.name)
			sg.lostWhy = append(sg.lostWhy, l.public())
		}
	}
	return manifests, nil
}

// setsNewestFirst returns the sets of st, the latest made first.
func setsNewestFirst(st *TapeState) []TapeSet {
	out := slices.Clone(st.Sets)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// fillLost reads the packs sg lost from the other sets holding them, the
// latest first, as long as any is lost: the same pack name is the same
// bytes in any set. A set that cannot be read (a cartridge not in the
// library, no key) is passed over, said to log; the packs no set gives
// stay lost.
func (sg *staged) fillLost(ctx context.Context, home string, st *TapeState, log func(string, ...any)) {
	for _, set := range setsNewestFirst(st) {
		if len(sg.lost) == 0 || ctx.Err() != nil {
			return
		}
		if set.ID == sg.set || set.Catalog == nil {
			continue
		}
		where := set.Catalog.PackIndex()
		want := map[string]bool{}
		files := map[int]bool{}
		var keep []string
		var keepWhy []TapeLostPack
		for k, pk := range sg.lost {
			i, ok := where[pk]
			if ok {
				if _, reused := reusedCartridge(st, set, []int{i}); !reused {
					want[pk], files[i] = true, true
					continue
				}
			}
			keep, keepWhy = append(keep, pk), append(keepWhy, sg.lostWhy[k])
		}
		if len(want) == 0 {
			continue
		}
		key, err := setKey(home, st, set.ID, set.Pool, set.KeyFingerprint)
		if err != nil {
			log("set %s holds %d of the packs lost, but cannot be read: %v", set.ID, len(want), err)
			continue
		}
		before := slices.Clone(sg.lostWhy)
		lost := slices.Clone(sg.lost)
		sg.lost, sg.lostWhy = keep, keepWhy
		log("reading %d pack(s) lost from set %s from set %s", len(want), sg.set, set.ID)
		if _, err := sg.readSet(ctx, home, st, set, key, want, files, nil, fmt.Sprintf("%d pack(s) lost from set %s", len(want), sg.set), log); err != nil {
			log("set %s: %v; its packs stay lost", set.ID, err)
			sg.lost, sg.lostWhy = lost, before
		}
	}
}

// checkStagedKey opens the staging store at dir, whose config the label
// of set gave, to see that the passphrase opens it.
func checkStagedKey(dir, set string, password func() (string, error)) error {
	s, err := openStagedStore(dir, password)
	if errors.Is(err, chunkstore.ErrWrongPassword) {
		return fmt.Errorf("set %s was written from an encrypted store: %w: give the passphrase that store had when the set was written (the one before any 'recall key passwd' since); nothing was read past the set label", set, err)
	}
	if err != nil {
		return err
	}
	s.Close()
	return nil
}

// openStagedStore opens the staging store at dir, asking password only
// when its config is encrypted.
func openStagedStore(dir string, password func() (string, error)) (*Store, error) {
	s, err := Open(dir, chunkstore.OpenOptions{})
	if errors.Is(err, chunkstore.ErrNoPassword) && password != nil {
		pw, perr := password()
		if perr != nil {
			return nil, perr
		}
		s, err = Open(dir, chunkstore.OpenOptions{Password: pw})
	}
	if err != nil {
		return nil, fmt.Errorf("open the store the point was written from (its config came from the set label): %w", err)
	}
	return s, nil
}

// openStaged opens the staging store and indexes its packs.
func openStaged(ctx context.Context, dir string, password func() (string, error)) (*Store, error) {
	s, err := openStagedStore(dir, password)
	if err != nil {
		return nil, err
	}
	ss, err := s.Session(ctx, SessionOptions{Purpose: "index packs read from tape", Exclusive: true})
	if err != nil {
		s.Close()
		return nil, err
	}
	_, err = RepairIndex(ctx, ss, RepairOptions{})
	ss.Close()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("index the packs read from tape: %w", err)
	}
	return s, nil
}

// lostPack is a wanted pack not read from a cartridge, and why.
type lostPack struct {
	name string
	err  error
	// missing: the tape did not hold it where the catalog says (as opposed
	// to a damaged block holding it).
	missing bool
}

// TapeLostPack is a pack a restore from tape could not read.
type TapeLostPack struct {
	Name string `json:"name"`
	// Cause is "bad blocks" (the tape holds it, damaged) or "missing" (not
	// on the tape where the media catalog says, or not on the set at all).
	Cause string `json:"cause"`
	Error string `json:"error,omitempty"`
}

// Causes of a lost pack.
const (
	LostBadBlocks = "bad blocks"
	LostMissing   = "missing"
)

func (l lostPack) public() TapeLostPack {
	t := TapeLostPack{Name: l.name, Cause: LostBadBlocks}
	if l.missing {
		t.Cause = LostMissing
	}
	if l.err != nil {
		t.Error = l.err.Error()
	}
	return t
}

// damagedTape tells an error of a damaged tape (bad blocks) from one of a
// tape that does not hold what the catalog says.
func damagedTape(err error) bool {
	return errors.Is(err, tapefs.ErrBadBlock) || errors.Is(err, tapefs.ErrMediumError) || errors.Is(err, tapefs.ErrTorn)
}

type cartridgeRead struct {
	lost      []lostPack
	config    bool
	manifests []string // points whose manifests were saved
}

// tapeCartridge is one cartridge of a set as the media catalog records it.
type tapeCartridge struct {
	slot     int
	barcode  string
	sequence int
	volumeID string // "" when the catalog does not know it
	setID    string
}

// readCartridge reads the wanted packs (and a point file's manifest) of
// files from one cartridge, in one forward pass, into be; pointAt names
// the point of each point file. The cartridge must be the one the catalog
// says (set, sequence, volume id), and each file the one it says (number,
// kind): else what the catalog places there is lost as missing.
func readCartridge(ctx context.Context, lib tapefs.Library, tc tapeCartridge, files []tapefs.CatalogFile, fo tapefs.FileOptions,
	want map[string]bool, pointAt map[fileKey]string, be backend.Backend, saveConfig bool, afterConfig func() error) (*cartridgeRead, error) {
	barcode, slot := tc.barcode, tc.slot
	d, err := loadSlot(ctx, lib, slot, tapeDrive)
	if err != nil {
		return nil, fmt.Errorf("cartridge %s: %w", barcode, err)
	}
	defer func() {
		unloadDrive(ctx, lib, d, tapeDrive, slot)
		d.Close()
	}()
	vl, sl, err := tapefs.ReadLabels(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("cartridge %s (slot %d): %w", barcode, slot, err)
	}
	recatalog := fmt.Sprintf("run 'recall tape catalog --slot %d' to read what it holds", slot)
	if vl.Barcode != "" && vl.Barcode != barcode {
		// Its volume label was written on a cartridge with another
		// barcode: the stuck-on labels were swapped (or one was
		// replaced). A catalog read finds the same again.
		recatalog = fmt.Sprintf("its volume label says it was labelled as %s: the barcode label on the cartridge in slot %d is wrong (swapped with another?); put the right barcode label on it, or run 'recall tape catalog --slot %d' once it is right", vl.Barcode, slot, slot)
	}
	switch {
	case sl.SetID != tc.setID:
		return nil, fmt.Errorf("cartridge %s (slot %d) holds set %s, the catalog says set %s: %s", barcode, slot, sl.SetID, tc.setID, recatalog)
	case sl.Sequence != tc.sequence:
		return nil, fmt.Errorf("cartridge %s (slot %d) is sequence %d of set %s, the catalog says sequence %d: %s", barcode, slot, sl.Sequence, tc.setID, tc.sequence, recatalog)
	case tc.volumeID != "" && vl.VolumeID != tc.volumeID:
		return nil, fmt.Errorf("cartridge %s (slot %d) has volume id %s, the catalog says %s (relabelled since, or another cartridge with its barcode): %s", barcode, slot, vl.VolumeID, tc.volumeID, recatalog)
	}
	out := &cartridgeRead{}
	// Packs are saved to the staging store by another goroutine, so the
	// drive goes on reading while one is written (and synced).
	saves := make(chan stagedFile, 4)
	saveErr := make(chan error, 1)
	go func() {
		var err error
		for f := range saves {
			if err == nil {
				err = be.Save(ctx, f.h, f.data)
			}
		}
		saveErr <- err
	}()
	saved := false
	save := func(h backend.Handle, b []byte) error {
		select {
		case saves <- stagedFile{h, b}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() {
		if !saved {
			close(saves)
			<-saveErr
		}
	}()
	if saveConfig && len(sl.StoreConfig) > 0 {
		for name, b := range sl.StoreConfig {
			if err := be.Save(ctx, backend.Handle{Type: backend.Config, Name: name}, b); err != nil {
				return nil, fmt.Errorf("staging store: %w", err)
			}
		}
		out.config = true
		if err := afterConfig(); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		fr := &fileRead{c: out, d: d, fo: fo, f: f, barcode: barcode, setID: tc.setID, want: want, pointAt: pointAt, save: save}
		if err := fr.read(ctx); err != nil {
			return nil, err
		}
	}
	saved = true
	close(saves)
	if err := <-saveErr; err != nil {
		return nil, fmt.Errorf("staging store: %w", err)
	}
	return out, nil
}

// fileRead reads the wanted entries of one tape file.
type fileRead struct {
	c       *cartridgeRead
	d       tapefs.Drive
	fo      tapefs.FileOptions
	f       tapefs.CatalogFile
	barcode string
	setID   string
	want    map[string]bool
	pointAt map[fileKey]string
	save    func(backend.Handle, []byte) error

	got map[string]bool
	// why holds the wanted entries lost to a damaged block, with the error.
	why map[string]error
	// stop is why the rest of the file was not read, once it was given up.
	stop error
}

// read reads the file; every wanted entry of it not read is lost, with
// its cause. After a damaged block it goes on at the next wanted entry,
// located by the block and offset the catalog records for it (a packs
// file can be gigabytes long: giving up its rest would lose every pack
// after the damage). It returns only what ends the whole restore: a
// wrong key, a failed save, a cancelled context.
func (fr *fileRead) read(ctx context.Context) error {
	f := fr.f
	fr.got, fr.why = map[string]bool{}, map[string]error{}
	defer fr.account()
	if err := fr.d.Locate(ctx, f.StartPos); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fr.stop = fmt.Errorf("locate tape file %d at block %d: %w", f.FileNo, f.StartPos, err)
		return nil
	}
	r, err := tapefs.NewFileReader(ctx, fr.d, fr.fo)
	if err != nil {
		if errors.Is(err, tapefs.ErrWrongKey) {
			return fmt.Errorf("cartridge %s: %w: the pool key on this server does not open set %s (import the right key file with 'recall tape key import FILE'); nothing was restored", fr.barcode, err, fr.setID)
		}
		fr.stop = err
		return nil
	}
	if r.Kind() != f.Kind || r.FileNo() != f.FileNo {
		fr.stop = fmt.Errorf("the tape file at block %d is file %d (%s), the catalog says file %d (%s)", f.StartPos, r.FileNo(), r.Kind(), f.FileNo, f.Kind)
		return nil
	}
	index := make(map[string]int, len(f.Entries))
	for i, e := range f.Entries {
		index[e.Name] = i
	}
	last := -1 // the catalog index of the last entry reached
	for {
		name, _, err := r.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err == nil {
			if i, ok := index[name]; ok {
				last = i
			}
			err = fr.entry(r, name)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errFatalRead) {
			return err
		}
		if r, last = fr.resume(ctx, last, err); r == nil {
			return nil
		}
	}
}

// errFatalRead marks an error of entry that ends the restore.
var errFatalRead = errors.New("restore stopped")

// entry reads the current entry of r when it is wanted.
func (fr *fileRead) entry(r *tapefs.FileReader, name string) error {
	f := fr.f
	switch {
	case f.Kind == tapefs.KindPacks && fr.want[name] && !fr.got[name]:
		b, err := r.ReadEntry(1 << 32)
		if err != nil {
			fr.why[name] = err
			return err
		}
		if err := fr.save(backend.Handle{Type: backend.Packs, Name: name}, b); err != nil {
			return fmt.Errorf("%w: %w", errFatalRead, err)
		}
		fr.got[name] = true
	case f.Kind == tapefs.KindPoint && name == "manifest" && fr.pointAt[fileKey{f.Sequence, f.FileNo}] != "":
		b, err := r.ReadEntry(maxPointEntry)
		if err != nil {
			return err // the point's manifest is then missing, which is said at the end
		}
		id := fr.pointAt[fileKey{f.Sequence, f.FileNo}]
		if err := fr.save(backend.Handle{Type: backend.Points, Name: id}, b); err != nil {
			return fmt.Errorf("%w: %w", errFatalRead, err)
		}
		fr.c.manifests = append(fr.c.manifests, id)
	}
	return nil
}

// resume goes on after cause (a damaged block) at the first wanted entry
// after catalog index last that can be opened; nil when there is none, or
// when the catalog records no position for it (a catalog written before
// entries carried their block and offset: the rest of the file is then
// given up, lost to cause).
func (fr *fileRead) resume(ctx context.Context, last int, cause error) (*tapefs.FileReader, int) {
	for k := last + 1; k < len(fr.f.Entries); k++ {
		e := fr.f.Entries[k]
		if !fr.want[e.Name] || fr.got[e.Name] {
			continue
		}
		if k > 0 && e.Block == 0 && e.Offset == 0 {
			fr.stop = cause
			return nil, k
		}
		r, err := tapefs.OpenEntry(ctx, fr.d, fr.fo, fr.f.StartPos, e)
		if err != nil {
			fr.why[e.Name] = err
			continue
		}
		if err := fr.entry(r, e.Name); err != nil {
			if errors.Is(err, errFatalRead) {
				fr.stop = err
				return nil, k
			}
			continue
		}
		return r, k
	}
	fr.stop = cause
	return nil, len(fr.f.Entries)
}

// account records every wanted entry of the file not read as lost.
func (fr *fileRead) account() {
	for _, e := range fr.f.Entries {
		if !fr.want[e.Name] || fr.got[e.Name] {
			continue
		}
		l := lostPack{name: e.Name, err: fr.why[e.Name]}
		if l.err == nil {
			l.err = fr.stop
		}
		if l.err == nil {
			l.err = fmt.Errorf("tape file %d of cartridge %s ends without it, though the catalog lists it there", fr.f.FileNo, fr.barcode)
		}
		l.missing = !damagedTape(l.err)
		fr.c.lost = append(fr.c.lost, l)
	}
}

// stagedFile is a file read from tape on its way to the staging store.
type stagedFile struct {
	h    backend.Handle
	data []byte
}
