package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recall-backup/recall/tapefs"
)

// The tape tier end to end, on an emulated library of small cartridges.

// tapeWriteOut is 'recall tape write --json'.
type tapeWriteOut struct {
	Pool, Set    string
	Points       []string
	Packs        int
	PacksSkipped int `json:"packs_skipped"`
	Tapes        []string
}

// tapeListOut is an element of 'recall tape list --json'.
type tapeListOut struct {
	Barcode  string
	Pool     string
	Set      string
	Sequence int
	State    string
	Expiry   time.Time
	Slot     int
	Points   []string
}

// tapeEnv is a home with a store and an emulated library of 64 MiB
// cartridges with an early-warning zone of 20 MiB, in which a pack fits.
func tapeEnv(t *testing.T, slots string) (*env, string) {
	return tapeEnvSized(t, slots, "48MiB")
}

func tapeEnvSized(t *testing.T, slots, capacity string) (*env, string) {
	t.Helper()
	e := newEnv(t)
	e.ok("init", "-q")
	lib := filepath.Join(t.TempDir(), "library")
	e.ok("tape", "library", "add", "lib", "--emulated", lib, "--slots", slots, "--capacity", capacity, "--early-warning", "20MiB")
	return e, lib
}

// withLibrary opens the emulated library for an operator action or a
// fault, while no recall process runs.
func withLibrary(t *testing.T, dir string, fn func(l *tapefs.EmulatedLibrary) error) {
	t.Helper()
	l, err := tapefs.OpenEmulatedLibrary(dir)
	must(t, err)
	defer l.Close()
	must(t, fn(l))
}

func backupID(t *testing.T, e *env, src string) string {
	t.Helper()
	var p struct{ ID string }
	must(t, json.Unmarshal([]byte(e.ok("backup", "--json", src)), &p))
	return p.ID
}

// onePointSource makes a source directory holding one 1 MiB file "f" of
// random bytes and backs it up: the point most tape tests write.
func onePointSource(t *testing.T, e *env) (src, id string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, 1<<20)
	return src, backupID(t, e, src)
}

func tapeWrite(t *testing.T, e *env, args ...string) tapeWriteOut {
	t.Helper()
	var w tapeWriteOut
	must(t, json.Unmarshal([]byte(e.ok(append([]string{"tape", "write", "--json"}, args...)...)), &w))
	return w
}

// onePointOnTape backs up a new source holding one file of size bytes,
// creates pool p and writes the point to it.
func onePointOnTape(t *testing.T, e *env, size int) (src, id string) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, size)
	id = backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	tapeWrite(t, e, "--pool", "p", id)
	return src, id
}

// restoresFromTape restores point id with 'tape restore' into a new
// directory and checks it holds what src holds.
func restoresFromTape(t *testing.T, e *env, id, src string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	e.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

func tapeList(t *testing.T, e *env, args ...string) []tapeListOut {
	t.Helper()
	var ls []tapeListOut
	must(t, json.Unmarshal([]byte(e.ok(append([]string{"tape", "list", "--json"}, args...)...)), &ls))
	return ls
}

// A point bigger than a cartridge is written to a set (spanning), the
// home is deleted, a new home reads the cartridges in and restores the
// point from tape alone, field by field equal to the source; the same
// with an encrypted pool and its exported key file.
func TestTapeSpanningRestoreOnFreshHome(t *testing.T) {
	requireRoot(t)
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(t *testing.T) {
			e, lib := tapeEnv(t, "6")
			src := filepath.Join(t.TempDir(), "src")
			makeEveryKind(t, src)
			writeRandom(t, filepath.Join(src, "dir/large.bin"), 7, 60<<20)
			want := snapshot(t, src)
			id := backupID(t, e, src)

			pool := []string{"tape", "pool", "create", "p", "--retention", "7y"}
			if enc {
				pool = append(pool, "--encrypt")
			}
			e.ok(pool...)
			w := tapeWrite(t, e, "--pool", "p", id[:12])
			if len(w.Tapes) < 2 || len(w.Points) != 1 || w.Points[0] != id {
				t.Fatalf("write: %+v: want one point on two cartridges or more", w)
			}
			// status shows the pool: its set, the point, the cartridges.
			var st struct {
				Tape []struct {
					Pool   string
					Sets   int
					Points int
					Media  map[string]int
				}
			}
			must(t, json.Unmarshal([]byte(e.ok("status", "--json")), &st))
			if len(st.Tape) != 1 || st.Tape[0].Pool != "p" || st.Tape[0].Sets != 1 || st.Tape[0].Points != 1 ||
				st.Tape[0].Media["full"]+st.Tape[0].Media["writing"] != len(w.Tapes) {
				t.Errorf("status --json tape: %+v, want pool p with one set, one point, %d cartridges", st.Tape, len(w.Tapes))
			}
			keyFile := filepath.Join(t.TempDir(), "p.key")
			if enc {
				e.vars = []string{"RECALL_PASSWORD=key file secret"}
				e.ok("tape", "key", "export", "--pool", "p", "--to", keyFile)
				e.vars = nil
			}
			must(t, os.RemoveAll(e.home))

			fresh := newEnv(t)
			fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
			if enc {
				// Without the key nothing of the set is read.
				r := fresh.run("tape", "catalog")
				if r.code != 5 || !strings.Contains(r.stderr, "key import") {
					t.Fatalf("catalog without the key: exit %d, %s", r.code, r.stderr)
				}
				fresh.vars = []string{"RECALL_PASSWORD=key file secret"}
				// The pool is not on the new home yet: creating it takes a
				// retention, for what this server will write to it.
				if r := fresh.run("tape", "key", "import", keyFile); r.code != 2 || !strings.Contains(r.stderr, "--retention") {
					t.Fatalf("key import creating a pool without --retention: exit %d, %s", r.code, r.stderr)
				}
				fresh.ok("tape", "key", "import", keyFile, "--retention", "7y")
				fresh.vars = nil
			}
			// Each cartridge but the last was filled: spanning, not a
			// torn or damaged cartridge.
			if out := fresh.ok("tape", "catalog"); strings.Contains(out, "torn") || strings.Contains(out, "damaged") {
				t.Errorf("catalog of a spanned set: %s", out)
			}
			ls := tapeList(t, fresh, "--point", id[:10])
			if len(ls) != len(w.Tapes) {
				t.Fatalf("tape list --point: %+v, want the %d cartridges %v", ls, len(w.Tapes), w.Tapes)
			}
			for i, l := range ls {
				if l.Barcode != w.Tapes[i] || l.Set != w.Set || l.Pool != "p" || l.Sequence != i+1 || !slices.Contains(l.Points, id) {
					t.Errorf("tape list entry %d: %+v; want %s, sequence %d of set %s, holding %s", i, l, w.Tapes[i], i+1, w.Set, id)
				}
				// The set's expiry: its creation, the pool's append
				// window (7 days by default), then the retention.
				if want := time.Now().AddDate(7, 0, 7); l.Expiry.Sub(want).Abs() > 24*time.Hour {
					t.Errorf("cartridge %s expires %s: want 7 years and 7 days from now (%s)", l.Barcode, l.Expiry, want.Format(time.DateOnly))
				}
			}
			dst := filepath.Join(t.TempDir(), "restored")
			fresh.ok("tape", "restore", id[:12], "--target", dst)
			compareTrees(t, want, snapshot(t, dst))
			if ents, _ := filepath.Glob(filepath.Join(fresh.home, "tape-restore-*")); len(ents) != 0 {
				t.Errorf("staging left behind: %v", ents)
			}
		})
	}
}

