package engine

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/recall-backup/recall/chunkstore"
)

// RepairOptions configure RepairIndex and RepairPacks.
type RepairOptions struct {
	DryRun bool // report what would change, change nothing
	Log    func(format string, args ...any)
}

// RepairReport says what a repair changed, or with DryRun would change.
type RepairReport struct {
	DryRun  bool     `json:"dry_run"`
	Actions []string `json:"actions"` // one line per change made (or that would be made)
	// Packs lists the packs repair packs salvaged, with what became of
	// their blobs.
	Packs []SalvagedPack `json:"packs,omitempty"`
	// Lost lists blobs that no pack holds a good copy of any more: the
	// files that use them stay damaged until a backup of a source that
	// still has the data stores them again.
	Lost []DamagedBlob `json:"lost_blobs,omitempty"`
	// Unlocatable lists packs whose header is unreadable and that no
	// index file lists: none of their blobs can be found.
	Unlocatable []string `json:"unlocatable_packs,omitempty"`
	// BadHeaders maps each pack whose header is unreadable, or is not
	// the one its name is the hash of, but that an index file locates,
	// to why: repair index keeps that index file, and repair packs
	// salvages the pack.
	BadHeaders map[string]string `json:"bad_header_packs,omitempty"`
	// Foreign lists, by path, the empty files under a pack's name: not
	// packs recall wrote, holding nothing a point could need; left alone.
	Foreign []string `json:"foreign_files,omitempty"`
	// Misplaced lists, by path, the pack files outside their folder that
	// repair left where they are (a file of the name is in its place);
	// those it moved back are among the Actions.
	Misplaced []string `json:"misplaced_files,omitempty"`
	// Unreadable maps each pack that could not be read for a reason
	// other than its bytes (its owner and mode, the disk under it) to
	// the message that says so and what to do: it is left as it is, and
	// the index files that list it are kept, while the other packs are
	// repaired.
	Unreadable map[string]string `json:"unreadable_packs,omitempty"`
}

// unreadable records pack id as one that could not be read (why, with
// what to do), once.
func (rep *RepairReport) unreadable(id chunkstore.ID, why string) {
	if rep.Unreadable == nil {
		rep.Unreadable = map[string]string{}
	}
	if _, ok := rep.Unreadable[id.String()]; !ok {
		rep.Unreadable[id.String()] = why
	}
}

// putBack moves the pack files outside their folder back into it, before
// a repair judges any pack missing: otherwise it would rebuild the index
// without a pack that is only in another folder, or salvage it as lost.
//
// First, a file in a pack's place that holds another pack whole (moved
// or copied over the wrong name, two packs swapped) is set aside as a
// misplaced file of that pack, then put in its place with the others:
// salvaged under the wrong name it would be deleted, every blob lost.
//
// It returns, in a dry run, the packs it would put in their place (their
// files and the ones they hold): the rest of the dry run leaves them out
// rather than report, as damage, what the real run mends first.
func putBack(lock *chunkstore.Lock, rep *RepairReport, opts RepairOptions) (map[chunkstore.ID]bool, error) {
	mn, err := lock.SetAsideMisnamed(opts.DryRun)
	if err != nil {
		return nil, err
	}
	placed := map[chunkstore.ID]bool{}
	if opts.DryRun {
		for _, m := range mn {
			placed[m.Name], placed[m.Holds] = true, true
		}
	}
	dir := lock.Store().Dir()
	for _, m := range mn {
		at := foreignPackPath(dir, m.Name)
		switch {
		case opts.DryRun:
			opts.act(rep, "set aside pack file %s: it holds pack %s whole, not its own; then put it in that pack's place, %s", at, m.Holds, foreignPackPath(dir, m.Holds))
		case m.SetAside:
			opts.act(rep, "set aside pack file %s: it holds pack %s whole, not its own; it goes to that pack's place next", at, m.Holds)
		default:
			rep.Misplaced = append(rep.Misplaced, at)
			if opts.Log != nil {
				opts.Log("left %s where it is: it holds pack %s whole, not its own: %s", at, m.Holds, m.Why)
			}
		}
	}
	ms, err := lock.PutBackPacks(opts.DryRun)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		switch {
		case m.Moved || opts.DryRun:
			if opts.DryRun {
				opts.act(rep, "move pack file %s back to %s, where it is read from (the rest of this dry run takes the pack as missing)", m.Path, m.Home)
			} else {
				opts.act(rep, "moved pack file %s back to %s, where it is read from", m.Path, m.Home)
			}
		default:
			rep.Misplaced = append(rep.Misplaced, m.Path)
			if opts.Log != nil {
				opts.Log("left %s where it is, outside its folder: %s", m.Path, m.Why)
			}
		}
	}
	return placed, nil
}

