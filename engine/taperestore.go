package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

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
// A pack lost to a bad block leaves its files damaged (ErrDamaged): what
// the other packs hold is restored. A set read with no key or the wrong
// one is refused before anything is written to the target.

// maxPointEntry bounds a point file's entries held in memory.
const maxPointEntry = 64 << 20

// TapeRestoreOptions configure RestoreFromTape.
type TapeRestoreOptions struct {
	Point     string // id or unique prefix
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
	// LostPacks are the packs bad blocks kept from being read.
	LostPacks []string
	Tapes     []string // barcodes read, in order
}

type pointOnTape struct {
	set   TapeSet
	point tapefs.CatalogPoint
}

// findTapePoint finds a point in the media catalog by id or unique
// prefix: every set holding it (a copy holds it too), the latest first.
func findTapePoint(st *TapeState, spec string) ([]pointOnTape, error) {
	var found []pointOnTape
	seen := map[string]bool{}
	for _, s := range st.Sets {
		if s.Catalog == nil {
			continue
		}
		for _, p := range s.Catalog.Points {
			if strings.HasPrefix(p.ID, spec) && spec != "" {
				found = append(found, pointOnTape{s, p})
				seen[p.ID] = true
			}
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("point %s: %w: no set on tape holds it (see 'recall tape list'; a cartridge from elsewhere is read in with 'recall tape catalog')", spec, ErrTapeNotFound)
	case len(seen) > 1:
		return nil, fmt.Errorf("point %s: the prefix names %d points on tape; give more of its id", spec, len(seen))
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].set.Created.After(found[j].set.Created) })
	return found, nil
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
	found, err := findTapePoint(st, o.Point)
	if err != nil {
		return nil, err
	}
	// The latest set whose cartridges are all in the library: a copy
	// serves as well as the original.
	var sg *staged
	for i, pt := range found {
		sg, err = stageFromTape(ctx, home, st, pt.set, []tapefs.CatalogPoint{pt.point}, o.Log)
		if sg != nil {
			defer os.RemoveAll(sg.dir)
		}
		if err == nil || !errors.Is(err, ErrCartridgeMissing) {
			break
		}
		if i == 0 {
			first := err
			defer func() {
				if err != nil && errors.Is(err, ErrCartridgeMissing) {
					err = first // the latest set's cartridges are what to insert
				}
			}()
		}
	}
	if err != nil {
		return nil, err
	}
	res := &TapeRestoreResult{LostPacks: sg.lost, Tapes: sg.tapes}
	s, err := openStaged(ctx, sg.dir, o.Password)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p, err := s.Reader().LoadPoint(sg.points[0])
	if err != nil {
		return nil, err
	}
	res.Point = p
	rr, err := Restore(ctx, s.Reader(), p, RestoreOptions{Target: o.Target, Path: o.Path, Overwrite: o.Overwrite, Log: o.Log, Progress: o.Progress})
	res.RestoreResult = rr
	return res, err
}

// staged is a staging store read from tape.
type staged struct {
	dir    string
	points []chunkstore.ID // the points whose manifests it holds, as asked
	lost   []string        // packs not read (bad blocks), or not on the set
	tapes  []string        // barcodes read, in order
}

