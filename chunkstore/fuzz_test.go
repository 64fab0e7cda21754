package chunkstore

// Fuzz targets for every decoder of bytes the store reads from disk. Each
// asserts that no input panics, and that a decode allocates no more than
// its input justifies (fuzzcheck.Bounded), so a count read from the input
// is checked against the bytes that remain before it sizes anything.
// Where the bytes are framed by a checksum or a seal, which a mutation
// almost never keeps valid, the target also frames the input itself, so
// mutations reach the parser behind the frame. make test runs each target
// for a few seconds, make fuzz for longer; crashers found are kept under
// testdata/fuzz/<target>/ and run with the unit tests.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/zeebo/blake3"
)

// fuzzKeys returns fixed keys of an encrypted store.
func fuzzKeys(t testing.TB) *keys {
	a, err := newAEAD(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &keys{aead: a, idKey: bytes.Repeat([]byte{0xa5}, 32)}
}

func sampleEntries() []PackEntry {
	return []PackEntry{
		{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 100, RawLength: 4096, ID: testID(1)},
		{Type: TreeBlob, Comp: compNone, Offset: 100, Length: 7, RawLength: 7, ID: testID(2)},
	}
}

func FuzzPackHeader(f *testing.F) {
	plain, enc := &keys{}, fuzzKeys(f)
	f.Add(golden.Load(f, "pack-header-v1.golden"), uint32(157))
	f.Add(encodePackHeader(nil, plain), uint32(0))
	f.Add(encodePackHeader(sampleEntries(), enc), uint32(107))
	// A body that claims 2^32-1 entries in 5 bytes.
	f.Add([]byte{packVersion, 0xff, 0xff, 0xff, 0xff}, uint32(1<<20))
	f.Fuzz(func(t *testing.T, b []byte, blobBytes uint32) {
		// As stored: the trailer, then the header it points at, in a
		// pack with blobBytes of blobs before the header.
		if len(b) >= packTrailerLen {
			if hl, err := packHeaderLength(b[len(b)-packTrailerLen:]); err == nil && hl <= len(b)-packTrailerLen {
				hdr := b[len(b)-packTrailerLen-hl : len(b)-packTrailerLen]
				for _, k := range []*keys{plain, enc} {
					fuzzcheck.Bounded(t, "decodePackHeader", fuzzcheck.Linear(len(b), 4), func() {
						decodePackHeader(hdr, k, int64(blobBytes)+int64(len(b)))
					})
				}
			}
		}
		// As a header body, given a valid checksum and a valid seal:
		// both stores must read the same entries.
		var got [2][]PackEntry
		var errs [2]error
		for i, hdr := range [][]byte{
			binary.LittleEndian.AppendUint32(slices.Clone(b), crc32.Checksum(b, crcTable)),
			seal(enc.aead, nil, b, []byte(packMagic)),
		} {
			k := []*keys{plain, enc}[i]
			size := int64(blobBytes) + int64(len(hdr)+packTrailerLen)
			fuzzcheck.Bounded(t, "decodePackHeader", fuzzcheck.Linear(len(b), 4), func() {
				got[i], errs[i] = decodePackHeader(hdr, k, size)
			})
			if errs[i] != nil && !errors.Is(errs[i], ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", errs[i])
			}
		}
		if (errs[0] == nil) != (errs[1] == nil) || !reflect.DeepEqual(got[0], got[1]) {
			t.Fatalf("plaintext and encrypted stores disagree on one body:\n%v %+v\n%v %+v", errs[0], got[0], errs[1], got[1])
		}
		if errs[0] != nil {
			return
		}
		for _, e := range got[0] {
			if int64(e.Offset)+int64(e.Length) > int64(blobBytes) {
				t.Fatalf("entry %+v lies outside the %d bytes of blobs", e, blobBytes)
			}
		}
		// Round trip: what decodes encodes back to the same entries.
		re := encodePackHeader(got[0], plain)
		again, err := decodePackHeader(re[:len(re)-packTrailerLen], plain, int64(blobBytes)+int64(len(re)))
		if err != nil || !reflect.DeepEqual(again, got[0]) {
			t.Fatalf("re-encoded header: %v, %+v, want %+v", err, again, got[0])
		}
	})
}

func FuzzIndexFile(f *testing.F) {
	plain, enc := &keys{}, fuzzKeys(f)
	gold := golden.Load(f, "index-v1.golden")
	f.Add(gold)
	f.Add(gold[len(indexMagic) : len(gold)-4]) // its body
	f.Add(encodeIndexFile(nil, plain))
	f.Add(encodeIndexFile([]packRecord{{id: testID(3), entries: sampleEntries()}, {id: testID(4)}}, enc))
	// Bodies that claim 2^32-1 packs, and 2^32-1 entries, in a few bytes.
	f.Add([]byte{indexVersion, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{indexVersion, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []*keys{plain, enc} {
			fuzzcheck.Bounded(t, "decodeIndexFile", fuzzcheck.Linear(len(b), 8), func() { decodeIndexFile(b, k) })
		}
		// As a body, with a valid checksum and a valid seal.
		var got [2][]packRecord
		var errs [2]error
		for i, file := range [][]byte{
			binary.LittleEndian.AppendUint32(append([]byte(indexMagic), b...), crc32.Checksum(b, crcTable)),
			seal(enc.aead, []byte(indexMagic), b, []byte(indexMagic)),
		} {
			k := []*keys{plain, enc}[i]
			fuzzcheck.Bounded(t, "decodeIndexFile", fuzzcheck.Linear(len(b), 8), func() {
				got[i], errs[i] = decodeIndexFile(file, k)
			})
			if errs[i] != nil && !errors.Is(errs[i], ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", errs[i])
			}
		}
		if (errs[0] == nil) != (errs[1] == nil) || !reflect.DeepEqual(got[0], got[1]) {
			t.Fatalf("plaintext and encrypted stores disagree on one body:\n%v %+v\n%v %+v", errs[0], got[0], errs[1], got[1])
		}
		if errs[0] != nil {
			return
		}
		again, err := decodeIndexFile(encodeIndexFile(got[0], plain), plain)
		if err != nil || !reflect.DeepEqual(again, got[0]) {
			t.Fatalf("re-encoded index: %v, %+v, want %+v", err, again, got[0])
		}
	})
}

// framePackHeader frames a header body as a store writes it: checksum or
// seal, then the trailer.
func framePackHeader(body []byte, k *keys) []byte {
	var hdr []byte
	if k.aead != nil {
		hdr = seal(k.aead, nil, body, []byte(packMagic))
	} else {
		hdr = binary.LittleEndian.AppendUint32(slices.Clone(body), crc32.Checksum(body, crcTable))
	}
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(hdr)))
	return append(hdr, packMagic...)
}

