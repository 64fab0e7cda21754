package tapefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// ScanResult is what ScanTape read from a cartridge.
type ScanResult struct {
	Volume *VolumeLabel
	Set    *SetLabel
	// Catalog describes the set: the cartridge's last catalog file when
	// FromCatalogFile, else what a full scan of this cartridge found
	// (merged with what its last readable catalog file said about the
	// set's other cartridges).
	Catalog         *MediaCatalog
	FromCatalogFile bool
	// Torn: a tape file ends without its end record (a power cut while
	// writing); what is before it is in Catalog.
	Torn bool
	// EndOfMedium: the last file was cut by the end of the medium, which
	// is spanning, not damage: the writer ended it with a filemark (a power
	// cut leaves none), or the drive reports the end of data in its
	// early-warning zone. Its whole entries are in Catalog; what it cut
	// was written again, whole, on the set's next cartridge.
	EndOfMedium bool
	// EODPos is the logical object number of the end of data.
	EODPos uint64
	// Damaged lists the tape files a full scan could not read whole.
	Damaged []DamagedFile
}

// DamagedFile is a tape file a full scan could not read whole: its whole
// entries before the damage are in the catalog, the rest are not.
type DamagedFile struct {
	FileNo   int // -1 when its first block could not be read
	StartPos uint64
	Kind     FileKind // 0 when unknown
	Entry    string   // the entry the damage cut, "" if none or unknown
	Err      error    // wraps ErrBadBlock or ErrTorn
}

const (
	pointFileJSON = "point.json"
	maxPointJSON  = 64 << 20
)

// pointJSON is what ScanTape reads of a point file's "point.json"; the
// engine writes more fields, which a scan ignores.
type pointJSON struct {
	ID     string    `json:"id"`
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	Packs  []string  `json:"packs"`
}

// ScanTape reads what a cartridge holds without a home catalog: its
// labels, then its last catalog file if that is whole, else every file
// (tolerant of a torn last file and of damaged blocks: what it could read
// is returned, and what it skipped is in Damaged). poolKey may be nil for
// a plain set; an encrypted set with a nil or wrong key gives ErrWrongKey
// before any file is read. The drive is left at the end of data.
func ScanTape(ctx context.Context, d Drive, poolKey []byte) (*ScanResult, error) {
	vol, set, err := ReadLabels(ctx, d)
	if err != nil {
		return nil, err
	}
	res := &ScanResult{Volume: vol, Set: set}
	var o FileOptions
	if set.Encrypted() {
		if poolKey == nil {
			return nil, fmt.Errorf("%s: set %s of pool %q is encrypted with the key %s: import that pool's key: %w", d.Name(), set.SetID, set.Pool, set.KeyFingerprint, ErrWrongKey)
		}
		if fp := KeyFingerprint(poolKey); fp != set.KeyFingerprint {
			return nil, fmt.Errorf("%s: set %s of pool %q is encrypted with the key %s, the key given is %s: %w", d.Name(), set.SetID, set.Pool, set.KeyFingerprint, fp, ErrWrongKey)
		}
		o.Key = SetKey(poolKey, set.SetID)
	}
	dataStart, err := d.Position(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name(), err)
	}
	if err := d.SeekEOD(ctx); err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name(), err)
	}
	if res.EODPos, err = d.Position(ctx); err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name(), err)
	}
	if res.EODPos > dataStart {
		c, err := lastCatalog(ctx, d, res.EODPos, o)
		if err != nil {
			return nil, err
		}
		if c != nil && c.SetID == set.SetID && c.Pool == set.Pool {
			res.Catalog, res.FromCatalogFile = c, true
			return res, nil
		}
	}
	if err := d.Locate(ctx, dataStart); err != nil {
		return nil, fmt.Errorf("scan %s: %w", d.Name(), err)
	}
	if err := fullScan(ctx, d, o, res); err != nil {
		return nil, err
	}
	return res, nil
}