// leaveOutPlaced drops from rb what a dry run found of the packs putBack
// would put in their place first: their headers under the wrong names.
func leaveOutPlaced(rb *chunkstore.IndexRebuild, placed map[chunkstore.ID]bool) {
	for id := range placed {
		delete(rb.BadHeaders, id)
	}
}

// SalvagedPack is one damaged pack replaced by repair packs.
type SalvagedPack struct {
	Pack      string `json:"pack"`
	Reason    string `json:"reason"`
	Kept      int    `json:"kept_blobs"`      // copied into new packs
	Elsewhere int    `json:"elsewhere_blobs"` // already stored in another pack
	Lost      int    `json:"lost_blobs"`
	Removed   bool   `json:"removed"`
	Rewritten bool   `json:"rewritten,omitempty"` // replaced by a whole copy of the same name
}

func (o RepairOptions) act(rep *RepairReport, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if o.DryRun {
		line = "would " + line
	}
	rep.Actions = append(rep.Actions, line)
	if o.Log != nil {
		o.Log("%s", line)
	}
}

// RepairIndex rebuilds the index from pack headers: it writes index files
// for every present pack no sound index file covers (for a pack whose
// header is unreadable, from the entries a readable index file gives),
// then removes the index files they supersede: corrupt ones, ones that
// list missing packs or disagree with a header. Last, it consolidates the
// index into one file (chunkstore.Lock.ConsolidateIndex), so repair index
// is also how an administrator compacts the index. It needs an exclusive
// session.
//
// Packs that no index file can cover (their header is unreadable and no
// readable index file lists them) stay, listed in rep.Unlocatable, and
// are no error: restoring from packs read back from tape indexes them
// this way and reports the files they hold as damaged. Blobs recorded
// damaged in packs that are gone, of which no pack holds a good copy (a
// repair packs stopped after it removed their pack), are listed in
// rep.Lost as that repair would have. A repair run by a person ends with
// rep.DamageLeft.
func RepairIndex(ctx context.Context, s *Session, opts RepairOptions) (*RepairReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.exclusive {
		return nil, fmt.Errorf("repair index: %w", ErrNotExclusive)
	}
	lock := s.lock
	rep := &RepairReport{DryRun: opts.DryRun, Actions: []string{}}
	placed, err := putBack(lock, rep, opts)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	rb, err := lock.RebuildIndex(opts.DryRun)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	leaveOutPlaced(rb, placed)
	if p := s.s.ConfigProblem(); p != "" {
		if opts.DryRun {
			opts.act(rep, "rewrite the store config from the good copy: %s", p)
		} else if err := lock.HealConfig(); err != nil {
			return nil, fmt.Errorf("repair index: %w", err)
		} else {
			opts.act(rep, "rewrote the store config from the good copy: %s", p)
		}
	}
	indexActions(rep, rb, opts)
	if !opts.DryRun {
		// The sound index, compacted: one consolidated file that the
		// store opens in place, superseding the files it merges.
		name, err := lock.ConsolidateIndex()
		if err != nil {
			return nil, fmt.Errorf("repair index: %w", err)
		}
		if name != "" {
			opts.act(rep, "consolidated the index into index file %s (the files it supersedes go with garbage collection)", name)
		}
	}
	return rep, nil
}

// DamageLeft is the error of a repair that leaves damage in the store,
// which rep lists (lost blobs, packs that cannot be located): nil when it
// leaves none. It wraps ErrDamaged, so the command exits 4 and a script
// can tell a repaired store from one that still needs a new backup and
// repair points.
//
// The next steps it names are those of what is left: a new backup and
// repair points only for lost blobs (a point may miss them), repair packs
// for packs it can still salvage; a pack none of whose blobs can be
// located loses nothing a verify does not name, so its step is to find
// its index file or, once no point needs it, to move it out.
func (rep *RepairReport) DamageLeft(what string) error {
	var parts, next []string
	if n := len(rep.BadHeaders); n > 0 {
		parts = append(parts, fmt.Sprintf("%d packs whose header is damaged or not the one their name says (their blobs are located from the index)", n))
		if what != "repair packs" {
			next = append(next, "run 'recall repair packs' to salvage their blobs")
		}
	}
	if n := len(rep.Lost); n > 0 {
		parts = append(parts, fmt.Sprintf("%d blobs lost (no pack holds a good copy)", n))
		next = append(next, "back up the affected sources again, then run 'recall repair points' for the points that keep lost files")
	}
	if n := len(rep.Unlocatable); n > 0 {
		parts = append(parts, fmt.Sprintf("%d packs none of whose blobs can be located (header unreadable, no index file lists them), left in place", n))
		next = append(next, "for each pack left in place, put back a copy of its index file and run 'recall repair index', or move it out of the store once 'recall verify' finds no point that needs it")
	}
	var unread string
	if n := len(rep.Unreadable); n > 0 {
		// Not damage: the packs were not read, so nothing is known of
		// their bytes. Each message names the file and what to do.
		msgs := slices.Sorted(maps.Values(rep.Unreadable))
		more := ""
		if len(msgs) > 3 {
			more = fmt.Sprintf("; and %d more (--json lists them)", len(msgs)-3)
			msgs = msgs[:3]
		}
		unread = fmt.Sprintf("%d packs could not be read and were not repaired, the others were: %s%s", n, strings.Join(msgs, "; "), more)
	}
	if len(parts) == 0 {
		if unread != "" {
			return fmt.Errorf("%s: %s", what, unread)
		}
		return nil
	}
	tail := strings.Join(parts, ", ")
	if len(next) > 0 {
		tail += "; " + strings.Join(next, "; ")
	}
	if unread != "" {
		tail += "; " + unread
	}
	return fmt.Errorf("%s: %w: %s", what, ErrDamaged, tail)
}

