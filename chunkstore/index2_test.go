package chunkstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/recall-backup/recall/internal/fuzzcheck"
	"github.com/recall-backup/recall/internal/golden"
	"github.com/zeebo/blake3"
)

// consolidateBytes writes x's consolidated file to memory, opens it and
// returns it with its bytes and name.
func consolidateBytes(t testing.TB, x *index, k *keys, super ...ID) (*index2, []byte, ID) {
	t.Helper()
	var buf bytes.Buffer
	var salt [16]byte
	copy(salt[:], "salt of the test")
	name, err := x.consolidate(&buf, k, salt, super)
	if err != nil {
		t.Fatalf("consolidate: %v", err)
	}
	b, err := openIndex2(bytes.NewReader(buf.Bytes()), int64(buf.Len()), k, "test")
	if err != nil {
		t.Fatalf("open consolidated file: %v", err)
	}
	return b, buf.Bytes(), name
}

func TestIndex2Golden(t *testing.T) {
	x := newIndex()
	x.addPack(testID(7), []PackEntry{{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 10, RawLength: 20, ID: testID(1)}}, sizeUnknown)
	x.addPack(testID(8), []PackEntry{{Type: TreeBlob, Offset: 0, Length: 5, RawLength: 5, ID: testID(2)},
		{Type: TreeBlob, Offset: 5, Length: 6, RawLength: 6, ID: testID(3)}}, sizeUnknown)
	_, b, name := consolidateBytes(t, x, &keys{}, testID(0x55))
	golden.Check(t, "index-v2.golden", b)
	gold := golden.Load(t, "index-v2.golden")
	if h := ID(blake3.Sum256(gold)); h != name {
		t.Errorf("name %s is not the hash of the file's bytes %s", name.Short(), h.Short())
	}
	packs, super, err := decodeIndex2(gold, &keys{})
	if err != nil {
		t.Fatal(err)
	}
	want := []packRecord{
		{id: testID(7), entries: []PackEntry{{Type: DataBlob, Comp: compZstd, Offset: 0, Length: 10, RawLength: 20, ID: testID(1)}}},
		{id: testID(8), entries: []PackEntry{{Type: TreeBlob, Offset: 0, Length: 5, RawLength: 5, ID: testID(2)},
			{Type: TreeBlob, Offset: 5, Length: 6, RawLength: 6, ID: testID(3)}}},
	}
	if !reflect.DeepEqual(packs, want) || !slices.Equal(super, []ID{testID(0x55)}) {
		t.Errorf("golden decodes to %+v superseding %v", packs, super)
	}
	// The fuzz target's framing builds this very file from its parts
	// (but for the salt, which no plaintext frame covers).
	sumOff := index2HeaderLen + int(blocksLen(3, index2Shift, 4))
	framed := frameIndex2(&keys{}, gold[sumOff:len(gold)-index2TrailerLen-4], gold[index2HeaderLen:sumOff-4])
	copy(framed[16:32], gold[16:32])
	if !bytes.Equal(framed, gold) {
		t.Error("frameIndex2 does not build the golden file from its body and records")
	}
	// What reads index files whole (repair) reads a consolidated one.
	if got, err := decodeIndexFile(gold, &keys{}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("decodeIndexFile of a consolidated file: %v %+v", err, got)
	}
}

// randomPacks makes packs of 20 places, n places in all, some blobs
// stored twice, and returns every id.
func randomPacks(seed int64, n int) ([]packRecord, []ID) {
	r := rand.New(rand.NewSource(seed))
	var packs []packRecord
	var ids []ID
	for places := 0; places < n; {
		var p packRecord
		r.Read(p.id[:])
		for j := 0; j < 20 && places < n; j++ {
			var id ID
			if len(ids) > 0 && r.Intn(50) == 0 {
				id = ids[r.Intn(len(ids))] // stored again
			} else {
				r.Read(id[:])
				ids = append(ids, id)
			}
			p.entries = append(p.entries, PackEntry{Type: BlobType(1 + j%2), Comp: uint8(r.Intn(5)), Offset: uint32(j * 1000), Length: uint32(r.Intn(1000)), RawLength: r.Uint32(), ID: id})
			places++
		}
		packs = append(packs, p)
	}
	return packs, ids
}

// randomIndex is an in-memory index of randomPacks.
func randomIndex(seed int64, n int) (*index, []ID) {
	packs, ids := randomPacks(seed, n)
	x := newIndex()
	for _, p := range packs {
		x.addPack(p.id, p.entries, sizeUnknown)
	}
	return x, ids
}