// FuzzPack reads a whole pack file as a store does: its header
// (ReadPackHeader, as Refresh does for a pack no index covers) and every
// blob in it (CheckPack, as verify --read-data does). The file is blobs
// followed by body, once as is and once with body framed as a header of
// the store, so mutations of the entries reach the blobs they locate.
func FuzzPack(f *testing.F) {
	_, ps := newStore(f, false)
	_, es := newStore(f, true)
	packID := testID(9)
	for _, s := range []*Store{ps, es} {
		data := []byte("some blob content, some blob content")
		id := s.Hash(data)
		stored, z, sz := data, s.zenc.EncodeAll(data, nil), s2.Encode(nil, data)
		if s.keys.aead != nil {
			stored, z, sz = seal(s.keys.aead, nil, stored, id[:]), seal(s.keys.aead, nil, z, id[:]), seal(s.keys.aead, nil, sz, id[:])
		}
		blobs := append(append(slices.Clone(stored), z...), sz...)
		hdr := encodePackHeader([]PackEntry{
			{Type: DataBlob, Comp: compNone, Length: uint32(len(stored)), RawLength: uint32(len(data)), ID: id},
			{Type: DataBlob, Comp: compZstd, Offset: uint32(len(stored)), Length: uint32(len(z)), RawLength: uint32(len(data)), ID: id},
			{Type: DataBlob, Comp: compS2, Offset: uint32(len(stored) + len(z)), Length: uint32(len(sz)), RawLength: uint32(len(data)), ID: id},
		}, &keys{})
		f.Add(blobs, hdr[:len(hdr)-packTrailerLen-4])                // the header's body
		f.Add(blobs, encodePackHeader(nil, s.keys))                  // a whole header, for the as-is file
		f.Add([]byte{}, []byte{packVersion, 0xff, 0xff, 0xff, 0xff}) // 2^32-1 entries
	}
	f.Fuzz(func(t *testing.T, blobs, body []byte) {
		for _, s := range []*Store{ps, es} {
			for _, pack := range [][]byte{
				append(slices.Clone(blobs), body...),
				append(slices.Clone(blobs), framePackHeader(body, s.keys)...),
			} {
				// Named as recall names a pack (the hash of its header
				// and trailer), so that the header is decoded: a name
				// that does not match it makes it unreadable at once.
				packID := packID
				if hb, err := packHeaderBytes(pack); err == nil {
					packID = packName(hb)
				}
				if err := os.WriteFile(s.packPath(packID), pack, 0o600); err != nil {
					t.Fatal(err)
				}
				// Not removed after: the backend keeps descriptors of
				// the packs it read, and a file made again under the name
				// would be a new inode behind an old descriptor. Written
				// over, it is the same file.
				var hdr, checked []PackEntry
				var bad []DamagedBlob
				var herr, cerr error
				fuzzcheck.Bounded(t, "ReadPackHeader", fuzzcheck.Linear(len(pack), 4), func() { hdr, herr = s.ReadPackHeader(packID) })
				limit := zstdBound(len(pack)) + fuzzcheck.Linear(len(pack), 8)
				if slices.ContainsFunc(hdr, func(e PackEntry) bool { return e.Comp == compS2 }) {
					// CheckPack reads the header ReadPackHeader read.
					limit += s2Bound(len(pack))
				}
				fuzzcheck.Bounded(t, "CheckPack", limit, func() {
					var pc *PackCheck
					if pc, cerr = s.checkPack(packID); pc != nil {
						checked, bad = pc.Entries, pc.Bad
						if cerr == nil {
							cerr = pc.Header
						}
					}
				})
				if herr == nil && checked == nil {
					t.Fatalf("ReadPackHeader reads the header, CheckPack does not: %v", cerr)
				}
				if checked != nil && !reflect.DeepEqual(hdr, checked) {
					t.Fatalf("ReadPackHeader and CheckPack read different headers:\n%+v (%v)\n%+v", hdr, herr, checked)
				}
				if len(bad) > len(checked) {
					t.Fatalf("%d bad blobs in a pack of %d", len(bad), len(checked))
				}
			}
		}
	})
}

