package chunkstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/zeebo/blake3"
)

// Pack file format, version 1:
//
//	pack   = blob* | header | u32le header_length | magic "RCALLPK1"
//	header = plaintext store: body | u32le crc32c(body)
//	         encrypted store: nonce(12) | AES-256-GCM(body) | tag(16), AD = magic
//	body   = u8 version (1) | u32le count | entry*count
//	entry  = u8 blob type | u8 compression (0 none, 1 zstd, 2 s2) | u16 reserved (0)
//	         | u32le offset | u32le stored length | u32le raw length | [32]byte id
//
// Compressed bytes are one zstd frame (code 1) or one S2 block (code 2: a
// uvarint of the raw length, then Snappy elements with S2's repeat codes,
// as github.com/klauspost/compress/s2 Encode writes). Each blob carries
// its own code, so one pack may mix them; code 2 came after the first
// packs were written, and recalls before it read it as damage, which is
// why a store that holds s2 blobs has config version 2 (config.go). Other
// codes are damage.
//
// A stored blob is, for a plaintext store, the (possibly compressed)
// bytes; for an encrypted store nonce(12) | AES-256-GCM(bytes) | tag(16)
// with the blob id as additional data. Packs are named by the BLAKE3-256
// hash of their header and trailer (the last header_length+12 bytes) and
// stored at packs/<first two hex>/<hex>. The header lists every blob's id
// (itself a content hash) and place, so the name still identifies the
// content, at the cost of hashing a few KiB instead of the whole pack; each
// blob is checked against its own id when read.
// Every index can be rebuilt from pack headers alone.

const (
	packMagic      = "RCALLPK1"
	packVersion    = 1
	packEntrySize  = 48
	packTrailerLen = 4 + len(packMagic)
)

// Compression codes stored per blob.
const (
	compNone = 0
	compZstd = 1
	compS2   = 2
)

// PackEntry is one blob's header record.
type PackEntry struct {
	Type      BlobType
	Comp      uint8
	Offset    uint32
	Length    uint32 // stored length
	RawLength uint32
	ID        ID
}

// packName names a pack from its encoded header (with trailer).
func packName(hdrWithTrailer []byte) ID { return ID(blake3.Sum256(hdrWithTrailer)) }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodePackHeader(entries []PackEntry, k *keys) []byte {
	body := make([]byte, 5, 5+len(entries)*packEntrySize+4)
	body[0] = packVersion
	binary.LittleEndian.PutUint32(body[1:], uint32(len(entries)))
	for _, e := range entries {
		var b [packEntrySize]byte
		b[0] = byte(e.Type)
		b[1] = e.Comp
		binary.LittleEndian.PutUint32(b[4:], e.Offset)
		binary.LittleEndian.PutUint32(b[8:], e.Length)
		binary.LittleEndian.PutUint32(b[12:], e.RawLength)
		copy(b[16:], e.ID[:])
		body = append(body, b[:]...)
	}
	var hdr []byte
	if k.aead != nil {
		hdr = seal(k.aead, nil, body, []byte(packMagic))
	} else {
		hdr = binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crcTable))
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(hdr)))
	return append(hdr, packMagic...)
}

// packHeaderLength parses the trailer (the last packTrailerLen bytes).
func packHeaderLength(trailer []byte) (int, error) {
	if len(trailer) != packTrailerLen || string(trailer[4:]) != packMagic {
		return 0, fmt.Errorf("%w: pack trailer has no magic", ErrCorrupt)
	}
	return int(binary.LittleEndian.Uint32(trailer)), nil
}

// decodePackHeader parses header bytes (without the trailer). packSize is
// used to check that every entry lies inside the pack.
func decodePackHeader(hdr []byte, k *keys, packSize int64) ([]PackEntry, error) {
	var body []byte
	if k.aead != nil {
		b, err := open(k.aead, nil, hdr, []byte(packMagic))
		if err != nil {
			return nil, fmt.Errorf("%w: pack header fails authentication", ErrCorrupt)
		}
		body = b
	} else {
		if len(hdr) < 4 {
			return nil, fmt.Errorf("%w: pack header too short", ErrCorrupt)
		}
		body = hdr[:len(hdr)-4]
		if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(hdr[len(hdr)-4:]) {
			return nil, fmt.Errorf("%w: pack header checksum mismatch", ErrCorrupt)
		}
	}
	if len(body) < 5 || body[0] != packVersion {
		return nil, fmt.Errorf("%w: pack header version", ErrCorrupt)
	}
	n := int(binary.LittleEndian.Uint32(body[1:]))
	if len(body) != 5+n*packEntrySize {
		return nil, fmt.Errorf("%w: pack header length", ErrCorrupt)
	}
	out := make([]PackEntry, n)
	limit := packSize - int64(len(hdr)) - int64(packTrailerLen)
	for i := range out {
		b := body[5+i*packEntrySize:]
		e := &out[i]
		e.Type = BlobType(b[0])
		e.Comp = b[1]
		e.Offset = binary.LittleEndian.Uint32(b[4:])
		e.Length = binary.LittleEndian.Uint32(b[8:])
		e.RawLength = binary.LittleEndian.Uint32(b[12:])
		copy(e.ID[:], b[16:48])
		if int64(e.Offset)+int64(e.Length) > limit {
			return nil, fmt.Errorf("%w: pack entry %d outside pack", ErrCorrupt, i)
		}
	}
	return out, nil
}
