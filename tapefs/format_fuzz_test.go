package tapefs

// Fuzz targets for every decoder of bytes read from a cartridge or a key
// file. Each asserts that no input panics and that a decode allocates no
// more than its input justifies (fuzzcheck.Bounded) beyond the fixed
// buffers of a reader (a block and its decompressed data), so a length
// read from the input never sizes anything before it is checked. Blocks
// are framed by a CRC that a mutation almost never keeps valid, so the
// block target also frames its input itself, to reach the decryption,
// decompression and entry parsing behind the frame.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
)

// readerFixed is what a reader may allocate whatever its input: its block
// buffer, a decompression buffer, the zstd decoder's state.
const readerFixed = 8 * BlockSize

// encodeTape lays a tape out as fuzz input: per object a uvarint, 0 for a
// filemark, else the block's length plus one and its bytes.
func encodeTape(objs [][]byte) []byte {
	var b []byte
	for _, o := range objs {
		if o == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(o))+1)
		b = append(b, o...)
	}
	return b
}

func decodeTape(b []byte) *memDrive {
	d := newMemDrive()
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k)+1 {
			break
		}
		b = b[k:]
		if n == 0 {
			d.objs = append(d.objs, nil)
			continue
		}
		d.objs = append(d.objs, b[:n-1:n-1])
		b = b[n-1:]
	}
	return d
}

// frameBlock wraps payload in a block header with a valid CRC.
func frameBlock(flags uint8, dataLen uint32, payload []byte) []byte {
	hl := blockHeaderLen
	if flags&flagEncrypted != 0 {
		hl = blockEncHdrLen
	}
	b := make([]byte, hl, hl+len(payload))
	copy(b, blockMagic)
	b[4], b[5], b[6], b[7] = FormatVersion, flags, byte(KindPacks), byte(hl)
	binary.BigEndian.PutUint32(b[16:], uint32(len(payload)))
	if flags&flagCompressed == 0 {
		dataLen = uint32(len(payload))
		if flags&flagEncrypted != 0 && len(payload) >= blockTagLen {
			dataLen -= blockTagLen
		}
	}
	binary.BigEndian.PutUint32(b[20:], dataLen)
	b = append(b, payload...)
	crc := crc32.Update(crc32.Checksum(b[:blockCRCOffset], castagnoli), castagnoli, b[blockHeaderLen:])
	binary.BigEndian.PutUint32(b[blockCRCOffset:], crc)
	return b
}

func FuzzReadBlock(f *testing.F) {
	for _, g := range []string{"format/block-plain-v1.golden", "format/block-compressed-v1.golden", "format/block-encrypted-v1.golden"} {
		b := golden.Load(f, g)
		f.Add(b, uint8(0), uint32(0))
		f.Add(b[b[7]:], b[5]|0x80, binary.BigEndian.Uint32(b[20:]))
	}
	// A compressed block that claims far more than a block.
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x00, 0x00}, uint8(0x82), uint32(1<<31))
	f.Fuzz(func(t *testing.T, b []byte, flags uint8, dataLen uint32) {
		if flags&0x80 != 0 {
			b = frameBlock(flags&0x7f, dataLen, b)
		}
		for _, key := range [][]byte{nil, testKey} {
			c, _ := newBlockCodec(key, false)
			in := bytes.Clone(b)
			fuzzcheck.Bounded(t, "open block", fuzzcheck.Linear(len(b), 4)+readerFixed, func() {
				h, data, err := c.open(in)
				if err == nil && len(data) != h.dataLen {
					t.Fatalf("block says %d bytes of data, opened to %d", h.dataLen, len(data))
				}
			})
		}
	})
}

// fuzzTapes are the seeds of the tape-level targets: real cartridges.
func fuzzTapes(f *testing.F) {
	// Small packs: the fuzzer mutates inputs of kilobytes far faster than
	// of megabytes.
	old := testPackSizes
	testPackSizes = []int{300, 70, 10}
	defer func() { testPackSizes = old }()
	d := newMemDrive()
	writeTestSet(f, d, testSet, testKey, 1)
	f.Add(encodeTape(d.objs))
	plain := testSet
	plain.KeyFingerprint = ""
	d = newMemDrive()
	writeTestSet(f, d, plain, nil, 1, 1)
	f.Add(encodeTape(d.objs))
	d.objs = d.objs[:len(d.objs)-3]
	f.Add(encodeTape(d.objs))
	f.Add(encodeTape([][]byte{golden.Load(f, "format/volume-label-v1.golden"), nil, golden.Load(f, "format/set-label-v1.golden"), nil}))
}

