package tapefs

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// BlockSize is the size of every block recall writes, header included: a
// tape sees blocks of exactly this size except a file's last one (and
// compressed blocks, which carry BlockSize bytes of data in fewer).
const BlockSize = 1 << 20

// FormatVersion is the version of the on-tape format this package writes
// and the newest it reads. The package comment documents it.
const FormatVersion = 1

// FileKind says what a tape file holds. It is recorded in every block.
type FileKind uint8

const (
	KindPacks   FileKind = iota + 1 // entries named by pack id, the pack's bytes
	KindPoint                       // one recovery point: "manifest" and "point.json"
	KindCatalog                     // "catalog.json": the media catalog of the set so far

	KindVolumeLabel FileKind = 16 // file 0: "volume.json"
	KindSetLabel    FileKind = 17 // file 1: "set.json"
)

func (k FileKind) String() string {
	switch k {
	case KindPacks:
		return "packs"
	case KindPoint:
		return "point"
	case KindCatalog:
		return "catalog"
	case KindVolumeLabel:
		return "volume label"
	case KindSetLabel:
		return "set label"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Errors of the on-tape format, checked with errors.Is.
var (
	// ErrNotLabelled: the cartridge is blank (end of data at its start).
	ErrNotLabelled = errors.New("cartridge is not labelled (blank)")
	// ErrForeign: the cartridge or tape file holds data recall did not
	// write (no recall block magic where a label or file should start).
	ErrForeign = errors.New("not written by recall")
	// ErrWrongKey: an encrypted set read with no key or another pool's
	// key, or a key file opened with the wrong passphrase.
	ErrWrongKey = errors.New("wrong key")
	// ErrTorn: a tape file ends without its end record (a power cut or the
	// end of the medium while it was written); its last entry is not whole.
	ErrTorn = errors.New("tape file is torn (ends without its end record)")
	// ErrBadBlock: a block could not be read (a medium error) or failed
	// its checks (CRC, authentication, sequence); the rest of its file is
	// skipped.
	ErrBadBlock = errors.New("bad block")
	// ErrUnsupportedVersion: a label, block, catalog or key file of a
	// newer format than this recall reads.
	ErrUnsupportedVersion = errors.New("format version newer than this recall reads: upgrade recall")
)

// NewUUID returns a random (version 4) UUID in its canonical text form,
// for volume and set ids.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