func indexActions(rep *RepairReport, rb *chunkstore.IndexRebuild, opts RepairOptions) {
	for _, w := range rb.Written {
		if w.Name == "" {
			opts.act(rep, "write an index file covering %d packs", w.Packs)
		} else {
			opts.act(rep, "wrote index file %s covering %d packs", w.Name, w.Packs)
		}
	}
	names := make([]string, 0, len(rb.Removed))
	for n := range rb.Removed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		why := rb.Removed[n]
		if r, ok := strings.CutPrefix(why, "replaced by a whole copy: "); ok {
			// Written again under its name above: the file is there,
			// whole; it is not gone, as "removed" said.
			opts.act(rep, "index file %s (%s) was replaced by the whole copy of that name written above", n, r)
			continue
		}
		if opts.DryRun {
			opts.act(rep, "remove index file %s: %s", n, why)
		} else {
			opts.act(rep, "removed index file %s: %s", n, why)
		}
	}
	if rb.DamageDropped > 0 {
		if opts.DryRun {
			opts.act(rep, "drop %d damage records of packs that are gone, or whole again in their place", rb.DamageDropped)
		} else {
			opts.act(rep, "dropped %d damage records of packs that are gone, or whole again in their place", rb.DamageDropped)
		}
	}
	// Every damage record file removed is named: what a record says is
	// never dropped without a word.
	if n := len(rb.DamageReplaced); n > 0 {
		files := make([]string, n)
		for i, f := range rb.DamageReplaced {
			files[i] = rb.DamageDir + "/" + f
		}
		switch {
		case opts.DryRun:
			opts.act(rep, "remove damage record files %s, rewriting what they hold of packs still present into one file", strings.Join(files, ", "))
		case rb.DamageWritten == "":
			opts.act(rep, "removed damage record files %s: they held only entries of packs that are gone", strings.Join(files, ", "))
		default:
			opts.act(rep, "removed damage record files %s, after writing what they hold of packs still present into %s/%s", strings.Join(files, ", "), rb.DamageDir, rb.DamageWritten)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(rb.DamageUnreadable)) {
		verb := "removed"
		if opts.DryRun {
			verb = "remove"
		}
		opts.act(rep, "%s damage record %s/%s: %s: it cannot be read, so the blobs it recorded damaged count as good again, for reads and for deduplication, until a read or 'recall verify --read-data' finds them bad: run 'recall verify --read-data'",
			verb, rb.DamageDir, f, rb.DamageUnreadable[f])
	}
	for _, id := range rb.Unlocatable {
		rep.Unlocatable = append(rep.Unlocatable, id.String())
	}
	for id, why := range rb.Unreadable {
		rep.unreadable(id, why)
	}
	for _, id := range slices.SortedFunc(maps.Keys(rb.BadHeaders), func(a, b chunkstore.ID) int { return bytes.Compare(a[:], b[:]) }) {
		if rep.BadHeaders == nil {
			rep.BadHeaders = map[string]string{}
		}
		rep.BadHeaders[id.String()] = rb.BadHeaders[id]
		if opts.Log != nil {
			opts.Log("pack %s: %s; an index file locates its blobs and is kept: 'recall repair packs' salvages them", id, rb.BadHeaders[id])
		}
	}
	for _, id := range rb.Foreign {
		p := foreignPackPath(rb.StoreDir, id)
		if slices.Contains(rep.Foreign, p) {
			continue
		}
		rep.Foreign = append(rep.Foreign, p)
		if opts.Log != nil {
			opts.Log("left alone %s: an empty file under a pack's name, which recall never writes (a pack is renamed into place only once whole): it is not a pack and holds nothing a point could need; remove it by hand", p)
		}
	}
	// Blobs recorded damaged in packs that are gone, with no good copy
	// left: a salvage stopped after it removed their pack lost them
	// without saying so (the salvage of this run names its own first).
	for _, l := range rb.Lost {
		b := DamagedBlob{Blob: l.Blob.String(), Pack: l.Pack.String(), Error: l.Reason}
		if !slices.ContainsFunc(rep.Lost, func(o DamagedBlob) bool { return o.Blob == b.Blob && o.Pack == b.Pack }) {
			rep.Lost = append(rep.Lost, b)
		}
	}
}

