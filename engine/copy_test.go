package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recall-backup/recall/chunkstore"
	"github.com/recall-backup/recall/chunkstore/backend/local"
)

// copyFixture is a source store with points of two sources, a and b: a at
// t0 and t2 (the second with one file changed, so it shares most blobs
// with the first), b at t1.
type copyFixture struct {
	home    string // a recall home: the store is home/store
	pw      string
	points  map[string]*Point // "a0", "b1", "a2"
	content map[string]map[string]crashFile
}

var copyT0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func newCopyFixture(t *testing.T, encrypted bool) *copyFixture {
	t.Helper()
	withPackSize(t, 1<<20) // several packs
	f := &copyFixture{home: t.TempDir(), points: map[string]*Point{}, content: map[string]map[string]crashFile{}}
	io := chunkstore.InitOptions{}
	if encrypted {
		f.pw = "copy secret"
		io = chunkstore.InitOptions{Encrypt: true, Password: f.pw, KDFMemoryKB: 1024}
	}
	if _, err := chunkstore.Init(StoreDir(f.home), io); err != nil {
		t.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{7})
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	randomFiles(t, a, rnd, map[string]int{"big": 3 << 20, "mid": 700 << 10, "small": 3000})
	if err := os.WriteFile(filepath.Join(a, "text"), bytes.Repeat([]byte("compressible line of text\n"), 40_000), 0o644); err != nil {
		t.Fatal(err)
	}
	f.backup(t, "a0", a, "a", copyT0)
	randomFiles(t, b, rnd, map[string]int{"one": 2 << 20, "two": 100})
	f.backup(t, "b1", b, "b", copyT0.Add(time.Hour))
	randomFiles(t, a, rnd, map[string]int{"mid": 800 << 10})
	f.backup(t, "a2", a, "a", copyT0.Add(2*time.Hour))
	return f
}

func (f *copyFixture) backup(t *testing.T, name, dir, source string, at time.Time) {
	t.Helper()
	p := backupInto(t, StoreDir(f.home), f.pw, dir, source, at)
	f.points[name] = p
	f.content[name] = readTreeFiles(t, dir)
}

