package chunkstore

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

var errS2Size = errors.New("s2 block declares more than it holds")

// checkS2Size rejects an s2 block whose declared decoded length is more
// than a blob may hold, or more than its elements produce. s2.Decode
// allocates the declared length before it decodes anything, so without
// this a flipped bit in that varint of a 70-byte blob (plaintext stores
// decompress before the id check) would cost up to 4 GiB per read; with
// it, a block allocates no more than its own elements write. The walk
// reads tags and lengths only, a small fraction of a decode.
//
// The walk follows s2's block format: a uvarint length, then elements,
// each a literal (tag 0, length in the tag or 1-4 bytes after it), a copy
// with a 1, 2 or 4 byte offset (tags 1, 2, 3), or, for tag 1 with offset
// 0, a repeat of the last offset whose length takes 0-3 more bytes.
func checkS2Size(data []byte) error {
	n, err := s2.DecodedLen(data)
	if err != nil {
		return err
	}
	if n > maxBlobLen {
		return fmt.Errorf("%w: %d bytes declared, a blob holds at most %d", errS2Size, n, maxBlobLen)
	}
	hdr := 1
	for hdr < len(data) && data[hdr-1]&0x80 != 0 {
		hdr++
	}
	src := data[hdr:]
	le := func(b []byte) int {
		v := 0
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | int(b[i])
		}
		return v
	}
	produced, offset := 0, 0
	for s := 0; s < len(src); {
		var length int
		tag := src[s]
		switch tag & 3 {
		case 0: // literal
			x := int(tag >> 2)
			extra := 0
			if x >= 60 {
				extra = x - 59
			}
			if s+1+extra > len(src) {
				return ErrCorrupt
			}
			if extra > 0 {
				x = le(src[s+1 : s+1+extra])
			}
			s += 1 + extra
			length = x + 1
			if length > len(src)-s {
				return ErrCorrupt
			}
			s += length
			produced += length
			if produced > n {
				return fmt.Errorf("%w: elements produce more than the %d bytes declared", errS2Size, n)
			}
			continue
		case 1: // copy, 1-byte offset, or repeat
			if s+2 > len(src) {
				return ErrCorrupt
			}
			o := int(tag&0xe0)<<3 | int(src[s+1])
			length = int(tag>>2) & 7
			s += 2
			if o == 0 {
				extra := 0
				switch length {
				case 5:
					extra = 1
				case 6:
					extra = 2
				case 7:
					extra = 3
				}
				if s+extra > len(src) {
					return ErrCorrupt
				}
				switch extra {
				case 1:
					length = le(src[s:s+1]) + 4
				case 2:
					length = le(src[s:s+2]) + 1<<8
				case 3:
					length = le(src[s:s+3]) + 1<<16
				}
				s += extra
			} else {
				offset = o
			}
			length += 4
		case 2: // copy, 2-byte offset
			if s+3 > len(src) {
				return ErrCorrupt
			}
			offset = le(src[s+1 : s+3])
			length = 1 + int(tag>>2)
			s += 3
		case 3: // copy, 4-byte offset
			if s+5 > len(src) {
				return ErrCorrupt
			}
			offset = le(src[s+1 : s+5])
			length = 1 + int(tag>>2)
			s += 5
		}
		if offset <= 0 || produced < offset {
			return ErrCorrupt
		}
		produced += length
		if produced > n {
			return fmt.Errorf("%w: elements produce more than the %d bytes declared", errS2Size, n)
		}
	}
	if produced != n {
		return fmt.Errorf("%w: %d bytes declared, its elements produce %d", errS2Size, n, produced)
	}
	return nil
}
