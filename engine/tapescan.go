package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// Reading cartridges into the media catalog, the inventory, labelling and
// erasing.

// TapeCatalogOptions configure CatalogTapes.
type TapeCatalogOptions struct {
	Library string
	Slot    int // 0: every full slot
	Log     func(format string, args ...any)
	Now     func() time.Time
}

// ScannedCartridge is what 'recall tape catalog' read from one cartridge.
type ScannedCartridge struct {
	Barcode         string `json:"barcode"`
	Slot            int    `json:"slot"`
	Blank           bool   `json:"blank,omitempty"`
	Pool            string `json:"pool,omitempty"`
	Set             string `json:"set,omitempty"`
	Sequence        int    `json:"sequence,omitempty"`
	Files           int    `json:"files"`
	Points          int    `json:"points"` // points the set holds, as far as known
	FromCatalogFile bool   `json:"from_catalog_file,omitempty"`
	Torn            bool   `json:"torn,omitempty"`
	// Filled: its last file was cut by the end of the medium and the set
	// went on on sequence ContinuedOn (spanning, not damage).
	Filled      bool     `json:"filled,omitempty"`
	ContinuedOn int      `json:"continued_on,omitempty"`
	Damaged     []string `json:"damaged,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// CatalogTapes reads cartridges (labels, then their last catalog file, or
// every file) into the media catalog of home: the set, its points and
// where their packs are, so that list and restore work on a server that
// never wrote them. A cartridge that cannot be read is reported in its
// entry and the others are read; the error then says how many failed.
func CatalogTapes(ctx context.Context, home string, o TapeCatalogOptions) ([]ScannedCartridge, error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var out []ScannedCartridge
	j := &Job{Kind: "tape-catalog", Path: o.Library}
	err := RunTapeJob(home, j, o.Log, func() (err error) {
		out, err = catalogTapes(ctx, home, o)
		return err
	})
	return out, err
}

func catalogTapes(ctx context.Context, home string, o TapeCatalogOptions) ([]ScannedCartridge, error) {
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return nil, err
	}
	lib, libRec, inv, err := openReadyLibrary(ctx, st, o.Library)
	if err != nil {
		return nil, err
	}
	defer lib.Close()
	var slots []tapefs.Element
	for _, e := range inv.Slots {
		if o.Slot != 0 && e.Number != o.Slot {
			continue
		}
		if o.Slot != 0 && !e.Full {
			return nil, fmt.Errorf("slot %d of library %s: %w", o.Slot, libRec.Name, tapefs.ErrNoCartridge)
		}
		if e.Full && !e.Cleaning {
			slots = append(slots, e)
		}
	}
	if o.Slot != 0 && len(slots) == 0 {
		return nil, fmt.Errorf("slot %d of library %s: %w", o.Slot, libRec.Name, tapefs.ErrNoCartridge)
	}
	var out []ScannedCartridge
	failed := 0
	var first error
	for _, e := range slots {
		sc := ScannedCartridge{Barcode: e.Barcode, Slot: e.Number}
		u, err := scanCartridge(ctx, home, lib, libRec.Name, e, &sc, o)
		if err == nil {
			err = writeTapeState(home, o.Log, u)
		}
		if err != nil {
			if ctx.Err() != nil {
				return out, err
			}
			sc.Error = err.Error()
			failed++
			if first == nil {
				first = err
			}
			o.Log("cartridge %s (slot %d): %v", e.Barcode, e.Number, err)
		}
		out = append(out, sc)
	}
	if failed > 0 {
		if failed == 1 {
			return out, first
		}
		return out, fmt.Errorf("%d of %d cartridges could not be read (listed above); the first: %w", failed, len(slots), first)
	}
	return out, nil
}

// scanCartridge reads one cartridge and returns the change to the media
// catalog it makes.
func scanCartridge(ctx context.Context, home string, lib tapefs.Library, libName string, e tapefs.Element, sc *ScannedCartridge, o TapeCatalogOptions) (TapeUpdate, error) {
	var u TapeUpdate
	d, err := loadSlot(ctx, lib, e.Number, tapeDrive)
	if err != nil {
		return u, err
	}
	defer func() {
		unloadDrive(ctx, lib, d, tapeDrive, e.Number)
		d.Close()
	}()
	st, err := readTapeState(home, o.Log)
	if err != nil {
		return u, err
	}
	_, sl, err := tapefs.ReadLabels(ctx, d)
	if errors.Is(err, tapefs.ErrNotLabelled) {
		sc.Blank = true
		u.Media = []TapeMedium{{Barcode: e.Barcode, State: MediaFree, Library: libName, Slot: e.Number}}
		u.Sets = dropReused(st, e.Barcode, "", o.Log)
		return u, nil
	}
	if err != nil {
		return u, err
	}
	var poolKey []byte
	if sl.Encrypted() {
		if poolKey, err = loadPoolKey(home, sl.Pool, sl.KeyFingerprint); err != nil {
			return u, err
		}
	}
	res, err := tapefs.ScanTape(ctx, d, poolKey)
	if err != nil {
		return u, err
	}
	if len(res.Catalog.Files) == 0 && len(res.Catalog.Points) == 0 && freeLabel(sl) {
		// Labelled for a pool by 'recall tape label', holding nothing.
		u.Media = []TapeMedium{{Barcode: e.Barcode, VolumeID: res.Volume.VolumeID, Pool: sl.Pool, State: MediaFree, Library: libName, Slot: e.Number}}
		u.Sets = dropReused(st, e.Barcode, "", o.Log)
		sc.Pool = sl.Pool
		return u, nil
	}
	sc.Pool, sc.Set, sc.Sequence = res.Set.Pool, res.Set.SetID, res.Set.Sequence
	sc.FromCatalogFile, sc.Torn = res.FromCatalogFile, res.Torn
	for _, df := range res.Damaged {
		sc.Damaged = append(sc.Damaged, fmt.Sprintf("file %d at %d: %v", df.FileNo, df.StartPos, df.Err))
	}
	if res.EndOfMedium {
		sc.Filled, sc.ContinuedOn = true, res.Set.Sequence+1
		o.Log("cartridge %s (slot %d): filled; continued on sequence %d of set %s (its last file was cut by the end of the medium and written again, whole, there)",
			e.Barcode, e.Number, sc.ContinuedOn, res.Set.SetID)
	}
	old, _ := st.set(res.Set.SetID)
	set := mergeSet(old, res)
	for _, q := range old.Dropped {
		// The other cartridges' catalog files still list what a dropped
		// cartridge held; it is gone.
		if q != res.Set.Sequence {
			dropCartridge(&set, q)
		}
	}
	for _, f := range res.Catalog.Files {
		if f.Sequence == res.Set.Sequence {
			sc.Files++
		}
	}
	sc.Points = len(set.Catalog.Points)
	u.Sets = []TapeSet{set}
	full := false
	for i, t := range set.Catalog.Tapes {
		if t.Sequence == res.Set.Sequence {
			if res.EndOfMedium {
				set.Catalog.Tapes[i].Full = true
			}
			full = set.Catalog.Tapes[i].Full
		}
	}
	m := TapeMedium{Barcode: e.Barcode, VolumeID: res.Volume.VolumeID, Pool: res.Set.Pool, Set: res.Set.SetID, Sequence: res.Set.Sequence,
		State: MediaWriting, Written: set.Catalog.Written, Expiry: set.Expiry, Library: libName, Slot: e.Number}
	if m.Written.IsZero() {
		// No catalog file on the cartridge says when: it was written
		// after it was labelled into the set and after the points on it
		// were made.
		m.Written = res.Volume.Created
		for _, p := range res.Catalog.Points {
			if p.Time.After(m.Written) {
				m.Written = p.Time
			}
		}
	}
	if full || res.Torn || res.EndOfMedium {
		// A torn cartridge is not appended to: its last file is cut.
		m.State = MediaFull
	}
	if !set.Expiry.IsZero() && !o.Now().Before(set.Expiry) {
		// A zero expiry (a set written with no retention) is not an
		// expired one: its cartridges are kept (see mayOverwrite).
		m.State = MediaExpired
	}
	if prev, ok := st.medium(e.Barcode); ok && prev.Set == m.Set && prev.NextFile > 0 {
		m.NextFile = prev.NextFile
	}
	u.Sets = append(u.Sets, dropReused(st, e.Barcode, m.Set, o.Log)...)
	u.Media = []TapeMedium{m}
	if _, err := st.pool(res.Set.Pool); err != nil {
		p := TapePool{Name: res.Set.Pool, Library: libName, Encrypt: res.Set.Encrypted(),
			Compress: res.Set.Compressed, Allocation: AllocContinue, KeyFingerprint: res.Set.KeyFingerprint, Created: set.Created}
		if !set.Expiry.IsZero() {
			// A set expires its retention after its append window
			// (SetExpiry); the label does not say the window, so the
			// pool here gets the default one, and the retention is what
			// follows it.
			from := set.Created
			if end, err := p.AppendEnd(set.Created); err == nil && end.Before(set.Expiry) {
				from = end
			}
			days := int(set.Expiry.Sub(from).Hours()/24 + 0.5)
			p.Retention = fmt.Sprintf("%dd", max(days, 1))
		} else {
			o.Log("pool %s: set %s has no expiry on its label: the pool is recorded with no retention; give it one with 'recall tape pool set %s --retention SPAN' before writing to it", p.Name, set.ID, p.Name)
		}
		u.Pools = []TapePool{p}
	}
	return u, nil
}

// dropReused returns the set the catalog last saw cartridge barcode in,
// with the cartridge dropped from it, when a scan finds it holding
// another set now (now: "" for none): it was erased, relabelled or reused
// since, maybe by another server, and what the old set held on it is
// gone.
func dropReused(st *TapeState, barcode, now string, log func(string, ...any)) []TapeSet {
	prev, known := st.medium(barcode)
	if !known || prev.Set == "" || prev.Set == now {
		return nil
	}
	was, ok := st.set(prev.Set)
	if !ok || prev.Sequence < 1 || prev.Sequence > len(was.Tapes) || was.Tapes[prev.Sequence-1] != barcode {
		return nil
	}
	if lost := dropCartridge(&was, prev.Sequence); len(lost) > 0 {
		log("cartridge %s no longer holds sequence %d of set %s: the set lost points %s", barcode, prev.Sequence, was.ID, strings.Join(lost, ", "))
	}
	return []TapeSet{was}
}

type fileKey struct{ seq, no int }

// mergeSet merges what a scan of one cartridge found into the set the
// catalog holds: the scanned cartridge's own files as scanned, the other
// cartridges' files as whichever catalog knows them, points by id.
func mergeSet(old TapeSet, res *tapefs.ScanResult) TapeSet {
	sl := res.Set
	s := TapeSet{ID: sl.SetID, Pool: sl.Pool, Created: sl.Created, Expiry: sl.Expiry, KeyFingerprint: sl.KeyFingerprint, Compressed: sl.Compressed, Closed: old.Closed, Revision: old.Revision}
	files := map[fileKey]tapefs.CatalogFile{}
	tapes := map[int]tapefs.CatalogTape{}
	type pointFiles struct {
		p    tapefs.CatalogPoint
		keys []fileKey
	}
	points := map[string]pointFiles{}
	var order []string
	add := func(c *tapefs.MediaCatalog, own bool) {
		if c == nil {
			return
		}
		for _, f := range c.Files {
			k := fileKey{f.Sequence, f.FileNo}
			if _, ok := files[k]; !ok || own || f.Sequence != sl.Sequence {
				files[k] = f
			}
		}
		for _, t := range c.Tapes {
			was, ok := tapes[t.Sequence]
			if ok && was.Full && !t.Full {
				t.Full = true
			}
			tapes[t.Sequence] = t
		}
		for _, p := range c.Points {
			pf := pointFiles{p: p}
			for _, i := range p.Files {
				if i >= 0 && i < len(c.Files) {
					pf.keys = append(pf.keys, fileKey{c.Files[i].Sequence, c.Files[i].FileNo})
				}
			}
			if _, ok := points[p.ID]; !ok {
				order = append(order, p.ID)
			}
			points[p.ID] = pf
		}
	}
	add(old.Catalog, false)
	add(res.Catalog, true)
	if _, ok := tapes[sl.Sequence]; !ok {
		tapes[sl.Sequence] = tapefs.CatalogTape{Sequence: sl.Sequence, Barcode: res.Volume.Barcode, VolumeID: res.Volume.VolumeID}
	}
	c := &tapefs.MediaCatalog{Version: tapefs.CatalogVersion, Pool: sl.Pool, SetID: sl.SetID, Written: res.Catalog.Written}
	if old.Catalog != nil && old.Catalog.Written.After(c.Written) {
		c.Written = old.Catalog.Written
	}
	for _, f := range files {
		c.Files = append(c.Files, f)
	}
	slices.SortFunc(c.Files, func(a, b tapefs.CatalogFile) int {
		return cmp.Or(cmp.Compare(a.Sequence, b.Sequence), cmp.Compare(a.FileNo, b.FileNo))
	})
	index := map[fileKey]int{}
	for i, f := range c.Files {
		index[fileKey{f.Sequence, f.FileNo}] = i
	}
	for _, id := range order {
		pf := points[id]
		p := pf.p
		p.Files = nil
		for _, k := range pf.keys {
			if i, ok := index[k]; ok {
				p.Files = append(p.Files, i)
			}
		}
		c.Points = append(c.Points, p)
	}
	for _, t := range tapes {
		c.Tapes = append(c.Tapes, t)
	}
	slices.SortFunc(c.Tapes, func(a, b tapefs.CatalogTape) int { return cmp.Compare(a.Sequence, b.Sequence) })
	for _, t := range c.Tapes {
		for len(s.Tapes) < t.Sequence {
			s.Tapes = append(s.Tapes, "")
		}
		s.Tapes[t.Sequence-1] = t.Barcode
	}
	s.Catalog = c
	return s
}

// InventorySlot is one element of a library with what the media catalog
// knows of its cartridge.
type InventorySlot struct {
	Element  string    `json:"element"` // slot, drive, import/export
	Number   int       `json:"number"`
	Full     bool      `json:"full"`
	Barcode  string    `json:"barcode,omitempty"`
	Cleaning bool      `json:"cleaning,omitempty"`
	State    string    `json:"state,omitempty"` // free, writing, full, expired; "" when unknown (never read here)
	Pool     string    `json:"pool,omitempty"`
	Set      string    `json:"set,omitempty"`
	Sequence int       `json:"sequence,omitempty"`
	Expiry   time.Time `json:"expiry,omitzero"`
	// SetClosed: the cartridge's set takes no more points (its pool
	// starts a new set every write, or a cartridge of it was erased), so
	// a "writing" cartridge with room left is written no more until the
	// set expires.
	SetClosed bool `json:"set_closed,omitempty"`
}

// TapeInventory lists a library's drives and slots with what the media
// catalog knows of each cartridge. It loads nothing.
func TapeInventory(ctx context.Context, home, library string, now time.Time, warn func(string, ...any)) ([]InventorySlot, error) {
	if _, err := ExpireTapes(home, now, warn); err != nil {
		return nil, err
	}
	st, err := readTapeState(home, warn)
	if err != nil {
		return nil, err
	}
	libRec, err := st.library(library)
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
	out := []InventorySlot{}
	for _, e := range append(append([]tapefs.Element{}, inv.Drives...), inv.Slots...) {
		s := InventorySlot{Element: e.Kind.String(), Number: e.Number, Full: e.Full, Barcode: e.Barcode, Cleaning: e.Cleaning}
		if m, ok := st.medium(e.Barcode); ok && e.Full {
			s.State, s.Pool, s.Set, s.Sequence, s.Expiry = m.State, m.Pool, m.Set, m.Sequence, m.Expiry
			if set, ok := st.set(m.Set); ok {
				s.SetClosed = set.Closed
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// TapeLabelOptions configure LabelTape and EraseTape.
type TapeLabelOptions struct {
	Library string
	Slot    int
	Pool    string // LabelTape: the pool the cartridge is labelled for
	Force   bool   // overwrite another pool's or an unexpired set's cartridge
	Now     time.Time
	Warn    func(format string, args ...any)
}

// TapeRelabelResult is what LabelTape or EraseTape did to a cartridge
// and to the set it held.
type TapeRelabelResult struct {
	Medium TapeMedium `json:"medium"`
	// Set and Sequence: the set the cartridge held before ("" for none).
	Set      string `json:"set,omitempty"`
	Sequence int    `json:"sequence,omitempty"`
	// SetKnown: the media catalog recorded the set, so what it lost is
	// known (PointsLost) and it is closed for appends.
	SetKnown bool `json:"set_known,omitempty"`
	// PointsLost are the points of the set that needed the cartridge.
	PointsLost []string `json:"points_lost,omitempty"`
	// PointsElsewhere are those of PointsLost that another set still
	// holds whole (a copy): not lost from tape.
	PointsElsewhere map[string]string `json:"points_elsewhere,omitempty"`
}

// LabelTape labels the cartridge in a slot as a free cartridge of a pool
// (a set label that expires as it is written, holding nothing); the
// pool's next write takes it into its set. A cartridge holding another
// pool's data or an unexpired set is refused unless Force.
func LabelTape(ctx context.Context, home string, o TapeLabelOptions) (TapeMedium, error) {
	r, err := RelabelTape(ctx, home, o)
	if r == nil {
		return TapeMedium{}, err
	}
	return r.Medium, err
}

// EraseTape makes the cartridge in a slot blank again (o.Pool is
// ignored); see RelabelTape.
func EraseTape(ctx context.Context, home string, o TapeLabelOptions) (TapeMedium, error) {
	o.Pool = ""
	r, err := RelabelTape(ctx, home, o)
	if r == nil {
		return TapeMedium{}, err
	}
	return r.Medium, err
}

// RelabelTape labels the cartridge in a slot for o.Pool, or erases it
// when o.Pool is "": a filemark at the beginning of tape ends its data
// there, as 'mt weof' does (a long erase of every block takes hours and
// adds nothing here). Whether the cartridge may be overwritten is
// mayOverwrite's to say, unless o.Force. What the cartridge held is gone:
// the set it belonged to loses it, the points that needed it, and is
// closed (dropCartridge).
func RelabelTape(ctx context.Context, home string, o TapeLabelOptions) (*TapeRelabelResult, error) {
	purpose := "tape-label"
	if o.Pool == "" {
		purpose = "tape-erase"
	}
	unlock, err := lockTape(ctx, home, purpose, o.Warn)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := readTapeState(home, o.Warn)
	if err != nil {
		return nil, err
	}
	if o.Pool != "" {
		if _, err := st.pool(o.Pool); err != nil {
			return nil, err
		}
	}
	return relabel(ctx, home, st, o, o.Pool)
}

func relabel(ctx context.Context, home string, st *TapeState, o TapeLabelOptions, pool string) (*TapeRelabelResult, error) {
	lib, libRec, inv, err := openReadyLibrary(ctx, st, o.Library)
	if err != nil {
		return nil, err
	}
	defer lib.Close()
	var el *tapefs.Element
	for i := range inv.Slots {
		if inv.Slots[i].Number == o.Slot && inv.Slots[i].Full {
			el = &inv.Slots[i]
		}
	}
	if el == nil {
		return nil, fmt.Errorf("slot %d of library %s: %w", o.Slot, libRec.Name, tapefs.ErrNoCartridge)
	}
	fail := func(err error) (*TapeRelabelResult, error) {
		return nil, fmt.Errorf("cartridge %s in slot %d: %w", el.Barcode, o.Slot, err)
	}
	// refuse names, with the refusal, the points --force would take off
	// tape, so whoever decides knows what is at stake.
	refuse := func(err error, sl *tapefs.SetLabel) (*TapeRelabelResult, error) {
		set, seq := "", 0
		if sl != nil && !freeLabel(sl) {
			set, seq = sl.SetID, sl.Sequence
		} else if m, ok := st.medium(el.Barcode); ok && m.Set != "" {
			set, seq = m.Set, m.Sequence
		}
		if lost, elsewhere, ok := st.pointsNeeding(set, seq, el.Barcode); ok {
			err = fmt.Errorf("%w; %s", err, describeAtStake(lost, elsewhere))
		}
		return fail(err)
	}
	if !o.Force {
		if err := mayOverwrite(st, el.Barcode, false, nil, pool, o.Now); err != nil {
			return refuse(err, nil)
		}
	}
	d, err := loadSlot(ctx, lib, el.Number, tapeDrive)
	if err != nil {
		return nil, err
	}
	defer func() {
		unloadDrive(ctx, lib, d, tapeDrive, el.Number)
		d.Close()
	}()
	_, sl, lerr := tapefs.ReadLabels(ctx, d)
	switch {
	case errors.Is(lerr, tapefs.ErrNotLabelled):
		sl = nil
	case lerr != nil && !o.Force:
		return fail(fmt.Errorf("read its labels: %w (erase it with 'recall tape erase --force' if it holds nothing you need)", lerr))
	case lerr != nil:
		sl = nil
	}
	if !o.Force {
		if err := mayOverwrite(st, el.Barcode, true, sl, pool, o.Now); err != nil {
			return refuse(err, sl)
		}
	}
	// The set the cartridge held: its label says, else the catalog.
	res := &TapeRelabelResult{}
	if sl != nil && !freeLabel(sl) {
		res.Set, res.Sequence = sl.SetID, sl.Sequence
	} else if m, ok := st.medium(el.Barcode); ok && m.Set != "" && sl == nil {
		res.Set, res.Sequence = m.Set, m.Sequence
	}

	vl := tapefs.VolumeLabel{FormatVersion: tapefs.FormatVersion, VolumeID: tapefs.NewUUID(), Barcode: el.Barcode, BlockSize: tapefs.BlockSize, Created: o.Now.UTC()}
	if pool != "" {
		// A set label that expired as it was written: the cartridge is the
		// pool's, and free.
		free := tapefs.SetLabel{Pool: pool, SetID: tapefs.NewUUID(), Sequence: 1, Created: o.Now.UTC(), Expiry: o.Now.UTC()}
		if err := tapefs.WriteLabels(ctx, d, vl, free); err != nil {
			return fail(err)
		}
	} else {
		// A filemark at the beginning of tape: what follows is gone, and
		// the cartridge reads as blank (mt weof, a quick erase).
		vl.VolumeID = ""
		if err := d.Rewind(ctx); err != nil {
			return fail(err)
		}
		if err := d.WriteFilemarks(ctx, 1); err != nil {
			return fail(err)
		}
	}
	if err := d.Flush(ctx); err != nil {
		return fail(err)
	}
	res.Medium = TapeMedium{Barcode: el.Barcode, VolumeID: vl.VolumeID, Pool: pool, State: MediaFree, Library: libRec.Name, Slot: el.Number}
	u := TapeUpdate{Media: []TapeMedium{res.Medium}}
	if s, ok := st.set(res.Set); ok && res.Sequence > 0 && res.Sequence <= len(s.Tapes) && s.Tapes[res.Sequence-1] == el.Barcode {
		res.SetKnown = true
		res.PointsLost, res.PointsElsewhere, _ = st.pointsNeeding(res.Set, res.Sequence, el.Barcode)
		dropCartridge(&s, res.Sequence)
		u.Sets = []TapeSet{s}
	}
	if err := writeTapeState(home, o.Warn, u); err != nil {
		return res, fmt.Errorf("cartridge %s was overwritten, but the catalog was not updated: %w (run 'recall tape catalog --slot %d')", el.Barcode, err, el.Number)
	}
	return res, nil
}

// Operator actions on an emulated library (what a person does at a real
// library's door): take a cartridge out, put one back in, add a blank.
const (
	EmulatedEject    = "eject"
	EmulatedInsert   = "insert"
	EmulatedAddBlank = "add-blank"
)

// EmulatedLibraryAction does action (EmulatedEject, EmulatedInsert,
// EmulatedAddBlank) on the emulated library named library (""; the only
// one) with the cartridge barcode ("" for add-blank: the next barcode),
// under the tape lock, so no tape job moves cartridges meanwhile. It
// returns the barcode and slot the cartridge is in after (0 for eject).
func EmulatedLibraryAction(ctx context.Context, home, library, action, barcode string, warn func(string, ...any)) (string, int, error) {
	st, err := readTapeState(home, warn)
	if err != nil {
		return "", 0, err
	}
	libRec, err := st.library(library)
	if err != nil {
		return "", 0, err
	}
	if libRec.Kind != "emulated" {
		return "", 0, fmt.Errorf("%w: tape library %s is a real one: load and unload its cartridges at its door or with its own tools", ErrBadOption, libRec.Name)
	}
	unlock, err := lockTape(ctx, home, "tape library "+action, warn)
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	lib, err := tapefs.OpenEmulatedLibrary(libRec.Dir)
	if err != nil {
		return "", 0, fmt.Errorf("tape library %s: %w", libRec.Name, err)
	}
	defer lib.Close()
	slot := 0
	switch action {
	case EmulatedEject:
		err = lib.Eject(barcode)
	case EmulatedInsert:
		slot, err = lib.Insert(barcode)
	case EmulatedAddBlank:
		slot, err = lib.AddBlank(barcode)
		if err == nil && barcode == "" {
			inv, ierr := lib.Inventory(ctx)
			if ierr == nil {
				for _, e := range inv.Slots {
					if e.Number == slot {
						barcode = e.Barcode
					}
				}
			}
		}
	default:
		return "", 0, fmt.Errorf("%w: %q: want %s, %s or %s", ErrBadOption, action, EmulatedEject, EmulatedInsert, EmulatedAddBlank)
	}
	if err != nil {
		return "", 0, fmt.Errorf("tape library %s: %w", libRec.Name, err) // it names the action and cartridge
	}
	return barcode, slot, nil
}

// pointsNeeding returns the points of set setID that need its cartridge
// seq (barcode), so that losing the cartridge takes them off the set, and
// of those the ones another set holds whole, with that set. ok is false
// when the catalog does not record the cartridge as that one of the set.
// Nothing is changed.
func (st *TapeState) pointsNeeding(setID string, seq int, barcode string) (lost []string, elsewhere map[string]string, ok bool) {
	s, known := st.set(setID)
	if !known || seq < 1 || seq > len(s.Tapes) || s.Tapes[seq-1] != barcode {
		return nil, nil, false
	}
	// dropCartridge changes the set and its catalog: on copies.
	s.Dropped = slices.Clone(s.Dropped)
	if s.Catalog != nil {
		c := *s.Catalog
		s.Catalog = &c
	}
	lost = dropCartridge(&s, seq)
	for _, id := range lost {
		for _, o := range st.Sets {
			if o.ID == s.ID || o.Catalog == nil || !slices.ContainsFunc(o.Catalog.Points, func(p tapefs.CatalogPoint) bool { return p.ID == id }) {
				continue
			}
			if elsewhere == nil {
				elsewhere = map[string]string{}
			}
			elsewhere[id] = o.ID
			break
		}
	}
	return lost, elsewhere, true
}

// describeAtStake says which points overwriting a cartridge takes off
// tape (at most a few named) and which another set still holds.
func describeAtStake(lost []string, elsewhere map[string]string) string {
	var gone []string
	for _, id := range lost {
		if _, ok := elsewhere[id]; !ok {
			gone = append(gone, id)
		}
	}
	switch {
	case len(lost) == 0:
		return "no point of the set needs it"
	case len(gone) == 0:
		return fmt.Sprintf("its %d point(s) that need it are all whole on other sets", len(lost))
	}
	named := gone
	more := ""
	if len(named) > 5 {
		named, more = named[:5], fmt.Sprintf(" and %d more", len(gone)-5)
	}
	s := fmt.Sprintf("overwriting it takes point(s) %s%s off every tape", strings.Join(named, ", "), more)
	if n := len(lost) - len(gone); n > 0 {
		s += fmt.Sprintf(" (%d more that need it are whole on other sets)", n)
	}
	return s
}