func backupInto(t *testing.T, store, pw, dir, source string, at time.Time) *Point {
	t.Helper()
	st, err := Open(store, chunkstore.OpenOptions{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ss, err := st.Session(context.Background(), SessionOptions{Purpose: "test", Source: source, Blobs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	p, err := Backup(context.Background(), ss, BackupOptions{Path: dir, Source: source, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkCopy checks that the store at dir holds exactly the points want
// of the fixture (and the extra ids), that each restores to what was
// backed up, and that verify --read-data finds nothing wrong.
func (f *copyFixture) checkCopy(t *testing.T, dir string, want []string, extra ...chunkstore.ID) {
	t.Helper()
	st, err := OpenLocation(context.Background(), dir, RemoteOptions{}, chunkstore.OpenOptions{Password: f.pw})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids, err := st.Reader().ListPoints()
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := slices.Clone(extra)
	for _, n := range want {
		wantIDs = append(wantIDs, f.points[n].ID)
	}
	slices.SortFunc(wantIDs, func(a, b chunkstore.ID) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("the copy holds %d points %v, want %v (%v)", len(ids), ids, want, wantIDs)
	}
	for _, n := range want {
		p, err := st.Reader().LoadPoint(f.points[n].ID)
		if err != nil {
			t.Fatal(err)
		}
		target := t.TempDir()
		if _, err := Restore(context.Background(), st.Reader(), p, RestoreOptions{Target: target, Overwrite: true}); err != nil {
			t.Fatalf("restore point %s from the copy: %v", n, err)
		}
		got := readTreeFiles(t, target)
		if len(got) != len(f.content[n]) {
			t.Errorf("point %s restored from the copy: %d files, want %d", n, len(got), len(f.content[n]))
		}
		for name, c := range f.content[n] {
			if !bytes.Equal(got[name].data, c.data) {
				t.Errorf("point %s restored from the copy: %s differs", n, name)
			}
		}
	}
	rep, err := Verify(context.Background(), st.Reader(), VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("verify --read-data of the copy: %v (%+v)", err, rep)
	}
}

func pointNames(f *copyFixture, cps []CopiedPoint) []string {
	var out []string
	for _, cp := range cps {
		for n, p := range f.points {
			if p.ID.String() == cp.ID {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestCopy(t *testing.T) {
	cases := []struct {
		name      string
		encrypted bool
		noPass    bool  // copy without the passphrase: sealed
		batch     int64 // copyBatch, when set
		o         CopyOptions
		want      []string
	}{
		{name: "all", want: []string{"a0", "a2", "b1"}},
		{name: "all, a point per batch", batch: 1, want: []string{"a0", "a2", "b1"}},
		{name: "source", o: CopyOptions{Source: "a"}, want: []string{"a0", "a2"}},
		{name: "since", o: CopyOptions{Since: copyT0.Add(time.Hour)}, want: []string{"a2", "b1"}},
		{name: "encrypted", encrypted: true, o: CopyOptions{Source: "b"}, want: []string{"b1"}},
		{name: "encrypted without passphrase", encrypted: true, noPass: true, want: []string{"a0", "a2", "b1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newCopyFixture(t, c.encrypted)
			if c.batch != 0 {
				withCopyBatch(t, c.batch)
			}
			dst := filepath.Join(t.TempDir(), "offsite")
			o := c.o
			if !c.noPass {
				o.Password = f.pw
			}
			// From the home, as a person gives it.
			rep, err := Copy(context.Background(), f.home, dst, o)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Created || rep.To != StoreDir(dst) || rep.Sealed != c.noPass || rep.Packs == 0 || rep.Bytes == 0 {
				t.Errorf("report %+v: want a new store in a new home, sealed=%v, packs and bytes written", rep, c.noPass)
			}
			if got := pointNames(f, rep.Points); !slices.Equal(got, c.want) {
				t.Errorf("points copied %v, want %v", got, c.want)
			}
			f.checkCopy(t, dst, c.want)

			// Again: nothing is missing, nothing is copied.
			again, err := Copy(context.Background(), f.home, dst, o)
			if err != nil {
				t.Fatal(err)
			}
			if again.Created || again.Blobs != 0 || again.Packs != 0 || len(again.Points) != 0 || again.Present != len(c.want) {
				t.Errorf("second copy: %+v, want nothing copied and %d points present", again, len(c.want))
			}
		})
	}
}

// Blob level: blobs the destination has are not copied, and a
// destination's own backups, made with the same keys, stay.
func TestCopyDeduplicatesAndKeeps(t *testing.T) {
	f := newCopyFixture(t, false)
	dst := filepath.Join(t.TempDir(), "offsite")
	first, err := Copy(context.Background(), f.home, dst, CopyOptions{Source: "a", Since: copyT0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A backup made at the destination itself.
	own := t.TempDir()
	randomFiles(t, own, rand.NewChaCha8([32]byte{9}), map[string]int{"local": 1 << 20})
	ownPoint := backupInto(t, StoreDir(dst), "", own, "c", copyT0.Add(5*time.Hour))

	rep, err := Copy(context.Background(), f.home, dst, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pointNames(f, rep.Points); !slices.Equal(got, []string{"a0", "b1"}) {
		t.Errorf("second copy copied %v, want a0 and b1", got)
	}
	// a0 shares all but one file with a2, copied first.
	if rep.SkippedBlobs == 0 || rep.Present != 1 {
		t.Errorf("second copy: %d blobs skipped, %d points present; want blobs of a2 skipped and a2 present", rep.SkippedBlobs, rep.Present)
	}
	if rep.SkippedBytes == 0 || first.Blobs == 0 {
		t.Errorf("first copy: %d blobs; second: %d bytes skipped", first.Blobs, rep.SkippedBytes)
	}
	f.checkCopy(t, dst, []string{"a0", "a2", "b1"}, ownPoint.ID)
}

func TestCopyRefused(t *testing.T) {
	f := newCopyFixture(t, true)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := chunkstore.Init(other, chunkstore.InitOptions{Encrypt: true, Password: f.pw, KDFMemoryKB: 1024}); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if _, err := chunkstore.Init(plain, chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	notStore := t.TempDir()
	if err := os.WriteFile(filepath.Join(notStore, "mine"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		from, to string
		pw       string
		want     error
	}{
		{"same store", f.home, StoreDir(f.home), f.pw, ErrSameStore},
		{"other keys, same passphrase", f.home, other, f.pw, ErrOtherKeys},
		{"other keys, without passphrase", f.home, other, "", ErrOtherKeys},
		{"plain destination", f.home, plain, f.pw, ErrOtherKeys},
		{"plain destination, without passphrase", f.home, plain, "", ErrOtherKeys},
		{"plain source, encrypted destination", plain, other, "", ErrOtherKeys},
		{"wrong passphrase", f.home, other, "wrong", chunkstore.ErrWrongPassword},
		{"no store at the source", notStore, other, f.pw, chunkstore.ErrNoStore},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := filesUnder(t, c.to)
			_, err := Copy(context.Background(), c.from, c.to, CopyOptions{Password: c.pw})
			if !errors.Is(err, c.want) {
				t.Fatalf("copy: %v, want %v", err, c.want)
			}
			if after := filesUnder(t, c.to); !slices.Equal(before, after) {
				t.Errorf("a refused copy wrote to the destination: %v, then %v", before, after)
			}
		})
	}
	// A directory that is neither a store nor empty is not made one.
	if _, err := Copy(context.Background(), f.home, notStore, CopyOptions{Password: f.pw}); err == nil {
		t.Error("copy into a directory of other files made a store there")
	}
}

// filesUnder lists the files under dir (not the locks, which a lock
// taken and released may leave).
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && filepath.Base(filepath.Dir(p)) != "locks" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A pack of the source that is damaged: the points that need it are named
// and not copied, the others are, and the copy verifies clean.
func TestCopyCorruptSourcePack(t *testing.T) {
	for _, batch := range []int64{copyBatch, 1} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			withCopyBatch(t, batch)
			testCopyCorruptSourcePack(t)
		})
	}
}

func testCopyCorruptSourcePack(t *testing.T) {
	f := newCopyFixture(t, false)
	src, err := chunkstore.Open(StoreDir(f.home), chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A chunk only point b1 has.
	tree, err := NewReader(src).LoadTree(f.points["b1"].Tree)
	if err != nil {
		t.Fatal(err)
	}
	chunk := tree.Find("one").Extents[0].ID
	pack, ok := src.PackOf(chunk)
	src.Close()
	if !ok {
		t.Fatal("chunk in no pack")
	}
	path := filepath.Join(StoreDir(f.home), "packs", pack.String()[:2], pack.String())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(b)/2; i += 4096 { // every blob's bytes, not the header
		b[i] ^= 0x55
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "offsite")
	rep, err := Copy(context.Background(), f.home, dst, CopyOptions{})
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("copy: %v, want ErrDamaged", err)
	}
	if len(rep.Failed) != 1 || rep.Failed[0].ID != f.points["b1"].ID.String() || rep.Failed[0].Source != "b" {
		t.Errorf("failed %+v, want point b1", rep.Failed)
	}
	if got := pointNames(f, rep.Points); !slices.Equal(got, []string{"a0", "a2"}) {
		t.Errorf("copied %v, want a0 and a2", got)
	}
	f.checkCopy(t, dst, []string{"a0", "a2"})
}

func withCopyBatch(t *testing.T, n int64) {
	old := copyBatch
	copyBatch = n
	t.Cleanup(func() { copyBatch = old })
}

func BenchmarkCopy(b *testing.B) {
	for _, enc := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(b *testing.B) { benchCopy(b, enc) })
	}
}

func benchCopy(b *testing.B, encrypted bool) {
	home, pw := b.TempDir(), ""
	io := chunkstore.InitOptions{}
	if encrypted {
		pw = "bench"
		io = chunkstore.InitOptions{Encrypt: true, Password: pw, KDFMemoryKB: 1024}
	}
	if _, err := chunkstore.Init(StoreDir(home), io); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	rnd := rand.NewChaCha8([32]byte{3})
	var size int64
	for i := range 8 {
		buf := make([]byte, 16<<20)
		if i%2 == 0 {
			rnd.Read(buf)
		} else {
			for k := 0; k < len(buf); k += 64 {
				copy(buf[k:], []byte("a compressible line of text of sixty-four bytes, more or less.\n"))
			}
			rnd.Read(buf[:4096])
		}
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('0'+i))), buf, 0o644); err != nil {
			b.Fatal(err)
		}
		size += int64(len(buf))
	}
	st, err := Open(StoreDir(home), chunkstore.OpenOptions{Password: pw})
	if err != nil {
		b.Fatal(err)
	}
	ss, err := st.Session(context.Background(), SessionOptions{Purpose: "bench", Source: "s", Blobs: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Backup(context.Background(), ss, BackupOptions{Path: dir, Source: "s"}); err != nil {
		b.Fatal(err)
	}
	ss.Close()
	st.Close()
	b.ResetTimer()
	var stored int64
	for range b.N {
		// The destination is made outside the timing: making a store's
		// directories costs the same whatever is copied.
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "copy")
		l, err := resolveLocation(context.Background(), dst, RemoteOptions{}, true)
		if err != nil {
			b.Fatal(err)
		}
		if err := createCopy(context.Background(), l, func(ctx context.Context) (map[string][]byte, error) {
			return configFilesOf(ctx, local.Open(StoreDir(home)))
		}); err != nil {
			b.Fatal(err)
		}
		l.be.Close()
		b.StartTimer()
		rep, err := Copy(context.Background(), home, dst, CopyOptions{Password: pw})
		if err != nil {
			b.Fatal(err)
		}
		stored = rep.Bytes
	}
	// Rated by the stored bytes copied; the data backed up is larger.
	b.SetBytes(stored)
	b.ReportMetric(float64(size)/float64(stored), "raw/stored")
}

// A location is a home or a store directory; anything else is no store.
func TestOpenLocation(t *testing.T) {
	home := t.TempDir()
	if _, err := chunkstore.Init(StoreDir(home), chunkstore.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		loc  string
		want error
	}{
		{home, nil},
		{StoreDir(home), nil},
		{home + "/../" + filepath.Base(home), nil},
		{t.TempDir(), chunkstore.ErrNoStore},
		{filepath.Join(home, "missing"), chunkstore.ErrNoStore},
	}
	for _, c := range cases {
		st, err := OpenLocation(context.Background(), c.loc, RemoteOptions{}, chunkstore.OpenOptions{})
		if !errors.Is(err, c.want) {
			t.Errorf("OpenLocation(%s): %v, want %v", c.loc, err, c.want)
		}
		if err == nil {
			if st.Dir() != StoreDir(home) {
				t.Errorf("OpenLocation(%s) opened %s, want %s", c.loc, st.Dir(), StoreDir(home))
			}
			st.Close()
		}
	}
}

// A copy holds a write session at the destination: a backup's session
// there does not stop it, another copy's does (it would wait).
func TestCopyBesideBackup(t *testing.T) {
	f := newCopyFixture(t, false)
	dst := filepath.Join(t.TempDir(), "offsite")
	if _, err := Copy(context.Background(), f.home, dst, CopyOptions{Source: "b"}); err != nil {
		t.Fatal(err)
	}
	st, err := OpenLocation(context.Background(), dst, RemoteOptions{}, chunkstore.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	backup, err := st.Session(context.Background(), SessionOptions{Purpose: "backup", Source: "c"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Copy(context.Background(), f.home, dst, CopyOptions{Source: "a"})
	if err != nil || len(rep.Points) != 2 {
		t.Fatalf("copy beside a backup session: %v, %+v", err, rep)
	}
	backup.Close()
	other, err := st.Session(context.Background(), SessionOptions{Purpose: "copy", Source: copySession})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := Copy(context.Background(), f.home, dst, CopyOptions{}); !errors.Is(err, chunkstore.ErrLocked) {
		t.Errorf("copy beside another copy: %v, want ErrLocked", err)
	}
}

// A copy killed while it made the destination, between writing a config
// file's temp file and its rename, leaves that temp file: the next copy
// makes the store anyway. Before, every retry was refused as "not empty".
func TestCopyAfterKilledCreate(t *testing.T) {
	f := newCopyFixture(t, false)
	dst := filepath.Join(t.TempDir(), "offsite")
	store := StoreDir(dst)
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".tmp-config.copy-123", ".tmp-config-456"} {
		if err := os.WriteFile(filepath.Join(store, name), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Copy(context.Background(), f.home, dst, CopyOptions{})
	if err != nil {
		t.Fatalf("copy after a killed one: %v", err)
	}
	if !rep.Created || len(rep.Points) != 3 {
		t.Errorf("report %+v, want a new store with 3 points", rep)
	}
	f.checkCopy(t, dst, []string{"a0", "a2", "b1"})

	// Anything else of another's is still refused.
	other := filepath.Join(t.TempDir(), "other")
	os.MkdirAll(StoreDir(other), 0o700)
	os.WriteFile(filepath.Join(StoreDir(other), ".tmp-notes"), nil, 0o600)
	if _, err := Copy(context.Background(), f.home, other, CopyOptions{}); err == nil || !strings.Contains(err.Error(), "not empty (.tmp-notes)") {
		t.Errorf("copy into a directory of other files: %v", err)
	}
}

// A point forgotten at the source while a copy runs (the copy reads the
// source without a lock) is named as forgotten, not as damage: before,
// the copy failed with exit 4 and advised a verify and repair of a store
// that had nothing wrong. Whether a collection has removed its packs yet
// or not.
func TestCopyPointForgottenAtSource(t *testing.T) {
	for _, swept := range []bool{false, true} {
		t.Run(fmt.Sprintf("packs removed %v", swept), func(t *testing.T) {
			f := newCopyFixture(t, false)
			b1 := f.points["b1"]
			var pack chunkstore.ID
			if swept {
				src, err := chunkstore.Open(StoreDir(f.home), chunkstore.OpenOptions{})
				if err != nil {
					t.Fatal(err)
				}
				tree, err := NewReader(src).LoadTree(b1.Tree)
				if err != nil {
					t.Fatal(err)
				}
				p, ok := src.PackOf(tree.Find("one").Extents[0].ID) // a chunk only b1 has
				src.Close()
				if !ok {
					t.Fatal("chunk in no pack")
				}
				pack = p
			}
			old := copyBatchHook
			t.Cleanup(func() { copyBatchHook = old })
			copyBatchHook = func([]*Point) {
				copyBatchHook = func([]*Point) {}
				st, err := Open(StoreDir(f.home), chunkstore.OpenOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				if _, err := st.Forget(context.Background(), b1.ID.String(), "", LockOptions{}); err != nil {
					t.Fatal(err)
				}
				if swept {
					if err := os.Remove(filepath.Join(StoreDir(f.home), "packs", pack.String()[:2], pack.String())); err != nil {
						t.Fatal(err)
					}
				}
			}
			rep, err := Copy(context.Background(), f.home, filepath.Join(t.TempDir(), "offsite"), CopyOptions{})
			if err != nil {
				t.Fatalf("copy: %v", err)
			}
			if len(rep.Failed) != 0 || len(rep.Forgotten) != 1 || rep.Forgotten[0].ID != b1.ID.String() {
				t.Errorf("failed %+v, forgotten %+v: want b1 forgotten, nothing failed", rep.Failed, rep.Forgotten)
			}
			if got := pointNames(f, rep.Points); !slices.Equal(got, []string{"a0", "a2"}) {
				t.Errorf("points copied %v, want a0 a2", got)
			}
		})
	}
}

// A copy selecting a source with no point (a typo) makes no store at a
// destination that had none: it fails before anything is written.
func TestCopyNoPointMakesNoStore(t *testing.T) {
	f := newCopyFixture(t, false)
	to := filepath.Join(t.TempDir(), "offsite")
	_, err := Copy(context.Background(), f.home, to, CopyOptions{Source: "typo"})
	if !errors.Is(err, chunkstore.ErrNotFound) || !strings.Contains(err.Error(), "nothing was made") {
		t.Fatalf("copy of a source with no point: %v, want not found and nothing made", err)
	}
	if _, err := os.Stat(to); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the destination exists after the refused copy: %v", err)
	}
}

// A sealed copy cannot read the manifests: its points' source and time
// are left out of the JSON, not given as "" and year 1, which a script
// would take for the point's time.
func TestCopiedPointJSONSealed(t *testing.T) {
	b, err := json.Marshal(CopiedPoint{ID: "abc"})
	if err != nil || string(b) != `{"id":"abc"}` {
		t.Errorf("sealed point: %s, %v", b, err)
	}
	tm := time.Date(2026, 11, 2, 21, 0, 5, 0, time.UTC)
	b, _ = json.Marshal(CopiedPoint{ID: "abc", Source: "www", Time: tm})
	if string(b) != `{"id":"abc","source":"www","time":"2026-11-02T21:00:05Z"}` {
		t.Errorf("point: %s", b)
	}
}