// lastCatalog reads the last tape file if it is a whole catalog file, and
// returns nil (no error) when it is not: then the caller scans, and meets
// again (and reports) whatever went wrong here. Only a wrong key is an
// error.
func lastCatalog(ctx context.Context, d Drive, eod uint64, o FileOptions) (*MediaCatalog, error) {
	// From the end of data, back over the last filemark: if it is not the
	// object just before the end, blocks follow it and the last file is
	// torn.
	if err := d.SpaceFiles(ctx, -1); err != nil {
		return nil, nil
	}
	if p, err := d.Position(ctx); err != nil || p+1 != eod {
		return nil, nil
	}
	// Back over the filemark before the last file, then forward past it:
	// the last file's first block.
	if err := d.SpaceFiles(ctx, -1); err != nil {
		return nil, nil
	}
	if err := d.SpaceFiles(ctx, 1); err != nil {
		return nil, nil
	}
	r, err := NewFileReader(ctx, d, o)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return nil, err
		}
		return nil, nil
	}
	if r.Kind() != KindCatalog {
		return nil, nil
	}
	c, err := readCatalogFile(ctx, r)
	if err != nil {
		if errors.Is(err, ErrWrongKey) {
			return nil, err
		}
		return nil, nil
	}
	return c, nil
}

// scannedPoint is a point file a full scan read whole.
type scannedPoint struct {
	pointJSON
	file int // index into the scanned files
}

// fullScan reads every tape file from the drive's position to the end of
// data into res.Catalog.
func fullScan(ctx context.Context, d Drive, o FileOptions, res *ScanResult) error {
	var files []CatalogFile
	var points []scannedPoint
	var lastCat *MediaCatalog
	for {
		pos, err := d.Position(ctx)
		if err != nil {
			return fmt.Errorf("scan %s: %w", d.Name(), err)
		}
		r, err := NewFileReader(ctx, d, o)
		if err != nil {
			switch {
			case errors.Is(err, ErrEOD):
				res.Catalog = mergeScan(res, files, points, lastCat)
				return nil
			case errors.Is(err, ErrTorn), errors.Is(err, ErrBadBlock), errors.Is(err, ErrForeign):
				if errors.Is(err, ErrTorn) && endOfMedium(ctx, d, res.EODPos) {
					res.EndOfMedium = true
					continue
				}
				res.Torn = res.Torn || errors.Is(err, ErrTorn)
				res.Damaged = append(res.Damaged, DamagedFile{FileNo: -1, StartPos: pos, Err: err})
				if p, perr := d.Position(ctx); perr == nil && p == pos {
					return fmt.Errorf("scan %s: stuck at %d: %w", d.Name(), pos, err)
				}
				continue
			}
			return fmt.Errorf("scan %s: %w", d.Name(), err)
		}
		f := CatalogFile{Sequence: res.Set.Sequence, FileNo: r.FileNo(), StartPos: pos, Kind: r.Kind()}
		pt, cat, cur, ferr := scanEntries(ctx, r, &f)
		cut := false
		if ferr != nil {
			if !errors.Is(ferr, ErrTorn) && !errors.Is(ferr, ErrBadBlock) {
				return fmt.Errorf("scan %s: %w", d.Name(), ferr)
			}
			if cut = errors.Is(ferr, ErrTorn) && endOfMedium(ctx, d, res.EODPos); cut {
				res.EndOfMedium = true
			} else {
				res.Torn = res.Torn || errors.Is(ferr, ErrTorn)
				res.Damaged = append(res.Damaged, DamagedFile{FileNo: f.FileNo, StartPos: pos, Kind: f.Kind, Entry: cur, Err: ferr})
			}
		}
		if cut && f.Kind == KindPoint {
			// A point file cut by the end of medium goes again, both
			// entries, on the next cartridge: the point is there.
			pt = nil
		}
		switch f.Kind {
		case KindCatalog:
			if cat != nil && ferr == nil && cat.SetID == res.Set.SetID {
				lastCat = cat
			}
		default:
			files = append(files, f)
			if pt != nil && hasEntry(f.Entries, "manifest") {
				points = append(points, scannedPoint{*pt, len(files) - 1})
			}
		}
	}
}

// endOfMedium reports whether the torn file the drive just read to its
// end, the last on tape (it ends at eod), was cut by the end of the
// medium rather than by a power cut: the writer ended it with a filemark
// when the drive refused its next block, or the drive reports the end of
// data in its early-warning zone. The drive is left at eod.
func endOfMedium(ctx context.Context, d Drive, eod uint64) bool {
	if p, err := d.Position(ctx); err != nil || p != eod || eod == 0 {
		return false
	}
	if st, err := d.Status(ctx); err == nil && st.EarlyWarning {
		return true
	}
	if err := d.Locate(ctx, eod-1); err != nil {
		return false
	}
	var b [1]byte
	_, err := d.ReadBlock(ctx, b[:])
	fm := errors.Is(err, ErrFilemark)
	if err := d.Locate(ctx, eod); err != nil {
		return false
	}
	return fm
}

