package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/internal/procs"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	ReadData bool // read every pack, decrypt, decompress and re-hash every blob
	Log      func(format string, args ...any)
	// Progress, if set, counts the packs read back with ReadData (see
	// Progress); the walk of the points that follows is not counted.
	Progress *Progress
	// Share, with ReadData, reads back only a share of the packs
	// (verify_share.go); the zero value reads them all.
	Share ReadShare
	// Sources, if not nil, limits the walk to the points of these
	// sources (a group's check).
	Sources []string
}

// Damage is one file or directory of one point that cannot be restored.
// Path is spelled as restore reports it: a file as its path in the point,
// a directory whose listing is unreadable as its path and "/" (the root
// as "/").
type Damage struct {
	Point  string `json:"point"`
	Source string `json:"source"`
	Path   string `json:"path"`
	Pack   string `json:"pack,omitempty"`
	Error  string `json:"error"`
}

// DamagedBlob is one place of one blob that cannot be read.
type DamagedBlob struct {
	Blob  string `json:"blob"`
	Pack  string `json:"pack,omitempty"`
	Error string `json:"error"`
}

// DamagedPoint is a point whose manifest cannot be read: nothing of it can
// be restored. Its source is unknown.
type DamagedPoint struct {
	Point  string `json:"point"`
	Source string `json:"source,omitempty"`
	Error  string `json:"error"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Points int `json:"points"`
	Trees  int `json:"trees"`  // distinct trees (directories) read
	Chunks int `json:"chunks"` // distinct data chunks checked
	Packs  int `json:"packs_read"`
	// PacksGone: packs listed for reading back that a garbage collection
	// running beside deleted before they were read (not damage: their
	// live blobs are checked where it moved them).
	PacksGone     int               `json:"packs_gone,omitempty"`
	BadPacks      map[string]string `json:"bad_packs,omitempty"` // pack -> what is wrong with it
	DamagedBlobs  []DamagedBlob     `json:"damaged_blobs,omitempty"`
	Damage        []Damage          `json:"damage,omitempty"`
	DamagedPoints []DamagedPoint    `json:"damaged_points,omitempty"`
	// Store lists damage to the store's own files that loses no data
	// (a config read from its copy, an index file whose packs are read
	// from their headers), each with the repair that rewrites it.
	Store []string `json:"store_problems,omitempty"`
	// Unreadable lists the packs recall was not allowed to read (pack ->
	// the error): not damage, since their bytes were never seen, but not
	// verified either; their blobs are not judged.
	Unreadable map[string]string `json:"unreadable_packs,omitempty"`
	// Foreign lists, by path, the empty files under a pack's name: not
	// packs recall wrote and nothing a point needs, so not damage; a
	// person removes them (recall removes only what it wrote).
	Foreign []string `json:"foreign_files,omitempty"`
	// Misplaced lists, by path, the pack files outside the folder a pack
	// of their name is read from: restore does not find them there.
	// 'recall repair index' moves each back, unless a file of its name
	// is in its place already (then a person compares the two).
	Misplaced []string `json:"misplaced_files,omitempty"`
}

// ErrVerifyFailed: verify found damage; the report says where.
var ErrVerifyFailed = errors.New("verification failed")

// ErrVerifyIncomplete: verify found no damage but could not read some
// packs (Unreadable); the store's file permissions need fixing, not a
// repair.
var ErrVerifyIncomplete = errors.New("verification incomplete")

// denied reports whether err is a read that says nothing of the stored
// bytes: refused for want of permission (EACCES, EPERM), a property of
// the files' owners and modes, or failed in the device or the file
// system under the store (EIO and its kind: a failing disk, a network
// file system gone). A repair must not be sent to "fix" either: repair
// packs salvages a damaged pack by rewriting what it can read and
// deleting it. The pack is reported unreadable, not damaged.
func denied(err error) bool { return errors.Is(err, fs.ErrPermission) || IOError(err) }

// IOError reports whether err is an error of the device or file system a
// file is on, not of its content (chunkstore.IOError).
func IOError(err error) bool { return chunkstore.IOError(err) }

// Verify checks that every point can be restored. It always compares each
// pack's size with what the index implies (a truncated pack loses the
// blobs past its end) and reads every tree; a chunk counts as readable
// when the index places it inside a present pack and that place is not
// recorded damaged. With ReadData it also reads back every blob of every
// pack, recording the bad ones as damage, and reads the chunks of packs
// whose header is unreadable at the places the index gives.
//
// The files reported damaged are exactly the files a restore cannot
// restore: damage is judged per blob at the place a read would use, never
// per pack, and the walk goes on through every readable directory.
func Verify(ctx context.Context, r *Reader, opts VerifyOptions) (*VerifyReport, error) {
	st := r.st
	rep := &VerifyReport{BadPacks: map[string]string{}, Unreadable: map[string]string{}}
	badPack := func(id chunkstore.ID, why string) {
		k := id.String()
		if old := rep.BadPacks[k]; old != "" && !strings.Contains(old, why) {
			why = old + "; " + why
		}
		rep.BadPacks[k] = why
	}
	var foreign []chunkstore.ID
	for _, pi := range st.Packs() {
		if pi.Problem != "" {
			badPack(pi.ID, pi.Problem)
		}
	}
	if len(rep.BadPacks) > 0 {
		// An empty file under a pack's name is not damage: recall never
		// writes one (a pack is renamed into place only once whole), so
		// it is not a pack, and no point can need what it does not
		// hold. Repair has nothing to do with it; a person removes it.
		// One the index lists and that is empty now was cut short:
		// that is damage.
		if err := st.ListPacks(func(id chunkstore.ID, size int64) error {
			if size == 0 && strings.HasPrefix(rep.BadPacks[id.String()], UnindexedProblem) {
				foreign = append(foreign, id)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for _, id := range foreign {
			delete(rep.BadPacks, id.String())
			rep.Foreign = append(rep.Foreign, foreignPackPath(st.Dir(), id))
		}
	}
	// checked: packs whose every blob was read back by CheckPack, so the
	// damage record is complete for them.
	checked := map[chunkstore.ID]bool{}
	if opts.ReadData {
		if err := checkPacks(ctx, r, rep, checked, badPack, opts.Progress, opts.Share); err != nil {
			return nil, err
		}
		for _, id := range foreign {
			delete(rep.BadPacks, id.String())
		}
	}

	verifyPointsHook()
	pts, err := r.Points()
	if err != nil {
		return nil, err
	}
	// A point committed since the store was opened (a backup beside this
	// verify) has its blobs in index files written before it: read them,
	// or its chunks would be reported missing.
	if err := r.Refresh(); err != nil {
		return nil, err
	}
	blobs := map[[2]chunkstore.ID]string{} // (blob, pack) -> why, for damaged_blobs
	noteBlob := func(id, pack chunkstore.ID, why string) {
		blobs[[2]chunkstore.ID{id, pack}] = why
	}
	// unreadable notes a pack a read was refused; the first refusal
	// (the whole pack's, with ReadData) says it best.
	unreadable := func(pack chunkstore.ID, err error) {
		if _, ok := rep.Unreadable[pack.String()]; !ok {
			rep.Unreadable[pack.String()] = err.Error()
		}
	}
	type problem struct{ pack, why string }
	chunkState := map[chunkstore.ID]problem{}
	var buf []byte
	// chunkProblem says why a chunk cannot be read, or "": what a
	// restore's read of it would find.
	chunkProblem := func(id chunkstore.ID) (string, string) {
		if p, ok := chunkState[id]; ok {
			return p.why, p.pack
		}
		pack, err := st.BlobStatus(id)
		if err == nil && opts.ReadData && !checked[pack] && opts.Share.Reads(pack) {
			if buf == nil {
				buf = st.ChunkBuffer()
			}
			_, err = st.LoadBlob(id, buf)
			var be *chunkstore.BlobError
			if errors.As(err, &be) && !be.Pack.IsZero() {
				pack = be.Pack
			}
		}
		var p problem
		if denied(err) {
			if !pack.IsZero() {
				unreadable(pack, err)
			}
			err = nil
		}
		if err != nil {
			p.why = err.Error()
			if !pack.IsZero() {
				p.pack = pack.String()
			}
			noteBlob(id, pack, p.why)
		}
		chunkState[id] = p
		return p.why, p.pack
	}
	// Each tree is walked once, however many points (or places in one
	// point) share it: walked[id] is what it holds that a restore cannot
	// restore, and each place it appears gets that damage under its own
	// path.
	walked := map[chunkstore.ID]*treeDamage{}
	var walk func(id chunkstore.ID) *treeDamage
	walk = func(id chunkstore.ID) *treeDamage {
		if td, ok := walked[id]; ok {
			return td
		}
		td := &treeDamage{}
		t, err := verifyLoadTree(r, id)
		if denied(err) {
			// Not damage, and nothing below it can be judged.
			if pack, ok := st.PackOf(id); ok {
				unreadable(pack, err)
			}
			walked[id] = nil
			return nil
		}
		if err != nil {
			pack, _ := st.PackOf(id)
			noteBlob(id, pack, err.Error())
			td.unreadable = &entryDamage{pack: packString(pack), why: "directory listing unreadable: " + err.Error()}
			walked[id] = td
			return td
		}
		rep.Trees++
		// Names as restore meets them: every backup writes a tree's
		// entries sorted, each name once and each one a name a directory
		// can hold. A tree that is not was written by something else (a
		// tree blob is named by its hash, so bit rot cannot make one):
		// restore skips an unsafe name, fails on the second of a name
		// and cannot find a --path in an unsorted tree, so each is
		// damage here too. Before, verify passed such trees.
		prev, unsorted := "", false
		for i, n := range t.Nodes {
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case i > 0 && n.Name == prev:
				td.files = append(td.files, entryDamage{name: n.Name, why: "the name is held twice in its directory: restore makes the first"})
				continue
			case i > 0 && n.Name < prev && !unsorted:
				unsorted = true
				td.files = append(td.files, entryDamage{name: ".", why: "the directory's entries are not sorted by name, as every backup writes them: a restore of one path in it may not find it"})
			}
			prev = n.Name
			if !safeName(n.Name) {
				td.files = append(td.files, entryDamage{name: strconv.Quote(n.Name), why: "the name cannot be made in a directory: restore skips it"})
				continue
			}
			switch {
			case n.Type == TypeDir:
				if walk(n.Subtree) != nil {
					td.dirs = append(td.dirs, subtree{n.Name, n.Subtree})
				}
			case n.Type.HasContent():
				// Every chunk of a damaged file is judged too, not only
				// its first bad one: damage is reported per blob, and a
				// truncated pack loses each blob past its end, as many
				// as repair packs counts lost. The file is damaged once.
				bad := false
				for _, e := range n.Extents {
					if e.Hole {
						continue
					}
					if _, seen := chunkState[e.ID]; !seen {
						rep.Chunks++
					}
					if why, pack := chunkProblem(e.ID); why != "" && !bad {
						bad = true
						td.files = append(td.files, entryDamage{name: n.Name, pack: pack, why: why})
					}
				}
			}
		}
		if len(td.files) == 0 && len(td.dirs) == 0 {
			td = nil
		}
		walked[id] = td
		return td
	}
	for _, p := range pts {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if opts.Sources != nil && p.Damaged == "" && !slices.Contains(opts.Sources, p.Source) {
			continue
		}
		rep.Points++
		if p.Damaged != "" {
			rep.DamagedPoints = append(rep.DamagedPoints, DamagedPoint{Point: p.ID.String(), Source: p.Source, Error: p.Damaged})
			continue
		}
		walk(p.Tree)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var report func(id chunkstore.ID, rel string)
		report = func(id chunkstore.ID, rel string) {
			td := walked[id]
			if td == nil {
				return
			}
			damage := func(path string, d entryDamage) {
				rep.Damage = append(rep.Damage, Damage{Point: p.ID.String(), Source: p.Source, Path: path, Pack: d.pack, Error: d.why})
			}
			if td.unreadable != nil {
				damage(rel+"/", *td.unreadable)
				return
			}
			for _, f := range td.files {
				damage(joinRel(rel, f.name), f)
			}
			for _, d := range td.dirs {
				report(d.id, joinRel(rel, d.name))
			}
		}
		report(p.Tree, "")
	}

	// Damage recorded earlier, or found now in blobs no point uses.
	for _, d := range st.DamagedBlobs() {
		k := [2]chunkstore.ID{d.Blob, d.Pack}
		if _, ok := blobs[k]; !ok {
			blobs[k] = "recorded damaged: " + d.Reason
		}
	}
	// Which packs are there now, from a listing: a second pack walk
	// (Packs) would say again every warning the first one said.
	present := map[chunkstore.ID]bool{}
	if err := st.ListPacks(func(id chunkstore.ID, _ int64) error {
		present[id] = true
		return nil
	}); err != nil {
		return nil, err
	}
	for k, why := range blobs {
		if !present[k[1]] && strings.HasPrefix(why, "recorded damaged: ") {
			continue // a pack repair removed: the record is stale
		}
		rep.DamagedBlobs = append(rep.DamagedBlobs, DamagedBlob{Blob: k[0].String(), Pack: packString(k[1]), Error: why})
		if present[k[1]] {
			if _, ok := rep.BadPacks[k[1].String()]; !ok {
				badPack(k[1], "holds damaged blobs")
			}
		}
	}
	sort.Slice(rep.DamagedBlobs, func(i, j int) bool {
		a, b := rep.DamagedBlobs[i], rep.DamagedBlobs[j]
		if a.Blob != b.Blob {
			return a.Blob < b.Blob
		}
		return a.Pack < b.Pack
	})
	sort.SliceStable(rep.Damage, func(i, j int) bool {
		if rep.Damage[i].Point != rep.Damage[j].Point {
			return rep.Damage[i].Point < rep.Damage[j].Point
		}
		return rep.Damage[i].Path < rep.Damage[j].Path
	})
	if p := st.ConfigProblem(); p != "" {
		rep.Store = append(rep.Store, p+" ('recall repair index' or the next backup rewrites it)")
	}
	if ip, ok := st.(indexProblems); ok {
		for _, p := range ip.IndexProblems() {
			rep.Store = append(rep.Store, p+" (its packs are read from their headers; 'recall repair index' replaces it)")
		}
	}
	denials := ""
	if n := len(rep.Unreadable); n > 0 {
		denials = fmt.Sprintf(", %d packs recall could not read", n)
	}
	if n := len(rep.Foreign); n > 0 {
		denials += fmt.Sprintf(", %d empty files under a pack's name (not packs recall wrote, and no point needs them: remove them by hand): %s", n, strings.Join(rep.Foreign, ", "))
	}
	if mp, ok := st.(misplacedPacks); ok {
		for _, m := range mp.MisplacedPacks() {
			rep.Misplaced = append(rep.Misplaced, m.Path)
		}
	}
	if n := len(rep.Misplaced); n > 0 {
		denials += fmt.Sprintf(", %d pack files outside their folder, where they are not read from ('recall repair index' moves each back where no file of its name is): %s", n, strings.Join(rep.Misplaced, ", "))
	}
	if n := len(rep.DamagedPoints); n > 0 {
		// No repair makes a point whose manifest is unreadable
		// restorable, and a new backup does not mend it: repair points
		// only keeps it. The step is to remove it.
		ids := make([]string, n)
		for i, d := range rep.DamagedPoints {
			ids[i] = d.Point[:min(12, len(d.Point))]
		}
		denials += fmt.Sprintf("; nothing of a damaged point can be restored: remove it with 'recall forget %s' or 'recall repair points --forget-damaged'", strings.Join(ids, " "))
	}
	if len(rep.Damage) > 0 || len(rep.BadPacks) > 0 || len(rep.DamagedPoints) > 0 || len(rep.Store) > 0 {
		return rep, fmt.Errorf("%w: %d damaged packs, %d damaged blobs, %d damaged files, %d damaged points, %d store problems%s",
			ErrVerifyFailed, len(rep.BadPacks), len(rep.DamagedBlobs), len(rep.Damage), len(rep.DamagedPoints), len(rep.Store), denials)
	}
	if len(rep.Unreadable) > 0 {
		return rep, fmt.Errorf("%w: no damage found, but %d packs recall could not read were not verified%s", ErrVerifyIncomplete, len(rep.Unreadable), strings.TrimPrefix(denials, fmt.Sprintf(", %d packs recall could not read", len(rep.Unreadable))))
	}
	if len(rep.Misplaced) > 0 {
		// Each beside a file of its name in its place: nothing is
		// missing, but a person should look.
		return rep, fmt.Errorf("no damage found, but%s", strings.TrimPrefix(denials, ","))
	}
	if len(rep.Foreign) > 0 {
		// Not damage, so not ErrVerifyFailed (exit 4), and not
		// success either: a person should look, and only a person
		// removes it.
		return rep, fmt.Errorf("no damage found, but %s: an empty file under a pack's name, which recall never writes (a pack is renamed into place only once whole): it is not a pack and no point needs it; remove it by hand", strings.Join(rep.Foreign, ", "))
	}
	return rep, nil
}

// misplacedPacks is a store that knows pack files outside their folder
// (a local one).
type misplacedPacks interface {
	MisplacedPacks() []chunkstore.MisplacedPack
}

// UnindexedProblem begins the problem chunkstore's Packs gives a pack
// whose header is unreadable and that no index file lists.
const UnindexedProblem = "header unreadable and no index file lists the pack"

// indexProblems is how a store (chunkstore.Store) says which index files
// it could not read or decode when it loaded them, one line each: damage
// verify reports though no data is lost. Not part of StoreReader, which
// stores without index files implement too.
type indexProblems interface{ IndexProblems() []string }

// verifyLoadTree is how Verify reads a tree; tests count the reads.
var verifyLoadTree = (*Reader).LoadTree

// treeDamage is what one tree holds that a restore cannot restore: paths
// relative to the tree. Trees with nothing damaged below them have none.
type treeDamage struct {
	unreadable *entryDamage  // the tree itself cannot be read
	files      []entryDamage // its files with unreadable content
	dirs       []subtree     // its directories with damage below them
}

type entryDamage struct {
	name, pack, why string
}

type subtree struct {
	name string
	id   chunkstore.ID
}

// joinRel spells a path in a point as restore reports it.
func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func packString(id chunkstore.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// packsListed, when set (tests), runs once checkPacks has listed the
// packs it reads back: what another process could do then.
var packsListed func()

// checkPacks reads back every pack of the share (CheckPack, which records bad blobs),
// each once and whole, a few at a time, and marks in checked the packs
// whose blobs were all read.
func checkPacks(ctx context.Context, r *Reader, rep *VerifyReport, checked map[chunkstore.ID]bool, badPack func(chunkstore.ID, string), prog *Progress, share ReadShare) error {
	st := r.st
	var ids []chunkstore.ID
	sizes := map[chunkstore.ID]int64{}
	if err := st.ListPacks(func(id chunkstore.ID, size int64) error {
		if share.Reads(id) {
			ids = append(ids, id)
			sizes[id] = size
		}
		return nil
	}); err != nil {
		return err
	}
	prog.packTotals(sizes)
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	if err := warmPacks(ctx, r, ids); err != nil {
		return fmt.Errorf("bring packs online: %w", err)
	}
	if packsListed != nil {
		packsListed()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, procs.CPUs())
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := id.String()
			prog.begin(name)
			pc, err := st.CheckPack(id)
			// Listed, then gone: a garbage collection beside this verify
			// deleted it. Not damage: the walk reads its live blobs
			// where they were moved (LoadBlob refreshes the index).
			// Before, it was reported as a damaged pack, with advice to
			// repair.
			gone := errors.Is(err, chunkstore.ErrNotFound) && !st.HasPackFile(id)
			prog.addBytes(sizes[id])
			prog.fileDone(name)
			if !gone && (err != nil || pc.Header != nil || len(pc.Bad) > 0) {
				prog.addError()
			}
			mu.Lock()
			defer mu.Unlock()
			if gone {
				rep.PacksGone++
				return
			}
			rep.Packs++
			switch {
			case denied(err):
				// Not damage: its bytes were not seen. Its blobs are
				// read (and refused) one by one in the walk.
				rep.Unreadable[id.String()] = err.Error()
				return
			case err != nil:
				badPack(id, "unreadable: "+err.Error())
				return
			case pc.Header != nil:
				// The blobs are judged where the index places them,
				// in the walk: a bad header alone loses none of them.
				badPack(id, "header: "+pc.Header.Error())
			default:
				checked[id] = true
			}
			if len(pc.Bad) > 0 {
				badPack(id, fmt.Sprintf("%d of %d blobs fail their check", len(pc.Bad), len(pc.Entries)))
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// verifyPointsHook runs before Verify lists the points, after it walked
// the packs; tests commit a point there.
var verifyPointsHook = func() {}
