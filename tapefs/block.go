package tapefs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/recall-backup/recall/internal/bufpool"
	"github.com/recall-backup/recall/internal/procs"
)

// The block header; the package comment draws it byte by byte.
const (
	blockMagic      = "RCTB"
	blockHeaderLen  = 32 // plain
	blockNonceLen   = 12
	blockEncHdrLen  = blockHeaderLen + blockNonceLen
	blockTagLen     = 16
	blockCRCOffset  = 28
	flagEncrypted   = 0x01
	flagCompressed  = 0x02
	flagLast        = 0x04
	knownBlockFlags = flagEncrypted | flagCompressed | flagLast
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockHeader is a block's header as decoded.
type blockHeader struct {
	version    uint8
	flags      uint8
	kind       FileKind
	hdrLen     int
	fileNo     uint32
	seq        uint32
	payloadLen int // stored bytes after the header (ciphertext and tag when encrypted)
	dataLen    int // bytes of the file's stream the block carries
}

// dataCap is how many bytes of a file's stream one block carries.
func dataCap(encrypted bool) int {
	if encrypted {
		return BlockSize - blockEncHdrLen - blockTagLen
	}
	return BlockSize - blockHeaderLen
}

// blockCodec seals and opens the blocks of one tape file.
type blockCodec struct {
	aead     cipher.AEAD // nil for a plain file
	compress bool
	nonces   io.Reader // random nonces; tests fix them
	scratch  []byte    // compressed data, for a writer that compresses
	plain    []byte    // decompressed data, for a reader
}

// blockPool holds the block buffers of readers and writers between files:
// a scan opens thousands of files.
var blockPool bufpool.Pool

// release gives the codec's buffers back.
func (c *blockCodec) release() {
	if c.plain != nil {
		blockPool.Put(c.plain)
		c.plain = nil
	}
}

// nonceSource is where encrypted blocks take their nonces; golden tests
// replace it to pin an encrypted block.
var nonceSource io.Reader = rand.Reader

func newBlockCodec(key []byte, compress bool) (*blockCodec, error) {
	c := &blockCodec{compress: compress, nonces: nonceSource}
	if key != nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("tape set key is %d bytes, want 32", len(key))
		}
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		if c.aead, err = cipher.NewGCM(b); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *blockCodec) hdrLen() int {
	if c.aead != nil {
		return blockEncHdrLen
	}
	return blockHeaderLen
}

var (
	zenc = sync.OnceValue(func() *zstd.Encoder {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true), zstd.WithEncoderConcurrency(procs.CPUs()),
			// A block's data is at most BlockSize: a window as large
			// keeps every frame single-segment, byte for byte as
			// with the fastest level's default of 4 MiB, and each
			// encoder holds a history of 2 MiB instead of 8.
			zstd.WithWindowSize(BlockSize))
		return e
	})
	zdec = sync.OnceValue(func() *zstd.Decoder {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(2*BlockSize), zstd.IgnoreChecksum(true), zstd.WithDecoderConcurrency(procs.CPUs()))
		return d
	})
)

// seal turns buf, which holds n bytes of stream data at buf[c.hdrLen():],
// into a block in place (cap(buf) >= BlockSize) and returns it.
func (c *blockCodec) seal(buf []byte, n int, kind FileKind, fileNo, seq uint32, last bool) ([]byte, error) {
	hl := c.hdrLen()
	data := buf[hl : hl+n]
	var flags uint8
	if last {
		flags |= flagLast
	}
	stored := data
	if c.compress && n > 0 {
		c.scratch = zenc().EncodeAll(data, c.scratch[:0])
		// Compression that saves less than 1/64 is not worth a
		// decompression on every read.
		if len(c.scratch) < n-n/64 {
			stored = buf[hl : hl+copy(buf[hl:], c.scratch)]
			flags |= flagCompressed
		}
	}
	payloadLen := len(stored)
	if c.aead != nil {
		flags |= flagEncrypted
		payloadLen += blockTagLen
	}
	h := buf[:hl]
	copy(h, blockMagic)
	h[4] = FormatVersion
	h[5] = flags
	h[6] = byte(kind)
	h[7] = byte(hl)
	binary.BigEndian.PutUint32(h[8:], fileNo)
	binary.BigEndian.PutUint32(h[12:], seq)
	binary.BigEndian.PutUint32(h[16:], uint32(payloadLen))
	binary.BigEndian.PutUint32(h[20:], uint32(n))
	binary.BigEndian.PutUint32(h[24:], 0)
	if c.aead != nil {
		nonce := h[blockHeaderLen:blockEncHdrLen]
		if _, err := io.ReadFull(c.nonces, nonce); err != nil {
			return nil, fmt.Errorf("tape block nonce: %w", err)
		}
		c.aead.Seal(stored[:0], nonce, stored, h[:blockCRCOffset])
	}
	b := buf[:hl+payloadLen]
	crc := crc32.Update(crc32.Checksum(b[:blockCRCOffset], castagnoli), castagnoli, b[blockHeaderLen:])
	binary.BigEndian.PutUint32(b[blockCRCOffset:], crc)
	return b, nil
}