// places returns every place of id as (pack id, loc), sorted.
func allPlaces(x *index, id ID) []string {
	var out []string
	add := func(l loc) bool {
		out = append(out, x.packs[l.pack].String()+string(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, l.off), l.lenFlg)))
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.recent[id] {
		add(e.loc)
	}
	for _, e := range x.sorted {
		if e.id == id {
			add(e.loc)
		}
	}
	if x.base != nil {
		if err := x.base.places(id, add); err != nil {
			panic(err)
		}
	}
	slices.Sort(out)
	return out
}

// A consolidated index answers every lookup as the in-memory one did:
// the same places of every id, nothing for absent ids, nothing for an id
// that shares all its leading bits with a stored one.
func TestIndex2Lookups(t *testing.T) {
	for _, tc := range []struct {
		name string
		k    *keys
	}{{"plaintext", &keys{}}, {"encrypted", fuzzKeys(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			mem, ids := randomIndex(1, 5000)
			b, _, _ := consolidateBytes(t, mem, tc.k)
			x := newIndex()
			x.adoptBase(b)
			if x.count != mem.count {
				t.Errorf("count %d, want %d", x.count, mem.count)
			}
			for _, id := range ids {
				if got, want := allPlaces(x, id), allPlaces(mem, id); !slices.Equal(got, want) {
					t.Fatalf("blob %s: places %q, want %q", id.Short(), got, want)
				}
				if _, found, usable := x.lookup(id); !found || !usable {
					t.Fatalf("blob %s: lookup %v %v", id.Short(), found, usable)
				}
				// The same leading 128 bits, another id: absent.
				near := id
				near[31] ^= 1
				if _, found, _ := x.lookup(near); found {
					t.Fatalf("id %s sharing 31 bytes with a stored one is found", near)
				}
			}
			r := rand.New(rand.NewSource(2))
			for range 10000 {
				var id ID
				r.Read(id[:])
				if _, found, _ := x.lookup(id); found {
					t.Fatalf("absent id %s found", id)
				}
			}
			gotC, gotE := x.packShapes()
			wantC, wantE := mem.packShapes()
			// Numbers differ between the two indexes; compare by pack id.
			for n, id := range mem.packs {
				m := x.packNum[id]
				if gotC[m] != wantC[n] || gotE[m] != wantE[n] {
					t.Fatalf("pack %s: shape %d/%d, want %d/%d", id.Short(), gotC[m], gotE[m], wantC[n], wantE[n])
				}
			}
		})
	}
}

// Consolidating a live index keeps every pack's number (the store keys
// open pack files by them), moves the recent places into the base, and a
// second consolidation merges the base with what came after.
func TestConsolidateLive(t *testing.T) {
	x, ids := randomIndex(3, 3000)
	before := map[ID][]string{}
	for _, id := range ids {
		before[id] = allPlaces(x, id)
	}
	packs := slices.Clone(x.packs)
	b, _, first := consolidateBytes(t, x, &keys{})
	x.adoptBase(b)
	if !slices.Equal(x.packs, packs) || len(x.sorted)+x.nrecent != 0 || x.count != b.count {
		t.Fatalf("after adoption: %d packs (had %d), %d recent places, count %d of %d", len(x.packs), len(packs), len(x.sorted)+x.nrecent, x.count, b.count)
	}
	more, moreIDs := randomPacks(4, 2000)
	for _, p := range more {
		x.addPack(p.id, p.entries, sizeUnknown)
	}
	b2, _, _ := consolidateBytes(t, x, &keys{}, first)
	x.adoptBase(b2)
	if !slices.Equal(x.packs[:len(packs)], packs) {
		t.Fatal("second adoption renumbered packs")
	}
	if got := x.superseded(); !got[first] || len(got) != 1 {
		t.Errorf("superseded %v, want the first file", got)
	}
	for _, id := range ids {
		if got := allPlaces(x, id); !slices.Equal(got, before[id]) {
			t.Fatalf("blob %s: %q, want %q", id.Short(), got, before[id])
		}
	}
	for _, id := range moreIDs {
		if _, _, ok := x.lookup(id); !ok {
			t.Fatalf("blob %s added after the first consolidation is lost", id.Short())
		}
	}
	if x.count != 5000 || b2.count != 5000 {
		t.Errorf("count %d, base holds %d", x.count, b2.count)
	}
}

