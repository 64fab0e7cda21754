package tapefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// VolumeLabel is tape file 0: what the cartridge is, whatever set it
// belongs to. It is never encrypted.
type VolumeLabel struct {
	FormatVersion int       // the on-tape format version (FormatVersion)
	VolumeID      string    // a UUID, new for every labelling
	Barcode       string    // the cartridge's barcode when labelled
	BlockSize     int       // BlockSize
	Created       time.Time // when labelled
}

// SetLabel is tape file 1: the media set the cartridge belongs to. It is
// never encrypted, so a server with no key can say which key it needs.
type SetLabel struct {
	Pool           string
	SetID          string // a UUID
	Sequence       int    // 1-based cartridge number in the set
	Created        time.Time
	Expiry         time.Time
	KeyFingerprint string // KeyFingerprint of the pool key; "" when the pool does not encrypt
	Compressed     bool
	StoreID        string
	StoreConfig    map[string][]byte // the store's config files by name (so a fresh server can open what it restores)
}

// Encrypted reports whether the set's files are encrypted.
func (s *SetLabel) Encrypted() bool { return s.KeyFingerprint != "" }

const (
	volumeLabelName = "volume.json"
	setLabelName    = "set.json"
	volumeLabelTag  = "recall tape volume label"
	setLabelTag     = "recall tape set label"
	// maxLabelSize bounds what a label reader holds in memory.
	maxLabelSize = 16 << 20
)

// The JSON of the labels, as the package comment documents them.
type volumeLabelJSON struct {
	Label     string    `json:"label"`
	Version   int       `json:"version"`
	VolumeID  string    `json:"volume_id"`
	Barcode   string    `json:"barcode"`
	BlockSize int       `json:"block_size"`
	Created   time.Time `json:"created"`
}

type setLabelJSON struct {
	Label          string            `json:"label"`
	Version        int               `json:"version"`
	Pool           string            `json:"pool"`
	SetID          string            `json:"set_id"`
	Sequence       int               `json:"sequence"`
	Created        time.Time         `json:"created"`
	Expiry         time.Time         `json:"expiry"`
	KeyFingerprint string            `json:"key_fingerprint"`
	Compressed     bool              `json:"compressed"`
	StoreID        string            `json:"store_id"`
	StoreConfig    map[string][]byte `json:"store_config"`
}

// labelHead is what every version of a label starts with: read first, so
// a newer label is refused by its version and not by a field it lacks.
type labelHead struct {
	Label   string `json:"label"`
	Version int    `json:"version"`
}

func encodeVolumeLabel(v VolumeLabel) ([]byte, error) {
	if v.FormatVersion == 0 {
		v.FormatVersion = FormatVersion
	}
	if v.BlockSize == 0 {
		v.BlockSize = BlockSize
	}
	if v.FormatVersion != FormatVersion || v.BlockSize != BlockSize {
		return nil, fmt.Errorf("volume label: this recall writes format %d with %d-byte blocks, not format %d with %d", FormatVersion, BlockSize, v.FormatVersion, v.BlockSize)
	}
	if v.VolumeID == "" {
		return nil, fmt.Errorf("volume label: no volume id")
	}
	return json.MarshalIndent(volumeLabelJSON{volumeLabelTag, v.FormatVersion, v.VolumeID, v.Barcode, v.BlockSize, v.Created.UTC()}, "", "  ")
}

func encodeSetLabel(s SetLabel) ([]byte, error) {
	if s.Pool == "" || s.SetID == "" || s.Sequence < 1 {
		return nil, fmt.Errorf("set label: want a pool, a set id and a sequence from 1 (have %q, %q, %d)", s.Pool, s.SetID, s.Sequence)
	}
	return json.MarshalIndent(setLabelJSON{setLabelTag, FormatVersion, s.Pool, s.SetID, s.Sequence, s.Created.UTC(), s.Expiry.UTC(),
		s.KeyFingerprint, s.Compressed, s.StoreID, s.StoreConfig}, "", "  ")
}

func checkLabelHead(b []byte, tag, what string) (int, error) {
	var h labelHead
	if err := json.Unmarshal(b, &h); err != nil {
		return 0, fmt.Errorf("%s: %v", what, err)
	}
	if h.Label != tag {
		return 0, fmt.Errorf("%s: says it is %q, not %q", what, h.Label, tag)
	}
	if h.Version > FormatVersion {
		return 0, fmt.Errorf("%s of format version %d (this recall reads up to %d): %w", what, h.Version, FormatVersion, ErrUnsupportedVersion)
	}
	if h.Version < 1 {
		return 0, fmt.Errorf("%s: format version %d", what, h.Version)
	}
	return h.Version, nil
}

func decodeVolumeLabel(b []byte) (*VolumeLabel, error) {
	if _, err := checkLabelHead(b, volumeLabelTag, "volume label"); err != nil {
		return nil, err
	}
	var j volumeLabelJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("volume label: %v", err)
	}
	if j.VolumeID == "" || j.BlockSize <= 0 || j.BlockSize > BlockSize {
		return nil, fmt.Errorf("volume label: volume id %q, block size %d", j.VolumeID, j.BlockSize)
	}
	return &VolumeLabel{FormatVersion: j.Version, VolumeID: j.VolumeID, Barcode: j.Barcode, BlockSize: j.BlockSize, Created: j.Created}, nil
}