// A cartridge of another pool, or of an unexpired set, is never
// overwritten without --force: not by label, not by erase, not by a write
// of another pool looking for a cartridge.
func TestTapeOtherPoolRefused(t *testing.T) {
	e, _ := tapeEnvSized(t, "2", "1GiB")
	_, id := onePointSource(t, e)
	e.ok("tape", "pool", "create", "a", "--retention", "1y")
	e.ok("tape", "pool", "create", "b", "--retention", "1y")
	e.ok("tape", "label", "--slot", "2", "--pool", "b")
	w := tapeWrite(t, e, "--pool", "a", id)
	if len(w.Tapes) != 1 || w.Tapes[0] != "RC0001L9" {
		t.Fatalf("write to pool a: %+v: want slot 1's cartridge (slot 2 is pool b's)", w)
	}
	for _, args := range [][]string{
		{"tape", "label", "--slot", "1", "--pool", "b"},
		{"tape", "erase", "--slot", "1"},
	} {
		r := e.run(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "RC0001L9") || !strings.Contains(r.stderr, "--force") {
			t.Errorf("%v: exit %d, %s: want a refusal naming the cartridge and --force", args, r.code, r.stderr)
		}
	}
	// Pool b's write has only its own cartridge; pool a's full set is not
	// touched. Then a write to a third pool finds no usable cartridge.
	tapeWrite(t, e, "--pool", "b", id)
	e.ok("tape", "pool", "create", "c", "--retention", "1y")
	r := e.run("tape", "write", "--pool", "c", id)
	if r.code != 1 || !strings.Contains(r.stderr, "no usable cartridge") || !strings.Contains(r.stderr, "pool a") || !strings.Contains(r.stderr, "pool b") {
		t.Errorf("write to pool c: exit %d, %s", r.code, r.stderr)
	}
	if ls := tapeList(t, e, "--point", id); len(ls) != 2 {
		t.Errorf("after the refusals: %+v, want pool a's and pool b's cartridges, both holding the point", ls)
	}
	e.ok("tape", "erase", "--slot", "1", "--force")
	if ls := tapeList(t, e, "--point", id); len(ls) != 1 || ls[0].Pool != "b" {
		t.Errorf("after erase --force: %+v", ls)
	}
}

// A write-protected cartridge is reported with its barcode and slot, and
// the write goes on on the next one.
func TestTapeWriteProtected(t *testing.T) {
	e, lib := tapeEnvSized(t, "3", "1GiB")
	src, id := onePointSource(t, e)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.SetWriteProtected("RC0001L9", true) })
	r := e.run("tape", "write", "--json", "--pool", "p", id)
	if r.code != 0 || !strings.Contains(r.stderr, "RC0001L9 in slot 1") || !strings.Contains(r.stderr, "write-protected") {
		t.Fatalf("write: exit %d, %s", r.code, r.stderr)
	}
	var w tapeWriteOut
	must(t, json.Unmarshal([]byte(r.stdout), &w))
	if len(w.Tapes) != 1 || w.Tapes[0] != "RC0002L9" {
		t.Errorf("written to %v, want RC0002L9", w.Tapes)
	}
	dst := filepath.Join(t.TempDir(), "out")
	e.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// A bad block in the tape file of one point's packs: a restore of a later