// RepairPacks salvages every damaged pack: one whose header is unreadable,
// that is truncated, or that holds blobs recorded damaged (verify
// --read-data and every read record them). Each blob the header or the
// index locates is read and, when it checks out, written into a new pack;
// then the old pack is removed and the index rebuilt (RepairIndex). Blobs
// that could not be salvaged and have no copy elsewhere are lost and
// listed. It needs an exclusive session. See chunkstore's
// Lock.SalvagePacks for why a crash at any moment leaves a consistent
// store.
//
// The error wraps ErrDamaged when damage stays and is listed in the
// report: lost blobs, packs that cannot be located (SalvagePacks leaves
// them in place: nothing says what they hold).
func RepairPacks(ctx context.Context, s *Session, opts RepairOptions) (*RepairReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !s.exclusive {
		return nil, fmt.Errorf("repair packs: %w", ErrNotExclusive)
	}
	lock, st := s.lock, s.Reader().st
	rep := &RepairReport{DryRun: opts.DryRun, Actions: []string{}}
	placed, err := putBack(lock, rep, opts)
	if err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	if err := st.Refresh(); err != nil {
		return nil, err
	}
	bad, err := st.DamagedPacks()
	if err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	bad = slices.DeleteFunc(bad, func(p chunkstore.PackProblem) bool { return placed[p.Pack] })
	if len(bad) == 0 {
		// Nothing to salvage; index files may still name removed packs.
		rb, err := lock.RebuildIndex(opts.DryRun)
		if err != nil {
			return nil, fmt.Errorf("repair packs: %w", err)
		}
		leaveOutPlaced(rb, placed)
		indexActions(rep, rb, opts)
		return rep, rep.DamageLeft("repair packs")
	}
	salv, rb, err := lock.SalvagePacks(bad, opts.DryRun)
	if err != nil {
		return nil, fmt.Errorf("repair packs: %w", err)
	}
	var unknown []string
	for _, s := range salv {
		if !s.Holds.IsZero() {
			at := foreignPackPath(st.Dir(), s.Pack)
			if !slices.Contains(rep.Misplaced, at) {
				rep.Misplaced = append(rep.Misplaced, at)
			}
			if opts.Log != nil {
				opts.Log("left %s as it is: it holds pack %s whole, not its own; copy it to that name, then run the repair again", at, s.Holds)
			}
			continue
		}
		if s.Unreadable {
			rep.unreadable(s.Pack, s.Reason)
			if opts.Log != nil {
				opts.Log("%s", s.Reason)
			}
			continue
		}
		if s.Unknown {
			if !slices.Contains(rb.Foreign, s.Pack) {
				unknown = append(unknown, s.Pack.String())
			}
			continue
		}
		rep.Packs = append(rep.Packs, SalvagedPack{Pack: s.Pack.String(), Reason: s.Reason, Kept: s.Kept, Elsewhere: s.Elsewhere, Lost: len(s.Lost), Removed: s.Removed, Rewritten: s.Rewritten})
		verb := "salvaged"
		if opts.DryRun {
			verb = "salvage"
		}
		what := map[bool]string{true: "remove", false: "removed"}[opts.DryRun] + " the old pack"
		if s.Rewritten {
			what = "the new pack replaced the old one under its name"
		}
		opts.act(rep, "%s pack %s (%s): %d blobs into new packs, %d already stored elsewhere, %d lost; %s",
			verb, s.Pack, s.Reason, s.Kept, s.Elsewhere, len(s.Lost), what)
		for _, l := range s.Lost {
			rep.Lost = append(rep.Lost, DamagedBlob{Blob: l.Blob.String(), Pack: l.Pack.String(), Error: l.Reason})
		}
	}
	leaveOutPlaced(rb, placed)
	indexActions(rep, rb, opts)
	for _, p := range unknown {
		// Left in place; the rebuild lists it too when it is still there.
		if !slices.Contains(rep.Unlocatable, p) {
			rep.Unlocatable = append(rep.Unlocatable, p)
		}
	}
	return rep, rep.DamageLeft("repair packs")
}

// foreignPackPath is where the file under pack id's name is in the store
// at storeDir (a directory or an object store's location).
func foreignPackPath(storeDir string, id chunkstore.ID) string {
	h := id.String()
	return strings.TrimSuffix(storeDir, "/") + "/packs/" + h[:2] + "/" + h
}
