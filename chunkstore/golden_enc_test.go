package chunkstore

import (
	"bytes"
	"errors"
	"testing"
	"testing/cryptotest"

	"github.com/recall-backup/recall/internal/golden"
)

// The encrypted formats are pinned like the plaintext ones, sealed with
// fixed keys and nonces drawn from a seeded source, so the golden bytes
// are reproducible. Each test also opens the checked-in golden bytes with
// the fixed keys: a reader that changed how it authenticates or decodes
// them fails even where the writer changed the same way.

// goldenKeys are the keys the encrypted golden files are sealed with.
func goldenKeys(t *testing.T) *keys {
	t.Helper()
	enc, id := make([]byte, 32), make([]byte, 32)
	for i := range enc {
		enc[i], id[i] = byte(i), byte(0x80+i)
	}
	a, err := newAEAD(enc)
	if err != nil {
		t.Fatal(err)
	}
	return &keys{aead: a, idKey: id}
}

// otherKeys differ from goldenKeys in the encryption key only.
func otherKeys(t *testing.T) *keys {
	t.Helper()
	k := goldenKeys(t)
	enc := make([]byte, 32)
	enc[0] = 1
	a, err := newAEAD(enc)
	if err != nil {
		t.Fatal(err)
	}
	return &keys{aead: a, idKey: k.idKey}
}

// A blob as the writer seals it into a pack: nonce, ciphertext, tag, with
// the blob's id as additional data.
func TestEncryptedBlobGolden(t *testing.T) {
	_, s := newStore(t, true)
	s.keys = goldenKeys(t)
	data := []byte("an encrypted blob, format v1") // under 64 bytes: never compressed
	// The nonce comes from a seeded source set once the writer holds its
	// lock, whose own random bytes come first.
	id, e, b := savedBlob(t, s, data, func() { cryptotest.SetGlobalRandom(t, 1) })
	if e.Comp != compNone {
		t.Fatalf("pack entry %+v: compressed", e)
	}
	golden.Check(t, "blob-enc-v1.golden", b)

	// decodeBlob decrypts in place: each call gets its own copy.
	gold := golden.Load(t, "blob-enc-v1.golden")
	if bytes.Contains(gold, data) {
		t.Error("the golden blob holds its plaintext")
	}
	if got, err := s.decodeBlob(id, bytes.Clone(gold), compNone, nil); err != nil || !bytes.Equal(got, data) {
		t.Errorf("golden blob opens to %q, %v; want %q", got, err, data)
	}
	if _, err := s.decodeBlob(s.Hash([]byte("another blob")), bytes.Clone(gold), compNone, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("golden blob opened under another id: %v, want ErrCorrupt", err)
	}
}

func TestEncryptedPackHeaderGolden(t *testing.T) {
	k := goldenKeys(t)
	cryptotest.SetGlobalRandom(t, 2)
	entries := []PackEntry{
		{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 128, RawLength: 4096, ID: testID(1)},
		{Type: DataBlob, Comp: compNone, Offset: 128, Length: 35, RawLength: 7, ID: testID(2)},
		{Type: TreeBlob, Comp: compNone, Offset: 163, Length: 78, RawLength: 50, ID: testID(3)},
	}
	golden.Check(t, "pack-header-enc-v1.golden", encodePackHeader(entries, k))

	hdr := golden.Load(t, "pack-header-enc-v1.golden")
	hl, err := packHeaderLength(hdr[len(hdr)-packTrailerLen:])
	if err != nil || hl != len(hdr)-packTrailerLen {
		t.Fatalf("trailer: length %d, %v", hl, err)
	}
	body := hdr[:hl]
	got, err := decodePackHeader(body, k, 241+int64(len(hdr)))
	if err != nil || len(got) != len(entries) {
		t.Fatalf("golden header: %+v, %v", got, err)
	}
	for i := range entries {
		if got[i] != entries[i] {
			t.Errorf("entry %d: got %+v want %+v", i, got[i], entries[i])
		}
	}
	if bytes.Contains(hdr, entries[0].ID[:8]) {
		t.Error("the golden header shows a blob id in the clear")
	}
	if _, err := decodePackHeader(body, otherKeys(t), 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Errorf("golden header under another key: %v, want ErrCorrupt", err)
	}
}

func TestEncryptedIndexFileGolden(t *testing.T) {
	k := goldenKeys(t)
	cryptotest.SetGlobalRandom(t, 3)
	packs := []packRecord{
		{id: testID(7), entries: []PackEntry{{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 38, RawLength: 20, ID: testID(1)}}},
		{id: testID(8), entries: []PackEntry{{Type: TreeBlob, Offset: 0, Length: 33, RawLength: 5, ID: testID(2)},
			{Type: TreeBlob, Offset: 33, Length: 34, RawLength: 6, ID: testID(3)}}},
	}
	golden.Check(t, "index-enc-v1.golden", encodeIndexFile(packs, k))

	b := golden.Load(t, "index-enc-v1.golden")
	got, err := decodeIndexFile(b, k)
	if err != nil || len(got) != len(packs) {
		t.Fatalf("golden index: %+v, %v", got, err)
	}
	for i := range packs {
		if got[i].id != packs[i].id || len(got[i].entries) != len(packs[i].entries) {
			t.Fatalf("pack %d: got %+v want %+v", i, got[i], packs[i])
		}
		for j := range packs[i].entries {
			if got[i].entries[j] != packs[i].entries[j] {
				t.Errorf("pack %d entry %d: got %+v want %+v", i, j, got[i].entries[j], packs[i].entries[j])
			}
		}
	}
	if _, err := decodeIndexFile(b, otherKeys(t)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("golden index under another key: %v, want ErrCorrupt", err)
	}
}
