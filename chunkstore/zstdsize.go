package chunkstore

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// zstdBlockMax is the most one compressed zstd block decodes to.
const zstdBlockMax = 128 << 10

var errZstdSize = errors.New("frame declares more content than its blocks hold")

// checkZstdSizes rejects stored bytes whose zstd frame declares a content
// size its blocks cannot hold. DecodeAll allocates a frame's declared
// size before it decodes a block, so without this check a flipped bit in
// that field of a 70-byte blob (plaintext stores decompress before the id
// check) costs up to maxBlobLen of memory per read; with it, a frame
// allocates no more than its own blocks can produce: a raw or RLE block
// what its header says, a compressed block at most 128 KiB.
//
// Only sizes are judged here. Bytes that are not zstd at all, or frames
// cut short, are left to DecodeAll, which fails on them; a frame's blocks
// are counted as far as they go, so a cut-short frame is held to what it
// holds.
func checkZstdSizes(data []byte) error {
	for len(data) > 0 {
		var h zstd.Header
		rest, err := h.DecodeAndStrip(data)
		if err != nil {
			return nil // DecodeAll fails on this header before allocating
		}
		if h.Skippable {
			if uint64(h.SkippableSize) > uint64(len(rest)) {
				return nil
			}
			data = rest[h.SkippableSize:]
			continue
		}
		var most uint64
		last := false
		for !last && len(rest) >= 3 {
			bh := uint32(rest[0]) | uint32(rest[1])<<8 | uint32(rest[2])<<16
			last = bh&1 != 0
			size := int(bh >> 3)
			rest = rest[3:]
			switch bh >> 1 & 3 {
			case 0: // raw
				most += uint64(size)
				rest = rest[min(size, len(rest)):]
			case 1: // RLE: one byte repeated size times
				most += uint64(size)
				rest = rest[min(1, len(rest)):]
			case 2: // compressed
				most += zstdBlockMax
				rest = rest[min(size, len(rest)):]
			default: // reserved: DecodeAll stops here
				last = true
			}
		}
		if h.HasFCS && h.FrameContentSize > most {
			return fmt.Errorf("%w: %d bytes declared, at most %d", errZstdSize, h.FrameContentSize, most)
		}
		if h.HasCheckSum {
			rest = rest[min(4, len(rest)):]
		}
		data = rest
	}
	return nil
}
