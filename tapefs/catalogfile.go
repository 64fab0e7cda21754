package tapefs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// MediaCatalog lists what a media set holds. A catalog file is written at
// the end of every job on the cartridge in use and before a cartridge is
// left full; it lists the whole set so far, so the last catalog file of
// any cartridge describes the set up to that moment.
type MediaCatalog struct {
	Version int // CatalogVersion when decoded; EncodeCatalog writes CatalogVersion
	Pool    string
	SetID   string
	Written time.Time
	Tapes   []CatalogTape
	Files   []CatalogFile
	Points  []CatalogPoint
}

// CatalogTape is one cartridge of the set.
type CatalogTape struct {
	Sequence int    `json:"sequence"`
	Barcode  string `json:"barcode"`
	VolumeID string `json:"volume_id"`
	Full     bool   `json:"full"`
}

// CatalogFile is one tape file of the set.
type CatalogFile struct {
	Sequence int            `json:"sequence"` // which cartridge
	FileNo   int            `json:"file"`
	StartPos uint64         `json:"start"` // logical object number of its first block, for Locate
	Kind     FileKind       `json:"kind"`
	Entries  []CatalogEntry `json:"entries"`
}

// CatalogPoint is one recovery point on the set.
type CatalogPoint struct {
	ID     string    `json:"id"`
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	Packs  []string  `json:"packs"` // the pack names the point needs
	// Files are indexes into MediaCatalog.Files of the tape files holding
	// the point (its point file and the pack files of its packs).
	Files []int `json:"files"`
}

// PackIndex maps each pack name the set holds to the index in Files of
// the packs file holding it; a pack written twice (a cartridge's copy lost
// to a cut and written again) maps to its last copy, the one a restore
// reads.
func (c *MediaCatalog) PackIndex() map[string]int {
	idx := map[string]int{}
	for i, f := range c.Files {
		if f.Kind != KindPacks {
			continue
		}
		for _, e := range f.Entries {
			idx[e.Name] = i
		}
	}
	return idx
}

// CatalogVersion is the version of the catalog encoding.
const CatalogVersion = 1

const (
	catalogTag      = "recall media catalog"
	catalogFileName = "catalog.json"
	// maxCatalogSize bounds a catalog file held in memory: a full LTO-9
	// of 64 MiB packs lists some 300,000 entries, about 30 MB of JSON.
	maxCatalogSize = 1 << 30
)

type catalogJSON struct {
	Format  string         `json:"format"`
	Version int            `json:"version"`
	Pool    string         `json:"pool"`
	SetID   string         `json:"set_id"`
	Written time.Time      `json:"written"`
	Tapes   []CatalogTape  `json:"tapes"`
	Files   []CatalogFile  `json:"files"`
	Points  []CatalogPoint `json:"points"`
}

// EncodeCatalog encodes a media catalog (versioned JSON, documented in the
// package comment).
func EncodeCatalog(c *MediaCatalog) ([]byte, error) {
	if c.Pool == "" || c.SetID == "" {
		return nil, fmt.Errorf("media catalog: want a pool and a set id (have %q, %q)", c.Pool, c.SetID)
	}
	for _, p := range c.Points {
		for _, f := range p.Files {
			if f < 0 || f >= len(c.Files) {
				return nil, fmt.Errorf("media catalog: point %s names file index %d of %d", p.ID, f, len(c.Files))
			}
		}
	}
	j := catalogJSON{Format: catalogTag, Version: CatalogVersion, Pool: c.Pool, SetID: c.SetID, Written: c.Written.UTC(),
		Tapes: c.Tapes, Files: c.Files, Points: c.Points}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("media catalog: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeCatalog decodes what EncodeCatalog wrote; a catalog of a newer
// version gives ErrUnsupportedVersion.
func DecodeCatalog(b []byte) (*MediaCatalog, error) {
	var h struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("media catalog: %v", err)
	}
	if h.Format != catalogTag {
		return nil, fmt.Errorf("media catalog: says it is %q, not %q", h.Format, catalogTag)
	}
	if h.Version > CatalogVersion {
		return nil, fmt.Errorf("media catalog of version %d (this recall reads up to %d): %w", h.Version, CatalogVersion, ErrUnsupportedVersion)
	}
	if h.Version < 1 {
		return nil, fmt.Errorf("media catalog: version %d", h.Version)
	}
	var j catalogJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("media catalog: %v", err)
	}
	if j.Pool == "" || j.SetID == "" {
		return nil, fmt.Errorf("media catalog: pool %q, set %q", j.Pool, j.SetID)
	}
	for _, p := range j.Points {
		for _, f := range p.Files {
			if f < 0 || f >= len(j.Files) {
				return nil, fmt.Errorf("media catalog: point %s names file index %d of %d", p.ID, f, len(j.Files))
			}
		}
	}
	return &MediaCatalog{Version: j.Version, Pool: j.Pool, SetID: j.SetID, Written: j.Written, Tapes: j.Tapes, Files: j.Files, Points: j.Points}, nil
}

// WriteCatalogFile writes c as a catalog tape file (one entry,
// "catalog.json") at the drive's position and returns its writer (for
// StartPos and EarlyWarning). The caller lists the catalog file itself in
// c only if it wants to; readers find it as the last file.
func WriteCatalogFile(ctx context.Context, d Drive, fileNo int, o FileOptions, c *MediaCatalog) (*FileWriter, error) {
	b, err := EncodeCatalog(c)
	if err != nil {
		return nil, err
	}
	w, err := NewFileWriter(ctx, d, KindCatalog, fileNo, o)
	if err != nil {
		return nil, err
	}
	if _, err := w.Add(ctx, catalogFileName, b); err != nil {
		return w, err
	}
	return w, w.Close(ctx)
}

// readCatalogFile reads a catalog file from r (positioned at its start).
func readCatalogFile(ctx context.Context, r *FileReader) (*MediaCatalog, error) {
	if r.Kind() != KindCatalog {
		return nil, fmt.Errorf("%s is a %s file, not a catalog", r.where(), r.Kind())
	}
	name, _, err := r.Next(ctx)
	if err != nil {
		return nil, err
	}
	if name != catalogFileName {
		return nil, fmt.Errorf("%s: holds %q, not %q", r.where(), name, catalogFileName)
	}
	b, err := r.ReadEntry(maxCatalogSize)
	if err != nil {
		return nil, err
	}
	if _, _, err := r.Next(ctx); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("%s: more than one entry", r.where())
		}
		return nil, err
	}
	return DecodeCatalog(b)
}