// point restores what its other packs hold, names the damaged files and
// exits 4.
func TestTapeBadBlock(t *testing.T) {
	e, lib := tapeEnvSized(t, "2", "1GiB")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "a.bin"), 1, 20<<20)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	tapeWrite(t, e, "--pool", "p", backupID(t, e, src))
	b := writeRandom(t, filepath.Join(src, "b.bin"), 2, 20<<20)
	w := tapeWrite(t, e, "--pool", "p", backupID(t, e, src))
	if w.PacksSkipped == 0 || len(w.Tapes) != 1 || w.Tapes[0] != "RC0001L9" {
		t.Fatalf("second write: %+v: want a.bin's packs found on the set, appended to RC0001L9", w)
	}
	// Objects 0-3 are the labels and their filemarks; the first point's
	// packs file starts at 4.
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.InjectBadBlock("RC0001L9", 6) })
	dst := filepath.Join(t.TempDir(), "out")
	r := e.run("tape", "restore", w.Points[0], "--target", dst)
	if r.code != 4 || !strings.Contains(r.stderr, "damaged: a.bin") || strings.Contains(r.stderr, "damaged: b.bin") {
		t.Fatalf("restore: exit %d, %s; want exit 4 naming a.bin only", r.code, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "b.bin")); err != nil || !slices.Equal(got, b) {
		t.Errorf("b.bin not restored whole: %v", err)
	}
}

// A bad block inside a packs file: the reader goes on at the next pack
// the point needs, so the packs after it in the same tape file (the
// point's other data pack, its tree pack) are restored; the files whose
// chunks the damaged pack held are named, exit 4.
func TestTapeBadBlockMidFile(t *testing.T) {
	e, lib := tapeEnvSized(t, "2", "1GiB")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	names := []string{"x1", "x2", "x3", "x4", "x5", "x6"}
	data := map[string][]byte{}
	for i, n := range names {
		data[n] = writeRandom(t, filepath.Join(src, n), int64(i+1), 5<<20)
	}
	// One file at a time, so the packs fill in the files' order (four at
	// once, with a backup's Ps doubled, a chunk of x6 was once stored in
	// the first pack).
	var p struct{ ID string }
	must(t, json.Unmarshal([]byte(e.ok("backup", "--json", "--files", "1", src)), &p))
	id := p.ID
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	// 30 MiB of random data: two data packs (16 MiB packs), then the tree
	// pack, all in the packs file at object 4 (after the labels).
	if w := tapeWrite(t, e, "--pool", "p", id); w.Packs != 3 {
		t.Fatalf("write: %+v, want three packs (two data, one tree)", w)
	}
	// Block 1 of the packs file: inside its first pack.
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.InjectBadBlock("RC0001L9", 5) })
	dst := filepath.Join(t.TempDir(), "out")
	r := e.run("tape", "restore", id, "--target", dst)
	if r.code != 4 || !strings.Contains(r.stderr, "1 pack(s) could not be read from tape (bad blocks: ") {
		t.Fatalf("restore: exit %d, %s; want exit 4 and one pack lost to bad blocks", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "partly restored point") || !strings.Contains(r.stdout, "file(s) damaged, named below") {
		t.Errorf("restore summary %q: want it partly restored, damaged files counted", r.stdout)
	}
	var whole, damaged []string
	for _, n := range names {
		got, _ := os.ReadFile(filepath.Join(dst, n))
		switch {
		case slices.Equal(got, data[n]):
			whole = append(whole, n)
		case strings.Contains(r.stderr, "damaged: "+n+":"):
			damaged = append(damaged, n)
		default:
			t.Errorf("%s: neither restored whole nor named damaged", n)
		}
	}
	// The first pack holds the first files' chunks; the last files' are
	// in the pack after the bad block.
	if len(damaged) == 0 || !slices.Contains(whole, "x6") {
		t.Errorf("whole %v, damaged %v: want the last files whole (read after the bad block) and the first ones damaged\n%s", whole, damaged, r.stderr)
	}
}

// 'tape erase --force' and 'tape label --force' of a set's cartridge: the
// set loses the cartridge's files and the points that needed them (the
// command names them), and is closed, so a later write starts a new set
// and writes every pack again rather than counting on erased ones.
func TestTapeForceOverwriteDropsPoints(t *testing.T) {
	for _, args := range [][]string{
		{"tape", "erase", "--slot", "1", "--force"},
		{"tape", "label", "--slot", "1", "--pool", "p", "--force"},
	} {
		t.Run(args[1], func(t *testing.T) {
			e, _ := tapeEnvSized(t, "2", "1GiB")
			src := filepath.Join(t.TempDir(), "src")
			must(t, os.MkdirAll(src, 0o755))
			writeRandom(t, filepath.Join(src, "a"), 1, 3<<20)
			id1 := backupID(t, e, src)
			e.ok("tape", "pool", "create", "p", "--retention", "1y")
			w1 := tapeWrite(t, e, "--pool", "p", id1)
			out := e.ok(args...)
			if !strings.Contains(out, "set "+w1.Set) || !strings.Contains(out, "points no longer on any tape: "+id1) {
				t.Errorf("%v: %s; want the set and the point lost named", args, out)
			}
			if r := e.run("tape", "list", "--point", id1); r.code == 0 {
				t.Errorf("tape list --point of the lost point: exit 0, %s", r.stdout)
			}
			writeRandom(t, filepath.Join(src, "b"), 2, 1<<20)
			id2 := backupID(t, e, src)
			w2 := tapeWrite(t, e, "--pool", "p", id2)
			if w2.Set == w1.Set || w2.PacksSkipped != 0 {
				t.Errorf("write after the overwrite: %+v; want a new set with every pack written (the first set was %s)", w2, w1.Set)
			}
			for _, l := range tapeList(t, e) {
				if l.Set == w1.Set {
					t.Errorf("cartridge %s still listed in set %s", l.Barcode, w1.Set)
				}
			}
			dst := filepath.Join(t.TempDir(), "out")
			e.ok("tape", "restore", id2, "--target", dst)
			compareTrees(t, snapshot(t, src), snapshot(t, dst))
		})
	}
}

