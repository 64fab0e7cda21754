package chunkstore

import (
	"encoding/hex"
	"fmt"
)

// ID identifies a blob: the BLAKE3-256 hash of its plaintext, keyed with
// the store's id key when the store is encrypted.
type ID [32]byte

// String returns the lowercase hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is all zero (never a real blob id in practice).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses a 64-digit hex id.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// BlobType separates data chunks from tree blobs; they live in separate packs.
type BlobType uint8

// Blob types. The values are part of the pack format.
const (
	DataBlob BlobType = 1
	TreeBlob BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}
