package chunkstore

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Compression names the codec a writer compresses new blobs with. Blobs
// already stored keep the codec they were written with (their pack entry
// says which), so a store may hold blobs of every codec at once.
type Compression string

// Codecs for new blobs. The store config names the default (absent:
// zstd); a writer may be told another for one session (SetCompression).
const (
	// CompressionZstd is zstd at its fastest level: the default.
	CompressionZstd Compression = "zstd"
	// CompressionS2 is S2 (a Snappy extension): faster than zstd, for a
	// few percent more store.
	CompressionS2 Compression = "s2"
	// CompressionOff stores blobs as they are.
	CompressionOff Compression = "off"
)

// ErrCompression marks a compression name that is not one of the codecs.
var ErrCompression = errors.New("unknown compression")

// ParseCompression checks a codec name as given on a command line or in
// the store config.
func ParseCompression(name string) (Compression, error) {
	switch c := Compression(name); c {
	case CompressionZstd, CompressionS2, CompressionOff:
		return c, nil
	}
	return "", fmt.Errorf("%w %q: use zstd, s2 or off", ErrCompression, name)
}

// code is the pack entry's compression code of blobs this codec writes.
func (c Compression) code() uint8 {
	switch c {
	case CompressionS2:
		return compS2
	case CompressionOff:
		return compNone
	}
	return compZstd
}

// decompress decodes data compressed with the codec of code comp into
// dst's storage (allocating when it is too small). Sizes are checked
// before anything is allocated (zstdsize.go, s2size.go).
func (s *Store) decompress(comp uint8, data, dst []byte) ([]byte, error) {
	var out []byte
	var err error
	switch comp {
	case compNone:
		return append(dst[:0], data...), nil
	case compZstd:
		if err = checkZstdSizes(data); err == nil {
			out, err = s.zdec.DecodeAll(data, dst[:0])
		}
	case compS2:
		if err = checkS2Size(data); err == nil {
			out, err = s2.Decode(dst[:0], data)
		}
	case compOther:
		// The index keeps every code no codec has as compOther (index.go),
		// so the pack's own code is not known here: "code 3" named a code
		// the pack never had.
		err = errors.New("the pack gives a compression code this recall does not know ('recall verify --read-data' names it)")
	default:
		err = fmt.Errorf("compression code %d is none this recall knows", comp)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
	}
	return out, nil
}