// The damage rules hold for places in the base: a damaged place or a
// missing pack is never used, another place of the blob is.
func TestIndex2KeepsEveryPlace(t *testing.T) {
	x := newIndex()
	id := testID(3)
	x.addPack(testID(10), []PackEntry{{ID: id, Length: 5}, {ID: testID(4), Offset: 5, Length: 5}}, 100)
	x.addPack(testID(11), []PackEntry{{ID: id, Length: 5}}, 100)
	b, _, _ := consolidateBytes(t, x, &keys{})
	x.adoptBase(b)
	if x.count != 3 || b.count != 3 {
		t.Fatalf("%d places in the base, want 3", b.count)
	}
	x.addDamage([]DamagedBlob{{Blob: id, Pack: testID(10)}})
	if l, _, ok := x.lookup(id); !ok || x.packs[l.pack] != testID(11) {
		t.Errorf("lookup picks pack %v (usable %v), want the undamaged place", x.packs[l.pack].Short(), ok)
	}
	x.setSizes(map[ID]int64{testID(10): 100})
	if _, found, ok := x.lookup(id); !found || ok {
		t.Errorf("with one place damaged and the other's pack missing: found %v usable %v", found, ok)
	}
	x.setSizes(map[ID]int64{testID(10): 100, testID(11): 3})
	if l, found, ok := x.lookup(id); !found || ok || x.unusableLocked(id, l) == nil {
		t.Errorf("with the other's pack truncated: found %v usable %v", found, ok)
	}
}

// A damaged consolidated file never gives a wrong place: a bad summary
// fails the open, a bad block makes its blobs not found (stored again).
func TestIndex2Damage(t *testing.T) {
	mem, ids := randomIndex(5, 500)
	for _, k := range []*keys{{}, fuzzKeys(t)} {
		_, good, _ := consolidateBytes(t, mem, k)
		for _, tc := range []struct {
			name     string
			at       int
			openFail bool
		}{
			{"header", 3, true},
			{"first block", index2HeaderLen + 40, false},
			{"summary", len(good) - index2TrailerLen - 30, true},
			{"trailer", len(good) - 10, true},
		} {
			b := slices.Clone(good)
			b[tc.at] ^= 0x10
			f, err := openIndex2(bytes.NewReader(b), int64(len(b)), k, "test")
			if tc.openFail {
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s damaged: open gives %v, want ErrCorrupt", tc.name, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s damaged: open: %v", tc.name, err)
			}
			x := newIndex()
			x.adoptBase(f)
			lost := 0
			for _, id := range ids {
				want := allPlaces(mem, id)
				var got []string
				err := f.places(id, func(l loc) bool {
					got = append(got, x.packs[l.pack].String()+string(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, l.off), l.lenFlg)))
					return false
				})
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("%s damaged: %v, want ErrCorrupt", tc.name, err)
					}
					lost++
					continue
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("%s damaged: blob %s at %q, want %q", tc.name, id.Short(), got, want)
				}
			}
			if lost == 0 || lost > 32 {
				t.Errorf("%s damaged: %d blobs unreadable, want those of one block", tc.name, lost)
			}
			if _, _, err := decodeIndex2(b, k); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s damaged: whole decode gives %v", tc.name, err)
			}
		}
		if _, err := openIndex2(bytes.NewReader(good[:len(good)-1]), int64(len(good)-1), k, "test"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated: %v", err)
		}
	}
}

// frameIndex2 builds a consolidated file around a summary body and
// records given raw, with valid frames, so mutations reach the parsers.
func frameIndex2(k *keys, body, recs []byte) []byte {
	count := len(recs) / index2RecLen
	var hdr [index2HeaderLen]byte
	copy(hdr[:], index2Magic)
	hdr[8], hdr[9] = index2Version, index2Shift
	out := slices.Clone(hdr[:])
	for blk := 0; blk<<index2Shift < count; blk++ {
		r := recs[blk<<index2Shift*index2RecLen : min(count, (blk+1)<<index2Shift)*index2RecLen]
		if k.aead != nil {
			ad := binary.LittleEndian.AppendUint64(slices.Clone(hdr[16:]), uint64(blk))
			out = seal(k.aead, out, r, ad)
		} else {
			nb := binary.LittleEndian.AppendUint64(nil, uint64(blk))
			out = append(out, r...)
			out = binary.LittleEndian.AppendUint32(out, crc32.Update(crc32.Checksum(nb, crcTable), crcTable, r))
		}
	}
	n := len(out)
	if k.aead != nil {
		out = seal(k.aead, out, body, binary.LittleEndian.AppendUint64(slices.Clone(hdr[:]), uint64(count)))
	} else {
		out = binary.LittleEndian.AppendUint32(append(out, body...), crc32.Checksum(body, crcTable))
	}
	tr := binary.LittleEndian.AppendUint64(nil, uint64(count))
	tr = binary.LittleEndian.AppendUint32(tr, uint32(len(out)-n))
	tr = binary.LittleEndian.AppendUint32(tr, crc32.Checksum(tr, crcTable))
	return append(append(out, tr...), index2Magic...)
}

