package chunkstore

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/recall-backup/recall/internal/fuzzcheck"
)

func TestCheckZstdSizes(t *testing.T) {
	enc := newZstdEncoder()
	frame := func(data []byte) []byte { return enc.EncodeAll(data, nil) }
	small := frame([]byte("recall recall recall"))
	// A frame of one raw 3-byte block that declares 200 MB: magic, a
	// single-segment descriptor with a 4-byte content size, the size,
	// then the block (last, raw, 3 bytes).
	bomb := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0xc2, 0xeb, 0x0b, 0x19, 0x00, 0x00, 'a', 'b', 'c'}
	for _, tc := range []struct {
		name string
		data []byte
		bad  bool
	}{
		{"empty", frame(nil), false},
		{"short", small, false},
		{"8 MiB of zeroes", frame(make([]byte, 8<<20)), false},
		{"4 MiB random", frame(randBytes(1, 4<<20)), false},
		{"text", frame(bytes.Repeat([]byte("compressible "), 100_000)), false},
		{"two frames", append(frame(make([]byte, 1<<20)), small...), false},
		{"not zstd", []byte("plain bytes"), false},
		{"declares 200 MB", bomb, true},
		{"second frame declares 200 MB", append(slices.Clone(small), bomb...), true},
	} {
		err := checkZstdSizes(tc.data)
		if tc.bad != (err != nil) || err != nil && !errors.Is(err, errZstdSize) {
			t.Errorf("%s: %v, want rejected %v", tc.name, err, tc.bad)
		}
	}
}

// A 15-byte blob declaring 200 MB is refused before DecodeAll allocates
// what it declares.
func TestDecodeBlobRefusesSizeBomb(t *testing.T) {
	_, s := newStore(t, false)
	bomb := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0xc2, 0xeb, 0x0b, 0x19, 0x00, 0x00, 'a', 'b', 'c'}
	var err error
	fuzzcheck.Bounded(t, "decodeBlob", fuzzcheck.Slack, func() { _, err = s.decodeBlob(ID{}, bomb, compZstd, nil) })
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("decodeBlob: %v, want ErrCorrupt", err)
	}
}