func FuzzReadLabels(f *testing.F) {
	fuzzTapes(f)
	f.Fuzz(func(t *testing.T, tape []byte) {
		d := decodeTape(tape)
		fuzzcheck.Bounded(t, "ReadLabels", fuzzcheck.Linear(len(tape), 8)+readerFixed, func() {
			v, s, err := ReadLabels(context.Background(), d)
			if err == nil && (v == nil || s == nil || v.VolumeID == "" || s.Sequence < 1) {
				t.Fatalf("labels %+v %+v with no error", v, s)
			}
		})
	})
}

func FuzzScanTape(f *testing.F) {
	fuzzTapes(f)
	f.Fuzz(func(t *testing.T, tape []byte) {
		// A scan reports every damaged file, and a file can be two
		// bytes of input: a report (an error naming the file, a cipher)
		// per two bytes is linear, if steep.
		perByte := uint64(1024)
		for _, key := range [][]byte{nil, testKey} {
			d := decodeTape(tape)
			fuzzcheck.Bounded(t, "ScanTape", fuzzcheck.Linear(len(tape), perByte)+readerFixed, func() {
				res, err := ScanTape(context.Background(), d, key)
				if err == nil && (res.Catalog == nil || res.Set == nil) {
					t.Fatalf("scan result %+v with no error", res)
				}
			})
			// Every file read entry by entry, as a restore does.
			d.Rewind(context.Background())
			fuzzcheck.Bounded(t, "FileReader", fuzzcheck.Linear(len(tape), perByte)+readerFixed, func() {
				ctx := context.Background()
				for range len(d.objs) + 1 {
					r, err := NewFileReader(ctx, d, FileOptions{Key: key})
					if errors.Is(err, ErrEOD) {
						return
					}
					if err != nil {
						continue
					}
					for {
						if _, _, err := r.Next(ctx); err != nil {
							break
						}
						io.Copy(io.Discard, r)
					}
				}
			})
		}
	})
}

func FuzzDecodeCatalog(f *testing.F) {
	good, _ := EncodeCatalog(goldenCatalog())
	f.Add(good)
	f.Add([]byte(`{"format":"recall media catalog","version":1,"pool":"p","set_id":"s","points":[{"files":[5]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c *MediaCatalog
		var err error
		fuzzcheck.Bounded(t, "DecodeCatalog", fuzzcheck.Linear(len(b), 32), func() { c, err = DecodeCatalog(b) })
		if err != nil {
			return
		}
		again, err := EncodeCatalog(c)
		if err != nil {
			t.Fatalf("a decoded catalog does not encode: %v", err)
		}
		c2, err := DecodeCatalog(again)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("catalog does not survive a round trip: %v\n%+v\n%+v", err, c, c2)
		}
	})
}

func FuzzImportKey(f *testing.F) {
	f.Add(golden.Load(f, "format/key-file-v1.golden"), "correct horse battery staple")
	old := keyFileParams
	keyFileParams.Time, keyFileParams.Memory, keyFileParams.Threads = 1, 64, 1
	cheap, _ := ExportKey("p", testKey, "pw")
	keyFileParams = old
	f.Add(cheap, "pw")
	f.Add(cheap, "not pw")
	f.Fuzz(func(t *testing.T, b []byte, pass string) {
		var kf *keyFileJSON
		fuzzcheck.Bounded(t, "parseKeyFile", fuzzcheck.Linear(len(b), 16), func() { kf, _ = parseKeyFile(b) })
		// The derivation costs what the file asks, within bounds; run it
		// only where that is cheap, to keep the fuzzer fast.
		if kf == nil || kf.KDF.Memory > 1024 || kf.KDF.Time > 2 {
			return
		}
		_, key, err := ImportKey(b, pass)
		if err == nil && len(key) != PoolKeySize {
			t.Fatalf("imported a key of %d bytes", len(key))
		}
	})
}
