package chunkstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recall-backup/recall/internal/golden"
)

func sampleDamage() []DamagedBlob {
	return []DamagedBlob{
		{Blob: testID(1), Pack: testID(7), Reason: "corrupt data: content does not match its id"},
		{Blob: testID(2), Pack: testID(8), Reason: ""},
	}
}

func TestDamageRecordGolden(t *testing.T) {
	b := encodeDamage(sampleDamage(), &keys{})
	golden.Check(t, "damaged-v1.golden", b)
	got, err := decodeDamage(b, &keys{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != sampleDamage()[0] || got[1] != sampleDamage()[1] {
		t.Errorf("round trip: %+v", got)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := decodeDamage(bad, &keys{}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
	}
	long := []DamagedBlob{{Reason: strings.Repeat("é", maxDamageReason)}}
	if got, err := decodeDamage(encodeDamage(long, &keys{}), &keys{}); err != nil || len(got[0].Reason) > maxDamageReason {
		t.Errorf("long reason: %v, %d bytes", err, len(got[0].Reason))
	}
}

func TestDamageRecordSealed(t *testing.T) {
	_, s := newStore(t, true)
	b := encodeDamage(sampleDamage(), s.keys)
	if bytes.Contains(b, []byte("content does not match")) {
		t.Error("an encrypted store's damage record is readable without the key")
	}
	got, err := decodeDamage(b, s.keys)
	if err != nil || len(got) != 2 || got[0] != sampleDamage()[0] {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	b[len(b)-1] ^= 1
	if _, err := decodeDamage(b, s.keys); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped tag: %v", err)
	}
}

func FuzzDamagedRecord(f *testing.F) {
	f.Add(encodeDamage(sampleDamage(), &keys{})) // the golden file's bytes
	f.Add(encodeDamage(nil, &keys{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeDamage(b, &keys{})
		if err != nil {
			return
		}
		again, err := decodeDamage(encodeDamage(recs, &keys{}), &keys{})
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-encoding a decoded record: %v", err)
		}
		for i := range recs {
			if again[i] != recs[i] {
				t.Fatalf("entry %d changed: %+v -> %+v", i, recs[i], again[i])
			}
		}
	})
}

// saveBlobs saves data blobs in one writer session and flushes.
func saveBlobs(t *testing.T, s *Store, blobs ...[]byte) []ID {
	t.Helper()
	lock, w := openWriter(t, s)
	defer lock.Unlock()
	var ids []ID
	for _, b := range blobs {
		id := s.Hash(b)
		if _, err := w.SaveBlob(DataBlob, id, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func reopen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, OpenOptions{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// walkAsWriter takes the writer lock and a writer, as a backup does,
// which walks the packs.
func walkAsWriter(t *testing.T, s *Store) {
	t.Helper()
	l, _ := openWriter(t, s)
	l.Unlock()
}

func blobPlace(t *testing.T, s *Store, id ID) (string, PackEntry) {
	t.Helper()
	pack, ok := s.PackOf(id)
	if !ok {
		t.Fatalf("blob %s not indexed", id.Short())
	}
	ents, err := s.ReadPackHeader(pack)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.ID == id {
			return s.packPath(pack), e
		}
	}
	t.Fatalf("blob %s not in its pack's header", id.Short())
	return "", PackEntry{}
}

func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x10
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A blob found damaged by a read is recorded, no longer counts for dedup,
// is stored again by the next writer, and from then on read from its new
// place, in this process and after reopening.
func TestDamagedBlobStoredAgain(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		a, b := randBytes(1, 80_000), randBytes(2, 90_000)
		ids := saveBlobs(t, s, a, b)
		p, e := blobPlace(t, s, ids[0])
		flipAt(t, p, int64(e.Offset)+10)
		if !s.Has(ids[0]) {
			t.Fatal("Has is false before anything read the damage")
		}
		if _, err := s.LoadBlob(ids[0], nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("encrypted=%v: flipped blob read: %v", enc, err)
		}
		if s.Has(ids[0]) || !s.Has(ids[1]) {
			t.Errorf("encrypted=%v: after the bad read, Has = %v, %v; want false, true", enc, s.Has(ids[0]), s.Has(ids[1]))
		}
		if d := s.DamagedBlobs(); len(d) != 1 || d[0].Blob != ids[0] {
			t.Errorf("damage record: %+v", d)
		}
		s2 := reopen(t, dir)
		if s2.Has(ids[0]) {
			t.Errorf("encrypted=%v: the damage record did not survive reopening", enc)
		}
		lock, w := openWriter(t, s2)
		if fresh, err := w.SaveBlob(DataBlob, ids[0], a); err != nil || !fresh {
			t.Errorf("encrypted=%v: a damaged blob was deduplicated against (%v, %v)", enc, fresh, err)
		}
		if fresh, _ := w.SaveBlob(DataBlob, ids[1], b); fresh {
			t.Error("a healthy blob was stored again")
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
		for _, st := range []*Store{s2, reopen(t, dir)} {
			if got, err := st.LoadBlob(ids[0], nil); err != nil || !bytes.Equal(got, a) {
				t.Errorf("encrypted=%v: blob stored again reads %v", enc, err)
			}
			if st.BlobCount() != 3 {
				t.Errorf("index holds %d places, want 3 (both places of the damaged blob kept)", st.BlobCount())
			}
			if !st.Has(ids[0]) {
				t.Error("the new copy does not count")
			}
		}
	}
}

// Both places of a blob survive compaction whatever the order.
func TestIndexKeepsEveryPlace(t *testing.T) {
	x := newIndex()
	id := testID(3)
	x.addPack(testID(10), []PackEntry{{ID: id, Length: 5}, {ID: testID(4), Offset: 5, Length: 5}}, 100)
	x.addPack(testID(11), []PackEntry{{ID: id, Length: 5}}, 100)
	x.compact()
	if x.count != 3 || len(x.sorted) != 3 {
		t.Fatalf("%d places after compaction, want 3", len(x.sorted))
	}
	x.addDamage([]DamagedBlob{{Blob: id, Pack: testID(10)}})
	if l, _, ok := x.lookup(id); !ok || x.packs[l.pack] != testID(11) {
		t.Errorf("lookup picks pack %v (usable %v), want the undamaged place", x.packs[l.pack].Short(), ok)
	}
	x.setSizes(map[ID]int64{testID(10): 100})
	if _, found, ok := x.lookup(id); !found || ok {
		t.Errorf("with one place damaged and the other's pack missing: found %v usable %v", found, ok)
	}
}

// A missing pack and a truncated pack are known from the pack walk, which
// a writer does once per lock: their blobs (those past the end of a
// truncated one) do not count as stored for deduplication.
func TestMissingAndTruncatedPacks(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		ids := saveBlobs(t, s, randBytes(1, 70_000), randBytes(2, 70_000), randBytes(3, 70_000))
		p, e := blobPlace(t, s, ids[1])
		if err := os.Truncate(p, int64(e.Offset)+int64(e.Length)-1); err != nil {
			t.Fatal(err)
		}
		s2 := reopen(t, dir)
		walkAsWriter(t, s2)
		if !s2.Has(ids[0]) || s2.Has(ids[1]) || s2.Has(ids[2]) {
			t.Errorf("encrypted=%v: truncated pack: Has = %v %v %v, want true false false", enc, s2.Has(ids[0]), s2.Has(ids[1]), s2.Has(ids[2]))
		}
		if _, err := s2.LoadBlob(ids[0], nil); err != nil {
			t.Errorf("blob before the cut: %v", err)
		}
		if _, err := s2.BlobStatus(ids[2]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("blob past the cut: status %v", err)
		}
		var problems []string
		for _, pi := range s2.Packs() {
			if pi.Problem != "" {
				problems = append(problems, pi.Problem)
			}
		}
		if len(problems) != 1 || !strings.HasPrefix(problems[0], "truncated") {
			t.Errorf("pack problems: %q", problems)
		}
		os.Remove(p)
		s3 := reopen(t, dir)
		walkAsWriter(t, s3)
		if s3.Has(ids[0]) {
			t.Error("blob of a deleted pack counts as stored")
		}
		if _, err := s3.BlobStatus(ids[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("blob of a deleted pack: %v", err)
		}
	}
}

// The packs' expected sizes are exact for healthy packs, plain and sealed.
func TestPackSizeExpected(t *testing.T) {
	for _, enc := range []bool{false, true} {
		_, s := newStore(t, enc)
		saveBlobs(t, s, randBytes(1, 5000), bytes.Repeat([]byte("x"), 9000), randBytes(3, 100))
		for _, pi := range s.Packs() {
			if pi.Size != pi.Expected || pi.Problem != "" {
				t.Errorf("encrypted=%v: pack of %d bytes, expected %d (%s)", enc, pi.Size, pi.Expected, pi.Problem)
			}
		}
	}
}

// A flipped byte in a pack header loses no blob: reads use the index.
func TestHeaderDamageLosesNoBlob(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		data := [][]byte{randBytes(1, 30_000), randBytes(2, 30_000)}
		ids := saveBlobs(t, s, data...)
		p, _ := blobPlace(t, s, ids[0])
		st, _ := os.Stat(p)
		flipAt(t, p, st.Size()-20)
		s2 := reopen(t, dir)
		pack, _ := s2.PackOf(ids[0])
		pc, err := s2.CheckPack(pack)
		if err != nil || pc.Header == nil || len(pc.Bad) != 0 {
			t.Errorf("encrypted=%v: CheckPack: %v %+v", enc, err, pc)
		}
		for i, id := range ids {
			if got, err := s2.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data[i]) {
				t.Errorf("encrypted=%v: blob %d: %v", enc, i, err)
			}
		}
		if bad, err := s2.DamagedPacks(); err != nil || len(bad) != 1 || !strings.Contains(bad[0].Reason, "header") {
			t.Errorf("encrypted=%v: DamagedPacks: %+v %v", enc, bad, err)
		}
	}
}

// repair index replaces a corrupt index file, and with dryRun changes
// nothing.
func TestRebuildIndex(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		data := [][]byte{randBytes(1, 30_000), randBytes(2, 40_000)}
		ids := saveBlobs(t, s, data...)
		ents, _ := os.ReadDir(filepath.Join(dir, "index"))
		if len(ents) != 1 {
			t.Fatalf("%d index files", len(ents))
		}
		flipAt(t, filepath.Join(dir, "index", ents[0].Name()), 30)
		s2 := reopen(t, dir)
		lock, err := s2.LockWriter(t.Context(), "repair", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := dirListing(t, dir)
		rb, err := lock.RebuildIndex(true)
		if err != nil || len(rb.Removed) != 1 || len(rb.Written) != 1 {
			t.Fatalf("dry run: %v %+v", err, rb)
		}
		if after := dirListing(t, dir); after != before {
			t.Errorf("dry run changed the store:\n%s\n%s", before, after)
		}
		if rb, err = lock.RebuildIndex(false); err != nil || len(rb.Removed) != 1 || len(rb.Written) != 1 {
			t.Fatalf("rebuild: %v %+v", err, rb)
		}
		files, err := s2.readIndexFiles()
		if err != nil || len(files) != 1 || files[0].err != nil {
			t.Errorf("index files after rebuild: %v %+v", err, files)
		}
		if rb, err = lock.RebuildIndex(true); err != nil || len(rb.Removed)+len(rb.Written) != 0 {
			t.Errorf("a second rebuild would change %+v (%v)", rb, err)
		}
		lock.Unlock()
		s3 := reopen(t, dir)
		for i, id := range ids {
			if got, err := s3.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data[i]) {
				t.Errorf("encrypted=%v: blob %d after rebuild: %v", enc, i, err)
			}
		}
		s3.fmu.Lock()
		if len(s3.orphans) != 0 {
			t.Errorf("%d packs read from headers after the rebuild: the new index file does not cover them", len(s3.orphans))
		}
		s3.fmu.Unlock()
	}
}

func dirListing(t *testing.T, dir string) string {
	var lines []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !strings.HasSuffix(p, "locks/writer") {
			lines = append(lines, p, info.ModTime().String())
		}
		return nil
	})
	return strings.Join(lines, "\n")
}

// repair packs keeps every blob that checks out, loses only the bad one,
// removes the damaged pack and its damage record, and leaves an index that
// names no removed pack.
func TestSalvagePacks(t *testing.T) {
	for _, enc := range []bool{false, true} {
		dir, s := newStore(t, enc)
		data := [][]byte{randBytes(1, 30_000), randBytes(2, 40_000), randBytes(3, 50_000)}
		ids := saveBlobs(t, s, data...)
		p, e := blobPlace(t, s, ids[1])
		flipAt(t, p, int64(e.Offset)+5)
		s2 := reopen(t, dir)
		pack, _ := s2.PackOf(ids[1])
		if pc, err := s2.CheckPack(pack); err != nil || len(pc.Bad) != 1 {
			t.Fatalf("CheckPack: %v %+v", err, pc)
		}
		s3 := reopen(t, dir)
		bad, err := s3.DamagedPacks()
		if err != nil || len(bad) != 1 || bad[0].Pack != pack {
			t.Fatalf("DamagedPacks: %v %+v", err, bad)
		}
		lock, err := s3.LockWriter(t.Context(), "repair", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := dirListing(t, dir)
		if sv, _, err := lock.SalvagePacks(bad, true); err != nil || sv[0].Kept != 2 || len(sv[0].Lost) != 1 {
			t.Fatalf("dry run: %v %+v", err, sv)
		}
		if after := dirListing(t, dir); after != before {
			t.Errorf("dry run changed the store")
		}
		sv, rb, err := lock.SalvagePacks(bad, false)
		if err != nil || sv[0].Kept != 2 || len(sv[0].Lost) != 1 || sv[0].Lost[0].Blob != ids[1] || !sv[0].Removed {
			t.Fatalf("salvage: %v %+v", err, sv)
		}
		if len(rb.Removed) == 0 || rb.DamageDropped != 1 {
			t.Errorf("index rebuild after salvage: %+v", rb)
		}
		lock.Unlock()
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Error("damaged pack still there")
		}
		s4 := reopen(t, dir)
		for i, id := range ids {
			got, err := s4.LoadBlob(id, nil)
			if i == 1 {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("lost blob: %v, want ErrNotFound", err)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, data[i]) {
				t.Errorf("encrypted=%v: salvaged blob %d: %v", enc, i, err)
			}
		}
		if d := s4.DamagedBlobs(); len(d) != 0 {
			t.Errorf("damage record still lists %+v", d)
		}
		for _, pi := range s4.Packs() {
			if pi.Problem != "" {
				t.Errorf("pack %s after repair: %s", pi.ID.Short(), pi.Problem)
			}
		}
		if bad, _ := s4.DamagedPacks(); len(bad) != 0 {
			t.Errorf("damaged packs after repair: %+v", bad)
		}
	}
}

// Recording damage is best effort: a store where the record cannot be
// written still reports the bad blob, and the read fails as it should.
func TestDamageRecordUnwritable(t *testing.T) {
	dir, s := newStore(t, false)
	ids := saveBlobs(t, s, randBytes(1, 30_000))
	p, e := blobPlace(t, s, ids[0])
	flipAt(t, p, int64(e.Offset)+5)
	// A file where the record's directory belongs: MkdirAll fails.
	if err := os.WriteFile(filepath.Join(dir, "damaged"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	if _, err := s2.LoadBlob(ids[0], nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read: %v", err)
	}
	if s2.Has(ids[0]) {
		t.Error("in this process, the bad blob still counts as stored")
	}
}

// Repair leaves alone what it cannot know to be its own, and is done in
// one run: a pack whose header is unreadable and that no index file lists
// stays where it is (nothing says what it holds), a note in index/ is not
// an index file, and after a pack is lost a rebuild and consolidation
// leave an index a second rebuild does not change.
func TestRepairKeepsWhatItCannotRead(t *testing.T) {
	old := PackTargetSize
	PackTargetSize = 1 // a pack per blob
	defer func() { PackTargetSize = old }()
	dir, s := newStore(t, false)
	data := [][]byte{randBytes(1, 30_000), randBytes(2, 40_000), randBytes(3, 50_000)}
	ids := saveBlobs(t, s, data...)
	lostPack, _ := blobPlace(t, s, ids[0])
	unknownPack, _ := blobPlace(t, s, ids[1])
	s.Close()
	note := filepath.Join(dir, "index", "notes.txt")
	if err := os.WriteFile(note, []byte("moved the store here on Monday\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(lostPack); err != nil {
		t.Fatal(err)
	}
	// The second pack's trailer made unreadable, and every index file
	// removed: nothing says what it holds.
	b, err := os.ReadFile(unknownPack)
	if err != nil {
		t.Fatal(err)
	}
	flipAt(t, unknownPack, int64(len(b))-3)
	ents, _ := os.ReadDir(filepath.Join(dir, "index"))
	for _, e := range ents {
		if e.Name() != "notes.txt" {
			os.Remove(filepath.Join(dir, "index", e.Name()))
		}
	}
	s2 := reopen(t, dir)
	lock := exclusive(t, s2)
	bad, err := s2.DamagedPacks()
	if err != nil {
		t.Fatal(err)
	}
	var unknown []PackProblem
	for _, p := range bad {
		if filepath.Base(unknownPack) == p.Pack.String() {
			unknown = append(unknown, p)
		}
	}
	if len(unknown) != 1 {
		t.Fatalf("damaged packs: %+v", bad)
	}
	sv, _, err := lock.SalvagePacks(unknown, false)
	if err != nil || len(sv) != 1 || !sv[0].Unknown || sv[0].Removed {
		t.Fatalf("salvage of a pack nothing describes: %v %+v", err, sv)
	}
	if _, err := os.Stat(unknownPack); err != nil {
		t.Errorf("the pack nothing describes was removed: %v", err)
	}
	if _, err := os.Stat(note); err != nil {
		t.Errorf("the note in index/ was removed: %v", err)
	}
	lock.Unlock()

	// A pack lost while its index file is there.
	dir, s = newStore(t, false)
	ids = saveBlobs(t, s, data...)
	lostPack, _ = blobPlace(t, s, ids[0])
	s.Close()
	if err := os.Remove(lostPack); err != nil {
		t.Fatal(err)
	}
	for run := range 3 {
		s3 := reopen(t, dir)
		l := exclusive(t, s3)
		rb, err := l.RebuildIndex(false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.ConsolidateIndex(); err != nil {
			t.Fatal(err)
		}
		l.Unlock()
		if run > 0 && len(rb.Removed)+len(rb.Written) != 0 {
			t.Errorf("rebuild %d changed the index again: %+v", run+1, rb)
		}
		for i, id := range ids[1:] {
			if got, err := s3.LoadBlob(id, nil); err != nil || !bytes.Equal(got, data[i+1]) {
				t.Errorf("run %d: blob %d: %v", run+1, i+1, err)
			}
		}
		s3.Close()
	}
}

// A file someone put in the index directory (not named by a hash, so not
// recall's) is left alone and is no index problem: before, it was read as
// a damaged index file, and every verify advised a 'repair index' that
// rightly leaves it there, so the warning never went away.
func TestForeignFileInIndexDirIsNoProblem(t *testing.T) {
	dir, s := newStore(t, false)
	saveBlobs(t, s, randBytes(1, 5000))
	s.Close()
	note := filepath.Join(dir, "index", "notes.txt")
	if err := os.WriteFile(note, []byte("moved the store here on Monday\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := reopen(t, dir)
	if p := r.IndexProblems(); len(p) != 0 {
		t.Errorf("index problems: %q", p)
	}
	if _, err := os.Stat(note); err != nil {
		t.Errorf("the foreign file went: %v", err)
	}
}

// A pack missing because a directory or a dead link holds its place keeps
// its index file through a rebuild: put back, it reads as before. The
// rebuild dropped the file, and with it what the pack holds.
func TestRebuildIndexKeepsBlockedPack(t *testing.T) {
	dir, s := newStore(t, false)
	data := randBytes(1, 30_000)
	ids := saveBlobs(t, s, data)
	var pack ID
	if err := s.ListPacks(func(id ID, _ int64) error { pack = id; return nil }); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "packs", pack.String()[:2], pack.String())
	saved := filepath.Join(t.TempDir(), "saved")
	if err := os.Rename(home, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	lock := exclusive(t, s2)
	rb, err := lock.RebuildIndex(false)
	if err != nil || len(rb.Removed) != 0 {
		t.Fatalf("rebuild with the pack's place a directory: %v, removed %v: want the index file kept", err, rb.Removed)
	}
	lock.Unlock()
	if err := os.Remove(home); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, home); err != nil {
		t.Fatal(err)
	}
	s3 := reopen(t, dir)
	if got, err := s3.LoadBlob(ids[0], nil); err != nil || !bytes.Equal(got, data) {
		t.Errorf("blob after the pack was put back: %v", err)
	}
}