// A power cut tore the last file of a cartridge: tape catalog on a new
// home still reads everything before it, and the point restores.
func TestTapeTornLastFile(t *testing.T) {
	e, lib := tapeEnvSized(t, "2", "1GiB")
	src, id := onePointOnTape(t, e, 3<<20)
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.TearLastBlock("RC0001L9") })
	fresh := newEnv(t)
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	// The torn file is the last catalog file: the cartridge is read by a
	// full scan, which reports the cut file and keeps what precedes it.
	out := fresh.ok("tape", "catalog", "--slot", "1")
	if !strings.Contains(out, "full scan") || !strings.Contains(out, "cut short") {
		t.Errorf("catalog of a torn cartridge: %s", out)
	}
	if ls := tapeList(t, fresh, "--point", id); len(ls) != 1 || ls[0].Barcode != "RC0001L9" {
		t.Fatalf("list: %+v", ls)
	}
	dst := filepath.Join(t.TempDir(), "out")
	fresh.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// A restore that needs a cartridge not in the library says which ones to
// insert, before reading anything.
func TestTapeCartridgeEjected(t *testing.T) {
	e, lib := tapeEnv(t, "4")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, 60<<20)
	id := backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	w := tapeWrite(t, e, "--pool", "p", id)
	if len(w.Tapes) < 2 {
		t.Fatalf("write: %+v, want two cartridges or more", w)
	}
	gone := w.Tapes[len(w.Tapes)-1]
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.Eject(gone) })
	dst := filepath.Join(t.TempDir(), "out")
	r := e.run("tape", "restore", id, "--target", dst)
	if r.code != 1 || !strings.Contains(r.stderr, "insert") || !strings.Contains(r.stderr, gone) || strings.Contains(r.stderr, "reading cartridge") {
		t.Fatalf("restore: exit %d, %s; want the barcode %s to insert and nothing read", r.code, r.stderr, gone)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Errorf("target made: %v", err)
	}
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { _, err := l.Insert(gone); return err })
	e.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// A wrong pool key is refused before anything is read or written: by
// restore, and by catalog on a home holding another key of that name.
func TestTapeWrongKey(t *testing.T) {
	e, lib := tapeEnvSized(t, "2", "1GiB")
	_, id := onePointSource(t, e)
	e.ok("tape", "pool", "create", "p", "--retention", "1y", "--encrypt")
	tapeWrite(t, e, "--pool", "p", id)

	// Another server's pool of the same name, with its own key.
	other := newEnv(t)
	other.ok("tape", "library", "add", "lib", "--emulated", filepath.Join(t.TempDir(), "otherlib"), "--slots", "1")
	other.ok("tape", "pool", "create", "p", "--retention", "1y", "--encrypt")
	otherKey, err := os.ReadFile(filepath.Join(other.home, "tape-keys", "p.key"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(e.home, "tape-keys", "p.key"), otherKey, 0o600))
	dst := filepath.Join(t.TempDir(), "out")
	r := e.run("tape", "restore", id, "--target", dst)
	if r.code != 5 || !strings.Contains(r.stderr, "fingerprint") || !strings.Contains(r.stderr, "in a home of their own") {
		t.Errorf("restore with another key: exit %d, %s; want it to say to read them in a home of their own", r.code, r.stderr)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Errorf("target made: %v", err)
	}

	keyFile := filepath.Join(t.TempDir(), "other.key")
	other.vars = []string{"RECALL_PASSWORD=pw"}
	other.ok("tape", "key", "export", "--pool", "p", "--to", keyFile)
	fresh := newEnv(t)
	fresh.vars = []string{"RECALL_PASSWORD=pw"}
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	fresh.ok("tape", "key", "import", keyFile, "--retention", "1y")
	r = fresh.run("tape", "catalog")
	if r.code != 5 || !strings.Contains(r.stderr, "key") {
		t.Errorf("catalog with another key: exit %d, %s", r.code, r.stderr)
	}
	if ls := tapeList(t, fresh); len(ls) != 0 {
		t.Errorf("listed with a wrong key: %+v", ls)
	}
	// A wrong passphrase for the key file is refused too.
	fresh.vars = []string{"RECALL_PASSWORD=wrong"}
	if r := fresh.run("tape", "key", "import", keyFile); r.code != 5 {
		t.Errorf("key import with a wrong passphrase: exit %d, %s", r.code, r.stderr)
	}
}