func decodeSetLabel(b []byte) (*SetLabel, error) {
	if _, err := checkLabelHead(b, setLabelTag, "set label"); err != nil {
		return nil, err
	}
	var j setLabelJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("set label: %v", err)
	}
	if j.Pool == "" || j.SetID == "" || j.Sequence < 1 {
		return nil, fmt.Errorf("set label: pool %q, set %q, sequence %d", j.Pool, j.SetID, j.Sequence)
	}
	return &SetLabel{Pool: j.Pool, SetID: j.SetID, Sequence: j.Sequence, Created: j.Created, Expiry: j.Expiry,
		KeyFingerprint: j.KeyFingerprint, Compressed: j.Compressed, StoreID: j.StoreID, StoreConfig: j.StoreConfig}, nil
}

// WriteLabels rewinds and writes files 0 and 1 (each with its filemark),
// which ends everything the cartridge held. The drive is left after them,
// where the set's first tape file goes (file number 2).
func WriteLabels(ctx context.Context, d Drive, v VolumeLabel, s SetLabel) error {
	vb, err := encodeVolumeLabel(v)
	if err != nil {
		return err
	}
	sb, err := encodeSetLabel(s)
	if err != nil {
		return err
	}
	if err := d.Rewind(ctx); err != nil {
		return fmt.Errorf("label %s: %w", d.Name(), err)
	}
	for i, f := range []struct {
		kind FileKind
		name string
		b    []byte
	}{{KindVolumeLabel, volumeLabelName, vb}, {KindSetLabel, setLabelName, sb}} {
		w, err := NewFileWriter(ctx, d, f.kind, i, FileOptions{})
		if err != nil {
			return fmt.Errorf("label %s: %w", d.Name(), err)
		}
		if _, err := w.Add(ctx, f.name, f.b); err != nil {
			return fmt.Errorf("label %s: %w", d.Name(), err)
		}
		if err := w.Close(ctx); err != nil {
			return fmt.Errorf("label %s: %w", d.Name(), err)
		}
	}
	return nil
}

// ReadLabels rewinds and reads files 0 and 1. A blank cartridge (the end
// of data at once, or after one filemark as 'mt weof' leaves it) gives
// ErrNotLabelled, one written by other software ErrForeign, a label of a
// newer format ErrUnsupportedVersion naming its version. The drive is left
// at file 2.
func ReadLabels(ctx context.Context, d Drive) (*VolumeLabel, *SetLabel, error) {
	if err := d.Rewind(ctx); err != nil {
		return nil, nil, fmt.Errorf("read labels on %s: %w", d.Name(), err)
	}
	vb, err := readLabelFile(ctx, d, KindVolumeLabel, 0, volumeLabelName)
	if err != nil {
		return nil, nil, err
	}
	v, err := decodeVolumeLabel(vb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", d.Name(), err)
	}
	sb, err := readLabelFile(ctx, d, KindSetLabel, 1, setLabelName)
	if err != nil {
		return v, nil, err
	}
	s, err := decodeSetLabel(sb)
	if err != nil {
		return v, nil, fmt.Errorf("%s: %w", d.Name(), err)
	}
	return v, s, nil
}

func readLabelFile(ctx context.Context, d Drive, kind FileKind, fileNo int, name string) ([]byte, error) {
	r, err := NewFileReader(ctx, d, FileOptions{})
	if err != nil {
		switch {
		case fileNo == 0 && errors.Is(err, ErrEOD):
			return nil, fmt.Errorf("%s: %w", d.Name(), ErrNotLabelled)
		case fileNo == 0 && errors.Is(err, errEmptyFile):
			// A filemark at the beginning of tape and the end of data
			// after it is what a quick erase ('mt weof') leaves: blank.
			// With data after it, the cartridge is someone else's.
			buf := blockPool.Get(BlockSize)
			_, rerr := d.ReadBlock(ctx, buf)
			blockPool.Put(buf)
			if errors.Is(rerr, ErrEOD) {
				return nil, fmt.Errorf("%s: erased: %w", d.Name(), ErrNotLabelled)
			}
			return nil, fmt.Errorf("%s: a filemark, then data, where the volume label belongs: %w", d.Name(), ErrForeign)
		case fileNo == 0 && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrForeign):
			// Data, but no volume label where it belongs.
			return nil, fmt.Errorf("%s: no recall volume label (%v): %w", d.Name(), err, ErrForeign)
		}
		return nil, fmt.Errorf("read the %s on %s: %w", kind, d.Name(), err)
	}
	if r.Kind() != kind || r.FileNo() != fileNo {
		return nil, fmt.Errorf("%s: file %d is %s file %d, not the %s", d.Name(), fileNo, r.Kind(), r.FileNo(), kind)
	}
	n, size, err := r.Next(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the %s on %s: %w", kind, d.Name(), err)
	}
	if n != name {
		return nil, fmt.Errorf("%s: the %s holds %q, not %q", d.Name(), kind, n, name)
	}
	if size > maxLabelSize {
		return nil, fmt.Errorf("%s: the %s is %d bytes, more than %d", d.Name(), kind, size, maxLabelSize)
	}
	b, err := r.ReadEntry(maxLabelSize)
	if err != nil {
		return nil, fmt.Errorf("read the %s on %s: %w", kind, d.Name(), err)
	}
	if _, _, err := r.Next(ctx); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("more than one entry")
		}
		return nil, fmt.Errorf("read the %s on %s: %w", kind, d.Name(), err)
	}
	return b, nil
}