// stageFromTape reads the packs and manifests of points of set into a new
// staging store under home, each cartridge in one forward pass; every
// cartridge needed must be in the library first. The caller removes
// staged.dir (set also on error).
func stageFromTape(ctx context.Context, home string, st *TapeState, set TapeSet, points []tapefs.CatalogPoint, log func(string, ...any)) (*staged, error) {
	cat := set.Catalog
	key, err := setKey(home, st, set.ID, set.Pool, set.KeyFingerprint)
	if err != nil {
		return nil, err
	}
	// What to read: the last copy of each pack the points need, and their
	// point files, by cartridge.
	where := map[string]int{}
	for i, f := range cat.Files {
		if f.Kind == tapefs.KindPacks {
			for _, e := range f.Entries {
				where[e.Name] = i
			}
		}
	}
	sg := &staged{}
	want := map[string]bool{}
	files := map[int]bool{}
	pointAt := map[fileKey]string{}
	var ids []string
	for _, pt := range points {
		for _, pk := range pt.Packs {
			i, ok := where[pk]
			if !ok {
				sg.lost = append(sg.lost, pk)
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
	libRec, err := st.library(libName)
	if err != nil {
		return nil, err
	}
	lib, err := openLibrary(libRec)
	if err != nil {
		return nil, err
	}
	defer lib.Close()
	inv, err := lib.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("tape library %s: %w", libRec.Name, err)
	}
	if err := clearDrive(ctx, lib, inv, tapeDrive); err != nil {
		return nil, err
	}
	if inv, err = lib.Inventory(ctx); err != nil {
		return nil, fmt.Errorf("tape library %s: %w", libRec.Name, err)
	}
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
		return nil, fmt.Errorf("%w: point(s) %s need cartridge(s) %s of set %s, not in library %s: insert them and run again (nothing was read)",
			ErrCartridgeMissing, strings.Join(ids, ", "), strings.Join(missing, ", "), set.ID, libRec.Name)
	}

	if sg.dir, err = os.MkdirTemp(home, "tape-restore-"); err != nil {
		return nil, fmt.Errorf("staging store: %w", err)
	}
	be := local.Open(sg.dir)
	defer be.Close()
	manifests := map[string]bool{}
	configSaved := false
	fo := tapefs.FileOptions{Key: key}
	for _, q := range seqs {
		bc := barcode(q)
		log("reading cartridge %s (sequence %d of set %s, slot %d): %d tape files", bc, q, set.ID, slots[q], len(byTape[q]))
		got, err := readCartridge(ctx, lib, slots[q], bc, set.ID, byTape[q], fo, want, pointAt, be, !configSaved)
		sg.tapes = append(sg.tapes, bc)
		if err != nil {
			return sg, err
		}
		configSaved = configSaved || got.config
		for _, id := range got.manifests {
			manifests[id] = true
		}
		for _, l := range got.lost {
			log("cartridge %s: pack %s not read: %v", bc, l.name, l.err)
			sg.lost = append(sg.lost, l.name)
		}
	}
	for _, id := range sg.points {
		if !manifests[id.String()] {
			return sg, fmt.Errorf("point %s: its point file could not be read: the point cannot be read from set %s", id.String()[:12], set.ID)
		}
	}
	return sg, nil
}

// openStaged opens the staging store and indexes its packs.
func openStaged(ctx context.Context, dir string, password func() (string, error)) (*Store, error) {
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

type lostPack struct {
	name string
	err  error
}

type cartridgeRead struct {
	lost      []lostPack
	config    bool
	manifests []string // points whose manifests were saved
}

// readCartridge reads the wanted packs (and a point file's manifest) of
// files from one cartridge, in one forward pass, into be; pointAt names
// the point of each point file.
func readCartridge(ctx context.Context, lib tapefs.Library, slot int, barcode, setID string, files []tapefs.CatalogFile, fo tapefs.FileOptions,
	want map[string]bool, pointAt map[fileKey]string, be backend.Backend, saveConfig bool) (*cartridgeRead, error) {
	d, err := loadSlot(ctx, lib, slot, tapeDrive)
	if err != nil {
		return nil, fmt.Errorf("cartridge %s: %w", barcode, err)
	}
	defer func() {
		unloadDrive(ctx, lib, d, tapeDrive, slot)
		d.Close()
	}()
	_, sl, err := tapefs.ReadLabels(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("cartridge %s (slot %d): %w", barcode, slot, err)
	}
	if sl.SetID != setID {
		return nil, fmt.Errorf("cartridge %s (slot %d) holds set %s, the catalog says set %s: run 'recall tape catalog --slot %d' to read what it holds", barcode, slot, sl.SetID, setID, slot)
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
	}
	for _, f := range files {
		if err := d.Locate(ctx, f.StartPos); err != nil {
			return nil, fmt.Errorf("cartridge %s: locate file %d: %w", barcode, f.FileNo, err)
		}
		r, err := tapefs.NewFileReader(ctx, d, fo)
		if err != nil {
			if errors.Is(err, tapefs.ErrWrongKey) {
				return nil, fmt.Errorf("cartridge %s: %w: the pool key on this server does not open set %s (import the right key file with 'recall tape key import FILE'); nothing was restored", barcode, err, setID)
			}
			out.lostFile(f, want, err)
			continue
		}
		got := map[string]bool{}
	entries:
		for {
			name, _, err := r.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				out.lostFile(f, want, err, got)
				break
			}
			switch {
			case f.Kind == tapefs.KindPacks && want[name]:
				b, err := r.ReadEntry(1 << 32)
				if err != nil {
					out.lostFile(f, want, err, got)
					break entries
				}
				if err := save(backend.Handle{Type: backend.Packs, Name: name}, b); err != nil {
					return nil, err
				}
				got[name] = true
			case f.Kind == tapefs.KindPoint && name == "manifest" && pointAt[fileKey{f.Sequence, f.FileNo}] != "":
				b, err := r.ReadEntry(maxPointEntry)
				if err != nil {
					break entries
				}
				id := pointAt[fileKey{f.Sequence, f.FileNo}]
				if err := save(backend.Handle{Type: backend.Points, Name: id}, b); err != nil {
					return nil, err
				}
				out.manifests = append(out.manifests, id)
			}
		}
	}
	saved = true
	close(saves)
	if err := <-saveErr; err != nil {
		return nil, fmt.Errorf("staging store: %w", err)
	}
	return out, nil
}

// stagedFile is a file read from tape on its way to the staging store.
type stagedFile struct {
	h    backend.Handle
	data []byte
}

// lostFile records the wanted packs of f not read (got) as lost to err.
func (c *cartridgeRead) lostFile(f tapefs.CatalogFile, want map[string]bool, err error, got ...map[string]bool) {
	for _, e := range f.Entries {
		if want[e.Name] && (len(got) == 0 || !got[0][e.Name]) {
			c.lost = append(c.lost, lostPack{e.Name, err})
		}
	}
}
