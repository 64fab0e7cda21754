package chunkstore

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// An encrypted blob is authenticated together with its id, so a blob
// moved to another's place in a pack (here: two of one length swapped,
// nothing else touched) fails as corrupt instead of loading as the other's
// plaintext. The length and nonce of each stay valid; only the id binds a
// sealed blob to its place.
func TestSwappedEncryptedBlobsAreCorrupt(t *testing.T) {
	_, s := newStore(t, true)
	lock, w := openWriter(t, s)
	defer lock.Unlock()
	// Random bytes are stored uncompressed: equal plaintext lengths give
	// equal sealed lengths.
	data := [][]byte{randBytes(1, 5000), randBytes(2, 5000)}
	ids := []ID{s.Hash(data[0]), s.Hash(data[1])}
	for i := range data {
		if _, err := w.SaveBlob(DataBlob, ids[i], data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	pack, _ := s.PackOf(ids[0])
	if p, _ := s.PackOf(ids[1]); p != pack {
		t.Fatal("the two blobs went to two packs")
	}
	entries, err := s.ReadPackHeader(pack)
	if err != nil {
		t.Fatal(err)
	}
	var at [2]PackEntry
	for _, e := range entries {
		for i := range ids {
			if e.ID == ids[i] {
				at[i] = e
			}
		}
	}
	if at[0].Length == 0 || at[0].Length != at[1].Length {
		t.Fatalf("stored as %+v and %+v, want two of one length", at[0], at[1])
	}
	for i := range ids {
		if got, err := s.LoadBlob(ids[i], nil); err != nil || !bytes.Equal(got, data[i]) {
			t.Fatalf("blob %d before the swap: %v", i, err)
		}
	}

	p := s.packPath(pack)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	x := b[at[0].Offset : at[0].Offset+at[0].Length]
	y := b[at[1].Offset : at[1].Offset+at[1].Length]
	tmp := append([]byte(nil), x...)
	copy(x, y)
	copy(y, tmp)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for i := range ids {
		got, err := s.LoadBlob(ids[i], nil)
		if bytes.Equal(got, data[1-i]) {
			t.Errorf("blob %d loads as blob %d's plaintext (err %v)", i, 1-i, err)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("blob %d after the swap: %v, want ErrCorrupt", i, err)
		}
	}
}