// errShortBlock: a block shorter than its header says, which is what the
// last block of a tape cut by a power loss looks like.
var errShortBlock = errors.New("block shorter than its header says")

// parseBlockHeader checks a block's magic, version, lengths and CRC.
func parseBlockHeader(b []byte) (blockHeader, error) {
	var h blockHeader
	if len(b) < 8 || string(b[:4]) != blockMagic {
		return h, fmt.Errorf("no block magic: %w", ErrForeign)
	}
	h.version, h.flags, h.kind, h.hdrLen = b[4], b[5], FileKind(b[6]), int(b[7])
	if h.version == 0 {
		return h, fmt.Errorf("tape block of format version 0")
	}
	if h.version > FormatVersion {
		return h, fmt.Errorf("tape block of format version %d (this recall reads up to %d): %w", h.version, FormatVersion, ErrUnsupportedVersion)
	}
	if len(b) < blockHeaderLen {
		return h, errShortBlock
	}
	if h.flags&^knownBlockFlags != 0 {
		return h, fmt.Errorf("unknown block flags %#x", h.flags)
	}
	want := blockHeaderLen
	if h.flags&flagEncrypted != 0 {
		want = blockEncHdrLen
	}
	if h.hdrLen != want {
		return h, fmt.Errorf("block header length %d, want %d", h.hdrLen, want)
	}
	h.fileNo = binary.BigEndian.Uint32(b[8:])
	h.seq = binary.BigEndian.Uint32(b[12:])
	h.payloadLen = int(binary.BigEndian.Uint32(b[16:]))
	h.dataLen = int(binary.BigEndian.Uint32(b[20:]))
	if h.hdrLen+h.payloadLen > BlockSize || h.dataLen > BlockSize {
		return h, fmt.Errorf("block lengths %d+%d exceed the block size", h.hdrLen, h.payloadLen)
	}
	if len(b) < h.hdrLen+h.payloadLen {
		return h, errShortBlock
	}
	if len(b) > h.hdrLen+h.payloadLen {
		return h, fmt.Errorf("block of %d bytes, its header says %d", len(b), h.hdrLen+h.payloadLen)
	}
	crc := crc32.Update(crc32.Checksum(b[:blockCRCOffset], castagnoli), castagnoli, b[blockHeaderLen:])
	if got := binary.BigEndian.Uint32(b[blockCRCOffset:]); got != crc {
		return h, fmt.Errorf("block CRC32C %08x, computed %08x", got, crc)
	}
	stored := h.payloadLen
	if h.flags&flagEncrypted != 0 {
		stored -= blockTagLen
		if stored < 0 {
			return h, fmt.Errorf("encrypted block payload of %d bytes has no room for its tag", h.payloadLen)
		}
	}
	if h.flags&flagCompressed == 0 && h.dataLen != stored {
		return h, fmt.Errorf("uncompressed block stores %d bytes but says it carries %d", stored, h.dataLen)
	}
	return h, nil
}

// errAuth: an encrypted block whose CRC holds but whose authentication
// fails: the key is wrong (or the block was forged).
var errAuth = errors.New("block authentication failed")

// open checks block b, decrypting in place, and returns its header and the
// stream data it carries (aliasing b or c.plain).
func (c *blockCodec) open(b []byte) (blockHeader, []byte, error) {
	h, err := parseBlockHeader(b)
	if err != nil {
		return h, nil, err
	}
	payload := b[h.hdrLen : h.hdrLen+h.payloadLen]
	if h.flags&flagEncrypted != 0 {
		if c.aead == nil {
			return h, nil, fmt.Errorf("the tape file is encrypted and no key was given: %w", ErrWrongKey)
		}
		payload, err = c.aead.Open(payload[:0], b[blockHeaderLen:blockEncHdrLen], payload, b[:blockCRCOffset])
		if err != nil {
			return h, nil, errAuth
		}
	} else if c.aead != nil {
		return h, nil, fmt.Errorf("a plain block in an encrypted tape file")
	}
	if h.flags&flagCompressed != 0 {
		if c.plain == nil {
			c.plain = blockPool.Get(BlockSize)[:0]
		}
		if err := checkZstdFrame(payload, h.dataLen); err != nil {
			return h, nil, err
		}
		out, err := zdec().DecodeAll(payload, c.plain[:0])
		if err != nil {
			return h, nil, fmt.Errorf("decompress block: %v", err)
		}
		if len(out) != h.dataLen {
			return h, nil, fmt.Errorf("block decompresses to %d bytes, its header says %d", len(out), h.dataLen)
		}
		if cap(out) == cap(c.plain) {
			c.plain = out
		}
		payload = out
	}
	return h, payload, nil
}

// checkZstdFrame refuses a frame that declares more than the block carries
// before the decoder sizes buffers from it.
func checkZstdFrame(b []byte, dataLen int) error {
	var zh zstd.Header
	if err := zh.Decode(b); err != nil {
		return fmt.Errorf("compressed block: %v", err)
	}
	if zh.HasFCS && zh.FrameContentSize != uint64(dataLen) {
		return fmt.Errorf("compressed block declares %d bytes, its header says %d", zh.FrameContentSize, dataLen)
	}
	return nil
}