func hasEntry(es []CatalogEntry, name string) bool {
	for _, e := range es {
		if e.Name == name {
			return true
		}
	}
	return false
}

// scanEntries lists the whole entries of the file r reads into f, reading
// a point file's point.json and a catalog file's catalog. On an error,
// cur names the entry it cut.
func scanEntries(ctx context.Context, r *FileReader, f *CatalogFile) (pt *pointJSON, cat *MediaCatalog, cur string, err error) {
	var pending *CatalogEntry
	for {
		name, _, err := r.Next(ctx)
		if err != nil && err != io.EOF {
			if pending != nil {
				cur = pending.Name
			}
			return pt, cat, cur, err
		}
		if pending != nil {
			f.Entries = append(f.Entries, *pending)
			pending = nil
		}
		if err == io.EOF {
			return pt, cat, "", nil
		}
		e := r.Entry()
		pending = &e
		switch {
		case f.Kind == KindPoint && name == pointFileJSON:
			b, err := r.ReadEntry(maxPointJSON)
			if err != nil {
				return pt, cat, name, err
			}
			var p pointJSON
			if json.Unmarshal(b, &p) == nil && p.ID != "" {
				pt = &p
			}
		case f.Kind == KindCatalog && name == catalogFileName:
			b, err := r.ReadEntry(maxCatalogSize)
			if err != nil {
				return pt, cat, name, err
			}
			cat, _ = DecodeCatalog(b)
		}
	}
}

// mergeScan builds the catalog of a full scan: this cartridge's files and
// points as scanned, the set's other cartridges as the last catalog file
// read on this one described them.
func mergeScan(res *ScanResult, scanned []CatalogFile, points []scannedPoint, last *MediaCatalog) *MediaCatalog {
	set := res.Set
	c := &MediaCatalog{Version: CatalogVersion, Pool: set.Pool, SetID: set.SetID}
	remap := map[int]int{} // index in last.Files -> index in c.Files
	if last != nil {
		c.Written = last.Written
		for _, t := range last.Tapes {
			if t.Sequence != set.Sequence {
				c.Tapes = append(c.Tapes, t)
			}
		}
		for i, f := range last.Files {
			if f.Sequence != set.Sequence {
				remap[i] = len(c.Files)
				c.Files = append(c.Files, f)
			}
		}
	}
	this := CatalogTape{Sequence: set.Sequence, Barcode: res.Volume.Barcode, VolumeID: res.Volume.VolumeID}
	if last != nil {
		for _, t := range last.Tapes {
			if t.Sequence == set.Sequence {
				this.Full = t.Full
			}
		}
	}
	c.Tapes = append(c.Tapes, this)
	slices.SortFunc(c.Tapes, func(a, b CatalogTape) int { return a.Sequence - b.Sequence })
	base := len(c.Files)
	byFileNo := map[int]int{}
	for i, f := range scanned {
		byFileNo[f.FileNo] = base + i
	}
	c.Files = append(c.Files, scanned...)
	if last != nil {
		for i, f := range last.Files {
			if j, ok := byFileNo[f.FileNo]; ok && f.Sequence == set.Sequence {
				remap[i] = j
			}
		}
	}
	packFiles := map[string][]int{}
	for i, f := range c.Files {
		if f.Kind == KindPacks {
			for _, e := range f.Entries {
				packFiles[e.Name] = append(packFiles[e.Name], i)
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range points {
		files := []int{base + p.file}
		for _, pk := range p.Packs {
			files = append(files, packFiles[pk]...)
		}
		slices.Sort(files)
		c.Points = append(c.Points, CatalogPoint{ID: p.ID, Source: p.Source, Time: p.Time, Packs: p.Packs, Files: slices.Compact(files)})
		seen[p.ID] = true
	}
	if last != nil {
		for _, p := range last.Points {
			if seen[p.ID] {
				continue
			}
			var files []int
			for _, i := range p.Files {
				if j, ok := remap[i]; ok {
					files = append(files, j)
				}
			}
			p.Files = files
			c.Points = append(c.Points, p)
		}
	}
	return c
}