// A cartridge that reports early warning from its first block: the write
// finishes the file after one whole pack and moves on; every pack is whole
// on tape and the point restores.
func TestTapeEarlyWarningAtOnce(t *testing.T) {
	e, lib := tapeEnvSized(t, "3", "1GiB")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, 40<<20)
	id := backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.SetCapacity("RC0001L9", 1<<30, 1<<30) })
	w := tapeWrite(t, e, "--pool", "p", id)
	if len(w.Tapes) != 2 || w.Tapes[0] != "RC0001L9" {
		t.Fatalf("write: %+v, want RC0001L9 then the next", w)
	}
	ls := tapeList(t, e, "--point", id)
	if len(ls) != 2 || ls[0].State != "full" || ls[1].State != "writing" {
		t.Fatalf("list: %+v", ls)
	}
	// A fresh home reads the full cartridge from its catalog file: it was
	// finished cleanly, no torn file.
	fresh := newEnv(t)
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	out := fresh.ok("tape", "catalog", "--slot", "1")
	if strings.Contains(out, "torn") || !strings.Contains(out, "catalog file") {
		t.Errorf("catalog of the early-warned cartridge: %s", out)
	}
	fresh.ok("tape", "catalog")
	dst := filepath.Join(t.TempDir(), "out")
	fresh.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// copyFixture makes two points of a new source (a file of size bytes
// each), pools a and b, and writes both points to a set of pool a. It
// returns the source, the second point, and the write.
func copyFixture(t *testing.T, e *env, size int) (src, id2 string, w tapeWriteOut) {
	t.Helper()
	src = filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "a"), 1, size)
	id1 := backupID(t, e, src)
	writeRandom(t, filepath.Join(src, "b"), 2, size)
	id2 = backupID(t, e, src)
	e.ok("tape", "pool", "create", "a", "--retention", "1y")
	e.ok("tape", "pool", "create", "b", "--retention", "1y")
	return src, id2, tapeWrite(t, e, "--pool", "a", id1, id2)
}