func (id ID) slice() []byte { return id[:] }

// FuzzDecodeBlob decodes stored blob bytes as each kind of store does,
// for every compression code (0 none, 1 zstd, 2 s2, others unknown). In
// an encrypted store the fuzzed bytes are also sealed here, so mutations
// reach decompression behind a valid seal.
func FuzzDecodeBlob(f *testing.F) {
	_, ps := newStore(f, false)
	_, es := newStore(f, true)
	data := bytes.Repeat([]byte("recall "), 100)
	f.Add(data, uint8(compNone))
	f.Add(ps.zenc.EncodeAll(data, nil), uint8(compZstd))
	f.Add(ps.zenc.EncodeAll(nil, nil), uint8(compZstd))
	f.Add(s2.Encode(nil, data), uint8(compS2))
	f.Add(s2.Encode(nil, logText(1, 64<<10)), uint8(compS2))
	f.Add(s2.Encode(nil, nil), uint8(compS2))
	f.Add(golden.Load(f, "blob-s2.golden"), uint8(compS2))
	f.Add(s2BombSeed(), uint8(compS2))
	f.Add(seal(es.keys.aead, nil, data, es.Hash(data).slice()), uint8(compNone))
	f.Add([]byte{}, uint8(compNone))
	f.Add(data, uint8(7))
	f.Fuzz(func(t *testing.T, b []byte, comp uint8) {
		limit := fuzzcheck.Linear(len(b), 4)
		switch comp {
		case compZstd:
			limit += zstdBound(len(b))
		case compS2:
			limit += s2Bound(len(b))
		}
		plain := comp == compNone
		id := ID(blake3.Sum256(b))
		for _, s := range []*Store{ps, es} {
			var out []byte
			var err error
			fuzzcheck.Bounded(t, "decodeBlob", limit, func() { out, err = s.decodeBlob(id, b, comp, nil) })
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			if err == nil && s == ps && !plain && comp > compS2 {
				t.Fatalf("compression code %d decodes", comp)
			}
			if err == nil && s == ps && plain && !bytes.Equal(out, b) {
				t.Fatalf("plaintext blob decodes to other bytes")
			}
		}
		sealed := seal(es.keys.aead, nil, b, id[:])
		var out []byte
		var err error
		fuzzcheck.Bounded(t, "decodeBlob", limit+uint64(len(sealed)), func() { out, err = es.decodeBlob(id, sealed, comp, nil) })
		switch {
		case err != nil && plain:
			t.Fatalf("a blob sealed with the store's key fails: %v", err)
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("error %v is not ErrCorrupt", err)
		case err == nil && plain && !bytes.Equal(out, b):
			t.Fatalf("sealed blob decodes to other bytes")
		case err == nil && comp > compS2:
			t.Fatalf("compression code %d decodes", comp)
		}
		if err == nil && comp == compS2 {
			// Behind a valid seal the blob is decoded whatever its
			// content: it must be what s2 itself decodes.
			want, derr := s2.Decode(nil, b)
			if derr != nil || !bytes.Equal(out, want) {
				t.Fatalf("s2 blob decodes to other bytes than s2.Decode (%v)", derr)
			}
		}
		// Sealed for another blob id: the seal binds the id.
		other := id
		other[0] ^= 1
		if _, err := es.decodeBlob(other, sealed, comp, nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a blob sealed for another id decodes: %v", err)
		}
	})
}