// FuzzIndexFileV2 reads consolidated files as the store does: open (the
// summary) then every record, and lookups; as given, and with the input
// split into a summary body and records framed validly.
func FuzzIndexFileV2(f *testing.F) {
	plain, enc := &keys{}, fuzzKeys(f)
	gold := golden.Load(f, "index-v2.golden")
	f.Add(gold, 0)
	mem, _ := randomIndex(6, 100)
	_, small, _ := consolidateBytes(f, mem, plain)
	f.Add(small, 0)
	_, sealed, _ := consolidateBytes(f, mem, enc)
	f.Add(sealed, 0)
	// The golden file's body and records, to be framed.
	sumOff := index2HeaderLen + int(blocksLen(3, index2Shift, 4))
	f.Add(append(slices.Clone(gold[sumOff:len(gold)-index2TrailerLen-4]), gold[index2HeaderLen:sumOff-4]...), len(gold)-index2TrailerLen-4-sumOff)
	// A body that claims 2^32-1 packs in a few bytes.
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, 9)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		files := [][]byte{b}
		if split >= 0 && split <= len(b) {
			files = append(files, frameIndex2(plain, b[:split], b[split:]), frameIndex2(enc, b[:split], b[split:]))
		}
		for i, file := range files {
			for _, k := range []*keys{plain, enc} {
				if i > 0 && k != []*keys{plain, enc}[i-1] {
					continue
				}
				// Per input byte: the summary, the decoded entries, and the
				// index built from them (pack map and tables).
				fuzzcheck.Bounded(t, "openIndex2", fuzzcheck.Linear(len(file), 16), func() {
					packs, _, err := decodeIndex2(file, k)
					if err != nil {
						if !errors.Is(err, ErrCorrupt) {
							t.Fatalf("error %v is not ErrCorrupt", err)
						}
						return
					}
					x2, err := openIndex2(bytes.NewReader(file), int64(len(file)), k, "fuzz")
					if err != nil {
						t.Fatalf("decodes whole but does not open: %v", err)
					}
					x := newIndex()
					x.adoptBase(x2)
					// Every decoded place is found by lookup, nothing else.
					for _, p := range packs {
						for _, e := range p.entries {
							if _, found, _ := x.lookup(e.ID); !found {
								t.Fatalf("blob %s decoded but not found", e.ID.Short())
							}
						}
					}
					if _, found, _ := x.lookup(testID(0xee)); found {
						t.Fatal("absent id found")
					}
				})
			}
		}
	})
}

// A store's index consolidated into its index directory serves the
// store's reads: in the live store (pack numbers kept), in a store whose
// index opens only the consolidated file, and in one opened as usual.
func TestConsolidatedStore(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		lock, w := openWriter(t, s)
		blobs := map[ID][]byte{}
		for i := range 30 {
			data := randBytes(int64(i), 50_000+i)
			id := s.Hash(data)
			blobs[id] = data
			if _, err := w.SaveBlob(DataBlob, id, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(filepath.Join(dir, "index"))
		if err != nil {
			t.Fatal(err)
		}
		var v1 []ID
		for _, e := range ents {
			id, err := ParseID(e.Name())
			if err != nil {
				t.Fatal(err)
			}
			v1 = append(v1, id)
		}
		name, err := s.idx.consolidateFile(s.be, s.keys, v1, nil)
		if err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
		check := func(what string, st *Store) {
			t.Helper()
			for id, want := range blobs {
				if got, err := st.LoadBlob(id, nil); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: blob %s: %v", what, id.Short(), err)
				}
			}
			if st.BlobCount() != len(blobs) {
				t.Errorf("%s: %d blobs, want %d", what, st.BlobCount(), len(blobs))
			}
			for _, p := range st.Packs() {
				if p.Problem != "" {
					t.Errorf("%s: pack %s: %s", what, p.ID.Short(), p.Problem)
				}
			}
		}
		check("live store", s)
		if s.idx.base == nil || len(s.idx.sorted)+s.idx.nrecent != 0 {
			t.Fatal("the live index did not adopt the consolidated file")
		}
		s2, err := Open(dir, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		check("store opening the index files", s2)
		// Before any read: open pack files are keyed by pack number.
		s3, err := Open(dir, OpenOptions{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		s3.idx = newIndex()
		if err := s3.idx.openBase(s3.be, name.String(), s3.keys); err != nil {
			t.Fatal(err)
		}
		if got := s3.idx.superseded(); len(got) != len(v1) || !got[v1[0]] {
			t.Errorf("superseded %v, want %v", got, v1)
		}
		if err := s3.Refresh(); err != nil { // the pack walk: sizes known
			t.Fatal(err)
		}
		check("store opening the consolidated file", s3)
	}
}