// tape copy writes a set's points as a new set of another pool: from the
// store where it has them, from the set's cartridges on a home that has
// no store at all; a point restores from the copy.
func TestTapeCopy(t *testing.T) {
	e, lib := tapeEnvSized(t, "4", "1GiB")
	src, id2, w := copyFixture(t, e, 3<<20)

	var c1 tapeWriteOut
	must(t, json.Unmarshal([]byte(e.ok("tape", "copy", "--json", "--set", w.Set[:8], "--pool", "b")), &c1))
	if c1.Set == w.Set || c1.Pool != "b" || len(c1.Points) != 2 || c1.Packs != w.Packs {
		t.Fatalf("copy from the store: %+v; the set: %+v", c1, w)
	}

	fresh := newEnv(t)
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	fresh.ok("tape", "catalog")
	fresh.ok("tape", "pool", "create", "c", "--retention", "1y")
	var c2 tapeWriteOut
	must(t, json.Unmarshal([]byte(fresh.ok("tape", "copy", "--json", "--set", w.Set, "--pool", "c")), &c2))
	if c2.Pool != "c" || len(c2.Points) != 2 || c2.Packs != w.Packs || slices.Contains(c2.Tapes, w.Tapes[0]) || slices.Contains(c2.Tapes, c1.Tapes[0]) {
		t.Fatalf("copy from tape: %+v; the set: %+v; the first copy: %+v", c2, w, c1)
	}
	if ls := tapeList(t, fresh, "--point", id2); len(ls) != 3 {
		t.Errorf("point %s on %d cartridges, want 3 (the set and its two copies): %+v", id2, len(ls), ls)
	}
	// The latest copy is what a restore reads: take the others away.
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error {
		if err := l.Eject(w.Tapes[0]); err != nil {
			return err
		}
		return l.Eject(c1.Tapes[0])
	})
	dst := filepath.Join(t.TempDir(), "out")
	fresh.ok("tape", "restore", id2, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// A tape copy that stops part-way (its pool's next cartridge not in the
// library) says how to go on; 'tape copy --to-set' then writes only what
// the stopped copy lacks, into the same set, and a point restores from it.
func TestTapeCopyContinues(t *testing.T) {
	e, lib := tapeEnvSized(t, "3", "1GiB")
	src, id2, w := copyFixture(t, e, 12<<20)
	if len(w.Tapes) != 1 {
		t.Fatalf("the set: %+v, want one cartridge", w)
	}
	// The copy's first cartridge holds less than the set; its second is
	// out of the library.
	var blanks []string
	for _, bc := range []string{"RC0001L9", "RC0002L9", "RC0003L9"} {
		if bc != w.Tapes[0] {
			blanks = append(blanks, bc)
		}
	}
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error {
		if err := l.SetCapacity(blanks[0], 16<<20, 4<<20); err != nil {
			return err
		}
		return l.Eject(blanks[1])
	})
	r := e.run("tape", "copy", "--set", w.Set, "--pool", "b")
	if r.code == 0 || !strings.Contains(r.stderr, "--to-set") {
		t.Fatalf("copy onto too little tape: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var sets []string
	for _, l := range tapeList(t, e) {
		if l.Pool == "b" && !slices.Contains(sets, l.Set) {
			sets = append(sets, l.Set)
		}
	}
	if len(sets) != 1 || !strings.Contains(r.stderr, "--to-set "+sets[0]) {
		t.Fatalf("pool b's sets after the stopped copy: %v; its error:\n%s", sets, r.stderr)
	}
	// A set of another pool, or an unknown one, is refused.
	if r := e.run("tape", "copy", "--set", w.Set, "--pool", "b", "--to-set", w.Set); r.code == 0 || !strings.Contains(r.stderr, "pool a's") {
		t.Errorf("--to-set of pool a's set: exit %d\n%s", r.code, r.stderr)
	}

	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error {
		_, err := l.Insert(blanks[1])
		return err
	})
	var c tapeWriteOut
	must(t, json.Unmarshal([]byte(e.ok("tape", "copy", "--json", "--set", w.Set, "--pool", "b", "--to-set", sets[0][:8])), &c))
	if c.Set != sets[0] || len(c.Points) != 2 || c.PacksSkipped == 0 || c.Packs+c.PacksSkipped < w.Packs || c.Packs >= w.Packs {
		t.Fatalf("the continued copy: %+v; the set: %+v", c, w)
	}
	// Only the copy left in the library: the point restores from it.
	withLibrary(t, lib, func(l *tapefs.EmulatedLibrary) error { return l.Eject(w.Tapes[0]) })
	restoresFromTape(t, e, id2, src)
}

// Points of an encrypted store restore from tape on a fresh home with the
// store's passphrase (the usual sources); without it, exit 5 and nothing
// restored.
func TestTapeEncryptedStore(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=store secret"}
	e.ok("init", "-q", "--encrypt")
	lib := filepath.Join(t.TempDir(), "library")
	e.ok("tape", "library", "add", "lib", "--emulated", lib, "--slots", "2")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, 2<<20)
	id := backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	tapeWrite(t, e, "--pool", "p", id)

	fresh := newEnv(t)
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	fresh.ok("tape", "catalog")
	dst := filepath.Join(t.TempDir(), "out")
	if r := fresh.run("tape", "restore", id, "--target", dst); r.code != 5 {
		t.Errorf("restore without the store's passphrase: exit %d, %s", r.code, r.stderr)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Errorf("target made: %v", err)
	}
	fresh.vars = []string{"RECALL_PASSWORD=store secret"}
	fresh.ok("tape", "restore", id, "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// Pools: created with an append window, changed with 'pool set', listed;
// a span that does not parse changes nothing; an unknown pool subcommand
// points at the right help.
func TestTapePoolSetList(t *testing.T) {
	e, _ := tapeEnvSized(t, "1", "1GiB")
	e.ok("tape", "pool", "create", "a", "--retention", "1y", "--append-window", "2w")
	e.ok("tape", "pool", "create", "b", "--retention", "30d", "--encrypt", "--compress")
	e.ok("tape", "pool", "set", "a", "--retention", "2y", "--compress", "--allocation", "always")
	e.ok("tape", "pool", "set", "b", "--no-compress", "--append-window", "3d")
	for _, args := range [][]string{
		{"tape", "pool", "set", "a", "--append-window", "soon"},
		{"tape", "pool", "set", "a", "--retention", "0d"},
		{"tape", "pool", "set", "a", "--allocation", "sometimes"},
	} {
		if r := e.run(args...); r.code == 0 {
			t.Errorf("%v: exit 0, want a refusal", args)
		}
	}
	if r := e.run("tape", "pool", "set", "a"); r.code != 2 {
		t.Errorf("pool set with nothing to change: exit %d, want 2", r.code)
	}
	var ps []struct {
		Name, Library, Retention, Allocation string
		AppendWindow                         string `json:"append_window"`
		Compress, Encrypt                    bool
		KeyFingerprint                       string `json:"key_fingerprint"`
	}
	must(t, json.Unmarshal([]byte(e.ok("tape", "pool", "list", "--json")), &ps))
	if len(ps) != 2 {
		t.Fatalf("pool list: %+v", ps)
	}
	a, b := ps[0], ps[1]
	if a.Name != "a" || a.Library != "lib" || a.Retention != "2y" || a.AppendWindow != "2w" || !a.Compress || a.Allocation != "always" || a.Encrypt {
		t.Errorf("pool a: %+v", a)
	}
	if b.Name != "b" || b.Retention != "30d" || b.AppendWindow != "3d" || b.Compress || !b.Encrypt || b.KeyFingerprint == "" {
		t.Errorf("pool b: %+v", b)
	}
	out := e.ok("tape", "pool", "list")
	if !strings.Contains(out, "APPEND WINDOW") || !strings.Contains(out, b.KeyFingerprint) {
		t.Errorf("pool list: %s", out)
	}
	if r := e.run("tape", "pool", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "'recall tape pool --help'") {
		t.Errorf("unknown pool subcommand: exit %d, %s", r.code, r.stderr)
	}
}

// One tape job at a time per home: a tape command started while another
// holds the home's tape lock waits, naming the holder, and runs once it
// is released.
func TestTapeOneJobAtATime(t *testing.T) {
	e, _ := tapeEnv(t, "2")
	e.ok("tape", "pool", "create", "p", "--retention", "1d")
	e.ok("tape", "label", "--slot", "1", "--pool", "p")
	f, err := os.OpenFile(filepath.Join(e.home, "tape.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	must(t, err)
	defer f.Close()
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	_, err = f.WriteString(fmt.Sprintf(`{"pid":%d,"host":"h","purpose":"tape-write","since":"2026-01-02T03:04:05Z"}`, os.Getpid()))
	must(t, err)

	cmd := e.command("tape", "erase", "--slot", "1")
	pipe, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	sc := bufio.NewScanner(pipe)
	waiting := false
	for !waiting && sc.Scan() {
		waiting = strings.Contains(sc.Text(), fmt.Sprintf("waiting for the tape job of pid %d on h (tape-write", os.Getpid()))
	}
	if !waiting {
		cmd.Wait()
		t.Fatalf("tape erase with the tape lock held: did not say it waits for pid %d", os.Getpid())
	}
	must(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tape erase after the lock was released: %v", err)
	}
}

// A tape restore of a point from an encrypted store, given a passphrase
// that does not open it (the store's since 'key passwd', a typo): refused
// with exit 5 once the set label's config is read, before any pack is,
// saying which passphrase the set needs.
func TestTapeRestoreWrongStorePassphrase(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=old"}
	e.ok("init", "-q", "--encrypt")
	lib := filepath.Join(t.TempDir(), "library")
	e.ok("tape", "library", "add", "lib", "--emulated", lib, "--slots", "2", "--capacity", "1GiB")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "f"), 1, 4<<20)
	id := backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	tapeWrite(t, e, "--pool", "p", id[:12])
	newPw := filepath.Join(t.TempDir(), "new")
	must(t, os.WriteFile(newPw, []byte("new\n"), 0o600))
	e.ok("key", "passwd", "--new-password-file", newPw)

	e.vars = []string{"RECALL_PASSWORD=new"}
	dst := filepath.Join(t.TempDir(), "out")
	r := e.run("tape", "restore", id[:12], "--target", dst)
	if r.code != 5 || !strings.Contains(r.stderr, "the passphrase that store had when the set was written") ||
		!strings.Contains(r.stderr, "nothing was read past the set label") {
		t.Fatalf("restore with the store's new passphrase: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dst, "f")); err == nil {
		t.Error("a file was restored")
	}
	e.vars = []string{"RECALL_PASSWORD=old"}
	e.ok("tape", "restore", id[:12], "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
}

// A pool that starts a new set every write leaves its cartridge with
// room left in a closed set: the inventory shows it "closed" (one word, so
// its columns still split), with set_closed in JSON, and the next write
// takes another cartridge.
func TestTapeInventoryClosedSet(t *testing.T) {
	e, _ := tapeEnvSized(t, "3", "1GiB")
	_, id := onePointSource(t, e)
	e.ok("tape", "pool", "create", "p", "--retention", "1y", "--allocation", "always")
	w := tapeWrite(t, e, "--pool", "p", id[:12])
	state := func(inv, barcode string) string {
		for _, line := range strings.Split(inv, "\n") {
			if f := strings.Fields(line); len(f) == 8 && f[2] == barcode {
				return f[3]
			}
		}
		t.Fatalf("cartridge %s not in the inventory (8 columns):\n%s", barcode, inv)
		return ""
	}
	if s := state(e.ok("tape", "inventory"), w.Tapes[0]); s != "closed" {
		t.Errorf("state of the always pool's cartridge: %q, want closed", s)
	}
	var inv []struct {
		Barcode   string
		State     string
		SetClosed bool `json:"set_closed"`
	}
	must(t, json.Unmarshal([]byte(e.ok("tape", "inventory", "--json")), &inv))
	for _, s := range inv {
		if s.Barcode == w.Tapes[0] && (s.State != "writing" || !s.SetClosed) {
			t.Errorf("JSON: %+v, want state writing with set_closed", s)
		}
	}
	w2 := tapeWrite(t, e, "--pool", "p", id[:12])
	if w2.Tapes[0] == w.Tapes[0] {
		t.Errorf("the second write appended to the closed set's cartridge %s", w.Tapes[0])
	}
}

// The emulated library's door: a cartridge taken out is missing for a
// restore (which names it), put back it restores, and a blank added is
// written to.
func TestTapeEmulatedDoor(t *testing.T) {
	e, _ := tapeEnvSized(t, "2", "1GiB")
	src, id := onePointSource(t, e)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")
	w := tapeWrite(t, e, "--pool", "p", id[:12])
	if out := e.ok("tape", "library", "eject", w.Tapes[0]); !strings.Contains(out, "taken out") {
		t.Errorf("eject: %s", out)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if r := e.run("tape", "restore", id[:12], "--target", dst); r.code == 0 || !strings.Contains(r.stderr, w.Tapes[0]) {
		t.Fatalf("restore with its cartridge out: exit %d, %s", r.code, r.stderr)
	}
	if out := e.ok("tape", "library", "add-blank"); !strings.Contains(out, "in slot") {
		t.Errorf("add-blank: %s", out)
	}
	// The slots are full: inserting is refused, naming why.
	if r := e.run("tape", "library", "insert", w.Tapes[0]); r.code == 0 || !strings.Contains(r.stderr, "eject a cartridge first") {
		t.Errorf("insert into a full library: exit %d, %s", r.code, r.stderr)
	}
	inv := e.ok("tape", "inventory")
	var blank string
	for _, line := range strings.Split(inv, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "slot" && f[3] == "unknown" && f[2] != w.Tapes[0] {
			blank = f[2]
		}
	}
	if blank == "" {
		t.Fatalf("no blank in the inventory:\n%s", inv)
	}
	e.ok("tape", "library", "eject", blank)
	e.ok("tape", "library", "insert", w.Tapes[0])
	e.ok("tape", "restore", id[:12], "--target", dst)
	compareTrees(t, snapshot(t, src), snapshot(t, dst))
	if r := e.run("tape", "library", "eject"); r.code != 2 {
		t.Errorf("eject without a barcode: exit %d, want 2", r.code)
	}
}

// A tape write killed with -9 after it labelled a cartridge leaves that
// cartridge in its set as the home's catalog records it: the next write
// of the pool goes on on it (the killed write's cut file is ended and its
// packs written again), where before it met a cartridge of a set the home
// did not know, refused it, and took a blank one, leaving the first out
// of the pool until a 'tape catalog'. A point restores from it.
func TestTapeWriteKilled(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "-q")
	lib := filepath.Join(t.TempDir(), "library")
	e.ok("tape", "library", "add", "lib", "--emulated", lib, "--slots", "3", "--capacity", "1GiB", "--rate", "16MB/s")
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(src, 0o755))
	writeRandom(t, filepath.Join(src, "a"), 1, 32<<20)
	id := backupID(t, e, src)
	e.ok("tape", "pool", "create", "p", "--retention", "1y")

	cmd := e.command("tape", "write", "--pool", "p", id)
	pipe, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	sc := bufio.NewScanner(pipe)
	barcode := ""
	for barcode == "" && sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "labelled as sequence 1") {
			barcode = strings.Fields(strings.TrimPrefix(l, "recall: cartridge "))[0]
		}
	}
	if barcode == "" {
		cmd.Wait()
		t.Fatal("tape write said no cartridge labelled")
	}
	time.Sleep(700 * time.Millisecond) // some packs on tape, not all (32 MiB at 16 MB/s)
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err == nil {
		t.Fatal("tape write finished before it was killed")
	}

	w := tapeWrite(t, e, "--pool", "p", id)
	if len(w.Tapes) != 1 || w.Tapes[0] != barcode {
		t.Fatalf("the write after the killed one went to %v, want %s, the cartridge the killed one labelled", w.Tapes, barcode)
	}
	restoresFromTape(t, e, id, src)
	// A fresh home reads the same from the cartridge alone.
	fresh := newEnv(t)
	fresh.ok("tape", "library", "add", "lib", "--emulated", lib)
	fresh.ok("tape", "catalog")
	restoresFromTape(t, fresh, id, src)
}

// tape library set points a library at where it is now: an emulated
// library moved to another directory is found there, and a point on it
// restores. A directory holding another library, or devices for an
// emulated one, are refused and change nothing.
func TestTapeLibrarySet(t *testing.T) {
	e, lib := tapeEnvSized(t, "2", "1GiB")
	src, id := onePointOnTape(t, e, 2<<20)

	moved := filepath.Join(t.TempDir(), "moved")
	must(t, os.Rename(lib, moved))
	if r := e.run("tape", "inventory"); r.code == 0 || !strings.Contains(r.stderr, lib) {
		t.Fatalf("inventory of a library moved away: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.run("tape", "library", "set", "lib", "--changer", "/dev/sg9"); r.code == 0 || !strings.Contains(r.stderr, "is emulated") {
		t.Errorf("devices for an emulated library: exit %d\n%s", r.code, r.stderr)
	}
	// Another home's second emulated library (barcodes RD...).
	other := newEnv(t)
	other.ok("tape", "library", "add", "x", "--emulated", filepath.Join(t.TempDir(), "x"), "--slots", "1")
	another := filepath.Join(t.TempDir(), "y")
	other.ok("tape", "library", "add", "y", "--emulated", another, "--slots", "1")
	if r := e.run("tape", "library", "set", "lib", "--emulated", another); r.code == 0 || !strings.Contains(r.stderr, "another emulated library") {
		t.Errorf("a directory of another library: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.run("tape", "library", "set", "nolib", "--emulated", moved); r.code == 0 || !strings.Contains(r.stderr, "not in this home") {
		t.Errorf("an unknown library: exit %d\n%s", r.code, r.stderr)
	}
	if out := e.ok("tape", "library", "set", "lib", "--emulated", moved); !strings.Contains(out, moved) {
		t.Errorf("set: %s", out)
	}
	e.ok("tape", "inventory")
	restoresFromTape(t, e, id, src)
}

// tape library set of a real library: the changer found at another
// /dev/sgN after a reboot (an mtx stand-in answers the inventory; device
// nodes are files here). A directory for it is refused.
func TestTapeLibrarySetChanger(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "-q")
	status, err := filepath.Abs(filepath.Join("..", "tapefs", "testdata", "mtx", "2drives-24slots-4ie-cleaning.txt"))
	must(t, err)
	bin := t.TempDir()
	mustWrite(t, filepath.Join(bin, "mtx"), []byte("#!/bin/sh\ncase \"$3\" in\nstatus) grep -v '^#' "+status+" ;;\n*) exit 2 ;;\nesac\n"), 0o755)
	e.vars = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	dev := t.TempDir()
	for _, n := range []string{"sg3", "sg4", "nst0", "nst1"} {
		mustWrite(t, filepath.Join(dev, n), nil, 0o600)
	}
	sg3, sg4 := filepath.Join(dev, "sg3"), filepath.Join(dev, "sg4")
	e.ok("tape", "library", "add", "big", "--changer", sg3, "--drive", filepath.Join(dev, "nst0"), "--drive", filepath.Join(dev, "nst1"))
	must(t, os.Remove(sg3)) // renumbered at a reboot
	if r := e.run("tape", "inventory"); r.code == 0 || !strings.Contains(r.stderr, sg3) {
		t.Fatalf("inventory with the changer gone: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.run("tape", "library", "set", "big", "--emulated", t.TempDir()); r.code == 0 || !strings.Contains(r.stderr, "is a real library") {
		t.Errorf("a directory for a real library: exit %d\n%s", r.code, r.stderr)
	}
	if r := e.run("tape", "library", "set", "big", "--changer", sg3); r.code == 0 || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("a changer that is not there: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("tape", "library", "set", "big", "--changer", sg4)
	if out := e.ok("tape", "inventory"); !strings.Contains(out, "CLN") {
		t.Errorf("inventory after set: %s", out)
	}
}