// zstdBound is the most a zstd input of n bytes can decode to: every
// block takes at least 3 bytes and yields at most 128 KiB.
func zstdBound(n int) uint64 { return (uint64(n)/3 + 1) * (128 << 10) }

// s2Bound is the most an s2 block of n bytes can decode to once
// checkS2Size has passed it: its elements' output, at most a repeat of
// 2^24+2^16+3 bytes per 5 input bytes, and never more than a blob holds.
func s2Bound(n int) uint64 { return min((uint64(n)/5+1)*(1<<24+1<<16+4), maxBlobLen) }

// s2BombSeed is an s2 block of 11 bytes that declares 200 MiB: its
// elements produce 5 bytes, so it must be refused without allocating.
func s2BombSeed() []byte {
	b := binary.AppendUvarint(nil, 200<<20)
	return append(b, s2.Encode(nil, []byte("bomb!"))[1:]...)
}

// FuzzS2Size holds checkS2Size to s2's own decoder: a block it passes
// decodes, to the length it declares, and a block that decodes passes.
func FuzzS2Size(f *testing.F) {
	f.Add(s2.Encode(nil, bytes.Repeat([]byte("recall "), 100)))
	f.Add(s2.Encode(nil, logText(2, 300<<10)))
	f.Add(s2.Encode(nil, randBytes(2, 4<<10)))
	f.Add(s2BombSeed())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkS2Size(b)
		n, lerr := s2.DecodedLen(b)
		if lerr != nil || n > len(b)*64+1<<20 {
			// Too large to decode here without the check's word.
			if err == nil && lerr == nil {
				out, derr := s2.Decode(nil, b)
				if derr != nil || len(out) != n {
					t.Fatalf("checkS2Size passes a block s2 does not decode: %v", derr)
				}
			}
			return
		}
		out, derr := s2.Decode(nil, b)
		if (err == nil) != (derr == nil) {
			t.Fatalf("checkS2Size says %v, s2.Decode says %v", err, derr)
		}
		if derr == nil && len(out) != n {
			t.Fatalf("decoded %d bytes, %d declared", len(out), n)
		}
	})
}

// fuzzKDFMemoryKB is the argon2 memory of the stores the config targets
// start from: small, so an unlock costs well under a millisecond.
const fuzzKDFMemoryKB = 64

// FuzzConfig opens a store whose config file is the fuzzed bytes: parse,
// version check, key derivation and unlock, chunker parameters.
func FuzzConfig(f *testing.F) {
	dir := f.TempDir()
	for _, enc := range []bool{false, true} {
		d := filepath.Join(dir, map[bool]string{false: "plain", true: "encrypted"}[enc])
		if _, err := Init(d, InitOptions{Encrypt: enc, Password: "pw", KDFMemoryKB: fuzzKDFMemoryKB}); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(d, "config"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"id":"x","min_chunk":512,"max_chunk":1024,"chunker_polynomial":1}`))
	f.Add([]byte(`{"version":1,"id":"x","encryption":{"cipher":"aes-256-gcm","kdf":"argon2id","time":4294967295,"memory_kib":4294967295,"threads":0}}`))
	// Open reads only config, index/ and packs/: a store without the 256
	// pack directories keeps each open cheap.
	store := filepath.Join(dir, "store")
	for _, d := range []string{"index", "packs"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o700); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var peek Config
		if json.Unmarshal(b, &peek) == nil && peek.Encryption != nil && checkKDF(peek.Encryption) == nil &&
			uint64(peek.Encryption.MemoryKB)*uint64(peek.Encryption.Time) > 16*fuzzKDFMemoryKB {
			// Valid and within the limits, but too slow to fuzz with.
			return
		}
		if err := os.WriteFile(filepath.Join(store, "config"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{"pw", ""} {
			s, err := Open(store, OpenOptions{Password: pw})
			if err != nil {
				continue
			}
			// What Open accepts must work: the chunker and the id hash.
			c := s.NewChunker(bytes.NewReader(make([]byte, 4096)))
			if _, err := c.Next(); err != nil {
				t.Fatalf("chunker of an opened store: %v", err)
			}
			s.Hash([]byte("x"))
			s.Close()
		}
	})
}

// FuzzMasterKey unlocks a config whose sealed key holds the fuzzed bytes:
// the key JSON is authenticated, so only a seal made here reaches it.
func FuzzMasterKey(f *testing.F) {
	cfg := &Config{Version: ConfigVersion, ID: "fuzz", Encryption: &EncryptCfg{Cipher: "aes-256-gcm", KDF: "argon2id",
		Time: 1, MemoryKB: fuzzKDFMemoryKB, Threads: 1, Salt: []byte("salt")}}
	kk, err := kek(cfg.Encryption, "pw")
	if err != nil {
		f.Fatal(err)
	}
	a, err := newAEAD(kk)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(masterKey{EncKey: make([]byte, 32), IDKey: make([]byte, 32), Polynomial: 0x3DA3358B4DC173})
	f.Add(good)
	f.Add([]byte(`{"enc_key":"AAAAAAAAAAAAAAAAAAAAAA==","id_key":"","chunker_polynomial":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := *cfg
		e := *cfg.Encryption
		e.Sealed = seal(a, nil, b, []byte(cfg.ID))
		c.Encryption = &e
		k, pol, err := c.unlock("pw")
		if err != nil {
			return
		}
		// Unlocked keys must work: hashing and sealing.
		k.hash([]byte("x"))
		if _, err := open(k.aead, nil, seal(k.aead, nil, []byte("x"), nil), nil); err != nil {
			t.Fatalf("unlocked key cannot open its own seal: %v", err)
		}
		newCDCTables(pol) // may refuse the polynomial, must not panic
	})
}

// FuzzLockInfo parses a lock file, which names the lock's holder in the
// error a second writer prints.
func FuzzLockInfo(f *testing.F) {
	b, _ := json.Marshal(LockInfo{PID: 42, Host: "backup1", Purpose: "backup srv-www"})
	f.Add(b)
	f.Add([]byte(`{"pid":-1,"host":"\u0000","since":"9999-12-31T23:59:59Z"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var info LockInfo
		var err error
		fuzzcheck.Bounded(t, "parseLockInfo", fuzzcheck.Linear(len(b), 16), func() { info, err = parseLockInfo(b) })
		_ = info.String()
		if err != nil {
			return
		}
		re, err := json.Marshal(info)
		if err != nil {
			return // a time encoding/json reads but does not write (a zone offset past 24h)
		}
		again, err := parseLockInfo(re)
		if err != nil || again.PID != info.PID || again.Host != info.Host || again.Purpose != info.Purpose || !again.Since.Equal(info.Since) {
			t.Fatalf("lock info round trip: %v, %+v, want %+v", err, again, info)
		}
	})
}
